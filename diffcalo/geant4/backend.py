r"""The Geant4 backend of :func:`diffcalo.simulation.simulate` (``backend="geant4"``).

:func:`run_geant4` shoots particles into one technology's stack in worker processes and returns the raw
deposits; :func:`simulate_geant4` does it for every region of a detector and returns the same
:class:`~diffcalo.clusters.Clusters` as the parametric backend:

* cell energies on the EM scale exactly as the parametric backend defines it: the energy Geant4
  deposits in the active medium of each cell and readout section divided by the technology's sampling
  fraction of that section (:meth:`diffcalo.detector.Detector.sampling_fraction`), so the two backends
  agree on average exactly when the technology's sampling fraction is Geant4's;
* the readout of the parametric backend on top (photo-statistics, noise, constant term, threshold;
  ``relaxed`` or ``realistic``), without its sampling term: Geant4 simulates the sampling fluctuations;
* cell times: the particle's arrival time plus the flight to the energy-weighted depth of its section
  (from Geant4's layer profile), with the technology's time resolution; EM showers have no slow
  component worth modelling here;
* ``leakage``: the fraction of the particle's energy not deposited in the stack (absorber + active,
  out of the back, the sides and the front).

Tasks are chunks of showers, each with a seed derived from the caller's key and its position, so the
result depends on the key and the particles only (not on the number of workers, the executor, or the
order in which chunks finish). Workers are processes (a local pool, or Dask: the study executors).
"""

from __future__ import annotations

import functools
import os
import sys

import numpy as np

from diffcalo.errors import ConfigError

__all__ = ["run_geant4", "simulate_geant4", "task_seeds", "available_cpus", "section_depths", "DEFAULT_CHUNK_GEV"]

#: Energy (GeV) of the showers in one task: about 1-4 s of Geant4 each on this project's machines.
DEFAULT_CHUNK_GEV = 200.0
_G4_STREAM = 0x6E4


