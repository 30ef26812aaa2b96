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

Noisy expected improvement (:class:`LogNEI`). With noisy evaluations the incumbent is not a number: the
best latent value among the evaluated designs is itself uncertain, and correlated with the candidate.
NEI (Letham, Karrer, Ottoni & Bakshy, Bayesian Analysis 2019; BoTorch's qNEI) averages the improvement
over the joint posterior of the candidate and the baseline B (every evaluated design, replicates
aggregated, plus the pending designs of the batch):

    NEI(x) = E_{f_B} [ E_{f_x | f_B} [ max(0, min f_B - f_x) ] ]

The outer expectation is quasi-Monte Carlo over S joint posterior samples of the latent f_B (scrambled
Sobol normals, fixed per proposal so that NEI is a smooth deterministic function of x); the inner one is
analytic: given f_B the candidate's latent value is Gaussian, with the noise-free GP interpolation
mean k_xB K_BB^-1 f_B and variance C - k_xB K_BB^-1 k_Bx (every training design is in B, so conditioning
on f_B makes the noisy observations irrelevant), and the inner expectation is EI with incumbent min f_B.
It is computed in log form, log NEI = logmeanexp_s log EI_s (stable far below the incumbent, as
``log_ei``), with an analytic gradient. Pending designs enter B with their sampled (not believed) values,
so a batch built one design at a time maximises the batch's joint improvement greedily: the improvement of
{pending, x} over min f_B is (min f_B - min f_pending)^+ + (min(f_B, f_pending) - f_x)^+, whose second
term is what NEI with the pending designs in B measures.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import cho_solve, cholesky, solve_triangular
from scipy.special import erfcx, log_ndtr, logsumexp

__all__ = ["log_h", "log_ei", "log_ei_grad", "log_ei_parts", "lcb", "LogNEI", "ACQUISITIONS"]

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


def log_ei_parts(mu, sd, best):
    """log EI (broadcast over ``mu``, ``sd``, ``best``) and its partial derivatives with respect to mu and
    sd: d log h / dz = Phi(z) / h(z)."""
    sd = np.maximum(np.asarray(sd, dtype=float), 1e-12)
    z = (best - np.asarray(mu, dtype=float)) / sd
    shape = z.shape
    lh = log_h(z.ravel()).reshape(shape)
    dlh = np.exp(log_ndtr(z) - lh)
    return np.log(sd) + lh, -dlh / sd, (1.0 - dlh * z) / sd


def log_ei_grad(mu, sd, dmu, dsd, best):
    """log EI and its gradient from the posterior's (``dmu``, ``dsd`` [m, d])."""
    value, d_mu, d_sd = log_ei_parts(mu, sd, best)
    return value, d_mu[:, None] * dmu + d_sd[:, None] * dsd


class LogNEI:
    """log noisy expected improvement (module docstring) for minimisation, on a fitted
    :class:`~surrogates.gp.GP`.

    Args:
        gp: the fitted GP (unit-cube inputs).
        pending: encoded designs [p, d] asked but not yet evaluated (joined to the baseline).
        n_samples: quasi-MC samples of the baseline (a power of 2).
        rng: a ``numpy.random.Generator`` (the scrambling of the Sobol normals).
    """

    def __init__(self, gp, pending=None, *, n_samples: int = 128, rng=None):
        from scipy.stats import norm, qmc

        from surrogates.gp import matern52

        self.gp = gp
        self._matern = matern52
        base = gp.xu if pending is None or len(pending) == 0 else np.vstack([gp.xu, np.asarray(pending, float)])
        self.base = base
        nb = len(base)
        mu, cov = gp.predict(base, return_cov=True)
        mu = (mu - gp.y_mean) / gp.y_std
        cov = cov / gp.y_std ** 2
        lam, vec = np.linalg.eigh(0.5 * (cov + cov.T))
        root = vec * np.sqrt(np.maximum(lam, 0.0))
        rng = np.random.default_rng(rng)
        u = qmc.Sobol(nb, scramble=True, seed=rng).random(n_samples)
        z = norm.ppf(np.clip(u, 1e-10, 1 - 1e-10)).T                         # [nb, S]
        self.samples = mu[:, None] + root @ z                                # [nb, S] standardised
        self.best = self.samples.min(axis=0)                                 # [S]
        kbb = gp.c * matern52(base, base, gp.ls)
        jitter = 1e-10                                  # the GP's own (surrogates.gp), raised if needed
        for _ in range(8):
            try:
                self.L = cholesky(kbb + jitter * np.eye(nb), lower=True)
                break
            except np.linalg.LinAlgError:
                jitter = max(100 * jitter, 1e-8 * gp.c)
        self.coef = cho_solve((self.L, True), self.samples)                  # [nb, S]
        self.log_s = math.log(n_samples)

    def __call__(self, xs, n_samples: int | None = None):
        """log NEI at encoded designs ``xs`` [m, d] (standardised units: comparable within a proposal).
        ``n_samples``: use only the first samples (a power of 2: the first 2^k points of a Sobol sequence
        are themselves balanced), for a cheaper screening of a large candidate pool."""
        k = self.coef.shape[1] if n_samples is None else min(int(n_samples), self.coef.shape[1])
        xs = np.atleast_2d(xs)
        kx = self.gp.c * self._matern(xs, self.base, self.gp.ls)
        mean = kx @ self.coef[:, :k]
        v = solve_triangular(self.L, kx.T, lower=True)
        sd = np.sqrt(np.maximum(self.gp.c - (v * v).sum(0), 1e-12 * self.gp.c))
        value, _, _ = log_ei_parts(mean, sd[:, None], self.best[None, :k])
        return logsumexp(value, axis=1) - math.log(k)

    def screen(self, xs):
        """A cheaper log NEI for ranking a large pool: the first quarter of the samples (at least 16)."""
        return self(xs, n_samples=max(16, self.coef.shape[1] // 4))

    def value_and_grad(self, xs):
        """log NEI [m] and its gradient [m, d] with respect to each design's own coordinates."""
        xs = np.atleast_2d(xs)
        m0, dm0 = self._matern(xs, self.base, self.gp.ls, grad=True)
        k, dk = self.gp.c * m0, self.gp.c * dm0                              # [m, nb], [m, nb, d]
        mean = k @ self.coef                                                 # [m, S]
        v = solve_triangular(self.L, k.T, lower=True)                        # [nb, m]
        m, nb, d = dk.shape
        dv = solve_triangular(self.L, dk.transpose(1, 0, 2).reshape(nb, m * d), lower=True).reshape(nb, m, d)
        sd = np.sqrt(np.maximum(self.gp.c - (v * v).sum(0), 1e-12 * self.gp.c))
        dsd = -(v.T[:, :, None] * dv.transpose(1, 0, 2)).sum(1) / sd[:, None]
        value, d_mu, d_sd = log_ei_parts(mean, sd[:, None], self.best[None, :])
        out = logsumexp(value, axis=1)
        w = np.exp(value - out[:, None])                                     # softmax over samples
        # sum_s w d_mu d(mean_s)/dx = sum_n dk[:, n] u[:, n] with u = (w d_mu) coef^T: no [m, S, d] array
        u = (w * d_mu) @ self.coef.T                                         # [m, nb]
        grad = (dk * u[:, :, None]).sum(1) + (w * d_sd).sum(1)[:, None] * dsd
        return out - self.log_s, grad


def lcb(mu, sd, beta: float = 4.0):
    """Negated lower confidence bound -(mu - sqrt(beta) sd): larger is better."""
    return -(np.asarray(mu, dtype=float) - math.sqrt(beta) * np.asarray(sd, dtype=float))


ACQUISITIONS = ("nei", "log_ei", "ucb")
