r"""Ask/tell optimisers: :class:`BayesianOptimizer` (GP + log noisy EI, log EI or UCB) and
:class:`RandomSearch`, over a :class:`~surrogates.space.Space` with a known constraint.

Protocol::

    opt = BayesianOptimizer(space, seed=0)
    designs = opt.ask(4)                    # 4 distinct feasible designs (dicts)
    opt.tell(designs, [f(d) for d in designs])      # None / NaN for a failed evaluation
    opt.best                                # (design, value) of the best observed evaluation
    opt.recommend()                         # the design the GP believes best, with its posterior mean and sd

Initial design. The first ``n_initial`` proposals (default 2 (number of parameters + 1)) are a
scrambled Sobol sample (feasible by rejection); afterwards the GP takes over.

Acquisition optimisation over mixed spaces: a pool of feasible candidates (a Sobol sample of the space
plus local perturbations of the best designs: Gaussian steps on reals, +-1 on integers, another choice
on categoricals), ranked by the acquisition (NEI: with a quarter of its samples, the best 64 rescored
with all); the best ``n_refine`` (10) are refined together by one
L-BFGS-B run over their real coordinates (discrete coordinates held fixed) with analytic gradients of
the acquisition (:meth:`GP.predict_grad`). A refined point outside the known constraint is pulled back
along its path to the last feasible point (bisection), so optima on the constraint boundary are reached.

Batches and pending designs. Designs asked but not yet told are *pending*. Every ask accounts for them:
NEI joins them to its baseline with sampled values (below); "log_ei" and "ucb" condition the GP on them
at their posterior mean (kriging believer, hyperparameters held fixed). Either way their neighbourhood
loses its predicted improvement, so parallel workers get distinct, spread designs. A batch of q is
built the same way, one design at a time. Every BLAS call of an ask runs on one thread (threadpoolctl):
the matrices are tens of rows, and OpenBLAS's threads only cost, badly so beside busy workers.

Acquisitions. ``"nei"`` (default): log noisy expected improvement
(:class:`~surrogates.acquisition.LogNEI`), Monte Carlo over the joint posterior of the evaluated and pending
designs, so the incumbent's own uncertainty is integrated, and batches are built one design at a time
with the pending ones *sampled* jointly (not believed); without noise it reduces to EI on the best
observation. ``"log_ei"``: analytic log EI with the lowest posterior mean at an evaluated design as the
incumbent, batches by kriging believer. ``"ucb"``: lower confidence bound, kriging believer.

Noise. ``noise="learned"`` (default): the GP learns one noise variance. ``noise="known"``: every
successful evaluation is told with its noise variance (``tell(..., noise=...)``, the objective's own
error estimate squared, or a variance from replicates) and the GP uses those instead. Replicates (the
same design told more than once, e.g. a re-evaluation with a fresh seed) are aggregated exactly by the
GP (:mod:`surrogates.gp`), never treated as distinct points.

Failures. A failed evaluation (``None`` or non-finite value) is recorded and enters the GP at the worst
value observed so far (with known noise: at the median known variance), so the optimiser steers away
from its neighbourhood without believing a number that was never measured.

Recommendation. :meth:`recommend` returns the design the model believes best: the lowest posterior
mean among the evaluated designs (``over="evaluated"``, default: a design that was measured, with its
replicates pooled) or over the whole space (``over="space"``: the posterior mean minimised like an
acquisition, possibly a design never evaluated), with the posterior mean and standard deviation of its
latent value. Under noise this is what to report, not :attr:`best` (the luckiest observation, biased low
by the winner's curse).

State. :meth:`to_dict` is plain JSON; :meth:`from_dict` restores an optimiser that gives the identical
next proposal (every ask draws from a generator seeded by (seed, number of asks so far)).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.optimize import minimize

from surrogates.acquisition import ACQUISITIONS, LogNEI, lcb, log_ei, log_ei_grad
from surrogates.gp import GP
from surrogates.space import Categorical, Integer, Real, Space, SpaceError

__all__ = ["BayesianOptimizer", "RandomSearch", "NOISE_MODES"]

#: How the GP treats observation noise.
NOISE_MODES = ("learned", "known")


def _single_threaded_blas():
    """BLAS limited to one thread: the GP's matrices are tens of rows, where threads only cost (under
    load, e.g. beside simulation workers, an ask took 4x longer with OpenBLAS's default threads)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def _jsonable(design: dict) -> dict:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in design.items()}


