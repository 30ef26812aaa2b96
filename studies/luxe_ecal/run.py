"""LUXE ECAL positron reconstruction: the seed study (energy and position/angle networks) reproduced.

Detector: the LUXE positron calorimeter (``diffcalo.layout.luxe()``: 20 layers of 3.5 mm W + 0.32 mm
Si, 11 x 110 pads of 5 mm), simulated in image mode with the realistic Si readout (noise 1 MeV and
zero suppression at 3 MeV per pad, in shower-energy units; see the ``siw`` technology).

Energy (the seed's protocol). Positrons at normal incidence, x uniform over the sensors (25 mm from
their ends), y within the central pad row (as the Geant4 reference showers). Training set: 3..20 GeV
in 1 GeV steps; validation set: 2.5..15 GeV in 2.5 GeV steps; two test sets with the same energies
(A: training energies, B: validation energies; B has energies off the training grid, 7.5 and 12.5,
and one below it, 2.5). Classical estimate: the sum of all pads of the full image, linearly calibrated
on the training set. Network: the seed's conv branch + summed-energy branch (c = 32, 32, 16;
d = 64, 32, 16; BatchNorm after the convolutions; L2 1e-4 on convolutions, L1 1e-3 + L2 1e-2 on dense
layers) predicting a correction to the classical estimate, trained with MSE, MAE, Huber, the
physics-weighted loss ((E - E_hat) / sqrt(E))^2 and the truncated-Gaussian likelihood. It reads an
11 x 11 pad crop around the shower (the full height; 55 mm across in x centred on the hottest pad
column): the crop makes the network 10x cheaper than the full 11 x 110 image; the energy scale comes
from the full-image sum. A square crop: with 11 x 13 the position network gained nothing on the x
slope (RMS 19.3 mrad vs 19.5 classical) while it gained 40 % on the y slope; with 11 x 11 it gains on
both (12.4 / 12.3 mrad on the same quick showers). Square maps also get the x <-> y transpose of the
symmetry augmentation; which of the two did it is not isolated.

Position/angle. Positrons with slopes tx, ty uniform in +-0.05 and y within +-10 mm (energies as the
training set). Classical estimate: log-weighted (w0 = 4) centroids per layer, an energy-weighted
straight-line fit against the layer depth, extrapolated to the front face, each coordinate linearly
recalibrated on the training set. Network: the same design predicting (x, y, tx, ty) as corrections
to the classical estimate, in units of the pad (5 mm) and of 0.01 in slope.

Writes results.json, results.md and figures into ``--output``::

    .venv/bin/python studies/luxe_ecal/run.py --quick      # 4.5 minutes on two cores
    .venv/bin/python studies/luxe_ecal/run.py              # the full size
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np

import diffcalo as dc
from diffcalo.metrics import binned_resolution, core_width, energy_curve, fit_resolution
from diffcalo.reco import ModelConfig, TrainConfig, image_inputs, train
from diffcalo.reco.classical import log_weighted_centroid
from diffcalo.reco.classical import lstsq_line as fit_line

TRAIN_ENERGIES = tuple(float(e) for e in range(3, 21))
VAL_ENERGIES = (2.5, 5.0, 7.5, 10.0, 12.5, 15.0)
LOSSES = ("mse", "mae", "huber", "physics", "truncated_gaussian")
# The truncated-Gaussian likelihood's range. The training energies form a grid of 1 GeV steps whose
# end points ARE the range ends 3 and 20 GeV: with [3, 20] as the range, half of the showers at the
# end points look like the edge of a continuous spectrum and the boundary term pushes every
# prediction near them outwards (measured in the quick run: ME -0.85 GeV at 3 GeV, +0.85 at 20 GeV,
# MAE 0.89 vs the sum's 0.27 at 3 GeV). Each grid energy stands for a 1 GeV bin, so the range is
# the bins' outer edges.
LOSS_OPTIONS = {"truncated_gaussian": dict(low=2.5, high=20.5)}
CROP_W = 11                 # pads across x in the network's crop (odd: centred on the hottest column)
PAD_MM = 5.0
SLOPE_UNIT = 0.01
SEED_MODEL = ModelConfig(conv=(32, 32, 16), dense=(64, 32, 16), padding="auto", batch_norm=True)
SEED_REGULARISATION = dict(conv_l2=1e-4, dense_l1=1e-3, dense_l2=1e-2)
SIZES = {   # showers per energy: train, validation, each test set, position train / test (per energy)
    "quick": dict(train=600, val=300, test=500, pos_train=600, pos_test=200, epochs=25),
    "tiny": dict(train=20, val=20, test=20, pos_train=20, pos_test=20, epochs=2),     # a smoke test
    "full": dict(train=4000, val=1000, test=2000, pos_train=4000, pos_test=1000, epochs=40),
}


# ---- data ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class ShowerSet:
    """Cropped LUXE images and their truth. cells [n, 20, 11, CROP_W]; total [n] (full-image sum);
    e, x, y, tx, ty [n] truth; xc [n] x of the crop centre (mm; the crop's y centre is 0)."""

    cells: np.ndarray
    total: np.ndarray
    e: np.ndarray
    x: np.ndarray
    y: np.ndarray
    tx: np.ndarray
    ty: np.ndarray
    xc: np.ndarray

    def take(self, idx):
        return ShowerSet(*(getattr(self, f.name)[idx] for f in dataclasses.fields(self)))


def simulate_set(det, key, energies, per_energy: int, *, y_half: float, slope_half: float,
                 batch: int = 1000) -> ShowerSet:
    """``per_energy`` positrons at each energy, x uniform in +-250 mm, y in +-y_half, slopes in
    +-slope_half; simulated in batches (the full images are 97 kB each) and cropped around the
    hottest pad column."""
    e = np.repeat(np.asarray(energies, float), per_energy)
    n = e.size
    k_pos, k_sim = jax.random.split(key)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(k_pos)).ravel()[-1])
    x = rng.uniform(-250.0, 250.0, n)
    y = rng.uniform(-y_half, y_half, n)
    tx = rng.uniform(-slope_half, slope_half, n) if slope_half > 0 else np.zeros(n)
    ty = rng.uniform(-slope_half, slope_half, n) if slope_half > 0 else np.zeros(n)
    nx = 110
    half = CROP_W // 2
    cells, total, xc = [], [], []
    batch = min(batch, n)
    for i in range(0, n, batch):
        sl = np.arange(i, i + batch) % n          # every batch the same size: one compilation
        p = dc.Particles.create(energy=e[sl], x=x[sl], y=y[sl], tx=tx[sl], ty=ty[sl], pid=-11)
        c = dc.simulate(det, p, key=jax.random.fold_in(k_sim, i), image=True, mode="realistic", timing=False)
        img = np.asarray(c.energy, dtype=np.float32)[:min(batch, n - i)]  # [b, 20, 11, 110]
        col = np.clip(img.sum(axis=(1, 2)).argmax(axis=1), half, nx - 1 - half)
        idx = col[:, None] + np.arange(-half, half + 1)[None, :]
        cells.append(np.take_along_axis(img, idx[:, None, None, :], axis=3))
        total.append(img.sum(axis=(1, 2, 3)))
        xc.append((col - (nx - 1) / 2) * PAD_MM)
    return ShowerSet(np.concatenate(cells), np.concatenate(total), e, x, y, tx, ty, np.concatenate(xc))


