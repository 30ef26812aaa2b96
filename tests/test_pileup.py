"""The pile-up flux model: loading, densities, window counts with the beam hole, E_T spectra that put
energy where it belongs, occupancy against direct sums of independent Pythia 8 hits, timing."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffcalo as dc
from diffcalo import pileup_fit
from diffcalo.pileup import DEFAULT_MODEL_FILE, PileupModel, occupancy, window_pieces

HITS = pathlib.Path(__file__).parent / "data" / "pileup_hits_pythia8_seed1_3000.npz"
HITS_EVENTS = 3000


@pytest.fixture(scope="module")
def model():
    return PileupModel.default()


def _direct_hits():
    raw = np.load(HITS)
    out = {}
    for c in pileup_fit.CLASSES:
        xye, ev = raw[f"{c}_xye"].astype(float), raw[f"{c}_event"].astype(float)
        out[c] = np.column_stack([xye, np.zeros(len(ev)), ev])          # the columns of pileup_fit.generate
    return out


def test_default_model_loads_with_its_tables(model):
    assert model.names == ("photon", "electron", "charged_hadron", "neutral_hadron")
    raw = json.loads(DEFAULT_MODEL_FILE.read_text())
    assert raw["format"] == 2 and raw["r_min_mm"] == 200.0
    # ~40 hits per minimum-bias collision on the wall outside r = 200 mm
    assert 30 < sum(c.hits_per_collision for c in model.classes) < 60
    # the density table reproduces the hit counts it was made from where they are plentiful
    cls = model.classes[0]
    counts = np.asarray(raw["classes"]["photon"]["hits_per_density_cell"], dtype=float)
    table = np.exp(np.asarray(cls.log_density_per_cm2))
    area = 4 * np.outer(np.diff(model.density_y_edges_mm), np.diff(model.density_x_edges_mm)) / 100.0
    plenty = counts > 400
    assert plenty.sum() > 50
    np.testing.assert_allclose((table * area * 20000)[plenty], counts[plenty], rtol=0.1)


def test_density_scales_with_collisions_falls_outward_and_is_wider_in_x(model):
    d40 = np.asarray(model.density(jnp.array([300.0, 1000.0, 3000.0]), jnp.zeros(3)))
    d10 = np.asarray(model.with_collisions(10).density(jnp.array([300.0, 1000.0, 3000.0]), jnp.zeros(3)))
    np.testing.assert_allclose(d40, 4 * d10, rtol=1e-6)
    assert np.all(np.diff(d40, axis=1) < 0)
    # the dipole kick spreads charged hadrons in x: at 2 m from the beam, more along x than along y
    ch = model.names.index("charged_hadron")
    along_x = float(model.density(jnp.array(2000.0), jnp.array(0.0))[ch])
    along_y = float(model.density(jnp.array(0.0), jnp.array(2000.0))[ch])
    assert along_x > 1.3 * along_y


def test_window_pieces_leave_out_the_hole():
    hole = (242.4, 242.4)
    # a 200 mm window centred at (300, 0) overlaps the hole over x in [200, 242.4]
    xl, xh, yl, yh = (np.asarray(a) for a in window_pieces(jnp.array(300.0), jnp.array(0.0), 200.0, hole))
    area = ((xh - xl) * (yh - yl)).sum()
    assert area == pytest.approx(200 * 200 - 42.4 * 200, rel=1e-6)        # float32
    # far from the hole: the whole window
    xl, xh, yl, yh = (np.asarray(a) for a in window_pieces(jnp.array(1000.0), jnp.array(800.0), 200.0, hole))
    assert ((xh - xl) * (yh - yl)).sum() == pytest.approx(200 * 200)


def test_expected_counts_match_monte_carlo_integration_with_the_hole(model):
    x0, y0, w, hole = 300.0, 100.0, 202.0, (242.4, 242.4)
    rng = np.random.default_rng(1)
    xs = x0 + (rng.random(400_000) - 0.5) * w
    ys = y0 + (rng.random(400_000) - 0.5) * w
    inside = ~((np.abs(xs) < hole[0]) & (np.abs(ys) < hole[1]))
    rho = np.asarray(model.density(jnp.asarray(xs), jnp.asarray(ys))) * inside
    mc = rho.mean(axis=1) * w * w / 100.0
    quad = np.asarray(model.expected_counts(jnp.array(x0), jnp.array(y0), w, hole))
    np.testing.assert_allclose(quad, mc, rtol=0.02)
    no_hole = np.asarray(model.expected_counts(jnp.array(x0), jnp.array(y0), w))
    assert no_hole.sum() > 1.1 * quad.sum()


def test_energy_follows_position(model):
    """E = E_T / sin(theta): a hit at 250 mm carries several times the energy of one at 1 m."""
    near, far = (np.asarray(model.mean_energy(jnp.array(r), jnp.array(0.0))) for r in (250.0, 1000.0))
    ph = model.names.index("photon")
    assert 2.5 < near[ph] / far[ph] < 6.0
    # sampling reproduces the mean of the model's distribution at that point
    x = jnp.full(200_000, 1000.0)
    e = np.asarray(model.sample_energy(jax.random.key(0), ph, x, jnp.zeros_like(x)))
    assert e.mean() == pytest.approx(far[ph], rel=0.05)


def test_occupancy_matches_direct_sums_of_independent_pythia_hits(model):
    """The model (fitted on seed 20261122) against 3000 other generated collisions (seed 1), summed
    directly in the same 5 x 5 windows, per region: hits and energy within 15 %."""
    rows = pileup_fit.check(model, dc.layout.lhcb_upgrade2_baseline(), events=HITS_EVENTS, hits=_direct_hits(),
                            samples=300, seed=3, progress=False)
    assert [r["region"] for r in rows] == ["spacal-w", "spacal-pb", "middle", "outer"]
    for r in rows:
        for q in ("hits", "energy_gev", "et_gev"):
            assert abs(r["ratio"][q] - 1) < 0.15, (r["region"], q, r[q], r["direct"][q], r["direct_err"][q])
    # a few GeV of E_T per window in every region, tens of GeV of energy near the beam
    assert all(1.0 < r["direct"]["et_gev"] < 5.0 for r in rows)
    assert rows[0]["direct"]["energy_gev"] > 3 * rows[3]["direct"]["energy_gev"]


def test_direct_window_sums_by_hand():
    hits = {"photon": np.array([[10.0, 0.0, 2.0, 0.0, 0], [30.0, 0.0, 4.0, 0.0, 1], [500.0, 0.0, 8.0, 0.0, 1],
                                [0.0, 0.0, 100.0, 0.0, 0]])}
    out = pileup_fit.direct_window_sums(hits, 2, centres=[[20.0, 0.0]], widths=[50.0], hole_half_mm=(5.0, 5.0),
                                        batches=2)
    # hits 0 and 1 in the window, the one at the origin in the hole: 2 hits, 6 GeV over 2 collisions
    assert out["photon"]["hits"][0][0] == pytest.approx(1.0)
    assert out["photon"]["energy_gev"][0][0] == pytest.approx(3.0)


def test_occupancy_per_region_and_timing(model):
    rows = occupancy(model, dc.layout.lhcb_upgrade2_baseline(), samples=500)
    assert [r["region"] for r in rows] == ["spacal-w", "spacal-pb", "middle", "outer"]
    # mean energy per window falls from the beam outward
    energies = [r["energy_gev"] for r in rows]
    assert energies == sorted(energies, reverse=True)
    assert model.arrival_time_sigma_ns == pytest.approx(0.25, rel=0.01)        # 75 mm bunches
    t = np.asarray(model.arrival_offsets(jax.random.key(0), (100_000,)))
    assert t.std() == pytest.approx(0.25, rel=0.02)
    with pytest.raises(ValueError, match="integration_window_ns = 0"):
        model.with_timing(integration_window_ns=0)


def test_bad_model_files(tmp_path):
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps({"format": 2, "classes": {"photon": {"density": {}}}}))
    with pytest.raises(ValueError, match="lacks the key"):
        PileupModel.from_json(bad)
    bad.write_text(json.dumps({"classes": {}}))
    with pytest.raises(ValueError, match="pile-up model format 1; this version reads format 2"):
        PileupModel.from_json(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read the pile-up model"):
        PileupModel.from_json(bad)
    with pytest.raises(ValueError, match="collisions_per_crossing = -1: must be a number >= 0"):
        PileupModel.default(collisions_per_crossing=-1)
