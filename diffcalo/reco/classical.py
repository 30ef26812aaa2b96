r"""Classical reconstruction: the baselines the networks must beat, fitted per region on a calibration sample.

- Cluster (:mod:`diffcalo.reco.clustering`): inside each simulated window (the network's input), the
  LHCb-style cluster of the signal: local maxima, the seed nearest the window centre, its 3x3 cells
  (2x2 for cells of at least 100 mm, ``cluster="auto"``), cells shared with a neighbouring maximum
  split in proportion to the clusters' energies. ``cluster="window"`` reads the whole window
  instead (the baseline before the cluster finder: every option below then reads the window).
- Energy: the cluster sum S minus its pile-up B = sum_c w_c b(r_c), b(r) the background per cell as
  a function of the distance to the beam fitted per region
  (:class:`~diffcalo.reco.clustering.PileupSubtraction`; never below a small positive floor,
  flagged ``clipped``), calibrated linearly per region, E = (S - B - a) / c, with the response line
  S - B = a + c E_true fitted to the core of the calibration clusters (rows within 2.5 robust
  standard deviations, :func:`~diffcalo.reco.clustering.core_lstsq`). The whole-window baseline
  (``cluster="window"``) keeps its least-squares regression of E_true on the sum, E = p0 + p1 S,
  which pile-up tails can wreck: measured on 4000 Upgrade II outer-cell photons with 40 collisions
  (pile-up model of commit 932f6eb), one window holding 3.1 TeV of background took p1 from 0.80 to
  0.20, and the estimate's response E_reco / E_true to 4.1 at 5 GeV and 0.58 at 50 GeV.
- Position: the log-weighted centroid (weights max(0, w0 + ln(E_i / S)), w0 = 4 by default) of the
  cluster's section-summed cells, in cell units from the window centre; the parallax of a photon
  from the interaction point (its shower develops at depth along a tilted axis) is removed by a
  fitted scale s = 1 / (1 + d/z) of the global position; then the S-curve correction (true offset
  vs reconstructed offset in the cell, a binned table fitted on the calibration sample) is applied.
- Time: the energy-weighted mean of the cluster's cell times minus the mean delay (depth of the
  deposits), fitted on the calibration sample.
- Angles (stacks with several readout sections): a straight-line fit of the per-section log-weighted
  centroids of the cluster against the section index, calibrated linearly to the true slope.

Every fitted table is keyed by region index, so that one :class:`ClassicalReco` serves a whole wall;
it serialises to a JSON-able dict. Each region's table also keeps ``e0``, ``e1``: the linear
calibration of the whole-window sum, the base of the energy network
(:func:`~diffcalo.reco.features.energy_inputs`, which stays differentiable in the window cells).
Inputs are :class:`~diffcalo.simulation.Clusters` (or any object with the same fields) and numpy
arrays; nothing here needs to be differentiable.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from diffcalo.reco.clustering import (
    LARGE_CELL_MM,
    MIN_CLUSTER_ENERGY_GEV,
    PileupSubtraction,
    cluster_size,
    core_lstsq,
    find_clusters,
    log_weighted_centroid,
    sin_theta,
    subtract_pileup,
)

__all__ = ["ClassicalReco", "ClassicalEstimate", "cluster_sum", "log_weighted_centroid", "weighted_time",
           "section_slope", "window_centre", "lstsq_line"]

#: Minimum calibration clusters per region.
MIN_CALIBRATION = 50
_SCURVE_BINS = 40


def cluster_sum(energy):
    """Sum of all cells of each cluster [n, L, H, W] -> [n] (jnp: usable on traced arrays)."""
    e = jnp.asarray(energy)
    return e.reshape(e.shape[0], -1).sum(axis=1)


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
    position [n, 2] global mm; time [n] ns; slope [n, 2]; raw_sum [n] the whole-window sum (GeV).

    Cluster details (None from a ``cluster="window"`` reconstruction): cluster_energy [n] the
    cluster sum minus its pile-up (GeV, before calibration); background [n] the subtracted pile-up
    (GeV); clipped [n] the subtracted sum (or the calibrated energy) hit the floor
    :data:`~diffcalo.reco.clustering.MIN_CLUSTER_ENERGY_GEV`; off_centre [n] the seed is not the
    window's centre cell; n_maxima [n] local maxima in the window; truncated [n] the cluster reaches
    beyond the window.
    """

    energy: np.ndarray
    offset: np.ndarray
    position: np.ndarray
    time: np.ndarray
    slope: np.ndarray
    raw_sum: np.ndarray
    cluster_energy: np.ndarray | None = None
    background: np.ndarray | None = None
    clipped: np.ndarray | None = None
    off_centre: np.ndarray | None = None
    n_maxima: np.ndarray | None = None
    truncated: np.ndarray | None = None


