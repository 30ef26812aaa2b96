"""diffcalo.design_gradient: the continuous stack-thickness problem and its exact gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcalo.design_gradient import stack_problem


@pytest.fixture(scope="module")
def prob():
    return stack_problem("shashlik")


KEY, N = jax.random.key(3), 4000


@pytest.fixture(scope="module")
def value_grad(prob):
    """Value and autodiff gradient in psi of the 4000-cluster estimate (key 3) for calibration c: one
    compilation for every linear calibration of the module."""
    return jax.jit(jax.value_and_grad(lambda q, c: prob.expected(q, c, KEY, n=N)))


def test_stack_problem_gradient_matches_finite_differences(prob, value_grad):
    cal = jnp.array([1.05])
    psi = np.array([1.2, 3.0])
    vg = lambda q: value_grad(q, cal)                        # noqa: E731
    f = lambda q: vg(q)[0]                                   # noqa: E731
    g = np.asarray(vg(jnp.asarray(psi, jnp.float32))[1])
    for i, h in ((0, 0.02), (1, 0.05)):
        e = np.eye(2)[i] * h
        fd = (float(f(jnp.asarray(psi + e, jnp.float32))) - float(f(jnp.asarray(psi - e, jnp.float32)))) / (2 * h)
        assert fd == pytest.approx(g[i], rel=0.05, abs=2e-4), (i, fd, g)
    # physics: a thin absorber (11.9 X0 deep here) leaks, so thickening it improves the resolution
    assert g[0] < 0


def test_stack_problem_rows_and_calibration(prob):
    psi, x, y = prob.simulate_rows(jax.random.key(0), [prob.psi0, (1.0, 2.5)], 3000)
    assert psi.shape == (6000, 2) and x.shape == (6000, 3) and y.shape == (6000, prob.n_sections)
    assert np.all(np.exp(x[:, 0]) >= 1.0 - 1e-5) and np.all(np.exp(x[:, 0]) <= 50.0 + 1e-4)
    # nominal stack: 3 x 3 window of 40.4 mm cells holds ~ 95 % of the EM-scale energy, less when thinner
    assert 0.9 < y[:3000].mean() < 1.0 and y[3000:].mean() < y[:3000].mean() - 0.05
    cal = prob.fit_calibration(prob.psi0, jax.random.key(1), n=3000)          # same shapes: no recompilation
    assert cal[0] == pytest.approx(1 / y[:3000].mean(), rel=0.02)
    assert prob.depth_constraint(prob.psi0) == pytest.approx(0.0)
    assert prob.depth_constraint((1.0, 2.5)) < 0
    with pytest.raises(ValueError, match="homogeneous"):
        stack_problem("demo-pbwo4")


def test_frozen_calibration_gradient_is_the_total_derivative(prob, value_grad):
    """The stationarity argument of DESIGN.md, exactly, for the linear calibration: with common random
    numbers, d/dpsi of the refitted optimum L*(psi) = min_w mean (w . y(psi) - 1)^2 (finite differences,
    w refitted at every psi) equals the partial derivative with w frozen at w*(psi0) (autodiff)."""
    n = N
    rows = jax.jit(lambda q: prob._rows(q, KEY, n)[1])

    def envelope(q):
        y = np.asarray(rows(jnp.asarray(q, jnp.float32)), float)
        w, *_ = np.linalg.lstsq(y, np.ones(n), rcond=None)
        return float(np.mean((y @ w - 1.0) ** 2)), w

    psi = np.array([1.2, 3.0])
    _, w0 = envelope(psi)
    g = np.asarray(value_grad(jnp.asarray(psi, jnp.float32), jnp.asarray(w0, jnp.float32))[1])
    for i, h in ((0, 0.02), (1, 0.05)):
        e = np.eye(2)[i] * h
        fd = (envelope(psi + e)[0] - envelope(psi - e)[0]) / (2 * h)
        assert fd == pytest.approx(g[i], rel=0.05, abs=2e-4), (i, fd, g)


def test_energy_network_corrects_leakage_and_differentiates(prob, value_grad):
    """The non-linear reconstruction: on a leaky stack (1 mm Pb, 11.9 X0) the energy network beats the
    linear calibration clearly (measured: 0.0134 vs 0.0170, i.e. 11.6 % vs 13.0 % rms), and the frozen
    network's design gradient matches finite differences."""
    psi = np.array([1.0, 2.5])
    net = prob.fit_network(psi, jax.random.key(1), 20000)
    lin = prob.fit_calibration(psi, jax.random.key(1), 20000)
    vl = float(value_grad(jnp.asarray(psi, jnp.float32), jnp.asarray(lin, jnp.float32))[0])
    vg = jax.jit(jax.value_and_grad(lambda q: prob.expected(q, net, KEY, n=N)))          # the same clusters
    vn, g = vg(jnp.asarray(psi, jnp.float32))
    assert float(vn) < 0.9 * vl
    g, h = np.asarray(g), 0.02
    fd = (float(vg(jnp.asarray(psi + [h, 0], jnp.float32))[0]) - float(vg(jnp.asarray(psi - [h, 0], jnp.float32))[0])) / (2 * h)
    assert fd == pytest.approx(g[0], rel=0.05)
    assert g[0] < 0                         # still: a thicker absorber leaks less


