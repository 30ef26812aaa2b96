"""surrogates/: search spaces, GP, acquisitions, the ask/tell optimisers, test problems."""

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surrogates import benchmarks as B
from surrogates.acquisition import log_ei, log_ei_grad, log_h
from surrogates.bayesopt import BayesianOptimizer, RandomSearch
from surrogates.gp import GP
from surrogates.space import Categorical, Integer, Real, Space, SpaceError

MIXED = Space([Real("a", 0.1, 10.0, log=True), Real("b", -1.0, 1.0), Integer("n", 2, 9),
               Categorical("tech", ("shashlik", "spacal-w", "spacal-pb"))])


def test_surrogates_never_import_diffcalo():
    code = ("import sys, surrogates.bayesopt, surrogates.benchmarks, surrogates.lgso, surrogates.gradient, "
            "surrogates.generative; "
            "print(any(m == 'diffcalo' or m.startswith('diffcalo.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- spaces ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, message", [
    (lambda: Real("x", 1.0, 1.0), "x: low = 1.0 must be < high = 1.0"),
    (lambda: Real("x", 0.0, 1.0, log=True), "x: log = True needs low > 0"),
    (lambda: Real("x", 0.0, float("nan")), "x.high = nan: must be a finite number"),
    (lambda: Integer("k", 5, 2), "k: low = 5 must be < high = 2"),
    (lambda: Integer("k", 0.5, 2), "k.low = 0.5: must be an integer"),
    (lambda: Categorical("c", ()), r"c: choices = \(\): must be a non-empty list"),
    (lambda: Categorical("c", ("a", "a")), "contain duplicates"),
    (lambda: Space([Real("x", 0, 1), Integer("x", 0, 3)]), r"duplicate parameter names \['x'\]"),
    (lambda: Space([]), "at least one parameter"),
])
def test_bad_spaces_are_clear_errors(make, message):
    with pytest.raises(SpaceError, match=message):
        make()


@settings(max_examples=60, deadline=None)
@given(a=st.floats(0.1, 10.0), b=st.floats(-1.0, 1.0), n=st.integers(2, 9),
       tech=st.sampled_from(("shashlik", "spacal-w", "spacal-pb")))
def test_encode_decode_round_trip(a, b, n, tech):
    d = dict(a=a, b=b, n=n, tech=tech)
    x = MIXED.encode(d)
    assert x.shape == (MIXED.dim,) and np.all((x >= 0) & (x <= 1))
    back = MIXED.decode(x)[0]
    assert back["n"] == n and back["tech"] == tech
    assert back["a"] == pytest.approx(a, rel=1e-9) and back["b"] == pytest.approx(b, abs=1e-12)


def test_sampling_methods_and_validation_errors():
    for method in ("uniform", "lhs", "sobol"):
        ds = MIXED.sample(64, rng=1, method=method)
        assert len(ds) == 64
        for d in ds:
            MIXED.validate(d)
    # Latin hypercube: each of 64 strata of b holds exactly one design
    b = np.array([d["b"] for d in MIXED.sample(64, rng=2, method="lhs")])
    assert sorted(np.floor((b + 1) / 2 * 64).astype(int)) == list(range(64))
    with pytest.raises(SpaceError, match=r"unknown parameter\(s\) \['cell'\]"):
        MIXED.validate(dict(a=1.0, b=0.0, n=3, tech="shashlik", cell=3))
    with pytest.raises(SpaceError, match=r"n = 12: must be an integer in \[2, 9\]"):
        MIXED.validate(dict(a=1.0, b=0.0, n=12, tech="shashlik"))
    with pytest.raises(SpaceError, match="tech = 'pbwo4': must be one of"):
        MIXED.validate(dict(a=1.0, b=0.0, n=3, tech="pbwo4"))
    with pytest.raises(SpaceError, match="sampling method 'grid'"):
        MIXED.sample(3, method="grid")
    never = Space([Real("x", 0, 1)], constraint=lambda d: False)
    with pytest.raises(SpaceError, match="found only 0 of 5 designs satisfying the constraint"):
        never.sample(5, max_tries=3)


