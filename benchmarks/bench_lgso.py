r"""L-GSO against numerical differentiation, GP-BO, CMA-ES and the true gradient on the L-GSO paper's
stochastic problems: simulator calls (psi points, each simulated ``--samples`` times) to bring the
expected objective to the problem's target.

Problems (:func:`surrogates.benchmarks.stochastic_problem`): ``three_hump`` (2-D), ``rosenbrock10``,
``rosenbrock100_submanifold`` (dependence on a 10-D linear submanifold), ``hump40_submanifold``
(a non-linear 2-D submanifold of 40-D). Targets: 1.0 for the Rosenbrock problems (start 45 and 9),
-0.8 for the hump problems (start -0.50 / -0.55, optimum -0.859).

Methods (every psi point is simulated ``--samples`` = M times, 3000 as in the paper, and counts as one call):

- ``lgso`` (and ``lgso_replay4``: the training set from a box 4x the trust region, ``replay_scale = 4``):
  :class:`surrogates.lgso.LGSO` with the paper's trust region (half-width 0.2; 0.5 for the
  three-hump problem), its points per iteration (4, 15, 20, 10), Adam lr 0.1, 10^4 surrogate samples per
  gradient, our flow-matching surrogate (``--model gan`` for the paper's Cramér GAN) and our trust-region
  adaptation; n_points + 1 calls per iteration; at most :data:`LGSO_BUDGET` calls (2000; 1000 on the
  three-hump problem).
- ``numdiff``: central differences with step h = 0.1 per coordinate (the reference's setting), the
  same M per point, Adam lr 0.1: 2 d calls per gradient.
- ``gpbo``: :class:`surrogates.bayesopt.BayesianOptimizer` (log noisy EI, learned noise) in the box
  psi0 +- 7.5 (the reference BO's box); one call per evaluation, the value is the mean of M samples.
  The GP is cubic in the evaluations: it is capped at ``--bo-budget`` evaluations (200) and its row says
  so when it did not reach the target.
- ``cma``: CMA-ES (the ``cma`` package, defaults, sigma0 = 1, the same box); the current point is the
  distribution mean; one call per evaluation.
- ``truegrad``: Adam lr 0.1 on the exact gradient of the expected objective (Rosenbrock: closed form;
  hump: the component sum analytic, the Gaussians reparameterised, 2e5 common random numbers); one call
  per step. A lower bound: no simulator-only method has this gradient.

The progress measure for every method is the *expected* objective at its current point (exact, or a
2e5-sample estimate with common random numbers for the hump problems), evaluated after every iteration
and not counted as calls. Calls to target = the calls spent when it first falls to the target. A run
that does not reach it within the budget is shown as "> budget" and the median is a lower bound when
more than half did not.

Results are cached per run in ``benchmarks/results/lgso/`` (a rerun resumes); ``--report`` prints the
table and draws ``benchmarks/results/lgso_progress.png``.

    .venv/bin/pip install cma                 # benchmark-only dependency
    .venv/bin/python benchmarks/bench_lgso.py [--problems ...] [--methods ...] [--seeds 5]
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

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from surrogates import benchmarks as B  # noqa: E402
from surrogates.bayesopt import BayesianOptimizer  # noqa: E402
from surrogates.gradient import GradientDescent  # noqa: E402
from surrogates.lgso import LGSO  # noqa: E402
from surrogates.space import Real, Space  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "lgso"
METHODS = ("lgso", "lgso_replay4", "numdiff", "gpbo", "cma", "truegrad")
#: L-GSO variants: the training set's box in units of the trust region (1: the paper's).
REPLAY = {"lgso": 1.0, "lgso_replay4": 4.0}
BUDGET = {"three_hump": 1000, "rosenbrock10": 5000, "rosenbrock100_submanifold": 20000, "hump40_submanifold": 10000}
#: L-GSO's budget: a surrogate fit per iteration makes a run of 20 000 calls (1000 iterations) hours long;
#: its goal is far below these (5x fewer calls than numerical differentiation), so a run stopped here
#: has missed it.
LGSO_BUDGET = {"three_hump": 1000, "rosenbrock10": 2000, "rosenbrock100_submanifold": 2000, "hump40_submanifold": 2000}


class Sim:
    """Counts calls and gives each method the same simulator (M samples per psi point)."""

    def __init__(self, prob, m, seed):
        self.prob, self.m, self.calls = prob, m, 0
        self.key = jax.random.key(seed)
        self._sim = jax.jit(prob.simulate)
        self._obj = jax.jit(jax.vmap(prob.objective))
        self._exp = jax.jit(prob.expected)

    def rows(self, points):
        points = np.atleast_2d(np.asarray(points, np.float32))
        self.calls += len(points)
        self.key, k = jax.random.split(self.key)
        psi = np.repeat(points, self.m, axis=0)
        x, y = self._sim(k, psi)
        return psi, np.asarray(x), np.asarray(y)

    def means(self, points):
        """The mean objective of M samples at each point (what a black-box method sees)."""
        psi, x, y = self.rows(points)
        r = np.asarray(self._obj(jnp.asarray(y), jnp.asarray(x)))
        return r.reshape(len(np.atleast_2d(points)), self.m).mean(axis=1)

    def expected(self, psi):
        return float(self._exp(jnp.asarray(psi, jnp.float32)))


def run_lgso(prob, sim, seed, budget, model, replay_scale=1.0):
    opt = LGSO(np.asarray(prob.x0), prob.objective, y_dim=prob.y_dim, x_dim=prob.x_dim, radius=prob.radius,
               n_points=prob.n_points, samples_per_point=sim.m, model=model, seed=seed, replay_scale=replay_scale)
    trace = [(0, sim.expected(prob.x0))]
    extra = dict(cos=[], norm_ratio=[])
    grad_exact = jax.jit(jax.grad(lambda q: prob.expected(q)))
    while sim.calls < budget and not opt.converged:
        psi, x, y = sim.rows(opt.ask())
        rec = opt.tell(psi, x, y)
        if rec["gradient"] is not None:
            g, e = np.asarray(rec["gradient"]), np.asarray(grad_exact(jnp.asarray(rec["centre"], jnp.float32)))
            extra["cos"].append(float(g @ e / (np.linalg.norm(g) * np.linalg.norm(e) + 1e-30)))
            extra["norm_ratio"].append(float(np.linalg.norm(g) / (np.linalg.norm(e) + 1e-30)))
        trace.append((sim.calls, sim.expected(opt.centre)))
        if opt.iteration % 10 == 0:
            print(f"  {prob.name} lgso seed {seed}: iteration {opt.iteration}, {sim.calls} calls, expected objective "
                  f"{trace[-1][1]:.4g} (target {prob.target:g}), radius {opt.radius:.3g}", flush=True)
        if trace[-1][1] <= prob.target:
            break
    return trace, extra


def run_numdiff(prob, sim, seed, budget, h=0.1):
    d = prob.dim
    opt = GradientDescent(np.asarray(prob.x0), optimizer=optax.adam(0.1))
    trace = [(0, sim.expected(prob.x0))]
    eye = np.eye(d)
    while sim.calls + 2 * d <= budget:
        p = opt.ask()
        vals = sim.means(np.vstack([p + h * eye, p - h * eye]))
        grad = (vals[:d] - vals[d:]) / (2 * h)
        opt.tell(p, float(vals.mean()), grad)
        trace.append((sim.calls, sim.expected(opt.ask())))
        if trace[-1][1] <= prob.target:
            break
    return trace, {}


def run_truegrad(prob, sim, seed, budget):
    vg = jax.jit(jax.value_and_grad(lambda q: prob.expected(q)))
    opt = GradientDescent(np.asarray(prob.x0), optimizer=optax.adam(0.1))
    trace = [(0, sim.expected(prob.x0))]
    while sim.calls < budget:
        p = opt.ask()
        sim.calls += 1
        v, g = vg(jnp.asarray(p, jnp.float32))
        opt.tell(p, float(v), np.asarray(g, dtype=float))
        trace.append((sim.calls, sim.expected(opt.ask())))
        if trace[-1][1] <= prob.target:
            break
    return trace, {}


def run_gpbo(prob, sim, seed, budget):
    box = prob.box()
    space = Space([Real(f"p{i}", float(lo), float(hi)) for i, (lo, hi) in enumerate(box)])
    names = [f"p{i}" for i in range(prob.dim)]
    opt = BayesianOptimizer(space, seed=seed)
    opt.tell([dict(zip(names, prob.x0))], [float(sim.means(np.asarray(prob.x0))[0])])
    trace = [(0, sim.expected(prob.x0))]
    while sim.calls < budget:
        d = opt.ask(1)[0]
        p = np.array([d[n] for n in names])
        opt.tell([d], [float(sim.means(p)[0])])
        best = opt.best[0]
        trace.append((sim.calls, sim.expected(np.array([best[n] for n in names]))))
        if trace[-1][1] <= prob.target:
            break
    return trace, {}


def run_cma(prob, sim, seed, budget):
    import cma
    box = prob.box()
    es = cma.CMAEvolutionStrategy(np.asarray(prob.x0, float), 1.0,
                                  {"bounds": [box[:, 0].tolist(), box[:, 1].tolist()], "seed": seed + 1,
                                   "verbose": -9})
    trace = [(0, sim.expected(prob.x0))]
    while sim.calls < budget and not es.stop():
        xs = es.ask()
        es.tell(xs, [float(v) for v in sim.means(np.asarray(xs))])
        trace.append((sim.calls, sim.expected(es.mean)))
        if trace[-1][1] <= prob.target:
            break
    return trace, {}


def one(method, name, seed, samples, model, bo_budget):
    tag = f"_{model}" if method in REPLAY else ""
    path = RESULTS / f"{method}{tag}_{name}_m{samples}_s{seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    prob = B.stochastic_problem(name)
    budget = dict(gpbo=min(BUDGET[name], bo_budget), lgso=LGSO_BUDGET[name], lgso_replay4=LGSO_BUDGET[name]).get(method, BUDGET[name])
    sim = Sim(prob, samples, seed)
    t = time.time()
    runner = dict(lgso=lambda: run_lgso(prob, sim, seed, budget, model),
                  lgso_replay4=lambda: run_lgso(prob, sim, seed, budget, model, REPLAY["lgso_replay4"]), numdiff=lambda: run_numdiff(prob, sim, seed, budget),
                  gpbo=lambda: run_gpbo(prob, sim, seed, budget), cma=lambda: run_cma(prob, sim, seed, budget),
                  truegrad=lambda: run_truegrad(prob, sim, seed, budget))[method]
    trace, extra = runner()
    reached = next((c for c, v in trace if v <= prob.target), None)
    res = dict(method=method, model=model if method in REPLAY else None, problem=name, seed=seed, samples=samples,
               budget=budget, trace=trace, calls_to_target=reached, seconds=time.time() - t, **extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res))
    return res


def _median_calls(runs):
    """Median calls to target; a run that never reached it counts as its budget (the median is then a
    lower bound, marked '>')."""
    vals = [r["calls_to_target"] if r["calls_to_target"] is not None else math.inf for r in runs]
    med = float(np.median(vals))
    if math.isinf(med):
        return f"> {max(r['budget'] for r in runs)}", med
    return f"{med:.0f}", med


def report(rows, problems, methods):
    lines = [f"{'problem':26s} {'method':10s} {'reached':>8s} {'median calls':>13s} {'range':>16s} {'s/run':>7s}"]
    table = {}
    for name in problems:
        for m in methods:
            rs = [r for r in rows if r["problem"] == name and r["method"] == m]
            if not rs:
                continue
            txt, med = _median_calls(rs)
            table[(name, m)] = med
            got = [r["calls_to_target"] for r in rs if r["calls_to_target"] is not None]
            rng = f"{min(got)}-{max(got)}" if got else "-"
            lines.append(f"{name:26s} {m:10s} {len(got):>3d} / {len(rs):<2d} {txt:>13s} {rng:>16s} "
                         f"{np.median([r['seconds'] for r in rs]):7.0f}")
        for variant in REPLAY:
            if (name, variant) in table:
                for peer in ("numdiff", "cma", "gpbo"):
                    if (name, peer) in table and math.isfinite(table[(name, variant)]):
                        ratio = table[(name, peer)] / table[(name, variant)]
                        lines.append(f"{'':26s} {peer} / {variant} calls: "
                                     f"{f'{ratio:.2f}' if math.isfinite(ratio) else f'> budget / {variant}'}")
            lg = [r for r in rows if r["problem"] == name and r["method"] == variant and r.get("cos")]
            if not lg:
                continue
            cos = np.concatenate([r["cos"] for r in lg])
            nr = np.concatenate([r["norm_ratio"] for r in lg])
            lines.append(f"{'':26s} {variant} gradient vs exact: median cosine {np.median(cos):.3f} "
                         f"(IQR {np.percentile(cos, 25):.3f}-{np.percentile(cos, 75):.3f}), "
                         f"median norm ratio {np.median(nr):.2f} over {len(cos)} iterations")
    return "\n".join(lines)


def readme_table(rows, problems):
    """The README's table: median calls to target (seeds that reached it / seeds) per method, the ratios
    of numerical differences and CMA-ES to each L-GSO variant, and L-GSO's gradient cosines."""
    cols = ("lgso", "lgso_replay4", "numdiff", "cma", "gpbo", "truegrad")
    lines = ["| problem (d) | L-GSO | L-GSO, replay x4 | num. diff. | CMA-ES | GP-BO | true gradient | num. diff. / L-GSO "
             "(x4) | CMA-ES / L-GSO (x4) | L-GSO gradient cosine, median (x4) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name in problems:
        med, cells, budget = {}, [], {}
        for m in cols:
            rs = [r for r in rows if r["problem"] == name and r["method"] == m]
            if not rs:
                cells.append("-")
                continue
            txt, med[m] = _median_calls(rs)
            budget[m] = max(r["budget"] for r in rs)
            got = sum(r["calls_to_target"] is not None for r in rs)
            cells.append(f"{txt} ({got}/{len(rs)})")

        def ratio(peer, variant):
            a, b = med.get(peer), med.get(variant)
            if a is None or b is None or math.isinf(b):
                return "-"
            return f"> {budget[peer] / b:.0f}" if math.isinf(a) else f"{a / b:.1f}"

        def cosine(variant):
            cos = [c for r in rows if r["problem"] == name and r["method"] == variant for c in r.get("cos", [])]
            return f"{np.median(cos):.2f}" if cos else "-"

        extra = [f"{ratio(p, 'lgso')} ({ratio(p, 'lgso_replay4')})" for p in ("numdiff", "cma")]
        extra.append(f"{cosine('lgso')} ({cosine('lgso_replay4')})")
        lines.append(f"| {name} ({B.stochastic_problem(name).dim}) | " + " | ".join(cells + extra) + " |")
    return "\n".join(lines)


def plot(rows, problems, methods, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(problems), figsize=(4.2 * len(problems), 3.6), squeeze=False)
    for ax, name in zip(axes[0], problems):
        for m in methods:
            for i, r in enumerate(r for r in rows if r["problem"] == name and r["method"] == m):
                c, v = np.asarray(r["trace"]).T
                ax.plot(np.maximum(c, 1), v, color=f"C{METHODS.index(m)}", alpha=0.6, lw=1, label=m if i == 0 else None)
        prob = B.stochastic_problem(name)
        ax.axhline(prob.target, color="k", ls=":", lw=1)
        ax.set_xscale("log")
        if name.startswith("rosenbrock"):
            ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("simulator calls (psi points)")
    axes[0][0].set_ylabel("expected objective at the current point")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", default=",".join(B.STOCHASTIC_PROBLEMS))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--samples", type=int, default=3000, help="simulator samples per psi point (paper: 3000)")
    ap.add_argument("--model", default="flow", choices=("flow", "gan"), help="L-GSO's surrogate")
    ap.add_argument("--bo-budget", type=int, default=200, help="most GP-BO evaluations per run")
    ap.add_argument("--report", action="store_true", help="only print and plot the cached results")
    ap.add_argument("--markdown", action="store_true", help="also print the README table")
    args = ap.parse_args(argv)
    problems, methods = args.problems.split(","), args.methods.split(",")
    for p in problems:
        if p not in B.STOCHASTIC_PROBLEMS:
            ap.error(f"--problems: unknown {p!r}; choose from {', '.join(B.STOCHASTIC_PROBLEMS)}")
    for m in methods:
        if m not in METHODS:
            ap.error(f"--methods: unknown {m!r}; choose from {', '.join(METHODS)}")
    rows = []
    for name in problems:
        for m in methods:
            for s in range(args.seeds):
                path_exists = (RESULTS / f"{m}{'_' + args.model if m in REPLAY else ''}_{name}_m{args.samples}_s{s}.json").exists()
                if args.report and not path_exists:
                    continue
                r = one(m, name, s, args.samples, args.model, args.bo_budget)
                if not path_exists:
                    print(f"{name} {m} seed {s}: calls to target {r['calls_to_target']} ({r['seconds']:.0f} s)", flush=True)
                rows.append(r)
    print(report(rows, problems, methods))
    if args.markdown:
        print(readme_table(rows, problems))
    if rows:
        plot(rows, problems, methods, RESULTS.parent / "lgso_progress.png")


if __name__ == "__main__":
    main()