class _AskTell:
    """Bookkeeping shared by every optimiser: observations, failures, pending designs, state."""

    kind = "base"

    def __init__(self, space: Space, *, seed: int = 0, minimize: bool = True):
        if not isinstance(space, Space):
            raise TypeError(f"space must be a surrogates.space.Space, got {type(space).__name__}")
        self.space = space
        self.seed = int(seed)
        self.minimize = bool(minimize)
        self.designs: list[dict] = []
        self.values: list[float | None] = []
        self.noises: list[float | None] = []
        self.pending: list[dict] = []
        self.n_asks = 0
        self.noise = "learned"

    # -- telling ------------------------------------------------------------------------------------------
    def tell(self, designs, values, noise=None) -> None:
        """Record evaluations. ``designs`` a dict or a list of dicts, ``values`` the matching number(s);
        ``None`` or a non-finite number marks a failed evaluation. ``noise``: the noise variance of each
        value (a number or a list; needed by ``noise="known"``, recorded otherwise). A design told again
        is a replicate.

        Raises:
            SpaceError: a design with unknown or missing names or out-of-range values.
            ValueError: different numbers of designs and values (or noises), a negative or non-finite
                noise variance, or a successful value without its noise under ``noise="known"``.
        """
        if isinstance(designs, dict):
            designs, values = [designs], [values]
            noise = None if noise is None else [noise]
        designs, values = list(designs), list(values)
        if len(designs) != len(values):
            raise ValueError(f"tell: {len(designs)} designs but {len(values)} values")
        if noise is None:
            noise = [None] * len(values)
        elif np.ndim(noise) == 0:
            noise = [noise] * len(values)
        noise = list(noise)
        if len(noise) != len(values):
            raise ValueError(f"tell: {len(values)} values but {len(noise)} noise variances")
        for v, s in zip(values, noise):
            if s is not None and not (math.isfinite(float(s)) and float(s) >= 0):
                raise ValueError(f"tell: noise = {s!r}; a noise variance must be a finite number >= 0")
            ok = v is not None and math.isfinite(float(v))
            if ok and s is None and self.noise == "known":
                raise ValueError(f"tell: value {v!r} has no noise variance; this optimiser has noise = 'known' "
                                 "(pass noise=[variance, ...])")
        for d in designs:
            self.space.validate(d)
        for d, v, s in zip(designs, values, noise):
            v = None if v is None or not math.isfinite(float(v)) else float(v)
            self.designs.append(_jsonable(d))
            self.values.append(v)
            self.noises.append(None if s is None else float(s))
            key = self._key(d)
            for i, p in enumerate(self.pending):
                if self._key(p) == key:
                    del self.pending[i]
                    break

    def record_ask(self, designs) -> None:
        """Replay an earlier ask that returned ``designs`` (resuming from a record of the proposals): the
        designs become pending and the ask counter advances exactly as :meth:`ask` did. Telling the
        same results in the same order afterwards restores the state of the uninterrupted run, so its
        next proposals are identical.

        Raises:
            SpaceError: a design with unknown or missing names or out-of-range values.
        """
        designs = [designs] if isinstance(designs, dict) else list(designs)
        for d in designs:
            self.space.validate(d)
        self.pending += [_jsonable(d) for d in designs]
        self.n_asks += 1

    def _key(self, d: dict):
        return tuple(np.round(self.space.encode(d), 12))

    @property
    def best(self):
        """(design, value) of the best successful evaluation, or (None, None)."""
        ok = [(d, v) for d, v in zip(self.designs, self.values) if v is not None]
        if not ok:
            return None, None
        return (min if self.minimize else max)(ok, key=lambda t: t[1])

    @property
    def n_failed(self) -> int:
        return sum(v is None for v in self.values)

    # -- state -----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dict(kind=self.kind, space=self.space.to_dict(), seed=self.seed, minimize=self.minimize,
                    designs=self.designs, values=self.values, noises=self.noises,
                    pending=[_jsonable(p) for p in self.pending], n_asks=self.n_asks, options=self._options())

    def _options(self) -> dict:
        return {}

    @classmethod
    def from_dict(cls, state: dict, space: Space | None = None) -> "_AskTell":
        """Restore from :meth:`to_dict`. Pass ``space`` to re-attach the known constraint (a callable is
        not serialised); its parameters must match the stored ones."""
        stored = Space.from_dict(state["space"])
        if space is None:
            space = stored
        elif space.to_dict() != stored.to_dict():
            raise SpaceError("from_dict: the given space's parameters differ from the stored state's")
        opt = cls(space, seed=state["seed"], minimize=state["minimize"], **state.get("options", {}))
        opt.designs = [dict(d) for d in state["designs"]]
        opt.values = list(state["values"])
        opt.noises = list(state.get("noises", [None] * len(opt.values)))       # states before the noise field
        opt.pending = [dict(p) for p in state["pending"]]
        opt.n_asks = int(state["n_asks"])
        return opt

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.n_asks])

    def _start_ask(self, n):
        """Check ``n``; return this ask's generator and the keys of the evaluated and pending designs."""
        if not (isinstance(n, (int, np.integer)) and n >= 1):
            raise ValueError(f"ask: n = {n!r}; must be an integer >= 1")
        rng = self._rng()
        self.n_asks += 1
        return rng, {self._key(d) for d in self.designs + self.pending}

    def _distinct(self, candidates: list[dict], n: int, taken: set) -> list[dict]:
        out = []
        for d in candidates:
            k = self._key(d)
            if k not in taken:
                taken.add(k)
                out.append(d)
            if len(out) == n:
                break
        return out


    # -- the model's view -------------------------------------------------------------------------------------
    def _training_data(self):
        """Encoded designs, values as minimised (failures at the worst value) and the known noise
        variances (``None`` with learned noise)."""
        x = self.space.encode(self.designs) if self.designs else np.zeros((0, self.space.dim))
        y = np.array([np.nan if v is None else v for v in self.values], dtype=float)
        if not self.minimize:
            y = -y
        ok = np.isfinite(y)
        if (~ok).any():
            y = np.where(ok, y, np.max(y[ok]))       # failures at the worst value seen
        noise = None
        if self.noise == "known":
            known = np.array([np.nan if s is None else s for s in self.noises], dtype=float)
            fill = float(np.median(known[ok])) if ok.any() else 1.0
            noise = np.where(ok & np.isfinite(known), known, fill)
        return x, y, noise

    def fit_model(self, seed: int | None = None) -> GP:
        """The GP of every evaluation told so far (minimisation sign: for ``minimize=False`` the model is
        of the negated objective)."""
        if not any(v is not None for v in self.values):
            raise ValueError("no successful evaluation yet: nothing to model")
        x, y, noise = self._training_data()
        return GP(x, y, noise=noise, restarts=getattr(self, "restarts", 2),
                  seed=self.seed if seed is None else seed)

    def recommend(self, over: str = "evaluated") -> dict:
        """The design the GP believes best (module docstring) as a dict: ``design``, ``mean`` and ``sd``
        (posterior mean and standard deviation of its latent objective, in the objective's units and
        sign), ``evaluations`` (how often it was evaluated, 0 for a design of the space never evaluated),
        ``observed`` (the mean of its successful observations, or None) and ``over``.

        Args:
            over: "evaluated" (the lowest posterior mean among successfully evaluated designs) or "space"
                (the posterior mean optimised over the feasible space).
        """
        if over not in ("evaluated", "space"):
            raise ValueError(f"recommend: over = {over!r}; allowed: evaluated, space")
        with _single_threaded_blas():
            return self._recommend(over)

    def _recommend(self, over: str) -> dict:
        if over == "evaluated":
            return self._ranked(1)[0]
        gp = self.fit_model()
        ranked = self._ranked(5, gp)
        rng = np.random.default_rng([self.seed, self.n_asks, 7])
        found = self._maximise(_PosteriorMean(gp), rng, set(), top=[r["design"] for r in ranked])
        best = self._ranked(1, gp, extra=[found])[0]
        return dict(best, over=over)

    def top(self, k: int) -> list[dict]:
        """The ``k`` successfully evaluated designs with the best posterior means (replicates pooled), best
        first, each as :meth:`recommend` gives it (for re-evaluating the top designs with fresh seeds)."""
        if not (isinstance(k, (int, np.integer)) and k >= 1):
            raise ValueError(f"top: k = {k!r}; must be an integer >= 1")
        with _single_threaded_blas():
            return self._ranked(int(k))

    def _ranked(self, k: int, gp: GP | None = None, extra: list[dict] = ()) -> list[dict]:
        gp = gp or self.fit_model()
        ok: dict = {}
        for d, v in zip(self.designs, self.values):
            if v is not None:
                ok.setdefault(self._key(d), (d, []))[1].append(v)
        cands = [d for d, _ in ok.values()] + list(extra)
        mu, sd = gp.predict(self.space.encode(cands))
        sign = 1.0 if self.minimize else -1.0
        out = []
        for i in np.argsort(mu, kind="stable")[:k]:
            obs = ok.get(self._key(cands[i]), (None, []))[1]
            out.append(dict(design=dict(cands[i]), mean=sign * float(mu[i]), sd=float(sd[i]), evaluations=len(obs),
                            observed=float(np.mean(obs)) if obs else None, over="evaluated"))
        return out

    # -- acquisition maximisation (shared by the model-based optimisers and recommend) ------------------------
    def _local(self, rng, designs: list[dict], n_each: int) -> list[dict]:
        out = []
        for d in designs:
            for _ in range(n_each):
                e = dict(d)
                scale = rng.choice([0.02, 0.08, 0.2])
                for p in self.space.parameters:
                    if isinstance(p, Real):
                        u = p.encode(d[p.name])[0] + scale * rng.normal()
                        e[p.name] = p.decode([u])
                    elif isinstance(p, Integer) and rng.random() < 0.3:
                        e[p.name] = int(np.clip(d[p.name] + rng.choice([-1, 1]), p.low, p.high))
                    elif isinstance(p, Categorical) and rng.random() < 0.2:
                        e[p.name] = p.choices[int(rng.integers(len(p.choices)))]
                if self.space.feasible(e):
                    out.append(e)
        return out

    def _refine(self, acq, starts: np.ndarray) -> np.ndarray:
        """Multi-start L-BFGS-B on the real coordinates, all starts at once: the sum of their acquisitions
        is maximised (its gradient is separable, so each start follows its own ascent)."""
        cont = self.space.continuous_mask
        k, m = len(starts), int(cont.sum())

        def f(u):
            x = starts.copy()
            x[:, cont] = u.reshape(k, m)
            v, g = acq.value_and_grad(x)
            return -float(v.sum()), -g[:, cont].ravel()

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = minimize(f, starts[:, cont].ravel(), jac=True, method="L-BFGS-B",
                           bounds=[(0.0, 1.0)] * (k * m), options=dict(maxiter=200))
        out = starts.copy()
        out[:, cont] = np.clip(res.x.reshape(k, m), 0.0, 1.0)
        return out

    def _feasible_towards(self, x0: np.ndarray, x1: np.ndarray) -> dict | None:
        """The design at x1 if feasible, else the feasible point closest to x1 on the segment from the
        feasible x0 (bisection): gradient steps that cross the known constraint stop at its boundary."""
        d1 = self.space.decode(x1)[0]
        if self.space.feasible(d1):
            return d1
        lo, hi = 0.0, 1.0
        for _ in range(30):
            mid = 0.5 * (lo + hi)
            if self.space.feasible(self.space.decode(x0 + mid * (x1 - x0))[0]):
                lo = mid
            else:
                hi = mid
        return self.space.decode(x0 + lo * (x1 - x0))[0] if lo > 0 else None

    def _maximise(self, acq, rng, taken: set, top: list[dict] | None = None, pool: int = 2048,
                  n_refine: int = 10) -> dict:
        """The feasible design maximising ``acq`` (callable on encoded designs, with ``value_and_grad``)
        that is not in ``taken``: a Sobol pool plus local perturbations of ``top`` (default: the five best
        observed designs), the best ``n_refine`` refined by L-BFGS-B on their real coordinates."""
        cands = self.space.sample(pool, rng=rng, method="sobol")
        if top is None:
            ok = [(d, v) for d, v in zip(self.designs, self.values) if v is not None]
            ok.sort(key=lambda t: t[1] if self.minimize else -t[1])
            top = [d for d, _ in ok[:5]]
        cands += self._local(rng, top[:5], 64)
        xs = self.space.encode(cands)
        screen = getattr(acq, "screen", acq)          # a cheaper ranking of the pool where the acquisition has one
        order = np.argsort(-screen(xs))[:64]
        scores = acq(xs[order])
        idx = np.argsort(-scores, kind="stable")
        order, scores = order[idx], scores[idx]
        scored = [(float(v), cands[i]) for v, i in zip(scores, order)]
        cont = self.space.continuous_mask
        if cont.any():
            best = order[:n_refine]
            refined = self._refine(acq, xs[best])
            for i, x in zip(best, refined):
                d = self._feasible_towards(xs[i], x)
                if d is not None:
                    scored.append((float(acq(self.space.encode([d]))[0]), d))
        scored.sort(key=lambda t: -t[0])
        chosen = self._distinct([d for _, d in scored], 1, taken)
        if not chosen:        # everything scored is taken: fall back to a random feasible design
            chosen = self._distinct(self.space.sample(64, rng=rng), 1, taken)
        if not chosen:
            raise SpaceError("ask: no new feasible design left to propose")
        return chosen[0]


