"""Cluster finder (local maxima, shared cells, 2x2, window edges), position-dependent pile-up
subtraction and the classical baseline built on them: hand-made windows with energies computed by
hand, a toy with a known r-dependent background, and simulated photons with pile-up."""

import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffcalo as dc
from diffcalo import metrics
from diffcalo.pileup import PileupModel
from diffcalo.reco.classical import ClassicalReco
from diffcalo.reco.clustering import (
    MIN_CLUSTER_ENERGY_GEV,
    PileupSubtraction,
    cell_radii,
    cluster_size,
    find_clusters,
    local_maxima,
    subtract_pileup,
)


# ---- hand-made windows ---------------------------------------------------------------------------------
def single_shower():
    """One shower at the centre of a 5x5 window: 3x3 sum 20, a flat 0.1 GeV ring outside."""
    w = np.full((5, 5), 0.1)
    w[1:4, 1:4] = 0.5                                   # corners of the 3x3
    w[1, 2] = w[3, 2] = w[2, 1] = w[2, 3] = 2.0
    w[2, 2] = 10.0
    return w


def two_showers():
    """Shower A at the centre (2, 2), shower B on the right edge (2, 4); their 3x3s share column 3.

    A's 3x3 holds 19 GeV (14 only in A, 5 shared), B's truncated 3x3 13 GeV (8 only in B, 5 shared).
    """
    w = np.zeros((5, 5))
    w[2, 2] = 10.0
    w[1, 2] = w[3, 2] = w[2, 1] = 1.0
    w[1, 1] = w[3, 1] = 0.5
    w[1, 3], w[2, 3], w[3, 3] = 1.0, 3.0, 1.0          # shared
    w[2, 4] = 6.0
    w[1, 4] = w[3, 4] = 1.0
    return w


def test_single_shower_at_the_centre_sums_its_3x3_per_section():
    w = single_shower()
    sections = np.stack([0.3 * w, 0.7 * w])[None]       # [1, L=2, 5, 5]
    res = find_clusters(sections)
    assert res.energy[0] == pytest.approx(20.0, abs=1e-12)
    np.testing.assert_allclose(res.section_energy[0], [6.0, 14.0], atol=1e-12)
    expected = np.zeros((5, 5))
    expected[1:4, 1:4] = 1.0
    np.testing.assert_array_equal(res.weights[0], expected)
    assert res.n_maxima[0] == 1 and tuple(res.seed[0]) == (2, 2)
    assert not (res.off_centre[0] or res.truncated[0] or res.no_seed[0])
    np.testing.assert_allclose(res.position[0], [0.0, 0.0], atol=1e-12)   # symmetric shower
    assert res.n_cells[0] == 9.0


def test_two_overlapping_showers_share_cells_in_proportion_to_their_energies():
    w = two_showers()[None]
    assert np.argwhere(local_maxima(w[0][None])[0]).tolist() == [[2, 2], [2, 4]]
    # no sharing: the shared column counts fully
    assert find_clusters(w, share_iterations=0).energy[0] == pytest.approx(19.0)
    # one iteration: fractions from the unshared sums, 19 / (19 + 13)
    one = find_clusters(w, share_iterations=1)
    assert one.energy[0] == pytest.approx(14.0 + 5.0 * 19.0 / 32.0, abs=1e-12)
    np.testing.assert_allclose(one.weights[0, 1:4, 3], 19.0 / 32.0)
    # the fixed point: E_A + E_B = 27, E_A = 14 + 5 E_A / 27  ->  E_A = 14 * 27 / 22
    fixed = 14.0 * 27.0 / 22.0
    assert find_clusters(w, share_iterations=60).energy[0] == pytest.approx(fixed, abs=1e-9)
    default = find_clusters(w)                           # LHCb's 5 iterations: within 1e-3 of it
    assert default.energy[0] == pytest.approx(fixed, abs=1e-3)
    assert default.n_maxima[0] == 2 and tuple(default.seed[0]) == (2, 2) and not default.truncated[0]
    # the other cluster's view of the same window: B is the seed when A is removed
    b_only = w.copy()
    b_only[0, :, :2] = 0.0
    b_only[0, 1:4, 2] = 0.0
    res_b = find_clusters(b_only)
    assert tuple(res_b.seed[0]) == (2, 4) and res_b.energy[0] == pytest.approx(13.0)


