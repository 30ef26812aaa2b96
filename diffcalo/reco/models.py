r"""Flax NNX regression networks for energy, position and time.

One architecture serves the three tasks (:class:`Regressor`): a convolutional branch reads the
cluster (channels = readout sections, plus their cell times when the task uses timing), a feature
branch carries scalars (the calibrated sum, cell size, region, the classical estimates), and dense
layers merge both into ``n_out`` outputs. The last layer starts at zero, so an untrained network
predicts exactly the classical estimate it corrects (see :mod:`diffcalo.reco.features`).

Convolutions are written as im2col + one matrix product (:class:`Conv2D`): on small maps on the
CPU, XLA's convolution kernels ran 10-40x slower than the same arithmetic as a dot (measured in
training: 2.9k vs 31k samples/s for the seed network on 5x5x2 windows, 23 vs 940 samples/s on LUXE
images).

Padding. ``padding="same"`` keeps the map size (the seed design). ``"valid"`` shrinks it by
``kernel - 1`` per layer until it is smaller than the kernel, after which the layer becomes
pointwise (1x1): on a 5x5 window the receptive field of the first two layers already covers the
whole window, and the net does about 1/20 of the seed's arithmetic. ``"auto"`` (default) is
``valid`` on maps up to 9 cells wide (windows, the 8x8 toy) and ``same`` with 2x2 average pooling
after each layer (while the map is at least 4 wide) on larger images (LUXE 11 x 110).

3-D convolutions (``ModelConfig(conv_dims=3)``, the toy-calorimeter seed design). The input
channels (the layers of a sampling stack) become a depth axis with one feature channel: the maps
[B, H, W, L] are read as volumes [B, H, W, L, 1] and convolved with k x k x k kernels
(:class:`Conv3D`, im2col + matmul as in 2-D). The padding rules are the same, with the lateral size
max(H, W) deciding "auto"; "valid" shrinks all three axes, and "same" pools 2 x 2 x 2 while every
axis is at least 4. The lateral axes stay axes 1 and 2, so the symmetry augmentation (flips and the
x <-> y transpose of the maps) applies unchanged. Cost on the 8 x 8 x 17 toy (training, batch 256,
one CPU core shared with another job): ~400 samples/s with the default channels (32, 32, 16), where
the second layer's 27 x 32 x 32 products per output dominate; ~1000 samples/s with (8, 16, 8). XLA's
native 3-D convolution measured 1.5-7x slower than im2col per layer.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["ModelConfig", "Conv2D", "Conv3D", "Regressor"]

PADDINGS = ("auto", "valid", "same")
CONV_DIMS = (2, 3)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of a :class:`Regressor`.

    Attributes:
        conv: channels of the convolutional layers (the seed: (32, 32, 16)).
        dense: widths of the dense layers after the merge (the seed: (64, 32, 16)).
        kernel: convolution kernel size.
        padding: "auto", "valid" or "same" (module docstring).
        batch_norm: BatchNorm after each convolution (the seed design).
        conv_dims: 2 (the channels are feature maps) or 3 (the channels are a depth axis,
            convolved in 3-D: module docstring).
    """

    conv: tuple[int, ...] = (32, 32, 16)
    dense: tuple[int, ...] = (64, 32, 16)
    kernel: int = 3
    padding: str = "auto"
    batch_norm: bool = True
    conv_dims: int = 2

    def __post_init__(self):
        object.__setattr__(self, "conv", tuple(int(c) for c in self.conv))
        object.__setattr__(self, "dense", tuple(int(d) for d in self.dense))
        for name in ("conv", "dense"):
            v = getattr(self, name)
            if any(c < 1 for c in v):
                raise ValueError(f"model.{name} = {list(v)}: layer widths must be positive integers")
        if not self.dense:
            raise ValueError("model.dense: at least one dense layer is needed")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"model.kernel = {self.kernel}: must be an odd positive integer")
        if self.padding not in PADDINGS:
            raise ValueError(f"model.padding = {self.padding!r}; allowed: {', '.join(PADDINGS)}")
        if not isinstance(self.conv_dims, int) or isinstance(self.conv_dims, bool) or self.conv_dims not in CONV_DIMS:
            raise ValueError(f"model.conv_dims = {self.conv_dims!r}; allowed: {', '.join(map(str, CONV_DIMS))} "
                             "(3: the channels are convolved as a depth axis)")

    def plan(self, height: int, width: int, depth: int | None = None):
        """Per conv layer: (kernel, padding, pool) for an input map of height x width (x depth in
        3-D), and the final map size (h, w) or (h, w, d)."""
        padding = self.padding
        if padding == "auto":
            padding = "valid" if max(height, width) <= 9 else "same"
        pool_allowed = self.padding == "auto" and padding == "same"
        size = [height, width] + ([] if depth is None else [depth])
        layers = []
        for _ in self.conv:
            k = self.kernel
            if padding == "valid":
                k = min(k, *size) if min(size) >= self.kernel else 1
                if k % 2 == 0:
                    k -= 1
                size = [v - k + 1 for v in size]
            pool = pool_allowed and min(size) >= 4
            if pool:
                size = [v // 2 for v in size]
            layers.append((k, padding, pool))
        return layers, tuple(size)


class _ImToCol(nnx.Module):
    """N-D convolution ([B, *spatial, C], channels last) as im2col + one matrix product; ``padding``
    "same" or "valid". The kernel is stored as [k**dims * c_in, c_out] with the patch offsets along
    the spatial axes in row-major order, then the input channels."""

    dims = 2

    def __init__(self, c_in: int, c_out: int, kernel: int, padding: str, *, rngs: nnx.Rngs):
        self.kernel_size = kernel
        self.padding = padding
        self.kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), (kernel ** self.dims * c_in, c_out)))
        self.bias = nnx.Param(jnp.zeros((c_out,)))

    def __call__(self, x):
        k = self.kernel_size
        if k == 1:
            return x @ self.kernel[...] + self.bias[...]
        if self.padding == "same":
            p = k // 2
            x = jnp.pad(x, ((0, 0),) + ((p, p),) * self.dims + ((0, 0),))
        sizes = [x.shape[1 + a] - k + 1 for a in range(self.dims)]
        patches = jnp.concatenate(
            [x[(slice(None),) + tuple(slice(o, o + n) for o, n in zip(offset, sizes))]
             for offset in itertools.product(range(k), repeat=self.dims)], axis=-1)
        return patches @ self.kernel[...] + self.bias[...]


