r"""Standard test problems for optimisers, each with its search space and known optimum (minimisation).

- ``branin``: 2-D, x1 in [-5, 10], x2 in [0, 15]; minimum 0.397887 at three points.
- ``hartmann6``: 6-D unit cube; minimum -3.32237 at (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573).
- ``rosenbrock``: d-D (default 4) in [-2, 2]^d; minimum 0 at (1, ..., 1).
- ``three_hump_camel``: 2-D in [-5, 5]^2; minimum 0 at the origin.
- ``mixed``: two reals in [0, 1], an integer in [0, 10] and a categorical in {"a", "b", "c"}:
  f = (x1 - 0.3)^2 + (x2 - 0.7)^2 + 0.05 (n - 6)^2 + offset[c] with offsets a 0.5, b 0, c 0.25;
  minimum 0 at (0.3, 0.7, 6, "b").
- ``constrained_branin``: Branin subject to the known constraint (x1 - 2.5)^2 + (x2 - 10)^2 <= 30
  (a disc, 41 % of the box, that excludes all three global minima); the constrained minimum lies on
  the boundary: 0.934845 at (-2.82319, 11.28982) (found by a 2e5-point scan of the circle refined by
  Nelder-Mead; a 1500 x 1500 grid of the interior finds nothing lower).

:func:`get` returns a :class:`Problem`; ``noise`` adds Gaussian observation noise of that standard
deviation (the regret is always computed on the noise-free function).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from surrogates.space import Categorical, Integer, Real, Space

__all__ = ["Problem", "get", "PROBLEMS", "branin", "hartmann6", "rosenbrock", "three_hump_camel", "mixed"]


def branin(x1, x2):
    b, c, r, s, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 6.0, 10.0, 1 / (8 * math.pi)
    return (x2 - b * x1 ** 2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


_H_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8],
                 [17, 8, 0.05, 10, 0.1, 14]])
_H_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                        [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(x):
    x = np.asarray(x, dtype=float)
    return float(-(_H_ALPHA * np.exp(-(_H_A * (x[None, :] - _H_P) ** 2).sum(axis=1))).sum())


def rosenbrock(x):
    x = np.asarray(x, dtype=float)
    return float((100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum())


def three_hump_camel(x1, x2):
    return 2 * x1 ** 2 - 1.05 * x1 ** 4 + x1 ** 6 / 6 + x1 * x2 + x2 ** 2


_OFFSETS = {"a": 0.5, "b": 0.0, "c": 0.25}


def mixed(x1, x2, n, c):
    return (x1 - 0.3) ** 2 + (x2 - 0.7) ** 2 + 0.05 * (n - 6) ** 2 + _OFFSETS[c]


@dataclasses.dataclass(frozen=True)
class Problem:
    """A test problem: ``space``, noise-free ``function(design) -> float``, known ``optimum`` value and
    ``optimum_design``, and the observation ``noise`` (standard deviation)."""

    name: str
    space: Space
    function: Callable[[dict], float]
    optimum: float
    optimum_design: dict
    noise: float = 0.0

    def __call__(self, design: dict, rng: np.random.Generator | None = None) -> float:
        """An observation: f(design) plus noise (``rng`` needed when noise > 0)."""
        y = self.function(design)
        if self.noise > 0:
            if rng is None:
                raise ValueError(f"problem {self.name!r} has noise {self.noise}: pass an rng")
            y += self.noise * rng.normal()
        return float(y)

    def regret(self, design: dict) -> float:
        """Simple regret of a design: f(design) - optimum (noise-free)."""
        return float(self.function(design) - self.optimum)


def _branin():
    space = Space([Real("x1", -5.0, 10.0), Real("x2", 0.0, 15.0)])
    return dict(space=space, function=lambda d: branin(d["x1"], d["x2"]), optimum=0.397887,
                optimum_design={"x1": math.pi, "x2": 2.275})


def _hartmann6():
    space = Space([Real(f"x{i}", 0.0, 1.0) for i in range(6)])
    opt = [0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573]
    return dict(space=space, function=lambda d: hartmann6([d[f"x{i}"] for i in range(6)]), optimum=-3.32237,
                optimum_design={f"x{i}": v for i, v in enumerate(opt)})


def _rosenbrock(dim=4):
    space = Space([Real(f"x{i}", -2.0, 2.0) for i in range(dim)])
    return dict(space=space, function=lambda d: rosenbrock([d[f"x{i}"] for i in range(dim)]), optimum=0.0,
                optimum_design={f"x{i}": 1.0 for i in range(dim)})


def _camel():
    space = Space([Real("x1", -5.0, 5.0), Real("x2", -5.0, 5.0)])
    return dict(space=space, function=lambda d: three_hump_camel(d["x1"], d["x2"]), optimum=0.0,
                optimum_design={"x1": 0.0, "x2": 0.0})


def _mixed():
    space = Space([Real("x1", 0.0, 1.0), Real("x2", 0.0, 1.0), Integer("n", 0, 10), Categorical("c", ("a", "b", "c"))])
    return dict(space=space, function=lambda d: mixed(d["x1"], d["x2"], d["n"], d["c"]), optimum=0.0,
                optimum_design={"x1": 0.3, "x2": 0.7, "n": 6, "c": "b"})


def disc_constraint(d) -> bool:
    """The known constraint of ``constrained_branin``."""
    return (d["x1"] - 2.5) ** 2 + (d["x2"] - 10.0) ** 2 <= 30.0


def _constrained():
    space = Space([Real("x1", -5.0, 10.0), Real("x2", 0.0, 15.0)], constraint=disc_constraint)
    return dict(space=space, function=lambda d: branin(d["x1"], d["x2"]), optimum=0.9348449,
                optimum_design={"x1": -2.8231920, "x2": 11.2898165})


PROBLEMS = {"branin": _branin, "hartmann6": _hartmann6, "rosenbrock": _rosenbrock,
            "three_hump_camel": _camel, "mixed": _mixed, "constrained_branin": _constrained}


def get(name: str, *, noise: float = 0.0) -> Problem:
    """The test problem ``name`` (see :data:`PROBLEMS`) with observation noise ``noise``."""
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; available: {', '.join(PROBLEMS)}")
    if not (isinstance(noise, (int, float)) and noise >= 0):
        raise ValueError(f"noise = {noise!r}: must be a number >= 0")
    return Problem(name=name, noise=float(noise), **PROBLEMS[name]())