def cached(path: Path | None, make) -> ShowerSet:
    """``make()``, stored in / read from ``path`` (.npz) when a cache directory is given."""
    if path is not None and path.exists():
        with np.load(path) as f:
            return ShowerSet(**{k: f[k] for k in f.files})
    s = make()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **dataclasses.asdict(s))
    return s


def shuffled(s: ShowerSet, seed: int) -> ShowerSet:
    return s.take(np.random.default_rng(seed).permutation(len(s.e)))


# ---- classical estimates --------------------------------------------------------------------------------
def layer_depths_mm(det) -> np.ndarray:
    """Depth of each silicon layer's centre behind the front face (mm)."""
    tech = det.technologies[0]
    _, z = tech.layer_depths()
    z = np.asarray(z)
    b = tech.stack[0]
    return z[:-1] + b.absorber_mm + 0.5 * b.active_mm


def classical_position(s: ShowerSet, z_mm: np.ndarray, w0: float = 4.0) -> np.ndarray:
    """Raw classical (x, y, tx, ty) [n, 4]: per-layer log-weighted centroids, energy-weighted line
    fit against depth, extrapolated to the front face."""
    n, L = s.cells.shape[:2]
    cent = np.stack([np.asarray(log_weighted_centroid(s.cells[:, l], w0)) for l in range(L)], axis=1) * PAD_MM
    w = np.maximum(s.cells.reshape(n, L, -1).sum(-1), 0.0)
    sw = np.maximum(w.sum(1, keepdims=True), 1e-30)
    zm = (w * z_mm).sum(1, keepdims=True) / sw
    cm = (w[..., None] * cent).sum(1) / sw
    var = (w * (z_mm - zm) ** 2).sum(1)
    cov = (w[..., None] * (z_mm - zm)[..., None] * (cent - cm[:, None])).sum(1)
    slope = cov / np.maximum(var, 1e-12)[:, None]
    front = cm - slope * zm
    return np.concatenate([front[:, :1] + s.xc[:, None], front[:, 1:], slope], axis=1)


