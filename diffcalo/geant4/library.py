r"""Geant4 shower libraries: (particle, energy) -> cluster responses of one technology, in HDF5.

A library is a dataset of :mod:`diffcalo.io` (readable by :func:`diffcalo.io.read_clusters`) holding
Geant4 showers in one technology's stack with no readout (pure physics):

* ``clusters/energy`` [N, S, K, K]: the energy Geant4 deposited in the active medium of each cell and
  readout section divided by the sampling fraction recorded in the library
  (``em_scale_sampling_fraction``: the technology's value when the library was made), i.e. the EM scale
  of that technology; :func:`library_deposits` gives the active deposits back;
* ``x``, ``y`` = ``offset``: the impact point relative to the centre of the impact cell (uniform over
  the cell), ``tx``, ``ty`` the slopes (0, or uniform in [-max_slope, max_slope]);
  ``leakage``: the fraction of the energy not deposited in the stack; ``time``: the section's
  energy-weighted depth / c (no resolution applied);
* ``extras/layer_active``, ``extras/layer_absorber`` [N, L]: energy (GeV) per layer in the active and
  absorber media over the whole scored grid (longitudinal profiles and per-layer sampling fractions);
* the ``config`` attribute's ``library`` entry: technology, cell size, window, particles, energies,
  showers per point, slopes, seed, the stack as built (:class:`~diffcalo.geant4.geometry.StackSpec`),
  Geant4 version, physics list, production cut, the data directory's provenance, CPU seconds, and
  ``library_version``.

:func:`make_library` is resumable: every block of showers (one particle, one energy, at most
``block`` showers) is written atomically into ``NAME.parts/`` as it completes; a run that is killed
keeps the finished blocks, and the same command continues from them (each block's seed depends only on
the library's seed and the block, so a resumed library equals an uninterrupted one). The parts are
merged into the library at the end and removed.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import sys

import numpy as np

from diffcalo.errors import ConfigError, DatasetError

__all__ = ["LIBRARY_VERSION", "make_library", "read_library", "library_deposits", "PARTICLE_IDS",
           "DEFAULT_ENERGIES", "DEFAULT_PARTICLES"]

LIBRARY_VERSION = 1
#: particle names accepted on the command line -> PDG ids
PARTICLE_IDS = {"e-": 11, "e+": -11, "gamma": 22}
DEFAULT_PARTICLES = ("e-", "gamma")
DEFAULT_ENERGIES = (1.0, 3.0, 10.0, 20.0, 50.0)
_BLOCK = 100


def _block_plan(particles, energies, showers, block):
    """[(particle, energy, index, count)] of the library's blocks, in a fixed order."""
    out = []
    for p in particles:
        for e in energies:
            for i, start in enumerate(range(0, showers, block)):
                out.append((p, float(e), i, min(block, showers - start)))
    return out


def _part_name(p, e, i) -> str:
    return f"{p}_{e:g}GeV_{i:03d}.h5"


