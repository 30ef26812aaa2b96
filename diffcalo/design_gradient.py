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

Cell size, pile-up and the time window (``stack_problem(..., parameters=..., pileup=...)``). The design
may also hold ``cell_mm`` (the cell size, continuous between the technology's smallest and largest
allowed sizes; cells tile each module from its edge, :meth:`~diffcalo.layout.Layout.cell_of`) and
``window_sigmas`` (the half-width k of the per-cell time window of :mod:`diffcalo.reco.timing`, in the
technology's time resolutions). Both only trade something off with pile-up: larger cells contain more
of the shower in the K x K window and more background; a narrower window drops more out-of-time
background and more of the signal's own cells. With a :class:`~diffcalo.pileup.PileupModel` the stack is
a wall of LHCb size (64 x 52 modules, 4 x 4 beam hole, z = 12.62 m) and the photons, pointing from the
interaction point, hit the module whose centre is nearest ``(position_mm)``; the overlay adds the
background of ``collisions`` per crossing. With ``cell_mm`` in the design the photons hit that module's
lower-left cell (uniformly within it), whose centre moves continuously with the cell size (the
central cell would change index as the size varies, a jump no derivative sees). The window keeps a cell with weight
sigmoid((k sigma_t(E) - |t - t_exp|) / (s sigma_t(E))), s = :data:`TIME_WINDOW_SOFTNESS` (the relaxed,
differentiable form of the hard cut; empty cells count as kept), with t_exp the photon's flight from the
interaction point to the cell centre plus the cell's own deposit delay: per section and position in the
window, the median residual over the batch of the cells with at least :data:`TIME_OFFSET_MIN_GEV` (a
per-channel timing calibration; held fixed under differentiation, a reconstruction constant like the
calibration). A per-section delay alone, as :meth:`diffcalo.reco.timing.TimeWindow.fit` has, is not
enough here: photons arriving at 0.1 rad deposit in the neighbouring cells at other depths and times,
and a 2.7-sigma window then drops a good part of the signal (without pile-up the 2 + 4 mm stack's
resolution went from 3.6 % to 9.2 %).

With pile-up two things change in the reconstruction and the objective. The linear calibration gets a
pedestal, E_rec = sum_s w_s E_s + w_p (the mean background it subtracts, in GeV): E_rec / E = w . y + w_p / E.
And a background particle overlapping a soft photon gives rare E_rec / E of several (a 20 GeV photon from
another collision in the window of a 2 GeV one), which a squared error lets dominate the mean; the
objective becomes the pseudo-Huber loss 2 delta^2 (sqrt(1 + (r / delta)^2) - 1) of r = E_rec / E - 1,
which is r^2 for |r| << delta (so its square root is the core resolution) and grows only linearly in
the tails (``huber_delta``, default :data:`PILEUP_HUBER_DELTA` with pile-up, None otherwise); its
calibration is the loss's own minimiser (iteratively reweighted least squares), so the stationarity
argument holds as before.
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

__all__ = ["StackProblem", "stack_problem", "NetCalibration", "relative_energy", "PARAMETERS",
           "TIME_WINDOW_SOFTNESS", "PILEUP_HUBER_DELTA"]

#: The continuous design parameters a stack problem can hold, in this order (the first two always).
PARAMETERS = ("absorber_mm", "active_mm", "cell_mm", "window_sigmas")
#: Width of the relaxed time-window edge in time resolutions (module docstring).
TIME_WINDOW_SOFTNESS = 0.2
#: Cells at least this energetic (GeV) set the time window's per-cell delays (module docstring).
TIME_OFFSET_MIN_GEV = 0.1
#: The pseudo-Huber scale of the objective with pile-up (module docstring).
PILEUP_HUBER_DELTA = 0.1


def _loss(r, delta):
    """r^2 (delta None) or the pseudo-Huber 2 delta^2 (sqrt(1 + (r / delta)^2) - 1) (module docstring)."""
    if delta is None:
        return r ** 2
    return 2.0 * delta ** 2 * (jnp.sqrt(1.0 + (r / delta) ** 2) - 1.0)


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

    def to_dict(self) -> dict:
        """A JSON-ready form (the parameters as lists; :meth:`from_dict` rebuilds it)."""
        leaves = jax.tree_util.tree_leaves(self.state)
        return dict(kind="energy_network", n_in=int(np.shape(self.mu)[-1]), hidden=int(np.shape(leaves[0])[-1]),
                    leaves=[np.asarray(v, float).tolist() for v in leaves], mu=np.asarray(self.mu, float).tolist(),
                    sd=np.asarray(self.sd, float).tolist())

    @classmethod
    def from_dict(cls, d: dict) -> "NetCalibration":
        from flax import nnx

        graphdef, state = nnx.split(_energy_net(int(d["n_in"]), int(d["hidden"]), nnx.Rngs(0)))
        treedef = jax.tree_util.tree_structure(state)
        leaves = [jnp.asarray(v, jnp.float32) for v in d["leaves"]]
        if len(leaves) != treedef.num_leaves:
            raise ValueError(f"energy network: {len(leaves)} parameter arrays, expected {treedef.num_leaves}")
        return cls(graphdef, jax.tree_util.tree_unflatten(treedef, leaves), jnp.asarray(d["mu"], jnp.float32),
                   jnp.asarray(d["sd"], jnp.float32))

    def energy(self, e):
        """Reconstructed energy from measured section energies e (..., S), GeV."""
        from flax import nnx

        total = jnp.sum(e, axis=-1)
        z = (jnp.log(jnp.maximum(e, 1e-6)) - self.mu) / self.sd
        return total * jnp.exp(nnx.merge(self.graphdef, self.state)(z)[..., 0])


def relative_energy(calibration, y, x):
    """E_rec / E of one cluster (y = section energies / E, x = (ln E, ...)): w . y for a weight array
    with one weight per section, w . y + w_p / E for one with a pedestal w_p appended, the network's
    E_rec / E for a :class:`NetCalibration`."""
    if isinstance(calibration, NetCalibration):
        e_true = jnp.exp(x[0])
        return calibration.energy(y * e_true) / e_true
    if calibration.shape[-1] == y.shape[-1] + 1:
        return jnp.dot(calibration[:-1], y) + calibration[-1] * jnp.exp(-x[0])
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
    psi0: tuple[float, ...]
    bounds: tuple[tuple[float, float], ...]
    parameters: tuple[str, ...] = PARAMETERS[:2]
    pileup: object = None
    position_mm: tuple[float, float] = (0.0, 0.0)
    huber_delta: float | None = None

    @property
    def n_sections(self) -> int:
        return int(self.detector.n_sections)

    def _param(self, psi, name, default):
        return psi[self.parameters.index(name)] if name in self.parameters else default

    def design(self, psi) -> Detector:
        det = self.detector.with_thickness(self.region, absorber_mm=psi[0], active_mm=psi[1])
        if "cell_mm" in self.parameters:
            det = det.replace_region(self.region, cell_size_mm=self._param(psi, "cell_mm", None))
        return det

    def depth_constraint(self, psi) -> float:
        """n_layers (absorber + active) - max_depth_mm: <= 0 is feasible."""
        return float(self.n_layers * (psi[0] + psi[1]) - self.max_depth_mm)

    def _particles(self, key, n, cell):
        k1, k2 = jax.random.split(key)
        lo, hi = (math.log(e) for e in self.energy_gev)
        loge = jax.random.uniform(k1, (n,), minval=lo, maxval=hi)
        off = jax.random.uniform(k2, (n, 2), minval=-0.5, maxval=0.5)
        x = jnp.concatenate([loge[:, None], off], axis=1)
        cx, cy = self.position_mm
        if "cell_mm" in self.parameters:
            # the module's lower-left cell, whose centre moves smoothly with the cell size (a cell further
            # in would change index as the size varies: a jump that no derivative sees)
            corner = -0.5 * self.detector.layout.module_mm
            cx, cy = cx + corner + 0.5 * cell, cy + corner + 0.5 * cell
        px, py = cx + off[:, 0] * cell, cy + off[:, 1] * cell
        z = self.detector.layout.z_mm if self.pileup is not None else 0.0
        tx, ty = (px / z, py / z) if z > 0 else (jnp.zeros(n), jnp.zeros(n))
        p = Particles(pid=jnp.full(n, 22, jnp.int32), energy=jnp.exp(loge), x=px, y=py, tx=tx, ty=ty,
                      time=jnp.zeros(n))
        return x, p

    def _rows(self, psi, key, n):
        kp, ks = jax.random.split(key)
        x, p = self._particles(kp, n, self._param(psi, "cell_mm", self.cell_mm))
        timed = self.pileup is not None
        c = simulate(self.design(psi), p, key=ks, mode="relaxed", window=self.window, timing=timed,
                     pileup=self.pileup)
        e = c.energy
        if "window_sigmas" in self.parameters:
            e = e * self._time_keep(c, self._param(psi, "window_sigmas", None))
        y = e.sum(axis=(2, 3)) / p.energy[:, None]
        return x, y

    def _time_keep(self, c, k):
        """The relaxed time-window weight of every cell [n, S, K, K] (module docstring)."""
        from diffcalo.simulation.readout import SPEED_OF_LIGHT_MM_PER_NS, time_resolution_ns

        kk = c.energy.shape[-1]
        j = jnp.arange(kk) - 0.5 * (kk - 1)
        cell = c.cell_size_mm[:, None, None]
        cx = c.centre[:, 0, None, None] + j[None, None, :] * cell
        cy = c.centre[:, 1, None, None] + j[None, :, None] * cell
        z = self.detector.layout.z_mm
        t_face = jnp.sqrt(cx ** 2 + cy ** 2 + z ** 2) / SPEED_OF_LIGHT_MM_PER_NS           # [n, K, K]
        dt = c.time - t_face[:, None]                                                      # [n, S, K, K]
        # the per-cell delay (section and position in the window): the median residual of the batch's
        # cells with at least TIME_OFFSET_MIN_GEV, a per-channel timing calibration
        ref = jax.lax.stop_gradient(jnp.where(c.energy >= TIME_OFFSET_MIN_GEV, dt, jnp.nan))
        offset = jnp.nan_to_num(jnp.nanmedian(ref, axis=0), nan=0.0)
        dt = dt - offset[None]
        tech = self.detector.technologies[self.region]
        sigma = time_resolution_ns(c.energy, tech.time_stochastic_ns, tech.time_constant_ns)
        keep = jax.nn.sigmoid((k * sigma - jnp.abs(dt)) / (TIME_WINDOW_SOFTNESS * sigma))
        return jnp.where(c.energy > 0, keep, 1.0)

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
        """The linear calibration at design ``psi`` from n fresh clusters (:meth:`calibrate`): the frozen
        reconstruction."""
        _, x, y = self.simulate_rows(key, psi, n)
        return self.calibrate(x, y)

    @property
    def pedestal(self) -> bool:
        """Whether the linear calibration has a pedestal (with pile-up; module docstring)."""
        return self.pileup is not None

    def calibrate(self, x, y, iterations: int = 20) -> np.ndarray:
        """The linear calibration of rows (x, y): the weights (and pedestal, :attr:`pedestal`) minimising
        the objective's loss of E_rec / E - 1: least squares, or iteratively reweighted least squares for
        the pseudo-Huber loss (weights 1 / sqrt(1 + (r / delta)^2), from the least-squares start)."""
        a = self._features(x, y)
        ones = np.ones(len(a))
        w, *_ = np.linalg.lstsq(a, ones, rcond=None)
        if self.huber_delta is not None:
            for _ in range(iterations):
                s = np.sqrt(1.0 / np.sqrt(1.0 + ((a @ w - 1.0) / self.huber_delta) ** 2))
                w_new, *_ = np.linalg.lstsq(a * s[:, None], s, rcond=None)
                if np.allclose(w_new, w, rtol=1e-10, atol=1e-12):
                    return w_new
                w = w_new
        return w

    def _features(self, x, y):
        y = np.asarray(y, float)
        return np.concatenate([y, np.exp(-np.asarray(x, float)[:, :1])], axis=1) if self.pedestal else y

    def residual(self, calibration, x, y) -> np.ndarray:
        """E_rec / E - 1 of rows (x, y) for a linear calibration (numpy)."""
        return self._features(x, y) @ np.asarray(calibration, float) - 1.0

    def loss(self, r):
        """The objective's per-cluster loss of r = E_rec / E - 1 (module docstring)."""
        return _loss(r, self.huber_delta)

    def identity_calibration(self) -> np.ndarray:
        """Unit section weights (and a zero pedestal): the calibration before any fit."""
        return np.concatenate([np.ones(self.n_sections), [0.0] if self.pedestal else []])

    def fit_network(self, psi, key, n: int = 20000, *, hidden: int = 32, steps: int = 2000, batch: int = 1024,
                    lr: float = 3e-3) -> NetCalibration:
        """Train the energy network (module docstring) at design ``psi`` on n clusters: Adam, ``steps``
        mini-batches under one jitted ``lax.scan``, loss the objective's own loss of the relative energy
        error (squared; pseudo-Huber with pile-up)."""
        kd, kf = jax.random.split(key)
        _, x, y = self.simulate_rows(kd, psi, n)
        return self.fit_network_rows(x, y, kf, hidden=hidden, steps=steps, batch=batch, lr=lr)

    def fit_network_rows(self, x, y, key, *, hidden: int = 32, steps: int = 2000, batch: int = 1024,
                         lr: float = 3e-3) -> NetCalibration:
        """:meth:`fit_network` on given rows (x, y) of one design."""
        from flax import nnx

        kn, kb = jax.random.split(key)
        e = jnp.asarray(y * np.exp(x[:, :1]), jnp.float32)
        e_true = jnp.asarray(np.exp(x[:, 0]), jnp.float32)
        logs = jnp.log(jnp.maximum(e, 1e-6))
        mu, sd = logs.mean(axis=0), logs.std(axis=0) + 1e-6
        graphdef, state = nnx.split(_energy_net(e.shape[1], hidden, nnx.Rngs(int(jax.random.randint(kn, (), 0, 2 ** 30)))))
        return _train_net(NetCalibration(graphdef, state, mu, sd), e, e_true, kb, int(steps), int(batch), float(lr),
                          self.huber_delta)

    def objective(self, calibration):
        """The per-cluster objective R(y, x) = loss(E_rec / E - 1) ((E_rec / E - 1)^2 without pile-up) for
        a frozen reconstruction: section weights w (E_rec / E = w . y, with a pedestal if given) or a
        :class:`NetCalibration`."""
        cal = calibration if isinstance(calibration, NetCalibration) else jnp.asarray(calibration, jnp.float32)
        delta = self.huber_delta
        return lambda y, x: _loss(relative_energy(cal, y, x) - 1.0, delta)

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
    return jnp.mean(jax.vmap(lambda yy, xx: _loss(relative_energy(cal, yy, xx) - 1.0, problem.huber_delta))(y, x))


@functools.partial(jax.jit, static_argnums=(4, 5, 6, 7))
def _train_net(cal, e, e_true, key, steps, batch, lr, delta=None):
    import optax

    tx = optax.adam(lr)

    def loss(state, idx):
        c = NetCalibration(cal.graphdef, state, cal.mu, cal.sd)
        return jnp.mean(_loss(c.energy(e[idx]) / e_true[idx] - 1.0, delta))

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
                  max_depth_mm: float | None = None, cell_mm: float | None = None,
                  parameters=PARAMETERS[:2], pileup=None, position_mm=(600.0, 0.0),
                  window_sigmas: float = 3.0, huber_delta="auto") -> StackProblem:
    """The stack problem for one technology (single-layer-type stacks: every layer the same).

    Without ``pileup``: a 3 x 3-module single-region wall of its smallest cells (or ``cell_mm``) at
    z = 0; with a :class:`~diffcalo.pileup.PileupModel`: a wall of LHCb size at z = 12.62 m and photons
    from the interaction point at the module nearest ``position_mm`` (module docstring).
    ``max_depth_mm`` defaults to the stack's own depth (the module length is fixed). ``parameters``:
    the design's names, ``("absorber_mm", "active_mm")`` optionally followed by ``"cell_mm"`` and/or
    ``"window_sigmas"`` (:data:`PARAMETERS` order). Start (``psi0``): the technology's thicknesses, its
    smallest cell (or ``cell_mm``), ``window_sigmas``. Bounds: absorber and active in [0.2, 3] x the
    technology's values, the cell between its smallest and largest allowed sizes, the window in [0.5, 10].
    ``huber_delta``: the objective's pseudo-Huber scale ("auto": :data:`PILEUP_HUBER_DELTA` with pile-up,
    None = squared error without)."""
    tech = get(technology)
    if len(tech.stack) != 1:
        raise ValueError(f"technology = {technology!r}: has {len(tech.stack)} layer types; the stack "
                         "problem needs one repeated layer")
    block = tech.stack[0]
    if block.absorber_mm <= 0:
        raise ValueError(f"technology = {technology!r}: homogeneous (no absorber); nothing to optimise")
    parameters = tuple(parameters)
    if parameters[:2] != PARAMETERS[:2] or any(p not in PARAMETERS[2:] for p in parameters[2:]) or \
            list(parameters) != sorted(parameters, key=PARAMETERS.index) or len(set(parameters)) != len(parameters):
        raise ValueError(f"parameters = {list(parameters)}: must be ['absorber_mm', 'active_mm'] followed by "
                         "'cell_mm' and/or 'window_sigmas' in that order")
    if "window_sigmas" in parameters and pileup is None:
        raise ValueError("parameters include 'window_sigmas' but pileup is None: the time window only trades "
                         "signal against pile-up; give a PileupModel")
    sizes = tech.cell_sizes_mm or (tech.module_mm,)
    cell = float(cell_mm if cell_mm is not None else sizes[0])
    reg = Registry(group=None)
    reg.register(tech)
    if pileup is None:
        layout = Layout(name=f"stack-{tech.name}", module_mm=tech.module_mm, modules_x=3, modules_y=3, z_mm=0.0,
                        regions=(Region("all", tech.name, cell, 3, 3),))
        position = (0.0, 0.0)
    else:
        layout = Layout(name=f"stack-{tech.name}-pileup", module_mm=tech.module_mm, modules_x=64, modules_y=52,
                        beam_hole=(4, 4), z_mm=12620.0, regions=(Region("all", tech.name, cell, 64, 52),))
        m = float(tech.module_mm)
        position = tuple(float((math.floor(v / m) + 0.5) * m) for v in position_mm)
        hole = 2 * m
        if max(abs(position[0]), abs(position[1])) < hole + 2 * max(sizes) or \
                abs(position[0]) > 31 * m or abs(position[1]) > 25 * m:
            raise ValueError(f"position_mm = {list(position_mm)}: the module centre {list(position)} must lie on the "
                             f"wall ({64 * m:g} x {52 * m:g} mm) with the window clear of the beam hole "
                             f"(|x| or |y| >= {hole + 2 * max(sizes):g} mm)")
    det = Detector.from_layout(layout, registry=reg)
    n_layers = int(tech.summary()["n_layers"])
    thick = (float(block.absorber_mm), float(block.active_mm))
    depth = n_layers * sum(thick) if max_depth_mm is None else float(max_depth_mm)
    start = {"absorber_mm": thick[0], "active_mm": thick[1], "cell_mm": cell, "window_sigmas": float(window_sigmas)}
    box = {"absorber_mm": (0.2 * thick[0], 3 * thick[0]), "active_mm": (0.2 * thick[1], 3 * thick[1]),
           "cell_mm": (float(min(sizes)), float(max(sizes))), "window_sigmas": (0.5, 10.0)}
    return StackProblem(detector=det, region=0, n_layers=n_layers, cell_mm=cell, energy_gev=tuple(energy_gev),
                        window=window, max_depth_mm=depth, psi0=tuple(start[p] for p in parameters),
                        bounds=tuple(box[p] for p in parameters), parameters=parameters, pileup=pileup,
                        position_mm=position,
                        huber_delta=(PILEUP_HUBER_DELTA if pileup is not None else None) if huber_delta == "auto"
                        else huber_delta)
