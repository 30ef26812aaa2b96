r"""Acquisition functions (minimisation) on GP posteriors.

Log expected improvement. With incumbent f* and posterior N(mu, s^2), z = (f* - mu) / s and
EI = s h(z), h(z) = phi(z) + z Phi(z). ``log_ei`` computes log EI without underflow far below the
incumbent (Ament et al., "Unexpected Improvements to Expected Improvement", NeurIPS 2023):

- z > -1: log h(z) directly;
- -1/sqrt(eps) < z <= -1: log h(z) = log phi(z) + log1p(-|z| sqrt(pi/2) erfcx(|z|/sqrt 2))
  (``log1mexp`` form: h(z) = phi(z) (1 - |z| Phi(z)/phi(z)), Mills' ratio via erfcx);
- z <= -1/sqrt(eps): the asymptotic log phi(z) - 2 log|z|.

UCB for minimisation is the lower confidence bound mu - beta^(1/2) s (returned negated, so that
larger is better for every acquisition here).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erfcx, log_ndtr

__all__ = ["log_h", "log_ei", "log_ei_grad", "lcb", "ACQUISITIONS"]

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_BIG = 1.0 / math.sqrt(np.finfo(float).eps)


def log_h(z):
    """log(phi(z) + z Phi(z)), stable for all z."""
    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    a = z > -1.0
    za = z[a]
    out[a] = np.log(np.exp(-0.5 * za * za - _LOG_SQRT_2PI) + za * np.exp(log_ndtr(za)))
    b = (~a) & (z > -_BIG)
    zb = -z[b]
    log_phi = -0.5 * zb * zb - _LOG_SQRT_2PI
    out[b] = log_phi + np.log1p(-zb * math.sqrt(math.pi / 2) * erfcx(zb / math.sqrt(2)))
    c = z <= -_BIG
    zc = -z[c]
    out[c] = -0.5 * zc * zc - _LOG_SQRT_2PI - 2.0 * np.log(zc)
    return out


def log_ei(mu, sd, best):
    """log expected improvement below ``best`` (minimisation); sd > 0."""
    sd = np.maximum(np.asarray(sd, dtype=float), 1e-12)
    return np.log(sd) + log_h((best - np.asarray(mu, dtype=float)) / sd)


def log_ei_grad(mu, sd, dmu, dsd, best):
    """log EI and its gradient from the posterior's (``dmu``, ``dsd`` [m, d]): d log h / dz = Phi(z) / h(z)."""
    sd = np.maximum(np.asarray(sd, dtype=float), 1e-12)
    z = (best - np.asarray(mu, dtype=float)) / sd
    lh = log_h(z)
    dlh = np.exp(log_ndtr(z) - lh)
    value = np.log(sd) + lh
    grad = (dlh / sd)[:, None] * (-dmu) + ((1.0 - dlh * z) / sd)[:, None] * dsd
    return value, grad


def lcb(mu, sd, beta: float = 4.0):
    """Negated lower confidence bound -(mu - sqrt(beta) sd): larger is better."""
    return -(np.asarray(mu, dtype=float) - math.sqrt(beta) * np.asarray(sd, dtype=float))


ACQUISITIONS = ("log_ei", "ucb")