def test_shower_with_its_maximum_on_the_window_edge_is_truncated_and_flagged():
    w = np.zeros((2, 5, 5))
    # a shower on the right edge (column K-1) and one in the top-left corner
    w[0, 2, 4], w[0, 1, 4], w[0, 3, 4], w[0, 2, 3], w[0, 1, 3], w[0, 3, 3] = 8.0, 1.0, 1.0, 2.0, 0.5, 0.5
    w[1, 0, 0], w[1, 0, 1], w[1, 1, 0], w[1, 1, 1] = 7.0, 1.0, 1.0, 0.5
    res = find_clusters(w)
    np.testing.assert_allclose(res.energy, [13.0, 9.5])
    assert res.seed.tolist() == [[2, 4], [0, 0]]
    assert res.truncated.all() and res.off_centre.all() and not res.no_seed.any()
    assert res.weights[:, :, :].sum(axis=(1, 2)).tolist() == [6.0, 4.0]       # only cells inside the window
    assert res.position[0, 0] > 1.5 and res.position[1, 0] < -1.5 and res.position[1, 1] < -1.5
    # 2x2: the top-left and bottom-left squares both hold 11.5 GeV; the tie goes to the top-left
    two = find_clusters(w, size=2)
    np.testing.assert_allclose(two.energy, [11.5, 9.5])
    assert two.weights[0, 1:3, 3:5].sum() == 4.0 and not two.truncated.any()


def test_seed_is_the_maximum_nearest_the_centre_not_the_largest():
    w = np.zeros((5, 5))
    w[2, 2] = 3.0
    w[1, 2] = w[3, 2] = w[2, 1] = w[2, 3] = 0.5
    w[1, 3] = 1.0                                       # shared with the pile-up maximum's 3x3
    w[0, 4], w[0, 3], w[1, 4] = 20.0, 2.0, 2.0          # a pile-up shower, larger, off-centre
    res = find_clusters(w[None], share_iterations=1)
    assert tuple(res.seed[0]) == (2, 2) and res.n_maxima[0] == 2 and not res.off_centre[0]
    # its 3x3 holds 6 GeV, the pile-up's 25 GeV: the shared cell goes 6 : 25
    assert res.energy[0] == pytest.approx(5.0 + 6.0 / 31.0)
    assert find_clusters(w[None], share_iterations=0).energy[0] == pytest.approx(6.0)


def test_ties_are_broken_deterministically():
    w = np.zeros((3, 5, 5))
    w[0, 2, 2] = w[0, 2, 3] = 5.0                       # a plateau: one maximum, the cell nearer the centre
    w[1, 2, 1] = w[1, 2, 3] = 5.0                       # two maxima at equal distance and energy
    w[2, 2, 1], w[2, 2, 3] = 4.0, 5.0                   # equal distance: the more energetic wins
    res = find_clusters(w)
    assert res.n_maxima.tolist() == [1, 2, 2]
    assert res.seed.tolist() == [[2, 2], [2, 1], [2, 3]]
    # the same answer whatever the order of the batch
    again = find_clusters(w[::-1])
    assert again.seed[::-1].tolist() == res.seed.tolist()


def test_empty_window_and_seed_threshold():
    w = np.zeros((2, 5, 5))
    w[1, 2, 2] = 0.04
    res = find_clusters(w, seed_threshold_gev=0.05)
    assert res.no_seed.all() and res.n_maxima.tolist() == [0, 0] and res.seed.tolist() == [[2, 2], [2, 2]]
    np.testing.assert_allclose(res.energy, [0.0, 0.04])
    # on E_T: 0.04 GeV at sin(theta) = 2 passes a 0.05 GeV threshold
    assert find_clusters(w, seed_threshold_gev=0.05, et_factor=[2.0, 2.0]).n_maxima.tolist() == [0, 1]


def test_two_by_two_choice_and_cluster_size_rule():
    w = np.zeros((5, 5))
    w[2, 2] = 10.0
    w[2, 3], w[3, 2], w[3, 3] = 3.0, 2.0, 1.0
    w[1, 2], w[2, 1], w[1, 1], w[1, 3], w[3, 1] = 1.0, 0.5, 0.2, 0.3, 0.1
    # squares containing the seed: top-left 11.7, top-right 14.3, bottom-left 12.6, bottom-right 16
    res = find_clusters(w[None], size=2)
    assert res.energy[0] == pytest.approx(16.0)
    np.testing.assert_array_equal(np.argwhere(res.weights[0] > 0), [[2, 2], [2, 3], [3, 2], [3, 3]])
    assert cluster_size([15.15, 30.3, 60.6, 100.0, 121.2]).tolist() == [3, 3, 3, 2, 2]
    assert cluster_size([60.6, 121.2], large_cell_mm=50.0).tolist() == [2, 2]
    # per-window sizes
    mixed = find_clusters(np.stack([w, w]), size=np.array([3, 2]))
    np.testing.assert_allclose(mixed.energy, [w[1:4, 1:4].sum(), 16.0])
    with pytest.raises(ValueError, match="size must be 2 or 3"):
        find_clusters(w[None], size=4)
    with pytest.raises(ValueError, match=r"must be \[n, L, K, K\] or \[n, K, K\]"):
        find_clusters(np.zeros((2, 5, 4)))


