"""The objective's seed-to-seed noise and what it resolves: the reference layouts (current LHCb ECAL, the
Upgrade II baseline) evaluated with several seeds each (new samples, pile-up draws and network
initialisations), per-seed figures of merit, their mean, standard deviation and standard error, and the
separation of the two layouts in units of the combined error.

    .venv/bin/python studies/lhcb_ecal_upgrade2/noise.py [--seeds 3] [--quick] [--collisions 40]
        [--fom pi0_resolution|pi0_width|bs_significance] [-o noise.json]

``--quick`` uses the sample sizes of ``diffcalo demo``; the default, those of study.toml.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np

from diffcalo.study.config import load_study_config, study_config_from_dict
from diffcalo.study.flagship import QUICK
from diffcalo.study.objective import BASELINES, evaluate_preset


def _one(cfg, name, seed):
    t0 = time.perf_counter()
    r = evaluate_preset(cfg, name, seed)
    m = r["metrics"]
    keep = ("pi0_resolution_mev", "pi0_resolution_err_mev", "pi0_width_mev", "pi0_width_err_mev", "pi0_mean_mev",
            "pi0_purity", "pi0_is_measurement", "pi0_pairs", "pileup_capped_fraction", "time_window_dropped_cells",
            "nonpositive_energies", "bs_significance", "bs_significance_no_time_cut", "bs_time_cut_ps", "bs_window",
            "bs_signal", "bs_background", "bs_width_mev", "photon_time_resolution_ps")
    return name, seed, r["fom"], {k: m.get(k) for k in keep}, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--collisions", type=float, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--fom", default=None, help="figure of merit (default: the study's)")
    ap.add_argument("-o", "--output", default=None)
    args = ap.parse_args(argv)
    cfg = study_config_from_dict(QUICK) if args.quick else load_study_config(Path(__file__).with_name("study.toml"))
    if args.collisions is not None:
        cfg = dataclasses.replace(cfg, collisions=args.collisions)
    if args.fom is not None:
        from diffcalo.study.config import study_config_from_flat

        cfg = study_config_from_flat(dict(cfg.as_dict(), figure_of_merit=args.fom))
    jobs = [(name, 1000 + s) for name in BASELINES for s in range(args.seeds)]
    rows = []
    with concurrent.futures.ProcessPoolExecutor(args.workers) as pool:
        futures = [pool.submit(_one, cfg, name, seed) for name, seed in jobs]
        for f in concurrent.futures.as_completed(futures):
            name, seed, fom, m, dt = f.result()
            rows.append(dict(layout=name, seed=seed, fom=fom, metrics=m, seconds=dt))
            print(f"{name:<24} seed {seed}: {cfg.figure_of_merit} = {fom:.2f} "
                  f"(fit error {m.get(cfg.figure_of_merit + '_err_mev')}), {dt:.0f} s", flush=True)
    stats = {}
    for name in BASELINES:
        v = np.array([r["fom"] for r in rows if r["layout"] == name])
        fit_err = np.array([r["metrics"].get(cfg.figure_of_merit + "_err_mev", np.nan) or np.nan for r in rows
                            if r["layout"] == name])
        stats[name] = dict(values=v.tolist(), mean=float(v.mean()), std=float(v.std(ddof=1)),
                           sem=float(v.std(ddof=1) / math.sqrt(len(v))), mean_fit_error=float(np.nanmean(fit_err)))
    a, b = (stats[n] for n in BASELINES)
    diff = a["mean"] - b["mean"]
    err = math.sqrt(a["sem"] ** 2 + b["sem"] ** 2)
    print(f"\n{cfg.figure_of_merit}, {cfg.collisions:g} collisions, {args.seeds} seeds each "
          f"({'quick' if args.quick else 'study.toml'} sample sizes):")
    for name in BASELINES:
        s = stats[name]
        print(f"  {name:<24} {s['mean']:.2f} ± {s['sem']:.2f} (seed-to-seed std {s['std']:.2f}; mean fit error "
              f"{s['mean_fit_error']:.2f}); values {', '.join(f'{x:.2f}' for x in s['values'])}")
    if cfg.figure_of_merit == "bs_significance":
        for name in BASELINES:
            sub = [r["metrics"] for r in rows if r["layout"] == name]
            nt = np.array([m["bs_significance_no_time_cut"] or np.nan for m in sub], dtype=float)
            tc = [m["bs_time_cut_ps"] for m in sub]
            tr = np.array([m["photon_time_resolution_ps"] or np.nan for m in sub], dtype=float)
            print(f"  {name:<24} without the time cut {np.nanmean(nt):.2f} ± {np.nanstd(nt, ddof=1) / math.sqrt(len(nt)):.2f}; "
                  f"time cuts (ps) {tc}; photon time resolution {np.nanmean(tr):.0f} ps")
    verdict = "separated" if abs(diff) > 3 * err else "a tie (< 3 sigma)"
    print(f"  difference {BASELINES[0]} - {BASELINES[1]} = {diff:.2f} ± {err:.2f} ({abs(diff) / err:.1f} sigma): {verdict}")
    if args.output:
        Path(args.output).write_text(json.dumps(dict(config=cfg.as_dict(), rows=rows, stats=stats,
                                                     difference=diff, difference_err=err), indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
