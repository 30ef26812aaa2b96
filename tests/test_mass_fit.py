"""The pi0 mass fit with a background model (metrics.fit_mass_peak_with_background) and the figure of merit
derived from it (metrics.pi0_figure_of_merit): coverage of the fitted width and yield on synthetic peaks
of known width on flat, linear and threshold backgrounds, no peak where there is none, a figure of merit
that orders designs by width and by purity, and errors that name the bad argument."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import ndtr

from diffcalo import metrics

PI0 = 0.135
WIDTHS = (0.008, 0.015, 0.030)           # GeV
SIGNALS = (2000, 6000, 20000)            # expected signal entries
STRUCTURELESS = 0.4 / np.sqrt(12.0)      # spread of a flat 0-400 MeV distribution, 115.5 MeV
NO_PEAK = 0.4                            # the figure of merit without a peak: the fit range's width


def background(rng, kind: str, n: int):
    """n masses (GeV) in 0-400 MeV: flat, linear (density ∝ m) or threshold (∝ m exp(-m / 0.1 GeV))."""
    if kind == "flat":
        return rng.uniform(0.0, 0.4, n)
    if kind == "linear":
        return 0.4 * np.sqrt(rng.uniform(0.0, 1.0, n))
    if kind == "threshold":
        m = rng.gamma(2.0, 0.1, 2 * n + 100)          # m exp(-m / 0.1), cut at 400 MeV (91 % below)
        return m[m < 0.4][:n]
    raise ValueError(kind)


def sample(rng, width: float, n_signal: float, kind: str = "none", ratio: float = 0.0):
    """A Gaussian peak at 135 MeV of Poisson(n_signal) entries on Poisson(ratio n_signal) background."""
    peak = rng.normal(PI0, width, rng.poisson(n_signal))
    if kind == "none":
        return peak
    return np.concatenate([peak, background(rng, kind, rng.poisson(ratio * n_signal))])


def expected_signal(width: float, n_signal: float) -> float:
    """The Gaussian's expected entries inside the 0-400 MeV fit range."""
    return n_signal * (ndtr((0.4 - PI0) / width) - ndtr(-PI0 / width))


