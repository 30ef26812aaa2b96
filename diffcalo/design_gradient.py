r"""A continuous, differentiable design problem: the absorber and active thickness of one region's stack,
judged by the energy resolution of a frozen reconstruction, through the relaxed parametric simulator.

Design psi = (absorber_mm, active_mm) of every layer of region ``region`` (the number of layers fixed,
so the depth in X0, the sampling fraction and the sampling fluctuations all move with psi). Photons of
energy E (log-uniform in ``energy_gev``) hit the region's central cell at a uniform offset within it,
x = (ln E, dx / cell, dy / cell). The simulator's output per cluster is y = the K x K window energy per
readout section divided by E (EM scale).

Reconstruction and objective. The frozen reconstruction is a linear calibration of the section
energies, E_rec = sum_s w_s E_s, so E_rec / E = w . y, with w fitted by least squares of w . y to 1 at a
reference design (:meth:`StackProblem.fit_calibration`); the per-cluster objective is
R(y) = (w . y - 1)^2, so E R = sigma^2 + bias^2 of the relative energy error, averaged over the
spectrum. A least-squares fit is stationary in w at its optimum, so at the reference design the partial
derivative in psi with w frozen is the total derivative (the argument of DESIGN.md for the
reconstruction networks); away from it the calibration is refitted every few steps.

A non-linear reconstruction (:meth:`StackProblem.fit_network`): a Flax NNX network E_rec = e_sum
exp(f_theta(standardised log section energies)), trained with optax under jit on the same squared
relative error; it corrects the energy-dependent response (leakage grows with energy) that a linear
calibration cannot. Its loss is stationary in theta at the trained optimum just as the linear fit's is
in w, so the frozen network's design gradient is the total one to first order; the calibration argument
of every method below accepts either (a weight array or a :class:`NetCalibration`).

Two views of the same expected objective:

- :meth:`StackProblem.expected` (and its ``jax.value_and_grad``): a Monte Carlo average over ``n``
  clusters with common random numbers (a fixed key), differentiated by autodiff through the relaxed
  simulator: the *exact* gradient of that estimate, with its own Monte Carlo error from independent keys
  (:meth:`StackProblem.gradient_with_error`);
- :meth:`StackProblem.simulate_rows`: the simulator as a black box, (x, y) rows at given psi points,
  for L-GSO (:mod:`surrogates.lgso`) or any other black-box optimiser.

The depth constraint ``n_layers (absorber + active) <= max_depth_mm`` is :meth:`depth_constraint`
(a number, <= 0 when feasible).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from diffcalo.detector import Detector
from diffcalo.layout import Layout, Region
from diffcalo.particles import Particles
from diffcalo.simulation.simulator import simulate
from diffcalo.technologies import Registry, get

__all__ = ["StackProblem", "stack_problem", "NetCalibration", "relative_energy"]


@jax.tree_util.register_pytree_node_class
class NetCalibration:
    """A trained energy network (a pytree: its parameters are leaves, the graph definition static):
    E_rec / e_sum = exp(f(z)), z the section energies' logs standardised by ``mu`` and ``sd``."""

    def __init__(self, graphdef, state, mu, sd):
        self.graphdef, self.state, self.mu, self.sd = graphdef, state, mu, sd

    def tree_flatten(self):
        return (self.state, self.mu, self.sd), self.graphdef

    @classmethod
    def tree_unflatten(cls, graphdef, children):
        return cls(graphdef, *children)

    def energy(self, e):
        """Reconstructed energy from measured section energies e (..., S), GeV."""
        from flax import nnx

        total = jnp.sum(e, axis=-1)
        z = (jnp.log(jnp.maximum(e, 1e-6)) - self.mu) / self.sd
        return total * jnp.exp(nnx.merge(self.graphdef, self.state)(z)[..., 0])


def relative_energy(calibration, y, x):
    """E_rec / E of one cluster (y = section energies / E, x = (ln E, ...)): w . y for a weight array,
    the network's E_rec / E for a :class:`NetCalibration`."""
    if isinstance(calibration, NetCalibration):
        e_true = jnp.exp(x[0])
        return calibration.energy(y * e_true) / e_true
    return jnp.dot(calibration, y)


def _energy_net(n_in, hidden, rngs):
    from flax import nnx

    class EnergyNet(nnx.Module):
        def __init__(self):
            self.l1 = nnx.Linear(n_in, hidden, rngs=rngs)
            self.l2 = nnx.Linear(hidden, hidden, rngs=rngs)
            self.out = nnx.Linear(hidden, 1, rngs=rngs)

        def __call__(self, z):
            return self.out(jnp.tanh(self.l2(jnp.tanh(self.l1(z)))))

    return EnergyNet()


