r"""Executors of a study's evaluations: in the driver, a process pool, or a Dask cluster.

:func:`make_executor` builds one by name (``inprocess``, ``process``, ``dask``); each has
``submit(fn, *args) -> future``, ``wait(futures) -> done`` and ``close()``. Every evaluating process
is pinned to one free CPU of its inherited affinity (:mod:`diffcalo.study.cpus`: XLA sizes its
thread pool from the affinity, and its sums depend on the thread count) and runs BLAS
single-threaded (:data:`WORKER_ENV`), so N workers use N cores without oversubscription and a study
gives the same results whichever executor runs it; pool workers end themselves when their driver
dies. Dask's own logging (nanny restarts, shutdown chatter) is kept to errors unless ``verbose``.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import time

from diffcalo.errors import StudyError
from diffcalo.study.cpus import claim_cpu, exit_with_parent, pinning_disabled

__all__ = ["make_executor", "WORKER_ENV"]

#: Environment of worker processes: one thread each for the BLAS libraries. (XLA ignores its old
#: ``intra_op_parallelism_threads`` flag — measured with jax 0.10: a worker with it still kept two
#: cores busy — and sizes its CPU thread pool from the process's CPU affinity, so workers of a local
#: pool or LocalCluster are also pinned to one CPU each: :func:`diffcalo.study.cpus.claim_cpu`.)
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _worker_init(counter=None):
    os.environ.update(WORKER_ENV)
    exit_with_parent()
    if counter is not None:
        with counter.get_lock():
            index = counter.value
            counter.value += 1
        claim_cpu(index)          # held (its lock file open) until the worker exits


def _pin_plugin():
    """A Dask worker plugin that pins each worker of a LocalCluster (names 0..n-1) to its own free CPU
    (re-applied to a worker its nanny restarts)."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class PinWorkers(WorkerPlugin):
        name = "diffcalo-pin-to-cpu"

        def setup(self, worker):
            try:
                index = int(worker.name)
            except (TypeError, ValueError):
                index = 0
            claim_cpu(index)

    return PinWorkers()


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

    def __init__(self, log=print):
        self._claim = self._blas = None
        if not pinning_disabled() and not _jax_started():
            self._claim = claim_cpu(0)
            if self._claim is not None:
                from threadpoolctl import threadpool_limits  # scikit-learn's dependency

                # BLAS pools started before the pinning would spin two threads on one CPU
                self._blas = threadpool_limits(limits=1)
                if self._claim.shared:
                    log(f"note: every allowed CPU is held by another diffcalo process; sharing CPU {self._claim.cpu}")

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
        if self._claim is not None:              # give the process its CPUs back (XLA keeps one thread)
            self._claim.release()
            self._claim = None


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
    CONNECT_TIMEOUT = 10

    def __init__(self, workers, scheduler="", verbose: bool = False):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise StudyError("executor 'dask' needs the dask extra: pip install -e '.[dask]'") from None
        self.cluster = None
        # Nanny restarts and shutdown ("killing worker ...") are logged at INFO/WARNING by design; they
        # are not the user's business in normal output (``-v`` shows them).
        quiet = logging.INFO if verbose else logging.ERROR
        logging.getLogger("distributed").setLevel(quiet)
        if scheduler:
            try:
                self.client = Client(scheduler, timeout=self.CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                raise StudyError(f"executor.scheduler = {scheduler!r}: no Dask scheduler answered within "
                                 f"{self.CONNECT_TIMEOUT} s ({type(exc).__name__}: {exc}); check the address and that "
                                 "the scheduler runs, or leave the scheduler empty for a local cluster") from None
        else:
            # The scheduler always serves HTTP; with no address it tries port 8787 and, when another
            # cluster (another study, another test run) has it, warns and moves: ask for a free
            # loopback port instead (no warning, nothing exposed beyond this machine).
            self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                        dashboard_address="127.0.0.1:0", env=WORKER_ENV,
                                        silence_logs=quiet)
            self.client = Client(self.cluster)
            self.client.register_plugin(_pin_plugin())
        self.workers = workers

    def submit(self, fn, *args):
        return self.client.submit(fn, *args, pure=False, retries=1)

    #: Seconds without any worker before a local cluster is scaled back up, and again before giving up.
    NO_WORKER_GRACE = 60.0

    def _n_workers(self) -> int:
        return len(self.client.scheduler_info().get("workers", {}))

    def wait(self, futures):
        """The futures that finished first. A cluster that has lost every worker (a nanny that gave up
        restarting its worker under load was seen to leave a local cluster empty, and the study waited
        forever) is scaled back up once (local cluster) and, still empty after another grace period,
        fails with a StudyError: the journal is intact and ``--resume`` continues."""
        from distributed import wait

        futures = list(futures)
        empty_since, rescaled = None, False
        while True:
            try:
                done, _ = wait(futures, timeout=5.0, return_when="FIRST_COMPLETED")
                if done:
                    return set(done)
            except TimeoutError:
                pass
            if self._n_workers() > 0:
                empty_since = None
                continue
            now = time.monotonic()
            empty_since = empty_since or now
            if now - empty_since < self.NO_WORKER_GRACE:
                continue
            if self.cluster is not None and not rescaled:
                self.cluster.scale(self.workers)
                rescaled, empty_since = True, now
                continue
            raise StudyError(f"the Dask cluster has had no worker for {self.NO_WORKER_GRACE:.0f} s"
                             + (" (after starting new ones)" if rescaled else "")
                             + "; the journal is intact: fix the cluster and continue with --resume")

    def close(self):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make_executor(kind: str, workers: int = 1, scheduler: str = "", log=print, verbose: bool | None = None):
    """An executor by name (:data:`diffcalo.study.config.EXECUTORS`); ``verbose`` keeps Dask's informational logging
    (default: when the environment has ``DIFFCALO_VERBOSE=1``, which ``diffcalo -v`` sets)."""
    if verbose is None:
        verbose = os.environ.get("DIFFCALO_VERBOSE") == "1"
    if kind == "inprocess":
        return _InProcess(log=log)
    if kind == "process":
        return _Pool(workers)
    if kind == "dask":
        return _Dask(workers, scheduler, verbose=verbose)
    from diffcalo.study.config import EXECUTORS

    raise StudyError(f"executor = {kind!r}; allowed: {', '.join(EXECUTORS)}")
