r"""``diffcalo validate --geant4``: the parametric backend against the shipped Geant4 shower libraries.

For every built-in technology with a library (``diffcalo/data/geant4/libraries/<name>.h5``) it compares,
per particle and energy, the observables of :mod:`diffcalo.geant4.calibrate` (sampling fraction,
resolution and its a/sqrt(E) (+) b fit, mean depth and the normalised layer profile, 1x1 / 3x3 / 5x5
containment) and applies the targets of issue 14 (PASS / FAIL, with the worst case named). It also
measures, in one number, how well the parametric 5x5 windows pass for Geant4's: a classifier two-sample
test (:func:`classifier_auc`; AUC 0.5 = indistinguishable), and draws per technology the layer
profiles, containment and resolution vs energy, and the per-shower energy distributions.
"""

from __future__ import annotations

import pathlib

import numpy as np

__all__ = ["LIBRARY_DIR", "library_path", "validate_technology", "classifier_auc", "plot_validation"]

#: The shipped libraries (one per built-in technology; see their README for the commands).
LIBRARY_DIR = pathlib.Path(__file__).resolve().parent.parent / "data" / "geant4" / "libraries"


def library_path(name: str) -> pathlib.Path:
    """The shipped library of technology ``name`` (may not exist)."""
    return LIBRARY_DIR / f"{name}.h5"


def validate_technology(technology, library, *, auc: bool = True, seed: int = 0) -> dict:
    """Model vs Geant4 for one technology: ``rows`` (per group), ``checks`` (targets), ``auc`` (classifier
    two-sample AUC of 5x5 windows with its error), ``meta`` (the library's metadata)."""
    from diffcalo.geant4 import calibrate as cal
    from diffcalo.geant4.library import read_library

    clusters, extras, meta = read_library(library, technology=technology.name)
    cell = float(meta["cell_size_mm"])
    groups = cal.library_observables(clusters, extras, meta, technology)
    rows = cal.compare(technology, groups, cell)
    out = dict(rows=rows, checks=cal.checks(rows), meta=meta, cell_mm=cell, calibrated=technology.calibration is not None)
    if auc:
        out["auc"] = classifier_auc(technology, groups, cell, seed=seed)
    return out