# ---- acquisition and GP ------------------------------------------------------------------------------------
def test_log_h_matches_high_precision_values():
    # references from mpmath: log(phi(z) + z Phi(z)) at 50 digits
    z = np.array([3.0, 0.5, -0.5, -1.5, -5.0, -20.0, -40.0])
    ref = np.array([1.0987396653277077, -0.35982768374506374, -1.6205162643873199, -3.5299359208057104,
                    -16.74430116266099, -206.91783850942508, -808.2985683566201])
    np.testing.assert_allclose(log_h(z), ref, rtol=1e-13)
    assert np.isfinite(log_h(np.array([-1e10])))
    # EI itself where it is representable
    from scipy.stats import norm

    mu, sd, best = 0.3, 0.2, 0.1
    u = (best - mu) / sd
    assert float(log_ei(mu, sd, best)) == pytest.approx(np.log(sd * (norm.pdf(u) + u * norm.cdf(u))), rel=1e-12)


def test_gp_interpolates_and_learns_the_noise_level():
    rng = np.random.default_rng(0)
    x = rng.random((40, 2))
    f = lambda x: np.sin(6 * x[:, 0]) + x[:, 1] ** 2
    gp = GP(x, f(x))
    xt = rng.random((500, 2))
    mu, sd = gp.predict(xt)
    assert np.abs(mu - f(xt)).mean() < 0.02
    y = f(x) + 0.2 * rng.normal(size=40)
    noisy = GP(x, y)
    learned = np.sqrt(noisy.noise_variance) * noisy.y_std
    assert 0.1 < learned < 0.35, learned


# ---- optimisers ---------------------------------------------------------------------------------------------
def _run(opt, prob, n_evals, q=1, seed=0):
    rng = np.random.default_rng(seed)
    while len(opt.designs) < n_evals:
        ds = opt.ask(min(q, n_evals - len(opt.designs)))
        opt.tell(ds, [prob(d, rng) for d in ds])
    return prob.regret(opt.best[0])


def test_posterior_and_log_ei_gradients_match_finite_differences():
    rng = np.random.default_rng(3)
    x = rng.random((25, 3))
    y = np.sin(5 * x[:, 0]) + x[:, 1] ** 2 + 0.05 * rng.normal(size=25)
    gp = GP(x, y, restarts=1)
    p = rng.random((6, 3))
    mu, sd, dmu, dsd = gp.predict_grad(p)
    mu0, sd0 = gp.predict(p)
    np.testing.assert_allclose(mu, mu0, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sd, sd0, rtol=1e-8)
    best = float(y.min()) - 0.5                 # far below: exercises the small-EI branch of log h
    value, grad = log_ei_grad(mu, sd, dmu, dsd, best)
    np.testing.assert_allclose(value, log_ei(mu, sd, best), rtol=1e-12)
    h = 1e-5
    for j in range(3):
        e = np.zeros(3)
        e[j] = h
        (mp, sp), (mm, sm) = gp.predict(p + e), gp.predict(p - e)
        np.testing.assert_allclose(dmu[:, j], (mp - mm) / (2 * h), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(dsd[:, j], (sp - sm) / (2 * h), rtol=1e-5, atol=1e-7)
        fd = (log_ei(mp, sp, best) - log_ei(mm, sm, best)) / (2 * h)
        np.testing.assert_allclose(grad[:, j], fd, rtol=1e-4, atol=1e-6)


def test_branin_regret_below_005_within_30_evaluations_in_8_of_10_seeds():
    prob = B.get("branin")
    regrets = [_run(BayesianOptimizer(prob.space, seed=s), prob, 30) for s in range(10)]
    assert sum(r < 0.05 for r in regrets) >= 8, regrets


def test_ask_returns_distinct_feasible_designs_and_respects_pending():
    prob = B.get("constrained_branin")
    opt = BayesianOptimizer(prob.space, seed=3)
    _run(opt, prob, 12)
    first = opt.ask(4)
    second = opt.ask(3)                 # the 4 are still pending
    keys = {tuple(sorted(d.items())) for d in first + second + opt.designs}
    assert len(keys) == len(opt.designs) + 7
    for d in first + second:
        assert B.disc_constraint(d)
    assert len(opt.pending) == 7
    opt.tell(first, [prob(d) for d in first])
    assert len(opt.pending) == 3


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), q=st.integers(1, 4))
def test_proposals_never_violate_the_known_constraint(seed, q):
    prob = B.get("constrained_branin")
    for opt in (BayesianOptimizer(prob.space, seed=seed, n_initial=4, pool=256, restarts=0),
                RandomSearch(prob.space, seed=seed)):
        for _ in range(3):
            ds = opt.ask(q)
            assert len(ds) == q and all(B.disc_constraint(d) for d in ds)
            opt.tell(ds, [prob(d) for d in ds])


