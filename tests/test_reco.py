"""Reconstruction: losses, classical baselines, the training loop, checkpoints, metrics and the
gradient of a resolution metric through simulate + a frozen network."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

import diffcalo as dc
from diffcalo import metrics
from diffcalo.reco import (
    Inputs,
    ModelConfig,
    Reconstruction,
    TrainConfig,
    TrainedNet,
    TrainingError,
    cluster_inputs,
    energy_inputs,
    losses,
    prepare,
    train,
)
from diffcalo.reco.classical import ClassicalReco, log_weighted_centroid, weighted_time
from diffcalo.reco.train import _augment, _train_epoch

SMALL = ModelConfig(conv=(8, 8), dense=(16,))


# ---- losses against hand-computed values ------------------------------------------------------------
def test_losses_match_hand_computed_values():
    p, t, e = jnp.array([1.0, 4.0]), jnp.array([2.0, 1.0]), jnp.array([2.0, 1.0])
    np.testing.assert_allclose(losses.mse(p, t), [1.0, 9.0])
    np.testing.assert_allclose(losses.mae(p, t), [1.0, 3.0])
    np.testing.assert_allclose(losses.huber(p, t, delta=1.5), [0.5, 1.5 * (3.0 - 0.75)])
    np.testing.assert_allclose(losses.physics_weighted(p, t, e), [0.5, 9.0])
    np.testing.assert_allclose(losses.mse(jnp.ones((2, 2)), jnp.zeros((2, 2))), [2.0, 2.0])
    # truncated Gaussian: the seed's formula, evaluated independently with scipy's erf
    pred, true = np.array([1.2, 9.8, 5.0]), np.array([1.5, 10.0, 4.0])
    s = 0.31 * np.sqrt(true)
    ref = (true - pred) ** 2 / s ** 2 + np.log(np.pi * s ** 2 / 2 * (erf((pred - 1) / (np.sqrt(2) * s))
                                                                    - erf((pred - 10) / (np.sqrt(2) * s))) ** 2)
    got = losses.truncated_gaussian(jnp.asarray(pred), jnp.asarray(true), jnp.asarray(true), k=0.31, low=1.0, high=10.0)
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    # far outside the range the log-probability stays finite (no log(0))
    far = losses.truncated_gaussian(jnp.array([40.0]), jnp.array([5.0]), jnp.array([5.0]), low=1.0, high=10.0)
    assert np.isfinite(far).all()
    params = {"w": jnp.array([[1.0, -2.0]]), "b": jnp.array([5.0])}
    assert float(losses.weight_penalty(params, l1=0.1, l2=0.01)) == pytest.approx(0.1 * 3 + 0.01 * 5)


def test_unknown_loss_optimizer_and_options_are_clear_errors():
    with pytest.raises(ValueError, match="unknown loss 'mean_squares'; allowed: mse, mae, huber, physics"):
        losses.get_loss("mean_squares")
    with pytest.raises(ValueError, match="train.loss = 'l2': allowed: mse"):
        TrainConfig(loss="l2")
    with pytest.raises(ValueError, match="train.optimizer = 'sgdm': allowed: adam, adamw"):
        TrainConfig(optimizer="sgdm")
    with pytest.raises(ValueError, match="train.learning_rate = -1: must be a finite number > 0"):
        TrainConfig(learning_rate=-1)
    with pytest.raises(ValueError, match=r"train: unknown option\(s\) \['epoch'\]"):
        TrainConfig.from_dict(dict(epoch=3))
    with pytest.raises(ValueError, match="high = 1.0 must exceed low = 2.0"):
        losses.get_loss("truncated_gaussian", low=2.0, high=1.0)
    with pytest.raises(ValueError, match="model.padding = 'full'"):
        ModelConfig(padding="full")


# ---- classical -----------------------------------------------------------------------------------------
def test_log_weighted_centroid_and_weighted_time_by_hand():
    cells = np.zeros((2, 5, 5))
    cells[0, 2, 3] = 1.0                        # one cell, one to the right of the centre
    cells[1, 2, 2] = cells[1, 1, 2] = 2.0       # two equal cells: half a cell up (towards row 1)
    c = np.asarray(log_weighted_centroid(cells))
    np.testing.assert_allclose(c, [[1.0, 0.0], [0.0, -0.5]], atol=1e-6)
    e = np.array([[[[1.0, 3.0]]]])
    t = np.array([[[[2.0, 4.0]]]])
    assert float(weighted_time(e, t)[0]) == pytest.approx((2 + 12) / 4)


@pytest.fixture(scope="module")
def data(upgrade2):
    """Calibration/training, validation and test clusters in the SpaCal-Pb region (no pile-up)."""
    sims = []
    for seed, n in ((1, 6000), (2, 2000), (3, 4000)):
        p = dc.gun(jax.random.key(seed), n, upgrade2.layout, region="spacal-pb", energy=dc.uniform_energy(2.0, 50.0))
        sims.append(dc.simulate(upgrade2, p, key=jax.random.key(seed + 50), mode="realistic"))
    classical = ClassicalReco.fit(sims[0], z_mm=upgrade2.layout.z_mm)
    return sims, classical


def test_classical_calibration_and_scurve(data, upgrade2):
    (cal, _, test), classical = data
    est = classical.predict(test)
    e = np.asarray(test.e_true)
    assert np.mean(est.energy / e) == pytest.approx(1.0, abs=0.01)
    raw = np.asarray(log_weighted_centroid(np.asarray(test.energy).sum(1))) * 30.3
    off = np.asarray(test.offset)
    rms_raw = np.sqrt(np.mean((raw - off) ** 2))
    rms_cor = np.sqrt(np.mean((est.offset - off) ** 2))
    assert rms_cor < 0.6 * rms_raw, (rms_cor, rms_raw)       # S-curve + parallax correction
    assert np.sqrt(np.mean((est.time - np.asarray(test.t_true)) ** 2)) < 0.1     # ns
    with pytest.raises(ValueError, match="single true energy"):
        p = dc.gun(jax.random.key(0), 200, upgrade2.layout, region="spacal-pb", energy=10.0)
        ClassicalReco.fit(dc.simulate(upgrade2, p, key=jax.random.key(1)))
    # round trip through JSON-able dict
    again = ClassicalReco.from_dict(classical.to_dict()).predict(test)
    np.testing.assert_array_equal(again.energy, est.energy)


# ---- training ----------------------------------------------------------------------------------------------
def test_training_is_deterministic_checkpoints_restore_and_position_net_beats_classical(data, tmp_path):
    (tr, va, te), classical = data
    itr, _ = prepare("position", tr, classical)
    iva, _ = prepare("position", va, classical)
    ite, _ = prepare("position", te, classical)
    cfg = TrainConfig(epochs=8, batch_size=128, learning_rate=3e-3)
    a = train("position", itr, iva, model_config=SMALL, config=cfg, progress=False)
    compiled = _train_epoch._cache_size()
    b = train("position", itr, iva, model_config=SMALL, config=cfg, progress=False)
    assert _train_epoch._cache_size() == compiled      # a second run of the same shapes does not recompile
    pa = a.predict(ite)
    np.testing.assert_array_equal(pa, b.predict(ite))
    path = a.save(tmp_path / "pos.msgpack")
    np.testing.assert_array_equal(TrainedNet.load(path).predict(ite), pa)
    target = np.asarray(ite.target)
    net_rms = np.sqrt(np.mean((pa - target) ** 2, axis=0))
    cl_rms = np.sqrt(np.mean(target ** 2, axis=0))     # the classical residual (the target is net-free)
    # a short run on 6k clusters: the slopes (classical two-section fit) improve many-fold, the
    # position (classical already ~0.04 cell) must not get worse
    assert np.all(net_rms[2:] < 0.3 * cl_rms[2:]) and np.all(net_rms[:2] < cl_rms[:2]), (net_rms, cl_rms)
    assert a.history["best_val_loss"] < a.history["initial_val_loss"]


def test_augmentation_transforms_maps_and_vectors_together(data):
    (tr, _, _), classical = data
    inp, _ = prepare("position", tr, classical)
    inp = inp.take(slice(0, 64))
    # put the map's own centroid into the vector features: after any group element it must still be
    # the centroid of the transformed map
    cent = log_weighted_centroid(inp.images.sum(-1))
    inp = dataclasses.replace(inp, vectors=cent[:, None, :], target=jnp.concatenate([cent, cent], 1))
    seen = set()
    for s in range(24):
        out = _augment(jax.random.key(s), inp, vector_targets=True)
        np.testing.assert_allclose(log_weighted_centroid(out.images.sum(-1)), out.vectors[:, 0], atol=1e-5)
        np.testing.assert_allclose(out.target[:, :2], out.vectors[:, 0], atol=1e-5)
        seen.add(np.round(np.asarray(out.images[0, :, :, 0]), 5).tobytes())
    assert len(seen) >= 6        # the 8 group elements are all drawn


def test_bad_training_inputs_are_clear_errors(data):
    (tr, va, _), classical = data
    itr, _ = prepare("energy", tr, classical)
    iva, _ = prepare("energy", va, classical)
    with pytest.raises(ValueError, match="the energy training set is empty"):
        train("energy", itr.take(slice(0, 0)), iva, model_config=SMALL, progress=False)
    single = dataclasses.replace(itr, e_true=jnp.full_like(itr.e_true, 10.0))
    with pytest.raises(ValueError, match="single true energy"):
        train("energy", single, iva, model_config=SMALL, progress=False)
    with pytest.raises(ValueError, match="task = 'mass'; allowed: energy, position, time"):
        prepare("mass", tr, classical)
    with pytest.raises(ValueError, match="'physics' is an energy loss; the position task allows"):
        ip, _ = prepare("position", tr, classical)
        train("position", ip, ip, config=TrainConfig(loss="physics"), progress=False)
    bad = dataclasses.replace(itr, target=itr.target.at[5].set(jnp.nan))
    with pytest.raises(TrainingError, match="training loss is nan at epoch 1"):
        train("energy", bad, iva, model_config=SMALL, config=TrainConfig(epochs=2), progress=False)
    net = train("energy", itr, iva, model_config=SMALL, config=TrainConfig(epochs=1), progress=False)
    wrong = dataclasses.replace(iva, images=jnp.zeros((iva.n, 11, 110, 20)))
    with pytest.raises(ValueError, match=r"trained on maps of shape \(5, 5, 2\).*these inputs have \(11, 110, 20\)"):
        net.predict(wrong)


def test_prediction_reads_no_truth(data):
    """Reconstruction.predict builds features only: the same clusters with their truth replaced by
    NaN or garbage give identical predictions. The window centre (impact point minus offset, the
    centre of the impact cell) is the one geometric input taken from x, y and offset: the garbage
    keeps it (x, y := the window centre, offset := 0) and changes everything else."""
    (tr, va, te), classical = data
    cfgs = dict(energy=TrainConfig(epochs=1, use_time=True), position=TrainConfig(epochs=1),
                time=TrainConfig(epochs=1))
    reco = Reconstruction.fit(tr, va, tasks=("energy", "position", "time"), z_mm=classical.z_mm, model_config=SMALL,
                              train_config=cfgs, progress=False)
    assert {t: net.use_time for t, net in reco.nets.items()} == dict(energy=True, position=False, time=True)
    te = jax.tree_util.tree_map(np.asarray, te)
    n = te.n
    t_garbage = np.where(np.arange(n) % 2 == 0, np.nan, 1e6).astype(np.float32)
    nan = np.full(n, np.nan, np.float32)
    garbage = dataclasses.replace(te, e_true=nan, t_true=t_garbage, tx=nan, ty=nan, x=nan, y=nan,
                                  offset=np.full_like(te.offset, np.nan), pid=np.full_like(te.pid, -999), leakage=nan,
                                  n_background=np.full_like(te.n_background, 12345))
    real, blind = reco.predict(te), reco.predict(garbage)
    assert real.keys() == blind.keys()
    for key in real:
        np.testing.assert_array_equal(blind[key], real[key], err_msg=key)
    assert np.isfinite(real["time"][np.asarray(te.status) == 0]).all()
    # the features of prediction carry no targets, and training refuses them
    feats, mask = cluster_inputs("energy", garbage, classical)
    assert feats.target is None and feats.e_true is None and feats.n == int(mask.sum())
    with pytest.raises(ValueError, match="the training inputs have no targets"):
        train("energy", feats, feats, model_config=SMALL, progress=False)


def test_truncated_gaussian_loss_removes_the_edge_bias_of_mse():
    """E uniform in [1, 10] GeV, measured with sigma = 0.31 sqrt(E): MSE regresses to the posterior
    mean and is biased inwards at both ends of the range; the truncated-Gaussian likelihood is not."""
    rng = np.random.default_rng(0)

    def sample(n):
        e = rng.uniform(1.0, 10.0, n)
        s = np.maximum(e + 0.31 * np.sqrt(e) * rng.normal(size=n), 0.2)
        return Inputs(images=jnp.zeros((n, 1, 1, 1)), scalars=jnp.asarray(np.log(s)[:, None], jnp.float32),
                      vectors=jnp.zeros((n, 0, 2)), base=jnp.asarray(s[:, None], jnp.float32),
                      scale=jnp.asarray(s[:, None], jnp.float32), target=jnp.asarray(e[:, None], jnp.float32),
                      e_true=jnp.asarray(e, jnp.float32))

    tr, va, te = sample(40000), sample(5000), sample(40000)
    cfg = dict(epochs=25, batch_size=256, learning_rate=3e-3, augment=False, patience=25)
    model = ModelConfig(conv=(2,), dense=(32, 32), batch_norm=False)
    bias = {}
    e = np.asarray(te.e_true)
    for loss in ("mse", "truncated_gaussian"):
        net = train("energy", tr, va, model_config=model, config=TrainConfig(loss=loss, **cfg), progress=False)
        d = net.predict(te)[:, 0] - e
        bias[loss] = (d[e < 1.9].mean(), d[e > 9.1].mean())
    lo_mse, hi_mse = bias["mse"]
    lo_tg, hi_tg = bias["truncated_gaussian"]
    assert lo_mse > 0.05 and hi_mse < -0.05            # MSE: pulled towards the centre of the range
    assert abs(lo_tg) < abs(lo_mse) and abs(hi_tg) < abs(hi_mse), bias


# ---- metrics ---------------------------------------------------------------------------------------------
def test_core_width_energy_curve_and_pi0_mass():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0.5, 2.0, 200000), rng.normal(0.0, 40.0, 10000)])   # 5 % wide tails
    mean, sigma, err = metrics.core_width(x)
    assert sigma == pytest.approx(2.0, rel=0.02) and mean == pytest.approx(0.5, abs=0.02)
    e = np.repeat([5.0, 20.0], 5000)
    reco = e * (1 + rng.normal(0, 0.1, e.size) / np.sqrt(e))
    curve = metrics.energy_curve(e, reco)
    np.testing.assert_allclose(curve["resolution"], 0.1 / np.sqrt([5.0, 20.0]), rtol=0.05)
    np.testing.assert_allclose(curve["mae"], np.sqrt(2 / np.pi) * 0.1 * np.sqrt([5.0, 20.0]), rtol=0.05)
    # two 10 GeV photons at +-x on a plane at z: opening angle 2 atan(x/z), m = 2 E sin(theta/2)
    z, xh = 12000.0, 80.0
    m = metrics.pi0_mass([10.0], [10.0], [[xh, 0.0]], [[-xh, 0.0]], z)
    assert float(m[0]) == pytest.approx(2 * 10.0 * math.sin(math.atan(xh / z)), rel=1e-9)


def test_significance_finds_the_known_optimal_window_and_uses_the_time_cut():
    rng = np.random.default_rng(2)
    sig = rng.normal(5.37, 0.05, 20000)
    bkg = rng.uniform(4.8, 6.0, 200000)
    res = metrics.significance(sig, bkg, n_signal=50.0, n_background=1.0e5)
    # S << B: S/sqrt(B) is maximal at a half-width of 1.40 sigma (erf(w/sqrt2)/sqrt(w) maximal)
    half = 0.5 * (res.mass_hi - res.mass_lo)
    assert half / 0.05 == pytest.approx(1.40, abs=0.15)
    # background spread in time, signal not: the time cut must help
    timed = metrics.significance(sig, bkg, n_signal=50.0, n_background=1.0e5, signal_dt=rng.normal(0, 0.02, sig.size),
                                 background_dt=rng.normal(0, 0.2, bkg.size))
    assert timed.significance > 1.5 * res.significance and timed.time_cut < 0.1


# ---- the differentiable path -----------------------------------------------------------------------------
def test_gradient_of_resolution_through_simulate_and_frozen_network_matches_finite_differences(data, upgrade2):
    (tr, va, _), classical = data
    itr, _ = prepare("energy", tr, classical)
    iva, _ = prepare("energy", va, classical)
    net = train("energy", itr, iva, model_config=SMALL, config=TrainConfig(epochs=3), progress=False)
    region = upgrade2.layout.regions.index(next(r for r in upgrade2.layout.regions if r.name == "spacal-pb"))
    with jax.enable_x64(True):
        det = dc.Detector.from_layout(upgrade2.layout)
        p = dc.gun(jax.random.key(9), 64, upgrade2.layout, region="spacal-pb", energy=dc.uniform_energy(5.0, 40.0))
        model64 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64) if hasattr(a, "dtype") and
                                         jnp.issubdtype(a.dtype, jnp.floating) else a, net)

        def metric(cell):
            c = dc.simulate(det.replace_region(region, cell_size_mm=cell), p, key=jax.random.key(3))
            centre = jnp.stack([c.x, c.y], 1) - c.offset
            inp = energy_inputs(c.energy, c.region, c.cell_size_mm, centre, classical)
            inp = dataclasses.replace(inp, vectors=jnp.zeros((p.n, 3, 2)))
            inp = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), inp)
            return metrics.stochastic_term_jnp(c.e_true, model64.apply(inp)[:, 0])

        g = jax.grad(metric)(jnp.float64(30.3))
        h = 1e-4
        fd = (metric(30.3 + h) - metric(30.3 - h)) / (2 * h)
        assert float(g) == pytest.approx(float(fd), rel=1e-4, abs=1e-9)
        assert abs(float(g)) > 1e-6
