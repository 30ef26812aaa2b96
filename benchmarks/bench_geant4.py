r"""Geant4 vs the parametric backend: CPU seconds per shower, the speed-up per shower, and Geant4's
throughput with 1 and 2 worker processes, side by side in one run on this machine.

What it measures, for electrons at normal incidence on the centre of a cell (5 x 5 window, the
technology's own readout sections and its first allowed cell size), per built-in technology
(``siw``, ``shashlik``, ``spacal-w``, ``spacal-pb``, ``toy-scint``) and energy (1, 10, 50 GeV):

1. Geant4 (:func:`diffcalo.geant4.backend.run_geant4`, one worker process): the CPU seconds per
   shower that the worker reports (``cpu_seconds``: ``time.process_time`` around Geant4's
   ``BeamOn``), per shower and per GeV, and the driver's wall-clock seconds per shower (task
   submission and the return of the cells included). One process pool is kept open for the whole
   table (``run_geant4(..., executor=<executor>)``); its first call per technology, one 1 GeV shower,
   is a warm-up that is reported separately and not counted: the first one starts the worker
   (spawn, import of Geant4, run manager) and every one builds the technology's geometry and its
   physics tables (``run_geant4`` with ``executor="process"`` pays all of it on every call).
2. The parametric backend (:func:`diffcalo.simulate`, relaxed mode, cell times on), one batch of
   20000 clusters of the same particles on a one-region wall of the same technology and cell size:
   median wall-clock seconds per cluster of ``--repeats`` calls after a compiling warm-up call (with
   ``jax.block_until_ready``), and the process's CPU seconds per cluster over those calls (all XLA
   threads; JAX runs on every core of the driver, the Geant4 worker on one).
3. The speed-up per shower: Geant4 CPU s/shower / parametric wall s/cluster (the issue's figure of
   merit, aim >= 1e4), and per CPU second (Geant4 CPU / parametric CPU: core for core).
4. Geant4 throughput (showers per wall-clock second) on one job (400 electrons of 10 GeV in
   ``shashlik``, run_geant4's default tasks of 200 GeV) with 1 and 2 worker processes, and the ratio:
   end to end with ``run_geant4(..., workers=w, executor="process")`` (the pool's start-up, Geant4's
   import and the physics tables in every worker included, as a user sees it), and on a pool of ``w``
   workers kept open and warmed up first (its start-up reported separately).

Timings are those of a shared machine: the load average at the start and the end is printed (other
processes running Geant4 or JAX inflate the wall-clock figures much more than the CPU seconds).

Run from the repository root (about 8 minutes on 2 cores; ``--quick`` about 1.5)::

    .venv/bin/python benchmarks/bench_geant4.py [--data DIR]
    .venv/bin/python benchmarks/bench_geant4.py --quick --data /path/to/geant4-data
    .venv/bin/python benchmarks/bench_geant4.py --technologies shashlik --energies 2,20 --gev-per-point 200

``--data``: the Geant4 data directory (default: ``run_geant4``'s default, made on first use under
``~/.cache/diffcalo/geant4-data``). Results of a full run go to ``benchmarks/results/bench_geant4.json``
(``--quick`` writes nothing unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from machine import load, revision  # noqa: E402  (benchmarks/machine.py)

import diffcalo as dc  # noqa: E402
from diffcalo.geant4.backend import DEFAULT_CHUNK_GEV, chunks_by_energy, run_geant4  # noqa: E402
from diffcalo.layout import Layout, Region  # noqa: E402
from diffcalo.particles import ELECTRON  # noqa: E402
from diffcalo.study.executors import make_executor  # noqa: E402
from diffcalo.technologies import default_registry  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
TECHNOLOGIES = ("siw", "shashlik", "spacal-w", "spacal-pb", "toy-scint")
WINDOW = 5
TARGET_SPEEDUP = 1e4
SEED = 1


# ---- machine -------------------------------------------------------------------------------------------------
def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ---- particles and detectors ----------------------------------------------------------------------------------
def electrons(n: int, energy: float) -> dict:
    """The particles dict of ``run_geant4``: n electrons at the centre of the central cell, normal incidence."""
    z = np.zeros(n)
    return dict(pid=np.full(n, ELECTRON), energy=np.full(n, float(energy)), x=z, y=z, tx=z, ty=z)


def one_region_detector(tech, cell_mm: float) -> dc.Detector:
    """A 3 x 3-module wall of one technology (as ``diffcalo.validation``'s one-region layout, wider so that
    the window stays inside it), at the interaction point (z = 0: no flight time)."""
    layout = Layout(name=f"bench-{tech.name}", module_mm=tech.module_mm, modules_x=3, modules_y=3, z_mm=0.0,
                    regions=(Region("all", tech.name, cell_mm, 3, 3),))
    return dc.Detector.from_layout(layout)


def cell_centre(det: dc.Detector, cell_mm: float) -> tuple[float, float]:
    """Centre of the cell at (or just beside) the middle of the wall."""
    _, _, cx, cy = det.layout.cell_of(jax.numpy.asarray([1e-3]), jax.numpy.asarray([1e-3]), jax.numpy.asarray([cell_mm]))
    return float(cx[0]), float(cy[0])


# ---- Geant4 --------------------------------------------------------------------------------------------------
def n_showers(energy: float, gev_per_point: float, min_showers: int, max_showers: int) -> int:
    return int(np.clip(round(gev_per_point / energy), min_showers, max_showers))


def geant4_table(techs, energies, args, ex) -> tuple[list[dict], list[dict], str]:
    """Geant4 CPU and wall seconds per shower for every technology and energy on the kept-open pool ``ex``."""
    rows, warmups, version = [], [], ""
    for tech in techs:
        cell = float(tech.cell_sizes_mm[0])
        t0 = time.perf_counter()
        r = run_geant4(tech, cell, electrons(1, 1.0), seed=SEED, window=WINDOW, workers=1, executor=ex,
                       data_dir=args.data, progress=False)
        warm = dict(technology=tech.name, wall_s=time.perf_counter() - t0, cpu_s=r["cpu_seconds"],
                    grid=int(r["spec"].nx))
        warmups.append(warm)
        version = r.get("geant4", version)
        print(f"  warm-up {tech.name:10s} (1 shower of 1 GeV, {warm['grid']}x{warm['grid']} cells of {cell:g} mm): "
              f"wall {warm['wall_s']:6.2f} s, Geant4 CPU {warm['cpu_s']:6.3f} s", flush=True)
        for i, e in enumerate(energies):
            n = n_showers(e, args.gev_per_point, args.min_showers, args.max_showers)
            t0 = time.perf_counter()
            r = run_geant4(tech, cell, electrons(n, e), seed=SEED + 1 + i, window=WINDOW, workers=1, executor=ex,
                           data_dir=args.data, progress=False, chunk_gev=2.0 * n * e)   # one task
            wall = time.perf_counter() - t0
            cells = r["cells"].reshape(n, -1).sum(axis=1, dtype=np.float64)
            rows.append(dict(technology=tech.name, cell_mm=cell, energy=e, showers=n, g4_cpu_s=r["cpu_seconds"],
                             g4_wall_s=wall, g4_cpu_per_shower=r["cpu_seconds"] / n, g4_wall_per_shower=wall / n,
                             g4_cpu_per_gev=r["cpu_seconds"] / (n * e), g4_active_window_gev=float(cells.mean())))
            print(f"    {tech.name:10s} {e:6g} GeV x {n:4d}: Geant4 CPU {r['cpu_seconds'] / n * 1e3:9.2f} ms/shower, "
                  f"wall {wall / n * 1e3:9.2f} ms/shower", flush=True)
    return rows, warmups, version


# ---- parametric ----------------------------------------------------------------------------------------------
def parametric_times(tech, cell_mm: float, energies, batch: int, repeats: int) -> dict[float, dict]:
    """Median wall and mean CPU seconds per cluster of ``diffcalo.simulate`` for each energy (one compile per
    technology: the energies change values, not shapes)."""
    det = one_region_detector(tech, cell_mm)
    cx, cy = cell_centre(det, cell_mm)
    out = {}
    for e in energies:
        p = dc.Particles.create(energy=np.full(batch, float(e)), x=np.full(batch, cx), y=np.full(batch, cy),
                                pid=ELECTRON)

        def run(seed: int):
            return jax.block_until_ready(dc.simulate(det, p, key=jax.random.fold_in(jax.random.key(0), seed),
                                                     window=WINDOW))

        t0 = time.perf_counter()
        c = run(0)                                      # compiles (first energy) / warms up
        first = time.perf_counter() - t0
        walls = []
        c0 = time.process_time()
        for seed in range(1, repeats + 1):
            t0 = time.perf_counter()
            run(seed)
            walls.append(time.perf_counter() - t0)
        cpu = time.process_time() - c0
        out[e] = dict(first_call_s=first, wall_per_cluster=statistics.median(walls) / batch,
                      best_wall_per_cluster=min(walls) / batch, cpu_per_cluster=cpu / (repeats * batch),
                      window_gev=float(np.asarray(c.energy).reshape(batch, -1).sum(axis=1).mean()))
    return out


# ---- Geant4 workers ------------------------------------------------------------------------------------------
def geant4_scaling(tech, n: int, energy: float, workers_list, args) -> list[dict]:
    """Showers per wall-clock second of one job with ``w`` worker processes: end to end with
    ``run_geant4(..., workers=w, executor="process")`` (a fresh pool: start-up included), and on a pool of
    ``w`` workers kept open and warmed up first (one 10 GeV shower per worker: Geant4's import, geometry and
    physics tables; the first task of a worker takes seconds, so each worker gets one)."""
    cell = float(tech.cell_sizes_mm[0])
    job = electrons(n, energy)
    tasks = len(chunks_by_energy(job["energy"], args.scaling_chunk_gev))
    rows = []
    for w in workers_list:
        t0 = time.perf_counter()
        r = run_geant4(tech, cell, job, seed=SEED, window=WINDOW, workers=w, executor="process",
                       data_dir=args.data, progress=False, chunk_gev=args.scaling_chunk_gev)
        wall = time.perf_counter() - t0
        ex = make_executor("process", w)
        try:
            t0 = time.perf_counter()
            run_geant4(tech, cell, electrons(w, 10.0), seed=SEED + 100, window=WINDOW, workers=w, executor=ex,
                       data_dir=args.data, progress=False, chunk_gev=10.0)
            startup = time.perf_counter() - t0
            t0 = time.perf_counter()
            r_warm = run_geant4(tech, cell, job, seed=SEED, window=WINDOW, workers=w, executor=ex,
                                data_dir=args.data, progress=False, chunk_gev=args.scaling_chunk_gev)
            wall_warm = time.perf_counter() - t0
        finally:
            ex.close()
        rows.append(dict(workers=w, showers=n, energy=energy, technology=tech.name, tasks=tasks, wall_s=wall,
                         cpu_s=r["cpu_seconds"], showers_per_s=n / wall, startup_s=startup, warm_wall_s=wall_warm,
                         warm_cpu_s=r_warm["cpu_seconds"], warm_showers_per_s=n / wall_warm))
        print(f"  workers {w}: {n} showers in {wall:6.1f} s wall end to end ({n / wall:6.2f} showers/s, Geant4 CPU "
              f"{r['cpu_seconds']:6.1f} s); warmed-up pool (start-up {startup:4.1f} s) {wall_warm:6.1f} s "
              f"({n / wall_warm:6.2f} showers/s)", flush=True)
    return rows


# ---- main ----------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--technologies", default=",".join(TECHNOLOGIES), help="comma-separated (default: all built-in)")
    p.add_argument("--energies", default="1,10,50", help="electron energies, GeV (default 1,10,50)")
    p.add_argument("--gev-per-point", type=float, default=400.0,
                   help="Geant4 shower energy per technology and energy: showers = this / E (default 400)")
    p.add_argument("--min-showers", type=int, default=8, help="at least this many Geant4 showers per point (default 8)")
    p.add_argument("--max-showers", type=int, default=400, help="at most this many (default 400)")
    p.add_argument("--batch", type=int, default=20_000, help="parametric clusters per batch (default 20000)")
    p.add_argument("--repeats", type=int, default=3, help="timed parametric calls per point (default 3)")
    p.add_argument("--scaling", default="shashlik:400:10",
                   help="Geant4 worker-scaling job TECH:SHOWERS:GEV (default shashlik:400:10)")
    p.add_argument("--scaling-chunk-gev", type=float, default=DEFAULT_CHUNK_GEV,
                   help=f"task size of that job, GeV (default run_geant4's, {DEFAULT_CHUNK_GEV:g})")
    p.add_argument("--workers", default="1,2", help="worker counts of the scaling job (default 1,2)")
    p.add_argument("--data", default=None, help="Geant4 data directory (default: run_geant4's default)")
    p.add_argument("--out", default=None, help="results JSON (default benchmarks/results/bench_geant4.json; "
                                               "none with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 and 10 GeV, 40 GeV of Geant4 showers per point, batch 5000, scaling job 80 showers")
    args = p.parse_args(argv)
    if args.quick:
        args.energies = "1,10"
        args.gev_per_point, args.min_showers, args.max_showers = 40.0, 4, 40
        args.batch, args.repeats = 5_000, 3
        args.scaling = "shashlik:80:10"
    try:
        args.energy_list = [float(v) for v in args.energies.split(",")]
        args.workers_list = [int(v) for v in args.workers.split(",")]
        tech, n, e = args.scaling.split(":")
        args.scaling_job = (tech, int(n), float(e))
    except ValueError as exc:
        p.error(f"bad --energies, --workers or --scaling: {exc}")
    if min(args.energy_list) <= 0 or args.batch < 1 or args.repeats < 1 or min(args.workers_list) < 1:
        p.error("energies, --batch, --repeats and --workers must be positive")
    if args.out is None and not args.quick:
        args.out = str(RESULTS / "bench_geant4.json")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reg = default_registry()
    techs = [reg.get(t) for t in args.technologies.split(",")]
    energies = args.energy_list
    t_start = time.perf_counter()
    print(f"Geant4 vs parametric backend: electrons at normal incidence on a cell centre, {WINDOW}x{WINDOW} window")
    print(f"  CPU {_cpu_model()}, {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable); "
          f"python {platform.python_version()}, jax {jax.__version__} ({jax.default_backend()})")
    load_start = load()
    print(f"  diffcalo revision {revision()}; load average at start {load_start} "
          "(other processes on the machine distort the timings)")
    print()

    print("Geant4, one worker process kept open (warm-up call per technology not counted):", flush=True)
    ex = make_executor("process", 1)
    try:
        g4_rows, warmups, version = geant4_table(techs, energies, args, ex)
    finally:
        ex.close()
    print()

    print(f"Parametric backend (diffcalo.simulate, relaxed, {args.batch} clusters, median of {args.repeats} "
          "calls after a warm-up):", flush=True)
    for tech in techs:
        cell = float(tech.cell_sizes_mm[0])
        t0 = time.perf_counter()
        par = parametric_times(tech, cell, energies, args.batch, args.repeats)
        print(f"  {tech.name:10s} {time.perf_counter() - t0:6.1f} s (first call, compiling: "
              f"{par[energies[0]]['first_call_s']:.1f} s)", flush=True)
        for row in g4_rows:
            if row["technology"] == tech.name:
                pr = par[row["energy"]]
                row.update(par_wall_per_cluster=pr["wall_per_cluster"], par_cpu_per_cluster=pr["cpu_per_cluster"],
                           par_best_wall_per_cluster=pr["best_wall_per_cluster"], par_first_call_s=pr["first_call_s"],
                           par_window_gev=pr["window_gev"],
                           speedup_wall=row["g4_cpu_per_shower"] / pr["wall_per_cluster"],
                           speedup_cpu=row["g4_cpu_per_shower"] / pr["cpu_per_cluster"])
    print()

    stech, sn, se = args.scaling_job
    print(f"Geant4 throughput, {sn} electrons of {se:g} GeV in {stech}, run_geant4(executor='process'), tasks of "
          f"{args.scaling_chunk_gev:g} GeV:", flush=True)
    scaling = geant4_scaling(reg.get(stech), sn, se, args.workers_list, args)
    load_end = load()
    print()

    print(f"Geant4 {version} (G4EmStandardPhysics, 0.7 mm cut); data {args.data or 'default directory'}")
    print(f"CPU {_cpu_model()}, {os.cpu_count()} cores; load average at start {load_start}, at end {load_end}")
    print()
    print("| technology | cell (mm) | E (GeV) | Geant4 showers | Geant4 CPU ms/shower | Geant4 CPU ms/GeV | "
          "Geant4 wall ms/shower | parametric µs/cluster (wall) | parametric µs/cluster (CPU) | "
          "speed-up (G4 CPU / param. wall) | speed-up (CPU / CPU) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in g4_rows:
        print(f"| {r['technology']} | {r['cell_mm']:g} | {r['energy']:g} | {r['showers']} | "
              f"{r['g4_cpu_per_shower'] * 1e3:.1f} | {r['g4_cpu_per_gev'] * 1e3:.2f} | "
              f"{r['g4_wall_per_shower'] * 1e3:.1f} | {r['par_wall_per_cluster'] * 1e6:.2f} | "
              f"{r['par_cpu_per_cluster'] * 1e6:.2f} | {r['speedup_wall']:.3g}x | {r['speedup_cpu']:.3g}x |")
    print()
    print("Geant4 warm-up call per technology (not counted above: worker start for the first, then geometry "
          "and physics tables):")
    print("| technology | wall (s) | Geant4 CPU (s) |")
    print("|---|---|---|")
    for w in warmups:
        print(f"| {w['technology']} | {w['wall_s']:.2f} | {w['cpu_s']:.3f} |")
    print()
    base = scaling[0]
    print(f"Geant4 throughput, {sn} electrons of {se:g} GeV in {stech}, tasks of {args.scaling_chunk_gev:g} GeV: end to end "
          "(run_geant4(executor='process'): pool start-up included) and on a warmed-up pool:")
    print("| workers | tasks | wall (s) | showers/s | speed-up | Geant4 CPU (s) | pool start-up (s) | warm wall (s) | "
          "warm showers/s | warm speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in scaling:
        r["speed_up"] = r["showers_per_s"] / base["showers_per_s"]
        r["warm_speed_up"] = r["warm_showers_per_s"] / base["warm_showers_per_s"]
        print(f"| {r['workers']} | {r['tasks']} | {r['wall_s']:.1f} | {r['showers_per_s']:.2f} | {r['speed_up']:.2f}x | "
              f"{r['cpu_s']:.1f} | {r['startup_s']:.1f} | {r['warm_wall_s']:.1f} | {r['warm_showers_per_s']:.2f} | "
              f"{r['warm_speed_up']:.2f}x |")
    print()
    worst = min(g4_rows, key=lambda r: r["speedup_wall"])
    below = sum(r["speedup_wall"] < TARGET_SPEEDUP for r in g4_rows)
    print(f"Target: speed-up per shower >= {TARGET_SPEEDUP:.0e}x (Geant4 CPU s/shower / parametric wall s/cluster): "
          f"{'MET at every point' if not below else f'NOT MET at {below} of {len(g4_rows)} points'}; smallest "
          f"{worst['speedup_wall']:.3g}x ({worst['technology']}, {worst['energy']:g} GeV), largest "
          f"{max(r['speedup_wall'] for r in g4_rows):.3g}x")
    print(f"Total {time.perf_counter() - t_start:.0f} s")
    if args.out:
        out = pathlib.Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(dict(
            machine=dict(cpu=_cpu_model(), cores=os.cpu_count(), usable_cores=len(os.sched_getaffinity(0)),
                         load_start=load_start, load_end=load_end),
            revision=revision(), geant4=version, jax=jax.__version__, window=WINDOW, batch=args.batch,
            repeats=args.repeats, showers=g4_rows, warmup=warmups, scaling=scaling), indent=1))
        print(f"Results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
