"""The :class:`Clusters` record: simulated (or read) calorimeter responses with their truth.

One home for the record and its batch operations: :meth:`Clusters.take` (rows by index, slice or
mask) and :meth:`Clusters.concatenate` (several records into one), used wherever clusters are split
into training / validation / test sets or assembled from chunks, and :meth:`Clusters.summary`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from diffcalo.layout import STATUS_BEAM_HOLE, STATUS_OK, STATUS_OUTSIDE

__all__ = ["Clusters", "CLUSTER_FIELDS"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Clusters:
    """Simulated calorimeter responses and their truth (every field has the cluster axis first).

    Attributes:
        energy: [n, L, K, K] (window mode) or [n, L, Ny, Nx] (image mode) cell energies, GeV (EM scale).
        time: [n, L, K, K] cell times (ns): energy-weighted mean arrival of the cell's deposits plus
            the technology's jitter; 0 where the cell has no energy.
        e_true: [n] true energy (GeV).
        x, y: [n] true impact point on the front face (mm).
        tx, ty: [n] true slopes.
        pid: [n] particle id.
        offset: [n, 2] impact point minus the impact-cell centre (mm); in image mode, minus the
            wall centre.
        centre: [n, 2] the window's centre on the wall (mm): the impact cell's centre in window mode,
            the wall centre (0, 0) in image mode; 0 off the wall. A detector quantity (which cell is
            the window's seed), so reconstruction reads it instead of truth.
        cell_index: [n, 2] (ix, iy) of the impact cell on its region's grid (-1 if not on the wall).
        cell_size_mm: [n] cell size of the impact region (mm).
        region: [n] region index (-1 beam hole, -2 outside the wall).
        status: [n] 0 ok, 1 in the beam hole, 2 outside the wall (such clusters have zero energy).
        leakage: [n] true fraction of the shower energy behind the stack (before fluctuations).
        n_background: [n] pile-up particles hitting the window (see
            :mod:`diffcalo.simulation.overlay`); windows whose candidate draw exceeded the simulator's
            ``max_background`` slots hold the candidate count instead, always > ``max_background``
            (``n_background > max_background`` marks them); 0 without pile-up.
        t_true: [n] true arrival time of the particle at the front face (ns): production time +
            flight from the interaction point at c (the target of time reconstruction).
    """

    energy: jnp.ndarray
    time: jnp.ndarray
    e_true: jnp.ndarray
    x: jnp.ndarray
    y: jnp.ndarray
    tx: jnp.ndarray
    ty: jnp.ndarray
    pid: jnp.ndarray
    offset: jnp.ndarray
    centre: jnp.ndarray
    cell_index: jnp.ndarray
    cell_size_mm: jnp.ndarray
    region: jnp.ndarray
    status: jnp.ndarray
    leakage: jnp.ndarray
    n_background: jnp.ndarray
    t_true: jnp.ndarray

    @property
    def n(self) -> int:
        return int(self.energy.shape[0])

    def as_numpy(self) -> Clusters:
        """The same record with every field a numpy array (host copy)."""
        return jax.tree_util.tree_map(np.asarray, self)

    def take(self, index) -> Clusters:
        """Rows ``index`` (integer array, slice or boolean mask over the clusters) of every field."""
        return jax.tree_util.tree_map(lambda a: a[index], self)

    @staticmethod
    def concatenate(parts: Sequence[Clusters]) -> Clusters:
        """One record of the rows of ``parts`` in order (numpy arrays; the cluster shapes must agree)."""
        parts = list(parts)
        if not parts:
            raise ValueError("Clusters.concatenate: no parts given")
        shapes = {tuple(np.shape(p.energy)[1:]) for p in parts}
        if len(shapes) > 1:
            raise ValueError(f"Clusters.concatenate: parts have different cluster shapes {sorted(shapes)}")
        return jax.tree_util.tree_map(lambda *a: np.concatenate([np.asarray(x) for x in a]), *parts)

    def split(self, sizes: Sequence[int]) -> list[Clusters]:
        """Consecutive parts of ``sizes`` rows each (their sum must be the number of clusters)."""
        bounds = np.cumsum([0, *sizes])
        if bounds[-1] != self.n:
            raise ValueError(f"Clusters.split: sizes sum to {bounds[-1]}, the record has {self.n} clusters")
        return [self.take(slice(int(a), int(b))) for a, b in zip(bounds[:-1], bounds[1:])]

    def summary(self) -> dict:
        """Plain-number summary for printing."""
        e = np.asarray(self.energy)
        status = np.asarray(self.status)
        ok = status == STATUS_OK
        tot = e.reshape(e.shape[0], -1).sum(axis=1)
        ratio = tot[ok] / np.asarray(self.e_true)[ok]
        return dict(
            clusters=int(e.shape[0]), shape=tuple(e.shape[1:]), ok=int(ok.sum()),
            beam_hole=int((status == STATUS_BEAM_HOLE).sum()),
            outside=int((status == STATUS_OUTSIDE).sum()),
            mean_sum_over_true=float(ratio.mean()) if ratio.size else float("nan"),
            rms_sum_over_true=float(ratio.std()) if ratio.size else float("nan"),
            mean_leakage=float(np.asarray(self.leakage)[ok].mean()) if ok.any() else float("nan"),
        )


#: The record's field names, in order.
CLUSTER_FIELDS = tuple(f.name for f in dataclasses.fields(Clusters))