def test_state_round_trip_gives_the_identical_next_proposal():
    prob = B.get("mixed")
    opt = BayesianOptimizer(prob.space, seed=5)
    _run(opt, prob, 14)
    pending = opt.ask(2)
    state = json.loads(json.dumps(opt.to_dict()))
    again = BayesianOptimizer.from_dict(state)
    assert again.pending == pending
    assert again.ask(2) == opt.ask(2)
    rs = RandomSearch(prob.space, seed=1)
    rs.ask(3)
    assert RandomSearch.from_dict(json.loads(json.dumps(rs.to_dict()))).ask(2) == rs.ask(2)


def test_failures_are_recorded_and_steer_away_and_unknown_names_in_tell_are_errors():
    prob = B.get("branin")
    opt = BayesianOptimizer(prob.space, seed=0)
    rng = np.random.default_rng(0)
    # everything with x1 > 5 fails
    while len(opt.designs) < 25:
        d = opt.ask(1)[0]
        opt.tell(d, None if d["x1"] > 5 else prob(d, rng))
    assert opt.n_failed >= 1
    late = opt.designs[15:]
    assert sum(d["x1"] > 5 for d in late) <= 2
    assert opt.best[1] is not None and opt.best[0]["x1"] <= 5
    with pytest.raises(SpaceError, match=r"unknown parameter\(s\) \['x3'\]"):
        opt.tell({"x1": 0.0, "x2": 1.0, "x3": 2.0}, 1.0)
    with pytest.raises(ValueError, match="tell: 2 designs but 1 values"):
        opt.tell([{"x1": 0.0, "x2": 1.0}] * 2, [1.0])
    with pytest.raises(ValueError, match="acquisition = 'pi'; allowed: nei, log_ei, ucb"):
        BayesianOptimizer(prob.space, acquisition="pi")


def test_maximisation_and_ucb_find_the_optimum_of_the_mixed_problem():
    prob = B.get("mixed")
    neg = B.Problem("neg-mixed", prob.space, lambda d: -prob.function(d), 0.0, prob.optimum_design)
    opt = BayesianOptimizer(prob.space, seed=2, minimize=False, acquisition="ucb")
    rng = np.random.default_rng(0)
    while len(opt.designs) < 30:
        ds = opt.ask(2)
        opt.tell(ds, [neg(d, rng) for d in ds])
    best, value = opt.best
    assert best["c"] == "b" and abs(best["n"] - 6) <= 1 and -value < 0.05


