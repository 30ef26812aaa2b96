r"""The flagship study: where do SpaCal-W 1.5 cm, SpaCal-Pb 3 cm and Shashlik 4 / 6 / 12 cm modules go on
the LHCb ECAL wall, and with what longitudinal split, for a fixed budget, at 40 collisions per crossing?

:func:`run_flagship` runs the GP Bayesian optimiser and random search with the same number of
evaluations, evaluates the reference layouts (the current LHCb ECAL and the hand-made Upgrade II
baseline, :data:`~diffcalo.study.objective.BASELINES`) with the same samples, reconstruction and
figure of merit, writes a report for each run and a comparison (``summary.md``).

:data:`QUICK` is the embedded configuration of ``diffcalo demo`` (a few minutes on 2 cores, no Pythia,
no Geant4, no network); ``studies/lhcb_ecal_upgrade2/study.toml`` is the full study.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time

from diffcalo.study.config import FIGURES_OF_MERIT, StudyConfig, study_config_from_dict

__all__ = ["QUICK", "run_flagship", "summary_text"]

#: The quick variant (``diffcalo demo``): small samples, 12 evaluations per optimiser.
QUICK = {
    "study": {"name": "lhcb-ecal-upgrade2-quick", "seed": 0, "figure_of_merit": "pi0_resolution", "collisions": 40.0},
    "wall": {"layout": "lhcb-upgrade2-baseline"},
    "design": {"regions": 3, "options": ["spacal-w:15.15", "spacal-pb:30.3", "shashlik:40.4", "shashlik:60.6",
                                         "shashlik:121.2"], "max_ring": 12, "split": True},
    "budget": {"total": 16100.0},
    "samples": {"train_photons": 6000, "signal_decays": 10000, "photon_energy": [1.0, 100.0]},
    "reco": {"epochs": 6, "batch_size": 256},
    "optimizer": {"kind": "gp", "evaluations": 12, "batch": 1, "initial": 6},
    "executor": {"kind": "inprocess", "workers": 1},
}


def _evaluate_baselines(cfg: StudyConfig, executor, log, progress: bool = True) -> dict:
    """The reference layouts, evaluated by the study's executor (same thread settings as the designs)."""
    from diffcalo.progress import phase
    from diffcalo.study.objective import BASELINES
    from diffcalo.study.runner import FIRST_EVALUATION_NOTE

    with phase(f"evaluating the {len(BASELINES)} reference layouts ({FIRST_EVALUATION_NOTE})",
               enabled=progress):
        return _baselines(cfg, executor, log)


def _baselines(cfg: StudyConfig, executor, log) -> dict:
    from diffcalo.layout import preset
    from diffcalo.study.design import describe_preset
    from diffcalo.study.objective import BASELINES, evaluate_preset
    from diffcalo.study.report import format_fom
    from diffcalo.study.runner import _call, _result_of

    t0 = time.perf_counter()
    pending = {executor.submit(_call, evaluate_preset, cfg, name, cfg.seed): name for name in BASELINES}
    out = {}
    while pending:
        for fut in executor.wait(list(pending)):
            name = pending.pop(fut)
            res = _result_of(fut)
            cost = preset(name).cost()
            if res["status"] == "done":
                out[name] = dict(fom=res["fom"], cost=res["cost"], metrics=res["metrics"], timings=res["timings"],
                                 within_budget=res["cost"] <= cfg.budget)
            else:
                out[name] = dict(error=res["error"], cost=cost)
            result = (format_fom(cfg.figure_of_merit, res["fom"], res["metrics"]) if "fom" in out[name]
                      else f"failed: {res['error']}")
            log(f"baseline {describe_preset(name)}: {result} ({time.perf_counter() - t0:.0f} s)")
    return {name: out[name] for name in BASELINES}


