r"""Physics metrics: resolutions, their fits, the pi0 mass and the B_s -> J/psi pi0 significance.

Plain versions (numpy, for reports) and differentiable versions (jnp, suffix ``_jnp``) of the
resolution-type metrics, for gradient-based design optimisation.

Widths. Reconstruction residuals with pile-up have long tails, so every resolution comes in two
forms: the RMS and the *core* width, the standard deviation of a Gaussian fitted to the core by
iterative clipping at +-2.5 sigma around the median (corrected for the clipping: a Gaussian clipped at
2.5 sigma has a standard deviation of 0.9546 sigma).

Mass peaks. :func:`fit_mass_peak` is the core width of the masses in a window: with no background model
it saturates at the window's own spread when there is no peak. :func:`fit_mass_peak_with_background`
fits a Gaussian on a threshold background by extended binned likelihood (yields, purity, errors, bounds
flagged, no width when there is no peak), and :func:`pi0_figure_of_merit` turns that fit into a design
figure of merit that does not saturate: the effective mass resolution per candidate.
"""

from __future__ import annotations

import dataclasses
import typing

import numpy as np

__all__ = ["ResolutionFit", "fit_resolution", "format_fit", "is_poor_fit", "format_measurement", "measurement_parts", "fit_terms", "FitTerm", "fit_p_value", "POOR_FIT_P_VALUE",
           "binned_resolution", "core_width", "energy_curve", "width_summary",
           "pi0_mass", "fit_mass_peak", "fit_mass_peak_with_background", "pi0_figure_of_merit",
           "PeakFigureOfMerit", "MIN_PEAK_FIT_ENTRIES", "PEAK_SIGNIFICANCE",
           "FIGURE_OF_MERIT_SIGNIFICANCE", "significance", "Significance", "relative_rms_jnp", "stochastic_term_jnp",
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
    restricting the values first (lo < m < hi).

    The width is :func:`core_width` of the values in the window: iterative clipping at +-2.5 sigma
    around the median. It describes a clean peak (no pile-up, little background) well, but it has no
    background model: it *saturates*. A structureless distribution in the window gets a "width" of
    the order of the window's own spread (a flat 0-400 MeV sample gives ~120 MeV, about
    (hi - lo) / sqrt(12) = 115 MeV), and a small peak on a large smooth background reports the
    background's spread, not the peak's width. For a peak on a background, or to tell a design with
    no peak from one with a wide peak, use :func:`fit_mass_peak_with_background` and
    :func:`pi0_figure_of_merit`.
    """
    m = np.asarray(mass, dtype=float)
    if window is not None:
        m = m[(m > window[0]) & (m < window[1])]
    mean, width, err = core_width(m)
    return dict(mean=mean, width=width, width_err=err, n=int(m.size))


# ---- a mass peak on a smooth background: extended binned likelihood fit ------------------------------
#: Least number of masses in the fit range that :func:`fit_mass_peak_with_background` fits (six parameters).
MIN_PEAK_FIT_ENTRIES = 100
#: A fitted signal yield must exceed this many of its standard errors for the peak to count as found.
PEAK_SIGNIFICANCE = 2.0
#: ... and this many for :func:`pi0_figure_of_merit` to rate it: a 2-sigma excess somewhere in the mean range
#: turns up in 5-20 % of structureless samples of 500-4400 masses (look-elsewhere effect), never 5 sigma.
FIGURE_OF_MERIT_SIGNIFICANCE = 5.0
_PEAK_PARAMETERS = ("signal", "background", "mean", "width", "bkg_power", "bkg_slope")
#: Largest threshold power a of the background: a hump of the background at m_p is then no narrower than
#: m_p / sqrt(a) >= 58 % of m_p (its log-curvature there is -a / m_p^2), so it cannot imitate a peak.
_BKG_POWER_MAX = 3.0
#: Largest |b| of the background (in units of 1 / the fit range's upper edge).
_BKG_SLOPE_MAX = 50.0
_GAUSS_LEGENDRE_NODES = 8
#: Estimated distance to the minimum (NLL units, as MINUIT's EDM) below which a fit counts as converged.
_EDM_CONVERGED = 1e-3


def _check_interval(key: str, value, *, lo_min: float | None = None, unit: str = "GeV") -> tuple[float, float]:
    """``value`` as a (lo, hi) pair of finite numbers with lo < hi (and lo >= ``lo_min``), else a
    ValueError naming ``key``, the value and what is allowed."""
    from diffcalo.checks import fail

    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise fail(key, value, f"must be a pair (lo, hi) in {unit}") from None
    numbers = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in (lo, hi))
    if not (numbers and np.isfinite(lo) and np.isfinite(hi)):
        raise fail(key, value, f"must be a pair (lo, hi) of finite numbers in {unit}")
    if not lo < hi:
        raise fail(key, value, f"needs lo < hi ({unit})")
    if lo_min is not None and lo < lo_min:
        raise fail(key, value, f"needs lo >= {lo_min:g} {unit}")
    return float(lo), float(hi)


class _PeakModel:
    r"""Expected bin contents of a Gaussian peak on a threshold background, with their derivatives.

    :math:`\nu_i = S g_i(\mu, \sigma) + B f_i(a, b)`: :math:`g_i` the Gaussian's probability in bin i,
    :math:`f_i = \int_i x^a e^{b x} dx / \int_{\rm range} x^a e^{b x} dx` with :math:`x = m / m_{\rm max}`
    (Gauss-Legendre quadrature in every bin), both normalised to the fit range.
    """

    def __init__(self, edges, x_scale: float):
        self.edges = np.asarray(edges, dtype=float)
        self.x_scale = float(x_scale)
        nodes, weights = np.polynomial.legendre.leggauss(_GAUSS_LEGENDRE_NODES)
        lo, hi = self.edges[:-1, None], self.edges[1:, None]
        self.x = (0.5 * (lo + hi) + 0.5 * (hi - lo) * nodes) / self.x_scale          # [bins, q]
        self.log_x = np.log(self.x)
        self.w = 0.5 * (hi - lo) / self.x_scale * weights                           # [bins, q]
        self._nodes_32 = np.polynomial.legendre.leggauss(32)

    def background_integral(self, a: float, b: float, m_lo: float, m_hi: float) -> float:
        """Integral of x^a exp(b x) over m_lo < m < m_hi (in x units, 32-point Gauss-Legendre)."""
        if m_hi <= m_lo:
            return 0.0
        nodes, weights = self._nodes_32
        x = (0.5 * (m_lo + m_hi) + 0.5 * (m_hi - m_lo) * nodes) / self.x_scale
        return float(np.sum(0.5 * (m_hi - m_lo) / self.x_scale * weights * np.exp(a * np.log(x) + b * x)))

    def background_norm(self, a: float, b: float) -> float:
        """Integral of x^a exp(b x) over the fit range, the same quadrature as the bins."""
        return float(np.sum(self.w * np.exp(a * self.log_x + b * self.x)))

    def expected(self, theta, *, jacobian: bool = True):
        """Expected counts [bins] and (with ``jacobian``) d nu / d theta [bins, 6]."""
        from scipy.special import ndtr

        s, bkg, mu, sig, a, b = theta
        z = (self.edges - mu) / sig
        cdf = ndtr(z)
        norm = cdf[-1] - cdf[0]
        # bin probabilities from the nearer tail, so that they keep their precision far from the peak
        upper_side = z[:-1] > 0
        g = np.where(upper_side, ndtr(-z[:-1]) - ndtr(-z[1:]), np.diff(cdf)) / norm
        k = self.w * np.exp(a * self.log_x + b * self.x)
        f_bins = k.sum(axis=1)
        total = f_bins.sum()
        f = f_bins / total
        nu = s * g + bkg * f
        if not jacobian:
            return nu
        pdf = np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
        d_cdf_mu, d_cdf_sig = -pdf / sig, -pdf * z / sig
        dg_mu = (np.diff(d_cdf_mu) - g * (d_cdf_mu[-1] - d_cdf_mu[0])) / norm
        dg_sig = (np.diff(d_cdf_sig) - g * (d_cdf_sig[-1] - d_cdf_sig[0])) / norm
        df_a = ((k * self.log_x).sum(axis=1) - f * (k * self.log_x).sum()) / total
        df_b = ((k * self.x).sum(axis=1) - f * (k * self.x).sum()) / total
        return nu, np.stack([g, f, s * dg_mu, s * dg_sig, bkg * df_a, bkg * df_b], axis=1)


def _delta_method(func, theta, cov, free) -> float:
    """Standard error of ``func(theta)`` from the covariance ``cov`` of the parameters ``free`` (linear
    propagation, central differences with steps of 1e-3 standard errors)."""
    grad = np.zeros(len(free))
    for j, i in enumerate(free):
        h = 1e-3 * np.sqrt(cov[j, j])
        if not np.isfinite(h) or h <= 0:
            return float("nan")
        up, down = np.array(theta, dtype=float), np.array(theta, dtype=float)
        up[i] += h
        down[i] -= h
        grad[j] = (func(up) - func(down)) / (2.0 * h)
    var = float(grad @ cov @ grad)
    return float(np.sqrt(var)) if np.isfinite(var) and var >= 0 else float("nan")


def _covariance(info):
    """(positive definite?, inverse) of an information matrix, inverted in its correlation form (so that
    parameters in different units do not make it look singular); NaN entries where it is not invertible."""
    if info.size == 0:
        return True, np.zeros((0, 0))
    d = np.sqrt(np.clip(np.diag(info), 0.0, None))
    if not np.all(d > 0):
        return False, np.full(info.shape, np.nan)
    corr = info / np.outer(d, d)
    eig = np.linalg.eigvalsh(corr)
    if not eig.min() > 1e-10:
        return False, np.full(info.shape, np.nan)
    return True, np.linalg.inv(corr) / np.outer(d, d)


def _minimise_in_box(nll, nll_value, theta0, lower, upper, scale, max_iterations: int = 200):
    """Minimise a Poisson negative log-likelihood in the box lower <= theta <= upper by Fisher scoring
    damped as Levenberg-Marquardt, projected on the box: parameters at a bound whose gradient points out
    of the box are held there. ``nll(theta)`` returns (value, gradient, information matrix),
    ``nll_value(theta)`` the value. Works in units ``theta / scale``. Returns (theta, value)."""
    u, lo, hi = theta0 / scale, lower / scale, upper / scale
    value, grad, info = nll(u * scale)
    damping = 1e-3
    for _ in range(max_iterations):
        g, h = grad * scale, info * np.outer(scale, scale)
        held = ((u - lo <= 1e-12) & (g > 0)) | ((hi - u <= 1e-12) & (g < 0))
        free = np.flatnonzero(~held)
        if free.size == 0:
            break
        hf, gf = h[np.ix_(free, free)], g[free]
        if not (np.all(np.isfinite(hf)) and np.all(np.isfinite(gf))):
            break
        diag = np.maximum(np.diag(hf), 1e-9 * max(np.diag(hf).max(), 1e-300))
        try:
            if 0.5 * float(gf @ np.linalg.solve(hf, gf)) < 1e-8:      # estimated distance to the minimum
                break
        except np.linalg.LinAlgError:
            pass
        accepted = False
        while damping < 1e12:
            try:
                step = -np.linalg.solve(hf + damping * np.diag(diag), gf)
            except np.linalg.LinAlgError:
                damping *= 10.0
                continue
            trial = u.copy()
            trial[free] = np.clip(u[free] + step, lo[free], hi[free])
            trial_value = nll_value(trial * scale)
            if trial_value < value:
                accepted = True
                break
            damping *= 10.0
        if not accepted:
            break
        u = trial
        value, grad, info = nll(u * scale)
        damping = max(damping / 10.0, 1e-9)
    return u * scale, value


def fit_mass_peak_with_background(mass, *, window=(0.0, 0.4), peak: float = 0.135, mean_range=(0.08, 0.20),
                                  fit_range=None, bins: int = 80, signal_window: float = 0.030,
                                  min_width: float = 0.002, max_width: float = 0.080,
                                  min_significance: float = PEAK_SIGNIFICANCE) -> dict:
    r"""Extended binned maximum-likelihood fit of a Gaussian mass peak on a smooth threshold background.

    The masses in ``fit_range`` (default: the whole ``window``; lo < m < hi) are histogrammed in ``bins``
    equal bins, and the expected count in bin i,

    .. math::
        \nu_i = S \int_{\rm bin\ i} G(m; \mu, \sigma)\,dm
              + B \int_{\rm bin\ i} \frac{x^a e^{b x}}{N(a, b)}\,\frac{dm}{m_{\max}},
        \qquad x = \frac{m}{m_{\max}},

    is fitted by minimising the Poisson negative log-likelihood :math:`\sum_i \nu_i - n_i \ln \nu_i`.
    The fit is *extended*: the yields S and B are free, so their errors include the Poisson fluctuation
    of the sample size. G is the Gaussian normalised to the fit range (S is the signal in the fit range);
    the bin integrals are exact, so bins as wide as the peak do not bias its width. :math:`m_{\max}` is
    the fit range's upper edge and N(a, b) the integral of :math:`x^a e^{b x}` over the fit range.

    Background shape: a *threshold* function, 0 at m = 0 and rising as :math:`m^a` (a in [0, 3]: a = 1 is
    the mass density of two photons at random small opening angles, a = 0 a flat start), times an
    exponential (b in [-50, 50]). It holds a flat, a linear (through 0) and an exponential background
    and a combinatorial or pile-up hump such as :math:`m\,e^{-m/0.1\,{\rm GeV}}`. A hump at
    :math:`m_p = -a\,m_{\max}/b` has the log-curvature :math:`-a/m_p^2`, so it is no narrower than
    :math:`m_p/\sqrt3` (58 % of its position): the background cannot imitate a peak, and a structure
    narrower than that is signal. A background that does not fall to 0 at m = 0, or a spike there, is
    described less well (see ``p_value``; start ``fit_range`` above it).

    Minimisation: Fisher scoring damped as Levenberg-Marquardt inside the parameter box, from four
    starts (the nominal ``peak`` with widths 10 and 30 MeV, the smoothed histogram's mode in
    ``mean_range`` and :func:`core_width` of the masses in it; rising and humped backgrounds); the
    lowest minimum is kept. Errors: the inverse of the information matrix
    :math:`I_{jk} = \sum_i \partial_j\nu_i\,\partial_k\nu_i/\nu_i` over the parameters not at a bound
    (a yield at 0 also fixes the shape parameters it multiplies). ``converged``: I is positive definite
    and the estimated distance to the minimum :math:`{\rm EDM} = \frac12 g^T I^{-1} g` is below 1e-3.

    The peak is *found* (``peak_found``) when the fit converged, :math:`S > ` ``min_significance``
    (default 2) standard errors, and neither the mean nor the width sits at a bound. Otherwise ``mean``,
    ``width``, their errors and the effective width are NaN (no measurement) and ``note`` says why; a
    width at a bound is given as ``width_limit`` ("width_max" in ``at_bound``: the data want a Gaussian
    at least as wide as ``max_width``, i.e. no peak; "width_min": narrower than ``min_width``). The 2-sigma
    test is local: on structureless samples of 500-4400 masses a fluctuation somewhere in ``mean_range``
    passes it in 5-20 % of the fits (a "peak" a few MeV wide of a few tens of entries, at 2-3 sigma);
    :func:`pi0_figure_of_merit` asks for 5 sigma.

    Args:
        mass: [n] reconstructed masses (GeV), all finite; those outside ``fit_range`` are not fitted.
        window: (lo, hi) GeV, 0 <= lo < hi: the masses considered (as :func:`fit_mass_peak`).
        peak: nominal mass (GeV; pi0 0.135) inside ``mean_range``: a start of the fit, and the centre
            of the signal window when no peak is found.
        mean_range: (lo, hi) GeV inside the fit range: the allowed mean (a sensible range around ``peak``;
            a mean at its edge means no peak inside it).
        fit_range: (lo, hi) GeV inside ``window``; default ``window``.
        bins: number of equal bins over ``fit_range`` (>= 12).
        signal_window: half-width (GeV) of the window around the fitted mean for S_w, B_w, the purity
            and S_w/sqrt(S_w + B_w) (LHCb's resolved pi0: +-30 MeV).
        min_width, max_width: bounds of the Gaussian width (GeV).
        min_significance: signal yield / its error above which the peak counts as found.

    Returns:
        dict (JSON-able; masses and widths in GeV):
        n: masses in the fit range; n_window: in ``window``; n_given: all given masses.
        window, fit_range, bins, signal_window: as used.
        peak_found, converged: bools; note: "" or why no peak is reported.
        mean, mean_err, width, width_err: the peak (NaN when not found).
        width_limit: the bound when the width sits at one (GeV), else None.
        signal, signal_err, background, background_err: the fitted yields S, B in the fit range (the
            error of a yield at its bound 0 is NaN). peak_fraction: S / n.
        window_signal, window_signal_err, window_background: S_w and B_w within +-signal_window of the
            fitted mean (of ``peak`` when no peak is found), integrals of the fitted model.
        purity, purity_err: S_w / (S_w + B_w). window_significance: S_w / sqrt(S_w + B_w).
        effective_width, effective_width_err: :math:`\sqrt{(S + B)/I_{\mu\mu}}`, the figure of merit of
            :func:`pi0_figure_of_merit` (NaN when no peak is found); errors by linear propagation of the
            fit covariance.
        structureless_width: (hi - lo)/sqrt(12) of the fit range, the spread of a flat distribution.
        chi2, ndf, p_value: likelihood-ratio chi2 :math:`2\sum_i [\nu_i - n_i + n_i \ln(n_i/\nu_i)]`
            (Baker-Cousins), bins minus free parameters, and its probability (:func:`fit_p_value`).
        edm: the estimated distance to the minimum.
        at_bound: the parameters at a bound: "signal_min", "background_min", "mean_min", "mean_max",
            "width_min", "width_max", "bkg_power_min", "bkg_power_max", "bkg_slope_min", "bkg_slope_max"
            (not the mean and width when S = 0, nor a and b when B = 0: those are undetermined).
        parameters, parameter_errors: the six parameters as fitted (signal, background, mean, width,
            bkg_power a, bkg_slope b), at a bound or not, and their errors (NaN when at a bound or
            undetermined).

    Raises:
        ValueError: ``mass`` not 1-D or with non-finite values; fewer than :data:`MIN_PEAK_FIT_ENTRIES`
            masses in the fit range; a range with lo >= hi or outside its container; a bad scalar.
            The message names the argument and its value.

    References:
        S. Baker and R. D. Cousins, Nucl. Instrum. Meth. 221 (1984) 437 (chi2 of a Poisson likelihood fit).
    """
    from scipy.special import ndtr

    from diffcalo.checks import check_int, check_number, fail

    m = np.asarray(mass, dtype=float)
    if m.ndim != 1:
        raise ValueError(f"mass: an array of shape {m.shape}; expected a 1-D array of masses in GeV")
    bad = ~np.isfinite(m)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"mass: {bad.sum()} of {m.size} values are not finite (the first, {m[first]}, at index "
                         f"{first}); all masses must be finite (GeV): drop or flag failed reconstructions first")
    w_lo, w_hi = _check_interval("window", window, lo_min=0.0)
    f_lo, f_hi = _check_interval("fit_range", (w_lo, w_hi) if fit_range is None else fit_range)
    if f_lo < w_lo or f_hi > w_hi:
        raise fail("fit_range", fit_range, f"must lie inside window ({w_lo:g}, {w_hi:g}) GeV")
    mu_lo, mu_hi = _check_interval("mean_range", mean_range)
    if mu_lo < f_lo or mu_hi > f_hi:
        raise fail("mean_range", mean_range, f"must lie inside the fit range ({f_lo:g}, {f_hi:g}) GeV")
    peak = check_number("peak", peak, mu_lo, mu_hi, unit="GeV (inside mean_range)")
    bins = check_int("bins", bins, 12)
    signal_window = check_number("signal_window", signal_window, 0.0, strict=True, unit="GeV")
    min_width = check_number("min_width", min_width, 0.0, strict=True, unit="GeV")
    max_width = check_number("max_width", max_width, min_width, strict=True, unit=f"GeV (> min_width = {min_width:g})")
    min_significance = check_number("min_significance", min_significance, 0.0, unit="standard errors")

    n_given, n_window = m.size, int(np.count_nonzero((m > w_lo) & (m < w_hi)))
    m = m[(m > f_lo) & (m < f_hi)]
    if m.size < MIN_PEAK_FIT_ENTRIES:
        hint = f"; the median of all {n_given} masses is {np.median(np.asarray(mass, float)):.4g} (in GeV?)" if n_given else ""
        raise ValueError(f"mass: {m.size} values in the fit range ({f_lo:g}, {f_hi:g}) GeV; need at least "
                         f"{MIN_PEAK_FIT_ENTRIES}{hint}")
    n_tot = m.size
    edges = np.linspace(f_lo, f_hi, bins + 1)
    counts = np.histogram(m, edges)[0].astype(float)
    model = _PeakModel(edges, f_hi)

    lower = np.array([0.0, 0.0, mu_lo, min_width, 0.0, -_BKG_SLOPE_MAX])
    upper = np.array([3.0 * n_tot + 10.0, 3.0 * n_tot + 10.0, mu_hi, max_width, _BKG_POWER_MAX, _BKG_SLOPE_MAX])
    scale = np.array([n_tot, n_tot, 0.01, 0.01, 1.0, 1.0])       # parameters of order 1: yields / n, masses / 10 MeV

    def nll(theta):
        nu, jac = model.expected(theta)
        nu = np.maximum(nu, 1e-300)
        # bins expecting (numerically) nothing carry no information
        weight = np.where(nu > 1e-200, 1.0 / nu, 0.0)
        return float(np.sum(nu - counts * np.log(nu))), jac.T @ (1.0 - counts / nu), (jac * weight[:, None]).T @ jac

    def nll_value(theta):
        nu = np.maximum(model.expected(theta, jacobian=False), 1e-300)
        return float(np.sum(nu - counts * np.log(nu)))

    # starts: the nominal mass, the smoothed histogram's mode in mean_range and the core of the masses in it
    centres = 0.5 * (edges[:-1] + edges[1:])
    inside = (centres > mu_lo) & (centres < mu_hi)
    smooth = np.convolve(counts, np.ones(3) / 3.0, mode="same")
    # (a rising background (a, b) = (1, 0) and a hump (2, -8) at m = fit range's top / 4)
    mode = float(centres[inside][np.argmax(smooth[inside])]) if inside.any() else peak
    starts = [(peak, 0.010, 1.0, 0.0), (peak, 0.030, 2.0, -8.0), (mode, 0.015, 2.0, -8.0)]
    core = m[(m > mu_lo) & (m < mu_hi)]
    if core.size >= 10:
        starts.append((*core_width(core)[:2], 1.0, 0.0))
    best = None
    for mu0, sig0, a0, b0 in starts:
        theta0 = np.clip([0.3 * n_tot, 0.7 * n_tot, mu0, sig0, a0, b0], lower, upper)
        theta_fit, value_fit = _minimise_in_box(nll, nll_value, theta0, lower, upper, scale)
        if best is None or value_fit < best[1]:
            best = theta_fit, value_fit
    theta = best[0]

    at_lo, at_hi = theta - lower <= 1e-9 * scale, upper - theta <= 1e-9 * scale
    fixed = set(np.flatnonzero(at_lo | at_hi))
    if at_lo[0]:
        fixed |= {2, 3}          # no signal: its mean and width are undetermined
    if at_lo[1]:
        fixed |= {4, 5}          # no background: its shape is undetermined
    free = [i for i in range(6) if i not in fixed]
    value, grad, info = nll(theta)
    info = info[np.ix_(free, free)]
    positive, cov = _covariance(info)
    edm = 0.5 * float(grad[free] @ cov @ grad[free]) if free else 0.0
    converged = bool(positive and np.isfinite(value) and edm < _EDM_CONVERGED)
    errors = np.full(6, np.nan)
    errors[free] = np.sqrt(np.where(np.diag(cov) > 0, np.diag(cov), np.nan))
    # parameters at a bound, except those a zero yield leaves undetermined
    undetermined = ({2, 3} if at_lo[0] else set()) | ({4, 5} if at_lo[1] else set())
    at_bound = [f"{name}_{side}" for i, name in enumerate(_PEAK_PARAMETERS) if i not in undetermined
                for side, flag in (("min", at_lo[i]), ("max", at_hi[i])) if flag]
    s, bkg, mu, sig = (float(v) for v in theta[:4])
    s_err = float(errors[0])

    reasons = []
    if not converged:
        reasons.append(f"the fit did not converge (EDM {edm:.2g}, information matrix "
                       f"{'positive definite' if positive else 'singular'})")
    if at_lo[0]:
        reasons.append("no signal: the fitted yield is at its bound 0")
    elif not np.isfinite(s_err):
        reasons.append(f"signal yield {s:.1f} has no error estimate")
    elif not s > min_significance * s_err:
        reasons.append(f"signal yield {s:.1f} ± {s_err:.1f} is compatible with 0 within {min_significance:g} sigma")
    if not at_lo[0]:
        if at_hi[3]:
            reasons.append(f"the width is at its upper bound max_width = {1000 * max_width:g} MeV: no peak narrower")
        if at_lo[3]:
            reasons.append(f"the width is at its lower bound min_width = {1000 * min_width:g} MeV")
        if at_lo[2] or at_hi[2]:
            reasons.append(f"the mean is at its bound {1000 * (mu_lo if at_lo[2] else mu_hi):g} MeV (mean_range): "
                           "no peak inside it (a shifted peak needs a calibration or a wider mean_range)")
    peak_found = not reasons
    width_limit = (max_width if at_hi[3] else min_width) if (at_hi[3] or at_lo[3]) and not at_lo[0] else None

    centre_fixed = None if peak_found else peak

    def window_parts(t):
        c = t[2] if centre_fixed is None else centre_fixed
        lo, hi = max(c - signal_window, f_lo), min(c + signal_window, f_hi)
        norm = ndtr((f_hi - t[2]) / t[3]) - ndtr((f_lo - t[2]) / t[3])
        s_w = t[0] * (ndtr((hi - t[2]) / t[3]) - ndtr((lo - t[2]) / t[3])) / norm
        b_w = t[1] * model.background_integral(t[4], t[5], lo, hi) / model.background_norm(t[4], t[5])
        return s_w, b_w

    def purity_of(t):
        s_w, b_w = window_parts(t)
        return s_w / (s_w + b_w) if s_w + b_w > 0 else float("nan")

    def effective_width_of(t):
        s_, b_, mu_, sig_, a_, bb_ = t
        grid = np.linspace(max(f_lo, mu_ - 8.0 * sig_), min(f_hi, mu_ + 8.0 * sig_), 1601)
        z = (grid - mu_) / sig_
        norm = ndtr((f_hi - mu_) / sig_) - ndtr((f_lo - mu_) / sig_)
        g = np.exp(-0.5 * z * z) / (np.sqrt(2.0 * np.pi) * sig_ * norm)
        x = np.maximum(grid / f_hi, 1e-300)
        f = np.exp(a_ * np.log(x) + bb_ * x) / (model.background_norm(a_, bb_) * f_hi)
        density = s_ * g + b_ * f
        info_mu = np.trapezoid(np.where(density > 0, (s_ * g * z / sig_) ** 2 / np.maximum(density, 1e-300), 0.0), grid)
        return float(np.sqrt((s_ + b_) / info_mu)) if info_mu > 0 else float("nan")

    s_w, b_w = window_parts(theta)
    total_w = s_w + b_w
    nan = float("nan")
    eff = effective_width_of(theta) if peak_found else nan
    nu = model.expected(theta, jacobian=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = float(2.0 * np.sum(nu - counts + np.where(counts > 0, counts * np.log(counts / np.maximum(nu, 1e-300)), 0.0)))
    ndf = int(bins - len(free))
    signal_fixed = 0 in fixed

    return dict(
        n=int(n_tot), n_window=n_window, n_given=int(n_given), window=[w_lo, w_hi], fit_range=[f_lo, f_hi],
        bins=int(bins), signal_window=signal_window,
        peak_found=bool(peak_found), converged=bool(converged), note="; ".join(reasons),
        mean=mu if peak_found else nan, mean_err=float(errors[2]) if peak_found else nan,
        width=sig if peak_found else nan, width_err=float(errors[3]) if peak_found else nan,
        width_limit=width_limit,
        signal=s, signal_err=s_err, background=bkg, background_err=float(errors[1]), peak_fraction=s / n_tot,
        window_signal=float(s_w), window_signal_err=nan if signal_fixed else _delta_method(
            lambda t: window_parts(t)[0], theta, cov, free),
        window_background=float(b_w),
        purity=float(s_w / total_w) if total_w > 0 else nan,
        purity_err=nan if signal_fixed else _delta_method(purity_of, theta, cov, free),
        window_significance=float(s_w / np.sqrt(total_w)) if total_w > 0 else nan,
        effective_width=eff,
        effective_width_err=_delta_method(effective_width_of, theta, cov, free) if peak_found else nan,
        structureless_width=float((f_hi - f_lo) / np.sqrt(12.0)),
        chi2=chi2, ndf=ndf, p_value=fit_p_value(chi2, ndf), edm=float(edm),
        at_bound=at_bound,
        parameters={k: float(v) for k, v in zip(_PEAK_PARAMETERS, theta)},
        parameter_errors={k: float(v) for k, v in zip(_PEAK_PARAMETERS, errors)},
    )


class PeakFigureOfMerit(typing.NamedTuple):
    """A mass peak's figure of merit (GeV; smaller is better): ``value`` and ``error``; ``is_measurement``
    False when the value is the no-peak convention (``reason`` says why)."""

    value: float
    error: float
    is_measurement: bool
    reason: str


def pi0_figure_of_merit(fit: dict, *, min_significance: float = FIGURE_OF_MERIT_SIGNIFICANCE) -> PeakFigureOfMerit:
    r"""The pi0 figure of merit of a design: the *effective mass resolution* per candidate (GeV, smaller
    is better) of a :func:`fit_mass_peak_with_background` result.

    .. math::
        \sigma_{\rm eff} = \sqrt{\frac{n}{I_{\mu\mu}}}, \qquad
        I_{\mu\mu} = \int \frac{\left(S\,\partial_\mu g(m)\right)^2}{S\,g(m) + B\,f(m)}\,dm,
        \qquad n = S + B,

    g and f the fitted signal and background densities. :math:`I_{\mu\mu}` is the Fisher information on
    the peak position, so :math:`\sigma_{\rm eff}/\sqrt{n}` is the smallest error with which the sample
    locates the pi0 mass: :math:`\sigma_{\rm eff}` is the width that a background-free Gaussian peak
    holding all n candidates would need to locate it as precisely. Every candidate in one clean peak:
    :math:`\sigma_{\rm eff} = \sigma`. In general :math:`\sigma_{\rm eff} = \sigma\,\sqrt{n/S}\,\kappa`:
    candidates outside the peak cost :math:`\sqrt{n/S}`, and the background under the peak costs
    :math:`\kappa \geq 1` (for a dominating flat background of density :math:`\beta` per GeV,
    :math:`\kappa^2 \approx 2\sqrt2\,r`, :math:`r = \sqrt{2\pi}\sigma\beta/S = (1 - p_0)/p_0` with
    :math:`p_0` the purity at the peak's centre). So it rises with the width at a fixed fraction of
    background, and with the background at a fixed width; a narrow peak that holds few of the candidates
    (pile-up smearing the rest) is not rated as a clean one; it needs no mass window; and its
    expectation does not depend on the sample size. Its error is the fit covariance propagated linearly.

    No peak (``peak_found`` False: yield compatible with 0, width or mean at a bound, no convergence),
    or a peak whose yield is below ``min_significance`` (default 5) standard errors: the value is the
    width of the fit range, hi - lo (400 MeV for 0-400 MeV; a flat distribution carries no information
    on the mass, its effective width is infinite), with error 0 (a convention, not a measurement),
    ``is_measurement`` False and the reason in ``reason``. It is finite so that an optimiser can still
    rank the design, behind every design with a usable peak, and the same for every no-peak design, on
    purpose. A measured effective width at or above it is set to it in the same way. A significant peak
    that holds a small fraction of the candidates has an effective width above the spread of a flat
    distribution ((hi - lo)/sqrt(12), 115.5 MeV): it is still a measurement (a 34 MeV peak holding 27 %
    of 5000 pairs gives ~120 MeV) and is ranked by it. Why 5 sigma: the fit's 2-sigma test is local,
    and on structureless samples of 500-4400 masses 5-20 % of fits find a "peak" at 2-3 sigma (a
    fluctuation a few MeV wide) whose effective width, 40-110 MeV, would beat designs with a real but
    wide peak; no such fluctuation reaches 5 sigma.

    The candidates counted are those in the fit range (``n``); to also charge the pairs outside it (e.g.
    pushed above the window by pile-up), multiply by sqrt(n_given / n).

    Args:
        fit: the dict of :func:`fit_mass_peak_with_background` (also as read back from JSON).
        min_significance: signal yield / its error that a peak needs to be rated
            (:data:`FIGURE_OF_MERIT_SIGNIFICANCE`).

    Returns:
        :class:`PeakFigureOfMerit` (value and error in GeV).

    Raises:
        ValueError: ``fit`` is not a :func:`fit_mass_peak_with_background` result.
    """
    keys = ("peak_found", "effective_width", "effective_width_err", "structureless_width", "note", "signal",
            "signal_err")
    if not isinstance(fit, dict) or any(k not in fit for k in keys):
        missing = [k for k in keys if not isinstance(fit, dict) or k not in fit]
        raise ValueError(f"pi0_figure_of_merit: fit = {type(fit).__name__} lacks {', '.join(missing)}; "
                         "pass the dict that fit_mass_peak_with_background returns")
    lo, hi = fit.get("fit_range", fit.get("window", (0.0, 0.4)))
    cap = float(hi) - float(lo)
    if not fit["peak_found"]:
        return PeakFigureOfMerit(cap, 0.0, False, f"no peak: {fit['note']}")
    significance = float(fit["signal"]) / float(fit["signal_err"])
    if not significance >= min_significance:
        return PeakFigureOfMerit(cap, 0.0, False, f"the peak's yield is {significance:.1f} standard errors, below the "
                                 f"{min_significance:g} the figure of merit requires")
    value, error = float(fit["effective_width"]), float(fit["effective_width_err"])
    if not np.isfinite(value) or value >= cap:
        return PeakFigureOfMerit(cap, 0.0, False, f"effective width {1000 * value:.1f} MeV is not below the "
                                 f"no-peak value, the fit range's width {1000 * cap:.1f} MeV")
    return PeakFigureOfMerit(value, error, True, "")


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