def test_space_grid_enumerates_feasible_combinations():
    space = Space([Categorical("c", ("a", "b")), Integer("i", 1, 3), Real("r", 1.0, 100.0, log=True)],
                  constraint=lambda d: not (d["c"] == "b" and d["i"] == 3))
    grid = space.grid(real_levels=3)
    assert len(grid) == 2 * 3 * 3 - 3
    assert sorted({d["r"] for d in grid}) == pytest.approx([1.0, 10.0, 100.0])
    assert all(space.feasible(d) for d in grid) and grid[0] == {"c": "a", "i": 1, "r": 1.0}
    with pytest.raises(SpaceError, match="15 feasible designs .*more than 10"):
        space.grid(real_levels=3, max_designs=10)
    with pytest.raises(SpaceError, match="combinations; sample it instead"):
        Space([Integer(f"i{k}", 1, 100) for k in range(3)]).grid(max_designs=10)


# ---- noise: replicates, known noise, noisy EI, recommendations ---------------------------------------------
def _naive_gp(theta, x, z, noise_std_units):
    """Exact GP formulas on every row (replicates as separate rows): negative log likelihood and the
    posterior mean/variance at new points (standardised units)."""
    from sklearn.gaussian_process.kernels import Matern

    c, ls = np.exp(theta[0]), np.exp(theta[1:1 + x.shape[1]])
    k = c * Matern(ls, nu=2.5)(x) + np.diag(noise_std_units)
    low = np.linalg.cholesky(k)
    a = np.linalg.solve(k, z)
    nll = 0.5 * z @ a + np.log(np.diag(low)).sum() + 0.5 * len(z) * np.log(2 * np.pi)

    def post(xt):
        ks = c * Matern(ls, nu=2.5)(xt, x)
        return ks @ a, c - np.einsum("ij,ji->i", ks, np.linalg.solve(k, ks.T))
    return nll, post


def test_replicated_designs_give_the_posterior_of_one_design_with_reduced_noise():
    rng = np.random.default_rng(4)
    x = rng.random((12, 2))
    f = lambda x: np.sin(4 * x[:, 0]) + x[:, 1]
    reps = np.array([1, 4, 2, 1, 3, 1, 1, 5, 1, 1, 2, 1])
    xr = np.repeat(x, reps, axis=0)
    yr = f(xr) + 0.15 * rng.normal(size=len(xr))
    gp = GP(xr, yr, restarts=1)                          # learned noise, replicates aggregated
    assert len(gp.xu) == 12
    s2 = gp.noise_variance
    z = (yr - gp.y_mean) / gp.y_std
    nll, post = _naive_gp(gp.theta, xr, z, np.full(len(xr), s2))
    # the aggregated likelihood (with the within-group term) is the likelihood of every evaluation
    assert gp.neg_log_likelihood(gp.theta, grad=False) == pytest.approx(nll, rel=1e-9)
    xt = rng.random((7, 2))
    mu, sd = gp.predict(xt)
    m_ref, v_ref = post(xt)
    np.testing.assert_allclose(mu, m_ref * gp.y_std + gp.y_mean, rtol=1e-9)
    np.testing.assert_allclose(sd, np.sqrt(v_ref) * gp.y_std, rtol=1e-7)
    # one design per group at the group mean, known noise sigma^2 / n: the same posterior
    means = np.array([yr[np.repeat(np.arange(12), reps) == i].mean() for i in range(12)])
    one = GP(x, means, noise=s2 * gp.y_std ** 2 / reps, theta=gp.theta[:-1], standardise=(gp.y_mean, gp.y_std))
    mu1, sd1 = one.predict(xt)
    np.testing.assert_allclose(mu1, mu, rtol=1e-9)
    np.testing.assert_allclose(sd1, sd, rtol=1e-7)
    # and the likelihood gradient (within-group term included) matches finite differences
    th = gp.theta + 0.3
    _, g = gp.neg_log_likelihood(th)
    h = 1e-6
    fd = [(gp.neg_log_likelihood(th + e, False) - gp.neg_log_likelihood(th - e, False)) / (2 * h)
          for e in np.eye(len(th)) * h]
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-6)


