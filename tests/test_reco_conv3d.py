"""The 3-D convolution option of the reconstruction networks (``ModelConfig(conv_dims=3)``): the
im2col convolution against XLA's, the layer plan, a Regressor's outputs, the checkpoint round trip
(also of 2-D checkpoints written before the option existed) and the configuration errors."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diffcalo.reco import Inputs, ModelConfig, Regressor, TrainConfig, TrainedNet
from diffcalo.reco.models import Conv2D, Conv3D

TOY_SHAPE = (8, 8, 17)      # the toy calorimeter's maps: 8 x 8 cells, 17 layers as channels


@pytest.mark.parametrize(("kernel", "padding"), [(1, "valid"), (3, "same"), (3, "valid"), (5, "same")])
def test_conv3d_equals_xla_convolution(kernel, padding):
    with jax.enable_x64(True):
        conv = Conv3D(2, 3, kernel, padding, rngs=nnx.Rngs(0))
        conv.kernel[...] = jnp.asarray(conv.kernel[...], jnp.float64)
        conv.bias[...] = jax.random.normal(jax.random.key(2), (3,), jnp.float64)
        x = jax.random.normal(jax.random.key(1), (4, 6, 7, 9, 2), jnp.float64)      # [B, H, W, D, C]
        w = conv.kernel[...].reshape(kernel, kernel, kernel, 2, 3)                   # (H, W, D, in, out)
        ref = jax.lax.conv_general_dilated(x, w, (1, 1, 1), padding.upper(),
                                           dimension_numbers=("NHWDC", "HWDIO", "NHWDC")) + conv.bias[...]
        out = conv(x)
        assert out.shape == ref.shape
        np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_conv2d_equals_xla_convolution(padding):
    """Conv2D and Conv3D share one im2col implementation; the 2-D form against XLA too."""
    with jax.enable_x64(True):
        conv = Conv2D(2, 3, 3, padding, rngs=nnx.Rngs(0))
        conv.kernel[...] = jnp.asarray(conv.kernel[...], jnp.float64)
        conv.bias[...] = jax.random.normal(jax.random.key(2), (3,), jnp.float64)
        x = jax.random.normal(jax.random.key(1), (4, 6, 7, 2), jnp.float64)
        w = conv.kernel[...].reshape(3, 3, 2, 3)
        ref = jax.lax.conv_general_dilated(x, w, (1, 1), padding.upper(),
                                           dimension_numbers=("NHWC", "HWIO", "NHWC")) + conv.bias[...]
        np.testing.assert_allclose(np.asarray(conv(x)), np.asarray(ref), rtol=1e-12, atol=1e-12)


def test_plan_shrinks_all_three_axes_and_leaves_2d_unchanged():
    layers, size = ModelConfig(conv_dims=3).plan(*TOY_SHAPE)
    assert size == (2, 2, 11) and [k for k, _, _ in layers] == [3, 3, 3]
    # a fourth valid layer on a 2-wide map becomes pointwise
    layers, size = ModelConfig(conv=(4, 4, 4, 4), conv_dims=3).plan(*TOY_SHAPE)
    assert size == (2, 2, 11) and layers[-1][0] == 1
    # "same" on a large image pools 2 x 2 x 2 while every axis is >= 4
    layers, size = ModelConfig(conv=(4, 4, 4), conv_dims=3, padding="auto").plan(11, 13, 20)
    assert size == (2, 3, 5) and [p for _, _, p in layers] == [True, True, False]
    # the 2-D plan is the one from before the option: (h, w)
    assert ModelConfig().plan(5, 5) == ([(3, "valid", False), (3, "valid", False), (1, "valid", False)], (1, 1))


def _randomised(model, seed):
    """The model with every parameter and statistic drawn at random (a zero head would make
    predictions equal to the base whatever the rest)."""
    rng = np.random.default_rng(seed)           # numpy: no per-shape compilation of random ops
    graphdef, state = nnx.split(model)
    leaves, treedef = jax.tree_util.tree_flatten(state)
    leaves = [jnp.asarray(0.3 * rng.normal(size=a.shape) + (1.0 if a.ndim == 1 else 0.0), a.dtype) for a in leaves]
    model = nnx.merge(graphdef, jax.tree_util.tree_unflatten(treedef, leaves))
    model.eval()
    return model


def _inputs(n, shape, n_features, seed=0):
    rng = np.random.default_rng(seed)
    e = rng.uniform(1.0, 10.0, n).astype(np.float32)
    return Inputs(images=jnp.asarray(rng.random((n,) + shape), jnp.float32),
                  scalars=jnp.asarray(rng.normal(size=(n, n_features)), jnp.float32),
                  vectors=jnp.zeros((n, 0, 2), jnp.float32), base=jnp.asarray(e[:, None]),
                  scale=jnp.asarray(e[:, None]), target=jnp.asarray(e[:, None]), e_true=jnp.asarray(e))


def _net(model, config, shape, n_features):
    return TrainedNet(task="energy", model=model, model_config=config, train_config=TrainConfig(),
                      image_shape=shape, n_features=n_features, n_out=1, vector_targets=False, history={})


def test_conv3d_regressor_outputs_and_checkpoint_round_trip(tmp_path):
    config = ModelConfig(conv=(4, 4), dense=(8,), conv_dims=3)
    model = Regressor(TOY_SHAPE, 2, 1, config, rngs=nnx.Rngs(0))
    assert isinstance(model.convs[0], Conv3D) and model.convs[0].kernel[...].shape == (27, 4)
    assert model.dense[0].in_features == 4 * 4 * 13 * 4 + 2
    model = _randomised(model, 1)
    inp = _inputs(40, TOY_SHAPE, 2)
    net = _net(model, config, TOY_SHAPE, 2)
    pred = net.predict(inp)
    assert pred.shape == (40, 1) and np.isfinite(pred).all()
    assert np.abs(pred - np.asarray(inp.base)).max() > 1e-2       # the network does something
    loaded = TrainedNet.load(net.save(tmp_path / "conv3d.msgpack"))
    assert loaded.model_config == config
    np.testing.assert_array_equal(loaded.predict(inp), pred)
    # the network depends on the depth order (a 3-D convolution, not a sum over layers)
    flipped = Inputs(**{**vars(inp), "images": inp.images[..., ::-1]})
    assert np.abs(net.predict(flipped) - pred).max() > 1e-4


def test_2d_checkpoint_without_the_new_field_still_loads(tmp_path):
    config = ModelConfig(conv=(4, 4), dense=(8,))
    model = _randomised(Regressor((5, 5, 2), 3, 1, config, rngs=nnx.Rngs(0)), 2)
    assert isinstance(model.convs[0], Conv2D)
    net = _net(model, config, (5, 5, 2), 3)
    path = net.save(tmp_path / "old.msgpack")
    meta = json.loads(path.with_suffix(".json").read_text())
    del meta["model_config"]["conv_dims"]                         # as written before the 3-D option
    path.with_suffix(".json").write_text(json.dumps(meta))
    inp = _inputs(10, (5, 5, 2), 3)
    loaded = TrainedNet.load(path)
    assert loaded.model_config.conv_dims == 2
    np.testing.assert_array_equal(loaded.predict(inp), net.predict(inp))


@pytest.mark.parametrize("value", [1, 4, "3", 3.0, True])
def test_bad_conv_dims_is_a_clear_error(value):
    with pytest.raises(ValueError, match=r"model\.conv_dims = .*; allowed: 2, 3"):
        ModelConfig(conv_dims=value)
