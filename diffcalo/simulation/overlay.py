r"""Pile-up overlay: background particles drawn into every signal window and simulated with the
same shower model.

Per signal cluster, with the window of side W = K x cell centred on the impact cell:

1. background hits are a Poisson process with the flux model's density rho_c(x, y) per class c on the
   window grown by a margin of :data:`SHOWER_MARGIN_RM` Moliere radii on each side (hits just outside
   the window leak shower energy into it), minus the layout's beam hole. It is drawn exactly by thinning: the grown
   window is cut into :data:`THINNING_GRID` x :data:`THINNING_GRID` squares, each with the envelope
   rho_c,max of each class over it (:meth:`PileupModel.envelope_density`); a Poisson number of
   candidates from the summed envelopes x areas, each in a (class, square) in proportion to them, at a
   uniform position in its square, kept with probability rho_c(x, y) / rho_c,max (0 in the beam hole). In relaxed mode the candidate carries that probability as a weight (smooth),
   in realistic mode it is a Bernoulli draw. Candidates beyond a static ``max_background`` slots are
   dropped (masking; reported, see :func:`background_deposits`);
2. each kept hit gets an energy from its class's E_T spectrum at its radius, E = E_T / sin(theta)
   (:meth:`PileupModel.sample_energy`), a direction from the interaction point and a time: its
   collision's arrival offset (:meth:`PileupModel.arrival_offsets`, the bunch length over c) + flight +
   the class's delay; hits later than the readout integration window
   (``PileupModel.integration_window_ns``) deposit nothing;
3. photons and electrons shower (the EM model of the signal); hadrons deposit as minimum-ionising
   particles in the cell they cross (charged ones, if that cell is in the window) plus, if they
   interact in the stack (probability 1 - exp(-depth / lambda_I), lambda_I ~ 35 A^(1/3) g/cm^2), a
   crude hadronic fraction :data:`HADRONIC_FRACTION` of their energy as a shower whose lateral scale
   is :data:`HADRONIC_WIDTH_LAMBDA` interaction lengths instead of the Moliere radius (hadronic showers
   are wider than EM ones; crude, documented). In relaxed mode the interaction enters with its
   probability (smooth), in realistic mode as a Bernoulli draw;
4. the deposits are summed into the window; cell times are energy-weighted means of all deposits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffcalo.simulation.kernel import Showers, map_chunks, shower_cells
from diffcalo.simulation.readout import SPEED_OF_LIGHT_MM_PER_NS, poisson_counts

__all__ = ["HADRONIC_FRACTION", "HADRONIC_WIDTH_LAMBDA", "background_deposits"]

#: Fraction of an interacting hadron's energy that the ECAL sees as a shower (crude, documented).
HADRONIC_FRACTION = 0.3
#: Lateral scale of the hadronic part, in interaction lengths of the stack, used where EM showers use
#: the Moliere radius (crude: ~95 % of a hadronic shower lies within ~1 lambda_I of its axis).
HADRONIC_WIDTH_LAMBDA = 0.3
#: Margin around the window in which background hits are simulated for the energy their showers leak
#: into it, in Moliere radii: the half Moliere radius nearest the window holds the showers that leak most
#: (a shower centred 0.5 R_M outside leaks ~10 % of its energy inwards, one at 1 R_M a few %).
SHOWER_MARGIN_RM = 0.5
#: Sub-squares per side of the thinning envelope (see the module docstring).
THINNING_GRID = 4


def background_deposits(key, model, tab, cell, cx, cy, window: int, x_edges, mode: str, max_background: int,
                        z_ip_mm: float, hole_half_mm=(0.0, 0.0)):
    """Mean background cell energies [L, K, K, n], energy x time sums [L, K, K, n], the background
    count [n] and a flag [n] for windows whose candidate draw exceeded ``max_background``.

    The count is the number of kept background particles hitting the K x K window itself; for
    flagged windows it is the number of candidates drawn instead (always > ``max_background``, so
    ``count > max_background`` marks them).

    ``tab`` holds the signal's per-cluster region rows (batch last), ``cell`` [n] the cell sizes,
    (cx, cy) [n] the window centres on the wall, ``x_edges`` [K+1, n] the window's cell edges
    relative to its centre, ``hole_half_mm`` the beam hole's half sizes.
    """
    n = cx.shape[0]
    m = max_background
    width = window * cell
    margin = SHOWER_MARGIN_RM * tab["moliere_radius_mm"]
    grown = width + 2.0 * margin
    k_n, k_cls, k_pos, k_e, k_t0, k_dl, k_int, k_z, k_keep = jax.random.split(key, 9)
    # envelope per class and sub-square of the grown window (THINNING_GRID^2 of them: the density falls
    # steeply near the beam, and one envelope for the whole window would waste most candidates)
    g = THINNING_GRID
    sub = grown / g
    steps = (jnp.arange(g) - 0.5 * (g - 1))
    sx = cx[None, None] + steps[None, :, None] * sub[None, None]                # [G(y), G(x), n]
    sy = cy[None, None] + steps[:, None, None] * sub[None, None]
    sx = jnp.broadcast_to(sx, (g, g, n)).reshape(g * g, n)
    sy = jnp.broadcast_to(sy, (g, g, n)).reshape(g * g, n)
    env_rho = model.envelope_density(sx, sy, sub[None], hole_half_mm)          # [C, G^2, n] per cm^2
    n_cls = env_rho.shape[0]
    env_c = (env_rho * (sub ** 2 / 100.0)[None, None]).reshape(n_cls * g * g, n)   # candidates per (class, sub)
    env = jnp.sum(env_c, axis=0)
    drawn = poisson_counts(k_n, env)
    over = drawn > m
    slot = (jnp.arange(m)[:, None] < jnp.minimum(drawn, m)[None, :]).astype(cell.dtype)     # [M, n]
    logits = jnp.log(jnp.maximum(env_c, 1e-30)).T                            # [n, C G^2]
    pick = jax.random.categorical(k_cls, logits[None], axis=-1, shape=(m, n))  # [M, n]
    cls, which = pick // (g * g), pick % (g * g)
    u = jax.random.uniform(k_pos, (2, m, n), dtype=cell.dtype) - 0.5
    pos_x = jnp.take_along_axis(sx, which, axis=0) + u[0] * sub[None]
    pos_y = jnp.take_along_axis(sy, which, axis=0) + u[1] * sub[None]
    off = jnp.stack([pos_x - cx[None], pos_y - cy[None]])                   # [2, M, n] from the window centre
    bx, by = pos_x, pos_y
    # thinning: keep with rho_c(x, y) / envelope, never in the beam hole
    rho = model.density(bx, by)                                               # [C, M, n]
    rho_c = jnp.take_along_axis(rho, cls[None], axis=0)[0]
    env_cls = jnp.take_along_axis(env_rho.reshape(n_cls * g * g, n), pick, axis=0)
    hx, hy = hole_half_mm
    in_hole = (jnp.abs(bx) < hx) & (jnp.abs(by) < hy)
    p_keep = jnp.where(in_hole, 0.0, jnp.clip(rho_c / jnp.maximum(env_cls, 1e-30), 0.0, 1.0))
    keep = p_keep if mode == "relaxed" else (jax.random.uniform(k_keep, (m, n)) < p_keep).astype(cell.dtype)
    active = slot * keep
    in_window = (jnp.abs(off[0]) < 0.5 * width[None]) & (jnp.abs(off[1]) < 0.5 * width[None])
    hits = jnp.sum(active * in_window, axis=0)
    count = jnp.where(over, drawn, jnp.round(hits).astype(drawn.dtype))
    energy = model.sample_energy(k_e, cls, bx, by)                           # [M, n]
    # times: collision + flight from the interaction point + the class's delay (quantile sampling)
    delays = jnp.asarray([c.delay_ns_quantiles for c in model.classes])       # [C, Q]
    qs = jnp.asarray(model.quantiles)
    u = jax.random.uniform(k_dl, (m, n))
    idx = jnp.clip(jnp.searchsorted(qs, u, side="right") - 1, 0, len(model.quantiles) - 2)
    d_lo, d_hi = delays[cls, idx], delays[cls, idx + 1]
    delay = d_lo + (u - qs[idx]) / (qs[idx + 1] - qs[idx]) * (d_hi - d_lo)
    flight = jnp.sqrt(bx ** 2 + by ** 2 + z_ip_mm ** 2) / SPEED_OF_LIGHT_MM_PER_NS
    t_offset = model.arrival_offsets(k_t0, (m, n)) + delay          # behind a photon from the nominal IP
    t_hit = t_offset + flight
    # the readout integrates a window after the crossing: later deposits (slow neutrons) are not read
    active = active * (t_offset < model.integration_window_ns)

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
    tab_slots = jax.tree_util.tree_map(tile, tab)
    # hadronic showers: lateral scale HADRONIC_WIDTH_LAMBDA x lambda_I (stack depth / its interaction lengths)
    depth = tab["z_edges"][-1]
    lambda_mm = depth / jnp.maximum(-jnp.log1p(-jnp.clip(tab["interaction_probability"], 0.0, 0.999999)), 1e-6)
    hadron_scale = jnp.broadcast_to(HADRONIC_WIDTH_LAMBDA * lambda_mm, (m, n))
    tab_slots["moliere_radius_mm"] = flat(jnp.where(is_em, jnp.broadcast_to(tab["moliere_radius_mm"], (m, n)),
                                                    hadron_scale))
    edges = tile(x_edges)                                                   # square windows: x and y edges agree
    mean, depth, _ = map_chunks(lambda b: shower_cells(b[0], b[1], b[2], b[2]), (showers, tab_slots, edges))
    weight = flat(jnp.where(shower_e > 0, 1.0, 0.0))                        # masked slots deposit nothing
    mean = mean * weight
    shape = mean.shape[:-1] + (m, n)
    mean = mean.reshape(shape)
    t_cells = t_hit[None, None, None] + (depth.reshape(shape) * jnp.sqrt(1 + tx ** 2 + ty ** 2)[None, None, None]
                                         / SPEED_OF_LIGHT_MM_PER_NS)

    # minimum-ionising deposits of charged hadrons in the cell they cross (if it is in the window), per section
    half = window / 2.0
    ix = jnp.floor(off[0] / cell[None] + half).astype(jnp.int32)
    iy = jnp.floor(off[1] / cell[None] + half).astype(jnp.int32)
    hit_cell = ((jnp.arange(window)[:, None, None, None] == iy[None, None])
                & (jnp.arange(window)[None, :, None, None] == ix[None, None]))       # [K(y), K(x), M, n]
    mip = tab["mip_gev"][:, None, None, None, :] * (is_charged_hadron * active)[None, None, None]   # [L,1,1,M,n]
    mip_cells = mip * hit_cell[None]
    total = mean + mip_cells
    e_sum = jnp.sum(total, axis=3)
    et_sum = jnp.sum(mean * t_cells + mip_cells * t_hit[None, None, None], axis=3)
    return e_sum, et_sum, count, over
