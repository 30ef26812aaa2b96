r"""Physics metrics: resolutions, their fits, the pi0 mass and the B_s -> J/psi pi0 significance.

Plain versions (numpy, for reports) and differentiable versions (jnp, suffix ``_jnp``) of the
resolution-type metrics, for gradient-based design optimisation.

Widths. Reconstruction residuals with pile-up have long tails, so every resolution comes in two
forms: the RMS and the *core* width, the standard deviation of a Gaussian fitted to the core by
iterative clipping at +-2.5 sigma around the median (corrected for the clipping: a Gaussian clipped at
2.5 sigma has a standard deviation of 0.9546 sigma).
"""

from __future__ import annotations

import dataclasses
import typing

import numpy as np

__all__ = ["ResolutionFit", "fit_resolution", "format_fit", "is_poor_fit", "format_measurement", "measurement_parts", "fit_terms", "FitTerm", "fit_p_value", "POOR_FIT_P_VALUE",
           "binned_resolution", "core_width", "energy_curve", "width_summary",
           "pi0_mass", "fit_mass_peak", "significance", "Significance", "relative_rms_jnp", "stochastic_term_jnp",
           "rms_jnp"]

_CLIP = 2.5
_CLIP_FACTOR = 0.954597    # std of a unit Gaussian truncated at +-2.5


#: A resolution fit whose chi2 probability is below this does not describe its points and is flagged
#: (for 5 degrees of freedom: chi2/ndf > 3.0; for 10: chi2/ndf > 2.3).
POOR_FIT_P_VALUE = 0.01

_TERMS = ("stochastic", "constant", "noise")
#: A fitted term below this (1e-4 %, 1 keV) sits on its bound 0 whatever its covariance says.
_AT_ZERO = 1e-6


@dataclasses.dataclass(frozen=True)
class ResolutionFit:
    r"""Fit of :math:`\sigma/E = a/\sqrt{E} \oplus b \oplus c/E` (quadrature sum), E in GeV.

    Attributes:
        stochastic, constant, noise: a (sqrt(GeV)), b, c (GeV), as fractions (0.1 = 10 %).
        stochastic_err, constant_err, noise_err: one-sigma uncertainties from the fit covariance
            (infinite for a term that ends on its bound 0, 0 for a term not fitted).
        chi2, ndf: goodness of fit.
        stochastic_limit, constant_limit, noise_limit: for a term at its bound 0 or within its error
            of it, the one-sigma upper limit (profile chi2 = minimum + 1, the other terms refitted);
            None for a term clear of its bound or not fitted.
        fixed: names of the terms held at 0 (not fitted).
    """

    stochastic: float
    constant: float
    noise: float
    stochastic_err: float
    constant_err: float
    noise_err: float
    chi2: float
    ndf: int
    stochastic_limit: float | None = None
    constant_limit: float | None = None
    noise_limit: float | None = None
    fixed: tuple[str, ...] = ()

    def __call__(self, energy):
        """sigma/E at ``energy`` (GeV)."""
        e = np.asarray(energy, dtype=float)
        return np.sqrt(self.stochastic ** 2 / e + self.constant ** 2 + (self.noise / e) ** 2)

    @property
    def p_value(self) -> float:
        """Chi2 probability of the fit (nan without degrees of freedom)."""
        return fit_p_value(self.chi2, self.ndf)

    def __str__(self) -> str:
        return format_fit(self)


class FitTerm(typing.NamedTuple):
    """One term of a resolution fit as shown to a reader: name ("a", "b", "c"), text ("9.8 ± 0.3 %/√E",
    "< 0.4 %") and whether the text is a bound (the term is at, or within its error of, its bound 0)."""

    name: str
    text: str
    at_bound: bool


def fit_p_value(chi2: float, ndf: int) -> float:
    """Chi2 probability P(chi2' > chi2) for ``ndf`` degrees of freedom (nan when ndf < 1 or chi2 unknown)."""
    from scipy.stats import chi2 as chi2_dist

    if ndf is None or chi2 is None or ndf < 1 or not np.isfinite(chi2):
        return float("nan")
    return float(chi2_dist.sf(chi2, ndf))