def run_flagship(cfg: StudyConfig | dict, out_dir, *, resume: bool = False, executor=None, progress: bool = True,
                 log=print) -> pathlib.Path:
    """Run the baselines and the GP and random-search studies into ``out_dir`` with one executor (the
    config's unless given); returns summary.md."""
    from diffcalo.study.executors import make_executor
    from diffcalo.study.lock import RunLock

    cfg = cfg if isinstance(cfg, StudyConfig) else study_config_from_dict(cfg)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with RunLock(out, log=log):
        own = executor is None
        executor = executor or make_executor(cfg.executor, cfg.workers, cfg.scheduler)
        try:
            return _run(cfg, out, resume, executor, progress, log, t0)
        finally:
            if own:
                executor.close()


def _run(cfg, out, resume, executor, progress, log, t0) -> pathlib.Path:
    from diffcalo.io import write_text_atomic
    from diffcalo.study.report import write_report
    from diffcalo.study.runner import run_study

    bpath = out / "baselines.json"
    if resume and bpath.exists():
        baselines = json.loads(bpath.read_text())
    else:
        baselines = _evaluate_baselines(cfg, executor, log, progress)
        write_text_atomic(bpath, json.dumps(baselines, indent=1))
    runs = {}
    for kind in ("gp", "random"):
        c = dataclasses.replace(cfg, optimizer=kind, name=f"{cfg.name}-{kind}")
        run_dir = out / kind
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "baselines.json", json.dumps(baselines, indent=1))
        log(f"{kind}: {c.evaluations} evaluations")
        j = run_study(c, run_dir, resume=resume, executor=executor,
                      progress=progress, log=log)
        runs[kind] = j.records()
        j.close()
        write_report(run_dir)
    return write_text_atomic(out / "summary.md", summary_text(cfg, runs, baselines, time.perf_counter() - t0))


def summary_text(cfg: StudyConfig, runs: dict, baselines: dict, wall_time_s: float) -> str:
    """The comparison (``summary.md``): the best design of each optimiser and the baselines, designs in
    words, the figure of merit with its unit and statistical error, the cost.

    Args:
        cfg: the study config.
        runs: optimiser kind ("gp", "random") -> its journal records.
        baselines: preset name -> dict(fom, cost, metrics, within_budget) or dict(error, cost).
        wall_time_s: the study's wall time in seconds.
    """
    from diffcalo.study.design import describe_design, describe_preset
    from diffcalo.study.report import fom_label, format_fom

    fname = cfg.figure_of_merit
    pick = min if FIGURES_OF_MERIT[fname] == "minimise" else max
    names = {"gp": "GP-BO", "random": "random search"}
    lines = [f"# {cfg.name}: GP-BO vs random search vs baselines", "",
             f"Figure of merit: {fom_label(fname)} ({fname}, {FIGURES_OF_MERIT[fname]}), "
             f"{cfg.collisions:g} collisions per crossing, budget {cfg.budget:g} kCHF, {cfg.evaluations} evaluations "
             f"per optimiser, seed {cfg.seed}. Wall time {wall_time_s:.0f} s. Errors are statistical (one sigma).", "",
             "Designs from the beam outwards: technology and cell size per region, the ring of modules each inner "
             "region adds on each side, and whether segmented technologies are read in their sections (split) or as one.",
             "",
             f"| | design | {fom_label(fname)} | cost (kCHF) |", "|---|---|---|---|"]
    for kind, recs in runs.items():
        done = [r for r in recs if r["status"] == "done"]
        if done:
            b = pick(done, key=lambda r: r["fom"])
            lines.append(f"| best of {names.get(kind, kind)} (evaluation {b['id']}) | {describe_design(cfg, b['design'])} | "
                         f"{format_fom(fname, b['fom'], b['metrics'], with_unit=False)} | {b['cost']:.0f} |")
    for name, b in baselines.items():
        val = format_fom(fname, b["fom"], b.get("metrics", {}), with_unit=False) if "fom" in b else \
            f"failed: {b.get('error', '')}"
        note = "" if b.get("within_budget", True) else " (over budget)"
        lines.append(f"| baseline | {describe_preset(name)} | {val} | {b['cost']:.0f}{note} |")
    lines += ["", "Reports: [gp/report.md](gp/report.md), [random/report.md](random/report.md)."]
    return "\n".join(lines) + "\n"
