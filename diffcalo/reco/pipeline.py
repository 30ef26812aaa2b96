"""The whole reconstruction of a design: classical calibration + one network per task, fitted,
applied, evaluated (network vs classical, per region) and saved as one directory."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

from diffcalo import metrics
from diffcalo.errors import DatasetError
from diffcalo.reco.classical import ClassicalReco
from diffcalo.reco.config import TrainConfig
from diffcalo.reco.features import SLOPE_UNIT, TASKS, TIME_UNIT_NS, cluster_inputs
from diffcalo.reco.models import ModelConfig
from diffcalo.reco.net import TrainedNet
from diffcalo.reco.targets import prepare
from diffcalo.reco.train import train

__all__ = ["Reconstruction", "evaluate"]


@dataclasses.dataclass
class Reconstruction:
    """Classical reconstruction plus trained networks (``nets``: task -> :class:`TrainedNet`)."""

    classical: ClassicalReco
    nets: dict
    use_time: bool = False

    @classmethod
    def fit(cls, train_clusters, val_clusters, *, tasks=TASKS, z_mm: float = 0.0, model_config=ModelConfig(),
            train_config: TrainConfig | dict = TrainConfig(), calibration=None, progress: bool = True):
        """Fit the classical calibration (on ``calibration``, default the training clusters) and train
        one network per task.

        Args:
            train_config: one :class:`TrainConfig` for all tasks or a dict task -> TrainConfig.
        """
        for t in tasks:
            if t not in TASKS:
                raise ValueError(f"reco.tasks: unknown task {t!r}; allowed: {', '.join(TASKS)}")
        classical = ClassicalReco.fit(train_clusters if calibration is None else calibration, z_mm=z_mm)
        configs = train_config if isinstance(train_config, dict) else {t: train_config for t in tasks}
        nets = {}
        use_time = False
        for t in tasks:
            cfg = configs.get(t, TrainConfig())
            use_time |= cfg.use_time
            tr, _ = prepare(t, train_clusters, classical, use_time=cfg.use_time)
            va, _ = prepare(t, val_clusters, classical, use_time=cfg.use_time)
            nets[t] = train(t, tr, va, model_config=model_config, config=cfg, progress=progress)
        return cls(classical=classical, nets=nets, use_time=use_time)

    def predict(self, clusters) -> dict:
        """Network and classical estimates for every cluster (NaN where not reconstructable); the
        truth fields of ``clusters`` are not read (see :mod:`diffcalo.reco.features`).

        Returns dict: energy, offset [n, 2] (mm from the window centre), slope [n, 2], time (ns), each
        from the network when it was trained (else the classical value), and classical_energy,
        classical_offset, classical_slope, classical_time.
        """
        est = self.classical.predict(clusters)
        n = est.energy.shape[0]
        out = dict(energy=est.energy.copy(), offset=est.offset.copy(), slope=est.slope.copy(), time=est.time.copy(),
                   classical_energy=est.energy, classical_offset=est.offset, classical_slope=est.slope,
                   classical_time=est.time)
        cell = np.asarray(clusters.cell_size_mm, dtype=np.float64)
        for task, net in self.nets.items():
            inp, mask = cluster_inputs(task, clusters, self.classical, use_time=net.use_time, estimate=est)
            pred = net.predict(inp)
            idx = np.flatnonzero(mask)
            if task == "energy":
                out["energy"] = np.full(n, np.nan)
                out["energy"][idx] = pred[:, 0]
            elif task == "position":
                out["offset"] = np.full((n, 2), np.nan)
                out["offset"][idx] = est.offset[idx] + cell[idx, None] * pred[:, :2]
                if pred.shape[1] > 2:
                    out["slope"] = np.full((n, 2), np.nan)
                    out["slope"][idx] = est.slope[idx] + SLOPE_UNIT * pred[:, 2:4]
            else:
                out["time"] = np.full(n, np.nan)
                out["time"][idx] = est.time[idx] + TIME_UNIT_NS * pred[:, 0]
        return out

    def save(self, directory) -> pathlib.Path:
        """Write the reconstruction to ``directory`` (classical.json, one checkpoint per network)."""
        d = pathlib.Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "classical.json").write_text(json.dumps(dict(classical=self.classical.to_dict(), use_time=self.use_time,
                                                          tasks=list(self.nets)), indent=1))
        for task, net in self.nets.items():
            net.save(d / f"{task}.msgpack")
        return d

    @classmethod
    def load(cls, directory) -> "Reconstruction":
        d = pathlib.Path(directory)
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: no such directory (a reconstruction is a directory written by "
                                    "diffcalo train or Reconstruction.save)")
        if not (d / "classical.json").exists():
            raise FileNotFoundError(f"{d}: not a saved reconstruction (no classical.json)")
        meta = json.loads((d / "classical.json").read_text())
        nets = {t: TrainedNet.load(d / f"{t}.msgpack") for t in meta["tasks"]}
        return cls(classical=ClassicalReco.from_dict(meta["classical"]), nets=nets, use_time=meta["use_time"])


def evaluate(reco: Reconstruction, clusters, *, bins=8, fit_noise: bool = True) -> dict:
    """Network vs classical on ``clusters`` with truth, per region: energy curves and the fitted
    a, b, c terms (``energy_fit`` on the widths of E_reco / E, ``calibrated_energy_fit`` on the
    response-corrected widths); position (mm) and slope residual widths; time residual widths (ps).

    Returns a JSON-able dict: {"regions": {region: {...}}, "skipped": {region: clusters} (fewer than
    50 usable clusters), "predictions": arrays (not JSON)}.

    Raises:
        DatasetError: clusters of a region the reconstruction was not fitted on.
    """
    region = np.asarray(clusters.region)
    known = sorted(int(k) for k in reco.classical.tables)
    on_wall = np.asarray(clusters.status) == 0
    unknown = sorted(set(np.unique(region[on_wall]).tolist()) - set(known))
    if unknown:
        counts = ", ".join(f"{r}: {int(((region == r) & on_wall).sum())}" for r in unknown)
        raise DatasetError(f"evaluate: clusters of region(s) {unknown} (clusters per region {counts}); the "
                           f"reconstruction was fitted on regions {known}: evaluate it on data of the same layout")
    pred = reco.predict(clusters)
    e_true = np.asarray(clusters.e_true, dtype=float)
    off_true = np.asarray(clusters.offset, dtype=float)
    slope_true = np.stack([np.asarray(clusters.tx), np.asarray(clusters.ty)], axis=1).astype(float)
    t_true = np.asarray(clusters.t_true, dtype=float)
    result, skipped = {}, {}
    for r in known:
        m = (region == r) & np.isfinite(pred["energy"]) & on_wall
        if m.sum() < 50:
            if (region == r).any():
                skipped[str(r)] = int(m.sum())
            continue
        entry = dict(n=int(m.sum()), cell_mm=reco.classical.tables[str(r)]["cell_mm"])
        for who, e_key, o_key, s_key, t_key in (("network", "energy", "offset", "slope", "time"),
                                                ("classical", "classical_energy", "classical_offset",
                                                 "classical_slope", "classical_time")):
            block = {}
            curve = metrics.energy_curve(e_true[m], pred[e_key][m], bins=bins)
            block["energy_curve"] = {k: v.tolist() for k, v in curve.items()}
            block["energy_fit"] = metrics.fit_curve_resolution(curve, fit_noise=fit_noise)
            # the same fit to the calibrated (response-corrected) widths: what the evaluate figure draws
            # and the CLI prints (fair to an estimator whose response is not 1; metrics.energy_curve)
            block["calibrated_energy_fit"] = metrics.fit_curve_resolution(curve, calibrated=True, fit_noise=fit_noise)
            block["energy_rel"] = metrics.width_summary((pred[e_key][m] - e_true[m]) / e_true[m])
            block["position_mm"] = metrics.width_summary(pred[o_key][m] - off_true[m])
            if clusters.energy.shape[1] >= 2:
                block["slope"] = metrics.width_summary(pred[s_key][m] - slope_true[m])
            if np.isfinite(t_true[m]).all() and np.isfinite(pred[t_key][m]).all():
                block["time_ps"] = metrics.width_summary(1000.0 * (pred[t_key][m] - t_true[m]))
            entry[who] = block
        result[str(r)] = entry
    return dict(regions=result, skipped=skipped, predictions=pred)