def _field(fit, key):
    """A numeric field of a ResolutionFit or of its dict form (``dataclasses.asdict``, JSON): None when absent."""
    value = fit.get(key) if isinstance(fit, dict) else getattr(fit, key, None)
    return None if value is None else float(value)


def _decimals(err: float) -> int:
    """Decimals that show an uncertainty with two significant digits (0 to 3)."""
    return int(min(3, max(0, 1 - np.floor(np.log10(err))))) if np.isfinite(err) and err > 0 else 2


def measurement_parts(value: float, err: float, decimals: int | None = None) -> tuple[str, str]:
    """The texts of a value and its error, both to ``decimals`` places (default: the error to two
    significant digits, :func:`format_measurement`)."""
    d = _decimals(err) if decimals is None else decimals
    return f"{value:.{d}f}", f"{err:.{d}f}"


def format_measurement(value: float, err: float, decimals: int | None = None) -> str:
    """``value ± err`` with the error to two significant digits and the value to the same decimals
    (97.894, 2.5 -> "97.9 ± 2.5"; 106.5, 3.0 -> "106.5 ± 3.0"), or both to ``decimals`` places."""
    return " ± ".join(measurement_parts(value, err, decimals))


def fit_terms(fit) -> list[FitTerm]:
    """The fitted terms of a resolution fit in a reader's units: a in %/√E (E in GeV), b in %, c in MeV/E.

    Args:
        fit: a :class:`ResolutionFit` or its dict form (``dataclasses.asdict``, also as read back from
            JSON, where errors and limits may be missing).

    A term held at 0 (not fitted) is left out. A term at its bound 0, or within its one-sigma error of
    it, is not a measurement: it is shown as its upper limit ("< 0.4 %", rounded up); from a dict
    without limits, value + error is the limit. A term at its bound with no finite limit (or, without
    errors, a term exactly 0) reads "0.00 % (at its bound)".
    """
    fixed = set((fit.get("fixed") if isinstance(fit, dict) else fit.fixed) or ())
    out = []
    for key, name, scale, unit in (("stochastic", "a", 100.0, " %/√E"), ("constant", "b", 100.0, " %"),
                                   ("noise", "c", 1000.0, " MeV/E")):
        value, err, limit = (_field(fit, key + suffix) for suffix in ("", "_err", "_limit"))
        if value is None or key in fixed:
            continue
        if limit is None and err is not None and 0 < err and value <= err:
            limit = value + err
        if limit is not None and np.isfinite(limit):
            d = _decimals(scale * limit)
            shown = np.ceil(scale * limit * 10 ** d - 1e-9) / 10 ** d
            out.append(FitTerm(name, f"< {shown:.{d}f}{unit}", True))
        elif limit is not None or (err is None and value == 0.0):
            out.append(FitTerm(name, f"{scale * value:.{_decimals(0.0)}f}{unit} (at its bound)", True))
        elif not err:
            out.append(FitTerm(name, f"{scale * value:.{_decimals(0.0)}f}{unit}", False))
        else:
            d = _decimals(scale * err)
            out.append(FitTerm(name, f"{scale * value:.{d}f} ± {scale * err:.{d}f}{unit}", False))
    return out


def is_poor_fit(fit) -> bool:
    """True when a resolution fit (a :class:`ResolutionFit` or its dict form) has a chi2 probability below
    :data:`POOR_FIT_P_VALUE`: the curve does not describe the points. False without chi2 and ndf."""
    chi2, ndf = _field(fit, "chi2"), _field(fit, "ndf")
    if chi2 is None or ndf is None:
        return False
    p = fit_p_value(chi2, int(ndf))
    return bool(np.isfinite(p) and p < POOR_FIT_P_VALUE)


