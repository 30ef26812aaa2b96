r"""Network inputs (features) of the reconstruction tasks, built without truth.

Tasks. ``energy`` predicts E = E_cal (1 + out) from the classical calibrated sum E_cal. ``position``
predicts the offset from the window centre (and the slopes when the stack has several readout
sections) as a correction to the classical estimate: out = ((x - x_cl) / cell, (y - y_cl) / cell[,
(tx - tx_cl) / 0.1, (ty - ty_cl) / 0.1]). ``time`` predicts (t - t_cl) / 0.1 ns. The prediction of
each task is ``base + scale * out``: base = scale = E_cal for ``energy``, base 0 and scale 1 for the
corrections (their targets, built from truth, are in :mod:`diffcalo.reco.targets`).

Inputs (:class:`Inputs`): channels-last maps (each section's cells divided by the cluster sum; for
``time`` and when ``use_time`` is set, also each section's cell times relative to the classical time,
in units of 0.1 ns, 0 where a cell is empty), scalar features (log of E_cal / 10 GeV, cell size / 100 mm,
region one-hot, distance of the window from the beam / 1 m) and vector features, which turn with the
symmetry augmentation of training: the classical offset in cell units, the window centre in m and
(with several sections) the classical slopes x 10.

Nothing here reads the truth fields of the clusters (e_true, x, y, offset, t_true, the slopes): the
window centre is ``clusters.centre``, the seed cell's centre (:func:`~diffcalo.reco.classical.window_centre`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from diffcalo.reco.classical import ClassicalReco, cluster_sum, window_centre

__all__ = ["TASKS", "TIME_UNIT_NS", "SLOPE_UNIT", "Inputs", "energy_inputs", "image_features", "cluster_inputs",
           "usable_clusters", "n_regions_of"]

TASKS = ("energy", "position", "time")
#: Unit of the time correction and of the cell-time maps (ns).
TIME_UNIT_NS = 0.1
#: Unit of the slope correction and of the classical-slope features.
SLOPE_UNIT = 0.1
_TIME_CLIP = 50.0


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Inputs:
    """Network inputs of one task and, for training and evaluation, its targets (module docstring).

    images [n, H, W, C]; scalars [n, Fs]; vectors [n, V, 2]; base, scale [n, k]: the prediction is
    base + scale * out. target [n, k] (loss units) and e_true [n] (GeV) come from the truth
    (:mod:`diffcalo.reco.targets`); they are None in inputs built for prediction.
    """

    images: jnp.ndarray
    scalars: jnp.ndarray
    vectors: jnp.ndarray
    base: jnp.ndarray
    scale: jnp.ndarray
    target: jnp.ndarray | None = None
    e_true: jnp.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.images.shape[0])

    def take(self, idx) -> "Inputs":
        return jax.tree_util.tree_map(lambda a: a[idx], self)

    @property
    def features(self):
        return jnp.concatenate([self.scalars, self.vectors.reshape(self.vectors.shape[0], -1)], axis=-1)


def _onehot(region, n_regions):
    return (jnp.asarray(region)[:, None] == jnp.arange(n_regions)[None, :]).astype(jnp.float32)


def _region_table(classical: ClassicalReco, key: str, n_regions: int, default=0.0):
    vals = np.full(n_regions, default, np.float64)
    for r, tab in classical.tables.items():
        vals[int(r)] = tab[key]
    return jnp.asarray(vals, jnp.float32)


def n_regions_of(classical: ClassicalReco) -> int:
    return 1 + max(int(r) for r in classical.tables)


def energy_inputs(energy, region, cell_size_mm, centre, classical: ClassicalReco, time=None,
                  t_classical=None) -> Inputs:
    """Inputs of the energy network from cluster arrays, in jnp (traceable: the differentiable path).

    Args:
        energy: [n, L, H, W] cells (GeV); region [n]; cell_size_mm [n]; centre [n, 2] window centre (mm);
        classical: the fitted calibration; time, t_classical: cell times and the classical time (ns),
        when the network uses timing.

    Returns:
        :class:`Inputs` without vector features and without targets.
    """
    n_regions = n_regions_of(classical)
    dtype = jnp.result_type(jnp.asarray(energy).dtype, jnp.float32)     # float64 stays float64 (gradient checks)
    region = jnp.clip(jnp.asarray(region), 0, n_regions - 1)
    s = cluster_sum(energy)
    s_safe = jnp.where(s > 0, s, 1.0)
    e_cal = _region_table(classical, "e0", n_regions)[region] + _region_table(classical, "e1", n_regions, 1.0)[region] * s
    e_cal = jnp.maximum(e_cal, 1e-3)
    maps = jnp.moveaxis(jnp.asarray(energy) / s_safe[:, None, None, None], 1, -1)
    if time is not None:
        maps = jnp.concatenate([maps, _time_maps(energy, time, t_classical)], axis=-1)
    centre = jnp.asarray(centre)
    scalars = jnp.concatenate([
        jnp.log(e_cal / 10.0)[:, None], (jnp.asarray(cell_size_mm) / 100.0)[:, None], _onehot(region, n_regions),
        (jnp.hypot(centre[:, 0], centre[:, 1]) / 1000.0)[:, None]], axis=-1).astype(dtype)
    return Inputs(images=maps.astype(dtype), scalars=scalars, vectors=jnp.zeros((s.shape[0], 0, 2), dtype),
                  base=e_cal[:, None].astype(dtype), scale=e_cal[:, None].astype(dtype))


def image_features(cells, e_cal, *, scalars=None, vectors=None, n_corrections: int = 0) -> Inputs:
    """Inputs from whole-detector images (LUXE, the toy) rather than clusters on a wall.

    Args:
        cells: [n, L, H, W] cell energies (GeV), L layers become the channels.
        e_cal: [n] the classical (calibrated) energy estimate (GeV), the energy network's base and scale.
        scalars: optional extra scalar features [n, F] (the log of E_cal / 10 GeV is always the first).
        vectors: optional vector features [n, V, 2] (x, y pairs: turned by the symmetry augmentation).
        n_corrections: 0 for the energy task; else the number k of outputs of a correction task
            (base 0, scale 1).

    The maps are the cells divided by each image's mean absolute cell (total / number of cells for
    the non-negative realistic readout; signed relaxed-mode cells could otherwise divide by a mean
    near zero), so the network sees the shape, the scalar branch the energy, and the maps are of
    order one. (Divided
    by the total, as the cluster windows are, an 11 x 13 x 20 crop has cells ~1e-3 and convolution
    outputs of variance ~1e-7: BatchNorm's running variance, which starts at 1, then needs hundreds
    of steps to forget its start, and the evaluation-mode network differed from the trained one:
    measured on 2700 LUXE showers, the loss on the training set rose 0.44 -> 0.70 in evaluation
    mode while it fell 0.44 -> 0.37 in training mode.)
    """
    cells = np.asarray(cells, dtype=np.float32)
    if cells.ndim != 4:
        raise ValueError(f"image_features: cells must be [n, layers, H, W]; got shape {cells.shape}")
    n = cells.shape[0]
    e_cal = np.maximum(np.asarray(e_cal, dtype=np.float32).reshape(-1), 1e-3)
    if e_cal.shape[0] != n:
        raise ValueError(f"image_features: e_cal has {e_cal.shape[0]} entries for {n} images")
    mean = np.abs(cells).reshape(n, -1).mean(axis=1)        # |cells|: relaxed-mode cells are signed
    maps = np.moveaxis(cells / np.where(mean > 0, mean, 1.0)[:, None, None, None], 1, -1)
    sc = [np.log(e_cal / 10.0)[:, None]]
    if scalars is not None:
        sc.append(np.asarray(scalars, np.float32).reshape(n, -1))
    vec = np.zeros((n, 0, 2), np.float32) if vectors is None else np.asarray(vectors, np.float32).reshape(n, -1, 2)
    if n_corrections:
        base, scale = np.zeros((n, n_corrections), np.float32), np.ones((n, n_corrections), np.float32)
    else:
        base = scale = e_cal[:, None]
    return Inputs(images=jnp.asarray(maps), scalars=jnp.asarray(np.concatenate(sc, axis=1)),
                  vectors=jnp.asarray(vec), base=jnp.asarray(base), scale=jnp.asarray(scale))


def _time_maps(energy, time, t_classical):
    rel = (jnp.asarray(time) - jnp.asarray(t_classical)[:, None, None, None]) / TIME_UNIT_NS
    rel = jnp.where(jnp.asarray(energy) > 0, jnp.clip(rel, -_TIME_CLIP, _TIME_CLIP), 0.0)
    return jnp.moveaxis(rel, 1, -1)


def usable_clusters(clusters, classical: ClassicalReco, estimate) -> np.ndarray:
    """Mask [n] of the clusters a network can reconstruct: on the wall (status 0), in a region the
    classical reconstruction was fitted on, with a finite classical energy ``estimate.energy``."""
    fitted = np.isin(np.asarray(clusters.region), [int(r) for r in classical.tables])
    return (np.asarray(clusters.status) == 0) & fitted & np.isfinite(estimate.energy)


def cluster_inputs(task: str, clusters, classical: ClassicalReco, *, use_time: bool = False, estimate=None,
                   mask=None):
    """Inputs of ``task`` (no targets) for the clusters in ``mask``; returns (inputs, mask).

    Args:
        task: one of :data:`TASKS`.
        clusters: a :class:`~diffcalo.simulation.Clusters` record; its truth fields are not read
            (module docstring).
        classical: the fitted classical reconstruction.
        use_time: add the cell-time maps (always for ``time``).
        estimate: ``classical.predict(clusters)`` when already computed.
        mask: [n] clusters to use; default :func:`usable_clusters`.

    Raises:
        ValueError: unknown task; no cluster to use.
    """
    if task not in TASKS:
        raise ValueError(f"task = {task!r}; allowed: {', '.join(TASKS)}")
    est = classical.predict(clusters) if estimate is None else estimate
    if mask is None:
        mask = usable_clusters(clusters, classical, est)
    if not mask.any():
        raise ValueError(f"task {task!r}: no usable clusters (on the wall, in a calibrated region)")
    idx = np.flatnonzero(mask)
    energy = np.asarray(clusters.energy)[idx]
    time = np.asarray(clusters.time)[idx]
    cell = np.asarray(clusters.cell_size_mm, dtype=np.float64)[idx]
    centre = window_centre(clusters)[idx]
    with_time = use_time or task == "time"
    t_cl = est.time[idx]
    base = energy_inputs(energy, np.asarray(clusters.region)[idx], cell, centre, classical,
                         time if with_time else None, t_cl if with_time else None)
    n_sec = energy.shape[1]
    vectors = [est.offset[idx] / cell[:, None], centre / 1000.0]
    if n_sec >= 2:
        vectors.append(est.slope[idx] / SLOPE_UNIT)
    vectors = jnp.asarray(np.stack(vectors, axis=1), jnp.float32)
    if task == "energy":
        return dataclasses.replace(base, vectors=vectors), mask
    k = (4 if n_sec >= 2 else 2) if task == "position" else 1
    n = idx.size
    return dataclasses.replace(base, vectors=vectors, base=jnp.zeros((n, k), jnp.float32),
                               scale=jnp.ones((n, k), jnp.float32)), mask