class Conv2D(_ImToCol):
    """2-D convolution (NHWC) as im2col + matmul; ``padding`` "same" or "valid"."""

    dims = 2


class Conv3D(_ImToCol):
    """3-D convolution ([B, H, W, D, C], channels last) as im2col + matmul; ``padding`` "same" or
    "valid"; patch offsets (i, j, l) along (H, W, D) in row-major order, then the input channels."""

    dims = 3


def _pool2(x):
    """2 x ... x 2 average pooling over the spatial axes of [B, *spatial, C] (odd sizes drop the last row)."""
    b, *spatial, c = x.shape
    x = x[(slice(None),) + tuple(slice(0, 2 * (v // 2)) for v in spatial)]
    shape = [b]
    for v in spatial:
        shape += [v // 2, 2]
    return x.reshape(shape + [c]).mean(axis=tuple(range(2, 2 * len(spatial) + 1, 2)))


class Regressor(nnx.Module):
    """Conv branch (cluster image) + feature branch, merged in dense layers -> ``n_out`` outputs.

    Args:
        image_shape: (H, W, C) of the input maps (channels last; with ``config.conv_dims = 3`` the
            C channels are the depth axis of a one-channel volume).
        n_features: length of the feature vector.
        n_out: number of outputs.
        config: :class:`ModelConfig`.
        rngs: ``nnx.Rngs`` for the initialisation.
    """

    def __init__(self, image_shape, n_features: int, n_out: int, config: ModelConfig = ModelConfig(), *,
                 rngs: nnx.Rngs):
        h, w, c = (int(v) for v in image_shape)
        self.config = config
        self.image_shape = (h, w, c)
        self.n_features = int(n_features)
        self.n_out = int(n_out)
        if config.conv_dims == 3:
            plan, out_size = config.plan(h, w, c)
            c_in, conv_cls = 1, Conv3D
        else:
            plan, out_size = config.plan(h, w)
            c_in, conv_cls = c, Conv2D
        self.pools = tuple(p for _, _, p in plan)
        convs, norms = [], []
        for (k, pad, _), c_out in zip(plan, config.conv):
            convs.append(conv_cls(c_in, c_out, k, pad, rngs=rngs))
            if config.batch_norm:
                norms.append(nnx.BatchNorm(c_out, momentum=0.9, rngs=rngs))
            c_in = c_out
        self.convs = nnx.List(convs)
        self.norms = nnx.List(norms)
        width = math.prod(out_size) * c_in + self.n_features
        dense = []
        for d in config.dense:
            dense.append(nnx.Linear(width, d, rngs=rngs))
            width = d
        self.dense = nnx.List(dense)
        self.head = nnx.Linear(width, self.n_out, kernel_init=nnx.initializers.zeros, rngs=rngs)

    def __call__(self, images, features):
        """images [B, H, W, C], features [B, F] -> [B, n_out]."""
        x = images[..., None] if self.config.conv_dims == 3 else images
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if self.config.batch_norm:
                x = self.norms[i](x)
            x = jax.nn.relu(x)
            if self.pools[i]:
                x = _pool2(x)
        h = jnp.concatenate([x.reshape(x.shape[0], -1), features], axis=-1)
        for layer in self.dense:
            h = jax.nn.relu(layer(h))
        return self.head(h)