def make_library(technology, path, *, particles=DEFAULT_PARTICLES, energies=DEFAULT_ENERGIES, showers: int = 200,
                 cell_mm: float | None = None, window: int = 5, max_slope: float = 0.0, seed: int = 0,
                 workers: int | None = None, executor: str = "process", scheduler: str = "", data_dir=None,
                 overwrite: bool = False, block: int = _BLOCK, progress: bool = True, log=None,
                 command: str = "") -> pathlib.Path:
    """Simulate a shower library of ``technology`` into ``path`` (see the module docstring).

    Args:
        technology: a :class:`~diffcalo.technologies.Technology`.
        path: the library file (``.h5``).
        particles: names from :data:`PARTICLE_IDS`.
        energies: GeV, each > 0.
        showers: showers per (particle, energy).
        cell_mm: cell size (default: the technology's smallest).
        window: cells per side of the stored window (odd).
        max_slope: slopes uniform in [-max_slope, max_slope] (0: normal incidence).
        seed: the library's seed.
        workers, executor, scheduler, data_dir: as :func:`~diffcalo.geant4.backend.run_geant4`.
        overwrite: replace an existing library (otherwise an existing complete library is an error).
        block: showers per resumable block.
        progress: progress bars.
        log: messages (default: stderr).
        command: the command line that made it (recorded).

    Raises:
        ConfigError: bad arguments (named), or parts on disk made with other arguments.
    """
    from diffcalo.geant4.backend import available_cpus, run_geant4, task_seeds
    from diffcalo.geant4.data import ensure_data
    from diffcalo.io import dataset_info, read_clusters, read_extras, write_clusters
    from diffcalo.study.executors import make_executor

    if log is None:
        def log(msg):
            print(msg, file=sys.stderr, flush=True)
    path = pathlib.Path(path)
    particles = tuple(particles)
    for p in particles:
        if p not in PARTICLE_IDS:
            raise ConfigError(f"particles: {p!r} is not simulated; allowed {', '.join(PARTICLE_IDS)}")
    if not particles:
        raise ConfigError("particles: give at least one (e-, e+, gamma)")
    energies = tuple(float(e) for e in energies)
    if not energies or any(not (np.isfinite(e) and e > 0) for e in energies):
        raise ConfigError(f"energies = {list(energies)}: give energies in GeV, each > 0")
    if len(set(energies)) != len(energies):
        raise ConfigError(f"energies = {list(energies)}: repeated values")
    if not (isinstance(showers, int) and showers >= 1):
        raise ConfigError(f"showers = {showers!r}: must be an integer >= 1")
    if not (isinstance(window, int) and window >= 1 and window % 2 == 1):
        raise ConfigError(f"window = {window!r}: must be an odd integer >= 1")
    if not (np.isfinite(max_slope) and 0 <= max_slope <= 1):
        raise ConfigError(f"max_slope = {max_slope!r}: must be in [0, 1]")
    technology.validate()
    if cell_mm is None:
        cell_mm = min(technology.cell_sizes_mm) if technology.cell_sizes_mm else technology.module_mm
    from diffcalo.technologies.base import validate_cell_size

    try:
        validate_cell_size(cell_mm, technology.module_mm, technology.cell_sizes_mm, "cell_size_mm")
    except ValueError as exc:
        raise ConfigError(f"technology {technology.name!r}: {exc}") from None
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} exists; pass --force (overwrite=True) to replace it")
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; give the library a file name (e.g. {path / 'lib.h5'})")
    data = ensure_data(data_dir, log=log)
    sf = [float(v) for v in np.asarray(technology.section_sampling_fraction())]
    request = dict(technology=technology.name, cell_size_mm=float(cell_mm), window=window, particles=list(particles),
                   energies=list(energies), showers=showers, max_slope=float(max_slope), seed=int(seed), block=block,
                   em_scale_sampling_fraction=sf)
    parts_dir = path.with_name(path.name + ".parts")
    parts_dir.mkdir(parents=True, exist_ok=True)
    request_file = parts_dir / "request.json"
    if request_file.exists():
        old = json.loads(request_file.read_text())
        if old != request:
            diff = sorted(k for k in set(old) | set(request) if old.get(k) != request.get(k))
            raise ConfigError(f"{parts_dir} holds blocks of another request (differs in {', '.join(diff)}); "
                              "repeat the earlier command to continue it, or remove the folder to start over")
    else:
        request_file.write_text(json.dumps(request, indent=1))
    plan = _block_plan(particles, energies, showers, block)
    seeds = task_seeds(seed, len(plan), stream=0x11B)
    done = [(parts_dir / _part_name(p, e, i)).exists() for p, e, i, _ in plan]
    if any(done):
        log(f"resuming: {sum(done)} of {len(plan)} blocks are already simulated in {parts_dir}")
    meta = dict(cpu_seconds=0.0, geant4="")
    from tqdm import tqdm

    todo = [(b, s) for b, s, d in zip(plan, seeds, done) if not d]
    total = sum(b[3] for b, _ in todo)
    bar = tqdm(total=total, desc=f"Geant4 library {technology.name}", unit="shower", file=sys.stderr,
               disable=not progress or not todo, dynamic_ncols=True)
    ex = make_executor(executor, workers or available_cpus(), scheduler) if todo else None
    try:
        for (p, e, i, count), s in todo:
            rng = np.random.default_rng(s)
            half = 0.5 * cell_mm
            shots = dict(pid=np.full(count, PARTICLE_IDS[p]), energy=np.full(count, e),
                         x=rng.uniform(-half, half, count), y=rng.uniform(-half, half, count),
                         tx=rng.uniform(-max_slope, max_slope, count) if max_slope else np.zeros(count),
                         ty=rng.uniform(-max_slope, max_slope, count) if max_slope else np.zeros(count))
            raw = run_geant4(technology, cell_mm, shots, seed=s, window=window, executor=ex, data_dir=data,
                             progress=False)
            clusters, extras = _as_library_rows(raw, shots, cell_mm, sf)
            write_clusters(parts_dir / _part_name(p, e, i), clusters, extras=extras, seed=s, overwrite=True,
                           config=dict(library_block=dict(particle=p, energy=e, index=i, cpu_seconds=raw["cpu_seconds"],
                                                          geant4=raw["geant4"], spec=json.loads(raw["spec"].to_json()))))
            bar.update(count)
    finally:
        bar.close()
        if ex is not None:
            ex.close()
    # merge
    chunks, extras_all = [], []
    spec = None
    for p, e, i, _ in plan:
        part = parts_dir / _part_name(p, e, i)
        info = dataset_info(part)
        blk = info["config"]["library_block"]
        meta["cpu_seconds"] += blk["cpu_seconds"]
        meta["geant4"] = blk["geant4"]
        spec = blk["spec"]
        chunks.append(read_clusters(part))
        extras_all.append(read_extras(part))
    from diffcalo.clusters import Clusters
    from diffcalo.geant4.data import MANIFEST
    from diffcalo.geant4.worker import PHYSICS_LIST, PRODUCTION_CUT_MM

    manifest = json.loads((pathlib.Path(data) / MANIFEST).read_text())
    library = dict(request, library_version=LIBRARY_VERSION, geant4=meta["geant4"], physics_list=PHYSICS_LIST,
                   production_cut_mm=PRODUCTION_CUT_MM, data_provenance=dict(source=manifest.get("source"),
                                                                             approximations=manifest.get("approximations")),
                   stack=spec, cpu_seconds=round(meta["cpu_seconds"], 1), command=command)
    merged = {k: np.concatenate([x[k] for x in extras_all]) for k in extras_all[0]}
    write_clusters(path, Clusters.concatenate(chunks), extras=merged, seed=seed, overwrite=True,
                   config=dict(library=library))
    shutil.rmtree(parts_dir)
    return path