def format_fit(fit) -> str:
    r"""One line describing a resolution fit :math:`\sigma/E = a/\sqrt{E} \oplus b \oplus c/E` for a reader.

    Terms as :func:`fit_terms` gives them (a term at its bound shown as a bound, not a measurement),
    then the goodness of fit; a fit whose chi2 probability is below :data:`POOR_FIT_P_VALUE` is flagged
    "POOR FIT": the curve does not describe the points and its terms should not be quoted. A dict without
    the fitted values (e.g. ``{"error": ...}`` from a failed fit) gives "no fit (reason)".

    Example: ``a = 9.83 ± 0.31 %/√E, b < 0.43 %, c = 121 ± 20 MeV/E (χ²/ndf = 4.1/5)``.
    """
    terms = fit_terms(fit)
    if not terms:
        reason = fit.get("error") if isinstance(fit, dict) else None
        return f"no fit ({reason})" if reason else "no fit"
    text = ", ".join(f"{t.name} {t.text}" if t.text.startswith("<") else f"{t.name} = {t.text}" for t in terms)
    chi2, ndf = _field(fit, "chi2"), _field(fit, "ndf")
    if chi2 is None or ndf is None:
        return text
    p = fit_p_value(chi2, int(ndf))
    if is_poor_fit(fit):
        return f"{text} (POOR FIT: χ²/ndf = {chi2:.1f}/{int(ndf)}, p = {p:.1g})"
    return f"{text} (χ²/ndf = {chi2:.1f}/{int(ndf)})"


def cell_centre_width(cell_mm: float) -> float:
    """The width (standard deviation) of a position residual that knows only the cell: a uniform
    distribution over one cell, cell / sqrt(12) (mm)."""
    return float(cell_mm) / np.sqrt(12.0)


def no_better_than_cell_centre(core_mm, cell_mm: float, tolerance: float = 0.15) -> bool:
    """True when every position core width in ``core_mm`` (mm; x and y) is within ``tolerance`` (15 %)
    of, or above, :func:`cell_centre_width`: the estimate carries no information beyond which cell was hit
    (as with pile-up-dominated windows)."""
    return bool(np.all(np.asarray(core_mm, dtype=float) >= (1.0 - tolerance) * cell_centre_width(cell_mm)))


def fit_curve_resolution(curve: dict, *, calibrated: bool = False, fit_noise: bool = True) -> dict:
    """:func:`fit_resolution` of an :func:`energy_curve` as a JSON-able dict: the widths of E_reco / E
    (``calibrated=False``) or the calibrated, response-corrected ones (points where the response
    slope is not positive are left out); ``{"error": reason}`` when the fit cannot be made."""
    e = np.asarray(curve["energy"], dtype=float)
    if calibrated:
        res = np.asarray(curve["calibrated_resolution"], dtype=float)
        err = np.asarray(curve["calibrated_resolution_err"], dtype=float)
    else:
        res = np.asarray(curve["resolution"], dtype=float)
        err = np.asarray(curve["resolution_err"], dtype=float)
    ok = np.isfinite(res) & np.isfinite(err) & (err > 0) if calibrated else np.ones(len(e), bool)
    try:
        return dataclasses.asdict(fit_resolution(e[ok], res[ok], err[ok], fit_noise=fit_noise))
    except (ValueError, RuntimeError) as exc:
        return dict(error=str(exc))


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

    A term that ends on its bound (0) has no covariance; its error is reported as infinite. A term at
    its bound or within its error of it also gets a one-sigma upper limit (``*_limit``: profile chi2 =
    minimum + 1), which :func:`format_fit` shows instead of the value.
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

    def chi2_of(params):
        return float((((model(e, *params) - r) / s) ** 2).sum())

    chi2 = chi2_of(popt)
    limits = {}
    for i, name in enumerate(n for n, f in zip(_TERMS, free) if f):
        if not np.isfinite(perr[i]) or popt[i] <= perr[i] or popt[i] < _AT_ZERO:
            limits[f"{name}_limit"] = _profile_upper_limit(chi2_of, e, r, s, model, popt, i, chi2)
    fixed = tuple(name for name, f in zip(_TERMS, free) if not f)
    return ResolutionFit(*map(float, full(popt)), *(float(x) for x in full(perr)), chi2=chi2, ndf=int(e.size - npar),
                         **limits, fixed=fixed)


