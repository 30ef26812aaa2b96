r"""Running a study: an ask/tell optimiser or a list of designs, evaluated by an executor, recorded in
the journal.

The optimiser proposes ``[optimizer] batch`` designs at a time; each is added to the journal
(pending, with its batch number) before it is submitted, marked running when submitted and done or
failed when its result arrives. When the whole batch is done the optimiser is told its results in
journal order and asked for the next batch. The proposals therefore depend only on the seed and
the results, not on which worker finished first, and a resume (the journal replayed batch by batch
into a fresh optimiser; the rows that were running when the driver died re-queued) continues
exactly where the uninterrupted run would be: same designs, nothing lost or run twice. A sweep
evaluates its stored design list in order, ``workers`` at a time. One driver per run directory
(:mod:`diffcalo.study.lock`).

Executors (:mod:`diffcalo.study.executors`): ``inprocess`` (default), ``process`` or ``dask``, every
evaluating process pinned to one CPU, so the same study gives the same journal whichever executor
runs it. Every evaluation uses the study seed (common random numbers: differences between designs
are not blurred by sampling noise).

Re-evaluation (``[optimizer] reevaluate_top = k``). After the search the k evaluated designs with the
best posterior mean (:meth:`~surrogates.bayesopt.BayesianOptimizer.top`, a GP of all the search's
evaluations) are evaluated again with ``reevaluate_seeds`` fresh seeds each (:data:`FRESH_SEEDS`, ...:
seeds no search evaluation used, the same for every design). They form one extra batch whose number is
recorded in the journal's meta (``reevaluation``) before its rows exist, so a resume finishes it; they
are never told to the optimiser and reports show them apart from the search (:func:`split_records`):
their mean is free of the winner's curse that biases the best observed value.

Noise (``[optimizer] noise = "known"``): every finished evaluation is told with its figure of merit's
statistical error squared as its noise variance.

A Dask worker that dies mid-task (segfault, out of memory) is replaced by its nanny and the task is
re-run; a task that has killed four workers is recorded as failed with ``KilledWorker`` and the study
goes on. Dask counts every task that was on a dying worker as suspicious, so an evaluation that kept
a neighbour company on a worker killed by another can be recorded failed too: its error text says
``KilledWorker`` and it can be re-run by hand in a sweep.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import time
import traceback

from diffcalo.errors import StudyError
from diffcalo.study.config import FIGURES_OF_MERIT, StudyConfig
from diffcalo.study.executors import make_executor
from diffcalo.study.journal import Journal, JournalError

__all__ = ["run_study", "run_in_directory", "load_journal", "split_records", "RESUMABLE_CHANGES", "FIRST_EVALUATION_NOTE",
           "FRESH_SEEDS"]

#: First seed of re-evaluations (fresh seeds FRESH_SEEDS, FRESH_SEEDS + 1, ...; searches use the study seed,
#: below 1000 in every study shipped).
FRESH_SEEDS = 1000

#: Shown until the first result: a new process compiles the simulator and the networks first (measured
#: single-threaded on the 2-core machines here: ~40 s, up to ~90 s under load), and again for the other
#: number of readout sections.
FIRST_EVALUATION_NOTE = "the first evaluation of each worker compiles the simulator and networks (~40-90 s)"

def _call(objective, config, design, seed):
    """Run the objective in a worker; failures come back as a value, not an exception."""
    from diffcalo.jaxcache import trim_compiled_code

    trim_compiled_code()          # a long-lived worker would otherwise run out of memory mappings
    t0 = time.perf_counter()
    try:
        out = objective(config, design, seed)
        fom = out.get("fom")
        if not isinstance(fom, (int, float)) or not math.isfinite(fom):
            raise FloatingPointError(f"the objective returned fom = {fom!r} (a finite number is needed)")
        out.setdefault("timings", {}).setdefault("total", time.perf_counter() - t0)
        out["status"] = "done"
    except Exception as exc:                 # noqa: BLE001 - every failure is recorded
        out = dict(status="failed", error=f"{type(exc).__name__}: {exc}",
                   traceback=traceback.format_exc(limit=8), timings=dict(total=time.perf_counter() - t0))
    out["worker"] = f"{os.uname().nodename}:{os.getpid()}"
    return out


def _result_of(future):
    try:
        return future.result()
    except Exception as exc:     # noqa: BLE001 - a lost worker (Dask: KilledWorker after the retry)
        return dict(status="failed", error=f"{type(exc).__name__}: {exc}", timings={}, worker="")


#: Settings that do not change a study's results (where and how many processes evaluate): a resume may
#: change them.
RESUMABLE_CHANGES = ("executor", "workers", "scheduler")


def _config_differences(stored: dict, now: dict) -> list[str]:
    keys = sorted((set(stored) | set(now)) - set(RESUMABLE_CHANGES))
    return [f"{k}: journal {stored.get(k, '(absent)')!r}, now {now.get(k, '(absent)')!r}" for k in keys
            if stored.get(k) != now.get(k)]


def _open_journal(cfg_dict: dict, run_dir: pathlib.Path, designs, resume: bool, log) -> Journal:
    """The run directory's journal: created for a new study (with the sweep's design list), or opened
    and checked for a resumed one (same config, same design list, a version that can be replayed)."""
    from diffcalo.io import write_text_atomic

    jpath = run_dir / "journal.sqlite"
    mode = "sweep" if designs is not None else "optimize"
    canonical = json.loads(json.dumps(designs, sort_keys=True)) if designs is not None else None
    if resume and jpath.exists():
        journal = Journal.open(jpath)
        try:
            if journal.version < 2:
                raise StudyError(f"{jpath}: a version-{journal.version} journal (an older diffcalo): its proposals "
                                 "cannot be replayed; its report still works (diffcalo report), start a new run "
                                 "directory to continue the study")
            diff = _config_differences(journal.config, json.loads(json.dumps(cfg_dict, sort_keys=True)))
            if diff:
                raise StudyError(f"{jpath}: the study config differs from the one the journal was started with "
                                 f"({'; '.join(diff)}); resume with the same config (its copy is in config.json)")
            stored_mode = journal.get_meta("mode", "optimize")
            if stored_mode != mode:
                raise StudyError(f"{jpath}: this run directory holds a study run by 'diffcalo {stored_mode}'; resume it with "
                                 f"'diffcalo {stored_mode} ... --resume'")
            if canonical is not None:
                stored = journal.get_meta("designs")
                if stored != canonical:
                    n = len(stored or [])
                    first = next((i for i, (a, b) in enumerate(zip(stored or [], canonical)) if a != b),
                                 min(n, len(canonical)))
                    raise StudyError(f"{jpath}: the sweep's design list differs from the one the journal was started "
                                     f"with ({n} designs stored, {len(canonical)} given; first difference at design "
                                     f"{first}); resume with the same --designs / --lhs, or start a new run directory")
        except BaseException:
            journal.close()
            raise
        requeued = journal.requeue_running()
        if requeued:
            log(f"resume: {requeued} evaluation(s) that were running are queued again")
        return journal
    if resume:
        log(f"resume: {run_dir} has no journal yet (the study never started): starting it")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.json", json.dumps(cfg_dict, indent=1))
    journal = Journal.create(jpath, cfg_dict)
    try:
        journal.set_meta("mode", mode)
        if canonical is not None:
            journal.set_meta("designs", canonical)
    except BaseException:
        journal.close()
        raise
    return journal


def run_study(cfg: StudyConfig, run_dir, *, designs: list[dict] | None = None, resume: bool = False,
              objective=None, executor=None, progress: bool = True, log=print) -> Journal:
    """Run (or resume) a study into ``run_dir`` (journal.sqlite, config.json).

    The optimiser proposes ``cfg.batch`` designs at a time and is told their results together, in
    journal order, once the whole batch is done; the next batch is asked only then. So the proposals
    depend only on the seed and the results, never on which worker finished first: any number of
    workers, and a killed-and-resumed run (the journal replayed batch by batch into a fresh
    optimiser, :meth:`~surrogates.bayesopt.BayesianOptimizer.record_ask`), give the journal of the
    uninterrupted run bit for bit. Workers beyond the batch size would idle. A sweep evaluates its
    designs in list order, ``workers`` at a time; its list is stored in the journal and a resume
    with another list is refused. One driver per run directory (:class:`~diffcalo.study.lock.RunLock`).

    Args:
        cfg: the validated study config (stored with the results; a resumed study must match it).
        designs: evaluate exactly these designs (a sweep) instead of asking the optimiser.
        resume: continue the journal in ``run_dir`` (or start it, if the study never started).
        objective: ``f(config, design, seed) -> dict(fom, cost, metrics, timings)``, ``config`` this
            :class:`~diffcalo.study.config.StudyConfig` (picklable, sent as it is); a module-level
            function (workers import it); default :func:`diffcalo.study.objective.evaluate_design`.
        executor: an executor from :func:`make_executor` (default: the config's).

    Returns the (open) journal.

    Raises:
        RunLockedError: another driver runs this directory.
        StudyError: the journal cannot be resumed with this config or design list.
    """
    from diffcalo.study.objective import evaluate_design

    objective = objective or evaluate_design
    if designs is None:
        from diffcalo.study.design import design_space

        design_space(cfg)        # an empty space (regions that cannot fit the wall) fails before any journal exists
    return run_in_directory(cfg, run_dir, designs, resume, executor, log,
                            lambda journal, ex: _drive(cfg, journal, designs, objective, ex, progress, log))


def run_in_directory(cfg: StudyConfig, run_dir, designs, resume: bool, executor, log, drive) -> Journal:
    """The frame of every study run: the run directory checked and locked, the executor started (before
    the journal: a study whose executor cannot start leaves no journal behind), the journal created or
    reopened (:func:`_open_journal`), ``drive(journal, executor)`` called; the journal is returned open
    (closed on any error), the executor closed if it was made here."""
    from diffcalo.study.lock import RunLock

    run_dir = pathlib.Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise StudyError(f"{run_dir}: is a file, not a run directory; choose another output directory")
    with RunLock(run_dir, log=log):
        own = executor is None
        executor = executor or make_executor(cfg.executor, cfg.workers, cfg.scheduler, log=log)
        try:
            journal = _open_journal(cfg.as_dict(), run_dir, designs, resume, log)
            try:
                drive(journal, executor)
            except BaseException:
                journal.close()
                raise
        finally:
            if own:
                executor.close()
    return journal


def _make_optimizer(cfg: StudyConfig):
    from diffcalo.study.design import design_space
    from surrogates.bayesopt import BayesianOptimizer, RandomSearch

    space = design_space(cfg)
    minimize = FIGURES_OF_MERIT[cfg.figure_of_merit] == "minimise"
    if cfg.optimizer == "gp":
        return BayesianOptimizer(space, seed=cfg.seed, minimize=minimize, n_initial=cfg.initial,
                                 acquisition=cfg.acquisition, noise=cfg.noise)
    return RandomSearch(space, seed=cfg.seed, minimize=minimize)


def split_records(journal) -> tuple[list[dict], list[dict]]:
    """A journal's records as (search evaluations, re-evaluations of the top designs), module docstring."""
    recs = journal.records()
    meta = journal.get_meta("reevaluation")
    if not meta:
        return recs, []
    return ([r for r in recs if r["batch"] != meta["batch"]], [r for r in recs if r["batch"] == meta["batch"]])


def _noise_of(cfg: StudyConfig, row: dict):
    """The noise variance told with a finished evaluation under ``noise = "known"`` (else None)."""
    from diffcalo.study.config import FOM_ERRORS

    if cfg.noise != "known" or row["status"] != "done":
        return None
    err = (row.get("metrics") or {}).get(FOM_ERRORS[cfg.figure_of_merit])
    if not isinstance(err, (int, float)) or not math.isfinite(err) or err < 0:
        raise StudyError(f"evaluation {row['id']}: [optimizer] noise = 'known' needs the metric "
                         f"{FOM_ERRORS[cfg.figure_of_merit]!r}, found {err!r}")
    return float(err) ** 2


def _drive(cfg, journal, designs, objective, executor, progress, log) -> None:
    from tqdm.auto import tqdm

    opt = _make_optimizer(cfg) if designs is None else None
    batch_size = cfg.batch if designs is None else executor.workers
    planned = len(designs) if designs is not None else cfg.evaluations
    if designs is None and executor.workers > cfg.batch:
        log(f"note: {executor.workers} workers but [optimizer] batch = {cfg.batch}: only {cfg.batch} evaluate at "
            "once (the optimiser proposes a batch only when the previous one is done)")

    def tell(rows):
        if opt is not None:
            opt.tell([r["design"] for r in rows], [r["fom"] if r["status"] == "done" else None for r in rows],
                     noise=[_noise_of(cfg, r) for r in rows])

    # replay the journal: every recorded batch was one ask; finished batches are told in id order
    recs, again = split_records(journal)
    by_batch: dict[int, list[dict]] = {}
    for r in recs:
        by_batch.setdefault(r["batch"], []).append(r)
    open_rows: list[dict] = []
    if None in by_batch:
        raise StudyError(f"{journal.path}: evaluations {[r['id'] for r in by_batch[None]]} have no proposal batch "
                         "(the journal was edited?); start a new run directory")
    for k in sorted(by_batch):
        rows = by_batch[k]
        if opt is not None:
            try:
                opt.record_ask([r["design"] for r in rows])
            except ValueError as exc:            # SpaceError: a design that is not of this study's space
                raise StudyError(f"{journal.path}: evaluations {[r['id'] for r in rows]} (batch {k}): {exc} "
                                 "(the journal was edited?)") from None
        if all(r["status"] in ("done", "failed") for r in rows):
            tell(rows)
        elif open_rows:
            raise StudyError(f"{journal.path}: batches {sorted(b for b, rs in by_batch.items() if any(r['status'] in ('pending', 'running') for r in rs))} "
                             "are all unfinished; a driver never starts a batch before the previous one is done "
                             "(the journal was edited?)")
        else:
            open_rows = rows
    next_batch = max(by_batch, default=-1) + 1
    n_recorded = len(recs)
    counts = journal.counts()
    n_again = cfg.reevaluate_top * cfg.reevaluate_seeds if opt is not None else 0
    bar = tqdm(total=planned + n_again, initial=counts["done"] + counts["failed"], desc=cfg.name, unit="eval",
               disable=not progress)
    if progress:
        bar.set_postfix_str(FIRST_EVALUATION_NOTE)
    try:
        while True:
            if not open_rows:
                if n_recorded >= planned:
                    break
                n = min(batch_size, planned - n_recorded)
                new = designs[n_recorded:n_recorded + n] if designs is not None else opt.ask(n)
                if len(new) != n:
                    raise StudyError(f"the optimiser proposed {len(new)} designs, {n} were asked for")
                ids = journal.add(new, [cfg.seed] * n, batch=next_batch)
                next_batch += 1
                n_recorded += n
                open_rows = [r for r in journal.records("pending") if r["id"] in set(ids)]
            _run_batch(open_rows, journal, executor, objective, cfg, bar, opt, log)
            ids = {r["id"] for r in open_rows}
            tell([r for r in journal.records() if r["id"] in ids])
            open_rows = []
        if n_again:
            _reevaluate_top(cfg, journal, opt, next_batch, executor, objective, bar, log)
    finally:
        bar.close()


def _reevaluate_top(cfg, journal, opt, next_batch, executor, objective, bar, log) -> None:
    """The re-evaluation batch (module docstring): planned once (meta first, then the rows), resumed
    from the journal."""
    meta = journal.get_meta("reevaluation")
    if not meta:
        if not any(v is not None for v in opt.values):
            log("re-evaluation skipped: no successful evaluation")
            return
        tops = opt.top(cfg.reevaluate_top)
        seeds = [FRESH_SEEDS + j for j in range(cfg.reevaluate_seeds)]
        meta = dict(batch=next_batch, seeds=seeds, designs=[t["design"] for t in tops],
                    posterior=[dict(mean=t["mean"], sd=t["sd"]) for t in tops])
        journal.set_meta("reevaluation", meta)
        log(f"re-evaluating the {len(tops)} design(s) with the best posterior mean with {len(seeds)} fresh seeds "
            f"each ({', '.join(map(str, seeds))})")
    if not any(r["batch"] == meta["batch"] for r in journal.records()):
        designs = [d for d in meta["designs"] for _ in meta["seeds"]]
        journal.add(designs, [s for _ in meta["designs"] for s in meta["seeds"]], batch=meta["batch"])
    rows = [r for r in journal.records() if r["batch"] == meta["batch"]]
    _run_batch(rows, journal, executor, objective, cfg, bar, opt, log)


def _run_batch(rows, journal, executor, objective, cfg, bar, opt, log, keep=None) -> None:
    """Evaluate the unfinished rows of one batch, ``executor.workers`` at a time. ``keep(eid, result)``, if
    given, is called with each successful result before the journal marks it done (a continuous study
    stores the simulator rows there)."""
    queue = [r for r in rows if r["status"] == "pending"]
    in_flight: dict = {}
    while queue or in_flight:
        while queue and len(in_flight) < executor.workers:
            r = queue.pop(0)
            journal.start(r["id"], executor.name)
            in_flight[executor.submit(_call, objective, cfg, r["design"], r["seed"])] = r["id"]
        for fut in executor.wait(list(in_flight)):
            eid = in_flight.pop(fut)
            res = _result_of(fut)
            if res["status"] == "done":
                if keep is not None:
                    keep(eid, res)
                journal.finish(eid, fom=res["fom"], cost=res.get("cost"), metrics=res.get("metrics", {}),
                               timings=res.get("timings", {}), worker=res.get("worker", ""))
            else:
                journal.fail(eid, res["error"], timings=res.get("timings"), worker=res.get("worker", ""))
                log(f"evaluation {eid} failed: {res['error']}")
            bar.update(1)
            best = journal.best_fom(minimize=opt.minimize) if opt is not None else None
            if best is not None:
                bar.set_postfix(best=f"{best:.4g}", failed=journal.counts()["failed"])


def load_journal(run_dir) -> Journal:
    """Open the journal of a run directory (clear error if there is none)."""
    path = pathlib.Path(run_dir) / "journal.sqlite"
    if not path.exists():
        raise JournalError(f"{run_dir}: no journal.sqlite here (not a study run directory)")
    return Journal.open(path)
