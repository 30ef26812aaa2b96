"""Particle batches and guns."""

import jax
import numpy as np
import pytest

import diffcalo as dc


def test_gun_from_ip_points_back_to_the_interaction_point():
    lay = dc.layout.lhcb_upgrade2_baseline()
    p = dc.gun(jax.random.key(0), 500, lay)
    np.testing.assert_allclose(np.asarray(p.tx), np.asarray(p.x) / lay.z_mm, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(p.ty), np.asarray(p.y) / lay.z_mm, rtol=1e-6)
    _, status = lay.region_of(p.x, p.y)
    assert np.all(np.asarray(status) == 0)          # never in the beam hole or off the wall
    e = np.asarray(p.energy)
    assert e.min() >= 2.0 and e.max() <= 100.0     # default log-uniform 2-100 GeV


def test_gun_region_cell_and_fixed_direction():
    lay = dc.layout.lhcb_current()
    p = dc.gun(jax.random.key(1), 200, lay, region="middle", direction=(0.01, -0.02), pid=11,
               energy=dc.uniform_energy(5.0, 6.0))
    region, _ = lay.region_of(p.x, p.y)
    assert np.all(np.asarray(region) == 1)
    assert np.all(np.asarray(p.tx) == np.float32(0.01)) and np.all(np.asarray(p.pid) == 11)
    ix, iy = 2, 30
    q = dc.gun(jax.random.key(2), 100, lay, region="outer", cell=(ix, iy), energy=10.0)
    out = lay.lookup(np.asarray(q.x), np.asarray(q.y))
    assert np.all(out["ix"] == ix) and np.all(out["iy"] == iy) and np.all(np.asarray(q.energy) == 10.0)


def test_log_uniform_and_discrete_spectra():
    lay = dc.layout.lhcb_current()
    p = dc.gun(jax.random.key(3), 20_000, lay, energy=dc.log_uniform_energy(1.0, 100.0))
    log_e = np.log10(np.asarray(p.energy))
    # uniform in log10 E on [0, 2]: mean 1, standard deviation 2 / sqrt(12)
    assert log_e.mean() == pytest.approx(1.0, abs=0.02) and log_e.std() == pytest.approx(2 / np.sqrt(12), abs=0.01)
    q = dc.gun(jax.random.key(4), 3000, lay, energy=dc.discrete_energy([3.0, 5.0, 10.0]))
    vals, counts = np.unique(np.asarray(q.energy), return_counts=True)
    assert list(vals) == [3.0, 5.0, 10.0] and counts.min() > 900


def test_gun_errors():
    lay = dc.layout.lhcb_current()
    with pytest.raises(ValueError, match=r"energy range = \[5.0, 2.0\] GeV: need 0 < low < high"):
        dc.uniform_energy(5.0, 2.0)
    with pytest.raises(ValueError, match="region = 'centre': unknown; the layout's regions are"):
        dc.gun(jax.random.key(0), 10, lay, region="centre")
    with pytest.raises(ValueError, match="cell = \\(0, 0\\): not inside region 'inner'"):
        dc.gun(jax.random.key(0), 10, lay, region="inner", cell=(0, 0))
    with pytest.raises(ValueError, match="direction = 'from-ip' needs layout.z_mm > 0"):
        dc.gun(jax.random.key(0), 10, dc.layout.luxe())
    with pytest.raises(ValueError, match="n = 0: must be an integer >= 1"):
        dc.gun(jax.random.key(0), 0, lay)
