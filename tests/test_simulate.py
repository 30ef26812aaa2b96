"""simulate(): shapes, truth, compilation, bad input, modes, and gradients against finite differences."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffcalo as dc
from diffcalo.simulation.parametric import simulate_parametric


def _photons(det, n, region, energy=10.0, seed=0):
    return dc.gun(jax.random.key(seed), n, det.layout, region=region, energy=energy)


def test_window_shapes_truth_and_context(upgrade2):
    p = _photons(upgrade2, 256, "spacal-pb")
    c = dc.simulate(upgrade2, p, key=jax.random.key(1))
    assert c.energy.shape == (256, 2, 5, 5)
    assert np.all(np.asarray(c.status) == 0) and np.all(np.asarray(c.region) == 1)
    assert np.allclose(np.asarray(c.cell_size_mm), 30.3)
    off = np.asarray(c.offset)
    assert np.all(np.abs(off) <= 30.3 / 2 + 1e-3)
    # the impact cell holds the most energy on average and the window is centred on it
    mean = np.asarray(c.energy).sum(axis=1).mean(axis=0)
    assert np.unravel_index(mean.argmax(), mean.shape) == (2, 2)
    np.testing.assert_array_equal(np.asarray(c.e_true), np.asarray(p.energy))


def test_image_mode_luxe_shape(luxe_detector):
    p = dc.Particles.create(energy=[5.0, 10.0], x=[0.0, 100.0], y=[0.0, 0.0], pid=11)
    c = dc.simulate(luxe_detector, p, key=jax.random.key(0), image=True)
    assert c.energy.shape == (2, 20, 11, 110)
    img = np.asarray(c.energy).sum(axis=1)
    # the shower at x = 100 mm peaks in pad column (100 + 275) / 5 = 75 (edge between 74 and 75)
    assert img[1].sum(axis=0).argmax() in (74, 75)


def test_toy_image_shape():
    det = dc.Detector.from_layout(dc.layout.toy())
    p = dc.Particles.create(energy=[3.0], x=[0.0], y=[0.0], pid=11)
    assert dc.simulate(det, p, key=jax.random.key(0), image=True).energy.shape == (1, 17, 8, 8)


def test_second_call_with_new_data_does_not_recompile(upgrade2):
    p1 = _photons(upgrade2, 128, "middle", seed=1)
    p2 = _photons(upgrade2, 128, "middle", energy=dc.uniform_energy(2, 50), seed=2)
    jax.block_until_ready(dc.simulate(upgrade2, p1, key=jax.random.key(0)))
    before = simulate_parametric._cache_size()
    c2 = dc.simulate(upgrade2, p2, key=jax.random.key(5))
    jax.block_until_ready(c2)
    # a different design (new cell size value) is new data too
    jax.block_until_ready(dc.simulate(upgrade2.replace_region(2, cell_size_mm=40.4), p2, key=jax.random.key(6)))
    assert simulate_parametric._cache_size() == before
    # and so is another technology in a region (same number of regions and sections): the technologies
    # enter the compiled kernel as tables of numbers, so a design study compiles the simulator once
    from diffcalo.technologies import default_registry

    swapped = upgrade2.replace_region(2, technology=default_registry().get("spacal-pb"))
    c3 = dc.simulate(swapped, p2, key=jax.random.key(5))
    assert simulate_parametric._cache_size() == before
    # the new technology's response, not the old one's: Shashlik has one section, SpaCal a back one too
    assert float(np.asarray(c2.energy)[:, 1].sum()) == 0.0
    assert float(np.asarray(c3.energy)[:, 1].sum()) > 0.2 * float(np.asarray(c3.energy).sum())


def test_deterministic_given_key(upgrade2):
    p = _photons(upgrade2, 64, "outer")
    a = dc.simulate(upgrade2, p, key=jax.random.key(3), mode="realistic")
    b = dc.simulate(upgrade2, p, key=jax.random.key(3), mode="realistic")
    np.testing.assert_array_equal(np.asarray(a.energy), np.asarray(b.energy))


def test_realistic_is_nonnegative_thresholded_and_agrees_with_relaxed(upgrade2):
    p = _photons(upgrade2, 4000, "middle", energy=20.0)
    rel = dc.simulate(upgrade2, p, key=jax.random.key(1), mode="relaxed")
    rea = dc.simulate(upgrade2, p, key=jax.random.key(2), mode="realistic")
    e = np.asarray(rea.energy)
    assert e.min() >= 0
    thr = dc.technologies.get("shashlik").threshold_gev
    assert np.all((e == 0) | (e > thr))
    s_rel = np.asarray(rel.energy).sum(axis=(1, 2, 3))
    s_rea = e.sum(axis=(1, 2, 3))
    # same model: means within 0.5 %, resolutions within 10 %
    assert s_rea.mean() == pytest.approx(s_rel.mean(), rel=0.005)
    assert s_rea.std() == pytest.approx(s_rel.std(), rel=0.10)


# ---- bad input -------------------------------------------------------------------------------------------
def test_bad_energies_are_rejected_at_the_boundary():
    with pytest.raises(ValueError, match=r"particles.energy\[1\] = nan: energies must be finite and > 0"):
        dc.Particles.create(energy=[1.0, np.nan], x=[0, 0], y=[0, 0])
    with pytest.raises(ValueError, match=r"particles.energy\[0\] = -2.0"):
        dc.Particles.create(energy=[-2.0], x=[0], y=[0])
    with pytest.raises(ValueError, match=r"particles.energy\[0\] = 0.0"):
        dc.Particles.create(energy=[0.0], x=[0], y=[0])
    with pytest.raises(ValueError, match=r"particles.pid\[0\] = 211: supported particle ids"):
        dc.Particles.create(energy=[1.0], x=[0], y=[0], pid=211)
    with pytest.raises(ValueError, match=r"particles.x: shape \(3,\); expected \(2,\)"):
        dc.Particles.create(energy=[1.0, 2.0], x=[0, 0, 0], y=[0, 0])


def test_bad_particles_built_by_hand_are_caught_by_simulate(upgrade2):
    p = dc.Particles(pid=jnp.array([22]), energy=jnp.array([jnp.nan]), x=jnp.array([700.0]), y=jnp.array([0.0]),
                     tx=jnp.zeros(1), ty=jnp.zeros(1), time=jnp.zeros(1))
    with pytest.raises(ValueError, match="energies must be finite and > 0"):
        dc.simulate(upgrade2, p, key=jax.random.key(0))


def test_beam_hole_and_outside_raise_or_flag(upgrade2):
    p = dc.Particles.create(energy=[10.0, 10.0, 10.0], x=[700.0, 0.0, 9000.0], y=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"particles\[1\] at \(x, y\) = \(0.0, 0.0\) mm is in the beam hole"):
        dc.simulate(upgrade2, p, key=jax.random.key(0))
    c = dc.simulate(upgrade2, p, key=jax.random.key(0), on_invalid="flag")
    assert list(np.asarray(c.status)) == [0, 1, 2]
    e = np.asarray(c.energy)
    assert np.all(np.isfinite(e)) and e[1:].sum() == 0 and e[0].sum() > 5
    assert list(np.asarray(c.cell_index)[1]) == [-1, -1]


def test_bad_thickness_and_cell_size(upgrade2):
    tech = dc.technologies.get("spacal-w")
    with pytest.raises(ValueError, match=r"absorber_mm = -0.5 mm: must be >= 0"):
        tech.with_thickness(absorber_mm=-0.5).validate()
    with pytest.raises(ValueError, match=r"active_mm = 0.0 mm: must be > 0"):
        tech.with_thickness(active_mm=0.0).validate()
    lay = dc.layout.lhcb_current()
    bad = dataclasses.replace(lay, regions=(dataclasses.replace(lay.regions[0], cell_size_mm=7.0),) + lay.regions[1:])
    with pytest.raises(ValueError, match=r"regions\[0\] \('inner'\).cell_size_mm = 7.0 mm"):
        dc.Detector.from_layout(bad)


def test_bad_options(upgrade2):
    p = _photons(upgrade2, 4, "outer")
    with pytest.raises(ValueError, match=r"mode = 'fast': allowed \('relaxed', 'realistic'\)"):
        dc.simulate(upgrade2, p, key=jax.random.key(0), mode="fast")
    with pytest.raises(ValueError, match="window = 4: must be an odd integer"):
        dc.simulate(upgrade2, p, key=jax.random.key(0), window=4)
    with pytest.raises(ValueError, match="image = True needs a single-region layout"):
        dc.simulate(upgrade2, p, key=jax.random.key(0), image=True)


def test_low_energy_and_grazing_particles_give_finite_cells(upgrade2):
    p = dc.Particles.create(energy=[0.01, 0.05, 300.0], x=[3000.0, 3000.0, 3000.0], y=[0.0, 0.0, 0.0],
                            tx=[0.5, -0.3, 0.3], ty=[0.3, 0.0, -0.3])
    for mode in ("relaxed", "realistic"):
        e = np.asarray(dc.simulate(upgrade2, p, key=jax.random.key(0), mode=mode).energy)
        assert np.all(np.isfinite(e))


# ---- gradients (float64, relaxed mode, fixed key: the simulation is a smooth function of the design) ----
def _fd(f, x, h):
    return (f(x + h) - f(x - h)) / (2 * h)


@pytest.fixture(scope="module")
def x64_setup():
    with jax.enable_x64(True):
        det = dc.Detector.from_layout(dc.layout.lhcb_upgrade2_baseline())
        p = dc.Particles.create(energy=[8.0, 25.0, 60.0], x=[400.0, 430.0, 3000.0], y=[5.0, -200.0, 1500.0],
                                pid=[22, 11, 22], tx=[0.03, 0.034, 0.24], ty=[0.0, -0.016, 0.12])
        weights = jax.random.uniform(jax.random.key(7), (3, 2, 5, 5), dtype=jnp.float64)
    return det, p, weights


def _objective(det, p, weights):
    c = dc.simulate(det, p, key=jax.random.key(11))
    return jnp.sum(c.energy * weights)


def test_gradient_wrt_cell_size_matches_finite_differences(x64_setup):
    det, p, w = x64_setup
    with jax.enable_x64(True):
        f = lambda c: _objective(det.replace_region(0, cell_size_mm=c), p, w)
        g = jax.grad(f)(jnp.float64(15.15))
        fd = _fd(f, 15.15, 1e-5)
        assert float(g) == pytest.approx(float(fd), rel=1e-5, abs=1e-8)
        assert abs(float(g)) > 1e-3


def test_gradient_wrt_absorber_thickness_matches_finite_differences(x64_setup):
    det, p, w = x64_setup
    with jax.enable_x64(True):
        for region in (0, 3):
            f = lambda t: _objective(det.with_thickness(region, absorber_mm=t), p, w)
            t0 = float(det.technologies[region].stack[0].absorber_mm)
            g = jax.grad(f)(jnp.float64(t0))
            fd = _fd(f, t0, 1e-5)
            assert float(g) == pytest.approx(float(fd), rel=1e-5, abs=1e-8)
            assert abs(float(g)) > 1e-3


def test_gradient_wrt_impact_position_matches_finite_differences(x64_setup):
    det, p, w = x64_setup
    with jax.enable_x64(True):
        def f(dx):
            q = dataclasses.replace(p, x=p.x + dx * jnp.array([1.0, 0.0, 1.0]), y=p.y + dx * jnp.array([0.0, 1.0, 0.0]))
            return _objective(det, q, w)

        g = jax.grad(f)(jnp.float64(0.0))
        assert float(g) == pytest.approx(float(_fd(f, 0.0, 1e-5)), rel=1e-5, abs=1e-8)


def test_gradients_at_a_cell_edge_match_finite_differences():
    """Image mode has a fixed cell grid: put the shower axis exactly on a pad edge (x = 0)."""
    with jax.enable_x64(True):
        det = dc.Detector.from_layout(dc.layout.luxe())
        w = jax.random.uniform(jax.random.key(3), (1, 20, 11, 110), dtype=jnp.float64)

        def f(x, cell=5.0, absorber=3.5):
            d = det.replace_region(0, cell_size_mm=cell).with_thickness(0, absorber_mm=absorber)
            q = dc.Particles(pid=jnp.array([11]), energy=jnp.array([6.0]), x=jnp.atleast_1d(x),
                             y=jnp.array([2.5]), tx=jnp.zeros(1), ty=jnp.zeros(1), time=jnp.zeros(1))
            return jnp.sum(dc.simulate(d, q, key=jax.random.key(2), image=True).energy * w)

        gx, gc, ga = jax.grad(f, argnums=(0, 1, 2))(jnp.float64(0.0), jnp.float64(5.0), jnp.float64(3.5))
        assert float(gx) == pytest.approx(float(_fd(f, 0.0, 1e-5)), rel=1e-5, abs=1e-8)
        assert float(gc) == pytest.approx(float(_fd(lambda c: f(0.0, cell=c), 5.0, 1e-5)), rel=1e-5, abs=1e-8)
        assert float(ga) == pytest.approx(float(_fd(lambda a: f(0.0, absorber=a), 3.5, 1e-5)), rel=1e-5, abs=1e-8)
        assert min(abs(float(gx)), abs(float(gc)), abs(float(ga))) > 1e-4


@pytest.mark.parametrize("lam", [0.3, 2.0, 7.5, 11.9, 12.0, 40.0, 3000.0])
def test_poisson_counts_mean_variance_and_integers(lam):
    from diffcalo.simulation.readout import poisson_counts

    n = poisson_counts(jax.random.key(0), jnp.full((400_000,), lam))
    n = np.asarray(n)
    assert np.all(n == np.round(n)) and n.min() >= 0
    se = np.sqrt(lam / n.size)
    assert abs(n.mean() - lam) < 5 * se
    assert n.var() == pytest.approx(lam, rel=0.02 + 5 * np.sqrt(2 / n.size))
    if lam == 2.0:
        assert (n == 0).mean() == pytest.approx(np.exp(-2.0), abs=0.003)


def _kernel_inputs(det, n, region, seed):
    """Arguments of the batch-last cell kernel for ``n`` photons in one region, as simulate builds them."""
    from diffcalo.simulation.kernel import Showers
    from diffcalo.simulation.regions import region_tables

    p = _photons(det, n, region, energy=dc.log_uniform_energy(2.0, 100.0), seed=seed)
    tables = region_tables(det, 4, False)
    reg, _ = det.layout.region_of(p.x, p.y)
    tab = {k: jnp.moveaxis(v[reg], 0, -1) for k, v in tables.items()}
    cell = det.cell_size_mm[reg]
    _, _, cx, cy = det.layout.cell_of(p.x, p.y, cell)
    edges = (jnp.arange(6) - 2.5)[:, None] * cell[None, :]
    z = jax.random.normal(jax.random.key(9), (2, n))
    showers = Showers(energy=p.energy, is_photon=p.pid == 22, ax0=p.x - cx, ay0=p.y - cy, tx=p.tx, ty=p.ty,
                      z1=z[0], z2=z[1])
    return (showers, tab, edges, edges)


def test_jitted_kernel_matches_eager_on_a_large_batch(upgrade2):
    """Guards against an XLA:CPU miscompilation seen with some section-sum patterns at n >= 8192
    (columns of the window copied from others under jit only)."""
    from diffcalo.simulation.kernel import shower_cells

    args = _kernel_inputs(upgrade2, 12_000, "spacal-w", seed=4)
    jitted = np.asarray(jax.jit(shower_cells)(*args)[0])
    with jax.disable_jit():
        eager = np.asarray(shower_cells(*args)[0])
    assert np.max(np.abs(jitted - eager)) < 1e-4 * float(np.max(eager))
    # and the window is not degenerate: every column carries energy somewhere
    assert np.all(jitted.sum(axis=(0, 1, 3)) > 0)


def test_key_shared_with_the_gun_does_not_bias_showers(upgrade2):
    """simulate folds its own stream into the key: a key reused from the gun must not correlate
    shower shapes with the particles (the mean response stays the one of independent keys)."""
    key = jax.random.key(0)
    p = dc.gun(key, 20_000, upgrade2.layout, region="middle", energy=dc.log_uniform_energy(2.0, 100.0))
    same = np.asarray(dc.simulate(upgrade2, p, key=key).energy).sum(axis=(1, 2, 3)) / np.asarray(p.energy)
    other = np.asarray(dc.simulate(upgrade2, p, key=jax.random.key(12345)).energy).sum(axis=(1, 2, 3)) / np.asarray(p.energy)
    se = np.hypot(same.std(), other.std()) / np.sqrt(p.n)
    assert abs(same.mean() - other.mean()) < 4 * se


def test_chunked_kernel_equals_one_pass(upgrade2):
    """simulate runs the cell kernel in chunks of showers (cache-friendly): the result must be the
    one-pass result, also when the batch is not a multiple of the chunk."""
    from diffcalo.simulation.kernel import map_chunks, shower_cells

    n = 2 * 1000 + 317
    args = _kernel_inputs(upgrade2, n, "spacal-pb", seed=8)
    batched = args
    fn = lambda b: shower_cells(*b)
    one = jax.jit(fn)(batched)
    chunked = jax.jit(lambda b: map_chunks(fn, b, chunk=1000))(batched)
    assert chunked[0].shape == (2, 5, 5, n) and chunked[1].shape == (2, 5, 5, n) and chunked[2].shape == (n,)
    # float32: compare to eps x the largest cluster energy (100 GeV), 1e-5 GeV; depths in mm
    np.testing.assert_allclose(np.asarray(chunked[0]), np.asarray(one[0]), rtol=1e-5, atol=1e-5)
    # mean depths are ratios of float32 sums: in far cells with ~1e-6 of the energy they move by
    # ~0.01 mm (0.03 ps) between compilations
    np.testing.assert_allclose(np.asarray(chunked[1]), np.asarray(one[1]), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(np.asarray(chunked[2]), np.asarray(one[2]), rtol=1e-5, atol=1e-7)


def test_float32_reverse_mode_matches_forward_mode_on_a_large_batch(upgrade2):
    """Reverse-mode gradients through simulate were once wrong in float32 for batches above ~6000
    (an XLA:CPU miscompile); chunking the kernel avoids it. Guard with n = 10000."""
    p = _photons(upgrade2, 10_000, "spacal-w", energy=dc.log_uniform_energy(2.0, 100.0), seed=6)

    def f(t):
        return dc.simulate(upgrade2.with_thickness(0, absorber_mm=t), p, key=jax.random.key(1)).energy.mean()

    g = jax.grad(f)(jnp.float32(1.112))
    _, fwd = jax.jvp(f, (jnp.float32(1.112),), (jnp.float32(1.0),))
    assert float(g) == pytest.approx(float(fwd), rel=1e-4)
    assert float(g) > 0


def test_simulate_under_outer_jit_with_closed_over_particles(upgrade2):
    p = _photons(upgrade2, 64, "middle")
    f = jax.jit(lambda d: dc.simulate(d, p, key=jax.random.key(0)).energy.sum())
    assert float(f(upgrade2)) > 0


def test_bad_detector_edits_and_keys(upgrade2):
    with pytest.raises(IndexError, match=r"region index 7: the detector has 4 regions"):
        upgrade2.replace_region(7, cell_size_mm=20.0)
    with pytest.raises(ValueError, match=r"regions\[0\].cell_size_mm = -5.0: must be a positive number"):
        upgrade2.replace_region(0, cell_size_mm=-5.0)
    with pytest.raises(ValueError, match=r"absorber_mm = -1.0 mm: must be >= 0"):
        upgrade2.with_thickness(0, absorber_mm=-1.0)
    with pytest.raises(ValueError, match=r"particles.energy: shape \(1, 2\); expected a 1-D array"):
        dc.Particles.create(energy=[[1.0, 2.0]], x=[0.0, 0.0], y=[0.0, 0.0])
    p = _photons(upgrade2, 4, "outer")
    with pytest.raises(TypeError, match=r"key = 1: expected a single JAX PRNG key, e.g. key=jax.random.key\(0\)"):
        dc.simulate(upgrade2, p, key=1)
    with pytest.raises(ValueError, match=r"energy = \(2.0, 100.0\): give a number \(GeV\) or a spectrum"):
        dc.gun(jax.random.key(0), 4, upgrade2.layout, energy=(2.0, 100.0))
    assert dc.gun(jax.random.key(0), np.int64(3), upgrade2.layout).n == 3
