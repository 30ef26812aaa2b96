"""The pile-up flux model: loading, densities, window counts, energy sampling, occupancy ordering."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffcalo as dc
from diffcalo.pileup import DEFAULT_MODEL_FILE, PileupModel, occupancy


@pytest.fixture(scope="module")
def model():
    return PileupModel.default()


def test_default_model_loads_and_matches_its_own_fit_data(model):
    assert model.names == ("photon", "electron", "charged_hadron", "neutral_hadron")
    raw = json.loads(DEFAULT_MODEL_FILE.read_text())
    for c in model.classes:
        check = raw["classes"][c.name]["fit_check"]
        r, rho = np.asarray(check["r_mm"]), np.asarray(check["density_per_cm2"])
        inner = (r > 100) & (r < 3000) & (rho > 0)
        fitted = np.asarray(c.density(r[inner]))
        if c.name != "electron":          # few electrons: the histogram itself is noisy
            assert np.median(np.abs(fitted / rho[inner] - 1)) < 0.1
    # ~60 hits per minimum-bias collision on the wall
    assert 40 < sum(c.hits_per_collision for c in model.classes) < 90


def test_density_scales_with_collisions_and_falls_with_radius(model):
    d40 = np.asarray(model.density(jnp.array([100.0, 1000.0, 3000.0]), jnp.zeros(3)))
    d10 = np.asarray(model.with_collisions(10).density(jnp.array([100.0, 1000.0, 3000.0]), jnp.zeros(3)))
    np.testing.assert_allclose(d40, 4 * d10, rtol=1e-6)
    assert np.all(np.diff(d40, axis=1) < 0)


def test_expected_counts_match_monte_carlo_integration(model):
    x0, y0, w = 600.0, 250.0, 151.5
    rng = np.random.default_rng(1)
    xs = x0 + (rng.random(200_000) - 0.5) * w
    ys = y0 + (rng.random(200_000) - 0.5) * w
    mc = np.asarray(model.density(jnp.asarray(xs), jnp.asarray(ys))).mean(axis=1) * w * w / 100.0
    gauss = np.asarray(model.expected_counts(jnp.array(x0), jnp.array(y0), w))
    np.testing.assert_allclose(gauss, mc, rtol=0.01)


def test_sampled_energies_follow_the_quantiles(model):
    x = jnp.full(100_000, 2500.0)
    e = np.asarray(model.sample_energy(jax.random.key(0), 0, x, jnp.zeros_like(x)))
    q = np.asarray(model.classes[0].log10_energy_quantiles[2])
    assert np.median(np.log10(e)) == pytest.approx(q[len(q) // 2], abs=0.02)
    assert e.min() >= 10 ** q[0] * 0.999 and e.max() <= 10 ** q[-1] * 1.001


def test_occupancy_grows_with_window_area_and_energy_with_proximity(model):
    rows = occupancy(model, dc.layout.lhcb_upgrade2_baseline(), samples=2000)
    names = [r["region"] for r in rows]
    assert names == ["spacal-w", "spacal-pb", "middle", "outer"]
    # the density is highest near the beam but the windows of fine cells are small
    dens = [r["hits"] / (r["window_mm"] / 10) ** 2 for r in rows]
    assert dens == sorted(dens, reverse=True)
    assert rows[0]["energy_gev"] > rows[2]["energy_gev"] > rows[3]["energy_gev"]


def test_bad_model_files(tmp_path):
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps({"classes": {"photon": {"density": {}}}}))
    with pytest.raises(ValueError, match="lacks the key"):
        PileupModel.from_json(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read the pile-up model"):
        PileupModel.from_json(bad)
    with pytest.raises(ValueError, match="collisions_per_crossing = -1: must be a number >= 0"):
        PileupModel.default(collisions_per_crossing=-1)
