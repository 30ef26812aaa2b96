"""Cell times: energy-weighted mean of deposits, flight time, the technology's resolution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffcalo as dc
from diffcalo.simulation import SPEED_OF_LIGHT_MM_PER_NS, combine_deposits


def test_two_deposit_cell_time_by_hand():
    # 2 GeV at 1.0 ns and 0.5 GeV at 3.0 ns: E = 2.5 GeV, t = (2 x 1 + 0.5 x 3) / 2.5 = 1.4 ns
    e, t = combine_deposits(jnp.array([[2.0, 0.5], [0.0, 0.0]]), jnp.array([[1.0, 3.0], [5.0, 7.0]]))
    assert float(e[0]) == pytest.approx(2.5) and float(t[0]) == pytest.approx(1.4)
    assert float(e[1]) == 0.0 and float(t[1]) == 0.0   # empty cell: no time


def test_seed_cell_time_is_flight_time_plus_depth_and_jitter():
    det = dc.Detector.from_layout(dc.layout.lhcb_upgrade2_baseline())
    n = 4000
    x, y, e = 420.0, 300.0, 20.0
    p = dc.Particles.create(energy=np.full(n, e), x=np.full(n, x), y=np.full(n, y), pid=22,
                            tx=x / 12620.0, ty=y / 12620.0, time=0.25)
    c = dc.simulate(det, p, key=jax.random.key(3), mode="relaxed")
    seed_t = np.asarray(c.time)[:, :, 2, 2]          # [n, front/back]
    seed_e = np.asarray(c.energy)[:, :, 2, 2]
    flight = np.sqrt(x * x + y * y + 12620.0 ** 2) / SPEED_OF_LIGHT_MM_PER_NS
    # the front section of SpaCal-W is 40.8 mm deep: its deposit sits inside it, the back one behind
    front = seed_t[:, 0].mean() - 0.25 - flight
    back = seed_t[:, 1].mean() - 0.25 - flight
    assert 0.0 < front < 40.8 / SPEED_OF_LIGHT_MM_PER_NS
    assert 40.8 / SPEED_OF_LIGHT_MM_PER_NS < back < 139.4 / SPEED_OF_LIGHT_MM_PER_NS
    # the spread is the technology's resolution A / sqrt(E) (+) B at the seed-cell energy
    tech = det.technologies[0]
    expect = np.sqrt(tech.time_stochastic_ns ** 2 / seed_e[:, 0] + tech.time_constant_ns ** 2)
    assert seed_t[:, 0].std() == pytest.approx(np.sqrt((expect ** 2).mean()), rel=0.05)
    # empty cells carry no time
    assert np.all(np.asarray(c.time)[np.asarray(c.energy) <= 0] == 0.0)
