r"""Local generative surrogate optimisation (L-GSO; Shirobokov, Belavin, Kagan, Ustyuzhanin, Baydin,
NeurIPS 2020, arXiv:2002.04632), ask/tell.

Problem. A stochastic simulator draws y ~ p(y | x; psi) for continuous parameters psi in R^d (the
design) and nuisance inputs x ~ q(x) (e.g. the particle's energy and direction); the user's objective
R(y, x) is differentiable in y. Minimise the expected objective E_{x, y | psi} R(y, x) with as few
simulator calls as possible, without gradients of the simulator.

Algorithm, per iteration (one ``ask`` / ``tell`` round):

1. ``ask()`` returns ``n_points`` Latin-hypercube points in the trust region (the box psi_t +- radius,
   cut to the bounds; a point violating the known constraint is redrawn) plus the centre psi_t itself:
   the psi values to simulate, each ``samples_per_point`` times (the user draws x and y there).
2. ``tell(psi, x, y)`` takes the simulator rows. All rows ever told whose psi lies inside the current
   box are the training set (the replay: past samples are reused while they stay local).
3. A conditional generative model y | (psi, x) (:mod:`surrogates.generative`: ``"gan"``, the paper's
   Cramér GAN, or ``"flow"``, flow matching) is trained from scratch on that set.
4. The surrogate gradient g = grad_psi (1/K) sum_k R(G(z_k; psi_t, x_k), x_k) over ``n_grad_samples`` =
   K draws (x_k resampled from the told x's in the region, or from the user's ``sample_x``) is one step of
   an optax optimiser (default Adam, lr 0.1, state carried across iterations as in the paper).
5. The step is cut to the trust region (``trust_region`` "box": the sampled box itself, each coordinate
   within ``radius`` in the scaled coordinates psi / scale, where the surrogate was trained, as the
   paper; "ball": the L2 ball of ``radius``, a step sqrt(d) times shorter along the diagonal),
   clipped to the bounds and put back onto the known constraint (:func:`surrogates.gradient.project_step`:
   a number g(psi) <= 0 is projected onto, a bool pulls the step back towards psi_t): every proposal is
   feasible.

Trust-region adaptation (new; the reference keeps the radius fixed). The next iteration simulates the
new centre psi_{t+1}; its empirical mean objective (from the real simulator rows, not the surrogate) is
compared with psi_t's. Not significantly worse (higher by at most ``tolerance`` = 2 standard errors of
the difference): the step is accepted and the radius grows by ``grow`` (1.25, up to ``max_radius``, 4x
the start). Significantly worse: the step is rejected (the centre returns to psi_t, the optimiser's
moments are reset) and the radius shrinks by ``shrink`` (0.7, down to ``min_radius``, 1/8 of the start).
Gentle on purpose: the surrogate needs a region wide enough for the objective's variation to stand out
of the simulator's noise, so a noise-driven collapse of the region would stall the search. The run has
:attr:`converged` when three steps in a row were rejected at the smallest radius.

Counting. ``n_points + 1`` psi points per iteration, each simulated ``samples_per_point`` times;
:attr:`calls` (psi points) and :attr:`rows` (simulator samples) count everything told.

State. :meth:`to_dict` is JSON (the replay rows included as lists; :meth:`save` / :meth:`load` write npz
for large replays); :meth:`from_dict` restores an optimiser with the identical next proposal (every
random draw comes from a key derived from (seed, iteration)).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.stats import qmc

from surrogates import generative as _gen
from surrogates.gradient import check_start, feasible, opt_state_leaves, project_step, restore_opt_state, scale_vector

__all__ = ["LGSO", "LGSOError"]


class LGSOError(ValueError):
    """A bad L-GSO configuration or tell; the message names the field, the value and what is allowed."""


@dataclasses.dataclass
class _Replay:
    """Every told row: its psi stored once per distinct point (``points`` and a row -> point ``index``;
    thousands of samples share one psi, and d may be 100), its x and y per row."""

    points: np.ndarray
    index: np.ndarray
    x: np.ndarray
    y: np.ndarray

    @classmethod
    def empty(cls, d, x_dim, y_dim):
        return cls(np.zeros((0, d)), np.zeros(0, np.int64), np.zeros((0, x_dim)), np.zeros((0, y_dim)))

    def add(self, psi, x, y):
        pts, inv = np.unique(psi, axis=0, return_inverse=True)
        self.index = np.concatenate([self.index, len(self.points) + inv.reshape(-1)])
        self.points = np.concatenate([self.points, pts])
        self.x = np.concatenate([self.x, x])
        self.y = np.concatenate([self.y, y])

    def rows_where(self, point_mask):
        return np.flatnonzero(point_mask[self.index])

    def psi(self, rows):
        return self.points[self.index[rows]]


class LGSO:
    """Local generative surrogate optimiser (see the module docstring).

    Parameters: ``x0`` the start (d,); ``objective(y, x) -> value`` per sample (y (y_dim,), x (x_dim,)),
    written in JAX and differentiable in y; ``y_dim``, ``x_dim`` (0: no nuisance input); ``bounds``
    (d, 2) or None; ``scale`` the unit of each coordinate (radius is in these units; default 1);
    ``radius`` the trust region's half-width (0.2, the paper's value for d >= 10); ``n_points`` LHS points
    per iteration (default min(2 d, 20), at least 4); ``samples_per_point`` (3000); ``model`` "gan" | "flow"
    and ``model_config``; ``optimizer`` an optax transformation (default ``optax.adam(0.1)``);
    ``n_grad_samples`` (10000); ``adapt`` the trust-region adaptation on/off, ``grow``, ``shrink``,
    ``min_radius``, ``max_radius``, ``tolerance``; ``trust_region`` "box" | "ball" (how a step is cut, see
    the module docstring); ``replay_scale`` the training set's box in units of the trust region (1: the
    paper's, only rows inside the trust region; larger reuses more of the history); ``constraint(psi)`` a known constraint, a number g
    (feasible when <= 0) or a bool (x0 must satisfy it); ``sample_x(key, n) -> (n, x_dim)`` optional;
    ``replay_cap`` the most rows used per fit (a seeded random subset beyond it; 3e5, the reference 1e6:
    a fit draws a fixed number of mini-batches, 1500 x 512 for the flow, so more rows add memory, not
    information, and at d = 100 a million conditions are 400 MB); ``seed``; ``progress(message)``
    called once per phase.
    """

    def __init__(self, x0, objective: Callable, *, y_dim: int = 1, x_dim: int = 0, bounds=None, scale=1.0,
                 radius: float = 0.2, n_points: int | None = None, samples_per_point: int = 3000,
                 model: str = "gan", model_config=None, optimizer: optax.GradientTransformation | None = None,
                 n_grad_samples: int = 10000, adapt: bool = True, grow: float = 1.25, shrink: float = 0.7,
                 min_radius: float | None = None, max_radius: float | None = None, tolerance: float = 2.0,
                 trust_region: str = "box", replay_scale: float = 1.0, constraint: Callable | None = None, sample_x: Callable | None = None,
                 replay_cap: int = 300_000, seed: int = 0, progress: Callable[[str], None] | None = None):
        x0, self.bounds = check_start(x0, bounds, constraint, LGSOError)
        d = len(x0)
        self.d = d
        if not callable(objective):
            raise LGSOError(f"objective: expected a callable objective(y, x) -> value, got {objective!r}")
        for name, v, lo in (("y_dim", y_dim, 1), ("x_dim", x_dim, 0), ("samples_per_point", samples_per_point, 1),
                            ("n_grad_samples", n_grad_samples, 1), ("replay_cap", replay_cap, 1)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
                raise LGSOError(f"{name} = {v!r}: must be an integer >= {lo}")
        n_points = max(4, min(2 * d, 20)) if n_points is None else n_points
        if not isinstance(n_points, (int, np.integer)) or isinstance(n_points, bool) or n_points < 1:
            raise LGSOError(f"n_points = {n_points!r}: must be an integer >= 1")
        if model not in _gen.MODELS:
            raise LGSOError(f"model = {model!r}: must be one of {', '.join(_gen.MODELS)}")
        self.scale = scale_vector("scale", scale, d, LGSOError)
        for name, v in (("radius", radius), ("grow", grow), ("shrink", shrink)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
                raise LGSOError(f"{name} = {v!r}: must be a finite number > 0")
        if trust_region not in ("box", "ball"):
            raise LGSOError(f"trust_region = {trust_region!r}: must be 'box' or 'ball'")
        self.trust_region = trust_region
        if not isinstance(replay_scale, (int, float)) or isinstance(replay_scale, bool) or not replay_scale >= 1:
            raise LGSOError(f"replay_scale = {replay_scale!r}: must be a number >= 1")
        self.replay_scale = float(replay_scale)
        if not shrink < 1 or not grow >= 1:
            raise LGSOError(f"shrink = {shrink} must be < 1 and grow = {grow} >= 1")
        self.objective, self.y_dim, self.x_dim = objective, int(y_dim), int(x_dim)
        self.n_points, self.samples_per_point = int(n_points), int(samples_per_point)
        self.model_kind, self.model_config = model, model_config
        self.tx = optax.adam(0.1) if optimizer is None else optimizer
        self.n_grad_samples, self.replay_cap = int(n_grad_samples), int(replay_cap)
        self.adapt, self.grow, self.shrink, self.tolerance = bool(adapt), float(grow), float(shrink), float(tolerance)
        self.min_radius = radius / 8 if min_radius is None else float(min_radius)
        self.max_radius = 4 * radius if max_radius is None else float(max_radius)
        self.constraint, self.sample_x, self.seed, self.progress = constraint, sample_x, int(seed), progress
        # state
        self.centre = x0
        self.radius = float(radius)
        self.iteration = 0
        self.history: list[dict] = []
        self._pending: np.ndarray | None = None
        self._previous: dict | None = None          # the accepted centre before the last step and its objective
        self._opt_state = self.tx.init(jnp.asarray(x0, jnp.float32))
        self._replay = _Replay.empty(d, self.x_dim, self.y_dim)
        self._model = None
        self._grad_fn = None

    # --------------------------------------------------------------------------------------- public
    @property
    def calls(self) -> int:
        """Distinct psi evaluations told so far (points, not samples)."""
        return int(sum(h["points"] for h in self.history))

    @property
    def rows(self) -> int:
        return int(len(self._replay.index))

    @property
    def converged(self) -> bool:
        """At the smallest radius and the last ``patience`` (3) steps rejected: no progress is measurable."""
        h = self.history[-3:]
        return self.radius <= self.min_radius * (1 + 1e-9) and len(h) == 3 and not any(r["accepted"] for r in h)

    def _key(self, *path):
        k = jax.random.key(self.seed)
        for p in (self.iteration, *path):
            k = jax.random.fold_in(k, p)
        return k

    def _half(self):
        return self.radius * self.scale

    def ask(self) -> np.ndarray:
        """The psi points to simulate this iteration, shape (n_points + 1, d); the last row is the centre.
        Asking again before telling returns the same points."""
        if self._pending is None:
            self._pending = np.vstack([self._lhs(), self.centre[None]])
        return self._pending.copy()

    def _lhs(self) -> np.ndarray:
        half = self._half()
        lo, hi = self.centre - half, self.centre + half
        if self.bounds is not None:
            lo, hi = np.maximum(lo, self.bounds[:, 0]), np.minimum(hi, self.bounds[:, 1])
        rng = np.random.default_rng([self.seed, self.iteration])
        out = []
        for _ in range(50):
            u = qmc.LatinHypercube(d=self.d, seed=rng).random(self.n_points)
            pts = lo + u * (hi - lo)
            if self.constraint is not None:
                pts = pts[[feasible(self.constraint, p) for p in pts]]
            out.extend(pts)
            if len(out) >= self.n_points:
                return np.asarray(out[:self.n_points])
        if not out:
            raise LGSOError(f"no point of the trust region around {self.centre.tolist()} (radius {self.radius:g}) "
                            f"satisfies the known constraint in 50 Latin-hypercube draws")
        return np.asarray(out)              # fewer points than asked near a tight constraint

    def tell(self, psi, x, y) -> dict | None:
        """Simulator rows: ``psi`` (n, d), ``x`` (n, x_dim) (None when x_dim = 0), ``y`` (n, y_dim). When the
        asked centre has been told, the iteration completes: the surrogate is fitted and the step taken;
        returns that iteration's record (else None)."""
        psi = np.asarray(psi, dtype=float)
        y = np.asarray(y, dtype=float)
        if y.ndim == 1:
            y = y[:, None]
        if psi.ndim != 2 or psi.shape[1] != self.d:
            raise LGSOError(f"psi: expected shape (n, {self.d}), got {psi.shape}")
        x = np.zeros((len(psi), 0)) if x is None else np.asarray(x, dtype=float)
        if x.ndim == 1:
            x = x[:, None]
        if x.shape != (len(psi), self.x_dim) or y.shape != (len(psi), self.y_dim):
            raise LGSOError(f"x and y: expected shapes ({len(psi)}, {self.x_dim}) and ({len(psi)}, {self.y_dim}), "
                            f"got {x.shape} and {y.shape}")
        bad = ~(np.all(np.isfinite(psi), 1) & np.all(np.isfinite(x), 1) & np.all(np.isfinite(y), 1))
        if bad.any():
            raise LGSOError(f"{int(bad.sum())} of {len(psi)} told rows have non-finite psi, x or y (first at row "
                            f"{int(np.argmax(bad))}); drop failed simulations before telling")
        self._replay.add(psi, x, y)
        pending = self.ask()
        if not self._at(pending[-1], psi).any():       # the centre not told yet (rows of other points may come first)
            return None
        return self._complete(pending)

    def add_rows(self, psi, x, y) -> None:
        """Add simulator rows to the replay without completing an iteration: a resumed run rebuilding the
        replay of a restored state (:meth:`from_dict` without ``replay``), one call per original ``tell``
        in the same order (the replay then matches the uninterrupted run's)."""
        x = np.zeros((len(psi), 0)) if x is None else np.asarray(x, dtype=float).reshape(len(psi), self.x_dim)
        self._replay.add(np.asarray(psi, dtype=float).reshape(-1, self.d), x,
                         np.asarray(y, dtype=float).reshape(len(psi), self.y_dim))

    @property
    def model(self):
        """The surrogate fitted in the last iteration (None before the first)."""
        return self._model

    @staticmethod
    def _at(point, psi):
        """Rows of ``psi`` at ``point`` (to float32 rounding: simulators often run in single precision)."""
        return np.all(np.abs(psi - point) <= 1e-6 * (1 + np.abs(point)), axis=1)

    def set_objective(self, objective: Callable) -> None:
        """Replace R(y, x) between iterations (e.g. after refitting a frozen reconstruction at the new
        centre). Step acceptance re-scores the previous centre's rows with the new objective."""
        if not callable(objective):
            raise LGSOError(f"objective: expected a callable objective(y, x) -> value, got {objective!r}")
        self.objective = objective

    # ----------------------------------------------------------------------------------- one iteration
    def _objective_rows(self, x, y):
        f = jax.vmap(self.objective)
        return np.asarray(f(jnp.asarray(y, jnp.float32), jnp.asarray(x, jnp.float32)), dtype=float)

    def _centre_estimate(self, centre):
        at = self._replay.rows_where(self._at(centre, self._replay.points))
        r = self._objective_rows(self._replay.x[at], self._replay.y[at])
        return float(r.mean()), float(r.std(ddof=1) / math.sqrt(len(r))) if len(r) > 1 else float("inf"), int(len(r))

    def _complete(self, pending) -> dict:
        mean, sem, _ = self._centre_estimate(self.centre)
        accepted = True
        if self._previous is not None:
            # the previous centre re-scored from its rows with the current objective (it may have changed)
            prev, prev_sem, _ = self._centre_estimate(np.asarray(self._previous["centre"]))
            self._previous.update(value=prev, sem=prev_sem)
            diff_err = math.hypot(sem, prev_sem)
            accepted = mean <= prev + self.tolerance * diff_err
            if self.adapt:
                if accepted:
                    self.radius = min(self.radius * self.grow, self.max_radius)
                else:
                    self.radius = max(self.radius * self.shrink, self.min_radius)
                    self.centre = np.asarray(self._previous["centre"])
                    mean, sem = self._previous["value"], self._previous["sem"]
                    self._opt_state = self.tx.init(jnp.asarray(self.centre, jnp.float32))
        record = dict(iteration=self.iteration, centre=self.centre.tolist(), radius=self.radius,
                      value=mean, sem=sem, accepted=accepted, points=int(len(pending)))
        self.history.append(record)
        if self.converged:
            record.update(gradient=None, proposal=self.centre.tolist(), converged=True)
        else:
            grad, info = self.surrogate_gradient()
            upd, self._opt_state = self.tx.update(jnp.asarray(grad, jnp.float32), self._opt_state,
                                                  jnp.asarray(self.centre, jnp.float32))
            raw = self.centre + np.asarray(upd, dtype=float)
            proposal = project_step(self.centre, raw, self.radius, self.scale, self.bounds, self.constraint,
                                    norm="box" if self.trust_region == "box" else "l2")
            record.update(gradient=grad.tolist(), proposal=proposal.tolist(), converged=False, **info)
            self._previous = dict(centre=self.centre.tolist(), value=mean, sem=sem)
            self.centre = proposal
        self.iteration += 1
        self._pending = None
        if self.progress is not None:
            self.progress(f"L-GSO iteration {record['iteration']}: objective {mean:.4g} +- {sem:.2g} at the centre, "
                          f"radius {record['radius']:.3g}, {'accepted' if accepted else 'rejected'}")
        return record

    def training_set(self):
        """The replay rows inside the current trust region (at most ``replay_cap``, a seeded random subset)."""
        inside = np.all(np.abs(self._replay.points - self.centre) <= self.replay_scale * self._half() * (1 + 1e-9), axis=1)
        idx = self._replay.rows_where(inside)
        if len(idx) > self.replay_cap:
            idx = np.sort(np.random.default_rng([self.seed, self.iteration, 1]).choice(idx, self.replay_cap, replace=False))
        return self._replay.psi(idx), self._replay.x[idx], self._replay.y[idx]

    def fit_surrogate(self):
        """Train a fresh conditional model y | (psi, x) on :meth:`training_set`; returns (model, fit info)."""
        psi, x, y = self.training_set()
        model = _gen.make(self.model_kind, self.y_dim, self.d + self.x_dim, self.model_config, seed=self.seed)
        if self.progress is not None:
            self.progress(f"L-GSO iteration {self.iteration}: training the {self.model_kind} surrogate on {len(y)} rows")
        info = model.fit(y, np.concatenate([psi, x], axis=1), key=self._key(2))
        self._model = model
        return model, dict(train_rows=int(len(y)), train_loss=info["loss"])

    def surrogate_gradient(self, at=None) -> tuple[np.ndarray, dict]:
        """Fit the surrogate and return grad_psi of its expected objective at ``at`` (default the centre),
        a mean over ``n_grad_samples`` surrogate draws, and a dict of fit information."""
        model, info = self.fit_surrogate()
        at = self.centre if at is None else np.asarray(at, float)
        fn, params = model.sampler()
        psi, xs, _ = self.training_set()
        k = self.n_grad_samples
        if self.sample_x is not None:
            xk = np.asarray(self.sample_x(self._key(3), k), dtype=float).reshape(k, self.x_dim)
        else:
            near = np.flatnonzero(np.all(np.abs(psi - at) <= self._half(), axis=1))
            pick = np.random.default_rng([self.seed, self.iteration, 3]).choice(near if len(near) else np.arange(len(xs)), k)
            xk = xs[pick]
        value, grad = _value_grad_jit(fn, self.objective, params, self._key(4), jnp.asarray(at, jnp.float32),
                                            jnp.asarray(xk, jnp.float32))
        info.update(surrogate_value=float(value))
        return np.asarray(grad, dtype=float), info

    # ----------------------------------------------------------------------------------------- state
    _OPTIONS = ("y_dim", "x_dim", "n_points", "samples_per_point", "n_grad_samples", "adapt", "grow", "shrink",
                "min_radius", "max_radius", "tolerance", "trust_region", "replay_scale", "replay_cap", "seed")

    _ADDED = {"trust_region": "ball", "replay_scale": 1.0}

    def to_dict(self, replay: bool = True) -> dict:
        """Plain-JSON state. The optax state is stored as its leaves (restored into the same optimiser)."""
        out = dict(kind="lgso", d=self.d, model=self.model_kind, centre=self.centre.tolist(), radius=self.radius,
                   iteration=self.iteration, history=self.history, previous=self._previous,
                   scale=self.scale.tolist(), bounds=None if self.bounds is None else self.bounds.tolist(),
                   opt_state=opt_state_leaves(self._opt_state),
                   pending=None if self._pending is None else self._pending.tolist(),
                   **{k: getattr(self, k) for k in self._OPTIONS})
        if replay:
            out["replay"] = dict(points=self._replay.points.tolist(), index=self._replay.index.tolist(),
                                 x=self._replay.x.tolist(), y=self._replay.y.tolist())
        return out

    @classmethod
    def from_dict(cls, state: dict, objective: Callable, *, optimizer=None, model_config=None, constraint=None,
                  sample_x=None, progress=None, replay: dict | None = None) -> LGSO:
        """Restore from :meth:`to_dict` (the callables and the optax transformation are not serialisable:
        pass the same ones)."""
        if not isinstance(state, dict) or state.get("kind") != "lgso":
            raise LGSOError("state: not an L-GSO state (expected a dict from LGSO.to_dict())")
        # a state saved before trust_region / replay_scale existed: the L2 ball and the paper's replay
        opts = {k: state[k] for k in cls._OPTIONS if k not in cls._ADDED} | {k: state.get(k, v) for k, v in cls._ADDED.items()}
        self = cls(np.asarray(state["centre"], dtype=float), objective,
                   bounds=state["bounds"], scale=state["scale"], radius=state["radius"], model=state["model"],
                   model_config=model_config, optimizer=optimizer, constraint=None, sample_x=sample_x,
                   progress=progress, **opts)
        self.constraint = constraint
        self.centre = np.asarray(state["centre"], dtype=float)
        self.radius, self.iteration, self.history = float(state["radius"]), int(state["iteration"]), list(state["history"])
        self._previous = state["previous"]
        self._pending = None if state["pending"] is None else np.asarray(state["pending"], dtype=float)
        self._opt_state = restore_opt_state(self.tx, jnp.asarray(self.centre, jnp.float32), state["opt_state"], LGSOError)
        rep = state.get("replay") if replay is None else replay
        if rep is not None:
            index = np.asarray(rep["index"], np.int64).reshape(-1)
            self._replay = _Replay(np.asarray(rep["points"], float).reshape(-1, self.d), index,
                                   np.asarray(rep["x"], float).reshape(len(index), self.x_dim),
                                   np.asarray(rep["y"], float).reshape(len(index), self.y_dim))
        return self

    def save(self, path) -> None:
        """The state as npz: the replay as arrays, the rest as JSON."""
        import json
        r = self._replay
        np.savez_compressed(path, state=json.dumps(self.to_dict(replay=False)), points=r.points, index=r.index,
                            x=r.x, y=r.y)

    @classmethod
    def load(cls, path, objective: Callable, **kw) -> LGSO:
        import json
        with np.load(path) as f:
            return cls.from_dict(json.loads(str(f["state"])), objective,
                                 replay=dict(points=f["points"], index=f["index"], x=f["x"], y=f["y"]), **kw)


def _value_grad(fn, objective, params, key, psi, xk):
    def mean_objective(p):
        c = jnp.concatenate([jnp.broadcast_to(p, (xk.shape[0], p.shape[0])), xk], axis=1)
        y = fn(params, key, c)
        return jnp.mean(jax.vmap(objective)(y, xk))
    return jax.value_and_grad(mean_objective)(psi)


_value_grad_jit = jax.jit(_value_grad, static_argnums=(0, 1))