class _PosteriorMean:
    """Minus the posterior mean as an acquisition (for ``recommend(over="space")``)."""

    def __init__(self, gp: GP):
        self.gp = gp

    def __call__(self, xs):
        return -self.gp.predict(xs)[0]

    def value_and_grad(self, xs):
        mu, _, dmu, _ = self.gp.predict_grad(xs)
        return -mu, -dmu


class _Analytic:
    """log EI (incumbent ``best``) or the negated lower confidence bound on a GP, as an acquisition."""

    def __init__(self, gp: GP, kind: str, best: float, beta: float):
        self.gp, self.kind, self.best, self.beta = gp, kind, best, beta

    def __call__(self, xs):
        mu, sd = self.gp.predict(xs)
        return lcb(mu, sd, self.beta) if self.kind == "ucb" else log_ei(mu, sd, self.best)

    def value_and_grad(self, xs):
        mu, sd, dmu, dsd = self.gp.predict_grad(xs)
        if self.kind == "ucb":
            return lcb(mu, sd, self.beta), -(dmu - math.sqrt(self.beta) * dsd)
        return log_ei_grad(mu, sd, dmu, dsd, self.best)


class RandomSearch(_AskTell):
    """Uniform random feasible designs with the ask/tell interface."""

    kind = "random"

    def ask(self, n: int = 1) -> list[dict]:
        rng, taken = self._start_ask(n)
        out: list[dict] = []
        for _ in range(100):
            out += self._distinct(self.space.sample(2 * n, rng=rng), n - len(out), taken)
            if len(out) == n:
                break
        else:
            raise SpaceError(f"ask: could not find {n} new distinct feasible designs")
        self.pending += out
        return out


