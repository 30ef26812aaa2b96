"""One driver per run directory, journals that readers never see half-made, and resumes that
reproduce the uninterrupted study bit for bit (any worker count, any batch size)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from diffcalo.errors import StudyError
from diffcalo.study.config import study_config_from_dict
from diffcalo.study.journal import Journal
from diffcalo.study.lock import RunLock, RunLockedError
from diffcalo.study.runner import run_study

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))
from study_toys import toy_objective  # noqa: E402


def _quiet(*args):
    pass


def _rows(path):
    """The journal's rows without the fields that legitimately differ between runs (times, worker)."""
    with Journal.open(path) as j:
        return [(r["id"], r["batch"], r["status"], json.dumps(r["design"], sort_keys=True), r["fom"], r["cost"],
                 json.dumps(r["metrics"], sort_keys=True), r["error"]) for r in j.records()]


# ---- the race of journal creation -------------------------------------------------------------------------
def test_a_journal_being_created_is_never_seen_corrupted(tmp_path):
    """One process creates 60 journals while another opens each of them in a tight loop: the opener
    sees either no journal or a complete one, never 'not a SQLite file'."""
    opener = textwrap.dedent(f"""
        import pathlib, sys, time
        from diffcalo.study.journal import Journal, JournalError
        root = pathlib.Path({str(tmp_path)!r})
        counts = dict(missing=0, ok=0, corrupted=0, other=0)
        deadline = time.time() + 120
        i = 0
        print("ready", flush=True)
        while i < 60 and time.time() < deadline:
            try:
                with Journal.open(root / f"j{{i}}.sqlite") as j:
                    j.config
                counts["ok"] += 1
                i += 1
            except JournalError as exc:
                key = "missing" if "no such journal" in str(exc) else "corrupted"
                counts[key] += 1
                if key == "corrupted":
                    print(exc, file=sys.stderr)
        print(counts, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", opener], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    for i in range(60):
        Journal.create(tmp_path / f"j{i}.sqlite", {"i": i}).close()
    out, _ = proc.communicate(timeout=180)
    counts = eval(out.strip().splitlines()[-1])
    print(f"journal race, 60 journals: {counts}")          # shown with pytest -s
    assert counts["ok"] == 60 and counts["corrupted"] == 0, counts
    assert counts["missing"] > 0                      # the opener did race the creator
    assert not list(tmp_path.glob(".*tmp-*"))         # no temporary file left behind


def test_a_failed_start_leaves_no_journal_and_the_same_command_starts_again(tmp_path, monkeypatch):
    import sqlite3

    from diffcalo.study import journal as journal_module

    real = journal_module._connect

    def full_disk(path):
        real(path).close()                            # the file exists, then the disk is full
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(journal_module, "_connect", full_disk)
    cfg = study_config_from_dict({"optimizer": {"kind": "random", "evaluations": 2}})
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        run_study(cfg, tmp_path / "run", objective=toy_objective, progress=False, log=_quiet)
    assert not (tmp_path / "run" / "journal.sqlite").exists()
    assert not list((tmp_path / "run").glob(".journal*"))
    monkeypatch.setattr(journal_module, "_connect", real)
    for resume in (False, True):                      # a rerun and a --resume both start the study
        target = tmp_path / f"run{int(resume)}"
        (target).mkdir()
        j = run_study(cfg, target, resume=resume, objective=toy_objective, progress=False, log=_quiet)
        assert j.counts()["done"] == 2
        j.close()


# ---- the run-directory lock ---------------------------------------------------------------------------
_HOLDER = textwrap.dedent("""
    import sys, time
    from diffcalo.study.lock import RunLock
    with RunLock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
""")


def test_a_second_driver_is_refused_with_the_holder_named_and_a_stale_lock_is_taken_over(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        cfg = study_config_from_dict({"optimizer": {"kind": "random", "evaluations": 2}})
        with pytest.raises(RunLockedError, match=rf"another diffcalo driver is running this study \(pid {holder.pid} on "
                                                 r".*, started 20\d\d-.*kill " + str(holder.pid)):
            run_study(cfg, run, objective=toy_objective, progress=False, log=_quiet)
        assert not (run / "journal.sqlite").exists()          # refused before touching anything
    finally:
        holder.kill()                                         # SIGKILL: no clean-up in the holder
        holder.wait()
        holder.stdout.close()
    said = []
    with RunLock(run, log=said.append):
        assert json.loads((run / ".lock").read_text())["pid"] == os.getpid()
    assert len(said) == 1 and said[0].startswith(f"{run}: the driver that held this run directory (pid {holder.pid} on ")
    assert said[0].endswith("is gone; taking over")
    said.clear()
    with RunLock(run, log=said.append):                       # a clean release leaves no stale record
        pass
    assert said == []


# ---- resume reproduces the uninterrupted study ----------------------------------------------------------
_DRIVER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from study_toys import toy_objective
    from diffcalo.study.config import study_config_from_dict
    from diffcalo.study.executors import make_executor
    from diffcalo.study.runner import run_study
    cfg = study_config_from_dict({{"optimizer": {{"evaluations": {n}, "initial": 4, "batch": {batch}}}}})
    ex = make_executor({executor!r}, workers={workers})
    try:
        run_study(cfg, sys.argv[1], objective=toy_objective, progress=False, resume="--resume" in sys.argv,
                  executor=ex, log=lambda *a: None).close()
    finally:
        ex.close()
""")


def _driver(n=12, batch=1, executor="inprocess", workers=1):
    return _DRIVER.format(tests=str(TESTS), n=n, batch=batch, executor=executor, workers=workers)


