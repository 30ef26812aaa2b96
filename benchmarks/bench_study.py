r"""Study throughput: evaluations per hour of the quick flagship study (``diffcalo demo``'s GP run) on a
Dask ``LocalCluster`` with 1 and with 2 single-threaded workers, side by side in one run, the scaling
efficiency, and the time of one design evaluation broken down into simulate / train / metrics.

Each configuration runs the quick study's GP optimiser (:data:`diffcalo.study.flagship.QUICK`, its
evaluations, the same seed) into a fresh run directory. The wall time counts from the first
submission to the last result, cluster start-up excluded (reported separately); a worker's first
evaluation includes the compilation of the simulator and the networks, as in a real study. With 2
workers the optimiser asks with pending designs (kriging believer), so the designs are not the same
as with 1 worker; each evaluation costs about the same, which the per-evaluation breakdown shows.

    .venv/bin/python benchmarks/bench_study.py [--evaluations 12] [--workers 1,2]
    .venv/bin/python benchmarks/bench_study.py --config studies/lhcb_ecal_upgrade2/study.toml --evaluations 16

``--config`` runs a study file's configuration instead (its optimiser, samples and reconstruction;
the executor is replaced by the Dask cluster under test).

Scaling efficiency = (rate with N workers) / (N x rate with 1 worker). Results go to
``benchmarks/results/bench_study.json``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from diffcalo.study.config import study_config_from_dict  # noqa: E402
from diffcalo.study.executors import make_executor  # noqa: E402
from diffcalo.study.flagship import QUICK  # noqa: E402
from diffcalo.study.runner import run_study  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def one(base: dict, workers: int, evaluations: int) -> dict:
    cfg = study_config_from_dict(dict(base, optimizer=dict(base["optimizer"], evaluations=evaluations, batch=workers),
                                      executor=dict(kind="dask", workers=workers)))
    t0 = time.perf_counter()
    ex = make_executor("dask", workers=workers)
    startup = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        try:
            j = run_study(cfg, pathlib.Path(tmp) / "run", executor=ex, progress=True, log=lambda *a: None)
            wall = time.perf_counter() - t0
            recs = j.records()
            j.close()
        finally:
            ex.close()
    done = [r for r in recs if r["status"] == "done"]
    t = {k: [r["timings"][k] for r in done] for k in ("simulate", "train", "metrics", "total")}
    per_worker_first = {}
    for r in done:                                   # first evaluation of each worker: includes compilation
        per_worker_first.setdefault(r["worker"], r["id"])
    warm = [r for r in done if r["id"] not in per_worker_first.values()]
    return dict(workers=workers, evaluations=len(recs), done=len(done), wall_s=wall, startup_s=startup,
                evals_per_hour=3600.0 * len(recs) / wall,
                median={k: float(np.median(v)) for k, v in t.items()},
                median_warm={k: float(np.median([r["timings"][k] for r in warm])) for k in t} if warm else {},
                best=min(r["fom"] for r in done) if done else None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--evaluations", type=int, default=QUICK["optimizer"]["evaluations"])
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--config", default="", help="a study TOML instead of the quick study")
    a = ap.parse_args(argv)
    study = QUICK
    if a.config:
        from diffcalo.config import _read_toml

        study = _read_toml(pathlib.Path(a.config))
    study.setdefault("optimizer", {})
    rows = [one(study, int(w), a.evaluations) for w in a.workers.split(",")]
    base = rows[0]
    what = "Quick study" if not a.config else a.config
    print(f"\n{what} ({a.evaluations} evaluations, {study['samples']['train_photons']} training photons, "
          f"{study['reco']['epochs']} epochs), Dask LocalCluster, single-threaded workers\n")
    print("| workers | wall (s) | evaluations/hour | speed-up | scaling efficiency | cluster start (s) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        speed = r["evals_per_hour"] / base["evals_per_hour"]
        eff = speed * base["workers"] / r["workers"]
        r.update(speed_up=speed, efficiency=eff)
        print(f"| {r['workers']} | {r['wall_s']:.0f} | {r['evals_per_hour']:.0f} | {speed:.2f}x | {100 * eff:.0f} % "
              f"| {r['startup_s']:.1f} |")
    print("\nOne design evaluation, median seconds (all / without each worker's first, compiling, evaluation):\n")
    print("| workers | simulate | train | metrics | total |")
    print("|---|---|---|---|---|")
    for r in rows:
        cells = " | ".join(f"{r['median'][k]:.1f} / {r['median_warm'].get(k, float('nan')):.1f}"
                           for k in ("simulate", "train", "metrics", "total"))
        print(f"| {r['workers']} | {cells} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "bench_study.json" if not a.config else f"bench_study_{pathlib.Path(a.config).parent.name}.json"
    (RESULTS / name).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
