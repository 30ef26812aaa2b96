"""Continuous stack studies ([optimizer] kind = "lgso" | "gradient"): config, journal, resume, report."""

import json

import numpy as np
import pytest

from diffcalo.config import ConfigError
from diffcalo.study.config import study_config_from_dict, study_config_from_flat
from diffcalo.study.continuous import gradient_call, run_continuous, stack_of
from diffcalo.study.executors import make_executor
from diffcalo.study.report import write_report


def _cfg(kind="lgso", **cont):
    return study_config_from_dict({"study": {"name": f"t-{kind}", "seed": 3}, "samples": {"photon_energy": [2.0, 40.0]},
                                   "optimizer": {"kind": kind},
                                   "continuous": dict(dict(iterations=2, samples=200, refit_every=2), **cont)})


@pytest.mark.parametrize("raw, message", [
    ({"optimizer": {"kind": "gp"}, "continuous": {"iterations": 3}},
     "optimizer.kind = 'gp': 'lgso' or 'gradient' for the [continuous] settings ['continuous.iterations']"),
    ({"optimizer": {"kind": "lgso"}, "continuous": {"absorber_mm": [3.0, 1.0]}},
     "continuous.absorber_mm = [3.0, 1.0]: [low, high] in mm with 0 < low < high"),
    ({"optimizer": {"kind": "lgso"}, "continuous": {"start": [9.0, 4.0]}},
     "continuous.start = [9.0, 4.0]: absorber_mm = 9 within its bounds [0.4, 6.0]"),
    ({"optimizer": {"kind": "lgso"}, "continuous": {"start": [3.0, 4.0]}},
     "a stack within the depth limit: 66 layers x (3 + 4) mm = 462 mm > 396 mm"),
    ({"optimizer": {"kind": "gradient"}, "continuous": {"technology": "demo-pbwo4"}},
     "continuous.technology = 'demo-pbwo4': a sampling technology with one repeated layer type"),
    ({"optimizer": {"kind": "lgso"}, "continuous": {"model": "vae"}}, "continuous.model = 'vae'"),
    ({"optimizer": {"kind": "lgso"}, "continuous": {"samples": 10}}, "continuous.samples = 10"),
    ({"optimizer": {"kind": "gradient"}, "continuous": {"window_sigmas": [1.0, 5.0]}},
     "continuous.window_sigmas = [1.0, 5.0]: [] without pile-up (the time window only trades signal against "
     "pile-up): set continuous.pileup_radius_mm"),
    ({"optimizer": {"kind": "gradient"}, "continuous": {"cell_mm": [20.0, 60.0]}},
     "continuous.cell_mm[0] = 20.0: must be a finite number >= 40.4 and <= 121.2 mm"),
    ({"optimizer": {"kind": "gradient"}, "continuous": {"cell_mm": [40.4, 80.0], "start": [2.0, 4.0]}},
     "continuous.start = [2.0, 4.0]: [absorber_mm, active_mm, cell_mm] (one value per optimised parameter)"),
    ({"optimizer": {"kind": "lgso"}, "continuous": {"backend": "geant4", "pileup_radius_mm": 1500.0}},
     "continuous.backend = 'geant4': 'parametric' with pile-up or a time window"),
    ({"optimizer": {"kind": "lgso"}, "continuous": {"pileup_radius_mm": 300.0}},
     "continuous.pileup_radius_mm = 300.0: 0 (no pile-up) or >= 606 mm"),
])
def test_continuous_config_errors_name_the_key(raw, message):
    with pytest.raises(ConfigError) as e:
        study_config_from_dict(raw)
    assert message in str(e.value)


def test_continuous_config_defaults_and_flat_round_trip():
    cfg = _cfg()
    assert cfg.continuous and cfg.stack_technology == "shashlik"
    assert cfg.stack_start == (2.0, 4.0) and cfg.absorber_range == pytest.approx((0.4, 6.0))
    assert study_config_from_flat(json.loads(json.dumps(cfg.as_dict()))) == cfg
    layout = study_config_from_dict({"optimizer": {"kind": "gp"}})
    assert "iterations" not in layout.as_dict() and not layout.continuous   # old journals still compare equal