def _profile_upper_limit(chi2_of, e, r, s, model, popt, i, chi2_min) -> float:
    """One-sigma upper limit of parameter ``i`` of a resolution fit: the value above the best fit where the
    chi2, minimised over the other parameters, exceeds its minimum by 1."""
    from scipy.optimize import brentq, curve_fit

    others = [j for j in range(len(popt)) if j != i]

    def delta(x):
        if not others:
            return chi2_of([x]) - chi2_min - 1.0

        def sub(e_, *q):
            p = list(q)
            p.insert(i, x)
            return model(e_, *p)

        q0 = [max(popt[j], 1e-6) for j in others]
        try:
            q, _ = curve_fit(sub, e, r, p0=q0, sigma=s, absolute_sigma=True, maxfev=20000, bounds=(0.0, np.inf))
        except RuntimeError:          # not converged: the start point is an upper bound of the minimum
            q = q0
        p = list(q)
        p.insert(i, x)
        return chi2_of(p) - chi2_min - 1.0

    lo = float(popt[i])
    hi = max(2.0 * lo, 1e-3)     # the covariance error of a term near its bound is no guide: step up from 0.1 %
    for _ in range(60):
        if delta(hi) > 0:
            return float(brentq(delta, lo, hi, xtol=1e-12, rtol=1e-8))
        lo, hi = hi, 2.0 * hi
    return float("inf")


