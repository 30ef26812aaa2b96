r"""The parametric shower simulator: :func:`simulate` is the single entry point.

For every particle the simulator

1. finds the region and the impact cell on the wall (window mode) or uses the whole wall
   (image mode);
2. draws the shower's (T, alpha) from the GFlash correlated log-normal (two standard normals,
   reparameterised) and integrates the Gamma profile exactly over each readout section
   (``gammainc`` at the section boundaries);
3. integrates the radial profile over depth by Gauss-Legendre quadrature in the shower's own
   probability variable (``depth_nodes`` nodes per shower): at each node's depth it evaluates the
   core + tail radial profile, shifts the shower axis by the incidence slopes, and integrates both
   components over every cell in closed form (:mod:`diffcalo.simulation.cells`);
4. sums the nodes into readout sections and adds the readout fluctuations.

Fluctuations. ``relaxed`` (smooth, differentiable): each cell gets one Gaussian with variance
a^2 e + e / N_pe + sigma_noise^2 (sampling, photo-statistics, noise; e in GeV), and the cluster
is scaled by (1 + b z) for the constant term b. ``realistic``: photo-electrons are Poisson counts,
noise is Gaussian, and cells below the technology's threshold (or below zero) read zero. The
sampling fluctuation is log-normal with the same mean and variance as the relaxed Gaussian
(non-negative, reparameterised), and photo-electron counts come from :func:`poisson_counts`
(exact below 12 photo-electrons, normal with continuity correction above).

Energies are on the EM scale (GeV): a fully contained shower sums to its energy on average;
multiply by :meth:`diffcalo.detector.Detector.sampling_fraction` for the deposit in the active medium.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from diffcalo.detector import Detector
from diffcalo.layout import STATUS_BEAM_HOLE, STATUS_OK, STATUS_OUTSIDE, Layout, Region
from diffcalo.particles import PHOTON, Particles
from diffcalo.simulation import gflash
from diffcalo.simulation.cells import grid_integral_batch_last

__all__ = ["Clusters", "simulate", "MODES", "DEFAULT_DEPTH_NODES", "region_tables", "allocate_depth_nodes",
           "combine_deposits", "cell_time_jitter", "SPEED_OF_LIGHT_MM_PER_NS"]

MODES = ("relaxed", "realistic")
_SIMULATE_STREAM = 0x51D0
#: Radial-profile evaluations per shower in window mode (see :func:`simulate`).
DEFAULT_DEPTH_NODES = 4


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Clusters:
    """Simulated calorimeter responses and their truth.

    Attributes:
        energy: [n, L, K, K] (window mode) or [n, L, Ny, Nx] (image mode) cell energies, GeV (EM scale).
        time: [n, L, K, K] cell times (ns): energy-weighted mean arrival of the cell's deposits plus
            the technology's jitter; 0 where the cell has no energy.
        e_true: [n] true energy (GeV).
        x, y: [n] true impact point on the front face (mm).
        tx, ty: [n] true slopes.
        pid: [n] particle id.
        offset: [n, 2] impact point minus the impact-cell centre (mm); in image mode, minus the
            wall centre.
        cell_index: [n, 2] (ix, iy) of the impact cell on its region's grid (-1 if not on the wall).
        cell_size_mm: [n] cell size of the impact region (mm).
        region: [n] region index (-1 beam hole, -2 outside the wall).
        status: [n] 0 ok, 1 in the beam hole, 2 outside the wall (such clusters have zero energy).
        leakage: [n] true fraction of the shower energy behind the stack (before fluctuations).
        n_background: [n] pile-up particles drawn into the window (before the ``max_background``
            cap: min(n_background, max_background) were simulated); 0 without pile-up.
        t_true: [n] true arrival time of the particle at the front face (ns): production time +
            flight from the interaction point at c (the target of time reconstruction).
    """

    energy: jnp.ndarray
    time: jnp.ndarray
    e_true: jnp.ndarray
    x: jnp.ndarray
    y: jnp.ndarray
    tx: jnp.ndarray
    ty: jnp.ndarray
    pid: jnp.ndarray
    offset: jnp.ndarray
    cell_index: jnp.ndarray
    cell_size_mm: jnp.ndarray
    region: jnp.ndarray
    status: jnp.ndarray
    leakage: jnp.ndarray
    n_background: jnp.ndarray
    t_true: jnp.ndarray

    @property
    def n(self) -> int:
        return int(self.energy.shape[0])

    def summary(self) -> dict:
        """Plain-number summary for printing."""
        e = np.asarray(self.energy)
        ok = np.asarray(self.status) == STATUS_OK
        tot = e.reshape(e.shape[0], -1).sum(axis=1)
        ratio = tot[ok] / np.asarray(self.e_true)[ok]
        return dict(
            clusters=int(e.shape[0]), shape=tuple(e.shape[1:]), ok=int(ok.sum()),
            beam_hole=int((np.asarray(self.status) == STATUS_BEAM_HOLE).sum()),
            outside=int((np.asarray(self.status) == STATUS_OUTSIDE).sum()),
            mean_sum_over_true=float(ratio.mean()) if ratio.size else float("nan"),
            rms_sum_over_true=float(ratio.std()) if ratio.size else float("nan"),
            mean_leakage=float(np.asarray(self.leakage)[ok].mean()) if ok.any() else float("nan"),
        )


# ---- per-region tables --------------------------------------------------------------------------------
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
    the section's probability range), node_w [S] (its weight), with S = ``depth_nodes``.
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
        ly = tech.light_yield_pe_per_gev
        mip, p_int = tech.mip_response()
        if pad:
            mip = jnp.concatenate([mip, jnp.zeros(pad)])
        rows.append(dict(
            ec_mev=props.ec_mev, z_eff=props.z_eff, sampling_frequency=props.sampling_frequency,
            e_over_mip=props.e_over_mip, moliere_radius_mm=props.moliere_radius_mm,
            sampling_term=props.sampling_term, inv_light_yield=jnp.asarray(1.0 / ly if ly > 0 else 0.0),
            light_yield=jnp.asarray(float(ly)),
            noise_gev=jnp.asarray(tech.noise_gev), constant_term=jnp.asarray(tech.constant_term),
            threshold_gev=jnp.asarray(tech.threshold_gev),
            time_stochastic_ns=jnp.asarray(tech.time_stochastic_ns),
            mip_gev=mip, interaction_probability=p_int,
            time_constant_ns=jnp.asarray(tech.time_constant_ns),
            t_edges=sec_t, z_edges=sec_z,
            section_mask=(jnp.arange(n_out) < tech.n_sections).astype(float),
            node_section=np.asarray(onehot), node_q=np.asarray(q), node_w=np.asarray(w),
        ))
    return {k: jnp.stack([jnp.asarray(r[k], dtype=float) for r in rows]) for k in rows[0]}


# ---- the shower kernel (batch-last arrays) --------------------------------------------------------------
def _shower_cells(energy, is_photon, ax0, ay0, tx, ty, z1, z2, x_edges, y_edges, tab, with_depth: bool = True):
    """Mean cell energies of a batch of showers, batch on the last axis: [L, Ny, Nx, n], the
    energy-weighted mean depth of each cell's deposit [L, Ny, Nx, n] (mm), and the leakage [n].

    Args:
        energy, is_photon, ax0, ay0, tx, ty, z1, z2: [n]; ``ax0, ay0`` is the impact point in the
            frame of the cell edges (mm); z1, z2 the standard normals of the shower shape.
        x_edges, y_edges: [Nx+1, n] and [Ny+1, n] (window mode) or [Nx+1, 1] (image mode), mm.
        tab: per-particle rows of :func:`region_tables`, batch last (scalars [n], t_edges [L+1, n],
            node_section [S, L, n], node_q / node_w [S, n]).

    Longitudinal fractions per section are exact (``gammainc`` at the section boundaries). Within a
    section the radial profile is integrated over depth by Gauss-Legendre quadrature in the
    shower's own probability variable: node k sits at the depth where the CDF reaches
    P1 + (P2 - P1) q_k (Wilson-Hilferty inverse of the Gamma CDF), carries (P2 - P1) w_k of the
    energy, and is where the radial profile is evaluated and the tilted axis placed. All arrays keep
    the batch innermost so that XLA vectorises over showers.
    """
    mlt, mla, st, sa, rho = gflash.longitudinal_parameters(
        energy, tab["ec_mev"], tab["z_eff"], tab["sampling_frequency"], tab["e_over_mip"], is_photon)
    t_max, alpha, beta = gflash.sample_shape(mlt, mla, st, sa, rho, z1, z2)
    t_edges, z_edges = tab["t_edges"], tab["z_edges"]                    # [L+1, n]
    # the first edge is the front face, t = 0, where the CDF is 0: no gammainc there
    cdf = jnp.concatenate([jnp.zeros_like(t_edges[:1]), gflash.longitudinal_cdf(t_edges[1:], alpha, beta)])
    leakage = 1.0 - cdf[-1]
    onehot = tab["node_section"]                                          # [S, L, n]
    pick = lambda v: jnp.sum(onehot * v[None], axis=1)                   # [L, n] -> [S, n]
    p_lo, p_hi = pick(cdf[:-1]), pick(cdf[1:])
    t_lo, t_hi = pick(t_edges[:-1]), pick(t_edges[1:])
    z_lo, z_hi = pick(z_edges[:-1]), pick(z_edges[1:])
    frac = (p_hi - p_lo) * tab["node_w"]                                  # [S, n]
    t_node = gflash.gamma_quantile_depth(p_lo + (p_hi - p_lo) * tab["node_q"], alpha, beta)
    dt = t_hi - t_lo
    empty = (p_hi - p_lo < 1e-6) | (dt <= 0)
    mid = t_lo + tab["node_q"] * dt
    t_node = jnp.where(empty, mid, jnp.clip(t_node, t_lo, t_hi))
    w = jnp.where(dt > 0, (t_node - t_lo) / jnp.where(dt > 0, dt, 1.0), 0.5)
    z_node = z_lo + w * (z_hi - z_lo)                                     # [S, n] mm
    r_core, r_tail, p_core = gflash.radial_parameters(
        energy, t_node / t_max, tab["z_eff"], tab["sampling_frequency"], tab["e_over_mip"])
    rm = tab["moliere_radius_mm"]
    xe = x_edges[None] - (ax0 + tx * z_node)[:, None]                   # [S, Nx+1, n]
    ye = y_edges[None] - (ay0 + ty * z_node)[:, None]
    radii = jnp.concatenate([r_core, r_tail]) * rm                        # [2S, n]
    both = grid_integral_batch_last(jnp.concatenate([xe, xe]), jnp.concatenate([ye, ye]), radii)
    n_nodes = frac.shape[0]
    w_core = (energy * frac * p_core)[:, None, None]                     # [S, 1, 1, n]
    w_tail = (energy * frac * (1.0 - p_core))[:, None, None]
    nodes = w_core * both[:n_nodes] + w_tail * both[n_nodes:]            # [S, Ny, Nx, n]
    # One-hot section sum as an explicit accumulation over the (few) nodes: XLA fuses it into a
    # single loop over the output cells. A reduction over the node axis (or an einsum, which
    # becomes a dot batched over showers) measured 2x slower on CPU.
    cells = onehot[0][:, None, None, :] * nodes[0][None]
    for k in range(1, n_nodes):
        cells = cells + onehot[k][:, None, None, :] * nodes[k][None]
    if not with_depth:
        return cells, None, leakage
    depth = onehot[0][:, None, None, :] * (nodes[0] * z_node[0][None, None])[None]
    for k in range(1, n_nodes):
        depth = depth + onehot[k][:, None, None, :] * (nodes[k] * z_node[k][None, None])[None]
    # energy-weighted mean depth of each cell's deposit (mm), for the cell time
    depth = depth / jnp.where(cells > 0, cells, 1.0)
    return cells, depth, leakage


SPEED_OF_LIGHT_MM_PER_NS = 299.792458
#: Below this cell energy (GeV) the stochastic time jitter is evaluated at this energy.
TIME_JITTER_FLOOR_GEV = 1e-3


def cell_time_jitter(key, t_mean, energy, a_ns, b_ns):
    r"""Cell times with the technology's resolution :math:`\sigma_t = A/\sqrt{E} \oplus B` (E in GeV).

    Args:
        key: PRNG key.
        t_mean: [...] true cell times (ns).
        energy: [...] cell energies (GeV), broadcasting with ``t_mean``; energies below
            :data:`TIME_JITTER_FLOOR_GEV` use the floor.
        a_ns, b_ns: A (ns GeV^0.5) and B (ns), broadcasting.
    """
    e = jnp.maximum(energy, TIME_JITTER_FLOOR_GEV)
    sigma = jnp.sqrt(a_ns * a_ns / e + b_ns * b_ns)
    return t_mean + sigma * jax.random.normal(key, t_mean.shape, dtype=t_mean.dtype)


def combine_deposits(energies, times, axis: int = -1):
    r"""Cells with several deposits: total energy and energy-weighted mean time along ``axis``.

    .. math:: E = \sum_j E_j, \qquad t = \sum_j t_j E_j / \sum_j E_j

    (the LHCb convention for overlapping deposits); a cell without energy gets t = 0.
    """
    total = jnp.sum(energies, axis=axis)
    weighted = jnp.sum(energies * times, axis=axis)
    return total, jnp.where(total > 0, weighted / jnp.where(total > 0, total, 1.0), 0.0)


#: Showers per chunk of the cell kernel: the corner terms of one chunk (2 x nodes x (K+1)^2 x chunk
#: floats, ~1.2 MB for 5x5 windows and 4 nodes) stay in the CPU cache; measured ~35 % faster than
#: one pass over a 100k batch.
KERNEL_CHUNK = 4096


def _map_chunks(fn, batched, chunk: int | None = None):
    """Apply ``fn`` to a pytree of batch-last arrays chunk by chunk (``lax.map``); same result as
    ``fn(batched)``. Outputs are batch-last too. The batch is padded by repeating its last entry."""
    chunk = KERNEL_CHUNK if chunk is None else chunk
    n = jax.tree_util.tree_leaves(batched)[0].shape[-1]
    if n <= chunk:
        return fn(batched)
    n_chunks = -(-n // chunk)
    pad = n_chunks * chunk - n

    def split(a):
        a = jnp.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, pad)], mode="edge")
        return jnp.moveaxis(a.reshape(a.shape[:-1] + (n_chunks, chunk)), -2, 0)

    def join(a):
        a = jnp.moveaxis(a, 0, -2)
        return a.reshape(a.shape[:-2] + (n_chunks * chunk,))[..., :n]

    out = jax.lax.map(fn, jax.tree_util.tree_map(split, batched))
    return jax.tree_util.tree_map(join, out)


def _fluctuate(mean, tab, key, mode):
    """Readout fluctuations of cell energies ``mean`` [L, Ny, Nx, n] (see module docstring)."""
    a = tab["sampling_term"]
    noise = tab["noise_gev"]
    const = tab["constant_term"]
    k_cell, k_const, k_pe, k_noise = jax.random.split(key, 4)
    z_const = jax.random.normal(k_const, mean.shape[-1:], dtype=mean.dtype)
    scale = 1.0 + const * z_const
    if mode == "relaxed":
        inv_ly = tab["inv_light_yield"]
        e = jnp.maximum(mean, 0.0)
        var = (a * a + inv_ly) * e + noise * noise
        sd = jnp.sqrt(jnp.where(var > 0, var, 1.0)) * (var > 0)
        z = jax.random.normal(k_cell, mean.shape, dtype=mean.dtype)
        return (mean + sd * z) * scale
    # realistic: log-normal sampling fluctuation with the same mean and variance (never negative),
    # discrete photo-electrons, Gaussian noise, constant term, zero suppression.
    e = jnp.maximum(mean, 0.0)
    rel_var = a * a / jnp.where(e > 0, e, 1.0)
    sigma2 = jnp.log1p(rel_var)
    z = jax.random.normal(k_cell, mean.shape, dtype=mean.dtype)
    e = e * jnp.exp(jnp.sqrt(sigma2) * z - 0.5 * sigma2)
    ly = tab["light_yield"]
    has_ly = ly > 0
    n_pe = poisson_counts(k_pe, jnp.where(has_ly, e * ly, 0.0))
    e = jnp.where(has_ly, n_pe / jnp.where(has_ly, ly, 1.0), e)
    e = (e + noise * jax.random.normal(k_noise, mean.shape, dtype=mean.dtype)) * scale
    thr = tab["threshold_gev"]
    return jnp.where(e > jnp.maximum(thr, 0.0), e, 0.0)


#: Below this mean the photo-electron count is drawn by exact inversion of the Poisson CDF.
POISSON_EXACT_BELOW = 12.0
_POISSON_TERMS = 40


def poisson_counts(key, lam):
    r"""Poisson counts with mean ``lam`` (any shape), vectorised without rejection loops.

    Exact inversion of the CDF (``_POISSON_TERMS`` terms; the tail beyond is < 1e-9) for
    lam < :data:`POISSON_EXACT_BELOW`; above, the normal approximation with continuity correction
    floor(lam + sqrt(lam) z + 1/2), clipped at 0 (its variance is lam + 1/12, within 1 % for lam >= 12).
    Returned as floats.
    """
    k_u, k_z = jax.random.split(key)
    u = jax.random.uniform(k_u, lam.shape, dtype=lam.dtype)
    small = jnp.minimum(lam, POISSON_EXACT_BELOW)
    term = jnp.exp(-small)
    cdf = term
    count = jnp.zeros_like(lam)
    for k in range(1, _POISSON_TERMS):
        count = count + (u > cdf)
        term = term * small / k
        cdf = cdf + term
    z = jax.random.normal(k_z, lam.shape, dtype=lam.dtype)
    big = jnp.maximum(jnp.floor(lam + jnp.sqrt(lam) * z + 0.5), 0.0)
    return jnp.where(lam < POISSON_EXACT_BELOW, count, big)


@functools.partial(jax.jit, static_argnames=("geometry", "mode", "window", "depth_nodes", "image", "pileup",
                                             "max_background", "timing"))
def _simulate_jit(geometry: Layout, cell_sizes, tables: dict, tables_bg, particles: Particles, key, region,
                  status, mode: str, window: int, depth_nodes: int, image: bool, pileup=None,
                  max_background: int = 12, timing: bool = True) -> Clusters:
    # ``geometry``: the wall without regions' technologies (see _canonical_geometry); ``cell_sizes``
    # [R] and the region tables (R leading) carry everything per region, as traced arrays.
    layout = geometry                     # the kernel below reads the wall's geometry as ``layout``
    n_regions = cell_sizes.shape[0]
    ok = status == STATUS_OK
    ridx = jnp.clip(region, 0, n_regions - 1)
    # per-particle rows, batch last: scalars [n], t_edges / z_edges [S+1, n]
    tab = {k: jnp.moveaxis(v[ridx], 0, -1) for k, v in tables.items()}
    cell = cell_sizes[ridx]
    energy = jnp.where(ok & (particles.energy > 0), particles.energy, 1.0)
    # A stream of its own: a key the caller also gave to a gun must not tie shower shapes to the
    # particles' energies or positions.
    k_shape, k_fluct = jax.random.split(jax.random.fold_in(key, _SIMULATE_STREAM))
    z = jax.random.normal(k_shape, (2, particles.energy.shape[0]), dtype=cell.dtype)
    is_photon = particles.pid == PHOTON
    if image:
        nx = int(round(layout.width_mm / layout.regions[0].cell_size_mm))
        ny = int(round(layout.height_mm / layout.regions[0].cell_size_mm))
        c = cell_sizes[0]
        x_edges = ((jnp.arange(nx + 1) - 0.5 * nx) * c)[:, None]            # [Nx+1, 1]
        y_edges = ((jnp.arange(ny + 1) - 0.5 * ny) * c)[:, None]
        ax0, ay0 = particles.x, particles.y
        offset = jnp.stack([particles.x, particles.y], axis=-1)
        ix, iy, _, _ = layout.cell_of(particles.x, particles.y, cell)
    else:
        # impact cell on its module's grid; the centre is differentiable in the cell size
        ix, iy, cx, cy = layout.cell_of(particles.x, particles.y, cell)
        ax0, ay0 = particles.x - cx, particles.y - cy
        window_centre = (cx, cy)
        offset = jnp.stack([ax0, ay0], axis=-1)
        base = jnp.arange(window + 1) - 0.5 * window                      # [K+1] in cell units
        x_edges = y_edges = base[:, None] * cell[None, :]                 # [K+1, n]
    batched = (energy, is_photon, ax0, ay0, particles.tx, particles.ty, z[0], z[1], tab)
    if image:
        mean, depth, leakage = _map_chunks(lambda b: _shower_cells(*b[:8], x_edges, y_edges, b[8], timing), batched)
    else:
        mean, depth, leakage = _map_chunks(lambda b: _shower_cells(*b[:8], b[9], b[10], b[8], timing),
                                    batched + (x_edges, y_edges))
    k_fluct, k_time, k_bg = jax.random.split(k_fluct, 3)
    # Cell time: production time + flight from the interaction point to the impact point + travel
    # along the (tilted) axis to the deposit's mean depth, all at c; then the technology's jitter.
    flight = jnp.sqrt(particles.x ** 2 + particles.y ** 2 + layout.z_mm ** 2) if layout.z_mm > 0 else 0.0
    along = jnp.sqrt(1.0 + particles.tx ** 2 + particles.ty ** 2)
    t_mean = particles.time + (flight + (depth if timing else 0.0) * along) / SPEED_OF_LIGHT_MM_PER_NS
    n_background = jnp.zeros(particles.energy.shape, jnp.int32)
    if pileup is not None:
        from diffcalo.simulation.overlay import background_deposits

        # background showers: one depth node per readout section (half the signal's cost)
        tab_bg = {k: jnp.moveaxis(v[ridx], 0, -1) for k, v in tables_bg.items()}
        bg_e, bg_et, n_bg, _ = background_deposits(k_bg, pileup, tab_bg, cell, window_centre[0], window_centre[1],
                                                   window, x_edges, mode, max_background, layout.z_mm)
        total = mean + bg_e
        t_mean = jnp.where(total > 0, (mean * t_mean + bg_et) / jnp.where(total > 0, total, 1.0), t_mean)
        mean = total
        n_background = jnp.where(ok, n_bg, 0).astype(jnp.int32)
    cells = _fluctuate(mean, tab, k_fluct, mode) * tab["section_mask"][:, None, None, :]
    cells = jnp.where(ok, cells, 0.0)
    if timing:
        times = cell_time_jitter(k_time, t_mean, cells, tab["time_stochastic_ns"], tab["time_constant_ns"])
        times = jnp.where(cells > 0, times, 0.0)
    else:
        times = jnp.zeros_like(cells)
    cells = jnp.moveaxis(cells, -1, 0)                                    # [n, L, Ny, Nx]
    times = jnp.moveaxis(times, -1, 0)
    return Clusters(
        energy=cells, time=times, e_true=particles.energy, x=particles.x, y=particles.y, tx=particles.tx,
        ty=particles.ty, pid=particles.pid, offset=offset,
        cell_index=jnp.where(ok[:, None], jnp.stack([ix, iy], axis=-1), -1),
        cell_size_mm=jnp.where(ok, cell, 0.0), region=region, status=status,
        leakage=jnp.where(ok, leakage, 0.0), n_background=n_background,
        t_true=particles.time + flight / SPEED_OF_LIGHT_MM_PER_NS,
    )


def simulate(detector: Detector, particles: Particles, *, key, mode: str = "relaxed", window: int = 5,
             depth_nodes: int | None = None, image: bool = False,
             on_invalid: str = "raise", pileup=None, max_background: int = 12,
             timing: bool = True) -> Clusters:
    r"""Simulate calorimeter clusters for a batch of particles.

    Args:
        detector: the :class:`~diffcalo.detector.Detector` (layout + technologies + cell sizes).
        particles: the :class:`~diffcalo.particles.Particles` batch.
        key: PRNG key (keyword-only).
        mode: ``"relaxed"`` (smooth, differentiable) or ``"realistic"`` (discrete photo-electrons,
            thresholds, never negative).
        window: K, the cluster window is K x K cells centred on the impact cell (odd, >= 1).
        depth_nodes: radial-profile evaluations per shower (window mode), spread over the readout
            sections by :func:`allocate_depth_nodes` (default 4); in image mode each layer is one
            node. The longitudinal fractions per section are exact whatever the number.
        image: return the whole wall as one image ``[n, L, Ny, Nx]`` instead of windows (single-region
            layouts of small stacks such as LUXE and the toy; each layer its own section).
        on_invalid: ``"raise"``: a particle in the beam hole or outside the wall is an error;
            ``"flag"``: such clusters get ``status`` 1 or 2 and zero energy.
        pileup: a :class:`~diffcalo.pileup.PileupModel` to overlay background particles in every
            window (window mode; see :mod:`diffcalo.simulation.overlay`), or None.
        max_background: static cap on the background particles per window (masked slots; default
            12); the drawn count is returned in ``Clusters.n_background``. Background showers use
            one depth node per readout section.
        timing: compute cell times (default). ``False`` skips them (``time`` is all zeros): about
            a third faster when only energies are needed.

    Returns:
        :class:`Clusters`.

    The function is jitted once per (shapes, mode, window, depth_nodes, image, detector structure); a
    second call with new data of the same shapes does not recompile. Under an outer ``jax.jit``
    or ``jax.grad`` the input checks that need concrete values are skipped.
    """
    if mode not in MODES:
        raise ValueError(f"mode = {mode!r}: allowed {MODES}")
    if not (isinstance(window, int) and window >= 1 and window % 2 == 1):
        raise ValueError(f"window = {window!r}: must be an odd integer >= 1")
    if depth_nodes is None:
        depth_nodes = max(DEFAULT_DEPTH_NODES, detector.n_sections) if not image else 1
    if not (isinstance(depth_nodes, int) and depth_nodes >= 1):
        raise ValueError(f"depth_nodes = {depth_nodes!r}: must be an integer >= 1")
    if not image and depth_nodes < detector.n_sections:
        raise ValueError(f"depth_nodes = {depth_nodes}: the detector reads {detector.n_sections} sections; "
                         "give at least one node per section")
    if on_invalid not in ("raise", "flag"):
        raise ValueError(f"on_invalid = {on_invalid!r}: allowed 'raise' or 'flag'")
    if not isinstance(detector, Detector):
        raise TypeError(f"detector: expected a diffcalo Detector (Detector.from_layout(layout)), "
                        f"got {type(detector).__name__}")
    if not isinstance(particles, Particles):
        raise TypeError(f"particles: expected diffcalo Particles, got {type(particles).__name__}")
    if image:
        if detector.n_regions != 1:
            raise ValueError(f"image = True needs a single-region layout; {detector.layout.name!r} has "
                             f"{detector.n_regions} regions (use window mode)")
        ncell = (detector.layout.width_mm / detector.layout.regions[0].cell_size_mm) * \
                (detector.layout.height_mm / detector.layout.regions[0].cell_size_mm)
        if ncell > 100_000:
            raise ValueError(f"image = True: the wall has {ncell:.0f} cells; image mode is for small "
                             "stacks (at most 100000 cells); use window mode")
    _check_key(key)
    concrete = not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(particles))
    region, status = detector.layout.region_of(particles.x, particles.y)
    if concrete:
        particles.validate()
        # under an outer jit even closed-over particles give a traced status: skip the check then
        if on_invalid == "raise" and not isinstance(status, jax.core.Tracer):
            status = np.asarray(status)
            bad = np.flatnonzero(status != STATUS_OK)
            if bad.size:
                i = bad[0]
                what = "in the beam hole" if status[i] == STATUS_BEAM_HOLE else "outside the wall"
                lay = detector.layout
                raise ValueError(
                    f"particles[{i}] at (x, y) = ({float(particles.x[i]):.1f}, {float(particles.y[i]):.1f}) mm "
                    f"is {what} ({bad.size} of {status.size} particles are off the active wall); the wall spans |x| < {lay.width_mm / 2:g}, "
                    f"|y| < {lay.height_mm / 2:g} mm, beam hole {lay.beam_hole[0]} x {lay.beam_hole[1]} "
                    "modules. Pass on_invalid='flag' to keep them with status 1 (beam hole) or 2 (outside)")
    if pileup is not None:
        from diffcalo.pileup import PileupModel

        if not isinstance(pileup, PileupModel):
            raise TypeError(f"pileup: expected a diffcalo PileupModel (PileupModel.default()), got {type(pileup).__name__}")
        if image:
            raise ValueError("pileup with image = True is not supported; use window mode")
        if not (isinstance(max_background, int) and max_background >= 1):
            raise ValueError(f"max_background = {max_background!r}: must be an integer >= 1")
    if pileup is not None and not timing:
        raise ValueError("timing = False with pileup: the overlay combines deposit times; keep timing on")
    # Region look-up and the per-region tables outside the jit (traceable, so gradients still flow
    # to technology parameters and cell sizes), and a canonical geometry inside it: the compiled
    # kernel depends only on the wall, the number of regions and of sections (array shapes), not on
    # which technologies or cell sizes fill the regions nor where the regions end, so every design of
    # a study with the same number of regions and sections shares one compiled simulator.
    tables = _cached_tables(detector, depth_nodes, image)
    tables_bg = _cached_tables(detector, detector.n_sections, False) if pileup is not None else None
    return _simulate_jit(_canonical_geometry(detector.layout, image), detector.cell_size_mm, tables, tables_bg,
                         particles, key, region, status, mode, window, depth_nodes, image, pileup,
                         max_background if pileup is not None else 12, bool(timing))


_TABLES: dict = {}


def _cached_tables(detector: Detector, depth_nodes: int, image: bool):
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
        tables = _TABLES[key] = region_tables(detector, depth_nodes, image)
    return tables


@functools.lru_cache(maxsize=256)
def _canonical_geometry(layout, image: bool):
    """The layout without name, technologies and region rectangles: the static part of the kernel.
    Image mode keeps the (single) region's cell size, which fixes the image shape."""
    regions = tuple(Region(f"r{i}", "", r.cell_size_mm if image else 0.0, 0, 0)
                    for i, r in enumerate(layout.regions))
    return dataclasses.replace(layout, name="", regions=regions)


def _check_key(key) -> None:
    """A clear error for something that is not a JAX PRNG key (``jax.random.key(seed)``)."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and key.shape == ():
        return
    if dtype is not None and dtype == jnp.uint32 and getattr(key, "shape", None) == (2,):
        return  # legacy raw key from jax.random.PRNGKey
    raise TypeError(f"key = {key!r}: expected a single JAX PRNG key, e.g. key=jax.random.key(0) "
                    "(split a key for several calls)")