class _Crash:
    """The in-process executor, interrupted (like a killed driver) at the n-th submission."""

    def __init__(self, n):
        self._inner, self.n = make_executor("inprocess"), n
        self.name, self.workers = self._inner.name, self._inner.workers

    def submit(self, fn, *args):
        self.n -= 1
        if self.n < 0:
            raise KeyboardInterrupt
        return self._inner.submit(fn, *args)

    def wait(self, futures):
        return self._inner.wait(futures)

    def close(self):
        self._inner.close()


def _journal_rows(j):
    return [(r["batch"], r["design"], r["seed"], r["fom"]) for r in j.records()]


def test_lgso_study_journal_resume_and_report(tmp_path):
    cfg = _cfg("lgso")
    a = run_continuous(cfg, tmp_path / "a", progress=False, log=lambda m: None)
    ref = _journal_rows(a)
    meta = [a.get_meta(f"iteration_{k:04d}") for k in range(2)]
    a.close()
    assert len(ref) == 2 * 5 and all(r[3] is not None for r in ref)         # 4 LHS points + the centre per iteration
    # every call's rows are kept; the centre's rows give the calibration stored with the iteration
    with np.load(tmp_path / "a" / "calls" / "000005.npz") as f:
        assert f["x"].shape == (200, 3) and f["y"].shape == (200, stack_of(cfg).n_sections)
        w, *_ = np.linalg.lstsq(f["y"].astype(float), np.ones(200), rcond=None)
    assert meta[0]["calibration"] == pytest.approx(w.tolist(), rel=1e-6)
    assert (tmp_path / "a" / "surrogates" / "0001.npz").exists()
    # the second batch is centred on the first step's proposal
    assert ref[9][1]["absorber_mm"] == pytest.approx(meta[0]["record"]["proposal_mm"][0])
    # killed in the middle of iteration 1 (after 7 calls), resumed: the same journal and final state
    with pytest.raises(KeyboardInterrupt):
        run_continuous(cfg, tmp_path / "b", executor=_Crash(7), progress=False, log=lambda m: None)
    b = run_continuous(cfg, tmp_path / "b", resume=True, progress=False, log=lambda m: None)
    assert _journal_rows(b) == ref
    assert b.get_meta("iteration_0001")["state"]["centre"] == pytest.approx(meta[1]["state"]["centre"], rel=1e-9)
    b.close()
    text = write_report(tmp_path / "b").read_text()
    assert "| 1 |" in text and "rms E_rec/E - 1" in text and (tmp_path / "b" / "path.png").exists()


def test_gradient_study_refits_and_resumes(tmp_path):
    cfg = _cfg("gradient", iterations=3)
    a = run_continuous(cfg, tmp_path / "a", progress=False, log=lambda m: None)
    recs = a.records()
    a.close()
    assert [r["metrics"]["refit"] for r in recs] == [True, False, True]
    assert recs[1]["metrics"]["calibration"] == recs[0]["metrics"]["calibration"]
    # a journal row is the worker's own result: recomputed directly, the same numbers
    again = gradient_call(cfg, recs[1]["design"], recs[1]["seed"], calibration=recs[0]["metrics"]["calibration"])
    assert again["fom"] == pytest.approx(recs[1]["fom"], rel=1e-6)
    # a step goes downhill along the told gradient and stays within the depth limit (the start, the
    # nominal stack, is on it: Adam's step of lr in every coordinate is projected back onto it)
    g = np.asarray(recs[0]["metrics"]["gradient"])
    step = np.array([recs[1]["design"][k] - recs[0]["design"][k] for k in ("absorber_mm", "active_mm")])
    assert np.dot(step, g) < 0 and np.linalg.norm(step) > 0.05
    assert stack_of(cfg).depth_constraint([recs[1]["design"]["absorber_mm"], recs[1]["design"]["active_mm"]]) <= 1e-6
    with pytest.raises(KeyboardInterrupt):
        run_continuous(cfg, tmp_path / "b", executor=_Crash(2), progress=False, log=lambda m: None)
    b = run_continuous(cfg, tmp_path / "b", resume=True, progress=False, log=lambda m: None)
    assert [(r["design"], r["fom"]) for r in b.records()] == [(r["design"], r["fom"]) for r in recs]
    b.close()


