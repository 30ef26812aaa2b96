"""Outputs a physicist reads: resolution fits shown with bounds and quality flags, `evaluate` figures."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from diffcalo import metrics

ENERGIES = np.array([2.0, 5.0, 10.0, 20.0, 50.0, 100.0])


def _fit(resolution, **kwargs):
    return metrics.fit_resolution(ENERGIES, resolution, 0.02 * resolution, **kwargs)


def test_term_at_bound_is_shown_as_a_bound():
    # purely stochastic points: b and c end on their bound 0 and have no measurement, only a limit
    fit = _fit(0.1 / np.sqrt(ENERGIES))
    assert fit.constant_limit is not None and fit.noise_limit is not None and fit.stochastic_limit is None
    # the limit is where the profile chi2 rises by 1: b held at the limit, a and c refitted
    from scipy.optimize import minimize

    points = 0.1 / np.sqrt(ENERGIES)
    b = fit.constant_limit
    chi2 = lambda p: float((((np.sqrt(p[0] ** 2 / ENERGIES + b * b + (p[1] / ENERGIES) ** 2) - points)
                             / (0.02 * points)) ** 2).sum())
    best = min(minimize(chi2, [0.1, c0], bounds=[(0, 1), (0, 1)], method="L-BFGS-B").fun for c0 in (0.0, 0.05))
    assert 0.0 < b < 0.01
    assert best == pytest.approx(fit.chi2 + 1.0, abs=0.02)
    terms = {t.name: t for t in metrics.fit_terms(fit)}
    assert terms["b"].at_bound and terms["b"].text.startswith("< ")
    assert terms["c"].at_bound and terms["c"].text.startswith("< ") and terms["c"].text.endswith("MeV/E")
    assert not terms["a"].at_bound and "±" in terms["a"].text
    text = metrics.format_fit(fit)
    assert "b < " in text and "c < " in text and "b = 0.0" not in text and "POOR FIT" not in text
    # the limit is rounded up, never down: the bound stays true
    shown = float(terms["b"].text.split()[1])
    assert shown >= 100 * fit.constant_limit


def test_issue_example_pinned_terms_are_not_measurements():
    # a = 0, b = 0, c = 6.82 GeV was printed as three measurements; points of a pure noise term
    fit = _fit(6.82 / ENERGIES)
    text = metrics.format_fit(fit)
    assert "a < " in text and "b < " in text and "c = 6820" in text and "-0" not in text, text


def test_value_within_its_error_of_the_bound_is_a_bound():
    fit = dict(stochastic=0.10, stochastic_err=0.002, constant=0.001, constant_err=0.003, noise=0.05, noise_err=0.01,
               chi2=3.0, ndf=3)
    terms = {t.name: t for t in metrics.fit_terms(fit)}
    assert terms["b"].at_bound and terms["b"].text == "< 0.40 %"
    assert not terms["c"].at_bound and terms["c"].text == "50 ± 10 MeV/E"


def test_bad_fit_is_flagged_and_good_fit_is_not():
    truth = np.sqrt(0.1 ** 2 / ENERGIES + 0.01 ** 2)
    rng = np.random.default_rng(1)
    good = _fit(truth * (1 + 0.02 * rng.normal(size=ENERGIES.size)))
    assert good.p_value > metrics.POOR_FIT_P_VALUE
    assert "POOR FIT" not in metrics.format_fit(good) and "χ²/ndf" in metrics.format_fit(good)
    # points alternating +-20 % around the curve: no a, b, c describes them
    bad = _fit(truth * (1 + 0.2 * np.array([1, -1, 1, -1, 1, -1])))
    assert bad.chi2 / bad.ndf > 3 and bad.p_value < metrics.POOR_FIT_P_VALUE
    assert "POOR FIT" in metrics.format_fit(bad)


def test_format_fit_reads_the_json_form_and_failed_fits():
    fit = _fit(0.1 / np.sqrt(ENERGIES), fit_noise=False)
    back = json.loads(json.dumps(dataclasses.asdict(fit)))
    assert metrics.format_fit(back) == metrics.format_fit(fit) == str(fit)
    assert "c " not in metrics.format_fit(fit)          # a term held at 0 is not shown
    assert metrics.format_fit(dict(error="2 points for 3 parameters")) == "no fit (2 points for 3 parameters)"
    # the journal keeps the values only: a term exactly at 0 still reads as a bound
    assert "b = 0.00 % (at its bound)" in metrics.format_fit(dict(stochastic=0.1, constant=0.0, noise=0.002))


@pytest.mark.parametrize("ndf, chi2_per_ndf, flagged", [(5, 2.9, False), (5, 3.2, True), (10, 2.2, False), (10, 2.5, True)])
def test_poor_fit_threshold(ndf, chi2_per_ndf, flagged):
    assert (metrics.fit_p_value(chi2_per_ndf * ndf, ndf) < metrics.POOR_FIT_P_VALUE) is flagged


def test_histogram_range_from_the_data_leaves_the_edge_bins_nearly_empty():
    import matplotlib.pyplot as plt

    from diffcalo.plotting import _robust_hist

    rng = np.random.default_rng(2)
    heavy = rng.standard_cauchy(20000) * 5.0 + 3.0          # a heavy-tailed residual
    narrow = rng.normal(0.0, 2.0, 20000)
    fig, ax = plt.subplots()
    try:
        _robust_hist(ax, "heavy", heavy, [heavy, narrow], "k")
        x = ax.patches[0].get_xy()[:, 0]
        counts, _ = np.histogram(heavy, bins=100, range=(x.min(), x.max()))
        label = ax.get_legend_handles_labels()[1][0]
    finally:
        plt.close(fig)
    assert counts.sum() > 0.9 * heavy.size                      # the range keeps most entries ...
    assert (counts[0] + counts[-1]) / counts.sum() < 0.01       # ... and none pile up in the edge bins
    assert "% outside" in label


def test_plot_reco_draws_calibrated_resolution_with_its_fit(tmp_path):
    import types

    import matplotlib.pyplot as plt

    from diffcalo.plotting import plot_reco

    rng = np.random.default_rng(3)
    n = 4000
    e = np.repeat([2.0, 5.0, 10.0, 20.0, 50.0, 100.0], n // 6 + 1)[:n]
    sigma = np.sqrt(0.1 ** 2 / e + 0.01 ** 2)
    estimates = dict(energy=e * (1 + sigma * rng.standard_t(3, n)),                 # calibrated, heavy tails
                     classical_energy=0.8 * e * (1 + sigma * rng.normal(size=n)))   # miscalibrated by 20 %
    clusters = types.SimpleNamespace(region=np.zeros(n, int), e_true=e, offset=rng.uniform(-10, 10, (n, 2)),
                                     t_true=np.zeros(n))
    pred = dict(estimates, offset=clusters.offset + rng.normal(0, 1, (n, 2)),
                classical_offset=clusters.offset + rng.standard_cauchy((n, 2)), time=np.zeros(n), classical_time=np.zeros(n))
    entry = dict(n=n, cell_mm=20.2)
    for who, key in (("network", "energy"), ("classical", "classical_energy")):
        curve = metrics.energy_curve(e, pred[key])
        entry[who] = dict(energy_curve={k: v.tolist() for k, v in curve.items()},
                          calibrated_energy_fit=metrics.fit_curve_resolution(curve, calibrated=True))
    drawn = {}
    real_save = plt.Figure.savefig

    def spy(fig, *args, **kwargs):
        drawn["axes"] = fig.axes
        return real_save(fig, *args, **kwargs)

    plt.Figure.savefig = spy
    try:
        paths = plot_reco(dict(regions={"0": entry}, predictions=pred), clusters, tmp_path, names=["inner: Shashlik"],
                          collisions=40)
    finally:
        plt.Figure.savefig = real_save
    assert [p.name for p in paths] == ["reco_region0.png"] and paths[0].stat().st_size > 10_000
    axes = drawn["axes"]
    assert "inner: Shashlik, 20.2 mm cells, pile-up 40 collisions/crossing" in axes[0].figure._suptitle.get_text()
    res = axes[1]
    labels = res.get_legend_handles_labels()[1]
    # the 20 % miscalibration is corrected: the classical estimate shows the true stochastic term (10 %,
    # not 8 %), from the fit to the calibrated points
    classical = next(label for label in labels if label.startswith("classical"))
    assert float(classical.split("a = ")[1].split(" ")[0]) == pytest.approx(10.0, abs=0.6), classical
    assert len(res.get_lines()) >= 4                               # points and fitted curve per estimate
    for a in axes:
        if a.axison:
            assert "[" in a.get_xlabel(), a.get_xlabel()                            # a unit on every axis
            assert "[" in a.get_ylabel() or a.get_ylabel() == "clusters per bin", a.get_ylabel()


def test_format_measurement_rounds_the_value_to_the_error():
    assert metrics.format_measurement(97.894, 2.5) == "97.9 ± 2.5"
    assert metrics.format_measurement(106.5, 3.0) == "106.5 ± 3.0"
    assert metrics.format_measurement(1234.5, 56.0) == "1234 ± 56"      # two significant digits of the error
    assert metrics.format_measurement(0.123456, 0.0123) == "0.123 ± 0.012"


def test_a_position_that_knows_only_the_cell_is_flagged():
    rng = np.random.default_rng(0)
    cell = 15.15
    flat = rng.uniform(-cell / 2, cell / 2, (20000, 2))                     # the estimate says "cell centre"
    core = metrics.width_summary(flat)["core"]
    assert metrics.cell_centre_width(cell) == pytest.approx(4.373, abs=1e-3)
    assert metrics.no_better_than_cell_centre(core, cell)
    assert not metrics.no_better_than_cell_centre([0.5, 0.6], cell)
    assert not metrics.no_better_than_cell_centre([4.5, 1.0], cell)       # y is measured
