r"""The flagship study: where do SpaCal-W 1.5 cm, SpaCal-Pb 3 cm and Shashlik 4 / 6 / 12 cm modules go on
the LHCb ECAL wall, and with what longitudinal split, for a fixed budget, at 40 collisions per crossing?

:func:`run_flagship` runs the GP Bayesian optimiser and random search with the same number of
evaluations, evaluates the reference layouts (the current LHCb ECAL and the hand-made Upgrade II
baseline, :data:`~diffcalo.study.objective.BASELINES`) with the same samples, reconstruction and
figure of merit, writes a report for each run and a comparison (``summary.md``).

The figure of merit is noisy (network training and samples: a few MeV from seed to seed), so a fair
comparison repeats each optimiser with ``replicas`` optimiser seeds (``cfg.seed``, ``cfg.seed + 1``, ...)
and re-evaluates the best observed design of every run, and the reference layouts, with ``reevaluate``
fresh seeds (:data:`FRESH_SEEDS`, never used by an optimiser; the same seeds for every design: common
random numbers). The best observed value of a run is biased low (the winner's curse: the luckiest of
many noisy draws); the re-evaluated mean is not. Differences are given in standard errors and called a
tie below 3.

:data:`QUICK` is the embedded configuration of ``diffcalo demo`` (a few minutes on 2 cores, no Pythia,
no Geant4, no network); ``studies/lhcb_ecal_upgrade2/study.toml`` is the full study.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time

import numpy as np

from diffcalo.study.config import FIGURES_OF_MERIT, StudyConfig, study_config_from_dict
from diffcalo.study.runner import FRESH_SEEDS

__all__ = ["QUICK", "FRESH_SEEDS", "run_flagship", "summary_text"]

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


def _reevaluate(cfg: StudyConfig, tasks: dict, seeds: list[int], executor, log, path: pathlib.Path) -> dict:
    """Evaluate every task (label -> ("preset", name) or ("design", design)) with each fresh seed; results
    (label -> {seed: fom or error}) are kept in ``path`` after each evaluation, so an interrupted run
    resumes where it stopped."""
    from diffcalo.io import write_text_atomic
    from diffcalo.study.objective import evaluate_design, evaluate_preset
    from diffcalo.study.runner import _call, _result_of

    done = json.loads(path.read_text()) if path.exists() else {}
    pending = {}
    for label, (kind, what) in tasks.items():
        entry = done.setdefault(label, {"what": what, "values": {}})
        if entry["what"] != what:                    # another design won this run: start its values afresh
            entry.update(what=what, values={})
        for seed in seeds:
            if str(seed) not in entry["values"]:
                fn = evaluate_preset if kind == "preset" else evaluate_design
                pending[executor.submit(_call, fn, cfg, what, seed)] = (label, seed)
    t0 = time.perf_counter()
    total = len(pending)
    while pending:
        for fut in executor.wait(list(pending)):
            label, seed = pending.pop(fut)
            res = _result_of(fut)
            done[label]["values"][str(seed)] = (dict(fom=res["fom"], metrics={k: v for k, v in res["metrics"].items()
                                                                                if k != "regions"})
                                                if res["status"] == "done" else dict(error=res["error"]))
            write_text_atomic(path, json.dumps(done, indent=1))
            log(f"re-evaluation {total - len(pending)}/{total}: {label}, seed {seed}: "
                f"{res.get('fom', res.get('error'))} ({time.perf_counter() - t0:.0f} s)")
    return {label: done[label] for label in tasks}


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
                 log=print, replicas: int = 1, reevaluate: int = 0) -> pathlib.Path:
    """Run the baselines and the GP and random-search studies into ``out_dir`` with one executor (the
    config's unless given); returns summary.md.

    Args:
        replicas: optimiser seeds per optimiser (cfg.seed, cfg.seed + 1, ...; runs in ``<kind>/seed<N>``
            when more than one).
        reevaluate: fresh seeds (:data:`FRESH_SEEDS` ...) with which each run's best observed design and
            the reference layouts are evaluated again (0: none).
    """
    for name, v, low in (("replicas", replicas, 1), ("reevaluate", reevaluate, 0)):
        if not (isinstance(v, int) and v >= low):
            raise ValueError(f"{name} = {v!r}: must be an integer >= {low}")
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
            return _run(cfg, out, resume, executor, progress, log, t0, replicas, reevaluate)
        finally:
            if own:
                executor.close()


def _run(cfg, out, resume, executor, progress, log, t0, replicas=1, reevaluate=0) -> pathlib.Path:
    from diffcalo.io import write_text_atomic
    from diffcalo.study.objective import BASELINES
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
        for r in range(replicas):
            seed = cfg.seed + r
            c = dataclasses.replace(cfg, optimizer=kind, name=f"{cfg.name}-{kind}", seed=seed)
            run_dir = out / kind if replicas == 1 else out / kind / f"seed{seed}"
            run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(run_dir / "baselines.json", json.dumps(baselines, indent=1))
            log(f"{kind}" + (f" (optimiser seed {seed})" if replicas > 1 else "") + f": {c.evaluations} evaluations")
            j = run_study(c, run_dir, resume=resume, executor=executor, progress=progress, log=log)
            runs[kind if replicas == 1 else f"{kind}:{seed}"] = j.records()
            j.close()
            write_report(run_dir)
    again = None
    if reevaluate:
        seeds = [FRESH_SEEDS + k for k in range(reevaluate)]
        pick = min if FIGURES_OF_MERIT[cfg.figure_of_merit] == "minimise" else max
        tasks = {name: ("preset", name) for name in BASELINES}
        for label, recs in runs.items():
            done = [rec for rec in recs if rec["status"] == "done"]
            if done:
                tasks[label] = ("design", pick(done, key=lambda rec: rec["fom"])["design"])
        log(f"re-evaluating {len(tasks)} designs with fresh seeds {seeds}")
        again = dict(seeds=seeds, results=_reevaluate(cfg, tasks, seeds, executor, log, out / "reevaluations.json"))
    return write_text_atomic(out / "summary.md", summary_text(cfg, runs, baselines, time.perf_counter() - t0,
                                                              reevaluations=again))


def summary_text(cfg: StudyConfig, runs: dict, baselines: dict, wall_time_s: float, *,
                 reevaluations: dict | None = None) -> str:
    """The comparison (``summary.md``): the best observed design of each optimiser run, the design its GP
    recommends (lowest posterior mean among the evaluated designs, :func:`~diffcalo.study.report.recommendation`)
    and the baselines, designs in words, the figure of merit with its unit and statistical error (the
    recommendation with the GP's posterior standard deviation), the cost; with ``reevaluations`` a
    second table of the same designs evaluated again with fresh seeds (mean and its standard error,
    differences in standard errors).

    Args:
        cfg: the study config.
        runs: run label -> its journal records; labels are the optimiser ("gp", "random") or the
            optimiser and its seed ("gp:1").
        baselines: preset name -> dict(fom, cost, metrics, within_budget) or dict(error, cost).
        wall_time_s: the study's wall time in seconds.
        reevaluations: dict(seeds=[...], results={label or preset name: {"what": ..., "values":
            {seed: dict(fom=...) or dict(error=...)}}}) as :func:`run_flagship` collects it.
    """
    from diffcalo.metrics import format_measurement
    from diffcalo.study.design import describe_design, describe_preset
    from diffcalo.study.report import fom_label, format_fom, recommendation

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
    def run_name(label):
        kind, _, seed = label.partition(":")
        return names.get(kind, kind) + (f" (optimiser seed {seed})" if seed else "")

    for label, recs in runs.items():
        done = [r for r in recs if r["status"] == "done"]
        if done:
            b = pick(done, key=lambda r: r["fom"])
            lines.append(f"| best observed of {run_name(label)} (evaluation {b['id']}) | "
                         f"{describe_design(cfg, b['design'])} | "
                         f"{format_fom(fname, b['fom'], b['metrics'], with_unit=False)} | {b['cost']:.0f} |")
            rec = recommendation(cfg, recs)
            if rec is not None:
                cost = next(r["cost"] for r in done if r["design"] == rec["design"])
                lines.append(f"| recommended by {run_name(label)} (GP posterior mean ± sd) | "
                             f"{describe_design(cfg, rec['design'])} | {format_measurement(rec['mean'], rec['sd'])} | "
                             f"{cost:.0f} |")
    for name, b in baselines.items():
        val = format_fom(fname, b["fom"], b.get("metrics", {}), with_unit=False) if "fom" in b else \
            f"failed: {b.get('error', '')}"
        note = "" if b.get("within_budget", True) else " (over budget)"
        lines.append(f"| baseline | {describe_preset(name)} | {val} | {b['cost']:.0f}{note} |")
    if reevaluations:
        lines += _reevaluation_lines(cfg, reevaluations, run_name, baselines)
    if all(":" not in label for label in runs):
        lines += ["", "Reports: [gp/report.md](gp/report.md), [random/report.md](random/report.md)."]
    else:
        lines += ["", "Reports: " + ", ".join(f"[{run_name(label)}]({label.replace(':', '/seed')}/report.md)"
                                             for label in runs) + "."]
    return "\n".join(lines) + "\n"


def _mean_sem(values):
    v = np.asarray(values, dtype=float)
    return (float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan"), v.size)


def _reevaluation_lines(cfg, again, run_name, baselines) -> list[str]:
    """The second table of :func:`summary_text`: every design again with the fresh seeds."""
    from diffcalo.metrics import measurement_parts
    from diffcalo.study.design import describe_design, describe_preset
    from diffcalo.study.report import fom_label

    fname = cfg.figure_of_merit
    lower_is_better = FIGURES_OF_MERIT[fname] == "minimise"
    seeds, results = again["seeds"], again["results"]

    def values(label):
        return [v["fom"] for v in results[label]["values"].values() if "fom" in v]

    def shown(stats):
        mean, sem, n = stats
        if n == 0:
            return "failed"
        if n == 1 or not np.isfinite(sem):
            return f"{mean:.4g} (n = 1, no error)"
        m, e = measurement_parts(mean, sem)
        return f"{m} ± {e} (n = {n})"

    lines = ["", f"## Re-evaluated with fresh seeds {', '.join(map(str, seeds))}", "",
             "Each run's best observed design and the reference layouts evaluated again with the same fresh seeds "
             "(new samples, pile-up and network training; never seen by an optimiser): mean ± standard error of "
             "the mean over seeds. The best observed values above are biased towards luck (the winner's curse); "
             "these are not.", "",
             f"| | design | {fom_label(fname)}, fresh seeds |", "|---|---|---|"]
    per_kind = {}
    for label, entry in results.items():
        stats = _mean_sem(values(label))
        if label in baselines or entry["what"] == label:
            lines.append(f"| baseline | {describe_preset(label)} | {shown(stats)} |")
        else:
            lines.append(f"| best of {run_name(label)} | {describe_design(cfg, entry['what'])} | {shown(stats)} |")
            if stats[2]:
                per_kind.setdefault(label.partition(":")[0], []).append(stats[0])
    ref = "lhcb-upgrade2-baseline" if "lhcb-upgrade2-baseline" in results else None
    lines.append("")
    if ref is not None:
        r_mean, r_sem, r_n = _mean_sem(values(ref))
        for label in results:
            if label == ref:
                continue
            mean, sem, n = _mean_sem(values(label))
            if n < 2 or r_n < 2:
                continue
            diff, err = mean - r_mean, float(np.hypot(sem, r_sem))
            z = abs(diff) / err if err > 0 else float("inf")
            better = (diff < 0) == lower_is_better
            name = describe_preset(label) if results[label]["what"] == label else f"best of {run_name(label)}"
            verdict = ("a tie (< 3 standard errors)" if z < 3 else
                       ("significantly better" if better else "significantly worse"))
            d, e = measurement_parts(diff, err)
            lines.append(f"- {name} vs the Upgrade II baseline: {d} ± {e} ({z:.1f} standard errors): {verdict}.")
    for kind, bests in per_kind.items():
        if len(bests) > 1:
            m, e = measurement_parts(*_mean_sem(bests)[:2])
            lines.append(f"- {run_name(kind)}: mean of the {len(bests)} runs' re-evaluated best designs {m} ± {e} "
                         "(spread over optimiser seeds).")
    return lines
