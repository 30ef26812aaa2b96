r"""Physics metrics. (This module grows with the reconstruction issue; for now: resolution fits.)"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["ResolutionFit", "fit_resolution", "binned_resolution"]


@dataclasses.dataclass(frozen=True)
class ResolutionFit:
    r"""Fit of :math:`\sigma/E = a/\sqrt{E} \oplus b \oplus c/E` (quadrature sum), E in GeV.

    Attributes:
        stochastic, constant, noise: a (sqrt(GeV)), b, c (GeV).
        stochastic_err, constant_err, noise_err: one-sigma uncertainties from the fit covariance.
        chi2, ndf: goodness of fit.
    """

    stochastic: float
    constant: float
    noise: float
    stochastic_err: float
    constant_err: float
    noise_err: float
    chi2: float
    ndf: int

    def __call__(self, energy):
        e = np.asarray(energy, dtype=float)
        return np.sqrt(self.stochastic ** 2 / e + self.constant ** 2 + (self.noise / e) ** 2)

    def __str__(self) -> str:
        return (f"sigma/E = {100 * self.stochastic:.2f}({100 * self.stochastic_err:.2f})%/sqrt(E) (+) "
                f"{100 * self.constant:.2f}({100 * self.constant_err:.2f})% (+) "
                f"{1000 * self.noise:.1f}({1000 * self.noise_err:.1f}) MeV/E")


def binned_resolution(e_true, e_reco):
    """Per distinct true energy: (energies, relative resolution sigma/E, its statistical error, mean response).

    The resolution is the standard deviation of E_reco / E_true; its error is sigma / sqrt(2 (n - 1)).
    """
    e_true = np.asarray(e_true, dtype=float)
    e_reco = np.asarray(e_reco, dtype=float)
    energies = np.unique(e_true)
    if energies.size < 2:
        raise ValueError(f"binned_resolution: need at least 2 distinct true energies, got {energies.size}")
    res, err, resp = [], [], []
    for e in energies:
        r = e_reco[e_true == e] / e
        if r.size < 10:
            raise ValueError(f"binned_resolution: only {r.size} events at E = {e} GeV; need >= 10")
        s = r.std(ddof=1)
        res.append(s / r.mean())
        err.append(s / r.mean() / np.sqrt(2 * (r.size - 1)))
        resp.append(r.mean())
    return energies, np.array(res), np.array(err), np.array(resp)


def fit_resolution(energies, resolution, errors, *, fit_constant: bool = True,
                   fit_noise: bool = True) -> ResolutionFit:
    r"""Weighted least-squares fit of :math:`\sigma/E = a/\sqrt{E} \oplus b \oplus c/E` (a, b, c >= 0).

    Args:
        energies: [m] GeV.
        resolution: [m] sigma/E.
        errors: [m] uncertainties of sigma/E.
        fit_constant: fit b (else b = 0).
        fit_noise: fit c (else c = 0).

    A term that ends on its bound (0) has no covariance; its error is reported as infinite.
    """
    import warnings

    from scipy.optimize import OptimizeWarning, curve_fit

    e = np.asarray(energies, dtype=float)
    r = np.asarray(resolution, dtype=float)
    s = np.asarray(errors, dtype=float)
    free = [True, fit_constant, fit_noise]
    npar = sum(free)
    if e.size <= npar:
        raise ValueError(f"fit_resolution: {e.size} points for {npar} parameters; need more energies")

    def full(params):
        it = iter(params)
        return [next(it) if f else 0.0 for f in free]

    def model(e, *params):
        a, b, c = full(params)
        return np.sqrt(a * a / e + b * b + (c / e) ** 2)

    p0 = [v for v, f in zip([0.1, 0.01, 0.01], free) if f]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        popt, pcov = curve_fit(model, e, r, p0=p0, sigma=s, absolute_sigma=True, maxfev=20000,
                               bounds=(0.0, np.inf))
    perr = np.sqrt(np.clip(np.diag(pcov), 0, None))
    perr = np.where(np.isfinite(perr), perr, np.inf)
    chi2 = float((((model(e, *popt) - r) / s) ** 2).sum())
    values = full(popt)
    errs = [float(x) for x in full(perr)]
    return ResolutionFit(*map(float, values), *errs, chi2=chi2, ndf=int(e.size - npar))
