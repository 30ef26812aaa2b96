r"""The parametric shower simulator: :func:`simulate` is the single entry point.

For every particle the simulator

1. finds the region and the impact cell on the wall (window mode) or uses the whole wall
   (image mode);
2. draws the shower's (T, alpha) from the GFlash correlated log-normal (two standard normals,
   reparameterised), and integrates the Gamma profile over depth slabs (``gammainc``), several
   slabs per readout section;
3. at each slab's depth evaluates the core + tail radial profile, shifts the shower axis by the
   incidence slopes, and integrates both components over every cell in closed form
   (:mod:`diffcalo.simulation.cells`);
4. sums slabs into readout sections and adds the readout fluctuations.

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
from diffcalo.layout import STATUS_BEAM_HOLE, STATUS_OK, STATUS_OUTSIDE
from diffcalo.particles import PHOTON, Particles
from diffcalo.simulation import gflash
from diffcalo.simulation.cells import grid_integral

__all__ = ["Clusters", "simulate", "MODES", "region_tables"]

MODES = ("relaxed", "realistic")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Clusters:
    """Simulated calorimeter responses and their truth.

    Attributes:
        energy: [n, L, K, K] (window mode) or [n, L, Ny, Nx] (image mode) cell energies, GeV (EM scale).
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
    """

    energy: jnp.ndarray
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
def region_tables(detector: Detector, slabs_per_section: int, image: bool):
    """Per-region arrays the shower kernel needs, stacked over regions (differentiable).

    Returns a dict of arrays with a leading [n_regions] axis: ec_mev, z_eff, sampling_frequency,
    e_over_mip, moliere_radius_mm, sampling_term, inv_light_yield, noise_gev, constant_term,
    threshold_gev, light_yield, t_edges [S+1] (X0), z_mid [S] (mm), with S = n_sections x slabs,
    and section_mask [L] (0 for the padding sections of technologies with fewer sections).
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
        frac = jnp.arange(slabs_per_section + 1) / slabs_per_section
        t_edges = (sec_t[:-1, None] + (sec_t[1:] - sec_t[:-1])[:, None] * frac[None, :])  # [L, m+1]
        z_edges = (sec_z[:-1, None] + (sec_z[1:] - sec_z[:-1])[:, None] * frac[None, :])
        t_all = jnp.concatenate([t_edges[:, :-1].reshape(-1), sec_t[-1:]])
        z_all = jnp.concatenate([z_edges[:, :-1].reshape(-1), sec_z[-1:]])
        ly = tech.light_yield_pe_per_gev
        rows.append(dict(
            ec_mev=props.ec_mev, z_eff=props.z_eff, sampling_frequency=props.sampling_frequency,
            e_over_mip=props.e_over_mip, moliere_radius_mm=props.moliere_radius_mm,
            sampling_term=props.sampling_term, inv_light_yield=jnp.asarray(1.0 / ly if ly > 0 else 0.0),
            light_yield=jnp.asarray(float(ly)),
            noise_gev=jnp.asarray(tech.noise_gev), constant_term=jnp.asarray(tech.constant_term),
            threshold_gev=jnp.asarray(tech.threshold_gev),
            t_edges=t_all, z_mid=0.5 * (z_all[1:] + z_all[:-1]),
            section_mask=(jnp.arange(n_out) < tech.n_sections).astype(float),
        ))
    return {k: jnp.stack([jnp.asarray(r[k], dtype=float) for r in rows]) for k in rows[0]}


