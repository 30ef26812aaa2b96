r"""Training the reconstruction networks: inputs, the jitted training loop, checkpoints.

Tasks. ``energy`` predicts E = E_cal (1 + out) from the classical calibrated sum E_cal and is
trained with any loss of :mod:`diffcalo.reco.losses` on GeV. ``position`` predicts the offset from
the window centre (and the slopes when the stack has several readout sections) as a correction to the
classical estimate: out = ((x - x_cl) / cell, (y - y_cl) / cell[, (tx - tx_cl) / 0.1, (ty - ty_cl) / 0.1]).
``time`` predicts (t - t_cl) / 0.1 ns. Position and time are trained on these normalised residuals.

Inputs (:class:`Inputs`): channels-last maps (each section's cells divided by the cluster sum; for
``time`` and when ``use_time`` is set, also each section's cell times relative to the classical time,
in units of 0.1 ns, 0 where a cell is empty), scalar features (log of E_cal / 10 GeV, cell size / 100 mm,
region one-hot, distance of the window from the beam / 1 m) and vector features, which turn with the
symmetry augmentation: the classical offset in cell units, the window centre in m and (with several
sections) the classical slopes x 10.

Training (:func:`train`). One epoch is one jitted ``lax.scan`` over mini-batches (no Python in the
inner loop), the data stay on the device, each mini-batch gets one random element of the symmetry
group of the map (flips; and 90-degree turns on square maps), applied to the maps, the vector
features and vector targets alike. Early stopping keeps the parameters of the best validation loss.
The run is a pure function of the seed. A non-finite training loss stops with :class:`TrainingError`.
The epoch and validation functions are jitted at module level with a hashable plan as static
argument: a second run with the same settings and data shapes (the next design point) reuses
the compiled code (measured: 7.1 s -> 3.9 s for a 3-epoch run on 20k windows).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
import time as _time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from diffcalo.reco import losses as _losses
from diffcalo.reco.classical import ClassicalReco, cluster_sum, window_centre
from diffcalo.reco.models import ModelConfig, Regressor

from diffcalo.errors import DiffcaloError

__all__ = ["TASKS", "OPTIMIZERS", "SCHEDULES", "TrainConfig", "TrainingError", "Inputs", "prepare", "train",
           "TrainedNet", "energy_inputs", "image_inputs"]

TASKS = ("energy", "position", "time")
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "exponential")
TIME_UNIT_NS = 0.1
SLOPE_UNIT = 0.1
_TIME_CLIP = 50.0


class TrainingError(DiffcaloError, RuntimeError):
    """Training cannot go on (diverged, or the data cannot train this model); the message says why."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training settings (validated on construction; errors name the field, the value and what is allowed).

    Attributes:
        loss: name in :data:`diffcalo.reco.losses.LOSSES`; ``loss_options`` its options (the
            truncated-Gaussian range defaults to the training sample's energy range).
        optimizer: "adam" or "adamw" (``weight_decay`` for adamw).
        learning_rate, schedule: peak rate and its schedule over the run ("constant", "cosine",
            "warmup_cosine" (5 % warm-up), "exponential" (x 0.1 over the run)).
        batch_size, epochs, patience: mini-batch size, maximum epochs, early-stopping patience (epochs
            without a better validation loss).
        conv_l2, dense_l1, dense_l2: weight penalties on the convolution and dense kernels (per sample).
        augment: symmetry augmentation (flips, 90-degree turns on square maps).
        use_time: feed cell times to the energy and position networks too (always on for ``time``).
        seed: initialisation, shuffling and augmentation.
    """

    loss: str = "mse"
    loss_options: dict = dataclasses.field(default_factory=dict)
    optimizer: str = "adam"
    learning_rate: float = 2e-3
    schedule: str = "cosine"
    weight_decay: float = 1e-4
    batch_size: int = 256
    epochs: int = 40
    patience: int = 6
    conv_l2: float = 0.0
    dense_l1: float = 0.0
    dense_l2: float = 0.0
    augment: bool = True
    use_time: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.loss not in _losses.LOSSES:
            raise ValueError(f"train.loss = {self.loss!r}; allowed: {', '.join(_losses.LOSSES)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"train.optimizer = {self.optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"train.schedule = {self.schedule!r}; allowed: {', '.join(SCHEDULES)}")
        for name in ("learning_rate",):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"train.{name} = {v!r}; must be a positive number")
        for name in ("batch_size", "epochs"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"train.{name} = {v!r}; must be a positive integer")
        if not (isinstance(self.patience, int) and self.patience >= 1):
            raise ValueError(f"train.patience = {self.patience!r}; must be a positive integer")
        for name in ("weight_decay", "conv_l2", "dense_l1", "dense_l2"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"train.{name} = {v!r}; must be a number >= 0")
        if not isinstance(self.loss_options, dict):
            raise ValueError(f"train.loss_options = {self.loss_options!r}; must be a table of options")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"train: unknown option(s) {unknown}; allowed: {', '.join(sorted(known))}")
        return cls(**d)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Inputs:
    """Network inputs and targets of one task, all in loss units (module docstring).

    images [n, H, W, C]; scalars [n, Fs]; vectors [n, V, 2]; base, scale, target [n, k]; e_true [n].
    The loss compares base + scale * out with target.
    """

    images: jnp.ndarray
    scalars: jnp.ndarray
    vectors: jnp.ndarray
    base: jnp.ndarray
    scale: jnp.ndarray
    target: jnp.ndarray
    e_true: jnp.ndarray

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


def energy_inputs(energy, region, cell_size_mm, centre, e_true, classical: ClassicalReco, time=None,
                  t_classical=None):
    """Inputs of the energy network from cluster arrays, in jnp (traceable: the differentiable path).

    Args:
        energy: [n, L, H, W] cells; region [n]; cell_size_mm [n]; centre [n, 2] window centre (mm);
        e_true [n]; classical: the fitted calibration; time, t_classical: cell times and the classical
        time, when the network uses timing.
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
                  base=e_cal[:, None].astype(dtype), scale=e_cal[:, None].astype(dtype),
                  target=jnp.asarray(e_true, dtype)[:, None], e_true=jnp.asarray(e_true, dtype))


