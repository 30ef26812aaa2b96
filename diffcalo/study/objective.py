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
  candidates against B = 2000 combinatorial candidates (the J/psi of a B_s paired with the photon pair of
  a minimum-bias pi0 from another collision of the crossing) spread over the same sample (maximise). With
  pile-up a time network is trained too (seed 004's time regressor): both photons of a candidate must
  arrive within a time window of the signal vertex's expected arrival; the time and mass windows are
  those that maximise the significance (``bs_time_cut_ps``, ``bs_window``).

Vertices: every photon comes from a collision vertex of the luminous region (z spread 53 mm, arrival
spread 250 ps for 7.5 cm bunches: :func:`diffcalo.pileup.luminous_region`); the two photons of a decay
share theirs. The signal vertex is known (from the tracker): photon directions are taken from it and
time windows centre on its expected arrival; a background pi0's photons come from their own vertex but
are reconstructed from the signal vertex of the J/psi they are combined with.

With pile-up and ``time_window_sigmas`` > 0, every cluster first passes a per-cell time window around
the (signal) vertex's expected arrival (:class:`diffcalo.reco.timing.TimeWindow`, fitted on the training
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
    from diffcalo.particles import from_vertices
    from diffcalo.pileup import BUNCH_LENGTH_MM, PileupModel, luminous_region
    from diffcalo.reco import Reconstruction, TrainConfig
    from diffcalo.reco.classical import window_centre
    from diffcalo.samples import bs_jpsi_pi0_sample, invariant_mass, pi0_sample
    from diffcalo.simulation.readout import SPEED_OF_LIGHT_MM_PER_NS

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
    # Every photon comes from a vertex of the luminous region (z and arrival-time spreads of the bunches,
    # :func:`diffcalo.pileup.luminous_region`); a pair shares its decay's vertex. The signal vertex is
    # known from the tracker: photon directions are taken from it, and time windows centre on it.
    bunch = pu.bunch_length_mm if pu is not None else BUNCH_LENGTH_MM
    vertices = {}

    def at_vertices(name, photons, per_pair):
        n_v = photons.n // 2 if per_pair else photons.n
        z_v, t_v = luminous_region(jax.random.fold_in(root, 11 + len(vertices)), n_v, bunch)
        if per_pair:
            z_v, t_v = np.repeat(z_v, 2), np.repeat(t_v, 2)
        vertices[name] = (z_v, t_v)
        return from_vertices(photons, z_v, t_v, layout.z_mm)

    batches = {}
    for part, n in (("train", per_region), ("validation", max(per_region // 5, 60)), ("test", max(per_region // 5, 200))):
        for r in range(n_regions):
            k_gun = jax.random.fold_in(root, 1000 * (part == "train") + 2000 * (part == "test") + r)
            batches[(part, r)] = at_vertices((part, r), dc.gun(k_gun, n, layout, region=r, energy=spectrum), False)
    # The signal photons of both figures of merit: B_s -> J/psi pi0 (the seed's reference physics).
    bs = bs_jpsi_pi0_sample(jax.random.fold_in(root, 9), cfg.signal_decays, layout=layout)
    batches["bs"] = at_vertices("bs", bs.photons, True)
    n_sig = batches["bs"].n // 2
    if cfg.figure_of_merit == "bs_significance":
        # combinatorial background: the J/psi of B_s decay j (mod the number of decays on the wall) with the
        # photon pair of a minimum-bias pi0 from another collision of the crossing (its own vertex and
        # arrival time; the same vertex without pile-up)
        batches["pi0"] = at_vertices("pi0", pi0_sample(jax.random.fold_in(root, 7), cfg.signal_decays,
                                                        layout=layout).photons, True)
        partner = np.arange(batches["pi0"].n // 2) % n_sig              # the signal decay of each pair
        if pu is None:
            z_b, t_b = vertices["bs"][0][0::2][partner], vertices["bs"][1][0::2][partner]
            batches["pi0"] = from_vertices(batches["pi0"], np.repeat(z_b, 2), np.repeat(t_b, 2), layout.z_mm)
            vertices["pi0"] = (np.repeat(z_b, 2), np.repeat(t_b, 2))
        # the signal vertex each background photon is combined with (reconstruction and time windows)
        vertices["pi0_reference"] = tuple(np.repeat(v[0::2][partner], 2) for v in vertices["bs"])
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
        # per-cell time window around the signal vertex's expected arrival (fitted on the training photons)
        from diffcalo.reco.timing import TimeWindow

        train_all = Clusters.concatenate([part[("train", r)] for r in range(n_regions)])
        window = TimeWindow.fit(train_all, det, n_sigma=cfg.time_window_sigmas)
        dropped_cells = []
        for k in names:
            ref = vertices["pi0_reference"][1] if k == "pi0" else None
            part[k], d = window.apply(part[k], reference_ns=ref)
            dropped_cells.append(d)
        window_dropped = float(np.mean(dropped_cells))
    sets = [Clusters.concatenate([part[(p, r)] for r in range(n_regions)]) for p in ("train", "validation", "test")]
    t0 = time.perf_counter()
    tcfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, use_time=pu is not None, seed=seed % (2 ** 31))
    # the time regressor defines the B_s candidates' time window (seed 004); only needed with pile-up
    timed = cfg.figure_of_merit == "bs_significance" and pu is not None
    tasks = ("energy", "position", "time") if timed else ("energy", "position")
    reco = Reconstruction.fit(sets[0], sets[1], tasks=tasks, z_mm=layout.z_mm, train_config=tcfg, progress=False)
    timings["train"] = time.perf_counter() - t0

    def photons(c):
        """Reconstructed photons: energy [n], impact point (x, y) [n, 2], time [n] (NaN without the
        time network), and whether the photon is usable (on the wall, positive finite energy)."""
        t0 = time.perf_counter()
        pred = reco.predict(c)
        pos = window_centre(c) + pred["offset"]
        e = pred["energy"]
        usable = (np.asarray(c.status) == 0) & (e > 0) & np.isfinite(e) & np.isfinite(pos).all(1)
        t_reco = pred["time"] if "time" in reco.nets else np.full(len(e), np.nan)
        timings["metrics"] += time.perf_counter() - t0
        return e, pos, t_reco, usable

    def pairs_p4(e, pos, usable, vertex_z):
        """Photon-pair four-momenta [pairs, 2, 4] with directions from the (known) signal vertex at
        ``vertex_z`` [n], and the selection: both photons usable with reconstructed E_T above
        PHOTON_ET_MIN_GEV."""
        d = np.stack([pos[:, 0], pos[:, 1], layout.z_mm - vertex_z], axis=1)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        p4 = np.concatenate([e[:, None], e[:, None] * d], axis=1).reshape(-1, 2, 4)
        et = (e * np.hypot(d[:, 0], d[:, 1])).reshape(-1, 2)
        ok = usable.reshape(-1, 2).all(1) & (et > PHOTON_ET_MIN_GEV).all(1) & np.isfinite(p4).all((1, 2))
        return p4, ok

    def pair_time_residual(pos, t_reco, reference_ns):
        """Per pair, the larger |reconstructed photon time - expected arrival from the signal vertex| (ns)."""
        flight = np.sqrt(pos[:, 0] ** 2 + pos[:, 1] ** 2 + layout.z_mm ** 2) / SPEED_OF_LIGHT_MM_PER_NS
        return np.abs(t_reco - reference_ns - flight).reshape(-1, 2).max(axis=1)

    m = {}
    t0 = time.perf_counter()
    m["regions"] = _region_summary(reco, sets[2])
    timings["metrics"] += time.perf_counter() - t0
    e_s, pos_s, t_s, use_s = photons(part["bs"])
    nonpositive = int((~(e_s > 0)).sum())
    t0 = time.perf_counter()
    p4, ok = pairs_p4(e_s, pos_s, use_s, vertices["bs"][0])
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
        e_b, pos_b, t_b, use_b = photons(part["pi0"])
        t0 = time.perf_counter()
        ref_z, ref_t = vertices["pi0_reference"]
        p4b, okb = pairs_p4(e_b, pos_b, use_b, ref_z)
        jpsi = bs.jpsi_p4[bs.accepted]
        sig_mass = invariant_mass(jpsi[ok], p4[ok, 0], p4[ok, 1])
        partner = np.arange(len(okb)) % n_sig
        bkg_mass = invariant_mass(jpsi[partner[okb]], p4b[okb, 0], p4b[okb, 1])
        timing = {}
        if timed:
            # both photons inside a time window around the signal vertex's expected arrival; the window
            # (in units of the signal's core time residual) and the mass window maximise S / sqrt(S + B)
            dt_s = pair_time_residual(pos_s, t_s, vertices["bs"][1])
            dt_b = pair_time_residual(pos_b, t_b, ref_t)
            timing = dict(signal_dt=dt_s[ok], background_dt=dt_b[okb])
            m["photon_time_resolution_ps"] = 1000 * metrics.core_width(
                (t_s - np.asarray(part["bs"].t_true))[use_s & np.isfinite(t_s)])[1]
            m["bs_significance_no_time_cut"] = metrics.significance(
                sig_mass, bkg_mass, n_signal=SIGNAL_EVENTS, n_background=BACKGROUND_EVENTS).significance
        bpeak = metrics.fit_mass_peak(sig_mass, window=(4.0, 7.0))
        sig = metrics.significance(sig_mass, bkg_mass, n_signal=SIGNAL_EVENTS, n_background=BACKGROUND_EVENTS,
                                   **timing)
        m.update(bs_mean_mev=1000 * bpeak["mean"], bs_width_mev=1000 * bpeak["width"], bs_significance=sig.significance,
                 bs_window=[sig.mass_lo, sig.mass_hi], bs_time_cut_ps=1000 * sig.time_cut if (timed and np.isfinite(sig.time_cut)) else None,
                 bs_signal=sig.signal, bs_background=sig.background, bs_candidates=int(ok.sum()),
                 bs_background_candidates=int(okb.sum()))
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
