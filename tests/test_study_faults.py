"""Faults around a study's processes: CPU placement of concurrent studies, workers orphaned by a killed
driver, an unreachable Dask scheduler."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from diffcalo.study.runner import StudyError, make_executor

TESTS = Path(__file__).parent
affinity = pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity control on this OS")

_STUDY_DRIVER = textwrap.dedent("""
    import os, sys
    from diffcalo.study.runner import make_executor
    ex = make_executor("inprocess", log=lambda *a: None)      # what a study driver does before JAX starts
    print(sorted(os.sched_getaffinity(0)), flush=True)
    sys.stdin.readline()                                     # hold the CPU until told to stop
    ex.close()
    print(sorted(os.sched_getaffinity(0)), flush=True)
""")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"      # a zombie has exited
    except FileNotFoundError:
        return False


@affinity
def test_two_studies_at_once_get_different_cpus_inside_their_inherited_affinity():
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        pytest.skip("needs two CPUs")
    env = dict(os.environ)
    env.pop("DIFFCALO_NO_PINNING", None)
    procs = [subprocess.Popen([sys.executable, "-c", _STUDY_DRIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    try:
        masks = [eval(p.stdout.readline()) for p in procs]
        for p in procs:
            p.stdin.write("\n")
            p.stdin.flush()
        after = [eval(p.stdout.readline()) for p in procs]
    finally:
        for p in procs:
            p.communicate(timeout=60)
    assert all(len(m) == 1 and m[0] in allowed for m in masks), masks
    assert masks[0] != masks[1], masks                  # each study its own core
    assert after == [allowed, allowed]                  # CPUs given back when the study ends
    # a driver started inside a narrower affinity (taskset, a batch slot) stays inside it
    last = allowed[-1]
    narrow = subprocess.run([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{last}}})\n" + _STUDY_DRIVER],
                            input="\n", capture_output=True, text=True, env=env, timeout=60, check=True)
    assert eval(narrow.stdout.splitlines()[0]) == [last]


_POOL_DRIVER = textwrap.dedent(f"""
    import sys, time
    sys.path.insert(0, {str(TESTS)!r})
    from study_toys import worker_pid
    from diffcalo.study.runner import make_executor
    ex = make_executor("process", workers=2)
    futures = [ex.submit(worker_pid, 1.0) for _ in range(2)]
    print(sorted({{f.result() for f in futures}}), flush=True)
    time.sleep(300)
""")


def test_pool_workers_exit_when_their_driver_is_killed():
    driver = subprocess.Popen([sys.executable, "-c", _POOL_DRIVER], stdout=subprocess.PIPE, text=True)
    try:
        workers = eval(driver.stdout.readline())
        assert len(workers) == 2 and all(_alive(w) for w in workers)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        driver.stdout.close()
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), [w for w in workers if _alive(w)]


def test_an_unreachable_dask_scheduler_is_one_clear_error():
    pytest.importorskip("distributed")
    import socket

    with socket.socket() as s:                          # a port on loopback where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.time()
    with pytest.raises(StudyError, match=rf"executor.scheduler = 'tcp://127.0.0.1:{port}': no Dask scheduler answered "
                                         r"within 10 s .*leave the scheduler empty for a local cluster"):
        make_executor("dask", workers=1, scheduler=f"tcp://127.0.0.1:{port}")
    assert time.time() - t0 < 25