def test_gp_matches_scikit_learn_at_the_same_hyperparameters():
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    rng = np.random.default_rng(5)
    x = rng.random((30, 3))
    y = np.sin(5 * x[:, 0]) + x[:, 1] ** 2 + 0.1 * rng.normal(size=30)
    gp = GP(x, y, restarts=2)
    c, ls, s2 = np.exp(gp.theta[0]), np.exp(gp.theta[1:4]), np.exp(gp.theta[4])
    sk = GaussianProcessRegressor(ConstantKernel(c, "fixed") * Matern(ls, "fixed", nu=2.5) + WhiteKernel(s2, "fixed"),
                                  optimizer=None, alpha=1e-10).fit(x, (y - gp.y_mean) / gp.y_std)
    assert gp.neg_log_likelihood(gp.theta, grad=False) == pytest.approx(-sk.log_marginal_likelihood_value_, rel=1e-8)
    xt = rng.random((9, 3))
    m, s = sk.predict(xt, return_std=True)
    mu, sd = gp.predict(xt)
    np.testing.assert_allclose(mu, m * gp.y_std + gp.y_mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sd, np.sqrt(s ** 2 - s2) * gp.y_std, rtol=1e-6)


def test_known_and_learned_noise_gps_agree_when_the_noise_is_right():
    rng = np.random.default_rng(6)
    x = rng.random((60, 2))
    f = lambda x: np.sin(5 * x[:, 0]) + np.cos(3 * x[:, 1])
    sigma = 0.2
    y = f(x) + sigma * rng.normal(size=60)
    learned = GP(x, y, restarts=2)
    known = GP(x, y, noise=sigma ** 2, restarts=2)
    assert np.sqrt(learned.noise_variance) * learned.y_std == pytest.approx(sigma, rel=0.3)
    xt = rng.random((200, 2))
    (m1, s1), (m2, s2) = learned.predict(xt), known.predict(xt)
    assert np.abs(m1 - m2).max() < 0.5 * np.minimum(s1, s2).min() + 0.02, np.abs(m1 - m2).max()
    np.testing.assert_allclose(s1 / s2, 1.0, atol=0.25)
    # both are right about the function within their uncertainty
    for m, s in ((m1, s1), (m2, s2)):
        assert np.mean(np.abs(m - f(xt)) < 2 * s) > 0.85
    with pytest.raises(ValueError, match="noise = -1.0: known noise variances must be finite and >= 0"):
        GP(x, y, noise=np.where(np.arange(60) == 3, -1.0, 0.04))


def test_noisy_ei_gradient_matches_finite_differences_and_reduces_to_ei_without_noise():
    from surrogates.acquisition import LogNEI

    rng = np.random.default_rng(7)
    x = rng.random((20, 2))
    y = np.sin(5 * x[:, 0]) + x[:, 1] ** 2
    p = rng.random((8, 2))
    noisy = GP(x, y + 0.2 * rng.normal(size=20), restarts=1)
    acq = LogNEI(noisy, rng=np.random.default_rng(0))
    value, grad = acq.value_and_grad(p)
    np.testing.assert_allclose(value, acq(p), rtol=1e-12)
    h = 1e-6
    fd = np.stack([(acq(p + e) - acq(p - e)) / (2 * h) for e in np.eye(2) * h], axis=1)
    np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-6)
    # noise-free evaluations: every sample of the baseline is the data, so NEI is EI on the best value
    exact = GP(x, y, noise=0.0, restarts=1)
    p = np.clip(np.vstack([p, x[np.argmin(y)] + 0.05 * rng.normal(size=(6, 2))]), 0, 1)   # some near the best
    mu, sd = exact.predict(p)
    ref = log_ei(mu, sd, y.min()) - np.log(exact.y_std)            # NEI is in standardised units
    got = LogNEI(exact, rng=np.random.default_rng(0))(p)
    sel = ref > -20
    assert sel.sum() >= 2
    np.testing.assert_allclose(got[sel], ref[sel], rtol=1e-4)
    np.testing.assert_allclose(got, ref, rtol=2e-3)                 # deep tail: jitter-level differences
    # batch awareness: a pending design lowers NEI at and around itself
    xp = p[:1]
    with_pending = LogNEI(noisy, xp, rng=np.random.default_rng(0))
    assert with_pending(xp)[0] < acq(xp)[0] - 0.5


