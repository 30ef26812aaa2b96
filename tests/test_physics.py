"""Physics validation: published numbers (PDG, LHCb) and the Geant4 LUXE reference showers.

The figures are computed by :mod:`diffcalo.validation` (``diffcalo validate`` prints them). Where the
model misses a target of the issue, the test states the target and is marked ``xfail(strict=True)``
with the measured figure in its reason: it keeps asserting the target, and fails loudly as soon as a
model change makes it pass (so the mark must then be removed).

Since issue 14 the built-ins carry calibrations fitted to Geant4 shower libraries made with the same
Geant4 set-up as the LUXE reference (siw: electrons at 1, 3, 20, 50 GeV in a stack that differs from the
reference's only in where the air gap sits): the LUXE comparisons below are then consistency checks on
another sample and geometry variant, not independent validations; ``diffcalo validate --geant4`` holds the
held-out checks (photons, positrons, 10 GeV).
"""

import numpy as np
import pytest

from diffcalo import validation


@pytest.fixture(scope="module")
def shashlik():
    return validation.shashlik_resolution(per_energy=3000)


@pytest.mark.xfail(strict=True, raises=AssertionError, reason="measured a = 6.7 %/sqrt(E) (b = 1.4 %, c = 58 MeV/E) since "
                   "the Shashlik is calibrated to Geant4 (issue 14: sampling-only 7.8 %/sqrt(E) in Geant4's 66 x (2 mm "
                   "Pb + 4 mm scintillator), which the calibration reproduces). LHCb's ~10 % includes what an "
                   "idealised Geant4 stack lacks (fibre holes, light-collection non-uniformity); with a free c/E term "
                   "on 2-100 GeV photons the fitted a is lower still")
def test_shashlik_stochastic_term_within_15_percent_of_10_percent(shashlik):
    fit = shashlik["fit"]
    assert 0.085 <= fit.stochastic <= 0.115, str(fit)


def test_shashlik_constant_term_near_one_percent(shashlik):
    # "near 1 %": LHCb quotes ~1 % (test beam 0.8 %); accepted band 0.5-2 %.
    fit = shashlik["fit"]
    assert 0.005 <= fit.constant <= 0.02, str(fit)


def test_shashlik_response_is_flat(shashlik):
    resp = shashlik["response"]
    assert np.ptp(resp) < 0.02 and 0.95 < resp.mean() < 1.0


def test_shower_maximum_grows_like_log_energy():
    s = validation.shower_maximum_scaling("siw")
    # t_max = ln(E / Ec) + C: slope 1 X0 per unit ln E
    assert s["slope"] == pytest.approx(1.0, abs=0.1)
    assert np.all(np.diff(s["t_max_x0"]) > 0)


@pytest.mark.parametrize("technology", [
    "shashlik", pytest.param("siw", marks=pytest.mark.xfail(
        strict=True, raises=AssertionError, reason="measured 84.8 % since siw is calibrated to Geant4 (issue 14), whose "
        "showers in this W/Si stack with 0.68 mm air gaps per 4.5 mm layer are wider than the textbook ~90 % within "
        "the effective R_M: the calibrated model matches Geant4's 1x1 / 3x3 / 5x5 pad containment within 0.02")),
    "spacal-w",
    "spacal-pb",
])
def test_about_90_percent_within_one_moliere_radius(technology):
    assert validation.moliere_containment(technology, energy=10.0) == pytest.approx(0.90, abs=0.03)
    assert validation.moliere_containment(technology, energy=10.0, radius_rm=3.5) > 0.97


# ---- Geant4 reference (LUXE W/Si, electrons 3-20 GeV) --------------------------------------------------
@pytest.fixture(scope="module")
def g4():
    return validation.compare_geant4_luxe()


def test_geant4_sampling_fraction_within_5_percent(g4):
    assert g4["sampling_fraction_sim"] == pytest.approx(g4["sampling_fraction_g4"], rel=0.05), \
        (g4["sampling_fraction_sim"], g4["sampling_fraction_g4"])


def test_geant4_sampling_fraction_is_flat_in_energy(g4):
    sf = [r["sampling_fraction_sim"] for r in g4["per_energy"]]
    sf_g4 = [r["sampling_fraction_g4"] for r in g4["per_energy"]]
    assert np.ptp(sf) / np.mean(sf) < 0.02 and np.ptp(sf_g4) / np.mean(sf_g4) < 0.02


def test_geant4_stochastic_term_within_15_percent(g4):
    assert g4["fit_sim"].stochastic == pytest.approx(g4["fit_g4"].stochastic, rel=0.15), \
        (str(g4["fit_sim"]), str(g4["fit_g4"]))


def test_geant4_resolution_order_of_magnitude(g4):
    # what the model does reproduce: the resolution falls like 1/sqrt(E) and is within 30 % of Geant4
    for r in g4["per_energy"]:
        assert r["resolution_sim"] == pytest.approx(r["resolution_g4"], rel=0.30)


@pytest.mark.xfail(strict=True, raises=AssertionError, reason="measured since the issue-14 calibration: model / Geant4 of the "
                   "silicon energy per layer 0.75-0.79 in the first layers and 1.14-1.20 in the late ones at 3 GeV (beyond "
                   "two standard errors: up to +0.165). Geant4's sampling fraction falls with depth (2.5 % in the first "
                   "layer, 1.15 % in the last: the shower softens) while the model has one per technology; the "
                   "calibration fits the deposited-energy profile (within 0.015 per layer), so the visible one inherits "
                   "the depth dependence. Next step: a sampling-fraction scale per readout section")
def test_geant4_profile_shape_within_15_percent(g4):
    """Per-layer mean profile (normalised) within 15 % in the layers holding 80 % of the energy,
    beyond the statistical error of the comparison (two standard errors: Geant4 has 200 showers per
    energy, i.e. 3-6 % per layer; the model is simulated 4x oversampled). Raw deviations are printed
    by ``diffcalo validate``."""
    for r in g4["per_energy"]:
        excess = np.abs(r["profile_ratio"] - 1.0) - 2.0 * r["profile_ratio_err"]
        assert np.all(excess < 0.15), (r["energy"], r["profile_ratio"], r["profile_ratio_err"])
        assert np.all(r["profile_ratio_err"] < 0.08)  # the comparison is precise enough to mean something


def test_geant4_containment_within_0_03(g4):
    assert g4["containment3_sim"] == pytest.approx(g4["containment3_g4"], abs=0.03)
    assert g4["containment5_sim"] == pytest.approx(g4["containment5_g4"], abs=0.03)


def test_geant4_containment_within_looser_bounds(g4):
    # what the model does reproduce: 5x5 pads hold 88-93 % and 3x3 76-85 % in both
    assert g4["containment3_sim"] == pytest.approx(g4["containment3_g4"], abs=0.1)
    assert g4["containment5_sim"] == pytest.approx(g4["containment5_g4"], abs=0.05)
