"""Per-region tables of the shower kernel: what each region's technology contributes, as arrays.

:func:`region_tables` turns a :class:`~diffcalo.detector.Detector` into a dict of arrays with a
leading region axis (material, readout and section constants, and the depth-node layout of the
radial quadrature); :func:`cached_region_tables` memoises it on the technologies' values;
:func:`canonical_geometry` strips a layout to the static part the compiled kernel depends on.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from diffcalo.detector import Detector
from diffcalo.layout import Region

__all__ = ["DEFAULT_DEPTH_NODES", "allocate_depth_nodes", "region_tables", "cached_region_tables",
           "canonical_geometry"]

#: Radial-profile evaluations per shower in window mode (see :func:`diffcalo.simulation.simulate`).
DEFAULT_DEPTH_NODES = 4


def allocate_depth_nodes(tech, depth_nodes: int) -> tuple[int, ...]:
    """Split ``depth_nodes`` radial evaluations over a technology's readout sections.

    Equal shares, the remainder to the front sections (which hold most of the energy). Static:
    it depends only on the counts, so it is fixed under ``jit`` whatever the thicknesses.
    """
    n_sec = tech.n_sections
    if depth_nodes < n_sec:
        raise ValueError(f"depth_nodes = {depth_nodes}: technology {tech.name!r} has {n_sec} readout "
                         f"sections and needs at least one node each")
    base, extra = divmod(depth_nodes, n_sec)
    return tuple(base + (1 if i < extra else 0) for i in range(n_sec))


def region_tables(detector: Detector, depth_nodes: int, image: bool):
    """Per-region arrays the shower kernel needs, stacked over regions (differentiable).

    Returns a dict of arrays with a leading [n_regions] axis: ec_mev, z_eff, sampling_frequency,
    e_over_mip, moliere_radius_mm, sampling_term, inv_light_yield, light_yield, noise_gev,
    constant_term, threshold_gev; t_edges, z_edges [L+1] (section boundaries in X0 and mm;
    padding sections of technologies with fewer sections have zero width); section_mask [L];
    and the depth-node layout: node_section [S, L] (one-hot), node_q [S] (Gauss-Legendre point in
    the section's probability range), node_w [S] (its weight), with S = ``depth_nodes``; and the
    shower-shape calibration ``cal_core_scale``, ``cal_core_scale_log_e``, ``cal_tail_scale``,
    ``cal_core_fraction_scale``, ``cal_t_max_shift_x0``, ``cal_alpha_scale`` (the technology's
    :class:`~diffcalo.technologies.calibration.Calibration`).
    """
    n_out = detector.n_sections
    rows = []
    for tech in detector.technologies:
        props = tech.effective_medium()
        t_layers, z_layers = tech.layer_depths()
        idx = np.asarray(tech.section_layer_edges())
        sec_t, sec_z = t_layers[idx], z_layers[idx]
        pad = n_out - tech.n_sections
        if pad:
            sec_t = jnp.concatenate([sec_t, jnp.repeat(sec_t[-1:], pad)])
            sec_z = jnp.concatenate([sec_z, jnp.repeat(sec_z[-1:], pad)])
        alloc = (1,) * tech.n_sections if image else allocate_depth_nodes(tech, depth_nodes)
        onehot, q, w = [], [], []
        for sec, m in enumerate(alloc):
            x, wx = np.polynomial.legendre.leggauss(m)
            q.extend(0.5 * (x + 1.0))
            w.extend(0.5 * wx)
            onehot.extend([np.eye(n_out)[sec]] * m)
        ly = tech.photoelectrons_per_gev()
        mip, p_int = tech.mip_response()
        if pad:
            mip = jnp.concatenate([mip, jnp.zeros(pad)])
        rows.append(dict(
            ec_mev=props.ec_mev, z_eff=props.z_eff, sampling_frequency=props.sampling_frequency,
            e_over_mip=props.e_over_mip, moliere_radius_mm=props.moliere_radius_mm,
            sampling_term=props.sampling_term, inv_light_yield=jnp.where(ly > 0, 1.0 / jnp.where(ly > 0, ly, 1.0), 0.0),
            light_yield=jnp.asarray(ly, float),
            noise_gev=jnp.asarray(tech.noise_gev), constant_term=jnp.asarray(tech.constant_term),
            threshold_gev=jnp.asarray(tech.threshold_gev),
            time_stochastic_ns=jnp.asarray(tech.time_stochastic_ns),
            mip_gev=mip, interaction_probability=p_int,
            time_constant_ns=jnp.asarray(tech.time_constant_ns),
            t_edges=sec_t, z_edges=sec_z,
            section_mask=(jnp.arange(n_out) < tech.n_sections).astype(float),
            node_section=np.asarray(onehot), node_q=np.asarray(q), node_w=np.asarray(w),
            **{f"cal_{k}": jnp.asarray(float(getattr(tech.calibrated, k))) for k in _SHAPE_CALIBRATION},
            cal_constant_term=jnp.asarray(float(tech.calibrated.constant_term)),
        ))
    return {k: jnp.stack([jnp.asarray(r[k], dtype=float) for r in rows]) for k in rows[0]}



#: Calibration factors of the shower shape that the kernel reads from the tables (``cal_<name>``).
_SHAPE_CALIBRATION = ("core_scale", "core_scale_log_e", "tail_scale", "core_fraction_scale", "t_max_shift_x0",
                      "alpha_scale")

_TABLES: dict = {}


def cached_region_tables(detector: Detector, depth_nodes: int, image: bool):
    """:func:`region_tables`, memoised on the technologies' values (eagerly they cost ~17 ms a call,
    a lookup ~0.2 ms); traced technologies (under jit / grad) are never cached."""
    leaves, treedef = jax.tree_util.tree_flatten(detector.technologies)
    if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
        return region_tables(detector, depth_nodes, image)
    arrays = [np.asarray(leaf) for leaf in leaves]
    key = (treedef, tuple((a.dtype.str, a.shape, a.tobytes()) for a in arrays), depth_nodes, image)
    tables = _TABLES.get(key)
    if tables is None:
        if len(_TABLES) >= 64:
            _TABLES.pop(next(iter(_TABLES)))
        tables = region_tables(detector, depth_nodes, image)
        # inside a trace (jit, eval_shape) even concrete technologies give staged (traced) tables:
        # those must not outlive the trace
        if not any(isinstance(v, jax.core.Tracer) for v in tables.values()):
            _TABLES[key] = tables
    return tables


@functools.lru_cache(maxsize=256)
def canonical_geometry(layout, image: bool):
    """The layout without name, technologies and region rectangles: the static part of the kernel.
    Image mode keeps the (single) region's cell size, which fixes the image shape."""
    regions = tuple(Region(f"r{i}", "", r.cell_size_mm if image else 0.0, 0, 0)
                    for i, r in enumerate(layout.regions))
    return dataclasses.replace(layout, name="", regions=regions)
