r"""The objective of a design study: design -> layout -> simulate -> train the reconstruction -> metrics.

Design space (:func:`design_space`) of an ECAL wall with ``regions`` nested regions:

- ``option_i`` (categorical, one per region, innermost first): "technology:cell_mm" from the config;
- ``ring_i`` (integer 1..max_ring, one per inner region): region i extends its inner neighbour (the
  beam hole for i = 0) by ``ring_i`` modules on each side in x and round(ring_i * H/W) (at least 1) in
  y, H/W the wall's aspect ratio; the last region is the rest of the wall;
- ``split`` (categorical true/false, when the config searches it): read segmented technologies in
  their sections (true) or as one section (false).

Known constraint: the layout is valid (regions nested inside the wall) and its cost is within the
budget. The search space knows nothing of physics; :func:`layout_from_design` turns a design into a
:class:`~diffcalo.layout.Layout`.

Evaluation (:func:`evaluate_design`, a plain function of (config dict, design, seed) so that any
worker process can run it): training photons log-uniform in energy, spread equally over the
regions, from the interaction point, with pile-up; the energy and position networks (with cell
times when there is pile-up) trained on them; then the figure of merit on signal photons:

- ``pi0_width``: core width (MeV) of the reconstructed pi0 -> gamma gamma mass, both photons above
  1 GeV (minimise);
- ``bs_significance``: S/sqrt(S+B) of B_s -> J/psi pi0 in the best mass window, with S = 100 signal
  candidates against B = 2000 combinatorial candidates (the J/psi of a B_s paired with a photon pair from a
  minimum-bias pi0) spread over the same sample (maximise).

The result is a dict: fom, cost, metrics (pi0/B_s peak; per region, on held-out photons, the
network's energy-resolution curve, fitted a, b, c and energy/position core widths; channels) and timings
(simulate, train, metrics, total in seconds). Every random number derives from ``seed``.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from diffcalo.study.config import StudyConfig, study_config_from_dict

__all__ = ["design_space", "layout_from_design", "evaluate_design", "evaluate_layout", "evaluate_preset", "BASELINES"]

#: Reference layouts a study compares its optimum with (presets on the same wall, evaluated as they are).
BASELINES = ("lhcb-current", "lhcb-upgrade2-baseline")

SIGNAL_EVENTS = 100.0
#: Background particles simulated per window at most (the simulator's static cap); the fraction of
#: windows that drew more is reported in the metrics (``pileup_capped_fraction``).
MAX_BACKGROUND_PER_WINDOW = 12
BACKGROUND_EVENTS = 2000.0


def _cfg(config) -> StudyConfig:
    return config if isinstance(config, StudyConfig) else study_config_from_dict(_as_sections(config))


def _as_sections(flat: dict) -> dict:
    """A flat :meth:`StudyConfig.as_dict` back into TOML sections (for validation in workers)."""
    from diffcalo.study.config import _RENAME, _SECTIONS

    back = {v: k for k, v in _RENAME.items()}
    out: dict = {}
    for key, value in flat.items():
        section, name = back.get(key, (None, key))
        if section is None:
            section = next(s for s, keys in _SECTIONS.items() if key in keys)
        out.setdefault(section, {})[name] = value
    return out


def layout_from_design(config, design: dict):
    """The :class:`~diffcalo.layout.Layout` of a design (validated).

    Raises:
        ValueError: the regions do not fit in the wall (or another layout rule is broken).
    """
    from diffcalo.layout import Layout, Region, preset

    cfg = _cfg(config)
    wall = preset(cfg.layout)
    aspect = wall.modules_y / wall.modules_x
    prev = wall.beam_hole
    regions = []
    split = bool(design.get("split", True))
    for i in range(cfg.regions):
        tech, cell = _option(design[f"option_{i}"])
        if i < cfg.regions - 1:
            ring = int(design[f"ring_{i}"])
            mx, my = prev[0] + 2 * ring, prev[1] + 2 * max(1, round(ring * aspect))
            if mx >= wall.modules_x or my >= wall.modules_y:
                raise ValueError(f"design: region {i} ({mx} x {my} modules) does not fit inside the "
                                 f"{wall.modules_x} x {wall.modules_y} wall")
        else:
            mx, my = wall.modules_x, wall.modules_y
        regions.append(Region(f"r{i}-{tech}", tech, cell, mx, my, sections=None if split else 1))
        prev = (mx, my)
    return Layout(name="design", module_mm=wall.module_mm, modules_x=wall.modules_x, modules_y=wall.modules_y,
                  regions=tuple(regions), beam_hole=wall.beam_hole, z_mm=wall.z_mm).validate()


def _option(text):
    tech, _, cell = str(text).partition(":")
    return tech, float(cell)


def design_space(config):
    """The :class:`surrogates.space.Space` of the study, with the known constraint (valid, within budget)."""
    from surrogates.space import Categorical, Integer, Space

    cfg = _cfg(config)
    params = [Categorical(f"option_{i}", tuple(cfg.options)) for i in range(cfg.regions)]
    params += [Integer(f"ring_{i}", 1, cfg.max_ring) for i in range(cfg.regions - 1)]
    if cfg.split:
        params.append(Categorical("split", (True, False)))

    def feasible(design):
        try:
            return layout_from_design(cfg, design).cost() <= cfg.budget
        except ValueError:
            return False

    return Space(params, constraint=feasible)


# ---- evaluation ---------------------------------------------------------------------------------------
def _concat(parts):
    from diffcalo.simulation import Clusters

    return Clusters(**{f.name: np.concatenate([np.asarray(getattr(p, f.name)) for p in parts])
                       for f in dataclasses.fields(Clusters)})


def evaluate_design(config, design: dict, seed: int) -> dict:
    """Evaluate one design (module docstring). Raises on invalid designs; the runner records failures."""
    return evaluate_layout(config, layout_from_design(config, design), seed)


def evaluate_preset(config, name: str, seed: int) -> dict:
    """Evaluate a preset layout by name (a reference design; a plain function for worker processes)."""
    from diffcalo.layout import preset

    return evaluate_layout(config, preset(name), seed)


def evaluate_layout(config, layout, seed: int) -> dict:
    """Evaluate a :class:`~diffcalo.layout.Layout` (a design's, or a reference preset) with the study's
    samples, reconstruction and figure of merit."""
    import jax
    import jax.numpy as jnp

    import diffcalo as dc
    from diffcalo import metrics
    from diffcalo.pileup import PileupModel
    from diffcalo.reco.classical import window_centre
    from diffcalo.reco.pipeline import Reconstruction
    from diffcalo.reco.train import TrainConfig
    from diffcalo.samples import bs_jpsi_pi0_sample, invariant_mass, pi0_sample

    cfg = _cfg(config)
    t_start = time.perf_counter()
    timings = dict(simulate=0.0, train=0.0, metrics=0.0)
    det = dc.Detector.from_layout(layout)
    pu = PileupModel.default(collisions_per_crossing=cfg.collisions) if cfg.collisions > 0 else None
    root = jax.random.key(seed)
    spectrum = dc.log_uniform_energy(*cfg.photon_energy)
    n_regions = len(layout.regions)
    per_region = cfg.train_photons // n_regions

    # Every particle of the evaluation goes through ONE simulate call: the layout is static under jit,
    # so each new design compiles the simulator once per distinct call shape (measured: 7 calls took
    # ~36 s of compilation per design, one call ~5 s). The compiled simulator and training step depend
    # only on shapes (number of regions and sections, sample sizes), not on the technologies, cell
    # sizes or extents, so a study compiles once per split choice: later designs take seconds.
    batches = {}
    for part, n in (("train", per_region), ("validation", max(per_region // 5, 60)), ("test", max(per_region // 5, 200))):
        for r in range(n_regions):
            k_gun = jax.random.fold_in(root, 1000 * (part == "train") + 2000 * (part == "test") + r)
            batches[(part, r)] = dc.gun(k_gun, n, layout, region=r, energy=spectrum)
    pi0 = pi0_sample(jax.random.fold_in(root, 7), cfg.signal_decays, layout=layout)
    batches["pi0"] = pi0.photons
    bs = None
    if cfg.figure_of_merit == "bs_significance":
        bs = bs_jpsi_pi0_sample(jax.random.fold_in(root, 9), cfg.signal_decays, layout=layout)
        batches["bs"] = bs.photons
    names = list(batches)
    sizes = [batches[k].n for k in names]
    everything = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *[batches[k] for k in names])
    t0 = time.perf_counter()
    c_all = jax.tree_util.tree_map(np.asarray, dc.simulate(det, everything, key=jax.random.fold_in(root, 8),
                                                           mode="realistic", pileup=pu, on_invalid="flag",
                                                           max_background=MAX_BACKGROUND_PER_WINDOW))
    timings["simulate"] = time.perf_counter() - t0
    bounds = np.cumsum([0] + sizes)
    part = {k: jax.tree_util.tree_map(lambda a, i=i: a[bounds[i]:bounds[i + 1]], c_all) for i, k in enumerate(names)}
    sets = [_concat([part[(p, r)] for r in range(n_regions)]) for p in ("train", "validation", "test")]
    t0 = time.perf_counter()
    tcfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, use_time=pu is not None, seed=seed % (2 ** 31))
    reco = Reconstruction.fit(sets[0], sets[1], tasks=("energy", "position"), z_mm=layout.z_mm,
                              train_config=tcfg, progress=False)
    timings["train"] = time.perf_counter() - t0

    def photons_p4(c):
        t0 = time.perf_counter()
        pred = reco.predict(c)
        pos = window_centre(c) + pred["offset"]
        d = np.stack([pos[:, 0], pos[:, 1], np.full(len(pos), layout.z_mm)], axis=1)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        p4 = np.concatenate([pred["energy"][:, None], pred["energy"][:, None] * d], axis=1).reshape(-1, 2, 4)
        e_true = np.asarray(c.e_true).reshape(-1, 2)
        ok = (np.asarray(c.status).reshape(-1, 2) == 0).all(1) & (e_true > 1.0).all(1) & np.isfinite(p4).all((1, 2))
        timings["metrics"] += time.perf_counter() - t0
        return p4, ok

    m = {}
    t0 = time.perf_counter()
    m["regions"] = _region_summary(reco, sets[2])
    timings["metrics"] += time.perf_counter() - t0
    p4, ok = photons_p4(part["pi0"])
    t0 = time.perf_counter()
    mass = invariant_mass(p4[ok, 0], p4[ok, 1])
    peak = metrics.fit_mass_peak(mass, window=(0.0, 0.4))
    m.update(pi0_mean_mev=1000 * peak["mean"], pi0_width_mev=1000 * peak["width"],
             pi0_width_err_mev=1000 * peak["width_err"], pi0_pairs=int(ok.sum()))
    timings["metrics"] += time.perf_counter() - t0
    if cfg.figure_of_merit == "bs_significance":
        bp4, bok = photons_p4(part["bs"])
        t0 = time.perf_counter()
        jpsi = bs.jpsi_p4[bs.accepted]
        sig_mass = invariant_mass(jpsi[bok], bp4[bok, 0], bp4[bok, 1])
        # combinatorics: each J/psi with the photon pair of an unrelated minimum-bias pi0
        n_b = min(int(ok.sum()), int(bok.sum()))
        bkg_mass = invariant_mass(jpsi[bok][:n_b], p4[ok][:n_b, 0], p4[ok][:n_b, 1])
        bpeak = metrics.fit_mass_peak(sig_mass, window=(4.0, 7.0))
        sig = metrics.significance(sig_mass, bkg_mass, n_signal=SIGNAL_EVENTS, n_background=BACKGROUND_EVENTS)
        m.update(bs_mean_mev=1000 * bpeak["mean"], bs_width_mev=1000 * bpeak["width"], bs_significance=sig.significance,
                 bs_window=[sig.mass_lo, sig.mass_hi], bs_candidates=int(bok.sum()))
        timings["metrics"] += time.perf_counter() - t0
    fom = m["pi0_width_mev"] if cfg.figure_of_merit == "pi0_width" else m["bs_significance"]
    m["channels"] = int(sum(layout.channels_in_region(i) for i in range(len(layout.regions))))
    # windows whose drawn background exceeded the simulator's static cap were clipped to the cap
    m["pileup_capped_fraction"] = float(np.mean(np.asarray(c_all.n_background) > MAX_BACKGROUND_PER_WINDOW))
    for task, net in reco.nets.items():
        m[f"{task}_epochs"] = net.history["epochs_run"]
    timings["total"] = time.perf_counter() - t_start
    if not np.isfinite(fom):
        raise FloatingPointError(f"figure of merit {cfg.figure_of_merit} is {fom}")
    return dict(fom=float(fom), cost=float(layout.cost()), metrics=m, timings=timings)


def _region_summary(reco, test) -> list[dict]:
    """Per region, on held-out photons: the network's energy-resolution curve (core width of E_reco/E
    per log energy bin), its fitted a/sqrt(E) (+) b (+) c/E, and energy and position core widths."""
    from diffcalo.reco.pipeline import evaluate

    out = []
    for r, entry in sorted(evaluate(reco, test, bins=6)["regions"].items(), key=lambda kv: int(kv[0])):
        net = entry["network"]
        fit = net["energy_fit"]
        out.append(dict(region=int(r), cell_mm=entry["cell_mm"], n=entry["n"],
                        energy_curve={k: net["energy_curve"][k] for k in ("energy", "resolution", "resolution_err")},
                        energy_fit={k: fit[k] for k in ("stochastic", "constant", "noise") if k in fit} or fit,
                        energy_core=net["energy_rel"]["core"], position_core_mm=net["position_mm"]["core"]))
    return out