def _noisy_1d(x):
    return (x - 0.3) ** 2 * 4.0 - 0.25 * np.cos(12 * x)


def test_the_recommendation_converges_on_a_noisy_1d_problem():
    # noise sd 0.1 on a function whose values span ~1.5: the recommendation's true regret must fall to a
    # fraction of the noise (measured: 0.0001-0.0165 at 30 evaluations in seeds 0-5; at 10: up to 0.2)
    space = Space([Real("x", 0.0, 1.0)])
    grid = np.linspace(0, 1, 20001)
    f_opt = _noisy_1d(grid).min()
    regret = {10: [], 30: []}
    for seed in range(3):
        opt = BayesianOptimizer(space, seed=seed)
        rng = np.random.default_rng(100 + seed)
        while len(opt.designs) < 30:
            d = opt.ask(1)[0]
            opt.tell(d, float(_noisy_1d(d["x"]) + 0.1 * rng.normal()))
            if len(opt.designs) in regret:
                regret[len(opt.designs)].append(_noisy_1d(opt.recommend()["design"]["x"]) - f_opt)
        rec = opt.recommend()
        assert regret[30][-1] < 0.03, (seed, regret)
        # the reported uncertainty covers the true latent value
        assert abs(rec["mean"] - _noisy_1d(rec["design"]["x"])) < 3 * rec["sd"] + 1e-3, rec
        assert rec["evaluations"] >= 1 and rec["over"] == "evaluated"
        space_rec = opt.recommend(over="space")
        assert _noisy_1d(space_rec["design"]["x"]) - f_opt < 0.03 and space_rec["mean"] <= rec["mean"] + 1e-9
    assert sum(regret[30]) <= sum(regret[10]), regret


def test_known_noise_optimizer_state_round_trip_and_errors():
    prob = B.get("branin", noise=0.5)
    opt = BayesianOptimizer(prob.space, seed=8, noise="known", n_samples=64)
    rng = np.random.default_rng(0)
    while len(opt.designs) < 10:
        ds = opt.ask(2)
        opt.tell(ds, [prob(d, rng) for d in ds], noise=[0.25, 0.25])
    opt.tell(opt.designs[0], prob(opt.designs[0], rng), noise=0.25)          # a replicate
    pending = opt.ask(2)
    state = json.loads(json.dumps(opt.to_dict()))
    assert state["noises"] == [0.25] * 11
    assert state["options"]["noise"] == "known" and state["options"]["acquisition"] == "nei"
    assert state["options"]["n_samples"] == 64
    again = BayesianOptimizer.from_dict(state)
    assert again.noise == "known" and again.noises == opt.noises and again.pending == pending
    assert again.ask(2) == opt.ask(2)
    assert again.recommend() == opt.recommend()
    with pytest.raises(ValueError, match="has no noise variance; this optimiser has noise = 'known'"):
        opt.tell(pending[0], 3.0)
    with pytest.raises(ValueError, match="noise = -0.1; a noise variance must be a finite number >= 0"):
        opt.tell(pending[0], 3.0, noise=-0.1)
    with pytest.raises(ValueError, match="noise = 'guess'; allowed: learned, known"):
        BayesianOptimizer(prob.space, noise="guess")
    with pytest.raises(ValueError, match="recommend: over = 'all'; allowed: evaluated, space"):
        opt.recommend(over="all")
    with pytest.raises(ValueError, match="no successful evaluation yet"):
        RandomSearch(prob.space).recommend()
