r"""Running a study: an ask/tell optimiser or a list of designs, evaluated by an executor, recorded in
the journal.

The driver loop keeps up to ``workers`` evaluations in flight. Each evaluation is added to the
journal (pending) before it is submitted, marked running when submitted and done or failed when its
result arrives; the optimiser is told every result. On ``resume`` the journal is replayed into a
fresh optimiser (done and failed evaluations are told, pending ones re-submitted first, and the ones
that were running when the driver died are re-queued), so a killed study finishes with exactly the
planned number of evaluations, none lost or run twice.

Executors (:func:`make_executor`): ``inprocess`` (default; evaluations run one at a time in the
driver), ``process`` (a pool of spawned worker processes) and ``dask`` (``distributed``: a
``LocalCluster`` of single-threaded worker processes, or an existing scheduler by address; for
Slurm / HTCondor sites start the cluster with ``dask-jobqueue`` and pass its scheduler address).
Worker processes of a local pool or LocalCluster are pinned to one CPU each (:func:`pin_to_cpu`; XLA
sizes its thread pool from the CPU affinity) and run BLAS single-threaded (:data:`WORKER_ENV`), so N
workers use N cores without oversubscription; on an existing Dask cluster the cluster's own resource
settings apply. Every evaluation uses the study seed (common random numbers:
differences between designs are not blurred by sampling noise) and runs with one XLA thread (the
in-process executor pins the driver too, if JAX has not started in it yet), so the same study gives
the same results whichever executor runs it.

A Dask worker that dies mid-task (segfault, out of memory) is replaced by its nanny and the task is
re-run; a task that has killed four workers is recorded as failed with ``KilledWorker`` and the study
goes on. Dask counts every task that was on a dying worker as suspicious, so an evaluation that kept
a neighbour company on a worker killed by another can be recorded failed too: its error text says
``KilledWorker`` and it can be re-run by hand in a sweep.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import pathlib
import time
import traceback

from diffcalo.study.config import FIGURES_OF_MERIT, StudyConfig
from diffcalo.study.journal import Journal, JournalError

from diffcalo.errors import DiffcaloError

__all__ = ["run_study", "make_executor", "WORKER_ENV", "StudyError"]

#: Environment of worker processes: one thread each for the BLAS libraries. (XLA ignores its old
#: ``intra_op_parallelism_threads`` flag — measured with jax 0.10: a worker with it still kept two
#: cores busy — and sizes its CPU thread pool from the process's CPU affinity, so workers of a local
#: pool or LocalCluster are also pinned to one CPU each: :func:`pin_to_cpu`.)
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class StudyError(DiffcaloError, RuntimeError):
    """A study that cannot run or resume; the message says why."""


def pin_to_cpu(index: int) -> int | None:
    """Pin the calling process (every thread it has now, and so the ones they start) to one CPU: the
    ``index``-th (modulo their number) of the CPUs it may use. Returns the CPU, or None where the OS
    has no affinity control. Call it before JAX starts its CPU client (the first computation)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    cpu = cpus[index % len(cpus)]
    _set_affinity({cpu})
    return cpu


def _set_affinity(cpus) -> None:
    """Set the CPU affinity of every thread of this process (threads they start inherit it)."""
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:            # a thread that ended meanwhile
            pass


def _worker_init(counter=None):
    os.environ.update(WORKER_ENV)
    if counter is not None:
        with counter.get_lock():
            index = counter.value
            counter.value += 1
        pin_to_cpu(index)


