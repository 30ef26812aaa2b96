"""Regression targets from the truth, for training and evaluation (prediction does not need them).

The targets are in the loss units of :mod:`diffcalo.reco.features`: E_true (GeV) for ``energy``;
the normalised residuals of the classical estimate for ``position`` ((x - x_cl) / cell, ...,
(tx - tx_cl) / 0.1, ...) and ``time`` ((t - t_cl) / 0.1 ns).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from diffcalo.reco.classical import ClassicalReco
from diffcalo.reco.features import SLOPE_UNIT, TASKS, TIME_UNIT_NS, Inputs, cluster_inputs, image_features, usable_clusters

__all__ = ["prepare", "image_inputs"]


def prepare(task: str, clusters, classical: ClassicalReco, *, use_time: bool = False, estimate=None):
    """Inputs and targets of ``task`` for the clusters on the wall (status 0) of regions the
    classical reconstruction was fitted on (and, for ``time``, with time truth); returns
    (inputs, mask [n] of the clusters used).

    Raises:
        ValueError: unknown task; no usable cluster; ``time`` on data without time truth.
    """
    if task not in TASKS:
        raise ValueError(f"task = {task!r}; allowed: {', '.join(TASKS)}")
    est = classical.predict(clusters) if estimate is None else estimate
    mask = usable_clusters(clusters, classical, est)
    if task == "time":
        t_true = np.asarray(clusters.t_true, dtype=np.float64)
        if not np.isfinite(t_true[mask]).any():
            raise ValueError("task 'time': the clusters have no time truth (t_true is NaN: a schema-1 dataset?); "
                             "regenerate them with this diffcalo")
        mask &= np.isfinite(t_true)
    inputs, mask = cluster_inputs(task, clusters, classical, use_time=use_time, estimate=est, mask=mask)
    idx = np.flatnonzero(mask)
    e_true = np.asarray(clusters.e_true)[idx]
    if task == "energy":
        target = e_true[:, None]
    elif task == "position":
        cell = np.asarray(clusters.cell_size_mm, dtype=np.float64)[idx]
        off_true = np.asarray(clusters.offset, dtype=np.float64)[idx]
        r = [(off_true - est.offset[idx]) / cell[:, None]]
        if clusters.energy.shape[1] >= 2:
            slope_true = np.stack([np.asarray(clusters.tx), np.asarray(clusters.ty)], axis=1)[idx]
            r.append((slope_true - est.slope[idx]) / SLOPE_UNIT)
        target = np.concatenate(r, axis=1)
    else:
        target = ((np.asarray(clusters.t_true, dtype=np.float64)[idx] - est.time[idx]) / TIME_UNIT_NS)[:, None]
    dtype = inputs.images.dtype if task == "energy" else jnp.float32
    return dataclasses.replace(inputs, target=jnp.asarray(target, dtype),
                               e_true=jnp.asarray(e_true, inputs.images.dtype)), mask


def image_inputs(cells, e_true, e_cal, *, scalars=None, vectors=None, target=None) -> Inputs:
    """Inputs and targets from whole-detector images (LUXE, the toy): :func:`image_features` with
    the truth.

    Args:
        cells, e_cal, scalars, vectors: as for :func:`~diffcalo.reco.features.image_features`.
        e_true: [n] true energies (GeV).
        target: None for the energy task (the target is E_true); else [n, k] targets of a
            correction task (base 0, scale 1), vector pairs when the task turns them.
    """
    inputs = image_features(cells, e_cal, scalars=scalars, vectors=vectors,
                            n_corrections=0 if target is None else int(np.prod(np.shape(target)[1:])))
    e_true = np.asarray(e_true, dtype=np.float32).reshape(-1)
    if e_true.shape[0] != inputs.n:
        raise ValueError(f"image_inputs: e_true has {e_true.shape[0]} entries for {inputs.n} images")
    tgt = e_true[:, None] if target is None else np.asarray(target, np.float32).reshape(inputs.n, -1)
    return dataclasses.replace(inputs, target=jnp.asarray(tgt), e_true=jnp.asarray(e_true))