# ---- position-dependent pile-up subtraction on a toy ----------------------------------------------------
CELL_MM = 30.0


def background_per_cell(r_mm):
    return 0.5 * np.exp(-np.asarray(r_mm) / 300.0)


def toy_windows(n, seed):
    """Photon-like 3x3 showers (containment 1) at the window centres, E log-uniform 3-50 GeV, a
    Gaussian stochastic term (5 %/sqrt(E)) on the central cell, plus 0.5 GeV exp(-r / 300 mm) in every cell."""
    rng = np.random.default_rng(seed)
    e = np.exp(rng.uniform(np.log(3.0), np.log(50.0), n))
    r = rng.uniform(300.0, 1500.0, n)
    phi = rng.uniform(0.0, 2 * np.pi, n)
    centre = np.stack([r * np.cos(phi), r * np.sin(phi)], axis=1)
    shape = np.zeros((5, 5))
    shape[1:4, 1:4] = 0.02
    shape[1, 2] = shape[3, 2] = shape[2, 1] = shape[2, 3] = 0.035
    shape[2, 2] = 0.78
    cells = e[:, None, None] * shape[None]
    cells[:, 2, 2] += 0.05 * np.sqrt(e) * rng.normal(size=n)
    bg = background_per_cell(cell_radii(centre, np.full(n, CELL_MM), 5))
    return cells + bg, e, centre, bg


def toy_context(centre):
    n = len(centre)
    return dict(centre_mm=centre, cell_size_mm=np.full(n, CELL_MM), region=np.zeros(n, int))


def test_position_dependent_subtraction_recovers_a_known_background():
    cells, e, centre, _ = toy_windows(3000, seed=1)
    cal = find_clusters(cells)
    sub = PileupSubtraction.fit(cal, e, knots=10, **toy_context(centre))
    tab = sub.tables["0"]
    assert tab["containment"] == pytest.approx(1.0, abs=0.01)
    np.testing.assert_allclose(tab["per_cell_gev"], background_per_cell(tab["r_mm"]), rtol=0.05, atol=0.005)
    # the mean fit agrees here (Gaussian fluctuations: core and mean coincide)
    mean_fit = PileupSubtraction.fit(cal, e, knots=10, clip=None, **toy_context(centre))
    np.testing.assert_allclose(mean_fit.tables["0"]["per_cell_gev"], tab["per_cell_gev"], rtol=0.05, atol=0.005)
    with pytest.raises(ValueError, match="knots = 0"):
        PileupSubtraction.fit(cal, e, knots=0, **toy_context(centre))
    # on fresh windows: the cluster's background sum_c w_c b(r_c) within 5 % + 40 MeV (the
    # statistical error of the fit where the background is small; the stochastic term is >= 87 MeV)
    cells, e, centre, bg = toy_windows(2000, seed=2)
    res = find_clusters(cells)
    true_b = (res.weights * bg).sum(axis=(1, 2))
    est_b = sub.background(res, **toy_context(centre))
    assert np.all(np.abs(est_b - true_b) < 0.05 * true_b + 0.04), np.abs(est_b - true_b).max()
    # position dependence matters: a single offset per region leaves the r dependence in the residual
    resid_r = res.energy - est_b - e
    resid_const = res.energy - true_b.mean() - e
    assert np.sqrt(np.mean(resid_r ** 2)) < 0.5 * np.sqrt(np.mean(resid_const ** 2))
    # JSON round trip
    again = PileupSubtraction.from_dict(json.loads(json.dumps(sub.to_dict())))
    np.testing.assert_array_equal(again.background(res, **toy_context(centre)), est_b)


def test_subtraction_never_gives_a_negative_energy():
    energy, clipped = subtract_pileup([1.0, 0.2, 0.0, np.nan], [0.5, 0.3, 0.1, 0.0])
    np.testing.assert_allclose(energy, [0.5, MIN_CLUSTER_ENERGY_GEV, MIN_CLUSTER_ENERGY_GEV, MIN_CLUSTER_ENERGY_GEV])
    assert clipped.tolist() == [False, True, True, True]