def lstsq_line(x, y):
    """Least-squares (intercept, slope) of y against x."""
    a = np.stack([np.ones_like(x), x], axis=1)
    (p0, p1), *_ = np.linalg.lstsq(a, y, rcond=None)
    return float(p0), float(p1)


def _response_calibration(cluster_energy, e_true, region: int):
    """(intercept, slope) of E = p0 + p1 S from the core fit of the response line S = a + c E_true
    (rows weighted by 1 / sqrt(E_true), :func:`~diffcalo.reco.clustering.core_lstsq`), inverted."""
    w = 1.0 / np.sqrt(e_true)
    (a, c), _ = core_lstsq(np.stack([w, e_true * w], axis=1), cluster_energy * w)
    if not c > 0:
        raise ValueError(f"ClassicalReco.fit: region {region}: the cluster energy does not grow with the true "
                         f"energy (fitted response slope {c:.3g}); check the calibration sample")
    return float(-a / c), float(1.0 / c)


#: Default seed threshold of the local maxima (E_T, GeV): low, so that only noise and the softest
#: deposits are not seeds; a soft maximum next to the signal takes a share of the cells in proportion
#: to its small energy anyway.
SEED_ET_GEV = 0.05
#: Cluster choices of :class:`ClassicalReco`.
CLUSTER_MODES = ("auto", "3x3", "2x2", "window")
#: Pile-up fits of :class:`ClassicalReco`: the core (robust) or mean background, or none.
PILEUP_MODES = ("core", "mean", "none")


