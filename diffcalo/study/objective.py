r"""The objective of a design study: design -> layout -> simulate -> train the reconstruction -> metrics.

The design space and the design -> :class:`~diffcalo.layout.Layout` mapping are in
:mod:`diffcalo.study.design`.

Evaluation (:func:`evaluate_design`, a plain function of (:class:`~diffcalo.study.config.StudyConfig`,
design, seed) so that any worker process can run it): training photons log-uniform in energy, spread
equally over the regions, from the interaction point, with pile-up; the energy and position networks
(with cell times when there is pile-up) trained on them; then the figure of merit on signal photons:

- ``pi0_resolution`` (default): the effective pi0 -> gamma gamma mass resolution per candidate (MeV),
  sqrt(n / I) of an extended likelihood fit of a Gaussian peak on a threshold background over 0-400 MeV
  (:func:`diffcalo.metrics.fit_mass_peak_with_background`, :func:`diffcalo.metrics.pi0_figure_of_merit`):
  the peak width for a clean peak, larger with background under the peak or candidates off it; a
  sample without a 5-sigma peak gets the fit range's width (400 MeV), flagged
  ``pi0_is_measurement = False`` (minimise);
- ``pi0_width``: the Gaussian width of that fit (MeV; the same no-peak convention; minimise);
- ``bs_significance``: S/sqrt(S+B) of B_s -> J/psi pi0 in the best mass window, with S = 100 signal
  candidates against B = 2000 combinatorial candidates (the J/psi of a B_s paired with a photon pair from a
  minimum-bias pi0) spread over the same sample (maximise).

With pile-up and ``time_window_sigmas`` > 0, every cluster first passes a per-cell time window around
the signal vertex's expected arrival (:class:`diffcalo.reco.timing.TimeWindow`, fitted on the training
photons; the fraction of occupied cells dropped is recorded as ``time_window_dropped_cells``).

The pi0 is that of B_s -> J/psi pi0 decays (the seed's reference physics; the analytic sample of
:func:`diffcalo.samples.bs_jpsi_pi0_sample`). Photons are selected on the *reconstructed* transverse
energy (E_T > :data:`PHOTON_ET_MIN_GEV`, LHCb's resolved-pi0 cut) with a positive reconstructed energy;
the number of non-positive network energies is recorded (``nonpositive_energies``).

The result is a dict: fom, cost, metrics (pi0/B_s peak, masses and widths in MeV; per region, on
held-out photons, the network's energy-resolution curve, its fit (a, b, c with errors, limits and
chi2, as :func:`diffcalo.metrics.fit_resolution` gives it) and energy/position core widths with their
errors; channels) and timings (simulate, train, metrics, total in seconds). Every random number
derives from ``seed``. ``bs_significance`` has no statistical error estimate.
"""

from __future__ import annotations

import time

import numpy as np

from diffcalo.study.config import StudyConfig, require_study_config
from diffcalo.study.design import layout_from_design

__all__ = ["evaluate_design", "evaluate_layout", "evaluate_preset", "BASELINES"]

#: Reference layouts a study compares its optimum with (presets on the same wall, evaluated as they are).
BASELINES = ("lhcb-current", "lhcb-upgrade2-baseline")

SIGNAL_EVENTS = 100.0
#: Background particles simulated per window at most (the simulator's static cap); the fraction of
#: windows that drew more is reported in the metrics (``pileup_capped_fraction``).
MAX_BACKGROUND_PER_WINDOW = 48
BACKGROUND_EVENTS = 2000.0
#: Photon selection of the pi0 and B_s candidates on the reconstructed transverse energy (LHCb's resolved
#: pi0: photons with pT > 200 MeV).
PHOTON_ET_MIN_GEV = 0.2
#: Mass range of the pi0 peak fit (signal + background, :func:`diffcalo.metrics.fit_mass_peak_with_background`).
PI0_MASS_RANGE_GEV = (0.0, 0.4)


# ---- evaluation ---------------------------------------------------------------------------------------
def evaluate_design(config: StudyConfig, design: dict, seed: int) -> dict:
    """Evaluate one design (module docstring). Raises on invalid designs; the runner records failures.

    Raises:
        TypeError: ``config`` is not a :class:`~diffcalo.study.config.StudyConfig`.
        ValueError: the design's regions do not fit in the wall.
    """
    return evaluate_layout(config, layout_from_design(config, design), seed)