def core_width(x, clip: float = _CLIP, iterations: int = 10):
    """Core Gaussian width of the values ``x`` (module docstring): (mean, sigma, sigma error).

    Raises:
        ValueError: fewer than 10 finite values.
    """
    x = np.asarray(x, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if x.size < 10:
        raise ValueError(f"core_width: {x.size} finite values; need at least 10")
    centre = np.median(x)
    sigma = 1.4826 * np.median(np.abs(x - centre)) or x.std() or 1e-12
    factor = _CLIP_FACTOR if clip == _CLIP else _clipped_std(clip)
    for _ in range(iterations):
        sel = x[np.abs(x - centre) < clip * sigma]
        if sel.size < 10:
            break
        centre, new = sel.mean(), sel.std() / factor
        if abs(new - sigma) < 1e-6 * sigma:
            sigma = new
            break
        sigma = new
    n = max((np.abs(x - centre) < clip * sigma).sum(), 2)
    return float(centre), float(sigma), float(sigma / np.sqrt(2 * (n - 1)))


def _clipped_std(c):
    from scipy.stats import truncnorm

    return float(truncnorm(-c, c).std())


def width_summary(residuals) -> dict:
    """Bias, RMS and core width of residuals [n] or [n, k] (per column): lists when 2-D."""
    r = np.asarray(residuals, dtype=float)
    cols = r.reshape(r.shape[0], -1).T
    out = dict(bias=[], rms=[], core_mean=[], core=[], core_err=[], n=int(r.shape[0]))
    for c in cols:
        c = c[np.isfinite(c)]
        m, s, e = core_width(c)
        out["bias"].append(float(c.mean()))
        out["rms"].append(float(np.sqrt(np.mean(c * c))))
        out["core_mean"].append(m)
        out["core"].append(s)
        out["core_err"].append(e)
    if r.ndim == 1:
        out = {k: (v[0] if isinstance(v, list) else v) for k, v in out.items()}
    return out


def energy_curve(e_true, e_reco, bins=None) -> dict:
    """Energy-reconstruction figures per true-energy bin.

    Args:
        e_true, e_reco: [n] GeV.
        bins: None (each distinct true energy is a bin: discrete training energies), an integer
            (that many log-spaced bins over the range) or explicit bin edges.

    Returns:
        dict of arrays per bin: energy (mean true energy), n, me (mean of E_reco - E_true), mae, rms,
        rel_me, rel_mae, rel_rms (the same divided by E_true), resolution (core width of
        E_reco / E_true), resolution_err, response (core mean of the ratio), response_slope (local
        slope d<E_reco>/dE_true of the mean response curve E_true x response), calibrated_resolution
        and calibrated_resolution_err (resolution / response_slope; nan where the slope is not positive).

    The resolution is *not* divided by the response: an estimator that shrinks towards a constant
    (e.g. a linear calibration of a sum dominated by pile-up, whose slope goes to zero) would
    otherwise look precise. For a calibrated estimator (response 1) the two definitions agree.
    The *calibrated* resolution is the response-corrected width that is fair to both: the width
    after calibrating the estimator with its own mean response curve, i.e. divided by the curve's
    local slope. For a constant response R it is resolution / R (a miscalibration costs nothing); an
    estimator whose mean does not grow with the true energy cannot be calibrated and gets a large or
    undefined (nan) width.
    """
    e_true = np.asarray(e_true, dtype=float)
    e_reco = np.asarray(e_reco, dtype=float)
    ok = np.isfinite(e_true) & np.isfinite(e_reco)
    e_true, e_reco = e_true[ok], e_reco[ok]
    if bins is None:
        values = np.unique(e_true)
        groups = [e_true == v for v in values]
    else:
        edges = (np.geomspace(e_true.min(), e_true.max() * (1 + 1e-9), int(bins) + 1) if np.isscalar(bins)
                 else np.asarray(bins, dtype=float))
        idx = np.digitize(e_true, edges) - 1
        groups = [idx == i for i in range(len(edges) - 1)]
    keys = ("energy", "n", "me", "mae", "rms", "rel_me", "rel_mae", "rel_rms", "resolution", "resolution_err", "response")
    out = {k: [] for k in keys}
    for g in groups:
        if g.sum() < 10:
            continue
        t, r = e_true[g], e_reco[g]
        d = r - t
        mean, sig, err = core_width(r / t)
        for k, v in dict(energy=t.mean(), n=g.sum(), me=d.mean(), mae=np.abs(d).mean(), rms=np.sqrt((d * d).mean()),
                         rel_me=(d / t).mean(), rel_mae=np.abs(d / t).mean(), rel_rms=np.sqrt(((d / t) ** 2).mean()),
                         resolution=sig, resolution_err=err, response=mean).items():
            out[k].append(float(v))
    if len(out["energy"]) < 2:
        raise ValueError(f"energy_curve: {len(out['energy'])} energy bins with >= 10 clusters; need at least 2")
    out = {k: np.asarray(v) for k, v in out.items()}
    slope = np.gradient(out["energy"] * out["response"], out["energy"])
    with np.errstate(divide="ignore", invalid="ignore"):
        out["response_slope"] = slope
        out["calibrated_resolution"] = np.where(slope > 0, out["resolution"] / slope, np.nan)
        out["calibrated_resolution_err"] = np.where(slope > 0, out["resolution_err"] / slope, np.nan)
    return out


# ---- pi0 and B_s ----------------------------------------------------------------------------------
def pi0_mass(e1, e2, pos1, pos2, z_mm: float, vertex=(0.0, 0.0, 0.0)):
    r"""Two-photon invariant mass (GeV) from energies (GeV) and impact points (x, y) [n, 2] on the ECAL
    face at ``z_mm``, photons from ``vertex``: :math:`m^2 = 2 E_1 E_2 (1 - \cos\theta_{12})`."""
    def direction(p):
        p = np.asarray(p, dtype=float)
        v = np.stack([p[:, 0] - vertex[0], p[:, 1] - vertex[1], np.full(p.shape[0], z_mm - vertex[2])], axis=1)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    cos = np.clip((direction(pos1) * direction(pos2)).sum(axis=1), -1.0, 1.0)
    return np.sqrt(np.maximum(2.0 * np.asarray(e1, float) * np.asarray(e2, float) * (1.0 - cos), 0.0))


def fit_mass_peak(mass, window=None) -> dict:
    """Core Gaussian fit of a mass peak: dict(mean, width, width_err, n) (GeV), ``window`` (lo, hi)
    restricting the values first."""
    m = np.asarray(mass, dtype=float)
    if window is not None:
        m = m[(m > window[0]) & (m < window[1])]
    mean, width, err = core_width(m)
    return dict(mean=mean, width=width, width_err=err, n=int(m.size))


@dataclasses.dataclass(frozen=True)
class Significance:
    """Best S/sqrt(S+B) and where: mass window [lo, hi] (GeV), time cut |dt| < time_cut (ns),
    expected signal and background in it."""

    significance: float
    mass_lo: float
    mass_hi: float
    time_cut: float
    signal: float
    background: float


def significance(signal_mass, background_mass, *, n_signal: float, n_background: float, signal_dt=None,
                 background_dt=None, mass_windows=None, time_cuts=None) -> Significance:
    """S/sqrt(S+B) maximised over a mass window and a time cut.

    Args:
        signal_mass, background_mass: reconstructed masses of simulated signal and background candidates.
        n_signal, n_background: expected numbers of signal and background candidates (all masses,
            before the time cut) that the simulated samples represent.
        signal_dt, background_dt: candidate time differences (ns), e.g. the reconstructed photon time
            minus the signal vertex time; omit both for no time cut.
        mass_windows: candidate windows as an [m, 2] array (default: symmetric windows around the
            signal's core mean, half-widths 0.5-4 core widths).
        time_cuts: candidate cuts on |dt| (default: 12 values from 0.5 to 6 times the signal's core
            width of dt, and no cut).
    """
    sm = np.asarray(signal_mass, dtype=float)
    bm = np.asarray(background_mass, dtype=float)
    if sm.size < 10:
        raise ValueError(f"significance: {sm.size} signal candidates; need at least 10")
    if (signal_dt is None) != (background_dt is None):
        raise ValueError("significance: give both signal_dt and background_dt, or neither")
    sdt = np.zeros_like(sm) if signal_dt is None else np.abs(np.asarray(signal_dt, dtype=float))
    bdt = np.zeros_like(bm) if background_dt is None else np.abs(np.asarray(background_dt, dtype=float))
    if mass_windows is None:
        mean, width, _ = core_width(sm)
        half = np.linspace(0.5, 4.0, 36) * width
        mass_windows = np.stack([mean - half, mean + half], axis=1)
    if time_cuts is None:
        if signal_dt is None:
            time_cuts = [np.inf]
        else:
            _, tw, _ = core_width(np.asarray(signal_dt, dtype=float))
            time_cuts = list(np.linspace(0.5, 6.0, 12) * tw) + [np.inf]
    ws, wb = n_signal / sm.size, (n_background / bm.size if bm.size else 0.0)
    best = Significance(-1.0, np.nan, np.nan, np.nan, 0.0, 0.0)
    for lo, hi in np.asarray(mass_windows, dtype=float):
        s_in = (sm > lo) & (sm < hi)
        b_in = (bm > lo) & (bm < hi)
        for tc in time_cuts:
            s = ws * np.count_nonzero(s_in & (sdt < tc))
            b = wb * np.count_nonzero(b_in & (bdt < tc))
            z = s / np.sqrt(s + b) if s + b > 0 else 0.0
            if z > best.significance:
                best = Significance(float(z), float(lo), float(hi), float(tc), float(s), float(b))
    return best


# ---- differentiable versions ------------------------------------------------------------------------
def relative_rms_jnp(e_true, e_reco):
    """sqrt(mean(((E_reco - E_true) / E_true)^2)), differentiable."""
    import jax.numpy as jnp

    return jnp.sqrt(jnp.mean(((e_reco - e_true) / e_true) ** 2))


def stochastic_term_jnp(e_true, e_reco):
    """sqrt(mean((E_reco - E_true)^2 / E_true)): the stochastic term a (GeV^0.5) when the resolution is
    purely stochastic, a resolution figure weighted like the physics loss; differentiable."""
    import jax.numpy as jnp

    return jnp.sqrt(jnp.mean((e_reco - e_true) ** 2 / e_true))


def rms_jnp(residuals):
    """Root mean square of residuals (position, time), differentiable."""
    import jax.numpy as jnp

    return jnp.sqrt(jnp.mean(jnp.asarray(residuals) ** 2))
