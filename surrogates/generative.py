r"""Conditional generative models y | c on plain arrays: a conditional Cramér GAN and conditional flow
matching, with one interface. No physics here: data in, samples out.

Interface (both models)::

    model = FlowMatching(y_dim=1, c_dim=3, seed=0)        # or CramerGAN(...)
    info = model.fit(y, c, key=jax.random.key(0))           # y (n, y_dim), c (n, c_dim)
    ys = model.sample(jax.random.key(1), c_new)             # one y per condition row
    fn, params = model.sampler()                            # pure fn(params, key, c) -> y, differentiable in c

``sampler()`` is what a gradient-based user (L-GSO, :mod:`surrogates.lgso`) differentiates: the trained
parameters are an argument, so one compiled program serves every refit of the same architecture.

Standardisation. ``fit`` standardises y and c with the training set's mean and standard deviation (a
column with zero spread keeps scale 1); the statistics are part of ``params`` and the sampler maps back,
so gradients with respect to c flow through the standardisation.

Training is one jitted ``lax.scan`` over ``steps`` mini-batches drawn with replacement from the data
(the data are padded to a power-of-two capacity, so a growing data set recompiles only when it doubles).
A fixed step count, not epochs: the cost of a refit does not grow with the data (the reference L-GSO's
fixed epochs over an ever-growing replay made every refit slower).

Models.

- :class:`CramerGAN`: generator [z, c] -> y (tanh MLP, leaky-ReLU last hidden layer), critic [y, c] ->
  h in R^k. Cramér (energy-distance) GAN loss of Bellemare et al. (2017) with two independent generator
  draws g, g'; f(v) = |h(v) - h(g')| - |h(v)|; the critic maximises E f(real) - E f(g) minus a one-sided
  gradient penalty lambda E relu(|grad_v f(v_hat)| - 1)^2 on interpolates of y (c held fixed); the
  generator minimises it. Instance noise (a fraction of each column's batch spread) on the critic's
  inputs. Adam (lr 8e-4, b1 0.5). This is the surrogate of the L-GSO paper (Shirobokov et al. 2020).
- :class:`FlowMatching`: conditional flow matching (Lipman et al. 2023) with the linear path
  y_t = (1 - t) z + t y, velocity target y - z; the velocity field v(y_t, t, c) is a SiLU MLP. Sampling
  integrates dy/dt = v from t = 0 to 1 with ``ode_steps`` fixed midpoint steps from z ~ N(0, I): a
  deterministic, differentiable function of (z, c). Adam (lr 1e-3) with cosine decay.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

__all__ = ["GANConfig", "FlowConfig", "CramerGAN", "FlowMatching", "MODELS", "make", "GenerativeError"]


class GenerativeError(ValueError):
    """Bad data or configuration for a generative model; the message names the field and what is allowed."""


def _positive_int(name, v):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise GenerativeError(f"{name} = {v!r}: must be an integer >= 1")


def _positive(name, v, zero_ok=False):
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0 or (v == 0 and not zero_ok):
        raise GenerativeError(f"{name} = {v!r}: must be a finite number {'>= 0' if zero_ok else '> 0'}")


def _check_fields(cfg, zero_ok=()):
    """Every int field >= 1, every float field > 0 (>= 0 for ``zero_ok``), named in the error."""
    for f in dataclasses.fields(cfg):
        name, v = f"{type(cfg).__name__}.{f.name}", getattr(cfg, f.name)
        if f.type in ("int", int):
            _positive_int(name, v)
        else:
            _positive(name, v, zero_ok=f.name in zero_ok)


@dataclasses.dataclass(frozen=True)
class GANConfig:
    """Cramér GAN settings (defaults: the L-GSO reference's architecture, lighter critic output)."""

    hidden: int = 100
    noise_dim: int = 16
    critic_dim: int = 64
    gp_weight: float = 10.0
    instance_noise: float = 0.01
    learning_rate: float = 8e-4
    batch: int = 512
    steps: int = 600

    def __post_init__(self):
        _check_fields(self, zero_ok=("gp_weight", "instance_noise"))


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    """Conditional flow-matching settings."""

    hidden: int = 64
    depth: int = 3
    learning_rate: float = 2e-3
    batch: int = 512
    steps: int = 1500
    ode_steps: int = 8

    def __post_init__(self):
        _check_fields(self)


class _MLP(nnx.Module):
    def __init__(self, sizes, acts, rngs):
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        self.acts = tuple(acts)

    def __call__(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.acts):
                x = _ACTS[self.acts[i]](x)
        return x


_ACTS = {"tanh": jnp.tanh, "leaky": lambda x: jax.nn.leaky_relu(x, 0.01), "silu": jax.nn.silu}


def _as_2d(name, a, width=None):
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise GenerativeError(f"{name}: expected an array of shape (n, dim), got shape {a.shape}")
    if width is not None and a.shape[1] != width:
        raise GenerativeError(f"{name}: expected {width} columns, got {a.shape[1]}")
    if not np.all(np.isfinite(a)):
        raise GenerativeError(f"{name}: contains {int((~np.isfinite(a)).sum())} non-finite values")
    return a


def _norm(a):
    """Row norms with a finite gradient at zero."""
    return jnp.sqrt(jnp.sum(a * a, axis=1) + 1e-12)


def _stats(a):
    m = a.mean(axis=0)
    s = a.std(axis=0)
    return m.astype(np.float32), np.where(s > 1e-12 * np.maximum(1.0, np.abs(m)), s, 1.0).astype(np.float32)


def _pad(a, cap):
    out = np.zeros((cap, a.shape[1]), np.float32)
    out[:len(a)] = a
    return out


def _capacity(n):
    return max(1024, 1 << (int(n) - 1).bit_length())


class _Conditional:
    """Shared plumbing: shapes, standardisation, padding, the jitted sampler."""

    kind = ""
    config_class: type = GANConfig

    def __init__(self, y_dim: int, c_dim: int, config=None, *, seed: int = 0):
        _positive_int("y_dim", y_dim)
        if not isinstance(c_dim, (int, np.integer)) or isinstance(c_dim, bool) or c_dim < 0:
            raise GenerativeError(f"c_dim = {c_dim!r}: must be an integer >= 0")
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise GenerativeError(f"config: expected a {self.config_class.__name__}, got {type(config).__name__}")
        self.y_dim, self.c_dim, self.config, self.seed = int(y_dim), int(c_dim), config, int(seed)
        self.params = None
        self._graphdefs, init = self._build(jax.random.key(self.seed))
        self._init_params = init

    # subclasses: _build(key) -> (graphdefs, params); _train(...) static; _generate(graphdefs, config, params, z, c)

    def _norm(self, y, c):
        ym, ys = _stats(y)
        cm, cs = _stats(c) if self.c_dim else (np.zeros(0, np.float32), np.ones(0, np.float32))
        return dict(y_mean=jnp.asarray(ym), y_std=jnp.asarray(ys), c_mean=jnp.asarray(cm), c_std=jnp.asarray(cs))

    def fit(self, y, c, *, key=None, steps: int | None = None, warm_start: bool = False) -> dict:
        """Train on rows ``y`` (n, y_dim) given ``c`` (n, c_dim); returns ``{"loss": last-100-step mean, "steps": n}``.
        A fresh initialisation unless ``warm_start`` (then the previous parameters continue)."""
        y = _as_2d("y", y, self.y_dim)
        c = _as_2d("c", np.zeros((len(y), 0)) if c is None else c, self.c_dim)
        if len(c) != len(y):
            raise GenerativeError(f"c has {len(c)} rows but y has {len(y)}: one condition per sample")
        if len(y) < 2:
            raise GenerativeError(f"y has {len(y)} rows: need at least 2 to fit")
        steps = self.config.steps if steps is None else steps
        _positive_int("steps", steps)
        key = jax.random.key(self.seed) if key is None else key
        k_init, k_train = jax.random.split(key)
        norm = self._norm(y, c)
        if warm_start and self.params is not None:
            nets = self.params["nets"]
        else:
            _, nets = self._build(k_init)
        cap = _capacity(len(y))
        yz = (y - np.asarray(norm["y_mean"])) / np.asarray(norm["y_std"])
        cz = (c - np.asarray(norm["c_mean"])) / np.asarray(norm["c_std"]) if self.c_dim else c
        nets, losses = self._train(self._graphdefs, self.config, int(steps), nets, jnp.asarray(_pad(yz, cap)),
                                   jnp.asarray(_pad(cz, cap)), jnp.asarray(len(y), jnp.int32), k_train)
        self.params = dict(nets=nets, **norm)
        losses = np.asarray(losses)
        return dict(loss=float(losses[-100:].mean()), steps=int(steps), losses=losses)

    def _check_fitted(self):
        if self.params is None:
            raise GenerativeError(f"{type(self).__name__}: call fit() before sampling")

    def sampler(self) -> tuple[Callable, dict]:
        """``(fn, params)``: ``fn(params, key, c) -> y`` (one sample per row of ``c``), pure and jittable,
        differentiable in ``c`` (and in ``params``)."""
        self._check_fitted()
        return _sampler_fn(type(self), self._graphdefs, self.config, self.y_dim), self.params

    def sample(self, key, c) -> np.ndarray:
        """One sample per condition row (``c`` (n, c_dim); for ``c_dim == 0`` pass ``n`` as an int)."""
        self._check_fitted()
        if self.c_dim == 0 and isinstance(c, (int, np.integer)):
            c = np.zeros((int(c), 0), np.float32)
        c = _as_2d("c", c, self.c_dim)
        return np.asarray(_sample_jit(type(self), self._graphdefs, self.config, self.y_dim, self.params, key, jnp.asarray(c)))

    def state_dict(self) -> dict:
        """The trained parameters (with the standardisation) as plain lists, in a fixed order: JSON-safe."""
        self._check_fitted()
        return dict(kind=self.kind, leaves=[np.asarray(a).tolist() for a in jax.tree.leaves(self.params)])

    def load_state_dict(self, state: dict) -> None:
        template = self._with_stats(self._init_params)
        ref, tree = jax.tree.flatten(template)
        leaves = state.get("leaves", []) if isinstance(state, dict) else []
        shapes = [np.shape(v) for v in leaves]
        if state.get("kind") != self.kind or shapes != [r.shape for r in ref]:
            raise GenerativeError(f"{type(self).__name__}: saved parameters do not match this architecture "
                                  f"(kind {state.get('kind')!r}, {len(leaves)} arrays; expected {self.kind!r}, {len(ref)})")
        self.params = jax.tree.unflatten(tree, [jnp.asarray(np.asarray(v, np.float32)) for v in leaves])

    def _with_stats(self, nets):
        z = lambda n: jnp.zeros(n, jnp.float32)
        return dict(nets=nets, y_mean=z(self.y_dim), y_std=z(self.y_dim), c_mean=z(self.c_dim), c_std=z(self.c_dim))


def _sample(cls, graphdefs, config, y_dim, params, key, c):
    c = jnp.asarray(c, jnp.float32)
    cz = (c - params["c_mean"]) / params["c_std"]
    yz = cls._generate(graphdefs, config, y_dim, params["nets"], key, cz)
    return params["y_mean"] + params["y_std"] * yz


_sample_jit = jax.jit(_sample, static_argnums=(0, 1, 2, 3))


@functools.lru_cache(maxsize=64)
def _sampler_fn(cls, graphdefs, config, y_dim):
    """One function object per architecture, so that jit caches keyed on it survive refits."""
    return functools.partial(_sample, cls, graphdefs, config, y_dim)


# --------------------------------------------------------------------------------------------------- GAN

class CramerGAN(_Conditional):
    __doc__ = "Conditional Cramér GAN (see the module docstring).\n\n" + _Conditional.fit.__doc__
    kind = "gan"
    config_class = GANConfig

    def _build(self, key):
        cfg = self.config
        kg, kc = jax.random.split(key)
        gen = _MLP([cfg.noise_dim + self.c_dim, cfg.hidden, cfg.hidden, cfg.hidden, self.y_dim],
                   ("tanh", "tanh", "leaky"), nnx.Rngs(kg))
        critic = _MLP([self.y_dim + self.c_dim, cfg.hidden, cfg.hidden, cfg.critic_dim], ("tanh", "leaky"), nnx.Rngs(kc))
        (gd_g, st_g), (gd_c, st_c) = nnx.split(gen), nnx.split(critic)
        return (gd_g, gd_c), (st_g, st_c)

    @staticmethod
    def _generate(graphdefs, config, y_dim, nets, key, cz):
        z = jax.random.normal(key, (cz.shape[0], config.noise_dim))
        return nnx.merge(graphdefs[0], nets[0])(jnp.concatenate([z, cz], axis=1))

    @staticmethod
    @functools.partial(jax.jit, static_argnums=(0, 1, 2))
    def _train(graphdefs, cfg, steps, nets, y, c, n, key):
        gd_g, gd_c = graphdefs
        tx = optax.adam(cfg.learning_rate, b1=0.5, b2=0.999)
        gen = lambda p, z, cb: nnx.merge(gd_g, p)(jnp.concatenate([z, cb], axis=1))
        crit = lambda p, yb, cb: nnx.merge(gd_c, p)(jnp.concatenate([yb, cb], axis=1))

        def f(pc, v, cb, hg2):
            h = crit(pc, v, cb)
            return _norm(h - hg2) - _norm(h)

        def surrogate(pc, real, fake, fake2, cb):
            hg2 = crit(pc, fake2, cb)
            return jnp.mean(f(pc, real, cb, hg2)) - jnp.mean(f(pc, fake, cb, hg2))

        def noisy(k, a):
            return a + cfg.instance_noise * jnp.std(a, axis=0) * jax.random.normal(k, a.shape)

        def critic_loss(pc, pg, real, cb, k):
            k1, k2, k3, k4, k5 = jax.random.split(k, 5)
            fake = gen(pg, jax.random.normal(k1, (real.shape[0], cfg.noise_dim)), cb)
            fake2 = gen(pg, jax.random.normal(k2, (real.shape[0], cfg.noise_dim)), cb)
            real_n, fake_n = noisy(k3, real), noisy(k4, fake)
            a = jax.random.uniform(k5, (real.shape[0], 1))
            hat = a * real_n + (1 - a) * fake_n
            hg2 = crit(pc, fake2, cb)
            # rows are independent: the gradient of the sum is every row's own gradient
            gr = jax.grad(lambda v: jnp.sum(f(pc, v, cb, hg2)))(hat)
            pen = jnp.mean(jax.nn.relu(_norm(gr) - 1.0) ** 2)
            return -surrogate(pc, real_n, fake_n, fake2, cb) + cfg.gp_weight * pen

        def gen_loss(pg, pc, real, cb, k):
            k1, k2, k3 = jax.random.split(k, 3)
            fake = gen(pg, jax.random.normal(k1, (real.shape[0], cfg.noise_dim)), cb)
            fake2 = gen(pg, jax.random.normal(k2, (real.shape[0], cfg.noise_dim)), cb)
            return surrogate(pc, noisy(k3, real), fake, fake2, cb)

        def step(carry, k):
            pg, pc, og, oc = carry
            ki, kc, kg = jax.random.split(k, 3)
            idx = jax.random.randint(ki, (cfg.batch,), 0, n)
            real, cb = y[idx], c[idx]
            lc, g = jax.value_and_grad(critic_loss)(pc, pg, real, cb, kc)
            u, oc = tx.update(g, oc, pc)
            pc = optax.apply_updates(pc, u)
            lg, g = jax.value_and_grad(gen_loss)(pg, pc, real, cb, kg)
            u, og = tx.update(g, og, pg)
            pg = optax.apply_updates(pg, u)
            return (pg, pc, og, oc), lg

        pg, pc = nets
        (pg, pc, _, _), losses = jax.lax.scan(step, (pg, pc, tx.init(pg), tx.init(pc)), jax.random.split(key, steps))
        return (pg, pc), losses


# ------------------------------------------------------------------------------------------ flow matching

class FlowMatching(_Conditional):
    __doc__ = "Conditional flow matching (see the module docstring).\n\n" + _Conditional.fit.__doc__
    kind = "flow"
    config_class = FlowConfig

    def _build(self, key):
        cfg = self.config
        sizes = [self.y_dim + 1 + self.c_dim] + [cfg.hidden] * cfg.depth + [self.y_dim]
        net = _MLP(sizes, ("silu",) * cfg.depth, nnx.Rngs(key))
        gd, st = nnx.split(net)
        return (gd,), (st,)

    @staticmethod
    def _velocity(gd, p, yt, t, cb):
        return nnx.merge(gd, p)(jnp.concatenate([yt, t, cb], axis=1))

    @staticmethod
    def _generate(graphdefs, config, y_dim, nets, key, cz):
        gd, = graphdefs
        p, = nets
        y = jax.random.normal(key, (cz.shape[0], y_dim))
        h = 1.0 / config.ode_steps

        def body(i, y):
            t = jnp.full((cz.shape[0], 1), i * h)
            ym = y + 0.5 * h * FlowMatching._velocity(gd, p, y, t, cz)
            return y + h * FlowMatching._velocity(gd, p, ym, t + 0.5 * h, cz)

        return jax.lax.fori_loop(0, config.ode_steps, body, y)

    @staticmethod
    @functools.partial(jax.jit, static_argnums=(0, 1, 2))
    def _train(graphdefs, cfg, steps, nets, y, c, n, key):
        gd, = graphdefs
        tx = optax.adam(optax.cosine_decay_schedule(cfg.learning_rate, steps, alpha=0.05))

        def loss(p, y1, cb, k):
            k0, kt = jax.random.split(k)
            z = jax.random.normal(k0, y1.shape)
            t = jax.random.uniform(kt, (y1.shape[0], 1))
            v = FlowMatching._velocity(gd, p, (1 - t) * z + t * y1, t, cb)
            return jnp.mean(jnp.sum((v - (y1 - z)) ** 2, axis=1))

        def step(carry, k):
            p, o = carry
            ki, kl = jax.random.split(k)
            idx = jax.random.randint(ki, (cfg.batch,), 0, n)
            val, g = jax.value_and_grad(loss)(p, y[idx], c[idx], kl)
            u, o = tx.update(g, o, p)
            return (optax.apply_updates(p, u), o), val

        p, = nets
        (p, _), losses = jax.lax.scan(step, (p, tx.init(p)), jax.random.split(key, steps))
        return (p,), losses


MODELS = {"gan": CramerGAN, "flow": FlowMatching}


def make(kind: str, y_dim: int, c_dim: int, config=None, *, seed: int = 0) -> _Conditional:
    """A conditional model by name: ``"gan"`` (:class:`CramerGAN`) or ``"flow"`` (:class:`FlowMatching`)."""
    if kind not in MODELS:
        raise GenerativeError(f"model = {kind!r}: must be one of {', '.join(MODELS)}")
    return MODELS[kind](y_dim, c_dim, config, seed=seed)