def classifier_auc(technology, groups: list[dict], cell_mm: float, *, seed: int = 0) -> dict:
    """Classifier two-sample test between Geant4 and parametric 5x5 windows (all sections).

    For every Geant4 shower of the library one parametric shower is made with the same particle, energy
    and impact point (relaxed mode with the sampling fluctuations and the calibration, no readout noise).
    Features (as in the CaloChallenge, arXiv:2410.21611): the cell energies divided by the window sum,
    log10 of the window sum over the true energy, and log10 of the true energy. Classifier: scikit-learn's
    ``MLPClassifier`` with two hidden layers of 64, early stopping, ``random_state = seed``; a stratified
    50 / 50 train / test split (``random_state = seed``); the AUC is measured on the test half, its error
    from the Hanley-McNeil formula. 0.5: the classifier cannot tell them apart; 1: always.

    Returns:
        dict(auc, auc_err, n_train, n_test).
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    from diffcalo.geant4.calibrate import model_windows

    feats, labels = [], []
    for i, g in enumerate(groups):
        sel = g["windows"]
        model, _ = model_windows(technology, cell_mm, g["pid"], g["energy"], g["offsets"], g["slopes"], sampling=True,
                                 seed=seed * 7919 + i)
        for label, w in ((1, sel), (0, model)):
            feats.append(_features(w, g["energy"]))
            labels.append(np.full(len(w), label))
    x, y = np.concatenate(feats), np.concatenate(labels)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.5, stratify=y, random_state=seed)
    mean, std = xtr.mean(0), xtr.std(0) + 1e-9
    clf = MLPClassifier(hidden_layer_sizes=(64, 64), early_stopping=True, random_state=seed, max_iter=300)
    clf.fit((xtr - mean) / std, ytr)
    auc = float(roc_auc_score(yte, clf.predict_proba((xte - mean) / std)[:, 1]))
    n1, n0 = int(yte.sum()), int(len(yte) - yte.sum())
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    err = float(np.sqrt((auc * (1 - auc) + (n1 - 1) * (q1 - auc * auc) + (n0 - 1) * (q2 - auc * auc)) / (n1 * n0)))
    return dict(auc=auc, auc_err=err, n_train=int(len(ytr)), n_test=int(len(yte)))


def _features(w, energy) -> np.ndarray:
    w = np.asarray(w, float)
    n = len(w)
    total = w.reshape(n, -1).sum(1)
    norm = w.reshape(n, -1) / np.where(np.abs(total) > 0, total, 1.0)[:, None]
    return np.concatenate([norm, np.log10(np.maximum(total, 1e-6) / energy)[:, None],
                           np.full((n, 1), np.log10(energy))], axis=1)


def plot_validation(name: str, result: dict, path) -> pathlib.Path:
    """Four panels for one technology: layer profiles (electrons at three energies), containment vs
    energy, resolution vs energy, and the per-shower 5x5 energy distribution at the middle energy."""
    import matplotlib.pyplot as plt

    from diffcalo.geant4.calibrate import PARTICLE_NAMES, WINDOWS
    from diffcalo.plotting import _save

    rows = result["rows"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    e_all = sorted({r["energy"] for r in rows})
    pick = [e_all[0], e_all[len(e_all) // 2], e_all[-1]]
    ax = axes[0, 0]
    for k, e in enumerate(pick):
        r = next((r for r in rows if r["pid"] == 11 and r["energy"] == e), None)
        if r is None:
            continue
        layers = np.arange(len(r["profile_g4"]))
        ax.plot(layers, r["profile_g4"], "o", ms=3, color=f"C{k}", label=f"Geant4 e- {e:g} GeV")
        ax.plot(layers, r["profile_model"], "-", color=f"C{k}", label=f"model {e:g} GeV")
    ax.set(xlabel="layer", ylabel="fraction of the deposited energy", title="longitudinal profile")
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    for k, win in enumerate(WINDOWS):
        for pid, marker in ((11, "o"), (22, "s")):
            sel = sorted((r for r in rows if r["pid"] == pid and win in r["containment_g4"]), key=lambda r: r["energy"])
            if not sel:
                continue
            e = [r["energy"] for r in sel]
            ax.errorbar(e, [r["containment_g4"][win] for r in sel], [r["containment_err"][win] for r in sel],
                        fmt=marker, color=f"C{k}", ms=4, label=f"Geant4 {PARTICLE_NAMES[pid]} {win}x{win}")
            ax.plot(e, [r["containment_model"][win] for r in sel], "-" if pid == 11 else "--", color=f"C{k}")
    ax.set(xscale="log", xlabel="E (GeV)", ylabel="containment", title="containment (lines: model)")
    ax.legend(fontsize=7)
    ax = axes[1, 0]
    for k, pid in enumerate(sorted({r["pid"] for r in rows})):
        sel = sorted((r for r in rows if r["pid"] == pid), key=lambda r: r["energy"])
        e = np.array([r["energy"] for r in sel])
        ax.errorbar(e, [r["res_g4"] for r in sel], [r["res_g4_err"] for r in sel], fmt="o", color=f"C{k}", ms=4,
                    label=f"Geant4 {PARTICLE_NAMES[pid]}")
        ax.plot(e, [r["res_model"] for r in sel], "-", color=f"C{k}", label=f"model {PARTICLE_NAMES[pid]}")
    ax.set(xscale="log", yscale="log", xlabel="E (GeV)", ylabel="sigma/E of the 5x5 sum", title="resolution")
    ax.legend(fontsize=7)
    ax = axes[1, 1]
    r = next((r for r in rows if r["pid"] == 11 and r["energy"] == pick[1]), rows[0])
    g4, model = r["window_sum_g4"] / r["energy"], r["window_sum_model"] / r["energy"]
    lo, hi = np.percentile(np.concatenate([g4, model]), [0.5, 99.5])
    bins = np.linspace(lo, hi, 40)
    ax.hist(g4, bins, density=True, histtype="step", lw=1.5, label="Geant4")
    ax.hist(model, bins, density=True, histtype="step", lw=1.5, label="model")
    ax.set(xlabel="5x5 sum / E", ylabel="density", title=f"{PARTICLE_NAMES[r['pid']]} {r['energy']:g} GeV")
    ax.legend(fontsize=8)
    auc = result.get("auc")
    state = "calibrated" if result.get("calibrated") else "not calibrated"
    fig.suptitle(f"{name}: parametric ({state}) vs Geant4" + (f"; classifier AUC {auc['auc']:.3f} ± {auc['auc_err']:.3f}"
                                                                if auc else ""))
    return _save(fig, path)
