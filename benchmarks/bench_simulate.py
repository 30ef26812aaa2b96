r"""Throughput of :func:`diffcalo.simulate` (clusters/s) against a vectorised NumPy/SciPy peer.

What it measures: 5 x 5 x 2 cluster windows (SpaCal-W region of the LHCb Upgrade II baseline, two
readout sections) for one particle batch (100k photons by default, log-uniform 2-100 GeV, pointing
from the interaction point), in both fluctuation modes (``relaxed`` and ``realistic``), for

* ``diffcalo.simulate`` (JAX, jitted; timed with ``jax.block_until_ready`` after a compiling
  warm-up call), and
* ``benchmarks/numpy_peer.py``: the same model written as whole-batch NumPy/SciPy array code in
  float32 (``np.arctan``, ``scipy.special.gammainc``, ``np.random.default_rng``), the code a
  physicist would write without JAX.

Before timing it checks that the two agree: the fluctuation-free cell energies for the same
particles and the same shape normals (to ~1e-4 of the cluster total), and the mean cluster sum of
the full stochastic output per mode (within a few per mille). After timing it counts the
transcendental operations per cluster, measures the machine's raw throughput of each of them under
``jax.jit`` (and in NumPy) on arrays of the size one batch needs, and prints the resulting floor:
the clusters/s the model would reach if only those operations cost anything.

Run from the repository root (the default run takes about a minute on a 2-core machine)::

    .venv/bin/python benchmarks/bench_simulate.py
    .venv/bin/python benchmarks/bench_simulate.py --quick          # 10k clusters, smoke test
    .venv/bin/python benchmarks/bench_simulate.py --batch 200000 --repeats 5 --depth-nodes 6
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import scipy
import scipy.special

import diffcalo as dc
from diffcalo.layout import STATUS_OK
from diffcalo.particles import PHOTON
from diffcalo.simulation import DEFAULT_DEPTH_NODES
from diffcalo.simulation.cells import fast_arctan
from diffcalo.simulation.kernel import Showers, shower_cells
from diffcalo.simulation.readout import poisson_counts
from diffcalo.simulation.regions import region_tables

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy_peer as peer  # noqa: E402
from machine import load, revision  # noqa: E402

WINDOW = 5
REGION = "spacal-w"
GUN_SEED = 0
#: Root seed of the simulate keys; must differ from GUN_SEED (see ``main``).
SIMULATE_SEED = 1
MODES = ("relaxed", "realistic")
TARGET_RATE = 300_000.0
TARGET_SPEEDUP = 4.0
MEAN_TOL = 1e-4          # fluctuation-free: |difference| / cluster total
STOCHASTIC_TOL = 3e-3    # mean cluster sum, JAX vs NumPy, relative


# ---- JAX reference for the fluctuation-free check ---------------------------------------------------------
@functools.partial(jax.jit, static_argnames=("window", "depth_nodes"))
def jax_mean_cells(detector: dc.Detector, particles: dc.Particles, z: jnp.ndarray, window: int,
                   depth_nodes: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Mean cell energies [n, L, K, K] and leakage [n] from diffcalo's kernel with explicit normals z [2, n].

    Mirrors the window-mode path of ``diffcalo.simulation.parametric.simulate_parametric`` up to (not including)
    the fluctuations: same tables, region lookup, impact-cell frame and batch-last ``shower_cells``.
    """
    layout = detector.layout
    tables = region_tables(detector, depth_nodes, False)
    region, status = layout.region_of(particles.x, particles.y)
    ok = status == STATUS_OK
    ridx = jnp.clip(region, 0, detector.n_regions - 1)
    tab = {k: jnp.moveaxis(v[ridx], 0, -1) for k, v in tables.items()}      # batch last
    cell = detector.cell_size_mm[ridx]
    energy = jnp.where(ok & (particles.energy > 0), particles.energy, 1.0)
    _, _, cx, cy = layout.cell_of(particles.x, particles.y, cell)
    ax0, ay0 = particles.x - cx, particles.y - cy
    edges = (jnp.arange(window + 1) - 0.5 * window)[:, None] * cell[None, :]   # [K+1, n]
    showers = Showers(energy=energy, is_photon=particles.pid == PHOTON, ax0=ax0, ay0=ay0, tx=particles.tx,
                      ty=particles.ty, z1=z[0], z2=z[1])
    mean, _depth, leakage = shower_cells(showers, tab, edges, edges)
    mean = jnp.where(ok, mean * tab["section_mask"][:, None, None, :], 0.0)
    return jnp.moveaxis(mean, -1, 0), jnp.where(ok, leakage, 0.0)


