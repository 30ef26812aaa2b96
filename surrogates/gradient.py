r"""Direct gradient optimisation, ask/tell, for objectives that give their value and gradient (e.g. a
differentiable simulator, or a stochastic estimate of both).

Protocol::

    opt = GradientDescent(x0, optimizer=optax.adam(0.05), bounds=b)
    while not opt.converged:
        psi = opt.ask()                       # (d,)
        value, grad = f_and_grad(psi)
        opt.tell(psi, value, grad)

Every step is an optax update, then :func:`project_step`: cut to ``max_step`` (an L2 ball in the
coordinates psi / scale), clipped to ``bounds`` and put back onto the known ``constraint`` (a number
g(psi) <= 0: projected, so the iterates slide along the boundary to a constrained optimum; a bool: pulled
back towards the current point), so every proposal is feasible. :attr:`best` is the lowest value
told (for a stochastic objective, prefer the last iterates or a re-evaluation). ``tolerance``: the run
has converged when ``patience`` consecutive steps moved less than it (in scaled units). State is plain
JSON and restores to the identical next proposal.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["GradientDescent", "GradientError", "project_step", "feasible"]


class GradientError(ValueError):
    """A bad configuration or tell; the message names the field, the value and what is allowed."""


def feasible(constraint, psi) -> bool:
    """Whether ``psi`` satisfies a known constraint: a callable returning a bool, or a number g with g <= 0
    feasible."""
    if constraint is None:
        return True
    v = constraint(np.asarray(psi, float))
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    return float(v) <= 0.0


def _onto_inequality(g, p, scale, iterations=20):
    """Newton projection onto {g <= 0} in the coordinates psi / scale (finite-difference gradient of g):
    exact for a linear g, a few steps for a smooth one; returns the last point (checked by the caller)."""
    for _ in range(iterations):
        v = float(g(p))
        if v <= 0:
            return p
        h = 1e-6 * scale                            # gradient with respect to u = psi / scale
        grad = np.array([(float(g(p + h[i] * e)) - float(g(p - h[i] * e))) / 2e-6 for i, e in enumerate(np.eye(len(p)))])
        n2 = float(grad @ grad)
        if not n2 > 0:
            return p
        p = p - (v * (1 + 1e-9) + 1e-12) / n2 * grad * scale
    return p


def project_step(centre, proposal, radius, scale, bounds=None, constraint=None, bisections=30,
                 norm: str = "l2") -> np.ndarray:
    """Cut a proposed step: onto the ball of ``radius`` around ``centre`` in the coordinates psi / scale
    (``norm`` "l2": the Euclidean ball, the step shortened along its direction; "box": the cube of
    half-width ``radius``, each coordinate clipped; ``radius`` inf: no cut), then into ``bounds`` ((d, 2)
    or None), then onto the known constraint.

    A constraint that returns a number g (feasible when g <= 0, e.g. cost - budget) is met by projecting
    onto {g <= 0} (Newton steps on a finite-difference gradient), so a step can slide along the boundary;
    one that returns a bool (or a projection that fails) is met by pulling the point back along the segment
    towards ``centre`` (bisection), which stops at the boundary. ``centre`` must be feasible; the result
    always is."""
    centre, p = np.asarray(centre, float), np.asarray(proposal, float)
    scale = np.asarray(scale, float)

    if norm not in ("l2", "box"):
        raise ValueError(f"norm = {norm!r}: must be 'l2' or 'box'")

    def cut(q):
        step = (q - centre) / scale
        if norm == "box":
            q = centre + np.clip(step, -radius, radius) * scale
        elif (length := float(np.linalg.norm(step))) > radius:
            q = centre + step * (radius / length) * scale
        return q if bounds is None else np.clip(q, bounds[:, 0], bounds[:, 1])

    p = cut(p)
    if constraint is not None and not feasible(constraint, p):
        if not isinstance(constraint(p), (bool, np.bool_)):
            p = cut(_onto_inequality(constraint, p, scale))
        if not feasible(constraint, p):
            lo, hi = 0.0, 1.0                           # fraction of the step: lo feasible, hi not
            for _ in range(bisections):
                mid = 0.5 * (lo + hi)
                if feasible(constraint, centre + mid * (p - centre)):
                    lo = mid
                else:
                    hi = mid
            p = centre + lo * (p - centre)
    return p


def check_start(x0, bounds, constraint, error=ValueError):
    """The validated start point and bounds of a continuous optimiser (shared by L-GSO)."""
    x0 = np.asarray(x0, dtype=float)
    if x0.ndim != 1 or len(x0) == 0 or not np.all(np.isfinite(x0)):
        raise error(f"x0: expected a finite 1-D start point, got {x0!r}")
    b = None
    if bounds is not None:
        b = np.asarray(bounds, dtype=float)
        if b.shape != (len(x0), 2) or not np.all(np.isfinite(b)) or np.any(b[:, 0] >= b[:, 1]):
            raise error(f"bounds: expected ({len(x0)}, 2) finite rows with low < high, got {bounds!r}")
        if np.any(x0 < b[:, 0]) or np.any(x0 > b[:, 1]):
            raise error(f"x0 = {x0.tolist()} lies outside the bounds {b.tolist()}")
    if not feasible(constraint, x0):
        raise error(f"x0 = {x0.tolist()} violates the known constraint: start from a feasible point")
    return x0, b


def scale_vector(name, v, d, error=ValueError) -> np.ndarray:
    a = np.full(d, float(v)) if np.ndim(v) == 0 else np.asarray(v, dtype=float)
    if a.shape != (d,) or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise error(f"{name} = {v!r}: expected a number > 0 or {d} numbers > 0")
    return a


def opt_state_leaves(state) -> list:
    return [np.asarray(a).tolist() for a in jax.tree.leaves(state)]


def restore_opt_state(tx, like, leaves, error=ValueError):
    ref, tree = jax.tree.flatten(tx.init(like))
    if len(ref) != len(leaves):
        raise error("state: the optimiser state does not match the optax transformation passed")
    return jax.tree.unflatten(tree, [jnp.asarray(np.asarray(v), a.dtype) for v, a in zip(leaves, ref)])


class GradientDescent:
    """Ask/tell gradient descent with any optax transformation (see the module docstring)."""

    def __init__(self, x0, *, optimizer: optax.GradientTransformation | None = None, bounds=None, scale=1.0,
                 max_step: float = math.inf, constraint: Callable | None = None, tolerance: float = 0.0,
                 patience: int = 3):
        x0, self.bounds = check_start(x0, bounds, constraint, GradientError)
        self.d = len(x0)
        self.scale = scale_vector("scale", scale, self.d, GradientError)
        if not (isinstance(max_step, (int, float)) and max_step > 0):
            raise GradientError(f"max_step = {max_step!r}: must be a number > 0 (inf: no limit)")
        if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
            raise GradientError(f"tolerance = {tolerance!r}: must be a finite number >= 0")
        if not isinstance(patience, int) or patience < 1:
            raise GradientError(f"patience = {patience!r}: must be an integer >= 1")
        self.tx = optax.adam(0.05) if optimizer is None else optimizer
        self.max_step, self.constraint, self.tolerance, self.patience = float(max_step), constraint, float(tolerance), patience
        self.point = x0
        self.history: list[dict] = []
        self._opt_state = self.tx.init(jnp.asarray(x0, jnp.float32))

    def ask(self) -> np.ndarray:
        return self.point.copy()

    def tell(self, psi, value, grad) -> dict:
        psi = np.asarray(psi, dtype=float)
        grad = np.asarray(grad, dtype=float)
        if psi.shape != (self.d,) or not np.allclose(psi, self.point):
            raise GradientError(f"psi = {psi.tolist()}: tell the point asked, {self.point.tolist()}")
        if grad.shape != (self.d,) or not np.all(np.isfinite(grad)):
            raise GradientError(f"grad: expected {self.d} finite numbers, got {grad!r}")
        if not (isinstance(value, (int, float, np.floating)) and math.isfinite(value)):
            raise GradientError(f"value = {value!r}: must be a finite number")
        upd, self._opt_state = self.tx.update(jnp.asarray(grad, jnp.float32), self._opt_state,
                                              jnp.asarray(self.point, jnp.float32))
        new = project_step(self.point, self.point + np.asarray(upd, dtype=float), self.max_step, self.scale,
                           self.bounds, self.constraint)
        rec = dict(iteration=len(self.history), point=self.point.tolist(), value=float(value),
                   grad_norm=float(np.linalg.norm(grad)), step=float(np.linalg.norm((new - self.point) / self.scale)))
        self.history.append(rec)
        self.point = new
        return rec

    @property
    def converged(self) -> bool:
        h = self.history[-self.patience:]
        return len(h) == self.patience and all(r["step"] <= self.tolerance for r in h)

    @property
    def best(self) -> tuple[np.ndarray, float] | None:
        if not self.history:
            return None
        r = min(self.history, key=lambda r: r["value"])
        return np.asarray(r["point"]), r["value"]

    def to_dict(self) -> dict:
        return dict(kind="gradient", point=self.point.tolist(), history=self.history, scale=self.scale.tolist(),
                    bounds=None if self.bounds is None else self.bounds.tolist(), max_step=self.max_step,
                    tolerance=self.tolerance, patience=self.patience, opt_state=opt_state_leaves(self._opt_state))

    @classmethod
    def from_dict(cls, state: dict, *, optimizer=None, constraint=None) -> GradientDescent:
        if not isinstance(state, dict) or state.get("kind") != "gradient":
            raise GradientError("state: not a GradientDescent state (expected a dict from GradientDescent.to_dict())")
        self = cls(state["point"], optimizer=optimizer, bounds=state["bounds"], scale=state["scale"],
                   max_step=state["max_step"], tolerance=state["tolerance"], patience=state["patience"])
        self.constraint, self.history = constraint, list(state["history"])
        self._opt_state = restore_opt_state(self.tx, jnp.asarray(self.point, jnp.float32), state["opt_state"], GradientError)
        return self
