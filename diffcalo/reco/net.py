"""A trained reconstruction network (:class:`TrainedNet`): predictions, the differentiable
application, and checkpoints (a ``.msgpack`` of the weights beside a ``.json`` description)."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax
import numpy as np
from flax import nnx

from diffcalo.reco.config import TrainConfig
from diffcalo.reco.features import Inputs
from diffcalo.reco.models import ModelConfig, Regressor

__all__ = ["TrainedNet"]


@dataclasses.dataclass
class TrainedNet:
    """A trained network of one task: the model, its configs and the training history.

    ``use_time``: the network reads cell-time maps (its cluster inputs are built with
    ``use_time=True``: :func:`~diffcalo.reco.features.cluster_inputs`); ``train_config`` is the
    record of how it was trained, not needed to apply it.
    """

    task: str
    model: Regressor
    model_config: ModelConfig
    train_config: TrainConfig
    image_shape: tuple
    n_features: int
    n_out: int
    vector_targets: bool
    history: dict
    use_time: bool = False

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
                    use_time=self.use_time, history=self.history)
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
                   history=meta["history"], use_time=meta.get("use_time", _used_time(meta)))


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


def _used_time(meta: dict) -> bool:
    """Whether a checkpoint written before ``use_time`` was recorded reads cell times."""
    return meta["task"] == "time" or bool(meta["train_config"].get("use_time", False))