def truth_position(s: ShowerSet) -> np.ndarray:
    return np.stack([s.x, s.y, s.tx, s.ty], axis=1)


# ---- figures of merit -----------------------------------------------------------------------------------
def mae_ratio(e, pred, ref, boot: int = 300, seed: int = 0):
    """Per energy: MAE of ``pred`` / MAE of ``ref`` on the same showers, with a paired bootstrap error."""
    rng = np.random.default_rng(seed)
    out = []
    for v in np.unique(e):
        m = e == v
        a, b = np.abs(pred[m] - v), np.abs(ref[m] - v)
        r = a.mean() / b.mean()
        idx = rng.integers(0, m.sum(), (boot, m.sum()))
        rb = a[idx].mean(1) / b[idx].mean(1)
        out.append((float(v), float(r), float(rb.std(ddof=1))))
    return out


def resolution_fit(e, pred):
    en, res, err, _ = binned_resolution(e, pred)
    f = fit_resolution(en, res, err, fit_constant=True, fit_noise=False)
    fin = lambda v: float(v) if np.isfinite(v) else None                      # noqa: E731 (JSON has no inf)
    return dict(stochastic=f.stochastic, stochastic_err=fin(f.stochastic_err), constant=f.constant,
                constant_err=fin(f.constant_err), chi2=f.chi2, ndf=f.ndf)


def curve(e, pred):
    c = energy_curve(e, pred)
    return {k: c[k].tolist() for k in ("energy", "n", "me", "mae", "rel_me", "rel_mae", "resolution")}


# ---- the study ------------------------------------------------------------------------------------------
def _simulator(det, cache_dir):
    def sim(name, key, energies, per_energy, **kw):
        path = None if cache_dir is None else cache_dir / f"{name}_{per_energy}.npz"
        return cached(path, lambda: simulate_set(det, key, energies, per_energy, **kw))
    return sim


