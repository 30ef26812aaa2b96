"""The closed-form cell integral of the radial profile and the longitudinal profile."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from diffcalo.simulation import gflash
from diffcalo.simulation.cells import corner_integral, fast_arctan, grid_integral


def _density(y, x, r):
    return r * r / (np.pi * (x * x + y * y + r * r) ** 2)


@pytest.mark.parametrize("x1, x2, y1, y2, r", [
    (-2.0, 3.0, -1.0, 4.0, 1.3),      # cell around the axis
    (5.0, 9.0, -3.0, 1.0, 2.0),       # off-axis
    (0.0, 4.0, 0.0, 4.0, 0.05),       # axis on a corner, narrow core
    (-20.0, -12.0, 7.0, 15.0, 6.0),   # far tail cell
])
def test_cell_integral_equals_quadrature(x1, x2, y1, y2, r):
    with jax.enable_x64(True):
        cells = grid_integral(jnp.array([x1, x2]), jnp.array([y1, y2]), jnp.array(r))
        closed = float(cells[0, 0])
    quad, err = integrate.dblquad(_density, x1, x2, y1, y2, args=(r,), epsabs=1e-12, epsrel=1e-12)
    assert closed == pytest.approx(quad, abs=1e-6)
    assert abs(closed - quad) < 1e-9  # in float64 it is exact to quadrature precision


def test_cell_integral_float32_fast_arctan_precision():
    edges = jnp.linspace(-10, 10, 11, dtype=jnp.float32)
    f32 = np.asarray(grid_integral(edges, edges, jnp.float32(1.7)))
    with jax.enable_x64(True):
        f64 = np.asarray(grid_integral(jnp.asarray(edges, jnp.float64), jnp.asarray(edges, jnp.float64),
                                       jnp.float64(1.7)))
    assert np.max(np.abs(f32 - f64)) < 2e-6


def test_fast_arctan_accuracy():
    x = jnp.linspace(-50, 50, 200001, dtype=jnp.float32)
    assert float(jnp.max(jnp.abs(fast_arctan(x) - jnp.arctan(x)))) < 2.5e-6


def test_cells_sum_to_one_over_large_window():
    with jax.enable_x64(True):
        r = 1.0
        edges = jnp.linspace(-2000.0, 2000.0, 41)
        total = float(grid_integral(edges, edges, jnp.array(r)).sum())
        # analytic loss outside the square of half-width H is < R^2 / H^2 (circle inscribed)
        assert total == pytest.approx(1.0, abs=1e-6)
        assert float(corner_integral(jnp.array(1e9), jnp.array(1e9), r)) == pytest.approx(0.25, abs=1e-8)


def test_longitudinal_profile_integrates_to_one():
    with jax.enable_x64(True):
        alpha, beta = jnp.array(4.2), jnp.array(0.55)
        t = jnp.linspace(0.0, 80.0, 80001)
        pdf = gflash.longitudinal_pdf(t, alpha, beta)
        assert float(jnp.trapezoid(pdf, t)) == pytest.approx(1.0, abs=1e-6)
        frac = gflash.longitudinal_fractions(jnp.array([0.0, 3.0, 7.5, 80.0]), alpha, beta)
        assert float(frac.sum()) == pytest.approx(1.0, abs=1e-10)
        # each slab fraction equals the integral of the pdf over the slab
        m = (t >= 3.0) & (t <= 7.5)
        assert float(frac[1]) == pytest.approx(float(jnp.trapezoid(pdf[m], t[m])), abs=1e-6)


def test_sample_shape_reproduces_mean_and_correlation():
    key = jax.random.key(0)
    z = jax.random.normal(key, (2, 200_000))
    mlt, mla, st, sa, rho = gflash.longitudinal_parameters(
        jnp.array(50.0), 9.7, 70.0, 2.7, 0.65, jnp.array(False))
    t, alpha, _ = gflash.sample_shape(mlt, mla, st, sa, rho, z[0], z[1])
    lt, la = np.log(np.asarray(t)), np.log(np.asarray(alpha))
    assert lt.mean() == pytest.approx(float(mlt), abs=0.01)
    assert la.std() == pytest.approx(float(sa), rel=0.02)
    assert np.corrcoef(lt, la)[0, 1] == pytest.approx(float(rho), abs=0.01)


# ---- properties (hypothesis) ------------------------------------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_coord = st.floats(-60.0, 60.0, allow_nan=False)
_radius = st.floats(0.05, 30.0, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(a=_coord, b=_coord, split=_coord, r=_radius)
def test_cell_integral_is_additive_and_odd(a, b, split, r):
    """Splitting a cell in two conserves its content; F is odd in each argument; contents are in [0, 1]."""
    with jax.enable_x64(True):
        x1, x2 = min(a, b), max(a, b)
        s = min(max(split, x1), x2)
        ys = jnp.array([-7.0, 11.0])
        whole = float(grid_integral(jnp.array([x1, x2]), ys, jnp.array(r))[0, 0])
        parts = float(grid_integral(jnp.array([x1, s, x2]), ys, jnp.array(r)).sum())
        assert whole == pytest.approx(parts, abs=1e-12)
        assert -1e-15 <= whole <= 1.0 + 1e-15  # rounding of equal corner terms
        f = float(corner_integral(jnp.array(a), jnp.array(b), jnp.array(r)))
        assert float(corner_integral(jnp.array(-a), jnp.array(b), jnp.array(r))) == pytest.approx(-f, abs=1e-15)
        assert float(corner_integral(jnp.array(a), jnp.array(-b), jnp.array(r))) == pytest.approx(-f, abs=1e-15)
