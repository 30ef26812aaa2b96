"""Pile-up background on the ECAL face: a flux model per particle class.

For each class (photons, electrons, charged hadrons, neutral hadrons) the model gives the hit
density per cm^2 and per collision on the ECAL face (a table in |x| and |y|, log-bilinear between
cell centres: the dipole kick spreads charged particles in x), a transverse-energy spectrum at the hit (quantiles of log10 E_T in fine radial
bins; E_T = E sin(theta_hit), tan(theta_hit) = r / z) and the spread of arrival delays behind a photon
from the origin. A hit at radius r gets E = E_T / sin(theta_hit), so energy follows position: near
the beam E ~ pT z / r (a 1 GeV pT particle carries ~50 GeV at r = 250 mm, ~13 GeV at 1 m). The model
is fitted to hits at r >= ``r_min_mm`` (200 mm) only and is valid there: closer hits go down the beam
hole of every ECAL layout, and the overlay and :func:`occupancy` leave the layout's beam hole out.
Scaled by the number of collisions per crossing (default 40, LHCb Upgrade II). Timing: background
particles come from other collisions of the crossing, whose arrival times at the ECAL spread by the
bunch length over c (:attr:`PileupModel.arrival_time_sigma_ns`, 250 ps for 7.5 cm bunches), plus the
class's delay (slow hadrons); deposits later than the readout integration window
(``integration_window_ns``, 25 ns after a photon from the interaction point) are not read out. Spill-over
from earlier crossings is not modelled. The shipped default
(``data/pileup_pythia8_14tev.json``) was fitted to Pythia 8 minimum-bias events at 14 TeV by
:mod:`diffcalo.pileup_fit`, which documents the approximations (straight lines, a 1.2 GeV dipole kick,
kinetic energy for baryons) and checks the model against direct sums of generated hits
(``diffcalo pileup --check``); it loads without Pythia installed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from diffcalo.simulation.readout import SPEED_OF_LIGHT_MM_PER_NS

__all__ = ["PileupClass", "PileupModel", "DEFAULT_MODEL_FILE", "MODEL_FORMAT", "occupancy", "window_pieces",
           "BUNCH_LENGTH_MM", "luminous_region"]

DEFAULT_MODEL_FILE = pathlib.Path(__file__).parent / "data" / "pileup_pythia8_14tev.json"
#: The model file format this version reads (written by :mod:`diffcalo.pileup_fit`).
MODEL_FORMAT = 2
#: rms bunch length of the LHC (mm); the luminous region follows from it (:func:`luminous_region`).
BUNCH_LENGTH_MM = 75.0
_GAUSS = np.polynomial.legendre.leggauss(4)


@dataclasses.dataclass(frozen=True)
class PileupClass:
    """One particle class of the flux model (see module docstring)."""

    name: str
    log_density_per_cm2: tuple[tuple[float, ...], ...]   # [|y| cell][|x| cell], per collision
    hits_per_collision: float
    log10_et_quantiles: tuple[tuple[float, ...], ...]   # [radial bin][quantile], E_T at the hit in GeV
    delay_ns_quantiles: tuple[float, ...]


def _centres(edges):
    e = np.asarray(edges, dtype=float)
    return 0.5 * (e[1:] + e[:-1])


def _interp_axis(nodes, v):
    """Lower node index and weight of linear interpolation at ``v`` (clamped at the ends), jnp."""
    nodes = jnp.asarray(nodes)
    i = jnp.clip(jnp.searchsorted(nodes, v, side="right") - 1, 0, nodes.shape[0] - 2)
    w = jnp.clip((v - nodes[i]) / (nodes[i + 1] - nodes[i]), 0.0, 1.0)
    return i, w


def luminous_region(key, n: int, bunch_length_mm: float = BUNCH_LENGTH_MM):
    """``n`` collision vertices of head-on bunches of rms length ``bunch_length_mm``: protons at s1 (beam 1,
    moving to +z) and s2 ~ N(0, sigma_s) meet at z_v = (s1 + s2) / 2 at t_v = (s2 - s1) / 2c. Returns
    (z_v in mm, arrival offset in ns): a forward particle from the vertex reaches a plane at Z at
    t_v + (Z - z_v) / c = Z / c - s1 / c, so its arrival offset (relative to one from the origin at t = 0) is
    -s1 / c (rms sigma_s / c, 250 ps for the LHC; the same spread as :meth:`PileupModel.arrival_offsets`),
    and z_v spreads by sigma_s / sqrt(2) (53 mm)."""
    s = bunch_length_mm * np.asarray(jax.random.normal(key, (2, n)), dtype=float)
    return 0.5 * (s[0] + s[1]), -s[0] / SPEED_OF_LIGHT_MM_PER_NS


def window_pieces(x, y, width, hole_half_mm=(0.0, 0.0)):
    """The square window of side ``width`` centred at (x, y) minus the beam hole |x| < hx, |y| < hy, as
    four rectangles (x_lo, x_hi, y_lo, y_hi), each [4, ...], some of zero area (jnp, traceable): the
    parts left and right of the hole's x range, and below and above it within that range. Without a
    hole (0, 0) the pieces split the window at x = 0."""
    hx, hy = hole_half_mm
    half = 0.5 * jnp.asarray(width)
    xl, xh, yl, yh = x - half, x + half, y - half, y + half
    zero = jnp.zeros_like(xl + yl)
    left = (xl, jnp.maximum(jnp.minimum(xh, -hx), xl), yl, yh)
    right = (jnp.minimum(jnp.maximum(xl, hx), xh), xh, yl, yh)
    mx_lo, mx_hi = jnp.minimum(jnp.maximum(xl, -hx), xh), jnp.maximum(jnp.minimum(xh, hx), xl)
    mx_hi = jnp.maximum(mx_hi, mx_lo)
    below = (mx_lo, mx_hi, yl, jnp.maximum(jnp.minimum(yh, -hy), yl))
    above = (mx_lo, mx_hi, jnp.minimum(jnp.maximum(yl, hy), yh), yh)
    return tuple(jnp.stack([p[i] + zero for p in (left, right, below, above)]) for i in range(4))


@dataclasses.dataclass(frozen=True)
class PileupModel:
    """The background flux: classes, radial bins of the spectra, collisions per crossing."""

    classes: tuple[PileupClass, ...]
    r_edges_mm: tuple[float, ...]
    quantiles: tuple[float, ...]
    density_x_edges_mm: tuple[float, ...]
    density_y_edges_mm: tuple[float, ...]
    z_mm: float = 12620.0
    r_min_mm: float = 200.0
    collisions_per_crossing: float = 40.0
    bunch_length_mm: float = BUNCH_LENGTH_MM
    integration_window_ns: float = 25.0
    source: str = ""

    @classmethod
    def from_json(cls, path, *, collisions_per_crossing: float = 40.0) -> "PileupModel":
        """Load a model file written by :mod:`diffcalo.pileup_fit`; errors name the missing key."""
        path = pathlib.Path(path)
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read the pile-up model: {exc}") from None
        if not isinstance(raw, dict) or raw.get("format", 1) != MODEL_FORMAT:
            found = raw.get("format", 1) if isinstance(raw, dict) else type(raw).__name__
            raise ValueError(f"{path}: pile-up model format {found!r}; this version reads format {MODEL_FORMAT} "
                             "(E_T spectra in fine radial bins); refit with python -m diffcalo.pileup_fit")
        try:
            classes = tuple(
                PileupClass(name=name, log_density_per_cm2=tuple(tuple(row) for row in c["log_density_per_cm2"]),
                            hits_per_collision=c["hits_per_collision"],
                            log10_et_quantiles=tuple(tuple(q) for q in c["log10_et_gev_quantiles"]),
                            delay_ns_quantiles=tuple(c["delay_ns_quantiles"]))
                for name, c in raw["classes"].items())
            model = cls(classes=classes, r_edges_mm=tuple(raw["r_edges_mm"]), quantiles=tuple(raw["quantiles"]),
                        density_x_edges_mm=tuple(raw["density_x_edges_mm"]),
                        density_y_edges_mm=tuple(raw["density_y_edges_mm"]),
                        z_mm=float(raw["z_mm"]), r_min_mm=float(raw["r_min_mm"]),
                        source=raw.get("source", ""))
        except KeyError as exc:
            raise ValueError(f"{path}: pile-up model lacks the key {exc.args[0]!r}") from None
        shape = (len(model.density_y_edges_mm) - 1, len(model.density_x_edges_mm) - 1)
        for c in model.classes:
            if np.shape(c.log_density_per_cm2) != shape:
                raise ValueError(f"{path}: class {c.name!r}: log_density_per_cm2 must be [{shape[0]} |y| cells]"
                                 f"[{shape[1]} |x| cells]")
            if len(c.log10_et_quantiles) != len(model.r_edges_mm) - 1 or any(
                    len(q) != len(model.quantiles) for q in c.log10_et_quantiles):
                raise ValueError(f"{path}: class {c.name!r}: log10_et_gev_quantiles must be "
                                 f"[{len(model.r_edges_mm) - 1} radial bins][{len(model.quantiles)} quantiles]")
        return model.with_collisions(collisions_per_crossing)

    @classmethod
    def default(cls, *, collisions_per_crossing: float = 40.0) -> "PileupModel":
        """The shipped Pythia 8 (14 TeV minimum bias) model."""
        return cls.from_json(DEFAULT_MODEL_FILE, collisions_per_crossing=collisions_per_crossing)

    def with_collisions(self, n: float) -> "PileupModel":
        if not (isinstance(n, (int, float)) and math.isfinite(n) and n >= 0):
            raise ValueError(f"collisions_per_crossing = {n!r}: must be a number >= 0")
        return dataclasses.replace(self, collisions_per_crossing=float(n))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    @property
    def arrival_time_sigma_ns(self) -> float:
        """Spread of the arrival times of forward particles from different collisions of a crossing (ns).

        With head-on bunches of rms length sigma_s, protons at s1 (beam 1, moving to +z) and s2 (beam 2)
        meet at z_v = (s1 + s2) / 2, t_v = (s2 - s1) / 2c; a forward particle reaches the ECAL at
        t_v + (Z - z_v) / c = Z / c - s1 / c: spread sigma_s / c (250 ps for the LHC's 7.5 cm), not the
        collision-time spread sigma_s / (sqrt(2) c) (~180 ps)."""
        return self.bunch_length_mm / SPEED_OF_LIGHT_MM_PER_NS

    def arrival_offsets(self, key, shape):
        """Arrival-time offsets (ns) of forward particles from collisions drawn in the luminous region
        (:attr:`arrival_time_sigma_ns`): -s1 / c with s1 ~ N(0, sigma_s)."""
        return self.arrival_time_sigma_ns * jax.random.normal(key, shape)

    def with_timing(self, *, bunch_length_mm: float | None = None, integration_window_ns: float | None = None):
        """A copy with another bunch length (mm) or readout integration window (ns)."""
        new = self
        if bunch_length_mm is not None:
            if not (isinstance(bunch_length_mm, (int, float)) and math.isfinite(bunch_length_mm) and bunch_length_mm >= 0):
                raise ValueError(f"bunch_length_mm = {bunch_length_mm!r}: must be a number >= 0 (mm)")
            new = dataclasses.replace(new, bunch_length_mm=float(bunch_length_mm))
        if integration_window_ns is not None:
            if not (isinstance(integration_window_ns, (int, float)) and integration_window_ns > 0):
                raise ValueError(f"integration_window_ns = {integration_window_ns!r}: must be a number > 0 (ns)")
            new = dataclasses.replace(new, integration_window_ns=float(integration_window_ns))
        return new

    def density(self, x_mm, y_mm):
        """Hits per cm^2 per crossing, per class: [n_classes, ...]; log density interpolated bilinearly
        in (|x|, |y|) between the table's cell centres (constant beyond the outermost ones)."""
        ix, wx = _interp_axis(_centres(self.density_x_edges_mm), jnp.abs(x_mm))
        iy, wy = _interp_axis(_centres(self.density_y_edges_mm), jnp.abs(y_mm))
        table = jnp.asarray([c.log_density_per_cm2 for c in self.classes])      # [C, ny, nx]
        t = lambda a, b: table[:, a, b]
        log_rho = ((1 - wy) * ((1 - wx) * t(iy, ix) + wx * t(iy, ix + 1))
                   + wy * ((1 - wx) * t(iy + 1, ix) + wx * t(iy + 1, ix + 1)))
        return self.collisions_per_crossing * jnp.exp(log_rho)

    def sin_theta(self, r_mm):
        """sin(theta) of a point at radius ``r_mm`` on the model's plane (z = ``z_mm``) seen from the origin."""
        return r_mm / jnp.sqrt(r_mm ** 2 + self.z_mm ** 2)

    def _bin(self, r):
        edges = jnp.asarray(self.r_edges_mm)
        return jnp.clip(jnp.searchsorted(edges, r, side="right") - 1, 0, len(self.r_edges_mm) - 2)

    def mean_energy(self, x_mm, y_mm):
        """Mean energy (GeV) of a background hit per class at (x, y): [C, ...] (E = E_T / sin theta)."""
        r = jnp.hypot(x_mm, y_mm)
        return self.mean_et_per_bin()[:, self._bin(r)] / jnp.maximum(self.sin_theta(r), 1e-6)

    def mean_et_per_bin(self):
        """Mean E_T (GeV) per class and radial bin [C, bins] of the distribution :meth:`sample_energy`
        draws from (log-linear between quantiles): each segment contributes
        dq (10^b - 10^a) / ((b - a) ln 10)."""
        q = jnp.asarray([c.log10_et_quantiles for c in self.classes])          # [C, bins, Q]
        a, b = q[..., :-1], q[..., 1:]
        d = b - a
        seg = jnp.where(d > 1e-9, (10.0 ** b - 10.0 ** a) / jnp.where(d > 1e-9, d, 1.0) / jnp.log(10.0), 10.0 ** a)
        return jnp.sum(seg * jnp.diff(jnp.asarray(self.quantiles)), axis=-1)

    def _integrate(self, f, x, y, width, hole_half_mm):
        """Integral of f(x, y) -> [C, ...] (per cm^2) over the window minus the hole: [C, ...]."""
        g, w = _GAUSS
        xl, xh, yl, yh = window_pieces(x, y, width, hole_half_mm)
        total = 0.0
        for gi, wi in zip(g, w):
            for gj, wj in zip(g, w):
                px = 0.5 * (xl + xh) + 0.5 * gi * (xh - xl)
                py = 0.5 * (yl + yh) + 0.5 * gj * (yh - yl)
                area = (xh - xl) * (yh - yl) / 100.0                       # cm^2
                total = total + jnp.sum(0.25 * wi * wj * area * f(px, py), axis=1)
        return total

    def expected_counts(self, x_mm, y_mm, width_mm, hole_half_mm=(0.0, 0.0)):
        """Mean number of background hits per class in squares of side ``width_mm`` centred at (x, y),
        the beam hole |x| < hx, |y| < hy left out. Returns [C, ...] (4 x 4 Gauss-Legendre points on each
        of :func:`window_pieces`)."""
        return self._integrate(self.density, x_mm, y_mm, width_mm, hole_half_mm)

    def expected_energy(self, x_mm, y_mm, width_mm, hole_half_mm=(0.0, 0.0), *, transverse: bool = False):
        """Mean summed energy (GeV) of the background hits per class in the windows (as
        :meth:`expected_counts`); ``transverse``: E_T instead of E. Returns [C, ...]."""
        def f(px, py):
            e = self.mean_energy(px, py)
            if transverse:
                e = e * self.sin_theta(jnp.hypot(px, py))
            return self.density(px, py) * e
        return self._integrate(f, x_mm, y_mm, width_mm, hole_half_mm)

    def envelope_density(self, x_mm, y_mm, width_mm, hole_half_mm=(0.0, 0.0)):
        """The largest density per class over the window minus the hole [C, ...], the envelope of the
        overlay's thinning: the tables fall along |x| and |y|, so on each of :func:`window_pieces` the
        maximum sits at its smallest |x| and |y|."""
        xl, xh, yl, yh = window_pieces(x_mm, y_mm, width_mm, hole_half_mm)
        nx = jnp.clip(0.0, xl, xh)
        ny = jnp.clip(0.0, yl, yh)
        area = (xh - xl) * (yh - yl)
        rho = jnp.where(area[None] > 0, self.density(nx, ny), 0.0)              # [C, 4, ...]
        return jnp.max(rho, axis=1)

    def sample_energy(self, key, class_index, x_mm, y_mm):
        """Energies (GeV) at (x, y): E_T by inverse-CDF interpolation of the class's quantiles in the
        hit's radial bin, divided by sin(theta_hit) (jnp)."""
        r = jnp.hypot(x_mm, y_mm)
        table = jnp.asarray([c.log10_et_quantiles for c in self.classes])        # [C, bins, Q]
        rows = table[class_index, self._bin(r)]                                  # [..., Q]
        u = jax.random.uniform(key, jnp.shape(r))
        qs = jnp.asarray(self.quantiles)
        idx = jnp.clip(jnp.searchsorted(qs, u, side="right") - 1, 0, len(self.quantiles) - 2)
        lo = jnp.take_along_axis(rows, idx[..., None], axis=-1)[..., 0]
        hi = jnp.take_along_axis(rows, idx[..., None] + 1, axis=-1)[..., 0]
        f = (u - qs[idx]) / (qs[idx + 1] - qs[idx])
        return 10.0 ** (lo + f * (hi - lo)) / jnp.maximum(self.sin_theta(r), 1e-6)


def window_centres(key, layout, region: int, samples: int, window: int):
    """Centres (x, y) [samples] of K x K windows around cells of ``region`` drawn uniformly (the impact
    cells of uniformly distributed particles) and their side (mm)."""
    from diffcalo.particles import sample_positions

    cell = layout.regions[region].cell_size_mm
    x, y = sample_positions(key, samples, layout, region=region)
    _, _, cx, cy = layout.cell_of(x, y, jnp.full_like(x, cell))
    return np.asarray(cx), np.asarray(cy), window * cell


def occupancy(model: PileupModel, layout, *, window: int = 5, samples: int = 4000, seed: int = 0,
              return_windows: bool = False) -> list[dict]:
    """Mean background hits, incident energy and E_T per K x K window, per region, averaged over the
    windows around uniformly drawn impact cells of the region (beam hole left out).

    Returns one dict per region: region, cell_size_mm, window_mm, hits (total) and hits_per_class,
    energy_gev and et_gev (mean summed incident energy and transverse energy per window), and with
    ``return_windows`` the window centres [samples, 2] under ``windows``.
    """
    rows = []
    key = jax.random.key(seed)
    hole = layout.beam_hole_half_mm
    for i, region in enumerate(layout.regions):
        key, k = jax.random.split(key)
        cx, cy, width = window_centres(k, layout, i, samples, window)
        counts = np.asarray(model.expected_counts(cx, cy, width, hole))            # [C, samples]
        energy = np.asarray(model.expected_energy(cx, cy, width, hole)).sum(axis=0)
        et = np.asarray(model.expected_energy(cx, cy, width, hole, transverse=True)).sum(axis=0)
        row = dict(region=region.name, cell_size_mm=region.cell_size_mm, window_mm=width,
                   hits=float(counts.sum(axis=0).mean()),
                   hits_per_class={c: float(v) for c, v in zip(model.names, counts.mean(axis=1))},
                   energy_gev=float(energy.mean()), et_gev=float(et.mean()))
        if return_windows:
            row["windows"] = np.stack([cx, cy], axis=1)
        rows.append(row)
    return rows