@dataclasses.dataclass(frozen=True, eq=False)          # hashed by identity: a static argument of jit
class StackProblem:
    """See the module docstring. Build with :func:`stack_problem`."""

    detector: Detector
    region: int
    n_layers: int
    cell_mm: float
    energy_gev: tuple[float, float]
    window: int
    max_depth_mm: float
    psi0: tuple[float, float]
    bounds: tuple[tuple[float, float], tuple[float, float]]

    @property
    def n_sections(self) -> int:
        return int(self.detector.n_sections)

    def design(self, psi) -> Detector:
        return self.detector.with_thickness(self.region, absorber_mm=psi[0], active_mm=psi[1])

    def depth_constraint(self, psi) -> float:
        """n_layers (absorber + active) - max_depth_mm: <= 0 is feasible."""
        return float(self.n_layers * (psi[0] + psi[1]) - self.max_depth_mm)

    def _particles(self, key, n):
        k1, k2 = jax.random.split(key)
        lo, hi = (math.log(e) for e in self.energy_gev)
        loge = jax.random.uniform(k1, (n,), minval=lo, maxval=hi)
        off = jax.random.uniform(k2, (n, 2), minval=-0.5, maxval=0.5)
        x = jnp.concatenate([loge[:, None], off], axis=1)
        p = Particles(pid=jnp.full(n, 22, jnp.int32), energy=jnp.exp(loge), x=off[:, 0] * self.cell_mm,
                      y=off[:, 1] * self.cell_mm, tx=jnp.zeros(n), ty=jnp.zeros(n), time=jnp.zeros(n))
        return x, p

    def _rows(self, psi, key, n):
        kp, ks = jax.random.split(key)
        x, p = self._particles(kp, n)
        c = simulate(self.design(psi), p, key=ks, mode="relaxed", window=self.window, timing=False)
        y = c.energy.sum(axis=(2, 3)) / p.energy[:, None]
        return x, y

    def simulate_rows(self, key, psi, n: int):
        """n clusters at each psi point: x (len(psi) n, 3), y (len(psi) n, n_sections), psi rows repeated."""
        psi = np.atleast_2d(np.asarray(psi, dtype=np.float32))
        xs, ys = [], []
        for i, p in enumerate(psi):
            x, y = _rows_jit(self, jnp.asarray(p), jax.random.fold_in(key, i), n)
            xs.append(np.asarray(x))
            ys.append(np.asarray(y))
        return np.repeat(psi, n, axis=0), np.concatenate(xs), np.concatenate(ys)

    def fit_calibration(self, psi, key, n: int = 20000) -> np.ndarray:
        """Least-squares section weights w (w . y ~ 1) at design ``psi``: the frozen reconstruction."""
        _, _, y = self.simulate_rows(key, psi, n)
        coef, *_ = np.linalg.lstsq(y.astype(float), np.ones(len(y)), rcond=None)
        return coef

    def fit_network(self, psi, key, n: int = 20000, *, hidden: int = 32, steps: int = 2000, batch: int = 1024,
                    lr: float = 3e-3) -> NetCalibration:
        """Train the energy network (module docstring) at design ``psi`` on n clusters: Adam, ``steps``
        mini-batches under one jitted ``lax.scan``, loss the mean squared relative energy error."""
        from flax import nnx

        kd, kn, kb = jax.random.split(key, 3)
        _, x, y = self.simulate_rows(kd, psi, n)
        e = jnp.asarray(y * np.exp(x[:, :1]), jnp.float32)
        e_true = jnp.asarray(np.exp(x[:, 0]), jnp.float32)
        logs = jnp.log(jnp.maximum(e, 1e-6))
        mu, sd = logs.mean(axis=0), logs.std(axis=0) + 1e-6
        graphdef, state = nnx.split(_energy_net(e.shape[1], hidden, nnx.Rngs(int(jax.random.randint(kn, (), 0, 2 ** 30)))))
        return _train_net(NetCalibration(graphdef, state, mu, sd), e, e_true, kb, int(steps), int(batch), float(lr))

    @staticmethod
    def objective(calibration):
        """The per-cluster objective R(y, x) = (E_rec / E - 1)^2 for a frozen reconstruction: section
        weights w (E_rec / E = w . y) or a :class:`NetCalibration`."""
        cal = calibration if isinstance(calibration, NetCalibration) else jnp.asarray(calibration, jnp.float32)
        return lambda y, x: (relative_energy(cal, y, x) - 1.0) ** 2

    def expected(self, psi, calibration, key, n: int = 20000):
        """Monte Carlo E R at psi (n clusters, common random numbers from ``key``); differentiable in psi."""
        x, y = self._rows(jnp.asarray(psi, jnp.float32), key, n)
        return jnp.mean(jax.vmap(self.objective(calibration))(y, x))

    def gradient_with_error(self, psi, calibration, key, n: int = 20000, batches: int = 4):
        """The autodiff gradient of the expected objective (mean of ``batches`` independent estimates of
        n / batches clusters) and its standard error per coordinate; also the value and its error."""
        vals, grads = [], []
        for i in range(batches):
            v, g = _value_grad_jit(self, jnp.asarray(psi, jnp.float32), _as_cal(calibration),
                                   jax.random.fold_in(key, i), n // batches)
            vals.append(float(v))
            grads.append(np.asarray(g, dtype=float))
        grads = np.asarray(grads)
        return (float(np.mean(vals)), float(np.std(vals, ddof=1) / math.sqrt(batches)),
                grads.mean(axis=0), grads.std(axis=0, ddof=1) / math.sqrt(batches))


def _as_cal(calibration):
    return calibration if isinstance(calibration, NetCalibration) else jnp.asarray(calibration, jnp.float32)


def _expected_from_cal(problem, psi, cal, key, n):
    x, y = problem._rows(psi, key, n)
    return jnp.mean(jax.vmap(lambda yy, xx: (relative_energy(cal, yy, xx) - 1.0) ** 2)(y, x))


@functools.partial(jax.jit, static_argnums=(4, 5, 6))
def _train_net(cal, e, e_true, key, steps, batch, lr):
    import optax

    tx = optax.adam(lr)

    def loss(state, idx):
        c = NetCalibration(cal.graphdef, state, cal.mu, cal.sd)
        return jnp.mean((c.energy(e[idx]) / e_true[idx] - 1.0) ** 2)

    def step(carry, k):
        state, opt = carry
        idx = jax.random.randint(k, (batch,), 0, e.shape[0])
        upd, opt = tx.update(jax.grad(loss)(state, idx), opt, state)
        return (optax.apply_updates(state, upd), opt), None

    (state, _), _ = jax.lax.scan(step, (cal.state, tx.init(cal.state)), jax.random.split(key, steps))
    return NetCalibration(cal.graphdef, state, cal.mu, cal.sd)


_value_grad_jit = jax.jit(jax.value_and_grad(_expected_from_cal, argnums=1), static_argnums=(0, 4))
_rows_jit = jax.jit(lambda prob, psi, key, n: prob._rows(psi, key, n), static_argnums=(0, 3))


def stack_problem(technology: str = "shashlik", *, energy_gev=(1.0, 50.0), window: int = 3,
                  max_depth_mm: float | None = None, cell_mm: float | None = None) -> StackProblem:
    """The stack-thickness problem for one technology (single-layer-type stacks: every layer the same),
    a 3 x 3-module single-region wall of its smallest cells. ``max_depth_mm`` defaults to the stack's
    own depth (the module length is fixed); bounds: absorber in [0.2, 3] x, active in [0.2, 3] x the
    technology's values."""
    tech = get(technology)
    if len(tech.stack) != 1:
        raise ValueError(f"technology = {technology!r}: has {len(tech.stack)} layer types; the stack "
                         "problem needs one repeated layer")
    block = tech.stack[0]
    if block.absorber_mm <= 0:
        raise ValueError(f"technology = {technology!r}: homogeneous (no absorber); nothing to optimise")
    cell = float(cell_mm if cell_mm is not None else (tech.cell_sizes_mm[0] if tech.cell_sizes_mm else tech.module_mm))
    reg = Registry(group=None)
    reg.register(tech)
    layout = Layout(name=f"stack-{tech.name}", module_mm=tech.module_mm, modules_x=3, modules_y=3, z_mm=0.0,
                    regions=(Region("all", tech.name, cell, 3, 3),))
    det = Detector.from_layout(layout, registry=reg)
    n_layers = int(tech.summary()["n_layers"])
    psi0 = (float(block.absorber_mm), float(block.active_mm))
    depth = n_layers * sum(psi0) if max_depth_mm is None else float(max_depth_mm)
    return StackProblem(detector=det, region=0, n_layers=n_layers, cell_mm=cell, energy_gev=tuple(energy_gev),
                        window=window, max_depth_mm=depth, psi0=psi0,
                        bounds=((0.2 * psi0[0], 3 * psi0[0]), (0.2 * psi0[1], 3 * psi0[1])))