def run_energy(det, size, key, out, log, cache_dir=None):
    k = jax.random.split(key, 4)
    sim = _simulator(det, cache_dir)
    t0 = time.perf_counter()
    tr = shuffled(sim("energy_train", k[0], TRAIN_ENERGIES, size["train"], y_half=2.5, slope_half=0.0), 1)
    va = shuffled(sim("energy_val", k[1], VAL_ENERGIES, size["val"], y_half=2.5, slope_half=0.0), 2)
    tests = dict(A=sim("energy_testA", k[2], TRAIN_ENERGIES, size["test"], y_half=2.5, slope_half=0.0),
                 B=sim("energy_testB", k[3], VAL_ENERGIES, size["test"], y_half=2.5, slope_half=0.0))
    log(f"energy: simulated {len(tr.e)} + {len(va.e)} + {sum(len(t.e) for t in tests.values())} showers "
        f"in {time.perf_counter() - t0:.0f} s")
    c0, c1 = fit_line(tr.total, tr.e)
    cal = lambda s: c0 + c1 * s.total                                          # noqa: E731
    inputs = lambda s: image_inputs(s.cells, s.e, cal(s))                     # noqa: E731
    preds = {name: {"classical": cal(t)} for name, t in tests.items()}
    inp_tr, inp_va = inputs(tr), inputs(va)                   # built once, shared by the five trainings
    inp_tests = {name: inputs(t) for name, t in tests.items()}
    history = {}
    for loss in LOSSES:
        t1 = time.perf_counter()
        cfg = TrainConfig(loss=loss, loss_options=LOSS_OPTIONS.get(loss, {}), epochs=size["epochs"], patience=8,
                          batch_size=256, learning_rate=2e-3, **SEED_REGULARISATION)
        net = train("energy", inp_tr, inp_va, model_config=SEED_MODEL, config=cfg, progress=True)
        for name, inp in inp_tests.items():
            preds[name][loss] = net.predict(inp)[:, 0]
        history[loss] = dict(seconds=time.perf_counter() - t1, best_epoch=net.history["best_epoch"],
                             epochs_run=net.history["epochs_run"])
        log(f"energy {loss}: {history[loss]['seconds']:.0f} s, best epoch {net.history['best_epoch']}/"
            f"{net.history['epochs_run']}; MAE A {np.mean(np.abs(preds['A'][loss] - tests['A'].e)):.3f} "
            f"(classical {np.mean(np.abs(preds['A']['classical'] - tests['A'].e)):.3f}) GeV")
    res = dict(calibration=dict(intercept=float(c0), slope=float(c1)), history=history, sets={})
    for name, t in tests.items():
        entry = {}
        for who, p in preds[name].items():
            entry[who] = dict(curve=curve(t.e, p), mae=float(np.mean(np.abs(p - t.e))),
                              rel_mae=float(np.mean(np.abs(p - t.e) / t.e)))
            if who != "classical":
                entry[who]["mae_ratio"] = mae_ratio(t.e, p, preds[name]["classical"])
        res["sets"][name] = entry
    # the best loss: lowest mean relative MAE over both test sets
    score = {loss: np.mean([res["sets"][n][loss]["rel_mae"] for n in tests]) for loss in LOSSES}
    best = min(score, key=score.get)
    res["best_loss"] = best
    res["fits"] = {who: resolution_fit(tests["A"].e, preds["A"][who]) for who in ("classical", best)}
    # over-fitting indicator: network/classical MAE ratio on the energies off the training grid
    # (7.5, 12.5 GeV in set B) minus its mean on the energies of set B that are on the grid (5, 10, 15)
    rB = {v: r for v, r, _ in res["sets"]["B"][best]["mae_ratio"]}
    rA = {v: r for v, r, _ in res["sets"]["A"][best]["mae_ratio"]}
    off, on = [rB[7.5], rB[12.5]], [rB[5.0], rB[10.0], rB[15.0]]
    res["overfitting"] = dict(
        off_grid_ratio=float(np.mean(off)), on_grid_ratio=float(np.mean(on)),
        indicator=float(np.mean(off) - np.mean(on)),
        set_difference=float(np.mean([rB[v] for v in (5.0, 7.5, 10.0, 12.5, 15.0)])
                             - np.mean([rA[v] for v in TRAIN_ENERGIES if 5.0 <= v <= 15.0])))
    plot_energy(res, tests, preds, out)
    return res


