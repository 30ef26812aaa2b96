"""Material constants and the effective-medium rules against hand computations (PDG mixture rules)."""

import math

import jax
import jax.numpy as jnp
import pytest

from diffcalo.materials import ES_MEV, MATERIALS, get_material, mixture, stack_properties


@pytest.mark.parametrize("name, x0_mm, rm_mm", [
    ("Pb", 5.61, 16.0), ("W", 3.50, 9.3), ("Fe", 17.6, 17.2), ("Cu", 14.4, 15.7),
    ("Si", 93.7, 49.4), ("polystyrene", 413.0, 94.0), ("PbWO4", 8.9, 19.6),
])
def test_pdg_radiation_length_and_moliere_radius(name, x0_mm, rm_mm):
    m = get_material(name)
    assert m.x0_mm == pytest.approx(x0_mm, rel=0.01)
    assert m.moliere_radius_mm == pytest.approx(rm_mm, rel=0.02)


def test_gagg_compound_matches_published_radiation_length():
    # GAGG:Ce datasheets quote X0 = 1.59-1.63 cm.
    assert get_material("GAGG").x0_mm == pytest.approx(16.1, abs=0.4)


def test_shashlik_stack_by_hand():
    # 2 mm Pb (11.35 g/cm3) + 4 mm polystyrene (1.06 g/cm3), PDG mixture rules by hand:
    m_pb, m_ps = 11.35 * 0.2, 1.06 * 0.4                     # g/cm2 per layer
    w_pb, w_ps = m_pb / (m_pb + m_ps), m_ps / (m_pb + m_ps)
    x0_gcm2 = 1.0 / (w_pb / 6.37 + w_ps / 43.79)
    rho = (m_pb + m_ps) / 0.6
    x0_mm = 10 * x0_gcm2 / rho
    rm_mm = 10 * ES_MEV / (w_pb * 7.43 / 6.37 + w_ps * 93.11 / 43.79) / rho
    p = stack_properties([(MATERIALS["Pb"], 2.0)], [(MATERIALS["polystyrene"], 4.0)])
    assert float(p.x0_mm) == pytest.approx(x0_mm, rel=1e-5)
    assert float(p.moliere_radius_mm) == pytest.approx(rm_mm, rel=1e-5)
    assert x0_mm == pytest.approx(16.39, abs=0.01)      # 66 layers = 24.2 X0 (LHCb: 25 X0)
    assert rm_mm == pytest.approx(35.85, abs=0.05)      # LHCb quotes R_M ~ 3.5 cm
    assert float(p.sampling_frequency) == pytest.approx(x0_mm / 6.0, rel=1e-5)
    assert float(p.e_over_mip) == pytest.approx(1 / (1 + 0.007 * (82 - 5.61)), rel=1e-5)
    # Fabjan-Gianotti sampling term 2.7 % sqrt(d/f_mip): ~11 %/sqrt(E) (LHCb ~10 %)
    assert float(p.sampling_term) == pytest.approx(0.109, abs=0.002)


def test_stack_is_differentiable_in_thickness():
    def x0(t_pb):
        return stack_properties([(MATERIALS["Pb"], t_pb)], [(MATERIALS["polystyrene"], 4.0)]).x0_mm

    with jax.enable_x64(True):
        g = jax.grad(x0)(jnp.float64(2.0))
        h = 1e-5
        fd = (x0(2.0 + h) - x0(2.0 - h)) / (2 * h)
        assert float(g) == pytest.approx(float(fd), rel=1e-6)
        assert float(g) < 0  # more lead, shorter X0


def test_homogeneous_stack_has_no_sampling_corrections():
    p = stack_properties([(MATERIALS["Pb"], 0.0)], [(MATERIALS["PbWO4"], 220.0)])
    assert float(p.e_over_mip) == 1.0
    assert float(p.sampling_frequency) >= 1e9
    assert float(p.x0_mm) == pytest.approx(MATERIALS["PbWO4"].x0_mm, rel=1e-5)


def test_mixture_rules_and_errors():
    brass = MATERIALS["brass"]
    assert brass.z == pytest.approx(0.7 * 29 + 0.3 * 30)
    assert 1 / brass.x0_gcm2 == pytest.approx(0.7 / 12.86 + 0.3 / 12.43)
    with pytest.raises(ValueError, match="mass fraction of Cu = -1"):
        mixture("bad", {MATERIALS["Cu"]: -1.0}, 8.0)
    with pytest.raises(KeyError, match="unknown material 'unobtainium'; known materials: .*Pb"):
        get_material("unobtainium")
    assert math.isfinite(MATERIALS["GAGG"].ec_mev)


def test_sampling_term_thickness_dependence_against_geant4():
    """The sampling term of the shashlik with other layer thicknesses (its calibrated value scaled by
    sampling_thickness_factor) against Geant4 on 24 deep, contained stacks: within 0.9-1.15 on the 20 Pb
    stacks the exponents were fitted to and on the 4 W stacks held out of the fit (measured 0.96-1.14 and
    0.96-1.07). The PDG form k sqrt(d_a / f_mip) it replaces misses by 0.46-2.8 on the same stacks."""
    import dataclasses
    import json
    import pathlib

    from diffcalo.technologies import get

    rows = json.loads((pathlib.Path(__file__).parent / "data" / "sampling_term_geant4.json").read_text())
    assert len(rows) == 24
    ratios, pdg = {}, []
    ref = get("shashlik").with_thickness(absorber_mm=2.0)
    for r in rows:
        block = dataclasses.replace(ref.stack[0], absorber_mm=r["d_p"], active_mm=r["d_a"], absorber=r["absorber"],
                                    count=r["layers"])
        tech = dataclasses.replace(ref, stack=(block,), sections=None)
        a_g4 = 0.5 * (r["a"]["2.0"] + r["a"]["8.0"])
        ratios.setdefault(r["absorber"], []).append(float(tech.effective_medium().sampling_term) / a_g4)
        pdg.append(float(dataclasses.replace(tech, sampling_reference=None).effective_medium().sampling_term) / a_g4)
    for absorber, rs in ratios.items():
        assert 0.9 < min(rs) and max(rs) < 1.15, (absorber, rs)
    assert min(pdg) < 0.5 and max(pdg) > 2.5
    # a calibrated stack keeps its own sampling term; a copy with its own thicknesses too
    nominal = get("shashlik")
    same = nominal.with_thickness(absorber_mm=2.0, active_mm=4.0)
    assert float(same.effective_medium().sampling_term) == pytest.approx(float(nominal.effective_medium().sampling_term), rel=1e-6)
    assert math.isclose(float(nominal.effective_medium().sampling_term), 0.0729757, rel_tol=1e-5)
