"""diffcalo.design_gradient: the continuous stack-thickness problem and its exact gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcalo.design_gradient import stack_problem


@pytest.fixture(scope="module")
def prob():
    return stack_problem("shashlik")


def test_stack_problem_gradient_matches_finite_differences(prob):
    cal = np.array([1.05])
    key = jax.random.key(3)
    psi = np.array([1.2, 3.0])
    vg = jax.jit(jax.value_and_grad(lambda q: prob.expected(q, cal, key, n=4000)))     # one compilation
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
