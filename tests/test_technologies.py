"""Technology registry, the plugin path, and the conformance suite every technology must pass."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffcalo as dc
from diffcalo.technologies import Registry, available, get
from diffcalo.technologies.builtin import SHASHLIK

BUILTIN = {"shashlik", "spacal-w", "spacal-pb", "siw", "toy-scint"}


def test_builtins_and_entry_point_plugin_are_registered():
    names = set(available())
    assert BUILTIN <= names
    # tests/plugin_pkg is installed by the test command and registers through a real entry point
    assert "demo-pbwo4" in names
    assert get("demo-pbwo4").stack[0].active == "PbWO4"


def test_unknown_technology_lists_available():
    with pytest.raises(KeyError, match="unknown technology 'lego'; available: .*shashlik.*spacal-w"):
        get("lego")


def test_duplicate_registration_is_an_error():
    reg = Registry(group=None)
    reg.register(SHASHLIK)
    with pytest.raises(ValueError, match="'shashlik' is already registered"):
        reg.register(SHASHLIK)
    reg.register(dataclasses.replace(SHASHLIK, noise_gev=0.0), replace=True)
    assert reg.get("shashlik").noise_gev == 0.0


def test_broken_plugin_warns_and_others_load():
    reg = Registry(group="diffcalo_tests.broken_plugins")
    with pytest.warns(RuntimeWarning) as record:
        names = reg.available()
    assert names == ["demo-pbwo4"]
    messages = " ".join(str(w.message) for w in record)
    assert "'missing-object'" in messages and "'not-a-technology'" in messages


def test_plugin_with_a_taken_name_is_an_error():
    reg = Registry(group="diffcalo_tests.duplicate_plugins")
    reg.register(SHASHLIK)
    with pytest.raises(ValueError, match="registers the name 'shashlik', which is already registered"):
        reg.available()


@pytest.mark.parametrize("change, message", [
    (dict(absorber_mm=-1.0), r"stack\[0\].absorber_mm = -1.0 mm: must be >= 0"),
    (dict(active_mm=0.0), r"stack\[0\].active_mm = 0.0 mm: must be > 0"),
    (dict(absorber="mithril"), r"stack\[0\].absorber: unknown material 'mithril'"),
    (dict(active="W"), r"stack\[0\].active = 'W' cannot be an active medium"),
])
def test_bad_stack_is_rejected(change, message):
    bad = dataclasses.replace(SHASHLIK, stack=(dataclasses.replace(SHASHLIK.stack[0], **change),))
    with pytest.raises(ValueError, match=message):
        bad.validate()


def test_bad_sections_and_cells_are_rejected():
    with pytest.raises(ValueError, match=r"sections = \(10, 10\): must be positive layer counts summing to the 66"):
        dataclasses.replace(SHASHLIK, sections=(10, 10)).validate()
    with pytest.raises(ValueError, match="must divide the module size 121.2 mm; allowed: 121.2, 60.6, 40.4"):
        dataclasses.replace(SHASHLIK, cell_sizes_mm=(50.0,)).validate()


# ---- conformance: every registered technology, built-in or plugin ----------------------------------
def _single_region_detector(tech):
    cell = tech.cell_sizes_mm[0] if tech.cell_sizes_mm else tech.module_mm
    reg = Registry(group=None)
    reg.register(tech)
    layout = dc.Layout(name=f"conformance-{tech.name}", module_mm=tech.module_mm, modules_x=3, modules_y=3,
                       z_mm=0.0, regions=(dc.Region("all", tech.name, cell, 3, 3),))
    return dc.Detector.from_layout(layout, registry=reg)


@pytest.mark.parametrize("name", sorted(available()))
def test_conformance(name):
    tech = get(name)
    tech.validate()
    # pytree round trip keeps static data and leaves
    leaves, treedef = jax.tree_util.tree_flatten(tech)
    assert jax.tree_util.tree_unflatten(treedef, leaves) == tech
    assert all(np.ndim(x) == 0 for x in leaves) and len(leaves) == 2 * len(tech.stack)
    # effective medium is finite and physical
    s = tech.summary()
    assert all(np.isfinite(v) for v in s.values()), s
    assert 0 < s["sampling_fraction"] <= 1 and s["moliere_radius_mm"] > 0 and s["depth_x0"] > 5
    # simulate under jit and grad: shapes, dtype, finite, energy roughly conserved in a big window,
    # gradient w.r.t. the absorber thickness finite (one compilation for all of it)
    det = _single_region_detector(tech)
    n = 64
    p = dc.Particles.create(energy=np.full(n, 20.0), x=np.linspace(-0.3, 0.3, n) * tech.module_mm,
                            y=np.zeros(n), pid=22)

    def total(t):
        c = dc.simulate(det.with_thickness(0, absorber_mm=t), p, key=jax.random.key(0), window=7)
        return c.energy.sum(), c

    (_, c), g = jax.value_and_grad(total, has_aux=True)(jnp.float32(tech.stack[0].absorber_mm))
    assert c.energy.shape == (n, tech.n_sections, 7, 7) and c.energy.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(c.energy)))
    tot = np.asarray(c.energy).sum(axis=(1, 2, 3))
    assert 0.7 < tot.mean() / 20.0 < 1.05
    assert np.isfinite(float(g))
    # realistic mode never negative
    r = dc.simulate(det, p, key=jax.random.key(0), mode="realistic", window=7)
    assert np.asarray(r.energy).min() >= 0
