"""Signal samples: pi0 -> gamma gamma and B_s -> J/psi pi0 kinematics and truth links."""

import jax
import numpy as np
import pytest

import diffcalo as dc
from diffcalo.samples import M_BS, M_PI0, bs_jpsi_pi0_sample, invariant_mass, pi0_sample


def test_pi0_photon_pairs_rebuild_the_pi0_mass_and_momentum():
    s = pi0_sample(jax.random.key(0), 5000)
    assert s.photons.n == 2 * s.accepted.sum()
    pairs = s.photon_p4.reshape(-1, 2, 4)
    np.testing.assert_allclose(invariant_mass(pairs[:, 0], pairs[:, 1]), M_PI0, rtol=1e-6)
    parents = s.parent.reshape(-1, 2)
    assert np.all(parents[:, 0] == parents[:, 1])
    np.testing.assert_allclose(pairs.sum(axis=1), s.parent_p4[parents[:, 0]], rtol=1e-6, atol=1e-9)
    pt = np.hypot(s.parent_p4[:, 1], s.parent_p4[:, 2])
    assert pt.mean() == pytest.approx(2 * 7 * 0.2 / (7 - 3), rel=0.03)   # Tsallis mean 2 n T / (n - 3)
    eta = np.arcsinh(s.parent_p4[:, 3] / pt)
    assert eta.min() >= 2.0 and eta.max() <= 5.0


def test_bs_to_jpsi_pi0_kinematics():
    s = bs_jpsi_pi0_sample(jax.random.key(1), 3000)
    pairs = s.photon_p4.reshape(-1, 2, 4)
    idx = s.parent.reshape(-1, 2)[:, 0]
    m = invariant_mass(s.jpsi_p4[idx], pairs[:, 0], pairs[:, 1])
    np.testing.assert_allclose(m, M_BS, rtol=1e-6)
    pt = np.hypot(s.parent_p4[:, 1], s.parent_p4[:, 2])
    assert pt.mean() == pytest.approx(2 * 8 * 1.2 / (8 - 3), rel=0.03)


def test_samples_on_a_layout_keep_only_pairs_on_the_active_wall():
    lay = dc.layout.lhcb_upgrade2_baseline()
    s = pi0_sample(jax.random.key(2), 4000, layout=lay)
    _, status = lay.region_of(s.photons.x, s.photons.y)
    assert np.all(np.asarray(status) == 0)
    assert 0.2 < s.accepted.mean() < 1.0
    det = dc.Detector.from_layout(lay)
    c = dc.simulate(det, s.photons, key=jax.random.key(3))
    assert c.energy.shape[0] == s.photons.n
    with pytest.raises(ValueError, match="n = 0: must be an integer >= 1"):
        pi0_sample(jax.random.key(0), 0)


def test_pythia_forced_decays_when_the_extra_is_installed():
    pytest.importorskip("pythia8mc")
    from diffcalo.samples import pythia_sample

    s = pythia_sample(jax.random.key(0), 20, channel="bs")
    pairs = s.photon_p4.reshape(-1, 2, 4)
    idx = s.parent.reshape(-1, 2)[:, 0]
    np.testing.assert_allclose(invariant_mass(s.jpsi_p4[idx], pairs[:, 0], pairs[:, 1]),
                               invariant_mass(s.parent_p4[idx]), rtol=1e-4)
    np.testing.assert_allclose(invariant_mass(pairs[:, 0], pairs[:, 1]), M_PI0, rtol=1e-3)
    lay = dc.layout.lhcb_upgrade2_baseline()
    p = pythia_sample(jax.random.key(1), 100, channel="pi0", layout=lay)
    _, status = lay.region_of(p.photons.x, p.photons.y)
    assert np.all(np.asarray(status) == 0) and p.photons.n == 2 * p.accepted.sum()
    with pytest.raises(ValueError, match="channel = 'kaon': allowed 'bs', 'pi0'"):
        pythia_sample(jax.random.key(0), 5, channel="kaon")