def task_seeds(seed: int, n: int, stream: int = 0) -> list[int]:
    """``n`` independent Geant4 seeds (31-bit) for the tasks of one run, from one integer seed."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(stream) & 0xFFFFFFFF, _G4_STREAM])
    return [int(s) & 0x7FFFFFFF or 1 for s in ss.generate_state(max(n, 1), dtype=np.uint32)[:n]]


def chunks_by_energy(energy, budget_gev: float = DEFAULT_CHUNK_GEV, max_showers: int = 500) -> list[slice]:
    """Consecutive slices of showers with about ``budget_gev`` of energy each (at least one shower)."""
    out, start, acc = [], 0, 0.0
    for i, e in enumerate(np.asarray(energy, dtype=float)):
        acc += e
        if acc >= budget_gev or i + 1 - start >= max_showers:
            out.append(slice(start, i + 1))
            start, acc = i + 1, 0.0
    if start < len(energy):
        out.append(slice(start, len(energy)))
    return out


def run_geant4(technology, cell_mm: float, particles: dict, *, seed: int, window: int | None = 5,
               grid: int | tuple[int, int] | None = None, workers: int | None = None, executor: str = "process",
               scheduler: str = "", data_dir=None, chunk_gev: float = DEFAULT_CHUNK_GEV, progress: bool = True,
               desc: str | None = None, stream: int = 0) -> dict:
    """Geant4 showers in one technology's stack: raw deposits, no readout.

    Args:
        technology: a :class:`~diffcalo.technologies.Technology`.
        cell_mm: cell size (mm).
        particles: arrays ``pid`` (11, -11, 22), ``energy`` (GeV, > 0), ``x``, ``y`` (impact point on
            the front face relative to the centre of the grid, mm; for an odd grid the centre of its
            central cell), ``tx``, ``ty`` (slopes).
        seed: integer seed of the run (tasks get seeds from it, :func:`task_seeds`).
        window: return the central ``window`` x ``window`` cells; None: the whole grid.
        grid: cells per side of the scored grid (int, or (nx, ny)); None: wide enough for the showers
            (:func:`~diffcalo.geant4.geometry.grid_cells`).
        workers: worker processes (default: the number of CPUs).
        executor: ``"process"`` (local pool), ``"dask"`` (``scheduler`` address, or a local cluster) or
            ``"inprocess"`` (this process runs Geant4; it cannot then run another data directory); or
            an executor made by :func:`diffcalo.study.executors.make_executor`, kept open (reused).
        data_dir: the Geant4 data directory (default: :func:`diffcalo.geant4.data.default_data_dir`,
            made on first use).
        chunk_gev: shower energy per task.
        progress: a progress bar on stderr.
        desc: the bar's label.
        stream: mixed into the task seeds (e.g. the region index), so that several runs with one seed
            are independent.

    Returns:
        dict of numpy arrays: ``cells`` float32 [n, S, K, K] (GeV in the active medium per readout
        section and cell), ``layer_active``, ``layer_absorber`` float32 [n, L] (GeV per layer over the
        whole grid), and ``cpu_seconds`` (Geant4 CPU time of all tasks), ``spec`` (the
        :class:`~diffcalo.geant4.geometry.StackSpec`), ``geant4`` (Geant4's version string).
    """
    from diffcalo.geant4.data import ensure_data
    from diffcalo.geant4.geometry import grid_cells, stack_spec

    p = _check_particles(particles)
    n = len(p["energy"])
    if window is not None and not (isinstance(window, int) and window >= 1 and window % 2 == 1):
        raise ConfigError(f"window = {window!r}: must be an odd integer >= 1")
    if grid is None:
        props = technology.effective_medium()
        max_off = float(np.max(np.hypot(p["x"], p["y"]))) if n else 0.0
        max_slope = float(np.max(np.hypot(p["tx"], p["ty"]))) if n else 0.0
        nx = ny = grid_cells(cell_mm, float(props.moliere_radius_mm), float(technology.depth_mm()),
                             window or 1, max_off, max_slope)
    else:
        nx, ny = (grid, grid) if isinstance(grid, int) else grid
    if window is not None and (window > nx or window > ny):
        raise ConfigError(f"window = {window}: larger than the scored grid {nx} x {ny}")
    spec = stack_spec(technology, cell_mm, nx, ny)
    data = str(ensure_data(data_dir))
    parts = chunks_by_energy(p["energy"], chunk_gev)
    seeds = task_seeds(seed, len(parts), stream)
    out = dict(cells=None, layer_active=np.zeros((n, spec.n_layers), np.float32),
               layer_absorber=np.zeros((n, spec.n_layers), np.float32), cpu_seconds=0.0, spec=spec)
    if n == 0:
        k = window or 0
        out["cells"] = np.zeros((0, spec.n_sections, k or ny, k or nx), np.float32)
        return out
    from diffcalo.study.executors import make_executor

    own = isinstance(executor, str)
    if own:
        ex = make_executor(executor, workers or min(len(parts), available_cpus()), scheduler)
    else:
        ex = executor
    from tqdm import tqdm

    bar = tqdm(total=n, desc=desc or f"Geant4 {technology.name}", unit="shower", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    try:
        spec_json = spec.to_json()
        futures = {}
        for sl, s in zip(parts, seeds):
            task = {k: v[sl] for k, v in p.items()}
            futures[ex.submit(_task, data, spec_json, task, s, window)] = sl
        pending = set(futures)
        while pending:
            for f in ex.wait(pending):
                pending.discard(f)
                sl = futures[f]
                r = f.result()
                if out["cells"] is None:
                    out["cells"] = np.zeros((n,) + r["cells"].shape[1:], np.float32)
                out["cells"][sl] = r["cells"]
                out["layer_active"][sl] = r["layer_active"]
                out["layer_absorber"][sl] = r["layer_absorber"]
                out["cpu_seconds"] += r["seconds"]
                out["geant4"] = r["geant4"]
                bar.update(sl.stop - sl.start)
    finally:
        if own:
            ex.close()
        bar.close()
    return out


def available_cpus() -> int:
    """CPUs this process may use (its affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _task(data_dir, spec_json, particles, seed, window):
    from diffcalo.geant4.worker import run_showers

    return run_showers(data_dir, spec_json, particles, seed, window)


def _check_particles(particles: dict) -> dict:
    from diffcalo.particles import SUPPORTED_PIDS

    n = None
    out = {}
    for k in ("pid", "energy", "x", "y", "tx", "ty"):
        if k not in particles:
            raise ConfigError(f"particles: missing {k!r} (give pid, energy, x, y, tx, ty)")
        a = np.asarray(particles[k], dtype=np.int64 if k == "pid" else np.float64).reshape(-1)
        if n is None:
            n = a.size
        if a.size != n:
            raise ConfigError(f"particles: {k} has {a.size} entries, pid has {n}")
        if k != "pid" and not np.isfinite(a).all():
            raise ConfigError(f"particles: {k} has non-finite values")
        out[k] = a
    bad = ~np.isin(out["pid"], SUPPORTED_PIDS)
    if bad.any():
        raise ConfigError(f"particles: pid = {int(out['pid'][bad][0])} is not simulated; allowed {SUPPORTED_PIDS}")
    if (out["energy"] <= 0).any():
        raise ConfigError(f"particles: energy = {float(out['energy'][out['energy'] <= 0][0])} GeV: must be > 0")
    return out


def simulate_geant4(detector, particles, *, key, mode: str = "relaxed", window: int = 5, image: bool = False,
                    on_invalid: str = "raise", timing: bool = True, workers: int | None = None,
                    executor: str = "process", scheduler: str = "", data_dir=None, progress: bool = True):
    """:func:`diffcalo.simulation.simulate` with ``backend="geant4"`` (checked there; see the module
    docstring). Returns :class:`~diffcalo.clusters.Clusters` of numpy arrays."""
    import jax
    import jax.numpy as jnp

    from diffcalo.clusters import Clusters
    from diffcalo.layout import STATUS_OK
    from diffcalo.simulation.readout import SPEED_OF_LIGHT_MM_PER_NS
    from diffcalo.simulation.regions import cached_region_tables

    layout = detector.layout
    x, y = np.asarray(particles.x, float), np.asarray(particles.y, float)
    n = x.size
    region, status = (np.asarray(a) for a in layout.region_of(jnp.asarray(x), jnp.asarray(y)))
    ok = status == STATUS_OK
    sizes = np.asarray(detector.cell_size_mm, float)
    cell = sizes[np.clip(region, 0, None)]
    ix, iy, cx, cy = (np.asarray(a) for a in layout.cell_of(jnp.asarray(x), jnp.asarray(y), jnp.asarray(cell)))
    if image:
        nx = int(round(layout.width_mm / sizes[0]))
        ny = int(round(layout.height_mm / sizes[0]))
        centre = np.zeros((n, 2))
        offset = np.stack([x, y], axis=1)
        shape = (ny, nx)
    else:
        centre = np.stack([cx, cy], axis=1)
        offset = np.stack([x - cx, y - cy], axis=1)
        shape = (window, window)
    n_out = detector.n_sections
    sf = np.asarray(detector.sampling_fraction(), float)                    # [R, S]
    energy = np.zeros((n, n_out) + shape, np.float32)
    depth = np.zeros((n, n_out), np.float64)
    leakage = np.zeros(n)
    base = int(np.asarray(jax.random.randint(jax.random.fold_in(key, _G4_STREAM), (), 0, 2 ** 31 - 1)))
    e_true = np.asarray(particles.energy, float)
    for r, tech in enumerate(detector.technologies):
        sel = np.flatnonzero(ok & (region == r))
        if sel.size == 0:
            continue
        # window mode: an odd grid centred on the impact cell; image mode: the wall's grid (both
        # centred on x = y = 0 of the coordinates given to Geant4)
        gx, gy = offset[sel, 0], offset[sel, 1]
        grid, win = ((nx, ny), None) if image else (None, window)
        raw = run_geant4(tech, float(sizes[r]), dict(pid=np.asarray(particles.pid)[sel], energy=e_true[sel], x=gx, y=gy,
                                                     tx=np.asarray(particles.tx, float)[sel],
                                                     ty=np.asarray(particles.ty, float)[sel]),
                         seed=base, window=win, grid=grid, workers=workers, executor=executor, scheduler=scheduler,
                         data_dir=data_dir,
                         progress=progress, stream=r + 1,
                         desc=f"Geant4 {tech.name} (region {layout.regions[r].name})")
        cells = raw["cells"]
        ns = cells.shape[1]
        energy[sel, :ns] = cells / sf[r, :ns][None, :, None, None]
        depth[sel, :ns] = section_depths(raw["spec"], raw["layer_active"])
        deposited = raw["layer_active"].sum(axis=1) + raw["layer_absorber"].sum(axis=1)
        leakage[sel] = 1.0 - deposited / e_true[sel]
    # readout (no sampling term: Geant4 made the sampling fluctuations) and times
    tables = cached_region_tables(detector, max(1, n_out), image)
    ridx = np.clip(region, 0, detector.n_regions - 1)
    tab = {k: jnp.moveaxis(jnp.asarray(v)[ridx], 0, -1) for k, v in tables.items()}
    tab["sampling_term"] = jnp.zeros_like(tab["sampling_term"])
    tab["cal_constant_term"] = jnp.zeros_like(tab["cal_constant_term"])      # the model's, not Geant4's
    flight = np.sqrt(x ** 2 + y ** 2 + layout.z_mm ** 2) if layout.z_mm > 0 else np.zeros(n)
    along = np.sqrt(1.0 + np.asarray(particles.tx, float) ** 2 + np.asarray(particles.ty, float) ** 2)
    t_true = np.asarray(particles.time, float) + flight / SPEED_OF_LIGHT_MM_PER_NS
    t_sec = t_true[:, None] + depth * along[:, None] / SPEED_OF_LIGHT_MM_PER_NS               # [n, S]
    t_mean = np.broadcast_to(t_sec[:, :, None, None], energy.shape)
    cells, times = _readout(jnp.asarray(energy), jnp.asarray(t_mean, jnp.float32), tab, key, mode, bool(timing))
    cells = np.where(ok[:, None, None, None], np.asarray(cells), 0.0).astype(np.float32)
    times = np.where(cells > 0, np.asarray(times), 0.0).astype(np.float32)
    return Clusters(
        energy=cells, time=times, e_true=e_true.astype(np.float32), x=x.astype(np.float32), y=y.astype(np.float32),
        tx=np.asarray(particles.tx, np.float32), ty=np.asarray(particles.ty, np.float32),
        pid=np.asarray(particles.pid, np.int32), offset=offset.astype(np.float32),
        centre=np.where(ok[:, None], centre, 0.0).astype(np.float32),
        cell_index=np.where(ok[:, None], np.stack([ix, iy], axis=-1), -1).astype(np.int32),
        cell_size_mm=np.where(ok, cell, 0.0).astype(np.float32), region=region.astype(np.int32),
        status=status.astype(np.int32), leakage=np.where(ok, leakage, 0.0).astype(np.float32),
        n_background=np.zeros(n, np.int32), t_true=t_true.astype(np.float32))


def section_depths(spec, layer_active) -> np.ndarray:
    """Energy-weighted depth (mm from the front face) of each readout section's active deposits, per
    shower [n, S], from the per-layer active energies [n, L] (0 for a section without energy)."""
    z, mid = 0.0, []
    for b in spec.blocks:
        for _ in range(b.count):
            mid.append(z + b.absorber_mm + 0.5 * b.active_mm)
            z += b.pitch_mm
    mid = np.asarray(mid)
    la = np.asarray(layer_active, float)
    sec = np.asarray(spec.layer_sections())
    out = np.zeros((la.shape[0], spec.n_sections))
    for s in range(spec.n_sections):
        w = la[:, sec == s]
        tot = w.sum(axis=1)
        out[:, s] = np.where(tot > 0, (w * mid[sec == s]).sum(axis=1) / np.where(tot > 0, tot, 1.0), 0.0)
    return out


def _readout(energy, t_mean, tab, key, mode, timing):
    """The parametric readout on Geant4's cell energies (one compiled function per shapes and mode)."""
    return _readout_jit()(energy, t_mean, tab, key, mode=mode, timing=timing)


@functools.cache
def _readout_jit():
    import jax

    return jax.jit(_readout_impl, static_argnames=("mode", "timing"))


def _readout_impl(energy, t_mean, tab, key, mode, timing):
    import jax
    import jax.numpy as jnp

    from diffcalo.simulation.readout import cell_time_jitter, fluctuate

    k_fluct, k_time = jax.random.split(jax.random.fold_in(key, _G4_STREAM + 1))
    mean = jnp.moveaxis(energy, 0, -1)                                           # [S, Ky, Kx, n]
    cells = fluctuate(mean, tab, k_fluct, mode) * tab["section_mask"][:, None, None, :]
    if timing:
        times = cell_time_jitter(k_time, jnp.moveaxis(t_mean, 0, -1), cells, tab["time_stochastic_ns"],
                                 tab["time_constant_ns"])
    else:
        times = jnp.zeros_like(cells)
    return jnp.moveaxis(cells, -1, 0), jnp.moveaxis(times, -1, 0)
