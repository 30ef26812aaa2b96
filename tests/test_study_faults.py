"""Faults around a study's processes: CPU placement of concurrent studies, workers orphaned by a killed
driver, an unreachable Dask scheduler."""

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from diffcalo.errors import StudyError
from diffcalo.study.executors import make_executor

TESTS = Path(__file__).parent
affinity = pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity control on this OS")

_STUDY_DRIVER = textwrap.dedent("""
    import os, sys
    from diffcalo.study.executors import make_executor
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
    from diffcalo.study.executors import make_executor
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


def test_an_unreachable_dask_scheduler_is_one_clear_error(monkeypatch):
    pytest.importorskip("distributed")
    import socket

    from diffcalo.study import executors

    monkeypatch.setattr(executors._Dask, "CONNECT_TIMEOUT", 2)     # 10 s by default
    with socket.socket() as s:                          # a port on loopback where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.time()
    with pytest.raises(StudyError, match=rf"executor.scheduler = 'tcp://127.0.0.1:{port}': no Dask scheduler answered "
                                         r"within 2 s .*leave the scheduler empty for a local cluster"):
        make_executor("dask", workers=1, scheduler=f"tcp://127.0.0.1:{port}")
    assert time.time() - t0 < 15


# ---- faults at the command line -----------------------------------------------------------------------------
SIM_CONFIG = """
seed = 1
batch = 500
[layout]
preset = "lhcb-upgrade2-baseline"
[particles]
n = {n}
[simulation]
mode = "realistic"
"""


def test_simulate_refuses_a_directory_or_a_path_under_a_file_before_simulating(tmp_path, capsys):
    from diffcalo.cli import main

    cfg = tmp_path / "sim.toml"
    cfg.write_text(SIM_CONFIG.format(n=200))
    (tmp_path / "outdir").mkdir()
    t0 = time.time()
    assert main(["simulate", str(cfg), "-o", str(tmp_path / "outdir"), "--force", "-q"]) == 2
    assert "outdir: is a directory; give the dataset a file name" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    assert main(["simulate", str(cfg), "-o", str(tmp_path / "afile" / "out.h5"), "-q"]) == 2
    assert "afile is a file, not a directory" in capsys.readouterr().err
    assert time.time() - t0 < 20                           # refused before any simulation
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "outdir", "sim.toml"]


def test_a_full_disk_while_writing_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    """Injected: the HDF5 write of the second batch fails with ENOSPC."""
    import errno

    import h5py

    from diffcalo.cli import main

    real = h5py.Dataset.__setitem__
    calls = []

    def full(self, key, value):
        calls.append(self.name)
        if len(calls) > 16:                                # the second batch (16 fields per batch)
            raise OSError(errno.ENOSPC, "Can't synchronously write data (No space left on device)")
        return real(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", full)
    cfg = tmp_path / "sim.toml"
    cfg.write_text(SIM_CONFIG.format(n=1000))
    out = tmp_path / "out" / "data.h5"
    assert main(["simulate", str(cfg), "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"diffcalo simulate: error: {out}: No space left on device while writing the dataset (nothing is "
                   "left under the final name) (the disk is full: free space (or choose another output) and run the "
                   "command again)"]
    assert list(out.parent.iterdir()) == []                # no partial file, no temporary


@contextlib.contextmanager
def _tmpfs(mnt: Path, options: str):
    """A small tmpfs mounted at ``mnt`` for the block (needs mount rights: root on Linux; the test is
    skipped elsewhere)."""
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root, or no mount rights)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_a_really_full_filesystem_ends_cleanly(tmp_path):
    """On a 1 MB tmpfs: no segfault in h5py's clean-up, exit code 2, one line, nothing left on the full
    disk."""
    with _tmpfs(tmp_path / "small", "size=1m") as mnt:
        cfg = tmp_path / "sim.toml"
        cfg.write_text(SIM_CONFIG.format(n=16000).replace("batch = 500", "batch = 2000"))
        run = subprocess.run([sys.executable, "-m", "diffcalo.cli", "simulate", str(cfg), "-o", str(mnt / "out.h5"), "-q"],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 2, run.stderr[-2000:]
        assert run.stderr.strip().splitlines() == [
            f"diffcalo simulate: error: {mnt / 'out.h5'}: No space left on device while writing the dataset (nothing is "
            "left under the final name) (the disk is full: free space (or choose another output) and run the command again)"]
        assert list(mnt.iterdir()) == []


def test_ctrl_c_during_simulate_exits_130_and_leaves_nothing(tmp_path):
    cfg = tmp_path / "sim.toml"
    cfg.write_text(SIM_CONFIG.format(n=400000))
    out = tmp_path / "o" / "data.h5"
    proc = subprocess.Popen([sys.executable, "-m", "diffcalo.cli", "simulate", str(cfg), "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "o").glob(".data.h5.tmp-*")):
        time.sleep(0.1)                                    # writing has started
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "diffcalo simulate: interrupted; nothing was left half-written"
    assert list((tmp_path / "o").iterdir()) == []


def test_an_interrupted_study_releases_its_lock_and_resumes(tmp_path):
    from study_toys import toy_objective

    from diffcalo.study.config import study_config_from_dict
    from diffcalo.study.journal import Journal
    from diffcalo.study.runner import run_study

    calls = []

    def interrupted(config, design, seed):
        calls.append(design)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return toy_objective(config, design, seed)

    cfg = study_config_from_dict({"optimizer": {"kind": "random", "evaluations": 5}})
    with pytest.raises(KeyboardInterrupt):
        run_study(cfg, tmp_path / "run", objective=interrupted, progress=False, log=lambda *a: None)
    with Journal.open(tmp_path / "run" / "journal.sqlite") as j:
        assert j.counts() == {"pending": 1, "running": 1, "done": 2, "failed": 0}   # batch 2: one not started
    j = run_study(cfg, tmp_path / "run", resume=True, objective=toy_objective, progress=False, log=lambda *a: None)
    assert j.counts() == {"pending": 0, "running": 0, "done": 5, "failed": 0}
    assert [r["design"] for r in j.records()][2] == calls[2]        # the interrupted design was run again
    j.close()


def test_a_study_whose_every_evaluation_failed_exits_1(tmp_path, capsys):
    from study_toys import nan_objective

    from diffcalo.cli import _study_end
    from diffcalo.study.config import study_config_from_dict
    from diffcalo.study.runner import run_study

    cfg = study_config_from_dict({"optimizer": {"kind": "random", "evaluations": 2}})
    j = run_study(cfg, tmp_path / "run", objective=nan_objective, progress=False, log=lambda *a: None)
    assert _study_end(j, tmp_path / "run") == 1
    err = capsys.readouterr().err
    assert "every evaluation failed (2); first error: FloatingPointError: the objective returned fom = nan" in err
    assert (tmp_path / "run" / "report.md").exists()


def test_temporaries_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    """A writer killed with SIGKILL leaves its hidden temporary; the next write beside it removes it
    (only when its PID is dead), for datasets, text files and journals alike."""
    from diffcalo.io import write_clusters, write_text_atomic
    from diffcalo.study.journal import Journal

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    alive_pid = os.getppid()                               # pytest's parent: alive
    names = [f".data.h5.tmp-{dead_pid}", f".notes.md.tmp-{dead_pid}", f".journal.sqlite.tmp-{dead_pid}",
             f".journal.sqlite.tmp-{dead_pid}-wal", f".data.h5.tmp-{alive_pid}"]
    for n in names:
        (tmp_path / n).write_bytes(b"partial")
    sys.path.insert(0, str(TESTS))
    from test_fuzz import _clusters

    write_clusters(tmp_path / "data.h5", _clusters(), config={"mode": "realistic"})
    write_text_atomic(tmp_path / "notes.md", "text\n")
    Journal.create(tmp_path / "journal.sqlite", {}).close()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["data.h5", "notes.md", "journal.sqlite", f".data.h5.tmp-{alive_pid}"]), left


def test_evaluate_refuses_clusters_of_a_region_it_was_not_fitted_on():
    import dataclasses

    import jax
    import numpy as np

    import diffcalo as dc
    from diffcalo.io import DatasetError
    from diffcalo.reco import Reconstruction, TrainConfig, evaluate

    det = dc.Detector.from_layout(dc.layout.lhcb_upgrade2_baseline())
    p = dc.gun(jax.random.key(0), 600, det.layout, region="middle")
    c = jax.tree_util.tree_map(np.asarray, dc.simulate(det, p, key=jax.random.key(1), mode="realistic"))
    reco = Reconstruction.fit(c, c, tasks=("energy",), z_mm=det.layout.z_mm,
                              train_config=TrainConfig(epochs=1, batch_size=128), progress=False)
    assert set(evaluate(reco, c)["regions"]) == {"2"}
    moved = dataclasses.replace(c, region=np.where(np.arange(600) < 100, 3, c.region).astype(np.int32))
    with pytest.raises(DatasetError, match=r"clusters of region\(s\) \[3\] \(clusters per region 3: 100\); the "
                                           r"reconstruction was fitted on regions \[2\]"):
        evaluate(reco, moved)


def test_outputs_on_a_read_only_filesystem_are_one_line(tmp_path, capsys):
    """A read-only tmpfs (needs mount rights; skipped elsewhere): simulate, optimize and report refuse
    with one line naming the path, before any work."""
    from diffcalo.cli import main

    with _tmpfs(tmp_path / "ro", "size=1m,ro") as mnt:
        cfg = tmp_path / "sim.toml"
        cfg.write_text(SIM_CONFIG.format(n=200))
        study = tmp_path / "study.toml"
        study.write_text("[optimizer]\nkind = 'random'\nevaluations = 2\n")
        assert main(["simulate", str(cfg), "-o", str(mnt / "out.h5"), "-q"]) == 2
        assert main(["optimize", str(study), "-o", str(mnt / "run"), "-q"]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 2 and all("Read-only file system" in x and str(mnt) in x for x in lines), lines
        assert all("(the filesystem is read-only: choose an output on a writable filesystem)" in x for x in lines)


def test_review_findings_are_one_line_errors(tmp_path, capsys):
    """Cases a fresh-clone review found: 400-digit integers, a NaN cell size, deeply nested design JSON,
    command-line overrides out of range, an existing output without --force."""
    from diffcalo.cli import main

    study = tmp_path / "s.toml"
    cases = [
        ("[study]\ncollisions = 1" + "0" * 400, "study.collisions = 1000"),
        ("[design]\noptions = ['shashlik:nan', 'shashlik:121.2']", "design.options: 'shashlik:nan': write each option"),
    ]
    for text, message in cases:
        study.write_text(text)
        assert main(["optimize", str(study), "-o", str(tmp_path / "run"), "-q"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and str(study) in err[0], err
    study.write_text("[optimizer]\nkind = 'random'\nevaluations = 2\n")
    assert main(["optimize", str(study), "-o", str(tmp_path / "run"), "--executor", "process", "--workers",
                 "99999999999999999999999", "-q"]) == 2
    assert "executor.workers = 99999999999999999999999: must be an integer in [1, 1024]" in capsys.readouterr().err
    assert main(["optimize", str(study), "-o", str(tmp_path / "run"), "--scheduler", "notanaddress", "-q"]) == 2
    assert "executor.scheduler = 'notanaddress': an address string like 'tcp://host:8786'" in capsys.readouterr().err
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    assert main(["sweep", str(study), "--designs", str(deep), "-o", str(tmp_path / "sweep"), "-q"]) == 2
    assert f"{deep}: cannot be read as JSON" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()     # nothing was started
    cfg = tmp_path / "sim.toml"
    cfg.write_text(SIM_CONFIG.format(n=100))
    (tmp_path / "old.h5").write_text("x")
    assert main(["simulate", str(cfg), "-o", str(tmp_path / "old.h5"), "-q"]) == 2
    assert f"{tmp_path / 'old.h5'} exists; add --force to replace it" in capsys.readouterr().err


def test_an_executor_that_cannot_start_leaves_no_journal_and_resume_may_change_workers(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    import socket

    from study_toys import toy_objective

    from diffcalo.study import executors, runner
    from diffcalo.study.config import study_config_from_dict

    monkeypatch.setattr(executors._Dask, "CONNECT_TIMEOUT", 1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bad = study_config_from_dict({"optimizer": {"kind": "random", "evaluations": 2},
                                  "executor": {"kind": "dask", "scheduler": f"tcp://127.0.0.1:{port}"}})
    with pytest.raises(StudyError, match="no Dask scheduler answered"):
        runner.run_study(bad, tmp_path / "run", objective=toy_objective, progress=False, log=lambda *a: None)
    assert not (tmp_path / "run" / "journal.sqlite").exists()
    good = study_config_from_dict({"optimizer": {"kind": "random", "evaluations": 2}})
    runner.run_study(good, tmp_path / "run", objective=toy_objective, progress=False, log=lambda *a: None).close()
    more = study_config_from_dict({"optimizer": {"kind": "random", "evaluations": 2},
                                   "executor": {"kind": "process", "workers": 2}})
    j = runner.run_study(more, tmp_path / "run", resume=True, objective=toy_objective, progress=False,
                         log=lambda *a: None, executor=make_executor("inprocess"))
    assert j.counts()["done"] == 2                    # the executor and worker count may change on resume
    j.close()


def test_a_local_dask_cluster_starts_when_port_8787_is_taken():
    """Another cluster (another study or test run) holding Dask's default HTTP port must not make ours
    fail (its 'port in use' warning is an error in this suite, and was one under two concurrent runs)."""
    pytest.importorskip("distributed")
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", 8787))
            s.listen()
        except OSError:                                    # taken already: the condition holds anyway
            pass
        ex = make_executor("dask", workers=1)
        try:
            assert ex.submit(os.getpid).result() != os.getpid()
        finally:
            ex.close()