class BayesianOptimizer(_AskTell):
    """GP Bayesian optimisation (module docstring).

    Args:
        space: the search space (with its known constraint).
        seed: all randomness derives from it.
        minimize: minimise (default) or maximise the objective.
        acquisition: "nei" (default), "log_ei" or "ucb".
        noise: "learned" (default) or "known" (every successful evaluation told with its variance).
        n_initial: space-filling designs before the GP is used (default 2 (params + 1)).
        beta: UCB exploration weight.
        pool: size of the candidate pool per proposal.
        restarts: random restarts of the GP hyperparameter fit.
        n_refine: pool candidates refined by gradient ascent per proposal.
        n_samples: quasi-Monte Carlo samples of the baseline for "nei" (a power of 2).
    """

    kind = "gp"

    def __init__(self, space: Space, *, seed: int = 0, minimize: bool = True, acquisition: str = "nei",
                 noise: str = "learned", n_initial: int | None = None, beta: float = 4.0, pool: int = 2048,
                 restarts: int = 2, n_refine: int = 10, n_samples: int = 128):
        super().__init__(space, seed=seed, minimize=minimize)
        if acquisition not in ACQUISITIONS:
            raise ValueError(f"acquisition = {acquisition!r}; allowed: {', '.join(ACQUISITIONS)}")
        if noise not in NOISE_MODES:
            raise ValueError(f"noise = {noise!r}; allowed: {', '.join(NOISE_MODES)}")
        self.acquisition = acquisition
        self.noise = noise
        self.n_initial = int(n_initial) if n_initial is not None else 2 * (len(space.parameters) + 1)
        if self.n_initial < 1:
            raise ValueError(f"n_initial = {n_initial!r}; must be >= 1")
        if not (isinstance(n_samples, (int, np.integer)) and n_samples >= 2 and n_samples & (n_samples - 1) == 0):
            raise ValueError(f"n_samples = {n_samples!r}; must be a power of 2 >= 2")
        self.beta = float(beta)
        self.pool = int(pool)
        self.restarts = int(restarts)
        self.n_refine = int(n_refine)
        self.n_samples = int(n_samples)
        self.last_model: GP | None = None

    def _options(self) -> dict:
        return dict(acquisition=self.acquisition, noise=self.noise, n_initial=self.n_initial, beta=self.beta,
                    pool=self.pool, restarts=self.restarts, n_refine=self.n_refine, n_samples=self.n_samples)

    # -- asking -------------------------------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[dict]:
        """``n`` distinct feasible designs, none equal to an evaluated or pending one."""
        with _single_threaded_blas():
            return self._ask(n)

    def _ask(self, n: int) -> list[dict]:
        rng, taken = self._start_ask(n)
        out: list[dict] = []
        n_seen = len(self.designs) + len(self.pending)
        n_ok = sum(v is not None for v in self.values)
        if n_seen < self.n_initial or n_ok < 2:
            k = min(n, max(self.n_initial - n_seen, 0)) if n_ok >= 2 else n
            # the Sobol sequence of the whole initial design, continued where previous asks stopped
            init = self.space.sample(self.n_initial + n_seen + k, rng=np.random.default_rng([self.seed, 0]),
                                     method="sobol")
            out += self._distinct(init, k, taken)
            if len(out) < k:
                out += self._distinct(self.space.sample(4 * k, rng=rng), k - len(out), taken)
        if len(out) < n:
            out += self._propose(n - len(out), rng, taken, out)
        self.pending += out
        return out

    def _propose(self, n: int, rng, taken: set, already: list) -> list[dict]:
        x, y, noise = self._training_data()
        gp = GP(x, y, noise=noise, restarts=self.restarts, seed=int(rng.integers(2 ** 31)))
        self.last_model = gp
        pending = list(self.pending) + list(already)
        out = []
        if self.acquisition == "nei":
            for _ in range(n):
                xp = self.space.encode(pending) if pending else None
                acq = LogNEI(gp, xp, n_samples=self.n_samples, rng=rng)
                design = self._maximise(acq, rng, taken, pool=self.pool, n_refine=self.n_refine)
                out.append(design)
                pending.append(design)
            return out
        mu_obs, _ = gp.predict(x)
        best = float(np.min(mu_obs))
        for _ in range(n):
            model = gp
            if pending:           # kriging believer: pending designs at their posterior mean
                xb = self.space.encode(pending)
                mb, _ = gp.predict(xb)
                nb = None if noise is None else np.concatenate([noise, np.full(len(xb), np.median(noise))])
                model = gp.with_data(np.vstack([x, xb]), np.concatenate([y, mb]), noise=nb)
            acq = _Analytic(model, self.acquisition, best, self.beta)
            design = self._maximise(acq, rng, taken, pool=self.pool, n_refine=self.n_refine)
            out.append(design)
            pending.append(design)
        return out
