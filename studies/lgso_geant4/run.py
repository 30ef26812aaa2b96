r"""L-GSO with Geant4 as the black box, against GP-BO on the same budget of Geant4 showers.

Design: the absorber and active thickness of the LHCb shashlik's 66 layers (nominal 2 mm Pb + 4 mm
scintillator), depth <= 396 mm (the module), each thickness in 0.2-3 x its nominal value. Objective: the
photon energy resolution of a linear calibration, E (E_rec / E - 1)^2, for photons of 1-10 GeV
(log-uniform, uniform impact in the central 40.4 mm cell, 3 x 3 window): the sampling term against
longitudinal leakage, the trade-off a thinner absorber makes in a module of fixed length.

Phases (each cached in ``results/``; rerunning resumes):

- ``lgso``: the continuous study ``study.toml`` (``[optimizer] kind = "lgso"``, ``[continuous] backend =
  "geant4"``): :func:`diffcalo.study.continuous.run_continuous`, its journal in ``results/lgso_run``;
  the calibration refitted on the centre's showers at every iteration.
- ``gpbo``: :class:`surrogates.bayesopt.BayesianOptimizer` (log noisy EI, learned noise) over the same
  box and constraint, one evaluation = one simulator call of the same number of showers (its value: the
  self-calibrated mean squared error of that call), as many calls as L-GSO used; the recommendation is
  the GP's best posterior mean among the evaluated designs.
- ``scan``: the relaxed parametric simulator on a 13 x 13 grid of the box (calibration refitted at each
  point, 2e4 photons for it and 2e4 for the objective), then 11 x 11 within +-15 % of the best point.
- ``check``: Geant4 at the start, L-GSO's last centre, GP-BO's recommendation and the parametric optimum,
  ``--check-showers`` fresh photons each: the calibration fitted on half, the objective measured on the
  other half (out of sample), with its standard error.

    .venv/bin/python studies/lgso_geant4/run.py [--phase all|lgso|gpbo|scan|check|table]
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "results"


def _cfg():
    from diffcalo.study.config import load_study_config

    return load_study_config(HERE / "study.toml")


def _depth_ok(cfg, psi) -> bool:
    from diffcalo.study.continuous import stack_of

    return stack_of(cfg).depth_constraint(np.asarray(psi, float)) <= 0


def phase_lgso(cfg):
    from diffcalo.study.continuous import run_continuous

    run_dir = OUT / "lgso_run"
    j = run_continuous(cfg, run_dir, resume=True, log=lambda m: print(m, flush=True))
    calls = len(j.records("done"))
    j.close()
    return calls


def _lgso_path():
    from diffcalo.study.continuous import continuous_summary
    from diffcalo.study.runner import load_journal

    with load_journal(OUT / "lgso_run") as j:
        return continuous_summary(j)


def phase_gpbo(cfg, calls: int):
    """GP-BO, one evaluation per simulator call, resumable from results/gpbo.json."""
    from diffcalo.study.continuous import simulate_call
    from surrogates.bayesopt import BayesianOptimizer
    from surrogates.space import Real, Space

    path = OUT / "gpbo.json"
    done = json.loads(path.read_text()) if path.exists() else dict(designs=[], values=[], seconds=[])
    space = Space([Real("absorber_mm", *cfg.absorber_range), Real("active_mm", *cfg.active_range)],
                  constraint=lambda d: _depth_ok(cfg, (d["absorber_mm"], d["active_mm"])))
    opt = BayesianOptimizer(space, seed=cfg.seed, n_initial=6)
    if done["designs"]:
        opt.tell(done["designs"], done["values"])
    while len(done["values"]) < calls:
        d = opt.ask(1)[0]
        t = time.time()
        out = simulate_call(cfg, d, 500_000 + len(done["values"]))
        v = out["fom"] ** 2                    # the self-calibrated mean squared relative error of this call
        opt.tell([d], [v])
        done["designs"].append(d)
        done["values"].append(v)
        done["seconds"].append(time.time() - t)
        path.write_text(json.dumps(done))
        print(f"gpbo {len(done['values'])}/{calls}: {d} -> rms {100 * math.sqrt(v):.2f} %", flush=True)
    rec = opt.recommend()
    done["recommended"] = dict(design=rec["design"], mean=rec["mean"], sd=rec["sd"])
    path.write_text(json.dumps(done))
    return done


def phase_scan(cfg):
    """The parametric optimum: a grid over the box, then a finer one around its best point."""
    import jax

    from diffcalo.study.continuous import stack_of

    path = OUT / "scan.json"
    if path.exists():
        return json.loads(path.read_text())
    prob = stack_of(cfg)
    key = jax.random.key(7)

    def value(psi):
        cal = prob.fit_calibration(psi, jax.random.fold_in(key, 1), 20000)
        return float(prob.expected(psi, cal, jax.random.fold_in(key, 2), 20000))

    def grid(lo_a, hi_a, lo_b, hi_b, n):
        pts = [(a, b) for a in np.linspace(lo_a, hi_a, n) for b in np.linspace(lo_b, hi_b, n) if _depth_ok(cfg, (a, b))]
        return [dict(psi=[float(a), float(b)], value=value((a, b))) for a, b in pts]

    coarse = grid(*cfg.absorber_range, *cfg.active_range, 13)
    best = min(coarse, key=lambda r: r["value"])["psi"]
    a0, b0 = best
    fine = grid(max(0.85 * a0, cfg.absorber_range[0]), min(1.15 * a0, cfg.absorber_range[1]),
                max(0.85 * b0, cfg.active_range[0]), min(1.15 * b0, cfg.active_range[1]), 11)
    out = dict(coarse=coarse, fine=fine, best=min(coarse + fine, key=lambda r: r["value"]))
    path.write_text(json.dumps(out))
    return out


def _geant4_value(cfg, psi, n, seed):
    from diffcalo.study.continuous import geant4_rows

    _, y = geant4_rows(cfg, psi, n, seed)
    half = n // 2
    w, *_ = np.linalg.lstsq(y[:half].astype(float), np.ones(half), rcond=None)
    r = (y[half:] @ w - 1.0) ** 2
    return float(r.mean()), float(r.std(ddof=1) / math.sqrt(len(r)))


def phase_check(cfg, n):
    path = OUT / "check.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    lg = _lgso_path()["path"]
    gp = json.loads((OUT / "gpbo.json").read_text())["recommended"]["design"]
    scan = json.loads((OUT / "scan.json").read_text())["best"]["psi"]
    designs = {"start": list(cfg.stack_start), "lgso": [lg[-1]["design"]["absorber_mm"], lg[-1]["design"]["active_mm"]],
               "gpbo": [gp["absorber_mm"], gp["active_mm"]], "parametric optimum": scan}
    for i, (name, psi) in enumerate(designs.items()):
        if name in res and res[name]["psi"] == psi:
            continue
        v, e = _geant4_value(cfg, psi, n, 900_000 + i)
        res[name] = dict(psi=psi, value=v, sem=e, showers=n)
        path.write_text(json.dumps(res))
        print(f"check {name} {psi}: rms {100 * math.sqrt(v):.2f} %", flush=True)
    return res


def table():
    from diffcalo.study.continuous import rms_label

    cfg = _cfg()
    lg = _lgso_path()
    gp = json.loads((OUT / "gpbo.json").read_text())
    scan = json.loads((OUT / "scan.json").read_text())
    chk = json.loads((OUT / "check.json").read_text())
    lines = ["| design | absorber (mm) | active (mm) | Geant4 check, out of sample | found with |", "|---|---:|---:|---|---|"]
    found = {"start": "-", "lgso": f"L-GSO, {lg['calls']} calls of {cfg.samples_per_point} showers",
             "gpbo": f"GP-BO, {len(gp['values'])} calls of {cfg.samples_per_point} showers",
             "parametric optimum": f"parametric scan, {len(scan['coarse']) + len(scan['fine'])} points",
             "parametric optimum, fixed light yield (superseded)": "the same scan before a thinner scintillator cost "
                                                                  "photo-electrons (scan_before_light_yield_fix.json)",
             "parametric optimum, PDG sampling term (superseded)": "the same scan with the PDG sampling term, before "
                                                                   "its thickness dependence was fitted to Geant4 "
                                                                   "(scan_before_sampling_term_fix.json)"}
    for name, r in chk.items():
        lines.append(f"| {name} | {r['psi'][0]:.2f} | {r['psi'][1]:.2f} | {rms_label(r['value'], r['sem'])} "
                     f"({r['showers']} showers) | {found[name]} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phase", default="all", choices=("all", "lgso", "gpbo", "scan", "check", "table"))
    ap.add_argument("--check-showers", type=int, default=2000)
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    cfg = _cfg()
    if args.phase in ("all", "lgso"):
        print(f"L-GSO: {phase_lgso(cfg)} calls", flush=True)
    if args.phase in ("all", "gpbo"):
        phase_gpbo(cfg, cfg.iterations * 5)          # L-GSO's planned calls: 4 LHS points + the centre per iteration
    if args.phase in ("all", "scan"):
        print(f"parametric optimum: {phase_scan(cfg)['best']}", flush=True)
    if args.phase in ("all", "check"):
        phase_check(cfg, args.check_showers)
    if args.phase in ("all", "table"):
        print(table())


if __name__ == "__main__":
    main()