def check(condition: bool, message: str) -> None:
    """Stop the benchmark if the two implementations disagree (a benchmark of different models is void)."""
    if not condition:
        raise AssertionError(message)


def check_mean(det: dc.Detector, particles: dc.Particles, model: peer.PeerModel, batch: peer.Batch,
               depth_nodes: int) -> tuple[np.ndarray, dict]:
    """Fluctuation-free comparison with the same shape normals; returns the NumPy means and shapes."""
    z = np.random.default_rng(12345).standard_normal((2, batch.n), dtype=peer.DTYPE)
    mean_j, leak_j = (np.asarray(a) for a in jax_mean_cells(det, particles, jnp.asarray(z), WINDOW, depth_nodes))
    mean_n, sh = peer.mean_cells(model, batch, z[0], z[1])
    check(mean_j.shape == mean_n.shape, f"shapes differ: JAX {mean_j.shape}, NumPy {mean_n.shape}")
    tot_j = mean_j.reshape(batch.n, -1).sum(axis=1, dtype=np.float64)
    tot_n = mean_n.reshape(batch.n, -1).sum(axis=1, dtype=np.float64)
    diff = np.abs(mean_j.astype(np.float64) - mean_n)
    cell_rel = (diff.reshape(batch.n, -1).max(axis=1) / tot_n).max()
    tot_rel = (np.abs(tot_j - tot_n) / tot_n).max()
    batch_rel = abs(tot_j.sum() - tot_n.sum()) / tot_n.sum()
    print("Correctness, fluctuation-free cell energies (same particles, same shape normals):")
    print(f"  mean cluster sum       JAX {tot_j.mean():.6f} GeV   NumPy {tot_n.mean():.6f} GeV")
    print(f"  max |cell difference|  {diff.max():.3e} GeV   (max over clusters of that / cluster total: "
          f"{cell_rel:.2e})")
    print(f"  max |total difference| / total over clusters {tot_rel:.2e};  over the batch {batch_rel:.2e}")
    print(f"  max |leakage difference| {np.abs(leak_j - sh['leakage']).max():.2e}")
    worst = int(np.argmax(diff.reshape(batch.n, -1).max(axis=1) / tot_n))
    check(cell_rel < MEAN_TOL and tot_rel < MEAN_TOL,
          f"fluctuation-free means differ by more than {MEAN_TOL:g} of the cluster total (worst: cluster "
          f"{worst}, totals JAX {tot_j[worst]:.5f} / NumPy {tot_n[worst]:.5f} GeV). Either diffcalo's model "
          "changed (update benchmarks/numpy_peer.py) or one implementation is wrong")
    return mean_n, sh


def check_stochastic(outputs: dict[tuple[str, str], np.ndarray]) -> None:
    """Mean cluster sums of the full stochastic outputs, JAX vs NumPy per mode (same particles)."""
    print("Correctness, full stochastic output (same particles, independent random streams):")
    for mode in MODES:
        s_j = outputs["JAX", mode].reshape(outputs["JAX", mode].shape[0], -1).sum(axis=1, dtype=np.float64)
        s_n = outputs["NumPy", mode].reshape(s_j.shape[0], -1).sum(axis=1, dtype=np.float64)
        rel = (s_j.mean() - s_n.mean()) / s_n.mean()
        sigma = (s_j - s_n).std() / np.sqrt(s_j.shape[0]) / s_n.mean()   # paired: particles are common
        print(f"  {mode:9s}  mean cluster sum  JAX {s_j.mean():.5f} GeV   NumPy {s_n.mean():.5f} GeV   "
              f"rel. difference {rel:+.2e} ({rel / sigma:+.1f} sigma)")
        check(abs(rel) < STOCHASTIC_TOL,
              f"{mode}: mean cluster sums differ by {rel:+.2e} (tolerance {STOCHASTIC_TOL:g})")


