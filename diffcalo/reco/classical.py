r"""Classical reconstruction: the baselines the networks must beat, fitted per region on a calibration sample.

- Energy: the cluster sum S (all cells, all sections) calibrated linearly, E = p0 + p1 S.
- Position: the log-weighted centroid (weights max(0, w0 + ln(E_i / S)), w0 = 4 by default) of the
  section-summed cells, in cell units from the window (or image) centre; the parallax of a photon from
  the interaction point (its shower develops at depth along a tilted axis) is removed by a fitted
  scale s = 1 / (1 + d/z) of the global position; then the S-curve correction (true offset vs
  reconstructed offset in the cell, a binned table fitted on the calibration sample) is applied.
- Time: the energy-weighted mean of the cell times minus the mean delay (depth of the deposits),
  fitted on the calibration sample.
- Angles (stacks with several readout sections): a straight-line fit of the per-section log-weighted
  centroids against the section index, calibrated linearly to the true slope.

Every fitted table is keyed by region index, so that one :class:`ClassicalReco` serves a whole wall;
it serialises to a JSON-able dict. Inputs are :class:`~diffcalo.simulation.Clusters` (or any object
with the same fields) and numpy arrays; nothing here needs to be differentiable.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

__all__ = ["ClassicalReco", "ClassicalEstimate", "cluster_sum", "log_weighted_centroid", "weighted_time",
           "section_slope", "window_centre", "lstsq_line"]

#: Minimum calibration clusters per region.
MIN_CALIBRATION = 50
_SCURVE_BINS = 40


def cluster_sum(energy):
    """Sum of all cells of each cluster [n, L, H, W] -> [n] (jnp: usable on traced arrays)."""
    e = jnp.asarray(energy)
    return e.reshape(e.shape[0], -1).sum(axis=1)


def _grid(h: int, w: int):
    """Cell-centre coordinates (x, y) in cell units from the grid centre: [h, w] each."""
    return np.meshgrid(np.arange(w) - 0.5 * (w - 1), np.arange(h) - 0.5 * (h - 1))


def log_weighted_centroid(cells, w0: float = 4.0):
    """Log-weighted centroid of [n, H, W] cell energies, (x, y) in cell units from the grid centre [n, 2].

    Weights w_i = max(0, w0 + ln(E_i / sum E)); clusters whose weights all vanish fall back to
    linear energy weights (and empty clusters to the centre). jnp, differentiable almost everywhere.
    """
    e = jnp.maximum(jnp.asarray(cells), 0.0)
    n, h, w = e.shape
    gx, gy = _grid(h, w)
    tot = e.reshape(n, -1).sum(axis=1)[:, None, None]
    frac = e / jnp.where(tot > 0, tot, 1.0)
    wt = jnp.maximum(0.0, w0 + jnp.log(jnp.where(frac > 0, frac, 1e-30)))
    wsum = wt.reshape(n, -1).sum(axis=1)
    lin = (wsum <= 0)[:, None, None]
    wt = jnp.where(lin, frac, wt)
    wsum = wt.reshape(n, -1).sum(axis=1)
    wsum = jnp.where(wsum > 0, wsum, 1.0)
    return jnp.stack([(wt * gx).reshape(n, -1).sum(1) / wsum, (wt * gy).reshape(n, -1).sum(1) / wsum], axis=1)


def weighted_time(energy, time):
    """Energy-weighted mean of the cell times of each cluster (cells with energy > 0); 0 if empty."""
    e = jnp.maximum(jnp.asarray(energy), 0.0).reshape(len(energy), -1)
    t = jnp.asarray(time).reshape(len(time), -1)
    tot = e.sum(axis=1)
    return jnp.where(tot > 0, (e * t).sum(axis=1) / jnp.where(tot > 0, tot, 1.0), 0.0)


def section_slope(energy, w0: float = 4.0) -> np.ndarray:
    """Energy-weighted straight-line fit of the per-section centroids against the section index:
    slope (x, y) in cell units per section [n, 2]; zeros for a single section."""
    e = np.asarray(energy, dtype=np.float64)
    n, n_sec = e.shape[:2]
    if n_sec < 2:
        return np.zeros((n, 2))
    cent = np.stack([np.asarray(log_weighted_centroid(e[:, s], w0), dtype=np.float64) for s in range(n_sec)], axis=1)   # [n, L, 2]
    wt = np.maximum(e.reshape(n, n_sec, -1).sum(-1), 0.0)                                  # [n, L]
    z = np.arange(n_sec, dtype=float)[None, :]
    sw = np.maximum(wt.sum(1, keepdims=True), 1e-30)
    zm = (wt * z).sum(1, keepdims=True) / sw
    var = (wt * (z - zm) ** 2).sum(1, keepdims=True)
    cm = (wt[..., None] * cent).sum(1, keepdims=True) / sw[..., None]
    cov = (wt[..., None] * (z - zm)[..., None] * (cent - cm)).sum(1)
    return np.where(var > 1e-12, cov / np.where(var > 1e-12, var, 1.0), 0.0)


def window_centre(clusters) -> np.ndarray:
    """Global (x, y) of each cluster's window centre [n, 2] (mm): ``clusters.centre``, the seed cell's
    centre (a detector quantity: no truth is read)."""
    return np.asarray(clusters.centre, dtype=float)


@dataclasses.dataclass(frozen=True)
class ClassicalEstimate:
    """Per-cluster classical estimates: energy [n] GeV; offset [n, 2] mm from the window centre;
    position [n, 2] global mm; time [n] ns; slope [n, 2]; raw_sum [n]."""

    energy: np.ndarray
    offset: np.ndarray
    position: np.ndarray
    time: np.ndarray
    slope: np.ndarray
    raw_sum: np.ndarray


def lstsq_line(x, y):
    """Least-squares (intercept, slope) of y against x."""
    a = np.stack([np.ones_like(x), x], axis=1)
    (p0, p1), *_ = np.linalg.lstsq(a, y, rcond=None)
    return float(p0), float(p1)


@dataclasses.dataclass
class ClassicalReco:
    """Classical reconstruction fitted per region (see the module docstring).

    Use :meth:`fit` on a calibration sample, then :meth:`predict`. ``tables`` maps the region index
    (as a string, for JSON) to its fitted constants.
    """

    w0: float = 4.0
    z_mm: float = 0.0
    tables: dict = dataclasses.field(default_factory=dict)

    # -- fitting -------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, clusters, *, z_mm: float = 0.0, w0: float = 4.0) -> "ClassicalReco":
        """Fit the calibration of every region present in ``clusters`` (status 0 clusters only).

        Args:
            clusters: calibration clusters with truth.
            z_mm: distance of the front face from the interaction point (0: no parallax correction).
            w0: log-weight cut-off.

        Raises:
            ValueError: a region with fewer than :data:`MIN_CALIBRATION` clusters, or with a single
                true energy (the energy calibration needs a lever arm).
        """
        self = cls(w0=float(w0), z_mm=float(z_mm))
        ok = np.asarray(clusters.status) == 0
        region = np.asarray(clusters.region)
        e_true = np.asarray(clusters.e_true, dtype=np.float64)
        if not ok.any():
            raise ValueError("ClassicalReco.fit: no clusters on the wall (status 0) in the calibration sample")
        raw = self._raw(clusters)
        t_true = np.asarray(clusters.t_true, dtype=np.float64)
        slope_true = np.stack([np.asarray(clusters.tx), np.asarray(clusters.ty)], axis=1)
        for r in np.unique(region[ok]):
            m = ok & (region == r)
            if m.sum() < MIN_CALIBRATION:
                raise ValueError(f"ClassicalReco.fit: region {int(r)} has {int(m.sum())} calibration clusters; "
                                 f"need at least {MIN_CALIBRATION}")
            if np.unique(e_true[m]).size < 2:
                raise ValueError(f"ClassicalReco.fit: region {int(r)} has a single true energy "
                                 f"({e_true[m][0]} GeV); the linear energy calibration needs at least two")
            cell = float(np.median(np.asarray(clusters.cell_size_mm)[m]))
            p0, p1 = lstsq_line(raw["sum"][m], e_true[m])
            # parallax: global position scale s, then the S-curve on the corrected offset
            centre = raw["centre"][m]
            glob = centre + cell * raw["u"][m]
            truth = centre + np.asarray(clusters.offset)[m]
            s = float((glob * truth).sum() / max((glob * glob).sum(), 1e-30)) if self.z_mm > 0 else 1.0
            u_corr = ((s * glob - centre) / cell).ravel()
            u_true = (np.asarray(clusters.offset)[m] / cell).ravel()
            qs = np.quantile(u_corr, np.linspace(0.0, 1.0, _SCURVE_BINS + 1))
            idx = np.clip(np.searchsorted(qs, u_corr, side="right") - 1, 0, _SCURVE_BINS - 1)
            xs = np.array([u_corr[idx == b].mean() for b in range(_SCURVE_BINS) if (idx == b).any()])
            ys = np.array([u_true[idx == b].mean() for b in range(_SCURVE_BINS) if (idx == b).any()])
            order = np.argsort(xs)
            table = dict(cell_mm=cell, e0=p0, e1=p1, scale=s, scurve_x=xs[order].tolist(),
                         scurve_y=ys[order].tolist())
            tw = raw["time"][m]
            table["t_delay"] = float(np.nanmedian(tw - t_true[m])) if np.isfinite(t_true[m]).any() else 0.0
            if raw["n_sections"] >= 2:
                g = raw["slope"][m] * cell          # mm per section
                a0, a1 = lstsq_line(g.ravel(), slope_true[m].ravel())
                table.update(slope0=a0, slope1=a1)
            self.tables[str(int(r))] = table
        return self

    def _raw(self, clusters) -> dict:
        e = np.asarray(clusters.energy)
        f64 = lambda a: np.asarray(a, dtype=np.float64)
        return dict(sum=f64(cluster_sum(e)), u=f64(log_weighted_centroid(e.sum(axis=1), self.w0)),
                    time=f64(weighted_time(e, clusters.time)), slope=section_slope(e, self.w0),
                    centre=window_centre(clusters), n_sections=e.shape[1])

    # -- prediction ------------------------------------------------------------------------------------
    def predict(self, clusters) -> ClassicalEstimate:
        """Classical estimates for every cluster; clusters off the wall (or in regions absent from the
        calibration) get NaN.

        Raises:
            ValueError: the calibration is empty.
        """
        if not self.tables:
            raise ValueError("ClassicalReco.predict: not fitted (use ClassicalReco.fit on a calibration sample)")
        raw = self._raw(clusters)
        n = raw["sum"].shape[0]
        region = np.asarray(clusters.region)
        out = dict(energy=np.full(n, np.nan), offset=np.full((n, 2), np.nan), time=np.full(n, np.nan),
                   slope=np.full((n, 2), np.nan))
        for key, tab in self.tables.items():
            m = region == int(key)
            if not m.any():
                continue
            cell = tab["cell_mm"]
            out["energy"][m] = tab["e0"] + tab["e1"] * raw["sum"][m]
            centre = raw["centre"][m]
            glob = centre + cell * raw["u"][m]
            u_corr = (tab["scale"] * glob - centre) / cell
            out["offset"][m] = cell * np.interp(u_corr, tab["scurve_x"], tab["scurve_y"])
            out["time"][m] = raw["time"][m] - tab["t_delay"]
            if "slope1" in tab:
                out["slope"][m] = tab["slope0"] + tab["slope1"] * raw["slope"][m] * cell
            else:
                out["slope"][m] = 0.0
        return ClassicalEstimate(energy=out["energy"], offset=out["offset"], position=raw["centre"] + out["offset"],
                                 time=out["time"], slope=out["slope"], raw_sum=raw["sum"])

    # -- serialisation -----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dict(w0=self.w0, z_mm=self.z_mm, tables=self.tables)

    @classmethod
    def from_dict(cls, d: dict) -> "ClassicalReco":
        return cls(w0=float(d["w0"]), z_mm=float(d["z_mm"]), tables=dict(d["tables"]))
