r"""The parametric backend: GFlash showers + readout + pile-up overlay, one jitted function.

For every particle :func:`simulate_parametric`

1. finds the impact cell on the wall (window mode) or uses the whole wall (image mode);
2. draws the shower's (T, alpha) from the GFlash correlated log-normal (two standard normals,
   reparameterised) and integrates the Gamma profile exactly over each readout section
   (``gammainc`` at the section boundaries);
3. integrates the radial profile over depth by Gauss-Legendre quadrature in the shower's own
   probability variable (:func:`~diffcalo.simulation.kernel.shower_cells`): at each node's depth it
   evaluates the core + tail radial profile, shifts the shower axis by the incidence slopes, and
   integrates both components over every cell in closed form (:mod:`diffcalo.simulation.cells`);
4. sums the nodes into readout sections, overlays pile-up (:mod:`diffcalo.simulation.overlay`), and
   adds the readout fluctuations and cell times (:mod:`diffcalo.simulation.readout`).

Energies are on the EM scale (GeV): a fully contained shower sums to its energy on average;
multiply by :meth:`diffcalo.detector.Detector.sampling_fraction` for the deposit in the active medium.
Called through :func:`diffcalo.simulation.simulate` (which checks the inputs and builds the tables).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from diffcalo.clusters import Clusters
from diffcalo.layout import STATUS_OK, Layout
from diffcalo.particles import PHOTON, Particles
from diffcalo.simulation.kernel import Showers, map_chunks, shower_cells
from diffcalo.simulation.overlay import background_deposits
from diffcalo.simulation.readout import SPEED_OF_LIGHT_MM_PER_NS, cell_time_jitter, fluctuate

__all__ = ["simulate_parametric"]

_SIMULATE_STREAM = 0x51D0


@functools.partial(jax.jit, static_argnames=("geometry", "mode", "window", "depth_nodes", "image", "pileup",
                                             "max_background", "timing"))
def simulate_parametric(geometry: Layout, cell_sizes, tables: dict, tables_bg, particles: Particles, key, region,
                  status, mode: str, window: int, depth_nodes: int, image: bool, pileup=None,
                  max_background: int = 48, timing: bool = True) -> Clusters:
    # ``geometry``: the wall without regions' technologies (see regions.canonical_geometry); ``cell_sizes``
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
        centre = jnp.zeros_like(offset)                                    # the wall centre
        ix, iy, _, _ = layout.cell_of(particles.x, particles.y, cell)
    else:
        # impact cell on its module's grid; the centre is differentiable in the cell size
        ix, iy, cx, cy = layout.cell_of(particles.x, particles.y, cell)
        ax0, ay0 = particles.x - cx, particles.y - cy
        window_centre = (cx, cy)
        offset = jnp.stack([ax0, ay0], axis=-1)
        centre = jnp.stack([cx, cy], axis=-1)
        base = jnp.arange(window + 1) - 0.5 * window                      # [K+1] in cell units
        x_edges = y_edges = base[:, None] * cell[None, :]                 # [K+1, n]
    showers = Showers(energy=energy, is_photon=is_photon, ax0=ax0, ay0=ay0, tx=particles.tx, ty=particles.ty,
                      z1=z[0], z2=z[1])
    if image:       # one wall grid shared by every shower
        mean, depth, leakage = map_chunks(lambda b: shower_cells(*b, x_edges, y_edges, with_depth=timing),
                                          (showers, tab))
    else:           # each shower its own window
        mean, depth, leakage = map_chunks(lambda b: shower_cells(*b, with_depth=timing),
                                          (showers, tab, x_edges, y_edges))
    k_fluct, k_time, k_bg = jax.random.split(k_fluct, 3)
    # Cell time: production time + flight from the interaction point to the impact point + travel
    # along the (tilted) axis to the deposit's mean depth, all at c; then the technology's jitter.
    flight = jnp.sqrt(particles.x ** 2 + particles.y ** 2 + layout.z_mm ** 2) if layout.z_mm > 0 else 0.0
    along = jnp.sqrt(1.0 + particles.tx ** 2 + particles.ty ** 2)
    t_mean = particles.time + (flight + (depth if timing else 0.0) * along) / SPEED_OF_LIGHT_MM_PER_NS
    n_background = jnp.zeros(particles.energy.shape, jnp.int32)
    if pileup is not None:
        # background showers: one depth node per readout section (half the signal's cost)
        tab_bg = {k: jnp.moveaxis(v[ridx], 0, -1) for k, v in tables_bg.items()}
        bg_e, bg_et, n_bg, _ = background_deposits(k_bg, pileup, tab_bg, cell, window_centre[0], window_centre[1],
                                                   window, x_edges, mode, max_background, layout.z_mm,
                                                   layout.beam_hole_half_mm)
        total = mean + bg_e
        t_mean = jnp.where(total > 0, (mean * t_mean + bg_et) / jnp.where(total > 0, total, 1.0), t_mean)
        mean = total
        n_background = jnp.where(ok, n_bg, 0).astype(jnp.int32)
    cells = fluctuate(mean, tab, k_fluct, mode) * tab["section_mask"][:, None, None, :]
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
        ty=particles.ty, pid=particles.pid, offset=offset, centre=jnp.where(ok[:, None], centre, 0.0),
        cell_index=jnp.where(ok[:, None], jnp.stack([ix, iy], axis=-1), -1),
        cell_size_mm=jnp.where(ok, cell, 0.0), region=region, status=status,
        leakage=jnp.where(ok, leakage, 0.0), n_background=n_background,
        t_true=particles.time + flight / SPEED_OF_LIGHT_MM_PER_NS,
    )
