r"""Bayesian optimisation quality and speed: surrogates.BayesianOptimizer vs random search, BoTorch and Optuna.

Problems (``surrogates.benchmarks``): Branin, Hartmann-6, the mixed problem (2 reals, an integer, a
3-way categorical) and constrained Branin (a known disc constraint that excludes the global minima),
each noise-free and noisy (Gaussian noise, sd: Branin 0.5, Hartmann-6 0.1, mixed 0.05).
Batch sizes q = 1 and q = 4; 10 seeds; 50 evaluations.

Methods, all given the same budget and the same problems:

- ``gp``: :class:`surrogates.bayesopt.BayesianOptimizer` with its defaults (log noisy EI, learned noise);
- ``random``: :class:`surrogates.bayesopt.RandomSearch`;
- ``botorch``: BoTorch 0.18 as its tutorials recommend: ``SingleTaskGP`` (``MixedSingleTaskGP`` with the
  categorical dimension for the mixed problem) with ``Normalize``/``Standardize`` transforms, fitted by
  ``fit_gpytorch_mll``, ``qLogNoisyExpectedImprovement`` (``prune_baseline``), optimised by
  ``optimize_acqf`` (10 restarts, 512 raw samples; the known constraint as a nonlinear inequality
  constraint with feasible initial conditions; when SLSQP leaves the feasible set from every start,
  which happens at q = 4, the best feasible initial batch is taken and counted in ``acqf_fallbacks``)
  or ``optimize_acqf_mixed_alternating`` for the mixed
  problem; initial design: 2 (d + 1) scrambled Sobol points (feasible ones for the constrained problem);
- ``optuna``: Optuna 5's ``GPSampler`` (its defaults; the known constraint passed as ``constraints_func``,
  which Optuna models; a proposal that violates it is still an evaluation, it just cannot become the
  best); batches by asking q trials before telling them.

Regret of the *recommended* design after n evaluations = f(x_rec) - f_opt, x_rec the design the method
would report if stopped there: for gp :meth:`BayesianOptimizer.recommend` of the first n evaluations
(lowest posterior mean among the evaluated designs), for botorch the evaluated design with the best
posterior mean of its own model fitted the same way to the first n evaluations, for random search and
Optuna (no model; Optuna's ``best_trial``) the best observed design. The issue-16 goal compares the
recommended designs (``goal``).

Simple regret after n evaluations = f(x*) - f_opt for the evaluated design x* with the best *observed*
value among the feasible ones (noise-free f; the same rule for every method; a design outside the known
constraint by less than :data:`CONSTRAINT_TOL` relative, a rounding error of a boundary optimum, counts
as feasible; larger violations are counted in the table's last column). Wall time per iteration = time of the ask
(model fit + acquisition optimisation), the objective itself costs nothing here.

Results of every run are cached as JSON in ``benchmarks/results/bayesopt/`` (a rerun resumes);
``--report`` only prints the table and draws the regret curves (``benchmarks/results/bayesopt_regret.png``).

    .venv/bin/pip install torch==2.13.0 botorch optuna          # benchmark-only dependencies
    .venv/bin/python benchmarks/bench_bayesopt.py [--quick] [--methods gp,random,botorch,optuna]
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from surrogates import benchmarks as B  # noqa: E402
from surrogates.bayesopt import BayesianOptimizer, RandomSearch  # noqa: E402
from surrogates.space import Categorical, Integer, Real  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "bayesopt"
PROBLEMS = ("branin", "hartmann6", "mixed", "constrained_branin")
NOISE = dict(branin=0.5, hartmann6=0.1, mixed=0.05, constrained_branin=0.5)
METHODS = ("gp", "random", "botorch", "optuna")
CHECKPOINTS = (10, 20, 30, 50)


# ---- runners: each returns (designs in evaluation order, observed values, ask seconds per iteration) -----
def run_ours(cls, prob, seed, q, n):
    opt = cls(prob.space, seed=seed)
    rng = np.random.default_rng(10_000 + seed)
    times, ds_all, ys_all = [], [], []
    while len(ds_all) < n:
        t0 = time.perf_counter()
        ds = opt.ask(min(q, n - len(ds_all)))
        times.append(time.perf_counter() - t0)
        ys = [prob(d, rng) for d in ds]
        opt.tell(ds, ys)
        ds_all += ds
        ys_all += ys
    return ds_all, ys_all, times


def _torch_encoding(space):
    """Raw-value encoding for BoTorch: reals and integers as themselves, categoricals as indices."""
    lows, highs, cat_dims, int_dims = [], [], {}, {}
    for i, p in enumerate(space.parameters):
        if isinstance(p, Real):
            lows.append(p.low)
            highs.append(p.high)
        elif isinstance(p, Integer):
            lows.append(p.low)
            highs.append(p.high)
            int_dims[i] = list(range(p.low, p.high + 1))
        else:
            lows.append(0)
            highs.append(len(p.choices) - 1)
            cat_dims[i] = list(range(len(p.choices)))

    def decode(row):
        d = {}
        for v, p in zip(row, space.parameters):
            v = float(v)
            if isinstance(p, Real):
                d[p.name] = min(max(v, p.low), p.high)
            elif isinstance(p, Integer):
                d[p.name] = int(round(v))
            else:
                d[p.name] = p.choices[int(round(v))]
        return d

    def encode(d):
        return [float(d[p.name]) if not isinstance(p, Categorical) else float(p.choices.index(d[p.name]))
                for p in space.parameters]

    return np.array([lows, highs], dtype=float), cat_dims, int_dims, decode, encode


def _botorch_model(X, Y, cat_dims, d):
    """BoTorch's recommended GP for these data (the categorical dimensions with ``MixedSingleTaskGP``),
    fitted by ``fit_gpytorch_mll``."""
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import MixedSingleTaskGP, SingleTaskGP
    from botorch.models.transforms import Normalize, Standardize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    if cat_dims:
        model = MixedSingleTaskGP(X, Y, cat_dims=list(cat_dims), input_transform=Normalize(d),
                                  outcome_transform=Standardize(1))
    else:
        model = SingleTaskGP(X, Y, input_transform=Normalize(d), outcome_transform=Standardize(1))
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    return model


def run_botorch(prob, seed, q, n):
    import torch
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.exceptions.errors import CandidateGenerationError
    from botorch.optim import optimize_acqf, optimize_acqf_mixed_alternating

    torch.manual_seed(seed)
    bounds_np, cat_dims, int_dims, decode, encode = _torch_encoding(prob.space)
    bounds = torch.tensor(bounds_np, dtype=torch.double)
    d = bounds.shape[1]
    rng = np.random.default_rng(10_000 + seed)
    n_init = 2 * (len(prob.space.parameters) + 1)
    init = prob.space.sample(n_init, rng=np.random.default_rng(seed), method="sobol")
    ds_all = list(init[:n])
    ys_all = [prob(x, rng) for x in ds_all]
    times = []
    fallbacks = run_botorch.fallbacks = [0]
    constrained = prob.space.constraint is not None
    while len(ds_all) < n:
        t0 = time.perf_counter()
        X = torch.tensor([encode(x) for x in ds_all], dtype=torch.double)
        Y = -torch.tensor(ys_all, dtype=torch.double).unsqueeze(-1)
        model = _botorch_model(X, Y, cat_dims, d)
        acq = qLogNoisyExpectedImprovement(model, X_baseline=X, prune_baseline=True)
        k = min(q, n - len(ds_all))
        if cat_dims or int_dims:
            cand, _ = optimize_acqf_mixed_alternating(acq, bounds, discrete_dims=int_dims, cat_dims=cat_dims, q=k,
                                                      num_restarts=10, raw_samples=512)
        elif constrained:
            def con(x):      # >= 0 when feasible (BoTorch's convention)
                return 30.0 - (x[..., 0] - 2.5) ** 2 - (x[..., 1] - 10.0) ** 2

            pool = prob.space.sample(512, rng=np.random.default_rng([seed, len(ds_all)]))
            P = torch.tensor([encode(x) for x in pool], dtype=torch.double).unsqueeze(1)
            with torch.no_grad():
                a = acq(P)
            ics = P[a.argsort(descending=True)[:10]]
            if k > 1:
                ics = torch.cat([P[torch.randperm(len(P))[:10 * k]].reshape(10, k, d)], 0)
            try:
                cand, _ = optimize_acqf(acq, bounds, q=k, num_restarts=10, batch_initial_conditions=ics,
                                        nonlinear_inequality_constraints=[(con, True)])
            except CandidateGenerationError:
                # SLSQP left the feasible set from every start (seen at q = 4): fall back to the best
                # of the feasible initial conditions, so that BoTorch still proposes a feasible batch
                with torch.no_grad():
                    cand = ics[acq(ics).argmax()]
                fallbacks[0] += 1
        else:
            cand, _ = optimize_acqf(acq, bounds, q=k, num_restarts=10, raw_samples=512)
        times.append(time.perf_counter() - t0)
        new = [decode(row) for row in cand.detach().numpy()]
        ds_all += new
        ys_all += [prob(x, rng) for x in new]
    return ds_all, ys_all, times


def run_optuna(prob, seed, q, n):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = prob.space
    cons = None
    if space.constraint is not None:
        cons = lambda trial: [-(30.0 - (trial.params["x1"] - 2.5) ** 2 - (trial.params["x2"] - 10.0) ** 2)]
    sampler = optuna.samplers.GPSampler(seed=seed, constraints_func=cons)
    study = optuna.create_study(sampler=sampler, direction="minimize")
    rng = np.random.default_rng(10_000 + seed)
    ds_all, ys_all, times = [], [], []
    while len(ds_all) < n:
        k = min(q, n - len(ds_all))
        t0 = time.perf_counter()
        trials, ds = [], []
        for _ in range(k):
            t = study.ask()
            d = {}
            for p in space.parameters:
                if isinstance(p, Real):
                    d[p.name] = t.suggest_float(p.name, p.low, p.high, log=p.log)
                elif isinstance(p, Integer):
                    d[p.name] = t.suggest_int(p.name, p.low, p.high)
                else:
                    d[p.name] = t.suggest_categorical(p.name, list(p.choices))
            trials.append(t)
            ds.append(d)
        times.append(time.perf_counter() - t0)
        for t, d in zip(trials, ds):
            y = prob(d, rng)
            if cons is not None:
                t.set_user_attr("constraint", cons(t))
            study.tell(t, y)
            ds_all.append(d)
            ys_all.append(y if feasible(prob, d) else math.inf)
    return ds_all, ys_all, times


def _plain(d):
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in d.items()}


#: Relative tolerance on the known constraint: gradient-based acquisition optimisers (BoTorch's SLSQP)
#: end on the boundary, a rounding error outside; such a design counts as feasible for every method.
CONSTRAINT_TOL = 1e-6


def feasible(prob, d) -> bool:
    if prob.space.feasible(d):
        return True
    if prob.name == "constrained_branin":
        return (d["x1"] - 2.5) ** 2 + (d["x2"] - 10.0) ** 2 <= 30.0 * (1 + CONSTRAINT_TOL)
    return False


def regret_curve(prob, ds, ys):
    best, out = math.inf, []
    best_regret = math.inf
    for d, y in zip(ds, ys):
        if y < best and feasible(prob, d):
            best, best_regret = y, prob.regret(d)
        out.append(best_regret)
    return out


def recommend_botorch(prob, ds, ys):
    """BoTorch's recommendation after these evaluations: the evaluated design with the best posterior
    mean of the same model its loop fits (``SingleTaskGP`` / ``MixedSingleTaskGP``, fitted the same way)."""
    import torch

    bounds_np, cat_dims, _, _, encode = _torch_encoding(prob.space)
    d = bounds_np.shape[1]
    X = torch.tensor([encode(x) for x in ds], dtype=torch.double)
    Y = -torch.tensor(ys, dtype=torch.double).unsqueeze(-1)
    model = _botorch_model(X, Y, cat_dims, d)
    with torch.no_grad():
        mean = model.posterior(X).mean.squeeze(-1).numpy()
    ok = [i for i, x in enumerate(ds) if feasible(prob, x)]
    return ds[max(ok, key=lambda i: mean[i])]


def recommend_ours(prob, ds, ys):
    """Our recommendation after these evaluations: :meth:`BayesianOptimizer.recommend` of an optimiser
    told exactly these evaluations (what a user stopping there gets)."""
    opt = BayesianOptimizer(prob.space, seed=0)
    opt.tell(ds, ys)
    return opt.recommend()["design"]


def recommended_regrets(method, prob, ds, ys, n):
    """Regret of each method's recommended design at the checkpoints: the model's choice for gp and
    botorch, the best observed design for the model-free rows (random) and Optuna (``best_trial``)."""
    curve = regret_curve(prob, ds, ys)
    out = {}
    for c in CHECKPOINTS:
        if c > n:
            continue
        if method == "gp":
            out[c] = prob.regret(recommend_ours(prob, ds[:c], ys[:c]))
        elif method == "botorch":
            out[c] = prob.regret(recommend_botorch(prob, ds[:c], ys[:c]))
        else:
            out[c] = curve[c - 1]
    return out


def one(method, name, noisy, q, seed, n):
    path = RESULTS / f"{method}_{name}_{'noisy' if noisy else 'exact'}_q{q}_s{seed}_n{n}.json"
    if path.exists():
        res = json.loads(path.read_text())
        if "recommended" in res:
            return res
        if method in ("random", "optuna"):      # no model: the recommendation is the best observed design
            res["recommended"] = {str(c): res["regret"][c - 1] for c in CHECKPOINTS if c <= n}
            path.write_text(json.dumps(res))
            return res
    prob = B.get(name, noise=NOISE[name] if noisy else 0.0)
    runner = dict(gp=lambda: run_ours(BayesianOptimizer, prob, seed, q, n),
                  random=lambda: run_ours(RandomSearch, prob, seed, q, n),
                  botorch=lambda: run_botorch(prob, seed, q, n), optuna=lambda: run_optuna(prob, seed, q, n))[method]
    ds, ys, times = runner()
    rec = recommended_regrets(method, prob, ds, ys, n)
    res = dict(method=method, problem=name, noisy=noisy, q=q, seed=seed, regret=regret_curve(prob, ds, ys),
               recommended={str(c): v for c, v in rec.items()}, ask_seconds=times,
               violations=sum(not feasible(prob, d) for d in ds), designs=[_plain(d) for d in ds],
               values=[float(y) for y in ys])
    if method == "botorch" and prob.space.constraint is not None:
        res["acqf_fallbacks"] = run_botorch.fallbacks[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res))
    return res


def report(rows, methods, problems, qs, n):
    marks = [c for c in CHECKPOINTS if c <= n]
    lines = []
    head = f"{'problem':24s} {'q':>2s} {'method':8s} " + " ".join(f"{'regret@' + str(c):>22s}" for c in marks) + \
        f" {'s/iter':>8s} {'viol.':>5s}"
    lines.append(head)
    for name in problems:
        for noisy in (False, True):
            for q in qs:
                for m in methods:
                    rs = [r for r in rows if r["method"] == m and r["problem"] == name and r["noisy"] == noisy and r["q"] == q]
                    if not rs:
                        continue
                    cells = []
                    for c in marks:
                        v = np.array([r["regret"][c - 1] for r in rs])
                        q1, med, q3 = np.percentile(v, [25, 50, 75])
                        cells.append(f"{med:8.3g} [{q1:.2g},{q3:.2g}]".rjust(22))
                    t = np.mean([np.mean(r["ask_seconds"]) if r["ask_seconds"] else 0.0 for r in rs])
                    viol = sum(r["violations"] for r in rs)
                    lines.append(f"{name + (' noisy' if noisy else ''):24s} {q:2d} {m:8s} " + " ".join(cells)
                                 + f" {t:8.3f} {viol:5d}")
    return "\n".join(lines)


def _med(rs, c, key):
    if key == "recommended":
        return float(np.median([r["recommended"][str(c)] for r in rs]))
    return float(np.median([r["regret"][c - 1] for r in rs]))


def _median_difference_sigmas(a, b, c, n_boot=4000):
    """How many standard deviations the median recommended regret of runs ``a`` lies above that of ``b``
    at ``c`` evaluations (0 when not above): the difference of the medians over its bootstrap standard
    deviation (seeds resampled with replacement, fixed generator)."""
    x = np.array([r["recommended"][str(c)] for r in a])
    y = np.array([r["recommended"][str(c)] for r in b])
    diff = float(np.median(x) - np.median(y))
    if diff <= 1e-9:
        return 0.0
    rng = np.random.default_rng(0)
    boots = np.median(rng.choice(x, (n_boot, x.size)), 1) - np.median(rng.choice(y, (n_boot, y.size)), 1)
    return diff / max(float(np.std(boots)), 1e-12)


def goal(rows, problems, qs, n, peer="botorch", markdown=False):
    """The issue's goal, per row: median regret of the *recommended* design at 30 and 50 evaluations no
    worse than the peer's recommended design, and time per ask below the peer's; the best observed
    design's regret is shown beside it. Ties at zero regret count as met. With ``markdown`` a README
    table."""
    if markdown:
        lines = [f"| problem | q | recommended @30 / @50: gp | {peer} | best observed @30 / @50: gp | {peer} | "
                 f"s/ask gp / {peer} | goal |", "|---|---|---|---|---|---|---|---|"]
    else:
        lines = [f"GP vs {peer}: median regret of the recommended (and best observed) design, time per ask",
                 f"{'problem':24s} {'q':>2s} {'rec gp':>18s} {'rec ' + peer:>18s} {'best gp':>18s} "
                 f"{'best ' + peer:>18s} {'s/ask':>12s}  goal"]
    n_met = n_rows = n_tie = 0
    for name in problems:
        for noisy in (False, True):
            for q in qs:
                sel = {m: [r for r in rows if r["method"] == m and r["problem"] == name and r["noisy"] == noisy
                           and r["q"] == q and "recommended" in r] for m in ("gp", peer)}
                if not sel["gp"] or len(sel[peer]) < len(sel["gp"]):
                    continue
                marks = [c for c in (30, 50) if c <= n]
                ok = all(_med(sel["gp"], c, "recommended") <= _med(sel[peer], c, "recommended") + 1e-9 for c in marks)
                sig = max(_median_difference_sigmas(sel["gp"], sel[peer], c) for c in marks)
                cells = [" / ".join(f"{_med(sel[m], c, key):.2g}" for c in marks)
                         for key in ("recommended", "regret") for m in ("gp", peer)]
                t = [np.mean([np.mean(r["ask_seconds"]) for r in sel[m] if r["ask_seconds"]]) for m in ("gp", peer)]
                fast = t[0] <= t[1]
                ok &= fast
                n_met += ok
                n_rows += 1
                n_tie += (not ok) and fast and sig < 3
                verdict = "met" if ok else (f"missed, a tie ({sig:.1f} sigma)" if fast and sig < 3 else
                                            f"missed ({sig:.1f} sigma)" if fast else "missed (slower)")
                label = name + (" noisy" if noisy else "")
                if markdown:
                    lines.append(f"| {label} | {q} | " + " | ".join(cells) + f" | {t[0]:.2f} / {t[1]:.2f} | "
                                 f"{verdict if ok else '**' + verdict + '**'} |")
                else:
                    lines.append(f"{label:24s} {q:2d} " + " ".join(c.rjust(18) for c in cells)
                                 + f" {t[0]:5.2f}/{t[1]:5.2f}  {verdict}")
    lines.append(f"{'' if not markdown else chr(10)}goal met on {n_met} of {n_rows} rows; of the others, {n_tie} "
                 "within 3 sigma (bootstrap of the median difference over seeds)")
    return "\n".join(lines)


def readme_table(rows, problems, qs, peer="botorch"):
    """The README's table: gp's recommended and best observed regret (median of 10 seeds at 30 / 50),
    the peer's recommended and best observed regret where its runs with recommendations are complete,
    else its best observed regret of all cached runs (those of the previous benchmark, which recorded no
    designs, and those rerun so far), seconds per ask and the verdict on the recommended designs (a tie
    when within 3 sigma)."""
    lines = [f"| problem | q | gp recommended | gp best observed | {peer} recommended | {peer} best observed | "
             f"s/ask gp / {peer} | recommended vs {peer} |", "|---|---|---|---|---|---|---|---|"]

    def cell(rs, key):
        return " / ".join(f"{_med(rs, c, key):.2g}" for c in (30, 50))

    for name in problems:
        for noisy in (False, True):
            for q in qs:
                pick = lambda m: [r for r in rows if r["method"] == m and r["problem"] == name  # noqa: E731
                                  and r["noisy"] == noisy and r["q"] == q]
                g, b = pick("gp"), pick(peer)
                if len(g) < 10:
                    continue
                tg = np.mean([np.mean(r["ask_seconds"]) for r in g])
                tb = np.mean([np.mean(r["ask_seconds"]) for r in b]) if b else float("nan")
                fresh = [r for r in b if "designs" in r]
                if len(fresh) >= 10:
                    sig = max(_median_difference_sigmas(g, fresh, c) for c in (30, 50))
                    ok = all(_med(g, c, "recommended") <= _med(fresh, c, "recommended") + 1e-9 for c in (30, 50))
                    verdict = ("no worse" if ok else f"worse, a tie ({sig:.1f} σ)" if sig < 3 else
                               f"**worse ({sig:.1f} σ)**") + ("" if tg <= tb else ", **slower**")
                    rest = f"{cell(fresh, 'recommended')} | {cell(fresh, 'regret')} | {tg:.2f} / {tb:.2f}"
                else:          # best observed of every cached run (this benchmark's and the previous one's)
                    verdict = "–"
                    rest = (f"not measured ({len(fresh)}/10 seeds rerun) | {cell(b, 'regret')} | "
                            f"{tg:.2f} / {tb:.2f}{'' if fresh else ' (previous run)'}")
                lines.append(f"| {name.replace('_', ' ')}{' noisy' if noisy else ''} | {q} | "
                             f"{cell(g, 'recommended')} | {cell(g, 'regret')} | {rest} | {verdict} |")
    return "\n".join(lines)


def markdown(rows, methods, problems, qs):
    """The README table: median simple regret after 30 and 50 evaluations and seconds per ask, per
    method (n/a where a method's runs are not all cached)."""
    head = "| problem | q | " + " | ".join(f"{m} @30 / @50 (s/ask)" for m in methods) + " |"
    lines = [head, "|" + "---|" * (2 + len(methods))]
    for name in problems:
        for noisy in (False, True):
            for q in qs:
                cells = []
                for m in methods:
                    rs = [r for r in rows if r["method"] == m and r["problem"] == name and r["noisy"] == noisy
                          and r["q"] == q]
                    if len(rs) < 10:
                        cells.append(f"n/a ({len(rs)}/10 runs)")
                        continue
                    a, b = (float(np.median([r["regret"][c - 1] for r in rs])) for c in (30, 50))
                    t = float(np.mean([np.mean(r["ask_seconds"]) for r in rs if r["ask_seconds"]]))
                    cells.append(f"{a:.2g} / {b:.2g} ({t:.2f})")
                lines.append(f"| {name}{' noisy' if noisy else ''} | {q} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows, methods, problems, qs, n, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(qs) * 2, len(problems), figsize=(4 * len(problems), 3.2 * 2 * len(qs)), squeeze=False)
    for j, name in enumerate(problems):
        for i, (noisy, q) in enumerate([(nz, q) for q in qs for nz in (False, True)]):
            ax = axes[i, j]
            for m in methods:
                rs = [r for r in rows if r["method"] == m and r["problem"] == name and r["noisy"] == noisy and r["q"] == q]
                if not rs:
                    continue
                v = np.array([r["regret"][:n] for r in rs])
                v = np.maximum(v, 1e-6)
                x = np.arange(1, v.shape[1] + 1)
                med = np.median(v, 0)
                color = f"C{METHODS.index(m)}"               # one colour per method in every panel
                label = m if len(rs) >= 10 else f"{m} ({len(rs)} seeds so far)"
                ax.plot(x, med, color=color, label=label)
                ax.fill_between(x, np.percentile(v, 25, 0), np.percentile(v, 75, 0), color=color, alpha=0.2)
            ax.set(yscale="log", title=f"{name}{' noisy' if noisy else ''}, q={q}", xlabel="evaluations",
                   ylabel="simple regret")
            ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 seeds, 20 evaluations, q = 1, noise-free only")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--problems", default=",".join(PROBLEMS))
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--evaluations", type=int, default=50)
    ap.add_argument("--q", default="1,4")
    ap.add_argument("--noise", default="exact,noisy", help="which variants: exact, noisy or both")
    ap.add_argument("--report", action="store_true", help="only print and plot the cached results")
    ap.add_argument("--markdown", action="store_true", help="with --report: also print the README table")
    args = ap.parse_args()
    methods = args.methods.split(",")
    problems = args.problems.split(",")
    for m in methods:
        if m not in METHODS:
            ap.error(f"--methods: unknown method {m!r}; allowed: {', '.join(METHODS)}")
    for p in problems:
        if p not in PROBLEMS:
            ap.error(f"--problems: unknown problem {p!r}; allowed: {', '.join(PROBLEMS)}")
    qs = [int(v) for v in args.q.split(",")]
    for v in args.noise.split(","):
        if v not in ("exact", "noisy"):
            ap.error(f"--noise: unknown variant {v!r}; allowed: exact, noisy")
    seeds, n = args.seeds, args.evaluations
    noises = tuple(v == "noisy" for v in ("exact", "noisy") if v in args.noise.split(","))
    if args.quick:
        seeds, n, qs, noises = 3, 20, [1], (False,)
    jobs = [(m, p, nz, q, s) for p in problems for nz in noises for q in qs for s in range(seeds) for m in methods]
    rows = []
    if args.report:
        rows = [json.loads(f.read_text()) for f in RESULTS.glob(f"*_n{n}.json")]
    else:
        from tqdm import tqdm

        for m, p, nz, q, s in tqdm(jobs, desc="runs", unit="run"):
            rows.append(one(m, p, nz, q, s, n))
    print(report(rows, methods, problems, qs, n))
    if "gp" in methods and "botorch" in methods:
        print("\n" + goal(rows, problems, qs, n))
    if args.markdown:
        print("\n" + markdown(rows, methods, problems, qs))
        if "gp" in methods and "botorch" in methods:
            print("\n" + readme_table(rows, problems, qs))
    print(f"\nregret curves: {plot(rows, methods, problems, qs, n, RESULTS.parent / 'bayesopt_regret.png')}")


if __name__ == "__main__":
    main()
