"""The Clusters record's batch operations (take / split / concatenate) and the simulate backend switch."""

import jax
import numpy as np
import pytest

import diffcalo as dc
from diffcalo.clusters import CLUSTER_FIELDS, Clusters


@pytest.fixture(scope="module")
def clusters():
    det = dc.Detector.from_layout(dc.layout.toy())
    p = dc.gun(jax.random.key(0), 40, det.layout, energy=dc.uniform_energy(1.0, 5.0), direction=(0.0, 0.0))
    return dc.simulate(det, p, key=jax.random.key(1))


def test_take_split_concatenate_round_trip(clusters):
    parts = clusters.split([10, 0, 30])
    assert [p.n for p in parts] == [10, 0, 30]
    back = Clusters.concatenate(parts)
    for name in CLUSTER_FIELDS:
        np.testing.assert_array_equal(np.asarray(getattr(back, name)), np.asarray(getattr(clusters, name)))
    idx = np.array([5, 2, 39])
    picked = clusters.take(idx)
    np.testing.assert_array_equal(np.asarray(picked.e_true), np.asarray(clusters.e_true)[idx])
    assert picked.energy.shape == (3,) + clusters.energy.shape[1:]
    mask = np.asarray(clusters.e_true) > 3.0
    assert clusters.take(mask).n == int(mask.sum())


def test_concatenate_and_split_refuse_mismatches(clusters):
    other = clusters.take(slice(0, 2))
    other = Clusters(**{**{n: getattr(other, n) for n in CLUSTER_FIELDS}, "energy": np.zeros((2, 1, 3, 3))})
    with pytest.raises(ValueError, match="different cluster shapes"):
        Clusters.concatenate([clusters, other])
    with pytest.raises(ValueError, match="no parts"):
        Clusters.concatenate([])
    with pytest.raises(ValueError, match="sum to 39"):
        clusters.split([39])


def test_as_numpy_and_summary(clusters):
    host = clusters.as_numpy()
    assert all(isinstance(getattr(host, n), np.ndarray) for n in CLUSTER_FIELDS)
    s = host.summary()
    assert s["clusters"] == 40 and s["ok"] + s["beam_hole"] + s["outside"] == 40
    assert 0.5 < s["mean_sum_over_true"] < 1.2


def test_unknown_backend_is_refused():
    det = dc.Detector.from_layout(dc.layout.toy())
    p = dc.Particles.create(energy=[3.0], x=[0.0], y=[0.0], pid=11)
    with pytest.raises(ValueError, match="backend = 'fluka': allowed \\('parametric', 'geant4'\\)"):
        dc.simulate(det, p, key=jax.random.key(0), backend="fluka")