def image_inputs(cells, e_true, e_cal, *, scalars=None, vectors=None, target=None) -> Inputs:
    """Inputs from whole-detector images (LUXE, the toy) rather than clusters on a wall.

    Args:
        cells: [n, L, H, W] cell energies (GeV), L layers become the channels.
        e_true: [n] true energies (GeV).
        e_cal: [n] the classical (calibrated) energy estimate, the energy network's base and scale.
        scalars: optional extra scalar features [n, F] (the log of E_cal / 10 GeV is always the first).
        vectors: optional vector features [n, V, 2] (x, y pairs: turned by the symmetry augmentation).
        target: None for the energy task (the target is E_true); else [n, k] targets of a
            correction task (base 0, scale 1), vector pairs when the task turns them.

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
        raise ValueError(f"image_inputs: cells must be [n, layers, H, W]; got shape {cells.shape}")
    n = cells.shape[0]
    e_true = np.asarray(e_true, dtype=np.float32).reshape(-1)
    e_cal = np.maximum(np.asarray(e_cal, dtype=np.float32).reshape(-1), 1e-3)
    for name, a in (("e_true", e_true), ("e_cal", e_cal)):
        if a.shape[0] != n:
            raise ValueError(f"image_inputs: {name} has {a.shape[0]} entries for {n} images")
    mean = np.abs(cells).reshape(n, -1).mean(axis=1)        # |cells|: relaxed-mode cells are signed
    maps = np.moveaxis(cells / np.where(mean > 0, mean, 1.0)[:, None, None, None], 1, -1)
    sc = [np.log(e_cal / 10.0)[:, None]]
    if scalars is not None:
        sc.append(np.asarray(scalars, np.float32).reshape(n, -1))
    vec = np.zeros((n, 0, 2), np.float32) if vectors is None else np.asarray(vectors, np.float32).reshape(n, -1, 2)
    if target is None:
        base = scale = e_cal[:, None]
        tgt = e_true[:, None]
    else:
        tgt = np.asarray(target, np.float32).reshape(n, -1)
        base, scale = np.zeros_like(tgt), np.ones_like(tgt)
    return Inputs(images=jnp.asarray(maps), scalars=jnp.asarray(np.concatenate(sc, axis=1)),
                  vectors=jnp.asarray(vec), base=jnp.asarray(base), scale=jnp.asarray(scale),
                  target=jnp.asarray(tgt), e_true=jnp.asarray(e_true))


def _time_maps(energy, time, t_classical):
    rel = (jnp.asarray(time) - jnp.asarray(t_classical)[:, None, None, None]) / TIME_UNIT_NS
    rel = jnp.where(jnp.asarray(energy) > 0, jnp.clip(rel, -_TIME_CLIP, _TIME_CLIP), 0.0)
    return jnp.moveaxis(rel, 1, -1)


def prepare(task: str, clusters, classical: ClassicalReco, *, use_time: bool = False, estimate=None):
    """Inputs and targets of ``task`` for the clusters on the wall (status 0) of regions the
    classical reconstruction was fitted on; returns (inputs, mask [n] of the clusters used).

    Raises:
        ValueError: unknown task; no usable cluster; ``time`` on data without time truth.
    """
    if task not in TASKS:
        raise ValueError(f"task = {task!r}; allowed: {', '.join(TASKS)}")
    est = classical.predict(clusters) if estimate is None else estimate
    region = np.asarray(clusters.region)
    fitted = np.isin(region, [int(r) for r in classical.tables])
    mask = (np.asarray(clusters.status) == 0) & fitted & np.isfinite(est.energy)
    if task == "time":
        t_true = np.asarray(clusters.t_true, dtype=np.float64)
        if not np.isfinite(t_true[mask]).any():
            raise ValueError("task 'time': the clusters have no time truth (t_true is NaN: a schema-1 dataset?); "
                             "regenerate them with this diffcalo")
        mask &= np.isfinite(t_true)
    if not mask.any():
        raise ValueError(f"task {task!r}: no usable clusters (on the wall, in a calibrated region)")
    idx = np.flatnonzero(mask)
    energy = np.asarray(clusters.energy)[idx]
    time = np.asarray(clusters.time)[idx]
    cell = np.asarray(clusters.cell_size_mm, dtype=np.float64)[idx]
    centre = window_centre(clusters)[idx]
    e_true = np.asarray(clusters.e_true)[idx]
    with_time = use_time or task == "time"
    t_cl = est.time[idx]
    base = energy_inputs(energy, region[idx], cell, centre, e_true, classical,
                         time if with_time else None, t_cl if with_time else None)
    n = idx.size
    n_sec = energy.shape[1]
    u = est.offset[idx] / cell[:, None]
    vectors = [u, centre / 1000.0]
    if n_sec >= 2:
        vectors.append(est.slope[idx] / SLOPE_UNIT)
    vectors = jnp.asarray(np.stack(vectors, axis=1), jnp.float32)
    if task == "energy":
        return dataclasses.replace(base, vectors=vectors), mask
    if task == "position":
        off_true = np.asarray(clusters.offset, dtype=np.float64)[idx]
        r = [(off_true - est.offset[idx]) / cell[:, None]]
        if n_sec >= 2:
            slope_true = np.stack([np.asarray(clusters.tx), np.asarray(clusters.ty)], axis=1)[idx]
            r.append((slope_true - est.slope[idx]) / SLOPE_UNIT)
        target = np.concatenate(r, axis=1)
    else:
        target = ((np.asarray(clusters.t_true, dtype=np.float64)[idx] - t_cl) / TIME_UNIT_NS)[:, None]
    k = target.shape[1]
    return dataclasses.replace(base, vectors=vectors, base=jnp.zeros((n, k), jnp.float32),
                               scale=jnp.ones((n, k), jnp.float32),
                               target=jnp.asarray(target, jnp.float32)), mask


# ---- symmetry augmentation ------------------------------------------------------------------------
def _augment(key, inp: Inputs, vector_targets: bool) -> Inputs:
    """One random element of the map's symmetry group for the whole batch (flip x, flip y, and on
    square maps the transpose x <-> y), applied to maps, vector features and vector targets."""
    k1, k2, k3 = jax.random.split(key, 3)
    fx, fy = jax.random.bernoulli(k1), jax.random.bernoulli(k2)
    square = inp.images.shape[1] == inp.images.shape[2]
    tr = jax.random.bernoulli(k3) if square else jnp.asarray(False)
    img = inp.images
    img = jnp.where(fx, img[:, :, ::-1], img)
    img = jnp.where(fy, img[:, ::-1], img)
    if square:
        img = jnp.where(tr, jnp.swapaxes(img, 1, 2), img)
    sign = jnp.stack([jnp.where(fx, -1.0, 1.0), jnp.where(fy, -1.0, 1.0)])

    def turn(v):                            # [..., 2k] pairs (x, y)
        shp = v.shape
        v = v.reshape(shp[:-1] + (-1, 2)) * sign
        v = jnp.where(tr, v[..., ::-1], v)
        return v.reshape(shp)

    vec = turn(inp.vectors.reshape(inp.vectors.shape[0], -1)).reshape(inp.vectors.shape)
    target = turn(inp.target) if vector_targets else inp.target
    return dataclasses.replace(inp, images=img, vectors=vec, target=target)


# ---- the training loop -----------------------------------------------------------------------------
class _Plan(NamedTuple):
    """Everything static about a training run (hashable: the jitted epoch is compiled once per plan
    and data shape and reused by later runs, e.g. the next design point of a study)."""

    task: str
    loss: str
    loss_options: tuple
    optimizer: str
    learning_rate: float
    schedule: str
    weight_decay: float
    total_steps: int
    batch: int
    steps: int
    augment: bool
    conv_l2: float
    dense_l1: float
    dense_l2: float


def _optimizer(plan: _Plan):
    lr = plan.learning_rate
    total = max(plan.total_steps, 1)
    if plan.schedule == "constant":
        sched = lr
    elif plan.schedule == "cosine":
        sched = optax.cosine_decay_schedule(lr, total, alpha=0.02)
    elif plan.schedule == "warmup_cosine":
        sched = optax.warmup_cosine_decay_schedule(0.0, lr, max(total // 20, 1), total, end_value=0.02 * lr)
    else:
        sched = optax.exponential_decay(lr, total, 0.1)
    if plan.optimizer == "adamw":
        return optax.adamw(sched, weight_decay=plan.weight_decay)
    return optax.adam(sched)


def _loss_options(task: str, cfg: TrainConfig, train_inputs: Inputs) -> tuple:
    """The loss's options, completed and checked (the truncated-Gaussian range from the training sample)."""
    opts = dict(cfg.loss_options)
    if task == "energy" and cfg.loss == "truncated_gaussian":
        opts.setdefault("low", float(jnp.min(train_inputs.e_true)))
        opts.setdefault("high", float(jnp.max(train_inputs.e_true)))
    elif cfg.loss in ("truncated_gaussian", "physics") and task != "energy":
        raise ValueError(f"train.loss = {cfg.loss!r} is an energy loss; the {task} task allows: mse, mae, huber")
    try:
        _losses.get_loss(cfg.loss, **opts)
    except TypeError as exc:
        raise ValueError(f"train.loss_options = {cfg.loss_options!r} for loss {cfg.loss!r}: {exc}") from None
    return tuple(sorted(opts.items()))