def _as_library_rows(raw, shots, cell_mm, sf):
    """Library rows (a Clusters mapping and extras) from run_geant4's raw output."""
    from diffcalo.geant4.backend import section_depths
    from diffcalo.simulation.readout import SPEED_OF_LIGHT_MM_PER_NS

    n = len(shots["energy"])
    cells = raw["cells"] / np.asarray(sf, np.float32)[None, :, None, None]
    along = np.sqrt(1 + shots["tx"] ** 2 + shots["ty"] ** 2)
    t_sec = section_depths(raw["spec"], raw["layer_active"]) * along[:, None] / SPEED_OF_LIGHT_MM_PER_NS
    time = np.where(cells > 0, t_sec[:, :, None, None], 0.0)
    deposited = raw["layer_active"].sum(axis=1) + raw["layer_absorber"].sum(axis=1)
    off = np.stack([shots["x"], shots["y"]], axis=1)
    f32 = np.float32
    clusters = dict(energy=cells.astype(f32), time=time.astype(f32), e_true=shots["energy"].astype(f32),
                    x=shots["x"].astype(f32), y=shots["y"].astype(f32), tx=shots["tx"].astype(f32),
                    ty=shots["ty"].astype(f32), pid=shots["pid"].astype(np.int32), offset=off.astype(f32),
                    centre=np.zeros((n, 2), f32), cell_index=np.zeros((n, 2), np.int32),
                    cell_size_mm=np.full(n, cell_mm, f32), region=np.zeros(n, np.int32),
                    status=np.zeros(n, np.int32), leakage=(1.0 - deposited / shots["energy"]).astype(f32),
                    n_background=np.zeros(n, np.int32), t_true=np.zeros(n, f32))
    extras = dict(layer_active=raw["layer_active"].astype(f32), layer_absorber=raw["layer_absorber"].astype(f32))
    return clusters, extras


def read_library(path, technology: str | None = None):
    """A shower library: (:class:`~diffcalo.clusters.Clusters`, extras dict, the ``library`` metadata).

    Args:
        path: the library file.
        technology: if given, the library must be of this technology.

    Raises:
        DatasetError: not a diffcalo dataset, not a shower library, or of another technology.
    """
    from diffcalo.io import dataset_info, read_clusters, read_extras

    info = dataset_info(path)
    meta = info["config"].get("library")
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: not a Geant4 shower library (a diffcalo dataset without library metadata); "
                           "make one with: diffcalo geant4 library TECH -o FILE")
    if meta.get("library_version") != LIBRARY_VERSION:
        raise DatasetError(f"{path}: library_version = {meta.get('library_version')!r}; this diffcalo reads "
                           f"{LIBRARY_VERSION}")
    if technology is not None and meta.get("technology") != technology:
        raise DatasetError(f"{path}: a library of technology {meta.get('technology')!r}, not {technology!r}")
    return read_clusters(path), read_extras(path), meta


def library_deposits(clusters, meta) -> np.ndarray:
    """The energy deposited in the active medium per cell and section (GeV): the library's EM-scale
    energies times the sampling fraction they were divided by."""
    sf = np.asarray(meta["em_scale_sampling_fraction"], np.float64)
    return np.asarray(clusters.energy, np.float64) * sf[None, :, None, None]
