r"""Per-cell time windows around the signal vertex's expected arrival (pile-up suppression by timing).

A cell whose measured time is far from when a photon from the signal vertex would reach it is dropped
before any cluster sum (its energy and time set to 0). The expected time of cell (i, j) of a window is

.. math::
    t_{\rm exp} = t_0 + \frac{\sqrt{x_{ij}^2 + y_{ij}^2 + Z^2}}{c} + \delta_{r,s},

with :math:`t_0` the signal vertex's arrival offset (known from the tracker; in simulation the
cluster's ``t_true`` minus the flight to its impact point), :math:`(x_{ij}, y_{ij})` the cell centre
on the wall at distance Z from the interaction point, and :math:`\delta_{r,s}` the mean delay of a
shower deposit behind the front face in region r and section s (travel to the deposit depth, fitted
on training clusters: the median of the seed cells' residuals). A cell is kept when
:math:`|t - t_{\rm exp}| < k\,\sigma_t(E)`, with :math:`\sigma_t(E) = A/\sqrt{E} \oplus B` the
technology's time resolution at the cell's energy and k (``n_sigma``) the window's half-width in
resolutions: a design parameter (narrower windows drop more out-of-time pile-up and more of the signal's
own tails). ``width_ns`` instead fixes one half-width for every cell.

Pile-up from other collisions of the crossing arrives spread by the bunch length over c (~250 ps,
:attr:`diffcalo.pileup.PileupModel.arrival_time_sigma_ns`): a window of tens of ps (SpaCal timing)
removes most of it, one of hundreds of ps (Shashlik) little.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from diffcalo.simulation.readout import SPEED_OF_LIGHT_MM_PER_NS, time_resolution_ns

__all__ = ["TimeWindow", "cell_centres", "expected_times"]


def cell_centres(clusters):
    """Centres (x, y) of every window cell on the wall: two arrays [n, K, K] (mm)."""
    e = np.asarray(clusters.energy)
    k_y, k_x = e.shape[-2:]
    cell = np.asarray(clusters.cell_size_mm, dtype=float)[:, None, None]
    centre = np.asarray(clusters.centre, dtype=float)
    jx = (np.arange(k_x) - 0.5 * (k_x - 1))[None, None, :]
    jy = (np.arange(k_y) - 0.5 * (k_y - 1))[None, :, None]
    return centre[:, 0, None, None] + jx * cell, centre[:, 1, None, None] + jy * cell


def expected_times(clusters, z_mm: float, offsets=None, reference_ns=None):
    """Expected arrival (ns) of a photon from the signal vertex at every cell [n, L, K, K] (module
    docstring), with ``offsets`` [R, L] the per-region, per-section deposit delays (0 if None) and
    ``reference_ns`` [n] the signal vertex's arrival offset t_0 per cluster (default: the cluster's own
    particle's, ``t_true`` minus its flight; give it for particles from another vertex, e.g. pile-up
    photons combined with a signal candidate)."""
    x, y = cell_centres(clusters)
    flight_cell = np.sqrt(x ** 2 + y ** 2 + z_mm ** 2) / SPEED_OF_LIGHT_MM_PER_NS              # [n, K, K]
    px, py = np.asarray(clusters.x, dtype=float), np.asarray(clusters.y, dtype=float)
    flight_impact = np.sqrt(px ** 2 + py ** 2 + z_mm ** 2) / SPEED_OF_LIGHT_MM_PER_NS
    if reference_ns is None:
        t0 = np.asarray(clusters.t_true, dtype=float) - flight_impact                          # vertex offset
    else:
        t0 = np.broadcast_to(np.asarray(reference_ns, dtype=float), flight_impact.shape)
    t = t0[:, None, None, None] + flight_cell[:, None]
    if offsets is not None:
        region = np.clip(np.asarray(clusters.region), 0, None)
        t = t + np.asarray(offsets)[region][:, :, None, None]
    return np.broadcast_to(t, np.asarray(clusters.energy).shape)


@dataclasses.dataclass(frozen=True)
class TimeWindow:
    """A fitted per-cell time window (module docstring).

    Attributes:
        z_mm: distance of the wall from the interaction point.
        offsets: [R, L] deposit delays per region and section (ns).
        resolution: [R, 2] the technologies' (A, B) of sigma_t = A / sqrt(E) (+) B (ns).
        n_sigma: half-width in resolutions; ``width_ns`` (if set) a fixed half-width instead.
    """

    z_mm: float
    offsets: np.ndarray
    resolution: np.ndarray
    n_sigma: float = 3.0
    width_ns: float | None = None

    @classmethod
    def fit(cls, clusters, detector, *, n_sigma: float = 3.0, width_ns: float | None = None,
            min_energy_gev: float = 0.5) -> "TimeWindow":
        """Deposit delays from training ``clusters`` of ``detector``: per region and section, the median
        of (seed-cell time - expected face arrival) over clusters whose seed cell (the most energetic of
        the central 3 x 3 in that section) holds at least ``min_energy_gev``."""
        if not (isinstance(n_sigma, (int, float)) and n_sigma > 0):
            raise ValueError(f"n_sigma = {n_sigma!r}: must be a number > 0 (half-width in time resolutions)")
        if width_ns is not None and not (isinstance(width_ns, (int, float)) and width_ns > 0):
            raise ValueError(f"width_ns = {width_ns!r}: must be a number > 0 (ns) or None")
        z = float(detector.layout.z_mm)
        e = np.asarray(clusters.energy, dtype=float)
        t = np.asarray(clusters.time, dtype=float)
        n, n_sec, k, _ = e.shape
        lo, hi = k // 2 - 1, k // 2 + 2
        core_e = e[:, :, lo:hi, lo:hi].reshape(n, n_sec, -1)
        core_t = t[:, :, lo:hi, lo:hi].reshape(n, n_sec, -1)
        seed = np.argmax(core_e, axis=-1)
        seed_e = np.take_along_axis(core_e, seed[..., None], -1)[..., 0]
        seed_t = np.take_along_axis(core_t, seed[..., None], -1)[..., 0]
        face = expected_times(clusters, z)[:, :, lo:hi, lo:hi].reshape(n, n_sec, -1)
        seed_face = np.take_along_axis(face, seed[..., None], -1)[..., 0]
        region = np.asarray(clusters.region)
        n_regions = detector.n_regions
        offsets = np.zeros((n_regions, n_sec))
        for r in range(n_regions):
            for s in range(n_sec):
                sel = (region == r) & (seed_e[:, s] >= min_energy_gev)
                if sel.sum() >= 10:
                    offsets[r, s] = float(np.median(seed_t[sel, s] - seed_face[sel, s]))
        res = np.asarray([[tech.time_stochastic_ns, tech.time_constant_ns] for tech in detector.technologies],
                         dtype=float)
        return cls(z_mm=z, offsets=offsets, resolution=res, n_sigma=float(n_sigma),
                   width_ns=None if width_ns is None else float(width_ns))

    def half_width(self, clusters):
        """The window's half-width at every cell [n, L, K, K] (ns)."""
        e = np.asarray(clusters.energy, dtype=float)
        if self.width_ns is not None:
            return np.full(e.shape, self.width_ns)
        region = np.clip(np.asarray(clusters.region), 0, None)
        a = self.resolution[region, 0][:, None, None, None]
        b = self.resolution[region, 1][:, None, None, None]
        return self.n_sigma * np.asarray(time_resolution_ns(e, a, b))

    def keep(self, clusters, reference_ns=None):
        """Boolean [n, L, K, K]: cells inside the window (empty cells count as kept); ``reference_ns`` as
        in :func:`expected_times`."""
        e = np.asarray(clusters.energy, dtype=float)
        dt = np.asarray(clusters.time, dtype=float) - expected_times(clusters, self.z_mm, self.offsets, reference_ns)
        return (e <= 0) | (np.abs(dt) < self.half_width(clusters))

    def apply(self, clusters, reference_ns=None):
        """``clusters`` with the cells outside the window zeroed (energy and time), and the fraction of
        non-empty cells dropped; ``reference_ns`` as in :func:`expected_times`."""
        keep = self.keep(clusters, reference_ns)
        e = np.asarray(clusters.energy)
        occupied = e > 0
        dropped = float((~keep & occupied).sum() / max(occupied.sum(), 1))
        out = dataclasses.replace(clusters, energy=np.where(keep, e, 0).astype(e.dtype),
                                  time=np.where(keep, np.asarray(clusters.time), 0).astype(np.asarray(clusters.time).dtype))
        return out, dropped