def _loss_fn(plan: _Plan):
    fn = _losses.get_loss(plan.loss, **dict(plan.loss_options))
    if plan.task == "energy":
        return lambda pred, inp: fn(pred[:, 0], inp.target[:, 0], inp.e_true)
    return lambda pred, inp: fn(pred, inp.target, inp.e_true)


def _penalty(plan: _Plan, p):
    total = jnp.zeros(())
    if plan.conv_l2:
        total = total + _losses.weight_penalty(p["convs"], l2=plan.conv_l2)
    if plan.dense_l1 or plan.dense_l2:
        total = total + _losses.weight_penalty([p["dense"], p["head"]], l1=plan.dense_l1, l2=plan.dense_l2)
    return total


@functools.partial(jax.jit, static_argnums=(0, 1))
def _train_epoch(plan: _Plan, graphdef, params, rest, opt_state, data: Inputs, key):
    """One epoch: a ``lax.scan`` over shuffled mini-batches; returns the new state and the mean loss."""
    tx = _optimizer(plan)
    loss_of = _loss_fn(plan)
    vector_targets = plan.task == "position"

    def loss_and_stats(pr, inp):
        p, r = pr
        m = nnx.merge(graphdef, p, r)
        pred = inp.base + inp.scale * m(inp.images, inp.features)
        return jnp.mean(loss_of(pred, inp)) + _penalty(plan, p), nnx.split(m, nnx.Param, ...)[2]

    def step(carry, xs):
        p, r, o = carry
        idx, k = xs
        inp = data.take(idx)
        if plan.augment:
            inp = _augment(k, inp, vector_targets)
        # BatchNorm statistics are differentiated along (and their gradients dropped): a closure
        # over them would be mutated from the wrong trace level
        (value, r), (g, _) = jax.value_and_grad(loss_and_stats, has_aux=True)((p, r), inp)
        upd, o = tx.update(g, o, p)
        return (optax.apply_updates(p, upd), r, o), value

    k_perm, k_aug = jax.random.split(key)
    perm = jax.random.permutation(k_perm, data.n)[:plan.steps * plan.batch].reshape(plan.steps, plan.batch)
    (params, rest, opt_state), values = jax.lax.scan(step, (params, rest, opt_state),
                                                     (perm, jax.random.split(k_aug, plan.steps)))
    return params, rest, opt_state, jnp.mean(values)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _validation_loss(plan: _Plan, graphdef, params, rest, data: Inputs):
    loss_of = _loss_fn(plan)
    m = nnx.merge(graphdef, params, rest)
    m.eval()
    tot = jnp.zeros(())
    for i in range(0, data.n, 8192):
        inp = data.take(slice(i, i + 8192))
        tot = tot + jnp.sum(loss_of(inp.base + inp.scale * m(inp.images, inp.features), inp))
    return tot / data.n