def run_position(det, size, key, out, log, cache_dir=None):
    k = jax.random.split(key, 3)
    sim = _simulator(det, cache_dir)
    t0 = time.perf_counter()
    tr = shuffled(sim("position_train", k[0], TRAIN_ENERGIES, size["pos_train"], y_half=10.0, slope_half=0.05), 3)
    va = shuffled(sim("position_val", k[1], TRAIN_ENERGIES, max(size["pos_test"] // 2, 50), y_half=10.0,
                      slope_half=0.05), 4)
    te = sim("position_test", k[2], TRAIN_ENERGIES, size["pos_test"], y_half=10.0, slope_half=0.05)
    log(f"position: simulated {len(tr.e) + len(va.e) + len(te.e)} showers in {time.perf_counter() - t0:.0f} s")
    z = layer_depths_mm(det)
    raw = {n: classical_position(s, z) for n, s in (("train", tr), ("val", va), ("test", te))}
    truth = truth_position(tr)
    corr = [fit_line(raw["train"][:, j], truth[:, j]) for j in range(4)]
    cl = {n: np.stack([corr[j][0] + corr[j][1] * r[:, j] for j in range(4)], axis=1) for n, r in raw.items()}
    units = np.array([PAD_MM, PAD_MM, SLOPE_UNIT, SLOPE_UNIT])
    e_cal = lambda s: s.total * (np.sum(tr.e) / np.sum(tr.total))                    # noqa: E731

    def inputs(s, est):
        off = np.stack([(est[:, 0] - s.xc) / PAD_MM, est[:, 1] / PAD_MM], axis=1)   # offset in the crop, pads
        vectors = np.stack([off, est[:, 2:] / SLOPE_UNIT], axis=1)                     # [n, 2 pairs, 2]
        return image_inputs(s.cells, s.e, e_cal(s), vectors=vectors,
                            target=(truth_position(s) - est) / units)

    t1 = time.perf_counter()
    cfg = TrainConfig(loss="mse", epochs=size["epochs"], patience=8, **SEED_REGULARISATION)
    net = train("position", inputs(tr, cl["train"]), inputs(va, cl["val"]), model_config=SEED_MODEL, config=cfg)
    pred = cl["test"] + net.predict(inputs(te, cl["test"])) * units
    log(f"position network: {time.perf_counter() - t1:.0f} s, best epoch {net.history['best_epoch']}")

    # the seed's parametrisation, to find the cause of its kinks: absolute (x, y) in mm and slopes in
    # rad as targets of one MSE, no classical base; where the crop sits (x of its centre) and the
    # classical slopes are features (the seed's second branch carried the classical angles)
    def seed_inputs(s, est):
        vectors = np.stack([np.stack([s.xc / 275.0, np.zeros_like(s.xc)], axis=1), est[:, 2:] / SLOPE_UNIT], axis=1)
        return image_inputs(s.cells, s.e, e_cal(s), vectors=vectors, target=truth_position(s))

    t1 = time.perf_counter()
    seed_net = train("position", seed_inputs(tr, cl["train"]), seed_inputs(va, cl["val"]), model_config=SEED_MODEL,
                     config=cfg)
    seed_pred = seed_net.predict(seed_inputs(te, cl["test"]))
    log(f"seed-parametrised position network: {time.perf_counter() - t1:.0f} s")
    true = truth_position(te)
    names = ("x_mm", "y_mm", "tx_mrad", "ty_mrad")
    scale = np.array([1.0, 1.0, 1000.0, 1000.0])
    res = dict(seconds=time.perf_counter() - t0, correction=[list(map(float, c)) for c in corr], resolution={})
    for j, nm in enumerate(names):
        row = {}
        for who, p in (("network", pred), ("classical", cl["test"]), ("classical_raw", raw["test"]),
                       ("seed_parametrisation", seed_pred)):
            d = (p[:, j] - true[:, j]) * scale[j]
            _, sig, err = core_width(d)
            row[who] = dict(core=float(sig), core_err=float(err), rms=float(np.sqrt(np.mean(d * d))),
                            per_energy=[float(np.sqrt(np.mean(d[te.e == v] ** 2))) for v in TRAIN_ENERGIES])
        res["resolution"][nm] = row
    plot_position(te, true, pred, cl["test"], raw["test"], seed_pred, out)
    return res


# ---- figures ----------------------------------------------------------------------------------------------
COLOURS = dict(classical="black", mse="tab:blue", mae="tab:orange", huber="tab:green", physics="tab:red",
               truncated_gaussian="tab:purple")


def plot_energy(res, tests, preds, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    for who, colour in COLOURS.items():
        for name, marker, ls in (("A", "o", "-"), ("B", "s", "--")):
            c = res["sets"][name][who]["curve"]
            lab = f"{who} ({name})" if name == "A" else None
            axes[0].plot(c["energy"], c["me"], marker=marker, ls=ls, color=colour, ms=4, label=lab)
            axes[1].plot(c["energy"], c["mae"], marker=marker, ls=ls, color=colour, ms=4, label=lab)
    best = res["best_loss"]
    for name, marker in (("A", "o"), ("B", "s")):
        r = np.array(res["sets"][name][best]["mae_ratio"])
        axes[2].errorbar(r[:, 0], 100 * (1 - r[:, 1]), 100 * r[:, 2], fmt=marker, capsize=2,
                         label=f"set {name}", color=COLOURS[best] if name == "A" else "tab:gray")
    axes[0].axhline(0, color="grey", lw=0.7)
    axes[2].axhline(0, color="grey", lw=0.7)
    axes[0].set(xlabel="E true (GeV)", ylabel="mean error (GeV)", title="ME (o: test A, s: test B)")
    axes[1].set(xlabel="E true (GeV)", ylabel="mean absolute error (GeV)", title="MAE")
    axes[2].set(xlabel="E true (GeV)", ylabel="MAE improvement over the sum (%)", title=f"best loss: {best}")
    axes[0].legend(fontsize=7)
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "luxe_energy.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, v in zip(axes, (2.5, 7.5, 12.5)):
        m = tests["B"].e == v
        for who in ("classical", best):
            ax.hist(preds["B"][who][m], bins=60, histtype="step", color=COLOURS[who], label=who, density=True)
        for t in TRAIN_ENERGIES:
            ax.axvline(t, color="grey", lw=0.5, ls=":")
        ax.axvline(v, color="k", lw=1)
        ax.set(xlim=(v - 3, v + 3), xlabel="E reco (GeV)", title=f"true {v} GeV (dotted: training energies)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "luxe_energy_offgrid.png", dpi=120)
    plt.close(fig)


def plot_position(te, true, pred, cl, raw, seed_pred, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ("x (mm)", "y (mm)", "x slope", "y slope")
    fig, axes = plt.subplots(3, 4, figsize=(17, 12))
    for j in range(4):
        for row, (who, p) in enumerate((("classical", cl), ("network", pred), ("seed-parametrised net", seed_pred))):
            ax = axes[row, j]
            lo, hi = np.percentile(true[:, j], [0.5, 99.5])
            ax.hist2d(true[:, j], p[:, j], bins=80, range=[[lo, hi], [lo, hi]], cmap="Greys")
            ax.plot([lo, hi], [lo, hi], color="tab:red", lw=0.7)
            ax.set(xlabel=f"true {labels[j]}", ylabel=f"{who} {labels[j]}")
    fig.tight_layout()
    fig.savefig(out / "luxe_position_pred_vs_true.png", dpi=110)
    plt.close(fig)

    # the S-curve: residual against the impact point within its pad
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, j, u in ((axes[0], 0, te.x), (axes[1], 1, te.y)):
        frac = (u / PAD_MM + 0.5) % 1.0 - 0.5
        bins = np.linspace(-0.5, 0.5, 21)
        idx = np.digitize(frac, bins) - 1
        for who, p, colour in (("raw centroid fit", raw, "tab:gray"), ("classical (recalibrated)", cl, "black"),
                               ("network", pred, "tab:blue"), ("seed-parametrised net", seed_pred, "tab:red")):
            d = p[:, j] - true[:, j]
            prof = [np.mean(d[idx == i]) if np.any(idx == i) else np.nan for i in range(20)]
            ax.plot(0.5 * (bins[1:] + bins[:-1]), prof, marker="o", ms=3, color=colour, label=who)
        ax.axhline(0, color="grey", lw=0.7)
        ax.set(xlabel=f"true {'xy'[j]} within the pad (pad units)", ylabel="mean residual (mm)",
               title=f"{'xy'[j]}: residual vs impact point in the pad")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "luxe_position_scurve.png", dpi=120)
    plt.close(fig)


def write_markdown(res, out):
    en, pos = res["energy"], res["position"]
    best = en["best_loss"]
    timing = f"{res['seconds']:.0f} s" + (", showers read from the --cache" if res.get("cached") else "")
    lines = [f"# LUXE ECAL reconstruction ({res['size']} size, {timing})", "",
             "Command: `" + res["command"] + "`", "",
             "## Energy: MAE (GeV) per test energy, network (each loss) vs the calibrated sum", ""]
    for name in ("A", "B"):
        sets = en["sets"][name]
        energies = sets["classical"]["curve"]["energy"]
        lines += [f"Test set {name} ({'training' if name == 'A' else 'validation'} energies)", "",
                  "| E (GeV) | sum | " + " | ".join(LOSSES) + f" | improvement of {best} over the sum |",
                  "|---" * (3 + len(LOSSES)) + "|"]
        for i, e in enumerate(energies):
            row = [f"{e:g}", f"{sets['classical']['curve']['mae'][i]:.3f}"]
            row += [f"{sets[l]['curve']['mae'][i]:.3f}" for l in LOSSES]
            _, r, err = sets[best]["mae_ratio"][i]
            row.append(f"{100 * (1 - r):.1f} +- {100 * err:.1f} %")
            lines.append("| " + " | ".join(row) + " |")
        lines += ["", "| | sum | " + " | ".join(LOSSES) + " |", "|---" * (2 + len(LOSSES)) + "|",
                  "| mean MAE / E | " + " | ".join(f"{100 * sets[w]['rel_mae']:.2f} %" for w in ("classical",) + LOSSES) + " |",
                  ""]
    f = en["fits"]
    def term(fit, name):
        err = fit[name + "_err"]
        return f"{100 * fit[name]:.2f} %" + (" (at its bound)" if err is None or err > 1 else f" +- {100 * err:.2f} %")

    lines += [f"Resolution fit sigma/E = a/sqrt(E) (+) b on test set A: sum a = {term(f['classical'], 'stochastic')}, "
              f"b = {term(f['classical'], 'constant')}; best network ({best}) a = {term(f[best], 'stochastic')}, "
              f"b = {term(f[best], 'constant')}.", "",
              f"Over-fitting indicator ({best}): network/sum MAE ratio {en['overfitting']['off_grid_ratio']:.3f} at the "
              f"off-grid energies 7.5, 12.5 GeV vs {en['overfitting']['on_grid_ratio']:.3f} at 5, 10, 15 GeV "
              f"(difference {en['overfitting']['indicator']:+.3f}); mean ratio set B - set A over 5-15 GeV: "
              f"{en['overfitting']['set_difference']:+.3f}.", "",
              "## Position and angle (test set, core width / RMS)", "",
              "| quantity | network | classical (recalibrated) | raw centroid fit | seed-parametrised network |",
              "|---|---|---|---|---|"]
    for nm, row in pos["resolution"].items():
        lines.append(f"| {nm} | " + " | ".join(f"{row[w]['core']:.3f} / {row[w]['rms']:.3f}"
                                               for w in ("network", "classical", "classical_raw", "seed_parametrisation")) + " |")
    lines += ["", "Figures: luxe_energy.png (ME, MAE, improvement), luxe_energy_offgrid.png (predictions at "
              "off-grid energies), luxe_position_pred_vs_true.png, luxe_position_scurve.png.", ""]
    (out / "results.md").write_text("\n".join(lines))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small samples (4.5 minutes on two cores)")
    ap.add_argument("--size", choices=sorted(SIZES), default=None, help="sample size by name (--quick = quick)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-position", action="store_true")
    ap.add_argument("--skip-energy", action="store_true")
    ap.add_argument("--cache", type=Path, default=None,
                    help="keep the simulated showers in this directory and reuse them (per size and seed)")
    ap.add_argument("-o", "--output", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    size_name = args.size or ("quick" if args.quick else "full")
    size = SIZES[size_name]
    out = args.output / size_name
    out.mkdir(parents=True, exist_ok=True)
    det = dc.Detector.from_layout(dc.layout.luxe())
    t0 = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", flush=True)

    key = jax.random.key(args.seed)
    res = dict(size=size_name, sizes=size, seed=args.seed,
               command="python studies/luxe_ecal/run.py" + (" --quick" if args.quick else ""))
    cache = None if args.cache is None else args.cache / f"{size_name}_s{args.seed}"
    res["cached"] = cache is not None and cache.exists()
    if not args.skip_energy:
        res["energy"] = run_energy(det, size, jax.random.fold_in(key, 1), out, log, cache)
    if not args.skip_position:
        res["position"] = run_position(det, size, jax.random.fold_in(key, 2), out, log, cache)
    res["seconds"] = time.perf_counter() - t0
    (out / "results.json").write_text(json.dumps(res, indent=1))
    if "position" in res and "energy" in res:
        write_markdown(res, out)
    log(f"done: {out}")
    return res


if __name__ == "__main__":
    main()
