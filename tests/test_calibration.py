"""Calibration of the parametric model to shower libraries (diffcalo.geant4.calibrate,
diffcalo.technologies.calibration): closure on showers the parametric model made itself with known
factors, the identity, file round trip and clear errors, and that the built-ins carry their shipped
calibration."""

import dataclasses
import json

import numpy as np
import pytest

from diffcalo.geant4 import calibrate as cal
from diffcalo.technologies import Technology, default_registry
from diffcalo.technologies.builtin import BUILTINS
from diffcalo.technologies.calibration import BUILTIN_DIR, Calibration, load_calibration

TRUTH = Calibration(sampling_fraction_scale=1.2, t_max_shift_x0=0.5, alpha_scale=1.1, core_scale=0.8, tail_scale=1.2,
                    core_fraction_scale=0.9, sampling_term_scale=1.3)


@pytest.fixture(scope="module")
def closure():
    base = dataclasses.replace(default_registry().get("siw"), calibration=None)
    truth_tech = dataclasses.replace(base, calibration=TRUTH)
    clusters, extras, meta = cal.parametric_library(truth_tech, 5.0, (3.0, 20.0), showers=200, seed=3)
    groups = cal.library_observables(clusters, extras, meta, base)
    fit, at_bound = cal.calibrate(base, groups, 5.0, log=lambda *a: None)
    rows = cal.compare(dataclasses.replace(base, calibration=fit), groups, 5.0)
    return fit, at_bound, rows


def test_closure_recovers_the_well_constrained_factors(closure):
    fit, at_bound, _ = closure
    assert at_bound == []
    assert fit.sampling_fraction_scale == pytest.approx(TRUTH.sampling_fraction_scale, rel=1e-3)
    assert fit.t_max_shift_x0 == pytest.approx(TRUTH.t_max_shift_x0, abs=0.15)
    assert fit.alpha_scale == pytest.approx(TRUTH.alpha_scale, rel=0.05)
    assert fit.sampling_term_scale == pytest.approx(TRUTH.sampling_term_scale, rel=0.10)
    assert fit.constant_term < 0.01


def test_closure_reproduces_the_observables_within_the_targets(closure):
    # the radial factors trade against each other (core, tail and core fraction all move the containment);
    # what must come back is what they describe
    _, _, rows = closure
    for r in rows:
        assert abs(r["sf_rel"]) < 1e-3
        assert r["profile_dev"] < 0.01
        assert abs(r["depth_diff"]) < 0.15
        for k in (1, 3, 5):
            # within three standard errors of the library's mean (the fit sees the same noise)
            assert abs(r["containment_diff"][k]) < 3 * r["containment_err"][k] + 0.003, (r["energy"], k, r["containment_diff"])
        assert r["res_model"] == pytest.approx(r["res_g4"], rel=0.12)


def test_identity_changes_nothing():
    import jax

    import diffcalo as dc

    tech = dataclasses.replace(default_registry().get("shashlik"), calibration=None)
    det = dc.Detector.from_layout(dc.layout.preset("lhcb-current"))
    p = dc.particles.gun(jax.random.key(0), 200, det.layout, region="middle", energy=dc.particles.discrete_energy([10.0]))
    a = dc.simulate(det.replace_region(1, technology=tech), p, key=jax.random.key(1))
    b = dc.simulate(det.replace_region(1, technology=dataclasses.replace(tech, calibration=Calibration())), p,
                    key=jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(a.energy), np.asarray(b.energy))
    c = dc.simulate(det.replace_region(1, technology=dataclasses.replace(tech, calibration=Calibration(core_scale=1.5))),
                    p, key=jax.random.key(1))
    assert not np.allclose(np.asarray(a.energy), np.asarray(c.energy))


def test_sampling_fraction_scale_moves_the_sampling_fraction():
    tech = dataclasses.replace(default_registry().get("siw"), calibration=None)
    scaled = dataclasses.replace(tech, calibration=Calibration(sampling_fraction_scale=1.25))
    np.testing.assert_allclose(np.asarray(scaled.layer_sampling_fraction()),
                               1.25 * np.asarray(tech.layer_sampling_fraction()), rtol=1e-6)
    assert float(scaled.effective_medium().sampling_fraction) == pytest.approx(
        1.25 * float(tech.effective_medium().sampling_fraction), rel=1e-6)


def test_calibration_file_round_trip_and_errors(tmp_path):
    c = Calibration(core_scale=0.9, constant_term=0.01, source="x")
    path = tmp_path / "c.json"
    path.write_text(json.dumps(dict(calibration=c.to_dict(), technology="siw")))
    assert load_calibration(path) == c
    path.write_text(json.dumps(dict(core_scale=0.9, bogus=1)))
    with pytest.raises(ValueError, match=r"unknown calibration fields \['bogus'\]"):
        load_calibration(path)
    path.write_text("not json")
    with pytest.raises(ValueError, match="not a readable calibration file"):
        load_calibration(path)
    with pytest.raises(ValueError, match=r"core_scale = -1: must be > 0"):
        Calibration(core_scale=-1).validate()
    with pytest.raises(ValueError, match=r"constant_term = 2: must be in \[0, 1\)"):
        Calibration(constant_term=2).validate()
    with pytest.raises(ValueError, match="calibration = 'x': must be a diffcalo Calibration"):
        dataclasses.replace(default_registry().get("siw"), calibration="x").validate()


def test_builtins_carry_their_shipped_calibration():
    reg = default_registry()
    for tech in BUILTINS:
        path = BUILTIN_DIR / f"{tech.name}.json"
        assert path.is_file(), f"no shipped calibration for {tech.name}"
        assert reg.get(tech.name).calibration == load_calibration(path)
        assert isinstance(reg.get(tech.name), Technology)