def _check_inputs(task: str, inp: Inputs, what: str):
    if inp.n == 0:
        raise ValueError(f"{what}: the {task} training set is empty")
    if task == "energy" and np.unique(np.asarray(inp.e_true)).size < 2:
        raise ValueError(f"{what}: the {task} training set has a single true energy "
                         f"({float(inp.e_true[0])} GeV); the network needs a range of energies to learn from")


@dataclasses.dataclass
class TrainedNet:
    """A trained network of one task: the model, its configs and the training history."""

    task: str
    model: Regressor
    model_config: ModelConfig
    train_config: TrainConfig
    image_shape: tuple
    n_features: int
    n_out: int
    vector_targets: bool
    history: dict

    def outputs(self, inputs: Inputs, batch: int = 8192) -> np.ndarray:
        """Raw network outputs [n, k] (evaluation mode), in batches."""
        _check_shapes(self, inputs)
        graphdef, state = nnx.split(self.model)
        out = [np.asarray(_eval_batch(graphdef, state, inputs.images[i:i + batch], inputs.features[i:i + batch]))
               for i in range(0, inputs.n, batch)]
        return np.concatenate(out) if out else np.zeros((0, self.n_out), np.float32)

    def predict(self, inputs: Inputs) -> np.ndarray:
        """Predictions in loss units, base + scale * out [n, k]."""
        out = self.outputs(inputs)
        return np.asarray(inputs.base, np.float64) + np.asarray(inputs.scale, np.float64) * out

    def apply(self, inputs: Inputs):
        """Differentiable predictions base + scale * out (jnp; weights frozen, evaluation mode)."""
        graphdef, state = nnx.split(self.model)
        return inputs.base + inputs.scale * nnx.merge(graphdef, state)(inputs.images, inputs.features)

    # -- checkpoints ------------------------------------------------------------------------------------
    def save(self, path) -> pathlib.Path:
        """Write ``path`` (a .msgpack file) and its ``.json`` description; restore with :meth:`load`."""
        from flax import serialization

        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = nnx.to_pure_dict(nnx.state(self.model))
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(serialization.msgpack_serialize(jax.tree_util.tree_map(np.asarray, state)))
        tmp.replace(path)
        meta = dict(task=self.task, model_config=dataclasses.asdict(self.model_config),
                    train_config=dataclasses.asdict(self.train_config), image_shape=list(self.image_shape),
                    n_features=self.n_features, n_out=self.n_out, vector_targets=self.vector_targets,
                    history=self.history)
        path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
        return path

    @classmethod
    def load(cls, path) -> "TrainedNet":
        from flax import serialization

        path = pathlib.Path(path)
        for p in (path, path.with_suffix(".json")):
            if not p.exists():
                raise FileNotFoundError(f"{p}: no such checkpoint file")
        meta = json.loads(path.with_suffix(".json").read_text())
        mcfg = ModelConfig(**meta["model_config"])
        model = Regressor(tuple(meta["image_shape"]), meta["n_features"], meta["n_out"], mcfg, rngs=nnx.Rngs(0))
        try:
            pure = serialization.msgpack_restore(path.read_bytes())
            state = nnx.state(model)
            nnx.replace_by_pure_dict(state, pure)
        except Exception as exc:      # noqa: BLE001 - any decoding problem is a bad file
            raise ValueError(f"{path}: not a checkpoint of this network ({exc})") from None
        nnx.update(model, state)
        model.eval()
        return cls(task=meta["task"], model=model, model_config=mcfg,
                   train_config=TrainConfig(**meta["train_config"]), image_shape=tuple(meta["image_shape"]),
                   n_features=meta["n_features"], n_out=meta["n_out"], vector_targets=meta["vector_targets"],
                   history=meta["history"])