# ---- the shower kernel (one particle) -----------------------------------------------------------------
def _shower_cells(energy, is_photon, ax0, ay0, tx, ty, z1, z2, x_edges, y_edges, tab, n_sections):
    """Mean cell energies of one shower: [L, Ny, Nx], and the leakage fraction.

    ``ax0, ay0``: the impact point relative to the grid frame in which ``x_edges`` and ``y_edges``
    are given (mm). ``tab``: this particle's row of :func:`region_tables`.
    """
    mlt, mla, st, sa, rho = gflash.longitudinal_parameters(
        energy, tab["ec_mev"], tab["z_eff"], tab["sampling_frequency"], tab["e_over_mip"], is_photon)
    t_max, alpha, beta = gflash.sample_shape(mlt, mla, st, sa, rho, z1, z2)
    t_edges = tab["t_edges"]
    frac = gflash.longitudinal_fractions(t_edges, alpha, beta)          # [S]
    leakage = 1.0 - jnp.sum(frac) - 0.0
    tau = 0.5 * (t_edges[1:] + t_edges[:-1]) / t_max
    r_core, r_tail, p_core = gflash.radial_parameters(
        energy, tau, tab["z_eff"], tab["sampling_frequency"], tab["e_over_mip"])
    rm = tab["moliere_radius_mm"]
    axis_x = ax0 + tx * tab["z_mid"]                                      # [S]
    axis_y = ay0 + ty * tab["z_mid"]
    xe = x_edges[None, :] - axis_x[:, None]                               # [S, Nx+1]
    ye = y_edges[None, :] - axis_y[:, None]
    radii = jnp.concatenate([r_core, r_tail]) * rm                        # [2S]
    both = grid_integral(jnp.concatenate([xe, xe]), jnp.concatenate([ye, ye]), radii)  # [2S, Ny, Nx]
    s = frac.shape[0]
    w_core = (energy * frac * p_core)[:, None, None]
    w_tail = (energy * frac * (1.0 - p_core))[:, None, None]
    slabs = w_core * both[:s] + w_tail * both[s:]                        # [S, Ny, Nx]
    cells = slabs.reshape((n_sections, s // n_sections) + slabs.shape[1:]).sum(axis=1)
    return cells, leakage


def _fluctuate(mean, tab, key, mode):
    """Readout fluctuations of cell energies ``mean`` [n, L, Ny, Nx] (see module docstring)."""
    a = tab["sampling_term"][:, None, None, None]
    noise = tab["noise_gev"][:, None, None, None]
    const = tab["constant_term"]
    k_cell, k_const, k_pe, k_noise = jax.random.split(key, 4)
    z_const = jax.random.normal(k_const, mean.shape[:1], dtype=mean.dtype)
    scale = (1.0 + const * z_const)[:, None, None, None]
    if mode == "relaxed":
        inv_ly = tab["inv_light_yield"][:, None, None, None]
        e = jnp.maximum(mean, 0.0)
        var = (a * a + inv_ly) * e + noise * noise
        sd = jnp.sqrt(jnp.where(var > 0, var, 1.0)) * (var > 0)
        z = jax.random.normal(k_cell, mean.shape, dtype=mean.dtype)
        return (mean + sd * z) * scale
    # realistic: log-normal sampling fluctuation with the same mean and variance (never negative),
    # discrete photo-electrons, Gaussian noise, constant term, zero suppression.
    k_samp = k_cell
    e = jnp.maximum(mean, 0.0)
    rel_var = a * a / jnp.where(e > 0, e, 1.0)
    sigma2 = jnp.log1p(rel_var)
    z = jax.random.normal(k_samp, mean.shape, dtype=mean.dtype)
    e = e * jnp.exp(jnp.sqrt(sigma2) * z - 0.5 * sigma2)
    ly = tab["light_yield"][:, None, None, None]
    has_ly = ly > 0
    n_pe = poisson_counts(k_pe, jnp.where(has_ly, e * ly, 0.0))
    e = jnp.where(has_ly, n_pe / jnp.where(has_ly, ly, 1.0), e)
    e = (e + noise * jax.random.normal(k_noise, mean.shape, dtype=mean.dtype)) * scale
    thr = tab["threshold_gev"][:, None, None, None]
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


@functools.partial(jax.jit, static_argnames=("mode", "window", "slabs_per_section", "image"))
def _simulate_jit(detector: Detector, particles: Particles, key, mode: str, window: int,
                  slabs_per_section: int, image: bool) -> Clusters:
    layout = detector.layout
    tables = region_tables(detector, slabs_per_section, image)
    region, status = layout.region_of(particles.x, particles.y)
    ok = status == STATUS_OK
    ridx = jnp.clip(region, 0, detector.n_regions - 1)
    tab = {k: v[ridx] for k, v in tables.items()}                         # per-particle rows
    cell = detector.cell_size_mm[ridx]
    energy = jnp.where(ok & (particles.energy > 0), particles.energy, 1.0)
    k_shape, k_fluct = jax.random.split(key)
    z = jax.random.normal(k_shape, (particles.energy.shape[0], 2), dtype=cell.dtype)
    is_photon = particles.pid == PHOTON
    n_sections = detector.n_sections

    if image:
        nx = int(round(layout.width_mm / layout.regions[0].cell_size_mm))
        ny = int(round(layout.height_mm / layout.regions[0].cell_size_mm))
        c = detector.cell_size_mm[0]
        x_edges = (jnp.arange(nx + 1) - 0.5 * nx) * c
        y_edges = (jnp.arange(ny + 1) - 0.5 * ny) * c
        ax0, ay0 = particles.x, particles.y
        offset = jnp.stack([particles.x, particles.y], axis=-1)
        ix, iy, _, _ = layout.cell_of(particles.x, particles.y, jax.lax.stop_gradient(cell))
        kernel = jax.vmap(_shower_cells, in_axes=(0, 0, 0, 0, 0, 0, 0, 0, None, None, 0, None))
        mean, leakage = kernel(energy, is_photon, ax0, ay0, particles.tx, particles.ty, z[:, 0], z[:, 1],
                               x_edges, y_edges, tab, n_sections)
    else:
        x0, y0 = layout.origin_mm
        c_static = jax.lax.stop_gradient(cell)
        ix = jnp.floor((particles.x - x0) / c_static).astype(jnp.int32)
        iy = jnp.floor((particles.y - y0) / c_static).astype(jnp.int32)
        # Centre of the impact cell: differentiable in the cell size (edges move with it).
        cx = x0 + (ix + 0.5) * cell
        cy = y0 + (iy + 0.5) * cell
        ax0, ay0 = particles.x - cx, particles.y - cy
        offset = jnp.stack([ax0, ay0], axis=-1)
        base = jnp.arange(window + 1) - 0.5 * window                      # [K+1] in cell units
        x_edges = base[None, :] * cell[:, None]                           # [n, K+1]
        kernel = jax.vmap(_shower_cells, in_axes=(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, None))
        mean, leakage = kernel(energy, is_photon, ax0, ay0, particles.tx, particles.ty, z[:, 0], z[:, 1],
                               x_edges, x_edges, tab, n_sections)
    cells = _fluctuate(mean, tab, k_fluct, mode) * tab["section_mask"][:, :, None, None]
    mask = ok[:, None, None, None]
    cells = jnp.where(mask, cells, 0.0)
    return Clusters(
        energy=cells, e_true=particles.energy, x=particles.x, y=particles.y, tx=particles.tx,
        ty=particles.ty, pid=particles.pid, offset=offset,
        cell_index=jnp.where(ok[:, None], jnp.stack([ix, iy], axis=-1), -1),
        cell_size_mm=jnp.where(ok, cell, 0.0), region=region, status=status,
        leakage=jnp.where(ok, leakage, 0.0),
    )


def simulate(detector: Detector, particles: Particles, *, key, mode: str = "relaxed", window: int = 5,
             slabs_per_section: int | None = None, image: bool = False,
             on_invalid: str = "raise") -> Clusters:
    r"""Simulate calorimeter clusters for a batch of particles.

    Args:
        detector: the :class:`~diffcalo.detector.Detector` (layout + technologies + cell sizes).
        particles: the :class:`~diffcalo.particles.Particles` batch.
        key: PRNG key (keyword-only).
        mode: ``"relaxed"`` (smooth, differentiable) or ``"realistic"`` (discrete photo-electrons,
            thresholds, never negative).
        window: K, the cluster window is K x K cells centred on the impact cell (odd, >= 1).
        slabs_per_section: depth slabs per readout section at which the radial profile is evaluated
            (the longitudinal integral itself is exact). Default 2 in window mode, 1 in image mode.
        image: return the whole wall as one image ``[n, L, Ny, Nx]`` instead of windows (single-region
            layouts of small stacks such as LUXE and the toy; each layer its own section).
        on_invalid: ``"raise"``: a particle in the beam hole or outside the wall is an error;
            ``"flag"``: such clusters get ``status`` 1 or 2 and zero energy.

    Returns:
        :class:`Clusters`.

    The function is jitted once per (shapes, mode, window, slabs, image, detector structure); a
    second call with new data of the same shapes does not recompile. Under an outer ``jax.jit``
    or ``jax.grad`` the input checks that need concrete values are skipped.
    """
    if mode not in MODES:
        raise ValueError(f"mode = {mode!r}: allowed {MODES}")
    if not (isinstance(window, int) and window >= 1 and window % 2 == 1):
        raise ValueError(f"window = {window!r}: must be an odd integer >= 1")
    if slabs_per_section is None:
        slabs_per_section = 1 if image else 2
    if not (isinstance(slabs_per_section, int) and slabs_per_section >= 1):
        raise ValueError(f"slabs_per_section = {slabs_per_section!r}: must be an integer >= 1")
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
    concrete = not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(particles))
    if concrete:
        particles.validate()
        if on_invalid == "raise":
            _, status = detector.layout.region_of(particles.x, particles.y)
            status = np.asarray(status)
            bad = np.flatnonzero(status != STATUS_OK)
            if bad.size:
                i = bad[0]
                what = "in the beam hole" if status[i] == STATUS_BEAM_HOLE else "outside the wall"
                lay = detector.layout
                raise ValueError(
                    f"particles[{i}] at (x, y) = ({float(particles.x[i]):.1f}, {float(particles.y[i]):.1f}) mm "
                    f"is {what} ({bad.size} such particles); the wall spans |x| < {lay.width_mm / 2:g}, "
                    f"|y| < {lay.height_mm / 2:g} mm, beam hole {lay.beam_hole[0]} x {lay.beam_hole[1]} "
                    "modules. Pass on_invalid='flag' to keep them with status 1 (beam hole) or 2 (outside)")
    return _simulate_jit(detector, particles, key, mode, window, slabs_per_section, image)