@dataclasses.dataclass
class ClassicalReco:
    """Classical reconstruction fitted per region (see the module docstring).

    Use :meth:`fit` on a calibration sample, then :meth:`predict`. ``tables`` maps the region index
    (as a string, for JSON) to its fitted constants; ``pileup`` holds the fitted background per cell.

    Attributes:
        w0: log-weight cut-off of the centroids.
        z_mm: distance of the front face from the interaction point (0: no parallax correction, and
            the seed threshold is on E instead of E_T).
        cluster: ``"auto"`` (3x3, 2x2 for cells >= ``large_cell_mm``), ``"3x3"``, ``"2x2"`` or
            ``"window"`` (the whole window, no cluster finding and no pile-up subtraction).
        pileup_fit: ``"core"`` (robust fit of the background's core), ``"mean"`` (its mean) or ``"none"``.
        large_cell_mm: cell size (mm) from which ``"auto"`` takes 2x2 clusters.
        seed_et_gev: seed threshold of the local maxima, on E_T (on E when ``z_mm`` is 0), GeV.
    """

    w0: float = 4.0
    z_mm: float = 0.0
    tables: dict = dataclasses.field(default_factory=dict)
    cluster: str = "auto"
    pileup_fit: str = "core"
    large_cell_mm: float = LARGE_CELL_MM
    seed_et_gev: float = SEED_ET_GEV
    pileup: PileupSubtraction = dataclasses.field(default_factory=PileupSubtraction)

    def __post_init__(self):
        if self.cluster not in CLUSTER_MODES:
            raise ValueError(f"ClassicalReco: cluster = {self.cluster!r}; allowed: {', '.join(CLUSTER_MODES)}")
        if self.pileup_fit not in PILEUP_MODES:
            raise ValueError(f"ClassicalReco: pileup_fit = {self.pileup_fit!r}; allowed: {', '.join(PILEUP_MODES)}")
        if not self.large_cell_mm > 0:
            raise ValueError(f"ClassicalReco: large_cell_mm = {self.large_cell_mm!r}: must be > 0 (mm)")
        if not self.seed_et_gev >= 0:
            raise ValueError(f"ClassicalReco: seed_et_gev = {self.seed_et_gev!r}: must be >= 0 (GeV)")

    # -- fitting -------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, clusters, *, z_mm: float = 0.0, w0: float = 4.0, cluster: str = "auto", pileup_fit: str = "core",
            large_cell_mm: float = LARGE_CELL_MM, seed_et_gev: float = SEED_ET_GEV) -> "ClassicalReco":
        """Fit the calibration of every region present in ``clusters`` (status 0 clusters only).

        Args:
            clusters: calibration clusters with truth.
            z_mm: distance of the front face from the interaction point (0: no parallax correction).
            w0: log-weight cut-off.
            cluster, pileup_fit, large_cell_mm, seed_et_gev: see the class attributes.

        Raises:
            ValueError: a region with fewer than :data:`MIN_CALIBRATION` clusters, or with a single
                true energy (the energy calibration needs a lever arm); an unknown option.
        """
        self = cls(w0=float(w0), z_mm=float(z_mm), cluster=cluster, pileup_fit=pileup_fit,
                   large_cell_mm=float(large_cell_mm), seed_et_gev=float(seed_et_gev))
        ok = np.asarray(clusters.status) == 0
        region = np.asarray(clusters.region)
        e_true = np.asarray(clusters.e_true, dtype=np.float64)
        if not ok.any():
            raise ValueError("ClassicalReco.fit: no clusters on the wall (status 0) in the calibration sample")
        for r in np.unique(region[ok]):
            m = ok & (region == r)
            if m.sum() < MIN_CALIBRATION:
                raise ValueError(f"ClassicalReco.fit: region {int(r)} has {int(m.sum())} calibration clusters; "
                                 f"need at least {MIN_CALIBRATION}")
            if np.unique(e_true[m]).size < 2:
                raise ValueError(f"ClassicalReco.fit: region {int(r)} has a single true energy "
                                 f"({e_true[m][0]} GeV); the linear energy calibration needs at least two")
        found = self._find(clusters)
        if found is not None and self.pileup_fit != "none":
            self.pileup = PileupSubtraction.fit(
                found.take(ok), e_true[ok], centre_mm=window_centre(clusters)[ok],
                cell_size_mm=np.asarray(clusters.cell_size_mm)[ok], region=region[ok],
                clip=2.5 if self.pileup_fit == "core" else None, min_clusters=MIN_CALIBRATION)
        raw = self._raw(clusters, found)
        t_true = np.asarray(clusters.t_true, dtype=np.float64)
        slope_true = np.stack([np.asarray(clusters.tx), np.asarray(clusters.ty)], axis=1)
        for r in np.unique(region[ok]):
            m = ok & (region == r)
            cell = float(np.median(np.asarray(clusters.cell_size_mm)[m]))
            p0, p1 = lstsq_line(raw["window_sum"][m], e_true[m])        # the energy network's base
            c0, c1 = (p0, p1) if self.cluster == "window" else _response_calibration(raw["sum"][m], e_true[m], int(r))
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
            table = dict(cell_mm=cell, e0=p0, e1=p1, cluster_e0=c0, cluster_e1=c1, scale=s,
                         scurve_x=xs[order].tolist(), scurve_y=ys[order].tolist())
            tw = raw["time"][m]
            table["t_delay"] = float(np.nanmedian(tw - t_true[m])) if np.isfinite(t_true[m]).any() else 0.0
            if raw["n_sections"] >= 2:
                g = raw["slope"][m] * cell          # mm per section
                a0, a1 = lstsq_line(g.ravel(), slope_true[m].ravel())
                table.update(slope0=a0, slope1=a1)
            self.tables[str(int(r))] = table
        return self

    def _find(self, clusters):
        """The signal cluster of every window (:func:`~diffcalo.reco.clustering.find_clusters`), or None
        for ``cluster="window"``."""
        if self.cluster == "window":
            return None
        cell = np.asarray(clusters.cell_size_mm, dtype=np.float64)
        size = dict(auto=None, **{"3x3": 3, "2x2": 2})[self.cluster]
        size = cluster_size(cell, large_cell_mm=self.large_cell_mm) if size is None else size
        return find_clusters(clusters.energy, size=size, seed_threshold_gev=self.seed_et_gev,
                             et_factor=sin_theta(window_centre(clusters), self.z_mm), w0=self.w0)

    def _raw(self, clusters, found=None) -> dict:
        e = np.asarray(clusters.energy)
        f64 = lambda a: np.asarray(a, dtype=np.float64)
        window = f64(cluster_sum(e))
        out = dict(window_sum=window, centre=window_centre(clusters), n_sections=e.shape[1])
        if self.cluster == "window":
            return dict(out, sum=window, u=f64(log_weighted_centroid(e.sum(axis=1), self.w0)),
                        time=f64(weighted_time(e, clusters.time)), slope=section_slope(e, self.w0))
        found = self._find(clusters) if found is None else found
        background = self.pileup.background(found, centre_mm=out["centre"], cell_size_mm=clusters.cell_size_mm,
                                             region=clusters.region)
        subtracted, clipped = subtract_pileup(found.energy, background)
        cells = f64(e) * found.weights[:, None]
        return dict(out, sum=subtracted, u=found.position, time=f64(weighted_time(cells, clusters.time)),
                    slope=section_slope(cells, self.w0), background=background, clipped=clipped, found=found)

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
            out["energy"][m] = tab.get("cluster_e0", tab["e0"]) + tab.get("cluster_e1", tab["e1"]) * raw["sum"][m]
            centre = raw["centre"][m]
            glob = centre + cell * raw["u"][m]
            u_corr = (tab["scale"] * glob - centre) / cell
            out["offset"][m] = cell * np.interp(u_corr, tab["scurve_x"], tab["scurve_y"])
            out["time"][m] = raw["time"][m] - tab["t_delay"]
            if "slope1" in tab:
                out["slope"][m] = tab["slope0"] + tab["slope1"] * raw["slope"][m] * cell
            else:
                out["slope"][m] = 0.0
        extra = {}
        if self.cluster != "window":
            found = raw["found"]
            low = out["energy"] < MIN_CLUSTER_ENERGY_GEV        # NaN (not reconstructed) stays NaN
            out["energy"] = np.where(low, MIN_CLUSTER_ENERGY_GEV, out["energy"])
            extra = dict(cluster_energy=raw["sum"], background=raw["background"], clipped=raw["clipped"] | low,
                         off_centre=found.off_centre, n_maxima=found.n_maxima, truncated=found.truncated)
        return ClassicalEstimate(energy=out["energy"], offset=out["offset"], position=raw["centre"] + out["offset"],
                                 time=out["time"], slope=out["slope"], raw_sum=raw["window_sum"], **extra)

    # -- serialisation -----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dict(w0=self.w0, z_mm=self.z_mm, tables=self.tables, cluster=self.cluster, pileup_fit=self.pileup_fit,
                    large_cell_mm=self.large_cell_mm, seed_et_gev=self.seed_et_gev, pileup=self.pileup.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "ClassicalReco":
        """The reconstruction of :meth:`to_dict`; a dict saved before the cluster finder (no ``cluster``
        key) gives the whole-window reconstruction it was fitted as."""
        return cls(w0=float(d["w0"]), z_mm=float(d["z_mm"]), tables=dict(d["tables"]),
                   cluster=d.get("cluster", "window"), pileup_fit=d.get("pileup_fit", "none"),
                   large_cell_mm=float(d.get("large_cell_mm", LARGE_CELL_MM)),
                   seed_et_gev=float(d.get("seed_et_gev", SEED_ET_GEV)),
                   pileup=PileupSubtraction.from_dict(d.get("pileup", dict(tables={}))))