def _check_shapes(net: TrainedNet, inputs: Inputs):
    shp = tuple(inputs.images.shape[1:])
    if shp != tuple(net.image_shape):
        raise ValueError(f"the {net.task} network was trained on maps of shape {tuple(net.image_shape)} "
                         f"(H, W, channels); these inputs have {shp}")
    nf = inputs.features.shape[1]
    if nf != net.n_features:
        raise ValueError(f"the {net.task} network expects {net.n_features} features; these inputs have {nf} "
                         "(another layout, region count or timing setting?)")


@jax.jit
def _eval_batch(graphdef, state, images, features):
    model = nnx.merge(graphdef, state)
    model.eval()
    return model(images, features)


def train(task: str, train_inputs: Inputs, val_inputs: Inputs, *, model_config: ModelConfig = ModelConfig(),
          config: TrainConfig = TrainConfig(), progress: bool = True, log=None) -> TrainedNet:
    """Train the network of ``task`` (module docstring) and return it with the best validation parameters.

    Raises:
        ValueError: empty or single-energy training set, shapes that differ between the sets, a
            loss that does not fit the task.
        TrainingError: the training loss became non-finite.
    """
    if task not in TASKS:
        raise ValueError(f"task = {task!r}; allowed: {', '.join(TASKS)}")
    _check_inputs(task, train_inputs, "train")
    if val_inputs.n == 0:
        raise ValueError("train: the validation set is empty")
    for name in ("images", "scalars", "vectors", "target"):
        a, b = getattr(train_inputs, name), getattr(val_inputs, name)
        if a.shape[1:] != b.shape[1:]:
            raise ValueError(f"train: {name} of the training set {a.shape[1:]} and validation set {b.shape[1:]} differ")
    loss_options = _loss_options(task, config, train_inputs)
    vector_targets = task == "position"
    n_out = train_inputs.target.shape[1]
    image_shape = tuple(train_inputs.images.shape[1:])
    n_features = train_inputs.features.shape[1]
    key = jax.random.key(config.seed)
    k_init, k_run = jax.random.split(key)
    model = Regressor(image_shape, n_features, n_out, model_config,
                      rngs=nnx.Rngs(int(jax.random.randint(k_init, (), 0, 2 ** 31 - 1))))
    model.train()
    batch = min(config.batch_size, train_inputs.n)
    steps = train_inputs.n // batch
    plan = _Plan(task=task, loss=config.loss, loss_options=loss_options, optimizer=config.optimizer,
                 learning_rate=float(config.learning_rate), schedule=config.schedule,
                 weight_decay=float(config.weight_decay), total_steps=steps * config.epochs, batch=batch,
                 steps=steps, augment=bool(config.augment), conv_l2=float(config.conv_l2),
                 dense_l1=float(config.dense_l1), dense_l2=float(config.dense_l2))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = _optimizer(plan).init(params)
    epoch = functools.partial(_train_epoch, plan, graphdef)
    val_loss = lambda p, r: _validation_loss(plan, graphdef, p, r, val_inputs)

    history = dict(train_loss=[], val_loss=[], epoch_seconds=[])
    best = (float(val_loss(params, rest)), params, rest, 0)
    history["initial_val_loss"] = best[0]
    bar = _progress(config.epochs, task, progress)
    since_best = 0
    for ep in range(config.epochs):
        t0 = _time.perf_counter()
        params, rest, opt_state, tr = epoch(params, rest, opt_state, train_inputs, jax.random.fold_in(k_run, ep))
        tr = float(tr)
        if not math.isfinite(tr):
            bar.close()
            raise TrainingError(f"{task} network: the training loss is {tr} at epoch {ep + 1}; training stopped. "
                                f"Lower train.learning_rate (now {config.learning_rate}), use a robust loss "
                                "(huber, mae) or check the inputs for extreme values")
        vl = float(val_loss(params, rest))
        history["train_loss"].append(tr)
        history["val_loss"].append(vl)
        history["epoch_seconds"].append(_time.perf_counter() - t0)
        if math.isfinite(vl) and vl < best[0]:
            best, since_best = (vl, params, rest, ep + 1), 0
        else:
            since_best += 1
        bar.update(1)
        bar.set_postfix(train=f"{tr:.4g}", val=f"{vl:.4g}", best=f"{best[0]:.4g}")
        if log is not None:
            log(dict(epoch=ep + 1, train_loss=tr, val_loss=vl))
        if since_best >= config.patience:
            break
    bar.close()
    history["best_epoch"] = best[3]
    history["best_val_loss"] = best[0]
    history["epochs_run"] = len(history["train_loss"])
    model = nnx.merge(graphdef, best[1], best[2])
    model.eval()
    return TrainedNet(task=task, model=model, model_config=model_config, train_config=config,
                      image_shape=image_shape, n_features=n_features, n_out=n_out,
                      vector_targets=vector_targets, history=history)


def _progress(total: int, task: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"train {task}", unit="epoch", disable=not enabled, leave=False)