def _pin_plugin():
    """A Dask worker plugin that pins each worker of a LocalCluster (names 0..n-1) to its own CPU
    (re-applied to a worker its nanny restarts)."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class PinWorkers(WorkerPlugin):
        name = "diffcalo-pin-to-cpu"

        def setup(self, worker):
            try:
                pin_to_cpu(int(worker.name))
            except (TypeError, ValueError):
                pass

    return PinWorkers()


def _call(objective, config, design, seed):
    """Run the objective in a worker; failures come back as a value, not an exception."""
    t0 = time.perf_counter()
    try:
        out = objective(config, design, seed)
        out.setdefault("timings", {}).setdefault("total", time.perf_counter() - t0)
        out["status"] = "done"
    except Exception as exc:                 # noqa: BLE001 - every failure is recorded
        out = dict(status="failed", error=f"{type(exc).__name__}: {exc}",
                   traceback=traceback.format_exc(limit=8), timings=dict(total=time.perf_counter() - t0))
    out["worker"] = f"{os.uname().nodename}:{os.getpid()}"
    return out


def _jax_started() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):        # another JAX: assume it has, and do not pin
        return True


class _InProcess:
    """Evaluations in the driver, one at a time. Like the workers of the other executors, the driver
    is pinned to one CPU while the study runs (when JAX has not started yet: XLA sizes its thread
    pool once, at start), because XLA's floating-point sums depend on its number of threads: one
    thread everywhere gives the same journal whichever executor, and whichever machine, runs the
    study (measured: the same layout's pi0 width 106.515 MeV with one thread, 106.344 with two)."""

    name = "inprocess"
    workers = 1

    def __init__(self):
        self._affinity = self._blas = None
        if hasattr(os, "sched_getaffinity") and not _jax_started():
            from threadpoolctl import threadpool_limits      # scikit-learn's dependency

            self._affinity = os.sched_getaffinity(0)
            pin_to_cpu(0)
            # BLAS pools started before the pinning would spin two threads on one CPU
            self._blas = threadpool_limits(limits=1)

    def submit(self, fn, *args):
        f = cf.Future()
        f.set_result(fn(*args))
        return f

    def wait(self, futures):
        return set(futures)

    def close(self):
        if self._blas is not None:
            self._blas.restore_original_limits()
            self._blas = None
        if self._affinity is not None:           # give the process its CPUs back (XLA keeps one thread)
            _set_affinity(self._affinity)
            self._affinity = None


class _Pool:
    name = "process"

    def __init__(self, workers):
        import multiprocessing

        self.workers = workers
        ctx = multiprocessing.get_context("spawn")
        self.pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                           initargs=(ctx.Value("i", 0),))

    def submit(self, fn, *args):
        return self.pool.submit(fn, *args)

    def wait(self, futures):
        done, _ = cf.wait(futures, return_when=cf.FIRST_COMPLETED)
        return done

    def close(self):
        self.pool.shutdown(cancel_futures=True)


class _Dask:
    name = "dask"

    def __init__(self, workers, scheduler=""):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise StudyError("executor 'dask' needs the dask extra: pip install -e '.[dask]'") from None
        self.cluster = None
        if scheduler:
            self.client = Client(scheduler)
        else:
            self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                        dashboard_address=None, env=WORKER_ENV)
            self.client = Client(self.cluster)
            self.client.register_plugin(_pin_plugin())
        self.workers = workers

    def submit(self, fn, *args):
        return self.client.submit(fn, *args, pure=False, retries=1)

    def wait(self, futures):
        from distributed import wait

        done, _ = wait(list(futures), return_when="FIRST_COMPLETED")
        return set(done)

    def close(self):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make_executor(kind: str, workers: int = 1, scheduler: str = ""):
    """An executor by name ("inprocess", "process", "dask")."""
    if kind == "inprocess":
        return _InProcess()
    if kind == "process":
        return _Pool(workers)
    if kind == "dask":
        return _Dask(workers, scheduler)
    raise StudyError(f"executor = {kind!r}; allowed: inprocess, process, dask")


def _result_of(future):
    try:
        return future.result()
    except Exception as exc:     # noqa: BLE001 - a lost worker (Dask: KilledWorker after the retry)
        return dict(status="failed", error=f"{type(exc).__name__}: {exc}", timings={}, worker="")


