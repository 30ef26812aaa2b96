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


def _hand_clusters(n, times, energies, *, x=600.0, y=0.0, cell=30.3, z=12620.0, t0=0.0):
    """Clusters of one section, 3 x 3 cells centred at (x, y), every cell at the given times / energies."""
    from diffcalo.clusters import Clusters

    flight = np.sqrt(x * x + y * y + z * z) / SPEED_OF_LIGHT_MM_PER_NS
    f = lambda v: np.full(n, v, dtype=np.float32)
    return Clusters(energy=np.asarray(energies, np.float32), time=np.asarray(times, np.float32), e_true=f(10.0),
                    x=f(x), y=f(y), tx=f(0.0), ty=f(0.0), pid=np.full(n, 22, np.int32),
                    offset=np.zeros((n, 2), np.float32), centre=np.tile(np.float32([x, y]), (n, 1)),
                    cell_index=np.zeros((n, 2), np.int32), cell_size_mm=f(cell), region=np.zeros(n, np.int32),
                    status=np.zeros(n, np.int32), leakage=f(0.0), n_background=np.zeros(n, np.int32),
                    t_true=f(t0 + flight))


def test_time_window_keeps_the_hand_computed_fraction_of_gaussian_pileup():
    """Pile-up cells arriving N(0, 250 ps) around the expected time, a fixed half-width of 250 ps:
    erf(1 / sqrt(2)) = 68.3 % kept; with n_sigma = 2 and a 100 ps resolution (B only), a half-width of
    200 ps: erf(0.8 / sqrt(2)) = 57.6 % kept."""
    from math import erf, sqrt

    from diffcalo.reco.timing import TimeWindow, expected_times

    n = 20000
    rng = np.random.default_rng(0)
    c = _hand_clusters(n, np.zeros((n, 1, 3, 3)), np.ones((n, 1, 3, 3)))
    exp = expected_times(c, 12620.0)
    times = exp + 0.25 * rng.standard_normal(exp.shape)
    c = _hand_clusters(n, times, np.ones((n, 1, 3, 3)))
    fixed = TimeWindow(z_mm=12620.0, offsets=np.zeros((1, 1)), resolution=np.array([[0.0, 0.1]]), width_ns=0.25)
    out, dropped = fixed.apply(c)
    assert 1 - dropped == pytest.approx(erf(1 / sqrt(2)), abs=0.005)
    assert np.all(np.asarray(out.energy)[~fixed.keep(c)] == 0)
    by_resolution = TimeWindow(z_mm=12620.0, offsets=np.zeros((1, 1)), resolution=np.array([[0.0, 0.1]]), n_sigma=2.0)
    _, dropped = by_resolution.apply(c)
    assert 1 - dropped == pytest.approx(erf(0.8 / sqrt(2)), abs=0.005)


def test_time_window_expected_times_follow_the_cells_and_the_vertex():
    """Off-centre cells are further from the interaction point; a signal vertex 0.3 ns late shifts all."""
    from diffcalo.reco.timing import expected_times

    c = _hand_clusters(1, np.zeros((1, 1, 3, 3)), np.ones((1, 1, 3, 3)), x=1000.0, t0=0.3)
    t = expected_times(c, 12620.0)[0, 0]
    for j, dx in enumerate((-30.3, 0.0, 30.3)):
        flight = np.sqrt((1000.0 + dx) ** 2 + 12620.0 ** 2) / SPEED_OF_LIGHT_MM_PER_NS
        assert t[1, j] == pytest.approx(0.3 + flight, abs=1e-4)