# ---- coverage: the fitted width and yield scatter around the truth as their errors say -----------------------
@pytest.mark.parametrize("kind, ratio", [("none", 0.0), ("flat", 1.0), ("linear", 3.0), ("threshold", 5.0)])
def test_width_and_yield_pulls_have_mean_zero_and_unit_width(kind, ratio):
    width_pulls, yield_pulls = [], []
    for seed in range(21):       # widths 8, 15, 30 MeV and 2000-20000 signal entries in turn
        width, n_signal = WIDTHS[seed % 3], SIGNALS[(seed // 3) % 3]
        fit = metrics.fit_mass_peak_with_background(sample(np.random.default_rng([seed, 11]), width, n_signal, kind, ratio))
        assert fit["peak_found"] and fit["converged"], (seed, fit["note"])
        assert fit["p_value"] > 1e-3, (seed, fit["chi2"], fit["ndf"])
        width_pulls.append((fit["width"] - width) / fit["width_err"])
        yield_pulls.append((fit["signal"] - expected_signal(width, n_signal)) / fit["signal_err"])
    for pulls in (np.array(width_pulls), np.array(yield_pulls)):
        assert np.all(np.abs(pulls) < 4.0), pulls
        assert np.mean(np.abs(pulls) < 3.0) >= 0.95, pulls          # within 3 errors of the truth
        # 3-sigma bands of 21 unit-Gaussian pulls: mean 0 +- 3 / sqrt(21), std 1 +- 3 / sqrt(40)
        assert abs(pulls.mean()) < 0.65, pulls
        assert 0.53 < pulls.std(ddof=1) < 1.47, pulls


def test_background_free_peak_gives_the_core_width_and_the_exact_signal():
    rng = np.random.default_rng(3)
    m = rng.normal(PI0, 0.010, 5000)
    fit = metrics.fit_mass_peak_with_background(m)
    assert fit["peak_found"] and fit["n"] == 5000
    assert fit["width"] == pytest.approx(0.010, abs=3 * fit["width_err"])
    assert fit["width_err"] == pytest.approx(0.010 / np.sqrt(2 * 5000), rel=0.1)       # sigma / sqrt(2 n)
    assert fit["mean"] == pytest.approx(PI0, abs=3 * fit["mean_err"])
    assert fit["signal"] == pytest.approx(5000, abs=1.0) and fit["signal_err"] == pytest.approx(np.sqrt(5000), rel=0.02)
    assert fit["background"] < 1.0 and "background_min" in fit["at_bound"]
    assert fit["purity"] == pytest.approx(1.0, abs=1e-3)
    fom = metrics.pi0_figure_of_merit(fit)
    assert fom.is_measurement and fom.value == pytest.approx(fit["width"], rel=1e-3)     # clean peak: the width
    json.dumps(fit)                                                                     # JSON-able


# ---- no peak: no width that looks like a measurement ---------------------------------------------------------
@pytest.mark.parametrize("shape", ["flat", "threshold", "pile-up hump"])
def test_structureless_samples_give_no_width_and_the_no_peak_figure_of_merit(shape):
    for seed in range(6):
        rng = np.random.default_rng([seed, 5])
        if shape == "pile-up hump":          # the reviewer's heavy pile-up designs: a 100 MeV wide bump at 210 MeV
            m = rng.normal(0.21, 0.10, 12000)
            m = m[(m > 0) & (m < 0.4)]
        else:
            m = background(rng, shape, 10000)
        old = metrics.fit_mass_peak(m, window=(0.0, 0.4))
        assert 0.08 < old["width"] < 0.13                     # the clipped core saturates at the window's spread
        fit = metrics.fit_mass_peak_with_background(m)
        fom = metrics.pi0_figure_of_merit(fit)
        assert not fom.is_measurement and fom.value == pytest.approx(NO_PEAK) and fom.error == 0.0
        assert fom.reason
        if fit["peak_found"]:                # a local 2-sigma fluctuation: narrow, small, and not rated
            assert fit["width"] < 0.02 and fit["signal"] < 3 * fit["signal_err"], fit
        else:
            assert np.isnan(fit["width"]) and np.isnan(fit["width_err"]) and np.isnan(fit["effective_width"])
            assert fit["note"]
    # one of each, spelt out
    fit = metrics.fit_mass_peak_with_background(np.random.default_rng(0).uniform(0.0, 0.4, 10000))
    assert not fit["peak_found"] and np.isnan(fit["width"]) and np.isnan(fit["mean"])


def test_a_broad_bump_is_reported_as_a_width_at_its_bound():
    rng = np.random.default_rng(0)
    m = rng.normal(0.21, 0.10, 20000)
    fit = metrics.fit_mass_peak_with_background(m[(m > 0) & (m < 0.4)])
    assert not fit["peak_found"] and np.isnan(fit["width"])
    assert "width_max" in fit["at_bound"] and fit["width_limit"] == 0.080
    assert "max_width = 80 MeV" in fit["note"]


def test_a_peak_narrower_than_min_width_is_a_bound_not_a_measurement():
    rng = np.random.default_rng(1)
    m = np.concatenate([rng.normal(PI0, 0.0005, 2000), rng.uniform(0.0, 0.4, 2000)])
    fit = metrics.fit_mass_peak_with_background(m)
    assert not fit["peak_found"] and np.isnan(fit["width"])
    assert "width_min" in fit["at_bound"] and fit["width_limit"] == 0.002
    assert fit["signal"] == pytest.approx(2000, abs=3 * fit["signal_err"])


# ---- the figure of merit -------------------------------------------------------------------------------------
def expected_effective_width(width: float, n_signal: float, n_flat: float) -> float:
    """sqrt(n / I_mumu) of a Gaussian of n_signal entries on n_flat flat in 0-400 MeV, integrated directly."""
    m = np.linspace(0.0, 0.4, 400001)
    z = (m - PI0) / width
    g = n_signal * np.exp(-0.5 * z * z) / (np.sqrt(2 * np.pi) * width)
    info = np.trapezoid((g * z / width) ** 2 / (g + n_flat / 0.4), m)
    return float(np.sqrt((n_signal + n_flat) / info))


def test_figure_of_merit_grows_with_width_and_with_background():
    def fom(width, ratio, seed):
        fit = metrics.fit_mass_peak_with_background(sample(np.random.default_rng(seed), width, 20000, "flat", ratio))
        merit = metrics.pi0_figure_of_merit(fit)
        assert merit.is_measurement, merit
        # the value the true model has, within 3 errors
        assert merit.value == pytest.approx(expected_effective_width(width, 20000, ratio * 20000), abs=3 * merit.error)
        return merit, fit["purity"]

    def increasing(merits):
        for lo, hi in zip(merits, merits[1:]):
            assert hi.value - lo.value > 3 * np.hypot(lo.error, hi.error), (lo, hi)

    by_width = [fom(w, 1.0, seed) for seed, w in enumerate(WIDTHS)]           # as much background as signal
    increasing([merit for merit, _ in by_width])
    by_background = [fom(0.015, r, 10 + seed) for seed, r in enumerate((0.0, 1.0, 3.0))]
    increasing([merit for merit, _ in by_background])
    purities = [p for _, p in by_background]
    assert purities[0] > purities[1] > purities[2]
    assert by_background[0][0].value == pytest.approx(0.015, rel=0.03)         # no background: the width


def test_figure_of_merit_needs_a_five_sigma_peak_and_a_fit_result():
    fit = metrics.fit_mass_peak_with_background(sample(np.random.default_rng(1), 0.015, 100, "flat", 30.0))
    assert fit["peak_found"] and 2 < fit["signal"] / fit["signal_err"] < 5, (fit["signal"], fit["signal_err"])
    merit = metrics.pi0_figure_of_merit(fit)
    assert not merit.is_measurement and merit.value == pytest.approx(NO_PEAK) and "below the 5" in merit.reason
    # at 2 sigma it is rated: 100 of 3100 candidates in the peak give an effective width above a flat spread
    lax = metrics.pi0_figure_of_merit(fit, min_significance=2.0)
    assert fit["effective_width"] > STRUCTURELESS
    assert lax.value == pytest.approx(min(fit["effective_width"], NO_PEAK))
    with pytest.raises(ValueError, match="pi0_figure_of_merit: fit = dict lacks peak_found"):
        metrics.pi0_figure_of_merit({"width": 0.01})


# ---- bad input ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mass, kwargs, message", [
    (np.full(50, PI0), {}, r"mass: 50 values in the fit range \(0, 0.4\) GeV; need at least 100"),
    (np.full(500, 135.0), {}, r"mass: 0 values .* median of all 500 masses is 135 \(in GeV\?\)"),
    (np.r_[np.full(500, PI0), np.inf], {}, r"mass: 1 of 501 values are not finite \(the first, inf, at index 500\)"),
    (np.full((500, 2), PI0), {}, r"mass: an array of shape \(500, 2\); expected a 1-D array"),
    (np.full(500, PI0), dict(window=(0.4, 0.0)), r"window = \(0.4, 0.0\): needs lo < hi"),
    (np.full(500, PI0), dict(window=(0.2, 0.2)), r"window = \(0.2, 0.2\): needs lo < hi"),
    (np.full(500, PI0), dict(window=(-0.1, 0.4)), r"window = \(-0.1, 0.4\): needs lo >= 0"),
    (np.full(500, PI0), dict(window=(0.0, float("nan"))), r"window = \(0.0, nan\): must be a pair \(lo, hi\) of finite"),
    (np.full(500, PI0), dict(window=0.4), r"window = 0.4: must be a pair"),
    (np.full(500, PI0), dict(fit_range=(0.0, 0.5)), r"fit_range = \(0.0, 0.5\): must lie inside window \(0, 0.4\)"),
    (np.full(500, PI0), dict(mean_range=(0.05, 0.3), fit_range=(0.06, 0.4)), r"mean_range = .*inside the fit range"),
    (np.full(500, PI0), dict(peak=0.5), r"peak = 0.5: must be a finite number >= 0.08 and <= 0.2"),
    (np.full(500, PI0), dict(bins=5), r"bins = 5: must be an integer >= 12"),
    (np.full(500, PI0), dict(signal_window=0.0), r"signal_window = 0.0: must be a finite number > 0 GeV"),
    (np.full(500, PI0), dict(min_width=0.05, max_width=0.01), r"max_width = 0.01: must be a finite number > 0.05"),
])
def test_bad_input_names_the_argument_and_its_value(mass, kwargs, message):
    with pytest.raises(ValueError, match=message):
        metrics.fit_mass_peak_with_background(mass, **kwargs)
