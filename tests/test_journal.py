"""The study journal: transitions, resume semantics, corruption, kill safety, exports."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import h5py
import pytest

from diffcalo.study.journal import Journal, JournalError


def test_lifecycle_counts_and_guarded_transitions(tmp_path):
    j = Journal.create(tmp_path / "j.sqlite", {"study": "x"})
    ids = j.add([{"a": 1}, {"a": 2}, {"a": 3}], [10, 11, 12])
    assert ids == [1, 2, 3]
    j.start(1, "w0")
    j.finish(1, fom=2.5, cost=1.0, metrics={"sigma": 0.1}, timings={"total": 3.0})
    j.start(2, "w1")
    j.fail(2, "NaN training loss", timings={"total": 1.0})
    assert j.counts() == {"pending": 1, "running": 0, "done": 1, "failed": 1}
    with pytest.raises(JournalError, match="evaluation 1 is done, not running; cannot mark it done"):
        j.finish(1, fom=0.0, cost=0.0, metrics={}, timings={})
    with pytest.raises(JournalError, match="evaluation 3 is pending, not running"):
        j.finish(3, fom=0.0, cost=0.0, metrics={}, timings={})
    r = j.records("done")[0]
    assert r["design"] == {"a": 1} and r["metrics"] == {"sigma": 0.1} and r["worker"] == "w0" and r["attempts"] == 1
    with pytest.raises(FileExistsError, match="a journal exists already"):
        Journal.create(tmp_path / "j.sqlite", {})
    j.close()
    again = Journal.open(tmp_path / "j.sqlite")
    assert again.config == {"study": "x"} and again.counts()["done"] == 1


def test_resume_requeues_running_evaluations(tmp_path):
    j = Journal.create(tmp_path / "j.sqlite", {})
    j.add([{"a": i} for i in range(4)], range(4))
    j.start(1)
    j.start(2)
    j.finish(2, fom=1.0, cost=1.0, metrics={}, timings={})
    assert j.requeue_running() == 1
    assert j.counts() == {"pending": 3, "running": 0, "done": 1, "failed": 0}
    j.start(1)
    assert j.records()[0]["attempts"] == 2


def test_a_corrupted_or_foreign_file_is_refused_with_a_clear_error(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError, match="not a SQLite file"):
        Journal.open(bad)
    j = Journal.create(tmp_path / "j.sqlite", {})
    j.add([{"a": i} for i in range(200)], range(200))
    j.close()
    raw = bytearray((tmp_path / "j.sqlite").read_bytes())
    raw[4096:8192] = b"\xff" * 4096           # smash the second page
    (tmp_path / "j.sqlite").write_bytes(bytes(raw))
    for suffix in ("-wal", "-shm"):
        p = tmp_path / f"j.sqlite{suffix}"
        if p.exists():
            p.unlink()
    with pytest.raises(JournalError, match="damaged|cannot be read"):
        Journal.open(tmp_path / "j.sqlite")
    import sqlite3

    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    con.commit()
    con.close()
    with pytest.raises(JournalError, match="not a diffcalo journal"):
        Journal.open(other)
    with pytest.raises(JournalError, match="no such journal"):
        Journal.open(tmp_path / "missing.sqlite")


def test_sigkill_during_writes_leaves_a_consistent_journal(tmp_path):
    path = tmp_path / "j.sqlite"
    Journal.create(path, {}).close()
    code = textwrap.dedent(f"""
        from diffcalo.study.journal import Journal
        j = Journal.open({str(path)!r})
        i = 0
        while True:
            (eid,) = j.add([{{"i": i}}], [i])
            j.start(eid, "w")
            j.finish(eid, fom=float(i), cost=1.0, metrics={{"i": i}}, timings={{}})
            i += 1
            if i == 50:
                print("ready", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    j = Journal.open(path)
    recs = j.records()
    assert len(recs) >= 50
    # every row is either fully done with its metrics, or pending/running (re-queued on resume)
    for r in recs:
        assert r["status"] in ("done", "pending", "running")
        if r["status"] == "done":
            assert r["metrics"] == {"i": r["design"]["i"]} and r["fom"] == r["design"]["i"]
    assert [r["design"]["i"] for r in recs] == list(range(len(recs)))


def test_exports(tmp_path):
    j = Journal.create(tmp_path / "j.sqlite", {"budget": 3})
    j.add([{"tech": "spacal-w", "cell": 15.15}, {"tech": "shashlik", "cell": 60.6}], [1, 2])
    j.start(1)
    j.finish(1, fom=3.2, cost=2.0, metrics={"pi0_width": 0.008, "curve": [1, 2]}, timings={"total": 4.0})
    j.start(2)
    j.fail(2, "diverged")
    text = j.export_csv(tmp_path / "j.csv").read_text().splitlines()
    assert text[0] == "id,status,seed,fom,cost,worker,error,design.cell,design.tech,metric.pi0_width,seconds"
    assert text[1].startswith("1,done,1,3.2,2.0,") and text[1].endswith(",15.15,spacal-w,0.008,4.0")
    with h5py.File(j.export_hdf5(tmp_path / "j.h5")) as f:
        assert list(f["fom"][:1]) == [3.2] and f["status"][1].decode() == "failed"
        assert json.loads(f.attrs["config"]) == {"budget": 3}