def test_kill_and_resume_gives_the_journal_of_the_uninterrupted_run(tmp_path):
    script = _driver(n=10, batch=2)
    env = dict(os.environ, TOY_SLEEP="0.25")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "straight")], env=env, check=True, timeout=300)
    run = tmp_path / "killed"
    for kill_at in (3, 6):                            # killed twice: once mid-batch, once later
        proc = subprocess.Popen([sys.executable, "-c", script, str(run)] + (["--resume"] if kill_at == 6 else []),
                                env=env)
        deadline = time.time() + 120
        while time.time() < deadline:
            time.sleep(0.1)
            if (run / "journal.sqlite").exists():
                with Journal.open(run / "journal.sqlite") as j:
                    if j.counts()["done"] >= kill_at:
                        break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with Journal.open(run / "journal.sqlite") as j:
        assert j.counts()["done"] < 10
    subprocess.run([sys.executable, "-c", script, str(run), "--resume"], env=env, check=True, timeout=300)
    straight, resumed = _rows(tmp_path / "straight" / "journal.sqlite"), _rows(run / "journal.sqlite")
    assert len(straight) == 10 and [r[1] for r in straight] == [i // 2 for i in range(10)]
    assert resumed == straight
    assert len({r[3] for r in straight}) == 10                # no design evaluated twice


def test_one_and_two_workers_give_the_same_journal_and_the_batch_is_honoured(tmp_path):
    for name, executor, workers in (("one", "inprocess", 1), ("two", "process", 2)):
        subprocess.run([sys.executable, "-c", _driver(n=8, batch=2, executor=executor, workers=workers),
                        str(tmp_path / name)], check=True, timeout=300)
    one, two = _rows(tmp_path / "one" / "journal.sqlite"), _rows(tmp_path / "two" / "journal.sqlite")
    assert one == two and [r[1] for r in one] == [0, 0, 1, 1, 2, 2, 3, 3]
    # batch 4: four designs per proposal, and the proposals after the initial design differ from batch 2's
    cfg = study_config_from_dict({"optimizer": {"evaluations": 8, "initial": 4, "batch": 4}})
    j = run_study(cfg, tmp_path / "four", objective=toy_objective, progress=False, log=_quiet)
    four = [(r["batch"], json.dumps(r["design"], sort_keys=True)) for r in j.records()]
    j.close()
    assert [b for b, _ in four] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [d for _, d in four[:4]] == [r[3] for r in one[:4]]          # the same Sobol initial design
    assert [d for _, d in four[4:]] != [r[3] for r in one[4:]]          # then the GP's batch of 4


def test_a_sweep_resumed_with_another_design_list_is_refused(tmp_path):
    from diffcalo.study.design import design_space

    cfg = study_config_from_dict({"optimizer": {"evaluations": 4}})
    space = design_space(cfg)
    a, b = space.sample(4, rng=1, method="lhs"), space.sample(4, rng=2, method="lhs")
    run_study(cfg, tmp_path / "run", designs=a[:2] + [], objective=toy_objective, progress=False, log=_quiet).close()
    with pytest.raises(StudyError, match=r"the sweep's design list differs .*2 designs stored, 4 given; first "
                                         r"difference at design 0"):
        run_study(cfg, tmp_path / "run", designs=b, resume=True, objective=toy_objective, progress=False, log=_quiet)
    with pytest.raises(StudyError, match="holds a study run by 'diffcalo sweep'"):
        run_study(cfg, tmp_path / "run", resume=True, objective=toy_objective, progress=False, log=_quiet)
    j = run_study(cfg, tmp_path / "run", designs=a[:2], resume=True, objective=toy_objective, progress=False, log=_quiet)
    assert j.counts()["done"] == 2
    j.close()


def test_a_changed_config_is_refused_naming_the_keys(tmp_path):
    cfg = study_config_from_dict({"optimizer": {"kind": "random", "evaluations": 2}})
    run_study(cfg, tmp_path / "run", objective=toy_objective, progress=False, log=_quiet).close()
    other = study_config_from_dict({"optimizer": {"kind": "random", "evaluations": 3}, "study": {"seed": 4}})
    with pytest.raises(StudyError, match=r"evaluations: journal 2, now 3; seed: journal 0, now 4"):
        run_study(other, tmp_path / "run", resume=True, objective=toy_objective, progress=False, log=_quiet)


def test_an_objective_returning_nan_is_a_failed_evaluation(tmp_path):
    from study_toys import nan_objective

    cfg = study_config_from_dict({"optimizer": {"kind": "random", "evaluations": 3}})
    j = run_study(cfg, tmp_path / "run", objective=nan_objective, progress=False, log=_quiet)
    recs = j.records()
    j.close()
    assert [r["status"] for r in recs] == ["failed"] * 3
    assert recs[0]["error"] == "FloatingPointError: the objective returned fom = nan (a finite number is needed)"


def test_garbled_journal_rows_are_named(tmp_path):
    import sqlite3

    from diffcalo.study.journal import JournalError

    cfg = study_config_from_dict({"optimizer": {"kind": "random", "evaluations": 2}})
    run_study(cfg, tmp_path / "run", objective=toy_objective, progress=False, log=_quiet).close()
    con = sqlite3.connect(tmp_path / "run" / "journal.sqlite")
    con.execute("UPDATE evaluations SET metrics = '{\"a\": ' WHERE id = 2")
    con.commit()
    con.close()
    with Journal.open(tmp_path / "run" / "journal.sqlite") as j, \
            pytest.raises(JournalError, match=r"journal.sqlite: evaluation 2: column 'metrics' is not valid JSON"):
        j.records()
    from diffcalo.cli import main

    assert main(["report", str(tmp_path / "run")]) == 2
