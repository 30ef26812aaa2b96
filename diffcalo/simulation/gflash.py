r"""Grindhammer-Peters (GFlash) parametrisation of electromagnetic showers, in jax.numpy.

Elementwise functions of shower quantities; the simulator calls them on whole batches (batch on the last axis). Energies in GeV, depths in radiation
lengths t, radii in Moliere radii.

References:
    G. Grindhammer, S. Peters, "The parameterized simulation of electromagnetic showers in
    homogeneous and sampling calorimeters", hep-ex/0001020; Geant4 GFlash
    (GFlashHomoShowerParameterisation, GFlashSamplingShowerParameterisation).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.special import gammainc, ndtri

from diffcalo.materials import HOMOGENEOUS_FS

__all__ = ["longitudinal_parameters", "sample_shape", "longitudinal_fractions", "radial_parameters",
           "longitudinal_pdf", "longitudinal_cdf", "gamma_quantile_depth"]

#: How much deeper a photon shower's maximum lies than an electron shower's of the same energy (X0):
#: the photon converts after 9/7 X0 on average, and its pair shares the energy, so each half reaches
#: its maximum ln 2 earlier than one shower of the full energy would: 9/7 - ln 2 = 0.59 X0. (The PDG's
#: rule of thumb C_gamma - C_e = 1.0, used before, puts photon showers 0.3-0.5 X0 deeper than Geant4
#: 11.4 does in the W/Si stack at 3-50 GeV; measured with the shipped shower libraries.)
PHOTON_DEPTH_SHIFT_X0 = 9.0 / 7.0 - 0.6931471805599453


def longitudinal_parameters(energy_gev, ec_mev, z_eff, sampling_frequency, e_over_mip, is_photon):
    r"""Mean and covariance of (ln T, ln alpha) for one shower in a sampling calorimeter.

    .. math::
        \langle\ln T_{hom}\rangle = \ln(\ln y - 0.812), \quad
        \langle\ln\alpha_{hom}\rangle = \ln(0.81 + (0.458 + 2.26/Z)\ln y) \\
        \langle\ln T_{sam}\rangle = \ln(e^{\langle\ln T_{hom}\rangle} - 0.55/F_S - 0.69(1-\hat e)), \quad
        \langle\ln\alpha_{sam}\rangle = \ln(e^{\langle\ln\alpha_{hom}\rangle} - 0.476/F_S) \\
        \sigma_{\ln T} = 1/(-2.5 + 1.25\ln y), \quad \sigma_{\ln\alpha} = 1/(-0.82 + 0.79\ln y),
        \quad \rho = 0.784 - 0.023\ln y

    with y = E/E_c (homogeneous media, F_S = :data:`~diffcalo.materials.HOMOGENEOUS_FS`: the
    homogeneous sigmas 1/(-1.4 + 1.26 ln y), 1/(-0.58 + 0.86 ln y) and rho = 0.705 - 0.023 ln y). Photons shift T by :data:`PHOTON_DEPTH_SHIFT_X0`. Sigmas are clamped to
    <= 0.5 as in Geant4, and the logs are guarded so low energies give finite values.

    Returns:
        (mean_ln_t, mean_ln_alpha, sigma_ln_t, sigma_ln_alpha, rho).
    """
    ln_y = jnp.log(energy_gev * 1000.0 / ec_mev)
    ln_y = jnp.maximum(ln_y, 1.5)  # y >= 4.5: keeps every log below defined (E >~ 40 MeV)
    t_hom = ln_y - 0.812 + jnp.where(is_photon, PHOTON_DEPTH_SHIFT_X0, 0.0)
    alpha_hom = 0.81 + (0.458 + 2.26 / z_eff) * ln_y
    t_sam = jnp.maximum(t_hom - 0.55 / sampling_frequency - 0.69 * (1.0 - e_over_mip), 0.5)
    alpha_sam = jnp.maximum(alpha_hom - 0.476 / sampling_frequency, 1.2)
    homogeneous = sampling_frequency >= HOMOGENEOUS_FS
    sigma_t = 1.0 / jnp.maximum(jnp.where(homogeneous, -1.4 + 1.26 * ln_y, -2.5 + 1.25 * ln_y), 2.0)
    sigma_a = 1.0 / jnp.maximum(jnp.where(homogeneous, -0.58 + 0.86 * ln_y, -0.82 + 0.79 * ln_y), 2.0)
    rho = jnp.clip(jnp.where(homogeneous, 0.705, 0.784) - 0.023 * ln_y, -0.99, 0.99)
    return jnp.log(t_sam), jnp.log(alpha_sam), sigma_t, sigma_a, rho


def sample_shape(mean_ln_t, mean_ln_alpha, sigma_t, sigma_a, rho, z1, z2):
    r"""Correlated log-normal (T, alpha) of one shower from two standard normals (reparameterised).

    .. math::
        \ln T = \langle\ln T\rangle + \sigma_T(\sqrt{(1+\rho)/2}\,z_1 + \sqrt{(1-\rho)/2}\,z_2), \quad
        \ln\alpha = \langle\ln\alpha\rangle + \sigma_\alpha(\sqrt{(1+\rho)/2}\,z_1 - \sqrt{(1-\rho)/2}\,z_2)

    Geant4's guards T >= 1 and alpha >= 1.1 are applied.

    Returns:
        (T in X0, alpha, beta = (alpha - 1) / T).
    """
    cp = jnp.sqrt((1.0 + rho) / 2.0)
    cm = jnp.sqrt((1.0 - rho) / 2.0)
    t = jnp.maximum(jnp.exp(mean_ln_t + sigma_t * (cp * z1 + cm * z2)), 1.0)
    alpha = jnp.maximum(jnp.exp(mean_ln_alpha + sigma_a * (cp * z1 - cm * z2)), 1.1)
    return t, alpha, (alpha - 1.0) / t


def longitudinal_pdf(t, alpha, beta):
    r"""(1/E) dE/dt = beta (beta t)^(alpha-1) e^(-beta t) / Gamma(alpha)."""
    from jax.scipy.special import gammaln

    bt = beta * t
    return jnp.exp((alpha - 1.0) * jnp.log(jnp.maximum(bt, 1e-30)) - bt - gammaln(alpha)) * beta


def longitudinal_fractions(t_edges, alpha, beta):
    """Fractions of the shower energy between consecutive depths ``t_edges`` [S+1] (in X0): [S]."""
    cdf = gammainc(alpha, beta * jnp.maximum(t_edges, 0.0))
    return jnp.diff(cdf)


def longitudinal_cdf(t_edges, alpha, beta):
    """P(alpha, beta t) at depths ``t_edges`` (X0), with no ``gammainc`` call (and a safe gradient) at t = 0."""
    x = beta * jnp.maximum(t_edges, 0.0)
    positive = x > 0
    return jnp.where(positive, gammainc(alpha, jnp.where(positive, x, 1.0)), 0.0)


def gamma_quantile_depth(q, alpha, beta):
    r"""Approximate depth t where the Gamma(alpha, beta) CDF reaches ``q`` (Wilson-Hilferty).

    .. math:: t_q \approx \frac{\alpha}{\beta}\left(1 - \frac{1}{9\alpha} + \frac{\Phi^{-1}(q)}{3\sqrt{\alpha}}\right)^3

    Accurate to a few per cent of t for alpha >~ 2, which is what placing quadrature nodes needs.
    """
    z = ndtri(jnp.clip(q, 1e-6, 1.0 - 1e-6))
    base = jnp.maximum(1.0 - 1.0 / (9.0 * alpha) + z / (3.0 * jnp.sqrt(alpha)), 0.0)
    return alpha / beta * base * base * base


def radial_parameters(energy_gev, tau, z_eff, sampling_frequency, e_over_mip):
    r"""Core and tail radii (in R_M) and core fraction at relative depth tau = t / T.

    .. math::
        R_C = z_1 + z_2\tau, \quad R_T = k_1(e^{k_3(\tau-k_2)} + e^{k_4(\tau-k_2)}), \quad
        p = p_1 \exp\left(\frac{p_2-\tau}{p_3} - e^{(p_2-\tau)/p_3}\right)

    with the homogeneous coefficients of Grindhammer-Peters (z1, z2, k1-k4, p1-p3 as coded below) and the sampling corrections
    R_C -= 0.0203(1 - e) - 0.0397 e^{-tau}/F_S, R_T -= 0.14(1 - e) + 0.495 e^{-tau}/F_S,
    p += (1 - e)(0.348 - 0.642 exp(-(tau-1)^2)/F_S). Results are clamped to R_C >= 0.005,
    R_T >= R_C and 0 <= p <= 1.

    Returns:
        (r_core, r_tail, p_core).
    """
    ln_e = jnp.log(energy_gev)
    z1 = 0.0251 + 0.00319 * ln_e
    z2 = 0.1162 - 0.000381 * z_eff
    r_core = z1 + z2 * tau
    k1 = 0.659 - 0.00309 * z_eff
    k2 = 0.645
    k3 = -2.59
    k4 = 0.3585 + 0.0412 * ln_e
    r_tail = k1 * (jnp.exp(k3 * (tau - k2)) + jnp.exp(k4 * (tau - k2)))
    p1 = 2.632 - 0.00094 * z_eff
    p2 = 0.401 + 0.00187 * z_eff
    p3 = 1.313 - 0.0686 * ln_e
    arg = (p2 - tau) / p3
    p = p1 * jnp.exp(arg - jnp.exp(arg))
    one_minus_e = 1.0 - e_over_mip
    e_tau = jnp.exp(-tau)
    r_core = r_core - 0.0203 * one_minus_e + 0.0397 * e_tau / sampling_frequency
    r_tail = r_tail - 0.14 * one_minus_e - 0.495 * e_tau / sampling_frequency
    p = p + one_minus_e * (0.348 - 0.642 * jnp.exp(-((tau - 1.0) ** 2)) / sampling_frequency)
    r_core = jnp.maximum(r_core, 0.005)
    r_tail = jnp.maximum(r_tail, r_core)
    return r_core, r_tail, jnp.clip(p, 0.0, 1.0)
