r"""Readout: fluctuations of cell energies, photo-electron counts, cell times and deposit merging.

Fluctuations (:func:`fluctuate`). ``relaxed`` (smooth, differentiable): each cell gets one Gaussian
with variance a^2 e + e / N_pe + sigma_noise^2 (sampling, photo-statistics, noise; e in GeV), and
the cluster is scaled by (1 + b z) for the constant term b. ``realistic``: photo-electrons are
Poisson counts, noise is Gaussian, and cells below the technology's threshold (or below zero) read
zero. The sampling fluctuation is log-normal with the same mean and variance as the relaxed
Gaussian (non-negative, reparameterised), and photo-electron counts come from
:func:`poisson_counts` (exact below 12 photo-electrons, normal with continuity correction above).

Timing: :func:`cell_time_jitter` adds the technology's sigma_t = A/sqrt(E) (+) B;
:func:`combine_deposits` merges several deposits in one cell (energy sum, energy-weighted time).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["MODES", "fluctuate", "poisson_counts", "POISSON_EXACT_BELOW", "cell_time_jitter", "time_resolution_ns", "combine_deposits",
           "SPEED_OF_LIGHT_MM_PER_NS", "TIME_JITTER_FLOOR_GEV"]

#: Readout modes: smooth and differentiable, or discrete and zero-suppressed.
MODES = ("relaxed", "realistic")

SPEED_OF_LIGHT_MM_PER_NS = 299.792458
#: Below this cell energy (GeV) the stochastic time jitter is evaluated at this energy.
TIME_JITTER_FLOOR_GEV = 1e-3


def cell_time_jitter(key, t_mean, energy, a_ns, b_ns):
    r"""Cell times with the technology's resolution :math:`\sigma_t = A/\sqrt{E} \oplus B` (E in GeV).

    Args:
        key: PRNG key.
        t_mean: [...] true cell times (ns).
        energy: [...] cell energies (GeV), broadcasting with ``t_mean``; energies below
            :data:`TIME_JITTER_FLOOR_GEV` use the floor.
        a_ns, b_ns: A (ns GeV^0.5) and B (ns), broadcasting.
    """
    sigma = time_resolution_ns(energy, a_ns, b_ns)
    return t_mean + sigma * jax.random.normal(key, t_mean.shape, dtype=t_mean.dtype)


def time_resolution_ns(energy, a_ns, b_ns):
    r"""A cell's time resolution :math:`\sigma_t = A/\sqrt{E} \oplus B` (ns; E in GeV, floored at
    :data:`TIME_JITTER_FLOOR_GEV`); jnp or numpy arrays, broadcasting."""
    e = jnp.maximum(energy, TIME_JITTER_FLOOR_GEV)
    return jnp.sqrt(a_ns * a_ns / e + b_ns * b_ns)


def combine_deposits(energies, times, axis: int = -1):
    r"""Cells with several deposits: total energy and energy-weighted mean time along ``axis``.

    .. math:: E = \sum_j E_j, \qquad t = \sum_j t_j E_j / \sum_j E_j

    (the LHCb convention for overlapping deposits); a cell without energy gets t = 0.
    """
    total = jnp.sum(energies, axis=axis)
    weighted = jnp.sum(energies * times, axis=axis)
    return total, jnp.where(total > 0, weighted / jnp.where(total > 0, total, 1.0), 0.0)



def fluctuate(mean, tab, key, mode):
    """Readout fluctuations of cell energies ``mean`` [L, Ny, Nx, n] (see module docstring); ``tab``
    holds the per-cell region rows (batch last), ``mode`` is one of :data:`MODES`."""
    a = tab["sampling_term"]
    noise = tab["noise_gev"]
    const = jnp.sqrt(tab["constant_term"] ** 2 + tab["cal_constant_term"] ** 2)
    k_cell, k_const, k_pe, k_noise = jax.random.split(key, 4)
    z_const = jax.random.normal(k_const, mean.shape[-1:], dtype=mean.dtype)
    scale = 1.0 + const * z_const
    if mode == "relaxed":
        inv_ly = tab["inv_light_yield"]
        e = jnp.maximum(mean, 0.0)
        var = (a * a + inv_ly) * e + noise * noise
        sd = jnp.sqrt(jnp.where(var > 0, var, 1.0)) * (var > 0)
        z = jax.random.normal(k_cell, mean.shape, dtype=mean.dtype)
        return (mean + sd * z) * scale
    # realistic: log-normal sampling fluctuation with the same mean and variance (never negative),
    # discrete photo-electrons, Gaussian noise, constant term, zero suppression.
    e = jnp.maximum(mean, 0.0)
    rel_var = a * a / jnp.where(e > 0, e, 1.0)
    sigma2 = jnp.log1p(rel_var)
    z = jax.random.normal(k_cell, mean.shape, dtype=mean.dtype)
    e = e * jnp.exp(jnp.sqrt(sigma2) * z - 0.5 * sigma2)
    ly = tab["light_yield"]
    has_ly = ly > 0
    n_pe = poisson_counts(k_pe, jnp.where(has_ly, e * ly, 0.0))
    e = jnp.where(has_ly, n_pe / jnp.where(has_ly, ly, 1.0), e)
    e = (e + noise * jax.random.normal(k_noise, mean.shape, dtype=mean.dtype)) * scale
    thr = tab["threshold_gev"]
    return jnp.where(e > jnp.maximum(thr, 0.0), e, 0.0)


#: Below this mean the photo-electron count is drawn by exact inversion of the Poisson CDF.
POISSON_EXACT_BELOW = 12.0
_POISSON_TERMS = 40


def poisson_counts(key, lam):
    r"""Poisson counts with mean ``lam`` (any shape), vectorised without rejection loops.

    Exact inversion of the CDF (``_POISSON_TERMS`` terms; the tail beyond is < 1e-9) for
    lam < :data:`POISSON_EXACT_BELOW`; above, the normal approximation with continuity correction
    floor(lam + sqrt(lam) z + 1/2), clipped at 0 (its variance is lam + 1/12, within 1 % for lam >= 12).
    Returned as floats.
    """
    k_u, k_z = jax.random.split(key)
    u = jax.random.uniform(k_u, lam.shape, dtype=lam.dtype)
    small = jnp.minimum(lam, POISSON_EXACT_BELOW)
    term = jnp.exp(-small)
    cdf = term
    count = jnp.zeros_like(lam)
    for k in range(1, _POISSON_TERMS):
        count = count + (u > cdf)
        term = term * small / k
        cdf = cdf + term
    z = jax.random.normal(k_z, lam.shape, dtype=lam.dtype)
    big = jnp.maximum(jnp.floor(lam + jnp.sqrt(lam) * z + 0.5), 0.0)
    return jnp.where(lam < POISSON_EXACT_BELOW, count, big)