def test_time_window_fit_and_signal_efficiency_on_simulated_photons():
    """Fitted on clean 20 GeV photons in the SpaCal-W region (A = 256 ps sqrt(GeV), B = 17.5 ps), a
    2-sigma window keeps the signal (median > 98 %) and removes over a fifth of the pile-up energy at
    40 collisions (measured: 36 %); a 1-sigma window removes more pile-up and eats the signal. Soft
    pile-up cells (~0.1 GeV: sigma_t ~ 0.8 ns) cannot be told apart by time."""
    from diffcalo.pileup import PileupModel
    from diffcalo.reco.timing import TimeWindow

    det = dc.Detector.from_layout(dc.layout.lhcb_upgrade2_baseline())
    p = dc.gun(jax.random.key(0), 2000, det.layout, region="spacal-w", energy=20.0)
    clean = dc.simulate(det, p, key=jax.random.key(1), mode="realistic").as_numpy()
    piled = dc.simulate(det, p, key=jax.random.key(1), mode="realistic", pileup=PileupModel.default()).as_numpy()
    total = lambda c: np.asarray(c.energy).sum(axis=(1, 2, 3))
    extra = np.mean(total(piled) - total(clean))
    kept = {}
    for n_sigma in (1.0, 2.0):
        window = TimeWindow.fit(clean, det, n_sigma=n_sigma)
        assert np.all(np.abs(window.offsets[0]) < 0.5)           # ns: travel to the deposit depth
        signal = np.median(total(window.apply(clean)[0]) / total(clean))
        kept[n_sigma] = (signal, np.mean(total(window.apply(piled)[0]) - total(clean)) / extra)
    assert kept[2.0][0] > 0.98 and kept[2.0][1] < 0.8
    assert kept[1.0][0] < 0.9 and kept[1.0][1] < kept[2.0][1]


def test_time_window_centres_on_the_given_signal_vertex():
    """A photon from another collision, 0.354 ns (sqrt 2 x 250 ps) later than the signal vertex, fits its
    own window but falls outside a 200 ps window centred on the signal vertex it is combined with."""
    from diffcalo.reco.timing import TimeWindow, expected_times

    c = _hand_clusters(1, np.zeros((1, 1, 3, 3)), np.ones((1, 1, 3, 3)), x=1000.0, t0=0.354)
    c = _hand_clusters(1, expected_times(c, 12620.0), np.ones((1, 1, 3, 3)), x=1000.0, t0=0.354)
    window = TimeWindow(z_mm=12620.0, offsets=np.zeros((1, 1)), resolution=np.array([[0.0, 0.1]]), width_ns=0.2)
    assert window.keep(c).all()
    assert not window.keep(c, reference_ns=np.zeros(1)).any()
    assert window.keep(c, reference_ns=np.array([0.2])).all()          # 154 ps off: inside


def test_luminous_region_spreads_and_vertex_displaced_photons():
    """Head-on bunches of rms 75 mm: z_v rms 75 / sqrt 2 = 53.0 mm, arrival offset rms 75 / c = 250.2 ps,
    cov(z_v, offset) = -sigma_s^2 / (2 c) (a vertex further downstream is from an earlier beam-1 proton);
    photons keep their impact point, their slopes point back to their vertex."""
    from diffcalo.particles import from_vertices
    from diffcalo.pileup import luminous_region

    n = 200000
    z, t = luminous_region(jax.random.key(0), n)
    c = SPEED_OF_LIGHT_MM_PER_NS
    assert np.std(z) == pytest.approx(75.0 / np.sqrt(2), rel=0.01)
    assert np.std(t) == pytest.approx(75.0 / c, rel=0.01)
    assert np.mean(z * t) == pytest.approx(-75.0 ** 2 / (2 * c), rel=0.02)
    p = dc.Particles.create(energy=[10.0, 10.0], x=[300.0, -500.0], y=[0.0, 800.0])
    q = from_vertices(p, np.array([100.0, -50.0]), np.array([0.1, -0.2]), 12620.0)
    np.testing.assert_allclose(np.asarray(q.tx), [300.0 / 12520.0, -500.0 / 12670.0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(q.ty), [0.0, 800.0 / 12670.0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(q.time), [0.1, -0.2], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(q.x), np.asarray(p.x))
    with pytest.raises(ValueError, match="vertex_z_mm"):
        from_vertices(p, 13000.0, 0.0, 12620.0)
