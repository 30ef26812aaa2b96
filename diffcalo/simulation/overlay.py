r"""Pile-up overlay: background particles drawn into every signal window and simulated with the
same shower model.

Per signal cluster, with the window of side W = K x cell centred on the impact cell:

1. the mean number of background hits per class is the flux model's density integrated over the
   window (:meth:`PileupModel.expected_counts`); the number of hits is Poisson, capped at a static
   ``max_background`` slots (masking; how often the cap is reached is returned);
2. each hit gets a class (in proportion to the class means), a position uniform in the window,
   an energy from the class's spectrum at that radius, a direction from the interaction point and
   a time: collision time (Gaussian, the luminous region's spread) + flight + the class's delay;
3. photons and electrons shower (the EM model of the signal); hadrons deposit as minimum-ionising
   particles in the cell they cross (charged ones) plus, if they interact in the stack
   (probability 1 - exp(-depth / lambda_I), lambda_I ~ 35 A^(1/3) g/cm^2), a crude hadronic
   fraction :data:`HADRONIC_FRACTION` of their energy as a shower. In relaxed mode the interaction
   enters with its probability (smooth), in realistic mode as a Bernoulli draw;
4. the deposits are summed into the window; cell times are energy-weighted means of all deposits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffcalo.simulation.kernel import Showers, map_chunks, shower_cells
from diffcalo.simulation.readout import SPEED_OF_LIGHT_MM_PER_NS, poisson_counts

__all__ = ["HADRONIC_FRACTION", "background_deposits"]

#: Fraction of an interacting hadron's energy that the ECAL sees as a shower (crude, documented).
HADRONIC_FRACTION = 0.3


def background_deposits(key, model, tab, cell, cx, cy, window: int, x_edges, mode: str, max_background: int,
                        z_ip_mm: float):
    """Mean background cell energies [L, K, K, n], energy x time sums [L, K, K, n], hit counts [n]
    and a flag [n] for windows whose Poisson count exceeded ``max_background``.

    ``tab`` holds the signal's per-cluster region rows (batch last), ``cell`` [n] the cell sizes,
    (cx, cy) [n] the window centres on the wall, ``x_edges`` [K+1, n] the window's cell edges
    relative to its centre.
    """
    n = cx.shape[0]
    m = max_background
    width = window * cell
    k_n, k_cls, k_pos, k_e, k_t0, k_dl, k_int, k_z = jax.random.split(key, 8)
    mu_c = model.expected_counts(cx, cy, width)                              # [C, n]
    mu = jnp.sum(mu_c, axis=0)
    drawn = poisson_counts(k_n, mu)
    over = drawn > m
    active = (jnp.arange(m)[:, None] < jnp.minimum(drawn, m)[None, :]).astype(cell.dtype)     # [M, n]
    logits = jnp.log(jnp.maximum(mu_c, 1e-30)).T                             # [n, C]
    cls = jax.random.categorical(k_cls, logits[None], axis=-1, shape=(m, n))  # [M, n]
    off = (jax.random.uniform(k_pos, (2, m, n), dtype=cell.dtype) - 0.5) * width[None, None]
    bx, by = cx[None] + off[0], cy[None] + off[1]
    energy = model.sample_energy(k_e, cls, bx, by)                           # [M, n]
    # times: collision + flight from the interaction point + the class's delay (quantile sampling)
    delays = jnp.asarray([c.delay_ns_quantiles for c in model.classes])       # [C, Q]
    qs = jnp.asarray(model.quantiles)
    u = jax.random.uniform(k_dl, (m, n))
    idx = jnp.clip(jnp.searchsorted(qs, u, side="right") - 1, 0, len(model.quantiles) - 2)
    d_lo, d_hi = delays[cls, idx], delays[cls, idx + 1]
    delay = d_lo + (u - qs[idx]) / (qs[idx + 1] - qs[idx]) * (d_hi - d_lo)
    flight = jnp.sqrt(bx ** 2 + by ** 2 + z_ip_mm ** 2) / SPEED_OF_LIGHT_MM_PER_NS
    t_hit = model.collision_time_sigma_ns * jax.random.normal(k_t0, (m, n)) + flight + delay

    names = model.names
    is_em = (cls == names.index("photon")) | (cls == names.index("electron"))
    is_charged_hadron = cls == names.index("charged_hadron")
    p_int = jnp.broadcast_to(tab["interaction_probability"], (m, n))
    interacts = p_int if mode == "relaxed" else (jax.random.uniform(k_int, (m, n)) < p_int).astype(cell.dtype)
    shower_e = jnp.where(is_em, energy, HADRONIC_FRACTION * energy * interacts) * active

    # EM-like showers of all slots through the signal kernel (batch = M x n, flattened slot-major)
    flat = lambda a: a.reshape(m * n)
    tile = lambda a: jnp.tile(a, (1,) * (a.ndim - 1) + (m,))
    tx = bx / z_ip_mm if z_ip_mm > 0 else jnp.zeros_like(bx)
    ty = by / z_ip_mm if z_ip_mm > 0 else jnp.zeros_like(by)
    z = jax.random.normal(k_z, (2, m * n), dtype=cell.dtype)
    showers = Showers(energy=jnp.maximum(flat(shower_e), 1e-3), is_photon=flat(cls == names.index("photon")),
                      ax0=flat(off[0]), ay0=flat(off[1]), tx=flat(tx), ty=flat(ty), z1=z[0], z2=z[1])
    edges = tile(x_edges)                                                   # square windows: x and y edges agree
    mean, depth, _ = map_chunks(lambda b: shower_cells(b[0], b[1], b[2], b[2]),
                                (showers, jax.tree_util.tree_map(tile, tab), edges))
    weight = flat(jnp.where(shower_e > 0, 1.0, 0.0))                        # masked slots deposit nothing
    mean = mean * weight
    shape = mean.shape[:-1] + (m, n)
    mean = mean.reshape(shape)
    t_cells = t_hit[None, None, None] + (depth.reshape(shape) * jnp.sqrt(1 + tx ** 2 + ty ** 2)[None, None, None]
                                         / SPEED_OF_LIGHT_MM_PER_NS)

    # minimum-ionising deposits of charged hadrons in the cell they cross, per section
    half = window / 2.0
    ix = jnp.clip(jnp.floor(off[0] / cell[None] + half), 0, window - 1).astype(jnp.int32)
    iy = jnp.clip(jnp.floor(off[1] / cell[None] + half), 0, window - 1).astype(jnp.int32)
    hit_cell = ((jnp.arange(window)[:, None, None, None] == iy[None, None])
                & (jnp.arange(window)[None, :, None, None] == ix[None, None]))       # [K(y), K(x), M, n]
    mip = tab["mip_gev"][:, None, None, None, :] * (is_charged_hadron * active)[None, None, None]   # [L,1,1,M,n]
    mip_cells = mip * hit_cell[None]
    total = mean + mip_cells
    e_sum = jnp.sum(total, axis=3)
    et_sum = jnp.sum(mean * t_cells + mip_cells * t_hit[None, None, None], axis=3)
    return e_sum, et_sum, drawn, over