def evaluate_preset(config: StudyConfig, name: str, seed: int) -> dict:
    """Evaluate a preset layout by name (a reference design; a plain function for worker processes)."""
    from diffcalo.layout import preset

    return evaluate_layout(config, preset(name), seed)


def evaluate_layout(config: StudyConfig, layout, seed: int) -> dict:
    """Evaluate a :class:`~diffcalo.layout.Layout` (a design's, or a reference preset) with the study's
    samples, reconstruction and figure of merit.

    Raises:
        TypeError: ``config`` is not a :class:`~diffcalo.study.config.StudyConfig`.
    """
    import jax
    import jax.numpy as jnp

    import diffcalo as dc
    from diffcalo import metrics
    from diffcalo.clusters import Clusters
    from diffcalo.pileup import PileupModel
    from diffcalo.reco import Reconstruction, TrainConfig
    from diffcalo.reco.classical import window_centre
    from diffcalo.samples import bs_jpsi_pi0_sample, invariant_mass, pi0_sample

    cfg = require_study_config(config)
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
    # The signal photons of both figures of merit: B_s -> J/psi pi0 (the seed's reference physics).
    bs = bs_jpsi_pi0_sample(jax.random.fold_in(root, 9), cfg.signal_decays, layout=layout)
    batches["bs"] = bs.photons
    if cfg.figure_of_merit == "bs_significance":
        # combinatorial background: the J/psi of a B_s with the photon pair of a minimum-bias pi0
        batches["pi0"] = pi0_sample(jax.random.fold_in(root, 7), cfg.signal_decays, layout=layout).photons
    names = list(batches)
    sizes = [batches[k].n for k in names]
    everything = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *[batches[k] for k in names])
    t0 = time.perf_counter()
    c_all = dc.simulate(det, everything, key=jax.random.fold_in(root, 8),
                                                           mode="realistic", pileup=pu, on_invalid="flag",
                        max_background=MAX_BACKGROUND_PER_WINDOW).as_numpy()
    timings["simulate"] = time.perf_counter() - t0
    part = dict(zip(names, c_all.split(sizes)))
    window_dropped = None
    if pu is not None and cfg.time_window_sigmas > 0:
        # per-cell time window around the signal's expected arrival (fitted on the training photons)
        from diffcalo.reco.timing import TimeWindow

        train_all = Clusters.concatenate([part[("train", r)] for r in range(n_regions)])
        window = TimeWindow.fit(train_all, det, n_sigma=cfg.time_window_sigmas)
        dropped_cells = []
        for k in names:
            part[k], d = window.apply(part[k])
            dropped_cells.append(d)
        window_dropped = float(np.mean(dropped_cells))
    sets = [Clusters.concatenate([part[(p, r)] for r in range(n_regions)]) for p in ("train", "validation", "test")]
    t0 = time.perf_counter()
    tcfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, use_time=pu is not None, seed=seed % (2 ** 31))
    reco = Reconstruction.fit(sets[0], sets[1], tasks=("energy", "position"), z_mm=layout.z_mm,
                              train_config=tcfg, progress=False)
    timings["train"] = time.perf_counter() - t0

    def photons_p4(c):
        """Reconstructed photon-pair four-momenta [pairs, 2, 4] and the selection: both photons on the
        wall with a positive reconstructed energy and reconstructed E_T above PHOTON_ET_MIN_GEV."""
        t0 = time.perf_counter()
        pred = reco.predict(c)
        pos = window_centre(c) + pred["offset"]
        d = np.stack([pos[:, 0], pos[:, 1], np.full(len(pos), layout.z_mm)], axis=1)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        e = pred["energy"]
        p4 = np.concatenate([e[:, None], e[:, None] * d], axis=1).reshape(-1, 2, 4)
        et = (e * np.hypot(d[:, 0], d[:, 1])).reshape(-1, 2)
        positive = (e > 0).reshape(-1, 2)
        ok = ((np.asarray(c.status).reshape(-1, 2) == 0).all(1) & positive.all(1) & (et > PHOTON_ET_MIN_GEV).all(1)
              & np.isfinite(p4).all((1, 2)))
        timings["metrics"] += time.perf_counter() - t0
        return p4, ok, int((~positive).sum())

    m = {}
    t0 = time.perf_counter()
    m["regions"] = _region_summary(reco, sets[2])
    timings["metrics"] += time.perf_counter() - t0
    p4, ok, nonpositive = photons_p4(part["bs"])
    t0 = time.perf_counter()
    mass = invariant_mass(p4[ok, 0], p4[ok, 1])
    peak = metrics.fit_mass_peak_with_background(mass, window=PI0_MASS_RANGE_GEV)
    res = metrics.pi0_figure_of_merit(peak)
    found = bool(peak["peak_found"])
    m.update(pi0_resolution_mev=1000 * res.value, pi0_resolution_err_mev=1000 * res.error,
             pi0_is_measurement=bool(res.is_measurement), pi0_note=res.reason,
             pi0_mean_mev=1000 * peak["mean"] if found else None,
             pi0_width_mev=1000 * peak["width"] if found else 1000 * res.value,
             pi0_width_err_mev=1000 * peak["width_err"] if found else 0.0,
             pi0_width_limit_mev=None if peak["width_limit"] is None else 1000 * peak["width_limit"],
             pi0_purity=peak["purity"], pi0_signal=peak["signal"], pi0_pairs=int(ok.sum()),
             pi0_fit_p_value=peak["p_value"], nonpositive_energies=nonpositive)
    timings["metrics"] += time.perf_counter() - t0
    if cfg.figure_of_merit == "bs_significance":
        bp4, bok = p4, ok
        p4b, okb, _ = photons_p4(part["pi0"])
        t0 = time.perf_counter()
        jpsi = bs.jpsi_p4[bs.accepted]
        sig_mass = invariant_mass(jpsi[bok], bp4[bok, 0], bp4[bok, 1])
        # combinatorics: each J/psi with the photon pair of an unrelated minimum-bias pi0
        n_b = min(int(okb.sum()), int(bok.sum()))
        bkg_mass = invariant_mass(jpsi[bok][:n_b], p4b[okb][:n_b, 0], p4b[okb][:n_b, 1])
        bpeak = metrics.fit_mass_peak(sig_mass, window=(4.0, 7.0))
        sig = metrics.significance(sig_mass, bkg_mass, n_signal=SIGNAL_EVENTS, n_background=BACKGROUND_EVENTS)
        m.update(bs_mean_mev=1000 * bpeak["mean"], bs_width_mev=1000 * bpeak["width"], bs_significance=sig.significance,
                 bs_window=[sig.mass_lo, sig.mass_hi], bs_candidates=int(bok.sum()))
        timings["metrics"] += time.perf_counter() - t0
    fom = {"pi0_width": m["pi0_width_mev"], "pi0_resolution": m["pi0_resolution_mev"]}.get(
        cfg.figure_of_merit, m.get("bs_significance"))
    m["channels"] = int(sum(layout.channels_in_region(i) for i in range(len(layout.regions))))
    # windows whose drawn background exceeded the simulator's static cap were clipped to the cap
    m["pileup_capped_fraction"] = float(np.mean(np.asarray(c_all.n_background) > MAX_BACKGROUND_PER_WINDOW))
    if window_dropped is not None:
        m["time_window_dropped_cells"] = window_dropped
    for task, net in reco.nets.items():
        m[f"{task}_epochs"] = net.history["epochs_run"]
    timings["total"] = time.perf_counter() - t_start
    if not np.isfinite(fom):
        raise FloatingPointError(f"figure of merit {cfg.figure_of_merit} is {fom}")
    return dict(fom=float(fom), cost=float(layout.cost()), metrics=m, timings=timings)


def _region_summary(reco, test) -> list[dict]:
    """Per region, on held-out photons: the network's energy-resolution curve (core width of E_reco/E
    per log energy bin), its fit a/sqrt(E) (+) b (+) c/E (the whole fit record: errors, limits, chi2),
    and energy (relative) and position (mm) core widths with their statistical errors."""
    from diffcalo.reco import evaluate

    out = []
    for r, entry in sorted(evaluate(reco, test, bins=6)["regions"].items(), key=lambda kv: int(kv[0])):
        net = entry["network"]
        fit = net["energy_fit"]
        out.append(dict(region=int(r), cell_mm=entry["cell_mm"], n=entry["n"],
                        energy_curve={k: net["energy_curve"][k] for k in ("energy", "resolution", "resolution_err")},
                        energy_fit=dict(fit), energy_core=net["energy_rel"]["core"],
                        energy_core_err=net["energy_rel"]["core_err"], position_core_mm=net["position_mm"]["core"],
                        position_core_err_mm=net["position_mm"]["core_err"]))
    return out
