r"""A vectorised NumPy/SciPy implementation of diffcalo's window-mode shower model.

This is the comparison point for ``benchmarks/bench_simulate.py``: the code a physicist would write
for the same model without JAX -- array expressions over the whole particle batch, no Python loop
over showers (only over the handful of regions, radial components or readout sections). It reproduces
:func:`diffcalo.simulate` in window mode (K x K cells around the impact cell, every readout section):

1. region and impact-cell lookup on the wall;
2. GFlash (ln T, ln alpha) from two standard normals; the energy fraction of every readout section
   from the regularised lower incomplete gamma function (``scipy.special.gammainc``) at the section
   boundaries; inside each section, S depth nodes (Gauss-Legendre in the shower's own CDF, placed
   by the Wilson-Hilferty inverse of the Gamma CDF) carrying their quadrature share of the energy;
3. per node, core and tail radii and core fraction at the node's depth, the shower axis shifted by
   the incidence slopes to that depth, and the closed-form corner integral
   F(a, b) = (1/2pi) (a/A atan(b/A) + b/B atan(a/B)), A = sqrt(a^2 + R^2), B = sqrt(b^2 + R^2),
   on the (K+1) x (K+1) corner grid, inclusion-exclusion to the K x K cells;
4. nodes summed into their readout sections, then the ``relaxed`` or ``realistic`` fluctuations.

Realistic mode: the sampling fluctuation is log-normal with mean e and variance a^2 e (as in
diffcalo), photo-electrons are exact Poisson counts from ``Generator.poisson`` (diffcalo draws them
with its own loop-free approximation, :func:`diffcalo.simulation.readout.poisson_counts`; NumPy's
exact sampler is what a NumPy user would call), then Gaussian noise, the constant term and the
zero-suppression threshold.

All per-particle parameters come from :func:`diffcalo.simulation.region_tables` converted to NumPy
(done once in :meth:`PeerModel.from_detector`, outside any timing). Arithmetic is in float32, like
JAX's default; ``np.arctan`` is used for the arctangent (no custom approximation). Randomness comes
from a :class:`numpy.random.Generator` (``np.random.default_rng(seed)``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.special import gammainc, ndtri

from diffcalo.materials import HOMOGENEOUS_FS

__all__ = ["PeerModel", "Batch", "batch_from_particles", "lookup", "shower_shapes", "mean_cells",
           "fluctuate", "simulate", "DTYPE"]

#: Floating-point type of every array the peer computes with.
DTYPE = np.float32

_INV_2PI = DTYPE(0.15915494309189535)
_PHOTON = 22
_PHOTON_DEPTH_SHIFT_X0 = 9.0 / 7.0 - 0.6931471805599453     # diffcalo.simulation.gflash
_STATUS_OK, _STATUS_BEAM_HOLE, _STATUS_OUTSIDE = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class PeerModel:
    """Everything the peer needs about the detector, as plain NumPy arrays.

    Attributes:
        tables: :func:`diffcalo.simulation.region_tables` rows, each with a leading [n_regions] axis.
        cell_size_mm: [n_regions] cell size per region.
        region_half_mm: [n_regions, 2] half-widths (x, y) of each region's outer rectangle, innermost first.
        hole_half_mm: half-widths of the beam hole ((0, 0) if none).
        origin_mm: lower-left corner of the wall (where every region's cell grid starts).
        n_sections: readout sections L of the output clusters.
        depth_nodes: S, radial-profile evaluations (depth nodes) per shower.
        window: K, the cluster is K x K cells centred on the impact cell.
    """

    tables: dict[str, np.ndarray]
    cell_size_mm: np.ndarray
    region_half_mm: np.ndarray
    hole_half_mm: tuple[float, float]
    origin_mm: tuple[float, float]
    module_mm: float
    n_sections: int
    depth_nodes: int
    window: int

    @classmethod
    def from_detector(cls, detector, depth_nodes: int, window: int = 5) -> "PeerModel":
        """Convert a :class:`diffcalo.Detector` (setup work, not part of the benchmark timing).

        Besides the region tables it stores ``node_sec`` [n_regions, S], the readout section of every
        depth node (the index of the one-hot ``node_section`` row).
        """
        from diffcalo.simulation import region_tables

        tables = {k: np.asarray(v, dtype=DTYPE)
                  for k, v in region_tables(detector, depth_nodes, image=False).items()}
        tables["node_sec"] = tables["node_section"].argmax(axis=-1).astype(np.intp)
        lay = detector.layout
        half = 0.5 * lay.module_mm
        return cls(
            tables=tables,
            cell_size_mm=np.asarray(detector.cell_size_mm, dtype=DTYPE),
            region_half_mm=np.array([[r.modules_x * half, r.modules_y * half] for r in lay.regions],
                                    dtype=DTYPE),
            hole_half_mm=(lay.beam_hole[0] * half, lay.beam_hole[1] * half),
            origin_mm=lay.origin_mm,
            module_mm=lay.module_mm,
            n_sections=detector.n_sections,
            depth_nodes=depth_nodes,
            window=window,
        )


@dataclasses.dataclass(frozen=True)
class Batch:
    """A particle batch as NumPy arrays [n]: energy (GeV), x, y (mm), slopes tx, ty, photon flag."""

    energy: np.ndarray
    x: np.ndarray
    y: np.ndarray
    tx: np.ndarray
    ty: np.ndarray
    is_photon: np.ndarray

    @property
    def n(self) -> int:
        return int(self.energy.shape[0])


def batch_from_particles(particles) -> Batch:
    """Convert a :class:`diffcalo.Particles` batch to NumPy (setup, not timed)."""
    f = lambda a: np.asarray(a, dtype=DTYPE)  # noqa: E731
    return Batch(energy=f(particles.energy), x=f(particles.x), y=f(particles.y), tx=f(particles.tx),
                 ty=f(particles.ty), is_photon=np.asarray(particles.pid) == _PHOTON)


# ---- geometry -----------------------------------------------------------------------------------------
def lookup(model: PeerModel, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Region index (-1 beam hole, -2 outside) and status (0 ok, 1 beam hole, 2 outside) of points."""
    ax, ay = np.abs(x), np.abs(y)
    region = np.full(x.shape, -2, dtype=np.int32)
    for i in reversed(range(model.region_half_mm.shape[0])):    # outermost first, inner ones overwrite
        hx, hy = model.region_half_mm[i]
        region[(ax < hx) & (ay < hy)] = i
    hx, hy = model.hole_half_mm
    if hx > 0 and hy > 0:
        region[(ax < hx) & (ay < hy)] = -1
    status = np.where(region >= 0, _STATUS_OK, np.where(region == -1, _STATUS_BEAM_HOLE, _STATUS_OUTSIDE))
    return region, status.astype(np.int32)


# ---- longitudinal profile -------------------------------------------------------------------------------
def shower_shapes(model: PeerModel, batch: Batch, z1: np.ndarray, z2: np.ndarray) -> dict[str, np.ndarray]:
    """Per-particle region rows, guarded energy and GFlash shape (T, alpha, beta) from normals z1, z2.

    Returns a dict with ``rows`` (dict of [n, ...] table rows), ``ok`` [n], ``cell`` [n] (cell size of
    the impact region, mm), ``energy`` [n] (1 GeV for invalid particles, as in diffcalo), ``t_max``,
    ``alpha``, ``beta`` [n].
    """
    region, status = lookup(model, batch.x, batch.y)
    ok = status == _STATUS_OK
    ridx = np.clip(region, 0, model.cell_size_mm.shape[0] - 1)
    rows = {k: v[ridx] for k, v in model.tables.items()}
    energy = np.where(ok & (batch.energy > 0), batch.energy, DTYPE(1.0))

    ln_y = np.maximum(np.log(energy * DTYPE(1000.0) / rows["ec_mev"]), DTYPE(1.5))
    t_hom = ln_y - DTYPE(0.812) + np.where(batch.is_photon, DTYPE(_PHOTON_DEPTH_SHIFT_X0), DTYPE(0.0))
    alpha_hom = DTYPE(0.81) + (DTYPE(0.458) + DTYPE(2.26) / rows["z_eff"]) * ln_y
    fs = rows["sampling_frequency"]
    t_sam = np.maximum(t_hom - DTYPE(0.55) / fs - DTYPE(0.69) * (DTYPE(1.0) - rows["e_over_mip"]), DTYPE(0.5))
    alpha_sam = np.maximum(alpha_hom - DTYPE(0.476) / fs, DTYPE(1.2))
    # the technology's calibration to Geant4 (issue 14): shower-maximum shift, alpha scale
    t_sam = np.maximum(t_sam + rows["cal_t_max_shift_x0"], DTYPE(0.5))
    alpha_sam = alpha_sam * rows["cal_alpha_scale"]
    hom = fs >= HOMOGENEOUS_FS                  # homogeneous media use Grindhammer-Peters' homogeneous fluctuations
    sigma_t = DTYPE(1.0) / np.maximum(np.where(hom, DTYPE(-1.4) + DTYPE(1.26) * ln_y,
                                               DTYPE(-2.5) + DTYPE(1.25) * ln_y), DTYPE(2.0))
    sigma_a = DTYPE(1.0) / np.maximum(np.where(hom, DTYPE(-0.58) + DTYPE(0.86) * ln_y,
                                               DTYPE(-0.82) + DTYPE(0.79) * ln_y), DTYPE(2.0))
    rho = np.clip(np.where(hom, DTYPE(0.705), DTYPE(0.784)) - DTYPE(0.023) * ln_y, DTYPE(-0.99), DTYPE(0.99))

    cp = np.sqrt((DTYPE(1.0) + rho) / DTYPE(2.0))
    cm = np.sqrt((DTYPE(1.0) - rho) / DTYPE(2.0))
    t_max = np.maximum(np.exp(np.log(t_sam) + sigma_t * (cp * z1 + cm * z2)), DTYPE(1.0))
    alpha = np.maximum(np.exp(np.log(alpha_sam) + sigma_a * (cp * z1 - cm * z2)), DTYPE(1.1))
    return dict(rows=rows, ok=ok, cell=model.cell_size_mm[ridx], energy=energy, t_max=t_max, alpha=alpha,
                beta=(alpha - DTYPE(1.0)) / t_max)


def _node_depths(t_edges: np.ndarray, cdf: np.ndarray, node_sec: np.ndarray, q: np.ndarray,
                 alpha: np.ndarray, beta: np.ndarray):
    """Depth nodes of the within-section quadrature.

    Node k of section l sits where the shower's Gamma CDF reaches P_lo + (P_hi - P_lo) q_k (Wilson-
    Hilferty inverse, clamped into the section; the section's midpoint-in-q if it is empty).

    Args:
        t_edges, cdf: [n, L+1] section boundaries (X0) and the longitudinal CDF there.
        node_sec: [n, S] section of every node; q: [n, S] its Gauss-Legendre point in [0, 1].
        alpha, beta: [n] Gamma shape and rate.

    Returns:
        (p_lo, p_hi, t_lo, t_hi, t_node), each [n, S].
    """
    take = lambda v: np.take_along_axis(v, node_sec, axis=1)  # noqa: E731  [n, L] -> [n, S]
    p_lo, p_hi = take(cdf[:, :-1]), take(cdf[:, 1:])
    t_lo, t_hi = take(t_edges[:, :-1]), take(t_edges[:, 1:])
    a, b = alpha[:, None], beta[:, None]
    z = ndtri(np.clip(p_lo + (p_hi - p_lo) * q, DTYPE(1e-6), DTYPE(1.0 - 1e-6)))
    base = np.maximum(DTYPE(1.0) - DTYPE(1.0) / (DTYPE(9.0) * a) + z / (DTYPE(3.0) * np.sqrt(a)), DTYPE(0.0))
    t_node = a / b * base * base * base
    dt = t_hi - t_lo
    empty = (p_hi - p_lo < DTYPE(1e-6)) | (dt <= 0)
    t_node = np.where(empty, t_lo + q * dt, np.clip(t_node, t_lo, t_hi))
    return p_lo, p_hi, t_lo, t_hi, t_node


def _radial_parameters(energy: np.ndarray, tau: np.ndarray, rows: dict[str, np.ndarray]):
    """GFlash core/tail radii (Moliere radii) and core fraction at relative depths ``tau`` [n, S]."""
    z_eff = rows["z_eff"][:, None]
    fs = rows["sampling_frequency"][:, None]
    one_minus_e = DTYPE(1.0) - rows["e_over_mip"][:, None]
    ln_e = np.log(energy)[:, None]
    r_core = (DTYPE(0.0251) + DTYPE(0.00319) * ln_e) + (DTYPE(0.1162) - DTYPE(0.000381) * z_eff) * tau
    k1 = DTYPE(0.659) - DTYPE(0.00309) * z_eff
    k2, k3 = DTYPE(0.645), DTYPE(-2.59)
    k4 = DTYPE(0.3585) + DTYPE(0.0412) * ln_e
    r_tail = k1 * (np.exp(k3 * (tau - k2)) + np.exp(k4 * (tau - k2)))
    p1 = DTYPE(2.632) - DTYPE(0.00094) * z_eff
    p2 = DTYPE(0.401) + DTYPE(0.00187) * z_eff
    p3 = DTYPE(1.313) - DTYPE(0.0686) * ln_e
    arg = (p2 - tau) / p3
    p = p1 * np.exp(arg - np.exp(arg))
    e_tau = np.exp(-tau)
    r_core = r_core - DTYPE(0.0203) * one_minus_e + DTYPE(0.0397) * e_tau / fs
    r_tail = r_tail - DTYPE(0.14) * one_minus_e - DTYPE(0.495) * e_tau / fs
    p = p + one_minus_e * (DTYPE(0.348) - DTYPE(0.642) * np.exp(-((tau - DTYPE(1.0)) ** 2)) / fs)
    r_core = np.maximum(r_core, DTYPE(0.005))
    r_tail = np.maximum(r_tail, r_core)
    p = np.clip(p, DTYPE(0.0), DTYPE(1.0))
    # the technology's calibration to Geant4 (issue 14): radial scales
    core = rows["cal_core_scale"][:, None] * np.maximum(
        DTYPE(1.0) + rows["cal_core_scale_log_e"][:, None] * (ln_e - DTYPE(np.log(10.0))), DTYPE(0.2))
    r_core = r_core * core
    r_tail = np.maximum(r_tail * rows["cal_tail_scale"][:, None], r_core)
    return r_core, r_tail, np.clip(p * rows["cal_core_fraction_scale"][:, None], DTYPE(0.0), DTYPE(1.0))


def _grid_integral(xe: np.ndarray, ye: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Fraction of one radial component in each cell: edges [..., K+1], radius [...] -> [..., K, K] (y, x)."""
    r2 = (radius * radius)[..., None]
    inv_a = DTYPE(1.0) / np.sqrt(xe * xe + r2)                    # [..., K+1], depends on the x edge only
    inv_b = DTYPE(1.0) / np.sqrt(ye * ye + r2)                    # [..., K+1], depends on the y edge only
    a_ia, b_ib = (xe * inv_a)[..., None, :], (ye * inv_b)[..., :, None]
    corners = a_ia * np.arctan(ye[..., :, None] * inv_a[..., None, :])
    corners += b_ib * np.arctan(xe[..., None, :] * inv_b[..., :, None])   # [..., K+1 (y), K+1 (x)]
    corners *= _INV_2PI
    return np.diff(np.diff(corners, axis=-1), axis=-2)           # inclusion-exclusion over the corners


def mean_cells(model: PeerModel, batch: Batch, z1: np.ndarray, z2: np.ndarray):
    """Fluctuation-free cell energies [n, L, K, K] (GeV) for given shape normals z1, z2 [n].

    Clusters of particles off the wall (beam hole, outside) are zero. Also returns the per-particle
    dict of :func:`shower_shapes` extended with ``leakage`` [n].
    """
    sh = shower_shapes(model, batch, z1, z2)
    rows, energy, t_max = sh["rows"], sh["energy"], sh["t_max"]
    k, n_sec = model.window, model.n_sections

    # Longitudinal: exact fractions per readout section, Gauss-Legendre depth nodes inside each.
    t_edges, z_edges = rows["t_edges"], rows["z_edges"]                             # [n, L+1]
    cdf = gammainc(sh["alpha"][:, None], sh["beta"][:, None] * np.maximum(t_edges, DTYPE(0.0)))
    leakage = DTYPE(1.0) - cdf[:, -1]
    node_sec, q = rows["node_sec"], rows["node_q"]                                  # [n, S]
    p_lo, p_hi, t_lo, t_hi, t_node = _node_depths(t_edges, cdf, node_sec, q, sh["alpha"], sh["beta"])
    frac = (p_hi - p_lo) * rows["node_w"]                                           # [n, S]
    dt = t_hi - t_lo
    w = np.where(dt > 0, (t_node - t_lo) / np.where(dt > 0, dt, DTYPE(1.0)), DTYPE(0.5))
    z_lo = np.take_along_axis(z_edges[:, :-1], node_sec, axis=1)
    z_hi = np.take_along_axis(z_edges[:, 1:], node_sec, axis=1)
    z_node = z_lo + w * (z_hi - z_lo)                                               # [n, S] mm
    r_core, r_tail, p_core = _radial_parameters(energy, t_node / t_max[:, None], rows)

    # Window frame: cell edges relative to the impact-cell centre, then to the (slope-shifted) axis.
    cell = sh["cell"]
    x0, y0 = model.origin_mm
    m = DTYPE(model.module_mm)

    def centre(v, v0):  # cells restart at each module's corner (as diffcalo.layout.Layout.cell_of)
        corner = v0 + np.floor((v - v0) / m) * m
        return corner + (np.floor((v - corner) / cell) + DTYPE(0.5)) * cell

    cx, cy = centre(batch.x, x0), centre(batch.y, y0)
    edges = (np.arange(k + 1, dtype=DTYPE) - DTYPE(0.5 * k))[None, :] * cell[:, None]   # [n, K+1]
    axis_x = (batch.x - cx)[:, None] + batch.tx[:, None] * z_node                  # [n, S]
    axis_y = (batch.y - cy)[:, None] + batch.ty[:, None] * z_node
    xe = edges[:, None, :] - axis_x[:, :, None]                                    # [n, S, K+1]
    ye = edges[:, None, :] - axis_y[:, :, None]

    rm = rows["moliere_radius_mm"][:, None]
    e_node = energy[:, None] * frac                                                 # [n, S]
    nodes = np.zeros(xe.shape[:2] + (k, k), dtype=DTYPE)                            # [n, S, K, K]
    for radius, weight in ((r_core, e_node * p_core), (r_tail, e_node * (DTYPE(1.0) - p_core))):
        nodes += weight[:, :, None, None] * _grid_integral(xe, ye, radius * rm)
    cells = np.empty((batch.n, n_sec, k, k), dtype=DTYPE)                           # nodes -> sections
    for sec in range(n_sec):
        cells[:, sec] = ((node_sec == sec)[:, :, None, None] * nodes).sum(axis=1)
    cells *= (rows["section_mask"] * sh["ok"][:, None])[:, :, None, None]
    sh["leakage"] = np.where(sh["ok"], leakage, DTYPE(0.0))
    return cells, sh


# ---- fluctuations -----------------------------------------------------------------------------------------
def fluctuate(mean: np.ndarray, rows: dict[str, np.ndarray], rng: np.random.Generator, mode: str) -> np.ndarray:
    """Readout fluctuations of ``mean`` [n, L, K, K] (see :mod:`diffcalo.simulation.readout`)."""
    col = lambda name: rows[name][:, None, None, None]  # noqa: E731
    a2 = col("sampling_term") ** 2
    noise = col("noise_gev")
    const = np.sqrt(rows["constant_term"] ** 2 + rows["cal_constant_term"] ** 2)
    scale = (DTYPE(1.0) + const * rng.standard_normal(mean.shape[0], dtype=DTYPE))
    scale = scale[:, None, None, None]
    e = np.maximum(mean, DTYPE(0.0))
    if mode == "relaxed":
        var = (a2 + col("inv_light_yield")) * e + noise * noise
        sd = np.sqrt(np.maximum(var, DTYPE(0.0)))
        return (mean + sd * rng.standard_normal(mean.shape, dtype=DTYPE)) * scale
    if mode != "realistic":
        raise ValueError(f"mode = {mode!r}: allowed 'relaxed' or 'realistic'")
    sigma2 = np.log1p(a2 / np.where(e > 0, e, DTYPE(1.0)))                          # log-normal: mean e, var a^2 e
    e = e * np.exp(np.sqrt(sigma2) * rng.standard_normal(mean.shape, dtype=DTYPE) - DTYPE(0.5) * sigma2)
    ly = col("light_yield")
    has_ly = ly > 0
    n_pe = rng.poisson(np.where(has_ly, e * ly, DTYPE(0.0))).astype(DTYPE)          # photo-electrons
    e = np.where(has_ly, n_pe / np.where(has_ly, ly, DTYPE(1.0)), e)
    e = (e + noise * rng.standard_normal(mean.shape, dtype=DTYPE)) * scale
    return np.where(e > np.maximum(col("threshold_gev"), DTYPE(0.0)), e, DTYPE(0.0))


def simulate(model: PeerModel, batch: Batch, rng: np.random.Generator, mode: str = "relaxed") -> np.ndarray:
    """Cluster energies [n, L, K, K] (GeV, EM scale), like ``diffcalo.simulate(...).energy`` in window mode."""
    z = rng.standard_normal((2, batch.n), dtype=DTYPE)
    mean, sh = mean_cells(model, batch, z[0], z[1])
    cells = fluctuate(mean, sh["rows"], rng, mode)
    cells *= (sh["rows"]["section_mask"] * sh["ok"][:, None])[:, :, None, None]
    return cells
