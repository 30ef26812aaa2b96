r"""CPU placement of study processes: one CPU each, never one that another diffcalo process holds.

Why pin at all: XLA sizes its CPU thread pool from the process's CPU affinity when it starts (its
thread-count flags are ignored, measured with jax 0.10), and its floating-point sums depend on the
number of threads. One CPU per evaluating process gives one XLA thread, so the same study gives the
same journal whichever executor and machine run it, and N workers use N cores without
oversubscription.

Where: :func:`claim_cpu` picks a CPU inside the affinity the process inherited (``taskset``, a batch
system's cgroup) and takes an exclusive ``flock`` on ``$TMPDIR/diffcalo-cpus-UID/cpuN.lock`` for as
long as it holds the CPU. A CPU whose lock another live diffcalo process holds is skipped, so two
studies started on one two-core machine run on different cores; the kernel drops the locks of a
process that dies. When every allowed CPU is taken the process shares the preferred one (and says
so). ``DIFFCALO_CPU_LOCK_DIR`` names another folder for the locks (a group of processes that should
only see each other, e.g. a test suite). ``DIFFCALO_NO_PINNING=1`` switches in-process pinning off; results then depend on the thread
count XLA picks, so bit-for-bit reproduction needs the same affinity (e.g. ``taskset -c 0``).
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import threading
import time

__all__ = ["CpuClaim", "claim_cpu", "set_affinity", "exit_with_parent", "pinning_disabled"]


def pinning_disabled() -> bool:
    """``DIFFCALO_NO_PINNING`` is set to a true value (1, yes, true)."""
    return os.environ.get("DIFFCALO_NO_PINNING", "").strip().lower() in ("1", "yes", "true")


def set_affinity(cpus) -> None:
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


def _lock_dir() -> pathlib.Path:
    if os.environ.get("DIFFCALO_CPU_LOCK_DIR"):
        return pathlib.Path(os.environ["DIFFCALO_CPU_LOCK_DIR"])
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return pathlib.Path(tempfile.gettempdir()) / f"diffcalo-cpus-{uid}"


class CpuClaim:
    """A CPU this process is pinned to (``cpu``), held until :meth:`release` (or the process exits);
    ``shared`` is True when every allowed CPU was held by other diffcalo processes."""

    def __init__(self, cpu: int, fd: int | None, previous: set[int]):
        self.cpu, self._fd, self.previous = cpu, fd, previous
        self.shared = fd is None

    def release(self, restore: bool = True) -> None:
        """Drop the CPU's lock and (``restore``) give the process its previous CPUs back."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        if restore and self.previous:
            set_affinity(self.previous)
            self.previous = set()


def claim_cpu(preferred: int = 0) -> CpuClaim | None:
    """Pin this process to one free CPU of its inherited affinity (module docstring), trying the
    ``preferred``-th allowed CPU first. Returns None where the OS has no affinity control. Call it
    before JAX starts its CPU client (the first computation)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    start = preferred % len(allowed)
    order = allowed[start:] + allowed[:start]
    previous = set(allowed)
    try:
        import fcntl

        folder = _lock_dir()
        folder.mkdir(mode=0o700, exist_ok=True)
    except (ImportError, OSError):
        fcntl = None
    if fcntl is not None:
        for cpu in order:
            try:
                fd = os.open(folder / f"cpu{cpu}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                break
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:        # held by another diffcalo process (or no flock here)
                os.close(fd)
                continue
            set_affinity({cpu})
            return CpuClaim(cpu, fd, previous)
    set_affinity({order[0]})
    return CpuClaim(order[0], None, previous)


def exit_with_parent(poll_seconds: float = 1.0) -> None:
    """Start a daemon thread that ends this (worker) process when its parent dies, e.g. a study
    driver killed with SIGKILL: no idle worker outlives its driver."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="diffcalo-exit-with-parent", daemon=True).start()