def toy_clusters(n, seed):
    """The toy as a Clusters-like record (the fields ClassicalReco reads), one section."""
    cells, e, centre, _ = toy_windows(n, seed)
    zeros = np.zeros(n)
    return types.SimpleNamespace(energy=cells[:, None], time=np.zeros((n, 1, 5, 5)), e_true=e, tx=zeros, ty=zeros,
                                 offset=np.zeros((n, 2)), centre=centre, cell_size_mm=np.full(n, CELL_MM),
                                 region=np.zeros(n, int), status=np.zeros(n, int), t_true=zeros)


def test_classical_reco_on_clusters_with_subtraction_round_trips_and_keeps_old_saves():
    cal, test = toy_clusters(3000, 3), toy_clusters(1500, 4)
    reco = ClassicalReco.fit(cal)
    assert reco.cluster == "auto" and reco.pileup.tables["0"]["n"] == 3000
    est = reco.predict(test)
    assert metrics.core_width(est.energy / test.e_true)[0] == pytest.approx(1.0, abs=0.01)
    assert (est.energy > 0).all() and (est.cluster_energy >= MIN_CLUSTER_ENERGY_GEV).all()
    np.testing.assert_allclose(est.raw_sum, test.energy.sum(axis=(1, 2, 3)), rtol=1e-6)     # the window sum
    assert est.n_maxima.tolist() == [1] * 1500 and not est.off_centre.any()
    # the network's base calibration (e0, e1 of the window sum) is still there
    assert {"e0", "e1", "cluster_e0", "cluster_e1"} <= set(reco.tables["0"])
    again = ClassicalReco.from_dict(json.loads(json.dumps(reco.to_dict()))).predict(test)
    np.testing.assert_array_equal(again.energy, est.energy)
    # a dict saved before the cluster finder loads as the whole-window reconstruction it was
    window = ClassicalReco.fit(cal, cluster="window")
    old = {k: v for k, v in window.to_dict().items() if k in ("w0", "z_mm", "tables")}
    for tab in old["tables"].values():
        tab.pop("cluster_e0"), tab.pop("cluster_e1")
    loaded = ClassicalReco.from_dict(old)
    assert loaded.cluster == "window"
    np.testing.assert_array_equal(loaded.predict(test).energy, window.predict(test).energy)
    with pytest.raises(ValueError, match="cluster = '5x5'; allowed: auto, 3x3, 2x2, window"):
        ClassicalReco.fit(cal, cluster="5x5")
    with pytest.raises(ValueError, match="pileup_fit = 'median'; allowed: core, mean, none"):
        ClassicalReco(pileup_fit="median")


# ---- simulated photons with pile-up --------------------------------------------------------------------
def test_cluster_baseline_beats_the_window_sum_for_large_cells_with_pileup(upgrade2):
    """Outer Shashlik (121.2 mm cells), 40 collisions per crossing: the 3x3 cluster with pile-up
    subtraction has a narrower (response-corrected) energy core and a better position than the 5x5
    window sum. Both fitted on the same calibration photons; one simulate call."""
    energies = (5.0, 20.0)
    n_cal, n_test = 3000, 1000
    parts = [dc.gun(jax.random.key(1), n_cal, upgrade2.layout, region="outer",
                    energy=dc.log_uniform_energy(2.0, 100.0))]
    parts += [dc.gun(jax.random.key(10 + i), n_test, upgrade2.layout, region="outer", energy=e)
              for i, e in enumerate(energies)]
    particles = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *parts)
    sim = dc.simulate(upgrade2, particles, key=jax.random.key(2), mode="realistic",
                      pileup=PileupModel.default(collisions_per_crossing=40)).as_numpy()
    cal, test = sim.split([n_cal, len(energies) * n_test])
    z = upgrade2.layout.z_mm
    widths = {}
    for name, kw in (("window", dict(cluster="window")), ("3x3", dict(cluster="3x3")), ("auto", {})):
        est = ClassicalReco.fit(cal, z_mm=z, **kw).predict(test)
        assert np.isfinite(est.energy).all() and (est.energy > 0).all()
        curve = metrics.energy_curve(test.e_true, est.energy)
        widths[name] = (curve["calibrated_resolution"], curve["calibrated_resolution_err"],
                        np.asarray(metrics.width_summary(est.offset - test.offset)["core"]),
                        np.asarray(metrics.width_summary(est.offset - test.offset)["core_err"]))
    w_win, e_win, p_win, pe_win = widths["window"]
    for name in ("3x3", "auto"):
        w, e, p, pe = widths[name]
        margin = 3.0 * np.hypot(e, e_win)
        assert np.all(w + margin < w_win), (name, w, w_win, margin)
        assert np.all(p + 3.0 * np.hypot(pe, pe_win) < p_win), (name, p, p_win)