# ---- cell size, pile-up and the time window ------------------------------------------------------------

FOUR = ("absorber_mm", "active_mm", "cell_mm", "window_sigmas")


@pytest.fixture(scope="module")
def pileup_prob():
    from diffcalo.pileup import PileupModel

    return stack_problem("shashlik", parameters=FOUR, pileup=PileupModel.default(), position_mm=(1500.0, 0.0),
                         energy_gev=(2.0, 50.0))


def test_pileup_problem_layout_and_errors(pileup_prob):
    p = pileup_prob
    assert p.psi0 == (2.0, 4.0, 40.4, 3.0) and p.bounds[2] == (40.4, 121.2) and p.bounds[3] == (0.5, 10.0)
    assert p.position_mm == (1515.0, 60.6) and p.huber_delta == 0.1 and p.pedestal      # the nearest module centre
    with pytest.raises(ValueError, match="'window_sigmas' but pileup is None"):
        stack_problem("shashlik", parameters=FOUR)
    with pytest.raises(ValueError, match="must be \\['absorber_mm', 'active_mm'\\] followed by"):
        stack_problem("shashlik", parameters=("absorber_mm", "active_mm", "window_sigmas", "cell_mm"))
    with pytest.raises(ValueError, match="clear of the beam hole"):
        stack_problem("shashlik", parameters=FOUR[:3], pileup=p.pileup, position_mm=(300.0, 0.0))


def test_pileup_grows_with_cell_and_window_and_the_window_gradient(pileup_prob):
    """With pile-up (40 collisions, 1.5 m from the beam): the window collects more background energy
    the larger its cells and the wider its time window; the relaxed window's autodiff derivative in
    k matches central differences of the same estimate (the window does not change any random draw); the
    IRLS calibration minimises the pseudo-Huber loss (any small change of a weight raises it)."""
    p = pileup_prob
    resp = {}
    for cell, k in ((40.4, 1.5), (40.4, 10.0), (121.2, 10.0)):
        _, x, y = p.simulate_rows(jax.random.key(5), np.array([2.0, 4.0, cell, k]), 2000)
        resp[cell, k] = float(np.mean(y.sum(axis=1) * np.exp(x[:, 0]) - np.exp(x[:, 0])))       # GeV above E
    assert resp[40.4, 10.0] > resp[40.4, 1.5] + 0.5 and resp[121.2, 10.0] > resp[40.4, 10.0] + 5.0, resp
    psi = np.array([2.0, 4.0, 40.4, 3.0])
    _, x, y = p.simulate_rows(jax.random.key(6), psi, 4000)
    w = p.calibrate(x, y)
    assert w.shape == (2,) and w[1] < 0                        # a weight and a (subtracted) pedestal
    base = float(np.mean(np.asarray(p.loss(p.residual(w, x, y)))))
    for i in range(2):
        for s in (-1, 1):
            assert float(np.mean(np.asarray(p.loss(p.residual(w + s * 0.02 * np.eye(2)[i] * abs(w[i]), x, y))))) > base
    vg = jax.jit(jax.value_and_grad(lambda q: p.expected(q, jnp.asarray(w, jnp.float32), KEY, n=1000)))
    g = np.asarray(vg(jnp.asarray(psi, jnp.float32))[1])
    h = 0.05                                        # the relaxed edge is curved: a short step
    fd = (float(vg(jnp.asarray(psi + h * np.eye(4)[3], jnp.float32))[0]) -
          float(vg(jnp.asarray(psi - h * np.eye(4)[3], jnp.float32))[0])) / (2 * h)
    assert fd == pytest.approx(g[3], rel=0.05, abs=1e-4), (fd, g)
    assert np.all(np.isfinite(g)) and g[3] != 0.0


def test_cell_size_gradient_matches_finite_differences():
    """The cell size as a design parameter (no pile-up): autodiff through the relaxed simulator (the
    window's edges and the impact cell's centre move with it) against central differences; physics:
    larger cells contain more of the shower in the 3 x 3 window, so the derivative is negative."""
    p = stack_problem("shashlik", parameters=FOUR[:3])
    psi = np.array([2.0, 4.0, 45.0])
    vg = jax.jit(jax.value_and_grad(lambda q: p.expected(q, jnp.array([1.03]), KEY, n=N)))
    g = np.asarray(vg(jnp.asarray(psi, jnp.float32))[1])
    h = 0.5
    fd = (float(vg(jnp.asarray(psi + h * np.eye(3)[2], jnp.float32))[0]) -
          float(vg(jnp.asarray(psi - h * np.eye(3)[2], jnp.float32))[0])) / (2 * h)
    assert fd == pytest.approx(g[2], rel=0.03), (fd, g)
    assert g[2] < 0