def test_pileup_study_with_cell_size_and_time_window(tmp_path):
    """A continuous study of all four parameters with pile-up: the journal's designs carry the cell size
    and the window, the calibration has a pedestal, a gradient step moves against every told component,
    an L-GSO iteration completes on the same problem, and the report lists the extra columns."""
    cont = dict(cell_mm=[40.4, 80.0], window_sigmas=[1.0, 8.0], pileup_radius_mm=1500.0)
    cfg = _cfg("gradient", iterations=2, **cont)
    assert cfg.stack_parameters == ("absorber_mm", "active_mm", "cell_mm", "window_sigmas")
    assert cfg.stack_start == (2.0, 4.0, 40.4, 3.0)
    assert study_config_from_flat(json.loads(json.dumps(cfg.as_dict()))) == cfg
    j = run_continuous(cfg, tmp_path / "g", progress=False, log=lambda m: None)
    recs = j.records()
    j.close()
    assert set(recs[0]["design"]) == set(cfg.stack_parameters) and len(recs[0]["metrics"]["calibration"]) == 2
    g = np.asarray(recs[0]["metrics"]["gradient"])
    step = np.array([recs[1]["design"][k] - recs[0]["design"][k] for k in cfg.stack_parameters])
    # downhill; the cell and the window (free of the depth limit) each against their own component
    # unless at a bound (the cell starts at its lower one)
    assert np.dot(step, g) < 0
    for i, k in ((2, "cell_mm"), (3, "window_sigmas")):
        lo, hi = {"cell_mm": (40.4, 80.0), "window_sigmas": (1.0, 8.0)}[k]
        at_bound = recs[1]["design"][k] in (lo, hi) or step[i] == 0
        assert at_bound or np.sign(step[i]) == -np.sign(g[i]), (k, step, g)
    text = write_report(tmp_path / "g").read_text()
    assert "cell (mm) | time window (sigma_t)" in text and "core rms E_rec/E - 1" in text
    lg = run_continuous(_cfg("lgso", iterations=1, **cont), tmp_path / "l", progress=False, log=lambda m: None)
    rows = lg.records()
    meta = lg.get_meta("iteration_0000")
    lg.close()
    assert len(rows) == 2 * 4 + 1 and all(set(r["design"]) == set(cfg.stack_parameters) for r in rows)
    assert all(40.4 <= r["design"]["cell_mm"] <= 80.0 and 1.0 <= r["design"]["window_sigmas"] <= 8.0 for r in rows)
    assert meta["parameters"] == list(cfg.stack_parameters) and len(meta["record"]["proposal_mm"]) == 4


def test_energy_network_as_the_reconstruction(tmp_path):
    """reconstruction = "network": the gradient study trains the Flax energy network at a refit, stores it
    in the step's metrics and differentiates the next step through the stored network (recomputed from
    the journal: the same value); an L-GSO iteration keeps its network in the iteration's meta."""
    from diffcalo.design_gradient import NetCalibration
    from diffcalo.study.continuous import reconstruction

    cfg = _cfg("gradient", iterations=2, reconstruction="network")
    j = run_continuous(cfg, tmp_path / "g", progress=False, log=lambda m: None)
    recs = j.records()
    j.close()
    assert [r["metrics"]["refit"] for r in recs] == [True, False]
    stored = recs[0]["metrics"]["calibration"]
    assert stored["kind"] == "energy_network" and recs[1]["metrics"]["calibration"] == stored
    assert isinstance(reconstruction(stored), NetCalibration)
    again = gradient_call(cfg, recs[1]["design"], recs[1]["seed"], calibration=stored)
    assert again["fom"] == pytest.approx(recs[1]["fom"], rel=1e-6)
    assert 0 < recs[1]["fom"] < 0.01                      # a trained network: about 4-6 % resolution, not 100 %
    lg = run_continuous(_cfg("lgso", iterations=1, reconstruction="network"), tmp_path / "l", progress=False,
                        log=lambda m: None)
    meta = lg.get_meta("iteration_0000")
    lg.close()
    assert meta["calibration"]["kind"] == "energy_network" and np.isfinite(meta["record"]["value"])