def run_study(cfg: StudyConfig, run_dir, *, designs: list[dict] | None = None, resume: bool = False,
              objective=None, executor=None, progress: bool = True, log=print) -> Journal:
    """Run (or resume) a study into ``run_dir`` (journal.sqlite, config.json).

    Args:
        cfg: the validated study config (stored with the results; a resumed study must match it).
        designs: evaluate exactly these designs (a sweep) instead of asking the optimiser.
        resume: continue the journal in ``run_dir``.
        objective: ``f(config_dict, design, seed) -> dict(fom, cost, metrics, timings)``, a module-level
            function (workers import it); default :func:`diffcalo.study.objective.evaluate_design`.
        executor: an executor from :func:`make_executor` (default: the config's).

    Returns the (open) journal.
    """
    from surrogates.bayesopt import BayesianOptimizer, RandomSearch

    from diffcalo.study.objective import design_space, evaluate_design

    run_dir = pathlib.Path(run_dir)
    objective = objective or evaluate_design
    cfg_dict = cfg.as_dict()
    jpath = run_dir / "journal.sqlite"
    if resume:
        journal = Journal.open(jpath)
        if journal.config != json.loads(json.dumps(cfg_dict, sort_keys=True)):
            raise StudyError(f"{jpath}: the study config differs from the one the journal was started with; "
                             "resume with the same config (its copy is in config.json)")
        requeued = journal.requeue_running()
        if requeued:
            log(f"resume: {requeued} evaluation(s) that were running are queued again")
    else:
        journal = Journal.create(jpath, cfg_dict)
        (run_dir / "config.json").write_text(json.dumps(cfg_dict, indent=1))
    space = design_space(cfg)
    minimize = FIGURES_OF_MERIT[cfg.figure_of_merit] == "minimise"
    if cfg.optimizer == "gp":
        opt = BayesianOptimizer(space, seed=cfg.seed, minimize=minimize, n_initial=cfg.initial)
    else:
        opt = RandomSearch(space, seed=cfg.seed, minimize=minimize)
    planned = len(designs) if designs is not None else cfg.evaluations
    for r in journal.records():                       # replay
        if r["status"] == "done":
            opt.tell(r["design"], r["fom"])
        elif r["status"] == "failed":
            opt.tell(r["design"], None)
        else:
            opt.pending.append(r["design"])
    own = executor is None
    executor = executor or make_executor(cfg.executor, cfg.workers, cfg.scheduler)
    in_flight: dict = {}
    from tqdm.auto import tqdm

    counts = journal.counts()
    bar = tqdm(total=planned, initial=counts["done"] + counts["failed"], desc=cfg.name, unit="eval",
               disable=not progress)
    try:
        while True:
            counts = journal.counts()
            total = sum(counts.values())
            if counts["done"] + counts["failed"] >= planned and not in_flight:
                break
            free = executor.workers - len(in_flight)
            queued = [r for r in journal.records("pending") if r["id"] not in in_flight.values()][:free]
            n_new = min(free - len(queued), planned - total)
            if n_new > 0:
                if designs is not None:
                    new = designs[total:total + n_new]
                else:
                    new = opt.ask(n_new)
                ids = journal.add(new, [cfg.seed] * len(new))
                queued += [dict(id=i, design=d, seed=cfg.seed) for i, d in zip(ids, new)]
            for r in queued:
                journal.start(r["id"], executor.name)
                fut = executor.submit(_call, objective, cfg_dict, r["design"], r["seed"])
                in_flight[fut] = r["id"]
            if not in_flight:
                raise StudyError("nothing to run: the optimiser proposed no design")
            for fut in executor.wait(list(in_flight)):
                eid = in_flight.pop(fut)
                res = _result_of(fut)
                design = next(r["design"] for r in journal.records() if r["id"] == eid)
                if res["status"] == "done":
                    journal.finish(eid, fom=res["fom"], cost=res.get("cost"), metrics=res.get("metrics", {}),
                                   timings=res.get("timings", {}), worker=res.get("worker", ""))
                    opt.tell(design, res["fom"])
                else:
                    journal.fail(eid, res["error"], timings=res.get("timings"), worker=res.get("worker", ""))
                    opt.tell(design, None)
                    log(f"evaluation {eid} failed: {res['error']}")
                best = opt.best
                bar.update(1)
                if best[1] is not None:
                    bar.set_postfix(best=f"{best[1]:.4g}", failed=journal.counts()["failed"])
    finally:
        bar.close()
        if own:
            executor.close()
    return journal


def load_journal(run_dir) -> Journal:
    """Open the journal of a run directory (clear error if there is none)."""
    path = pathlib.Path(run_dir) / "journal.sqlite"
    if not path.exists():
        raise JournalError(f"{run_dir}: no journal.sqlite here (not a study run directory)")
    return Journal.open(path)