# ---- timing -------------------------------------------------------------------------------------------------
def repeat_timing(fn: Callable[[int], object], repeats: int) -> list[float]:
    """Wall-clock seconds of ``fn(seed)`` for seeds 1..repeats (the caller has warmed it up)."""
    times = []
    for seed in range(1, repeats + 1):
        t0 = time.perf_counter()
        fn(seed)
        times.append(time.perf_counter() - t0)
    return times


def best_time(fn: Callable[[], object], repeats: int = 3) -> float:
    """Best of ``repeats`` wall-clock seconds of ``fn()`` after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


# ---- transcendental operations and the floor -------------------------------------------------------------------
def op_counts(k: int, depth_nodes: int, sections: int, mode: str) -> dict[str, int]:
    """Transcendental operations and random variates per cluster of a K x K x sections window.

    Per shower: ln y, ln T_sam, ln alpha_sam (longitudinal) and ln E (radial): 4 log; sqrt((1 +- rho)/2)
    and sqrt(alpha) (node depths): 3 sqrt; exp for T and alpha: 2 exp; gammainc at the L section
    boundaries behind the front face (the CDF there is 0 without a call).
    Per depth node (S = depth_nodes): 1 ndtri (Wilson-Hilferty depth) and 6 exp for the radial
    parameters (two tail exponentials, the nested exp(arg - exp(arg)) of the core fraction, exp(-tau),
    exp(-(tau - 1)^2)); per node and radial component (core, tail): 2 (K+1) sqrt (A at the x edges,
    B at the y edges) and 2 (K+1)^2 arctan on the corner grid.
    Fluctuations: 2 shape normals and 1 constant-term normal per cluster; per cell, relaxed: 1 sqrt
    + 1 normal; realistic: log-normal sampling (1 log1p, 1 sqrt, 1 exp, 1 normal), 1 Poisson
    variate (whatever its implementation costs) and 1 noise normal.
    """
    s = depth_nodes
    cells = sections * k * k
    components = 2
    counts = {
        "arctan": components * s * 2 * (k + 1) ** 2,
        "sqrt": 3 + components * s * 2 * (k + 1),
        "exp": 2 + 6 * s,
        "log": 4,
        "ndtri": s,
        "gammainc": sections,
        "normal": 3 + cells,
    }
    if mode == "relaxed":
        counts["sqrt"] += cells
    else:
        for op in ("log", "sqrt", "exp", "normal"):
            counts[op] += cells
        counts["poisson"] = cells
    return counts


def op_throughput(n: int, counts: dict[str, int], shapes: dict, mean: np.ndarray,
                  model: peer.PeerModel) -> dict[str, dict[str, float]]:
    """Seconds per single operation (JAX under jit, NumPy) on arrays of n x count elements.

    Arguments of gammainc and Poisson are the model's own (from the fluctuation-free check), tiled
    to the needed size; the elementwise functions get uniform arguments in a typical range. The
    Poisson variate is diffcalo's sampler for JAX and ``Generator.poisson`` for NumPy.
    """
    rng = np.random.default_rng(7)
    out: dict[str, dict[str, float]] = {}

    def unary(name: str, size: int, lo: float, hi: float, jax_fn, np_fn) -> None:
        x = rng.uniform(lo, hi, size).astype(np.float32)
        xj = jnp.asarray(x)
        f = jax.jit(jax_fn)
        out[name] = dict(jax=best_time(lambda: jax.block_until_ready(f(xj))) / size,
                         numpy=best_time(lambda: np_fn(x)) / size)

    def tiled(values: np.ndarray, size: int) -> np.ndarray:
        return np.resize(values.astype(np.float32).ravel(), size)

    unary("arctan", n * counts["arctan"], -4.0, 4.0, jnp.arctan, np.arctan)
    x = jnp.asarray(rng.uniform(-4.0, 4.0, n * counts["arctan"]).astype(np.float32))
    f = jax.jit(fast_arctan)
    out["fast_arctan"] = dict(jax=best_time(lambda: jax.block_until_ready(f(x))) / x.size, numpy=float("nan"))
    del x
    unary("sqrt", n * counts["sqrt"], 0.0, 100.0, jnp.sqrt, np.sqrt)
    unary("exp", n * counts["exp"], -5.0, 2.0, jnp.exp, np.exp)
    unary("log", n * counts["log"], 0.1, 100.0, jnp.log, np.log)

    size = n * counts["gammainc"]
    t_edges = np.maximum(shapes["rows"]["t_edges"][:, 1:], 0.0)          # the boundaries behind the front
    a = tiled(np.broadcast_to(shapes["alpha"][:, None], t_edges.shape), size)
    x = tiled(shapes["beta"][:, None] * t_edges, size)
    aj, xj = jnp.asarray(a), jnp.asarray(x)
    f = jax.jit(jax.scipy.special.gammainc)
    out["gammainc"] = dict(jax=best_time(lambda: jax.block_until_ready(f(aj, xj))) / size,
                           numpy=best_time(lambda: scipy.special.gammainc(a, x)) / size)
    q = rng.uniform(1e-3, 1.0 - 1e-3, n * counts["ndtri"]).astype(np.float32)
    qj = jnp.asarray(q)
    f = jax.jit(jax.scipy.special.ndtri)
    out["ndtri"] = dict(jax=best_time(lambda: jax.block_until_ready(f(qj))) / q.size,
                        numpy=best_time(lambda: scipy.special.ndtri(q)) / q.size)

    size = n * counts["normal"]
    key = jax.random.key(3)
    f = jax.jit(lambda k: jax.random.normal(k, (size,)))
    out["normal"] = dict(jax=best_time(lambda: jax.block_until_ready(f(key))) / size,
                         numpy=best_time(lambda: rng.standard_normal(size, dtype=np.float32)) / size)

    if "poisson" in counts:
        size = n * counts["poisson"]
        lam = tiled(np.maximum(mean, 0.0) * shapes["rows"]["light_yield"][:, None, None, None], size)
        lam_j = jnp.asarray(lam)
        f = jax.jit(poisson_counts)
        out["poisson"] = dict(jax=best_time(lambda: jax.block_until_ready(f(key, lam_j))) / size,
                              numpy=best_time(lambda: rng.poisson(lam)) / size)
    return out


def floor_rate(counts: dict[str, int], per_op: dict[str, dict[str, float]], impl: str,
               arctan: str = "arctan") -> float:
    """Clusters/s if only the counted operations cost, at the measured per-operation times of ``impl``
    (``"jax"``, ``"numpy"``, or ``"best"`` = the faster of the two per operation)."""
    def cost(op: str) -> float:
        key = arctan if op == "arctan" else op
        if impl == "best":
            vals = [per_op[key]["jax"], per_op[key]["numpy"]]
            if op == "arctan":
                vals.append(per_op["fast_arctan"]["jax"])
            return min(v for v in vals if np.isfinite(v))
        return per_op[key][impl]

    return 1.0 / sum(c * cost(op) for op, c in counts.items())


# ---- main ----------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=100_000, help="clusters per batch (default 100000)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (default 3)")
    p.add_argument("--depth-nodes", "--slabs", dest="depth_nodes", type=int, default=None,
                   help="simulate's depth_nodes, radial-profile evaluations per shower (formerly "
                        "slabs_per_section x sections); default: simulate's default")
    p.add_argument("--quick", action="store_true", help="smoke run: batch 10000")
    args = p.parse_args(argv)
    if args.quick:
        args.batch = 10_000
    if args.batch < 1 or args.repeats < 1 or (args.depth_nodes is not None and args.depth_nodes < 1):
        p.error("--batch, --repeats and --depth-nodes must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    n, repeats = args.batch, args.repeats
    det = dc.Detector.from_layout(dc.layout.lhcb_upgrade2_baseline())
    # simulate's own resolution of depth_nodes=None in window mode
    nodes = max(DEFAULT_DEPTH_NODES, det.n_sections) if args.depth_nodes is None else args.depth_nodes
    particles = dc.gun(jax.random.key(GUN_SEED), n, det.layout, region=REGION)
    jax.block_until_ready(particles)
    model = peer.PeerModel.from_detector(det, nodes, WINDOW)          # setup, not timed
    batch = peer.batch_from_particles(particles)
    sections = det.n_sections

    print(f"diffcalo.simulate vs NumPy peer: {n} clusters, window {WINDOW}x{WINDOW}x{sections}, region "
          f"{REGION!r}, depth_nodes {nodes}" + (" (simulate default)" if args.depth_nodes is None else ""))
    print(f"  jax {jax.__version__} ({jax.default_backend()}, x64 {jax.config.jax_enable_x64}), numpy "
          f"{np.__version__}, scipy {scipy.__version__}, python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs; NumPy peer dtype {np.dtype(peer.DTYPE).name}, JAX dtype "
          f"{particles.energy.dtype}")
    print(f"  diffcalo revision {revision()}; load average at start {load()} "
          "(other processes on the machine distort the timings)")
    print()

    mean_np, shapes = check_mean(det, particles, model, batch, nodes)
    print()

    runners: dict[tuple[str, str], Callable[[int], np.ndarray]] = {}
    for mode in MODES:
        def run_jax(seed: int, mode: str = mode, timing: bool = False):
            # Not key(seed): simulate(key=key(0)) would reuse the gun's key(0), and the shape normals
            # would then be drawn from the same bits as the particle energies (fully correlated).
            # timing=False: the NumPy peer has no cell times, so this is the same model.
            key = jax.random.fold_in(jax.random.key(SIMULATE_SEED), seed)
            clusters = dc.simulate(det, particles, key=key, mode=mode,
                                   window=WINDOW, depth_nodes=args.depth_nodes, timing=timing)
            return jax.block_until_ready(clusters).energy

        def run_numpy(seed: int, mode: str = mode):
            return peer.simulate(model, batch, np.random.default_rng(seed), mode)

        runners["JAX", mode] = run_jax
        runners["NumPy", mode] = run_numpy
        runners["JAX+time", mode] = functools.partial(run_jax, mode=mode, timing=True)

    # Warm-up (compiles JAX; pages in NumPy's buffers); its outputs serve the stochastic check.
    outputs = {}
    for name, fn in runners.items():
        t0 = time.perf_counter()
        outputs[name] = np.asarray(fn(0))
        print(f"  warm-up {name[0]:5s} {name[1]:9s} {time.perf_counter() - t0:7.2f} s")
    check_stochastic(outputs)
    del outputs
    print()

    timings = {name: repeat_timing(fn, repeats) for name, fn in runners.items()}
    med = {name: statistics.median(t) for name, t in timings.items()}
    print(f"Timing: median (and best) of {repeats} repeats, one batch of {n} clusters")
    print(f"  {'implementation':14s} {'mode':9s} {'s/batch':>9s} {'(best)':>9s} {'clusters/s':>12s}")
    for (impl, mode), t in timings.items():
        print(f"  {impl:14s} {mode:9s} {med[impl, mode]:9.3f} {min(t):9.3f} {n / med[impl, mode]:12,.0f}")
    for mode in MODES:
        print(f"  JAX/NumPy speed ratio, {mode:9s}: {med['NumPy', mode] / med['JAX', mode]:6.2f}x")
    rate = n / med["JAX", "relaxed"]
    speedup = med["NumPy", "relaxed"] / med["JAX", "relaxed"]
    met = rate >= TARGET_RATE and speedup >= TARGET_SPEEDUP
    print(f"  Target: relaxed >= {TARGET_RATE:,.0f} clusters/s and >= {TARGET_SPEEDUP:g}x NumPy: "
          f"{'MET' if met else 'NOT MET'} ({rate:,.0f} clusters/s, {speedup:.2f}x)")
    print()

    print("Transcendental operations per cluster and the floor (only these operations cost):")
    all_counts = {mode: op_counts(WINDOW, nodes, sections, mode) for mode in MODES}
    union = {**all_counts["relaxed"], **all_counts["realistic"]}
    per_op = op_throughput(n, union, shapes, mean_np, model)
    print(f"  {'operation':12s} {'relaxed':>8s} {'realistic':>9s} {'JAX ns/op':>10s} {'NumPy ns/op':>12s} "
          f"{'JAX ms/batch':>13s} {'NumPy ms/batch':>15s}")
    for op in ("arctan", "fast_arctan", "sqrt", "exp", "log", "ndtri", "gammainc", "normal", "poisson"):
        count_op = "arctan" if op == "fast_arctan" else op
        c = [all_counts[m].get(count_op, 0) for m in MODES]
        per_batch = (c[0] or c[1]) * n * 1e3                      # relaxed count; realistic for poisson
        cols = ["-", "-"] if op == "fast_arctan" else [str(v) for v in c]
        t_j, t_n = per_op[op]["jax"], per_op[op]["numpy"]
        print(f"  {op:12s} {cols[0]:>8s} {cols[1]:>9s} {t_j * 1e9:10.2f} {t_n * 1e9:12.2f} "
              f"{t_j * per_batch:13.1f} {t_n * per_batch:15.1f}")
    print("  (counts per cluster; per-op times on float32 arrays of batch x count elements, jnp under jax.jit;\n"
          "   diffcalo uses fast_arctan for the arctan count, the NumPy peer np.arctan; poisson: diffcalo's sampler\n"
          "   vs Generator.poisson; ms/batch with the relaxed counts, the realistic one for poisson)")
    for mode in MODES:
        counts = all_counts[mode]
        total = sum(counts.values())
        print(f"  {mode}: {total} operations per cluster "
              + ", ".join(f"{c} {op}" for op, c in counts.items()))
        for impl, label, arctan in (("jax", "JAX", "fast_arctan"), ("numpy", "NumPy", "arctan")):
            floor = floor_rate(counts, per_op, impl, arctan)
            measured = n / med[label, mode]
            print(f"    {label:5s} floor {floor:12,.0f} clusters/s; measured {measured:12,.0f} = "
                  f"{measured / floor:6.1%} of the floor ({floor / measured:.1f}x below it)")
        floor_j_atan = floor_rate(counts, per_op, "jax", "arctan")
        best = floor_rate(counts, per_op, "best")
        print(f"    JAX floor with jnp.arctan instead of fast_arctan: {floor_j_atan:12,.0f} clusters/s")
        print(f"    machine floor (faster of JAX/NumPy per op): {best:12,.0f} clusters/s; best measured "
              f"{n / min(med['JAX', mode], med['NumPy', mode]):,.0f}")
    bench_pileup(det, n, repeats)
    print(f"  load average at end {load()}")


def bench_pileup(det, n: int, repeats: int, collisions: float = 40.0) -> None:
    """Clusters/s with the pile-up overlay at ``collisions`` per crossing in the SpaCal-W (inner)
    region, both modes; target >= 20k clusters/s. Also the fraction of windows whose background
    count exceeded simulate's cap (max_background)."""
    from diffcalo.pileup import PileupModel

    model = PileupModel.default(collisions_per_crossing=collisions)
    particles = dc.gun(jax.random.key(GUN_SEED), n, det.layout, region=REGION,
                       energy=dc.log_uniform_energy(2.0, 100.0))
    print(f"\nWith pile-up: {collisions:g} collisions per crossing, region {REGION!r}, {n} clusters")
    print("  mode        s/batch    clusters/s   windows over the background cap   mean background particles")
    for mode in ("relaxed", "realistic"):
        run = lambda k: dc.simulate(det, particles, key=k, mode=mode, pileup=model)
        jax.block_until_ready(run(jax.random.key(SIMULATE_SEED)))
        times = []
        for r in range(repeats):
            t0 = time.perf_counter()
            c = jax.block_until_ready(run(jax.random.key(SIMULATE_SEED + 1 + r)))
            times.append(time.perf_counter() - t0)
        t = statistics.median(times)
        nbg = np.asarray(c.n_background)
        print(f"  {mode:<10} {t:8.3f} {n / t:13,.0f}   {np.mean(nbg > 12):31.4%}   {nbg.mean():25.2f}")
    print("  target >= 20,000 clusters/s")


if __name__ == "__main__":
    main()
