r"""Search spaces: named real, integer and categorical parameters, their unit-cube encoding, space-filling
samples and a known constraint.

Encoding. A :class:`Real` maps linearly (or in log space with ``log=True``) to [0, 1]; an
:class:`Integer` maps its range [low - 1/2, high + 1/2] to [0, 1], so that every integer owns an equal
interval and rounding the decoded value is unbiased; a :class:`Categorical` with k choices becomes k
one-hot coordinates (decoding takes the largest). The encoded dimension is therefore
``n_real + n_int + sum(k)``.

Constraint. ``Space(..., constraint=f)`` takes a callable ``f(design: dict) -> bool`` (e.g. cost <=
budget, nesting of regions). Every sample drawn from the space satisfies it (rejection sampling, with
a clear error if the feasible fraction is too small to find enough designs).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["Real", "Integer", "Categorical", "Space", "SpaceError"]

SAMPLERS = ("uniform", "lhs", "sobol")


class SpaceError(ValueError):
    """A search space, design or sample request that is not allowed; the message says which and why."""


def _check_name(name):
    if not isinstance(name, str) or not name:
        raise SpaceError(f"parameter name {name!r}: must be a non-empty string")


@dataclasses.dataclass(frozen=True)
class Real:
    """A real parameter in [low, high] (``log=True``: uniform in log, needs low > 0)."""

    name: str
    low: float
    high: float
    log: bool = False

    def __post_init__(self):
        _check_name(self.name)
        for attr in ("low", "high"):
            v = getattr(self, attr)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise SpaceError(f"{self.name}.{attr} = {v!r}: must be a finite number")
        if not self.low < self.high:
            raise SpaceError(f"{self.name}: low = {self.low} must be < high = {self.high}")
        if self.log and self.low <= 0:
            raise SpaceError(f"{self.name}: log = True needs low > 0, got low = {self.low}")

    width = 1

    def encode(self, v) -> list[float]:
        v = float(v)
        if self.log:
            return [(math.log(v) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))]
        return [(v - self.low) / (self.high - self.low)]

    def decode(self, u) -> float:
        u = min(max(float(u[0]), 0.0), 1.0)
        if self.log:
            return float(math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low))))
        return float(self.low + u * (self.high - self.low))

    def check(self, v) -> None:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not (self.low <= v <= self.high):
            raise SpaceError(f"{self.name} = {v!r}: must be a number in [{self.low}, {self.high}]")

    def levels(self, n: int = 5) -> list[float]:
        """``n`` evenly spaced values from low to high (log-spaced for ``log=True``): a grid or a slice."""
        space = np.geomspace if self.log else np.linspace
        return [float(v) for v in space(self.low, self.high, n)]

    def to_dict(self) -> dict:
        return dict(type="real", name=self.name, low=self.low, high=self.high, log=self.log)


@dataclasses.dataclass(frozen=True)
class Integer:
    """An integer parameter in [low, high] (both included)."""

    name: str
    low: int
    high: int

    def __post_init__(self):
        _check_name(self.name)
        for attr in ("low", "high"):
            v = getattr(self, attr)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
                raise SpaceError(f"{self.name}.{attr} = {v!r}: must be an integer")
        if not self.low < self.high:
            raise SpaceError(f"{self.name}: low = {self.low} must be < high = {self.high}")

    width = 1

    def encode(self, v) -> list[float]:
        return [(int(v) - self.low + 0.5) / (self.high - self.low + 1)]

    def decode(self, u) -> int:
        u = min(max(float(u[0]), 0.0), 1.0)
        return int(min(self.high, self.low + math.floor(u * (self.high - self.low + 1))))

    def check(self, v) -> None:
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not (self.low <= v <= self.high):
            raise SpaceError(f"{self.name} = {v!r}: must be an integer in [{self.low}, {self.high}]")

    def levels(self, n: int = 5) -> list[int]:
        """Every integer from low to high (``n`` is ignored)."""
        return list(range(self.low, self.high + 1))

    def to_dict(self) -> dict:
        return dict(type="integer", name=self.name, low=int(self.low), high=int(self.high))


@dataclasses.dataclass(frozen=True)
class Categorical:
    """A categorical parameter: one of ``choices`` (strings, numbers or booleans, distinct)."""

    name: str
    choices: tuple

    def __post_init__(self):
        _check_name(self.name)
        choices = tuple(self.choices) if isinstance(self.choices, (list, tuple)) else self.choices
        if not isinstance(choices, tuple) or len(choices) == 0:
            raise SpaceError(f"{self.name}: choices = {self.choices!r}: must be a non-empty list")
        if len(set(map(repr, choices))) != len(choices):
            raise SpaceError(f"{self.name}: choices {list(choices)} contain duplicates")
        object.__setattr__(self, "choices", choices)

    @property
    def width(self) -> int:
        return len(self.choices)

    def encode(self, v) -> list[float]:
        return [1.0 if v == c and type(v) is type(c) else 0.0 for c in self.choices]

    def decode(self, u) -> Any:
        return self.choices[int(np.argmax(np.asarray(u, dtype=float)))]

    def check(self, v) -> None:
        if not any(v == c and type(v) is type(c) for c in self.choices):
            raise SpaceError(f"{self.name} = {v!r}: must be one of {list(self.choices)}")

    def levels(self, n: int = 5) -> list:
        """Every choice (``n`` is ignored)."""
        return list(self.choices)

    def to_dict(self) -> dict:
        return dict(type="categorical", name=self.name, choices=list(self.choices))


Parameter = Real | Integer | Categorical


class Space:
    """A named search space with an optional known constraint.

    Args:
        parameters: :class:`Real`, :class:`Integer` and :class:`Categorical` parameters (distinct names).
        constraint: ``f(design: dict) -> bool``; designs with False are never proposed.
    """

    def __init__(self, parameters: Sequence[Parameter], constraint: Callable[[dict], bool] | None = None):
        params = tuple(parameters)
        if not params:
            raise SpaceError("a search space needs at least one parameter")
        for p in params:
            if not isinstance(p, (Real, Integer, Categorical)):
                raise SpaceError(f"{p!r}: parameters must be Real, Integer or Categorical")
        names = [p.name for p in params]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise SpaceError(f"duplicate parameter names {dup}")
        self.parameters = params
        self.constraint = constraint
        self.names = tuple(names)
        self.slices = []
        start = 0
        for p in params:
            self.slices.append(slice(start, start + p.width))
            start += p.width
        self.dim = start

    def __repr__(self) -> str:
        return f"Space({list(self.parameters)!r}, constraint={self.constraint!r})"

    @property
    def continuous_mask(self) -> np.ndarray:
        """[dim] True on the coordinates of Real parameters (the ones gradient refinement may move)."""
        mask = np.zeros(self.dim, bool)
        for p, s in zip(self.parameters, self.slices):
            mask[s] = isinstance(p, Real)
        return mask

    # -- designs ---------------------------------------------------------------------------------------
    def validate(self, design: dict) -> dict:
        """Check a design: every name present, no unknown names, values in range."""
        if not isinstance(design, dict):
            raise SpaceError(f"design {design!r}: must be a dict of parameter name -> value")
        unknown = sorted(set(design) - set(self.names))
        if unknown:
            raise SpaceError(f"design has unknown parameter(s) {unknown}; the space has {list(self.names)}")
        missing = [n for n in self.names if n not in design]
        if missing:
            raise SpaceError(f"design misses parameter(s) {missing}")
        for p in self.parameters:
            p.check(design[p.name])
        return design

    def feasible(self, design: dict) -> bool:
        return True if self.constraint is None else bool(self.constraint(design))

    def encode(self, designs) -> np.ndarray:
        """Designs (a dict or a list of dicts) -> [n, dim] unit-cube points (validated)."""
        single = isinstance(designs, dict)
        rows = []
        for d in ([designs] if single else designs):
            self.validate(d)
            rows.append(sum((p.encode(d[p.name]) for p in self.parameters), []))
        x = np.asarray(rows, dtype=float).reshape(-1, self.dim)
        return x[0] if single else x

    def decode(self, x) -> list[dict]:
        """[n, dim] (or [dim]) unit-cube points -> designs (clipped, integers rounded, argmax of one-hots)."""
        x = np.atleast_2d(np.asarray(x, dtype=float))
        if x.shape[1] != self.dim:
            raise SpaceError(f"points have {x.shape[1]} coordinates; the space encodes to {self.dim}")
        return [{p.name: p.decode(row[s]) for p, s in zip(self.parameters, self.slices)} for row in x]

    def round_trip(self, x) -> np.ndarray:
        """Project unit-cube points onto encodings of actual designs (decode, then encode)."""
        return self.encode(self.decode(x))

    # -- sampling ----------------------------------------------------------------------------------------
    def _raw(self, n: int, rng: np.random.Generator, method: str) -> np.ndarray:
        """[n, n_params] values in [0, 1) per parameter (one coordinate per parameter, also categorical)."""
        k = len(self.parameters)
        if method == "uniform":
            return rng.random((n, k))
        from scipy.stats import qmc

        seed = int(rng.integers(2 ** 31))
        if method == "lhs":
            return qmc.LatinHypercube(d=k, seed=seed).random(n)
        m = max(int(math.ceil(math.log2(max(n, 2)))), 1)
        return qmc.Sobol(d=k, scramble=True, seed=seed).random_base2(m)[:n]

    def _from_raw(self, raw: np.ndarray) -> list[dict]:
        out = []
        for row in raw:
            d = {}
            for p, u in zip(self.parameters, row):
                if isinstance(p, Categorical):
                    d[p.name] = p.choices[min(int(u * len(p.choices)), len(p.choices) - 1)]
                else:
                    d[p.name] = p.decode([u])
            out.append(d)
        return out

    def sample(self, n: int, *, rng: np.random.Generator | int | None = None, method: str = "uniform",
               max_tries: int = 200) -> list[dict]:
        """``n`` feasible designs by ``method`` ("uniform", "lhs" or "sobol"; space-filling before the
        constraint, whose rejections thin the pattern).

        Raises:
            SpaceError: unknown method, or fewer than ``n`` feasible designs after ``max_tries`` rounds.
        """
        if method not in SAMPLERS:
            raise SpaceError(f"sampling method {method!r}; allowed: {', '.join(SAMPLERS)}")
        if not (isinstance(n, (int, np.integer)) and n >= 0):
            raise SpaceError(f"n = {n!r}: must be an integer >= 0")
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        out, tried = [], 0
        for attempt in range(max_tries):
            if len(out) >= n:
                break
            # the first round draws exactly n (an intact space-filling pattern when all are feasible)
            size = n if attempt == 0 else max(2 * (n - len(out)), 16)
            batch = self._from_raw(self._raw(size, rng, method))
            tried += len(batch)
            out.extend(d for d in batch if self.feasible(d))
        if len(out) < n:
            raise SpaceError(f"found only {len(out)} of {n} designs satisfying the constraint in {tried} draws; "
                             "the feasible region is too small (or the constraint is always False)")
        return out[:n]

    def grid(self, *, real_levels: int = 5, max_designs: int = 2000) -> list[dict]:
        """Every feasible combination of the parameters' values: all choices of a categorical, every
        integer of an integer range, ``real_levels`` evenly spaced values of a real (log-spaced for
        ``log=True``), in the order of :func:`itertools.product`.

        Raises:
            SpaceError: more than ``100 * max_designs`` combinations to enumerate, or more than
                ``max_designs`` feasible ones (sample instead).
        """
        import itertools

        levels = [p.levels(real_levels) for p in self.parameters]
        n = math.prod(len(v) for v in levels)
        if n > 100 * max_designs:
            raise SpaceError(f"a grid of this space has {n} combinations; sample it instead (Latin hypercube)")
        out = [d for d in (dict(zip(self.names, combo)) for combo in itertools.product(*levels)) if self.feasible(d)]
        if len(out) > max_designs:
            raise SpaceError(f"a grid of this space has {len(out)} feasible designs (more than {max_designs}); "
                             "sample it instead (Latin hypercube)")
        return out

    # -- serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The parameters as plain data (the constraint, a callable, is not serialised)."""
        return dict(parameters=[p.to_dict() for p in self.parameters])

    @classmethod
    def from_dict(cls, d: dict, constraint=None) -> "Space":
        kinds = {"real": Real, "integer": Integer, "categorical": Categorical}
        params = []
        for p in d["parameters"]:
            p = dict(p)
            kind = p.pop("type")
            if kind not in kinds:
                raise SpaceError(f"parameter type {kind!r}; allowed: {', '.join(kinds)}")
            params.append(kinds[kind](**p))
        return cls(params, constraint=constraint)
