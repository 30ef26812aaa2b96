r"""The crash-safe journal of a study: one SQLite file, WAL mode, written only by the driver.

Every evaluation is a row: its design (JSON), seed, proposal batch, status (``pending`` -> ``running``
-> ``done`` or ``failed``), metrics (JSON), figure of merit, cost, timings (JSON), worker and error
text. Each change is one transaction with ``synchronous=FULL``: a driver killed at any instant leaves
the journal at the last committed change. On resume (:meth:`Journal.requeue_running`) the rows that
were running when the driver died go back to pending, so no evaluation is lost; an evaluation is only
ever recorded done once (the status change is conditional on the row still being running).

The ``meta`` table holds the schema version, the fully resolved study config and, for a sweep, its
list of designs (:meth:`Journal.set_meta`). A journal is built in a hidden temporary file and linked
to its final name only once complete, so a reader never sees a half-made journal and a failed
start (full disk, interrupted) leaves no file behind. Opening a file that is not a journal, of
another schema version, or damaged (``PRAGMA integrity_check``) raises :class:`JournalError` naming
the file and the problem; so does reading a row whose JSON is garbled (naming the row and column).
Version-1 journals (no ``batch`` column) are read for reports; they cannot be resumed.
"""

from __future__ import annotations

import csv
import errno
import functools
import json
import os
import pathlib
import sqlite3
import time

from diffcalo.errors import JournalError

__all__ = ["Journal", "JournalError", "STATUSES", "SCHEMA_VERSION", "READABLE_VERSIONS"]

SCHEMA_VERSION = 2
#: Versions this module opens (version 1 had no ``batch`` column: read-only use).
READABLE_VERSIONS = (1, 2)
STATUSES = ("pending", "running", "done", "failed")
_COLUMNS = ("id", "design", "seed", "batch", "status", "fom", "cost", "metrics", "timings", "worker", "error",
            "t_created", "t_started", "t_finished", "attempts")

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE evaluations (
    id INTEGER PRIMARY KEY,
    design TEXT NOT NULL,
    seed INTEGER NOT NULL,
    batch INTEGER,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    fom REAL,
    cost REAL,
    metrics TEXT,
    timings TEXT,
    worker TEXT,
    error TEXT,
    t_created REAL NOT NULL,
    t_started REAL,
    t_finished REAL,
    attempts INTEGER NOT NULL DEFAULT 0
);
"""



def _text(raw: bytes) -> str:
    """Column text of a journal; bytes that are not UTF-8 (a damaged file) become U+FFFD, and the JSON
    or value checks then name the row."""
    return raw.decode("utf-8", "replace")


def _connect(path: pathlib.Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=30.0, isolation_level=None)   # autocommit; explicit transactions
    con.text_factory = _text
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
    except BaseException:
        con.close()
        raise
    return con


def _guarded(method):
    """Turn SQLite errors of a journal operation into :class:`JournalError` naming the file (a full disk
    into ``OSError(ENOSPC)``): a damaged or edited journal never surfaces as a bare sqlite3 error."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except UnicodeDecodeError as exc:
            raise JournalError(f"{self.path}: the journal cannot be read (damaged?): {exc}") from None
        except sqlite3.DatabaseError as exc:
            text = str(exc)
            if "disk is full" in text or "disk I/O error" in text:
                code = errno.ENOSPC if "full" in text else errno.EIO
                raise OSError(code, f"{os.strerror(code)} (journal: {text})", str(self.path)) from None
            raise JournalError(f"{self.path}: the journal cannot be read or written (damaged or edited?): "
                               f"{type(exc).__name__}: {text[:200]}") from None

    return wrapper


class Journal:
    """A study journal (module docstring). Use :meth:`create` or :meth:`open`."""

    def __init__(self, path: pathlib.Path, con: sqlite3.Connection):
        self.path = path
        self._con = con
        self.version = SCHEMA_VERSION

    # -- creating and opening ---------------------------------------------------------------------------
    @classmethod
    def create(cls, path, config: dict) -> "Journal":
        """A new journal at ``path`` holding the resolved study ``config``.

        The journal is written to a hidden temporary file beside ``path`` and hard-linked to ``path``
        when complete (no reader ever sees a half-made journal; a failure leaves nothing behind).

        Raises:
            FileExistsError: ``path`` exists (resume it with :meth:`open` instead).
        """
        path = pathlib.Path(path)
        if path.exists():
            raise FileExistsError(f"{path}: a journal exists already; resume it (--resume) or choose another run directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        from diffcalo.io import temporary_sibling

        tmp = temporary_sibling(path)            # (temporaries of dead drivers are removed)
        try:
            for stale in (tmp, *(tmp.with_name(tmp.name + s) for s in ("-wal", "-shm", "-journal"))):
                stale.unlink(missing_ok=True)
            con = _connect(tmp)
            try:
                with con:
                    con.execute("BEGIN")
                    for stmt in _SCHEMA.strip().split(";\n"):
                        if stmt.strip():
                            con.execute(stmt)
                    con.executemany("INSERT INTO meta VALUES (?, ?)", [
                        ("schema", "diffcalo.journal"), ("schema_version", str(SCHEMA_VERSION)),
                        ("config", json.dumps(config, sort_keys=True)), ("created", repr(time.time()))])
            finally:
                con.close()                  # checkpoints the WAL into the file and removes it
            try:
                os.link(tmp, path)           # atomic, and never replaces a journal made meanwhile
            except FileExistsError:
                raise FileExistsError(f"{path}: a journal exists already (made by another driver just now); "
                                      "resume it (--resume) or choose another run directory") from None
        finally:
            tmp.unlink(missing_ok=True)
        return cls(path, _connect(path))

    @classmethod
    def open(cls, path) -> "Journal":
        """Open an existing journal, checking that it is one, of this schema version, and intact."""
        path = pathlib.Path(path)
        if not path.exists():
            raise JournalError(f"{path}: no such journal")
        con = None
        try:
            with open(path, "rb") as f:
                head = f.read(16)
            if not head:
                raise JournalError(f"{path}: the file is empty (not a journal: a diffcalo journal is never empty; "
                                   "remove it and start the study again)")
            if head != b"SQLite format 3\x00":
                raise JournalError(f"{path}: not a SQLite file (corrupted or not a journal)")
            con = _connect(path)
            ok = con.execute("PRAGMA integrity_check").fetchone()[0]
            if ok != "ok":
                raise JournalError(f"{path}: the journal is damaged (integrity check: {ok[:200]})")
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("schema") != "diffcalo.journal":
                raise JournalError(f"{path}: not a diffcalo journal (schema = {meta.get('schema')!r})")
            if meta.get("schema_version") not in {str(v) for v in READABLE_VERSIONS}:
                raise JournalError(f"{path}: journal schema version {meta.get('schema_version')}; this diffcalo reads "
                                   f"versions {', '.join(map(str, READABLE_VERSIONS))}")
        except (sqlite3.DatabaseError, UnicodeDecodeError, JournalError) as exc:
            # (SQLite's message about a damaged schema can itself hold undecodable bytes)
            if con is not None:
                con.close()
            if isinstance(exc, JournalError):
                raise
            raise JournalError(f"{path}: the journal cannot be read (corrupted?): {exc}") from None
        journal = cls(path, con)
        journal.version = int(meta["schema_version"])
        return journal

    def close(self) -> None:
        self._con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    @_guarded
    def config(self) -> dict:
        """The resolved study config the journal was started with."""
        config = self.get_meta("config")
        if not isinstance(config, dict):
            raise JournalError(f"{self.path}: meta 'config' is {config!r}, not the study config (the journal was "
                               "edited or damaged)")
        return config

    @_guarded
    def get_meta(self, key: str, default=None):
        """A JSON value of the ``meta`` table (``default`` if absent)."""
        row = self._con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            return default
        try:
            return json.loads(row[0])
        except (json.JSONDecodeError, TypeError):
            raise JournalError(f"{self.path}: meta {key!r} is not valid JSON (the journal was edited or damaged)") from None

    @_guarded
    def set_meta(self, key: str, value) -> None:
        """Store a JSON value in the ``meta`` table (one transaction)."""
        with self._con:
            self._con.execute("BEGIN IMMEDIATE")
            self._con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, sort_keys=True)))

    # -- changes (one transaction each) ---------------------------------------------------------------------
    @_guarded
    def add(self, designs, seeds, batch: int | None = None) -> list[int]:
        """Record new pending evaluations (proposed together as ``batch``); returns their ids."""
        if self.version < 2:
            raise JournalError(f"{self.path}: a version-{self.version} journal is read-only for this diffcalo")
        now = time.time()
        ids = []
        with self._con:
            self._con.execute("BEGIN IMMEDIATE")
            for d, s in zip(designs, seeds):
                cur = self._con.execute("INSERT INTO evaluations (design, seed, batch, status, t_created) "
                                        "VALUES (?, ?, ?, 'pending', ?)",
                                        (json.dumps(d, sort_keys=True), int(s), batch, now))
                ids.append(int(cur.lastrowid))
        return ids

    @_guarded
    def start(self, eid: int, worker: str = "") -> None:
        """pending -> running."""
        self._transition(eid, "pending", "running",
                         "worker = ?, t_started = ?, attempts = attempts + 1", (worker, time.time()))

    @_guarded
    def finish(self, eid: int, *, fom: float | None, cost: float | None, metrics: dict, timings: dict,
               worker: str = "") -> None:
        """running -> done with the results."""
        self._transition(eid, "running", "done", "fom = ?, cost = ?, metrics = ?, timings = ?, worker = COALESCE(NULLIF(?, ''), worker), t_finished = ?",
                         (fom, cost, json.dumps(metrics, sort_keys=True), json.dumps(timings), worker, time.time()))

    @_guarded
    def fail(self, eid: int, error: str, *, timings: dict | None = None, worker: str = "") -> None:
        """running (or pending) -> failed with the error text."""
        with self._con:
            self._con.execute("BEGIN IMMEDIATE")
            cur = self._con.execute(
                "UPDATE evaluations SET status = 'failed', error = ?, timings = ?, worker = COALESCE(NULLIF(?, ''), worker), "
                "t_finished = ? "
                "WHERE id = ? AND status IN ('pending', 'running')",
                (error, json.dumps(timings or {}), worker, time.time(), eid))
            if cur.rowcount != 1:
                raise JournalError(f"{self.path}: evaluation {eid} is not pending or running; cannot mark it failed")

    def _transition(self, eid, old, new, sets, values):
        with self._con:
            self._con.execute("BEGIN IMMEDIATE")
            cur = self._con.execute(f"UPDATE evaluations SET status = ?, {sets} WHERE id = ? AND status = ?",
                                    (new, *values, eid, old))
            if cur.rowcount != 1:
                row = self._con.execute("SELECT status FROM evaluations WHERE id = ?", (eid,)).fetchone()
                raise JournalError(f"{self.path}: evaluation {eid} is {row[0] if row else 'missing'}, not {old}; "
                                   f"cannot mark it {new}")

    @_guarded
    def requeue_running(self) -> int:
        """Resume after a crash: every running evaluation goes back to pending. Returns how many."""
        with self._con:
            self._con.execute("BEGIN IMMEDIATE")
            cur = self._con.execute("UPDATE evaluations SET status = 'pending', worker = NULL, t_started = NULL "
                                    "WHERE status = 'running'")
        return cur.rowcount

    # -- reading ------------------------------------------------------------------------------------------------
    @_guarded
    def records(self, status: str | None = None) -> list[dict]:
        """All evaluations (or those with ``status``) in id order, JSON fields decoded."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status = {status!r}; allowed: {', '.join(STATUSES)}")
        cols = _COLUMNS if self.version >= 2 else tuple(c for c in _COLUMNS if c != "batch")
        q = f"SELECT {', '.join(cols)} FROM evaluations" + (" WHERE status = ?" if status else "") + " ORDER BY id"
        rows = self._con.execute(q, (status,) if status else ()).fetchall()
        out = []
        for row in rows:
            r = dict(zip(cols, row))
            r.setdefault("batch", None)
            for k in ("design", "metrics", "timings"):
                try:
                    r[k] = json.loads(r[k]) if r[k] else ({} if k != "design" else None)
                except (json.JSONDecodeError, TypeError):
                    raise JournalError(f"{self.path}: evaluation {r['id']}: column {k!r} is not valid JSON "
                                       f"({str(r[k])[:60]!r}; the journal was edited or damaged)") from None
            if not isinstance(r["design"], dict) or not isinstance(r["metrics"], dict) or \
                    not isinstance(r["timings"], dict):
                raise JournalError(f"{self.path}: evaluation {r['id']}: design, metrics and timings must be JSON "
                                   "objects (the journal was edited or damaged)")
            for k in ("fom", "cost"):
                if r[k] is not None and not isinstance(r[k], (int, float)):
                    raise JournalError(f"{self.path}: evaluation {r['id']}: {k} = {r[k]!r} is not a number "
                                       "(the journal was edited or damaged)")
            for k in ("seed", "attempts", "batch"):
                if not (isinstance(r[k], int) or (k == "batch" and r[k] is None)):
                    raise JournalError(f"{self.path}: evaluation {r['id']}: {k} = {r[k]!r} is not an integer "
                                       "(the journal was edited or damaged)")
            out.append(r)
        return out

    @_guarded
    def best_fom(self, *, minimize: bool = True) -> float | None:
        """The best figure of merit of the done evaluations (None before the first)."""
        row = self._con.execute(f"SELECT {'MIN' if minimize else 'MAX'}(fom) FROM evaluations WHERE status = 'done'").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    @_guarded
    def counts(self) -> dict:
        c = dict(self._con.execute("SELECT status, COUNT(*) FROM evaluations GROUP BY status").fetchall())
        return {s: int(c.get(s, 0)) for s in STATUSES}

    # -- export ----------------------------------------------------------------------------------------------------
    def export_csv(self, path) -> pathlib.Path:
        """One row per evaluation; design parameters and metrics flattened into columns."""
        recs = self.records()
        dkeys = sorted({k for r in recs for k in (r["design"] or {})})
        mkeys = sorted({k for r in recs for k in r["metrics"] if not isinstance(r["metrics"][k], (dict, list))})
        path = pathlib.Path(path)
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "status", "seed", "fom", "cost", "worker", "error"] + [f"design.{k}" for k in dkeys]
                       + [f"metric.{k}" for k in mkeys] + ["seconds"])
            for r in recs:
                secs = r["timings"].get("total") if r["timings"] else None
                w.writerow([r["id"], r["status"], r["seed"], r["fom"], r["cost"], r["worker"], r["error"]]
                           + [(r["design"] or {}).get(k) for k in dkeys] + [r["metrics"].get(k) for k in mkeys] + [secs])
        return path

    def export_hdf5(self, path) -> pathlib.Path:
        """The evaluations as HDF5 datasets (numeric columns as arrays, JSON columns as strings) plus the config."""
        import h5py
        import numpy as np

        recs = self.records()
        path = pathlib.Path(path)
        with h5py.File(path, "w") as f:
            f.attrs["config"] = json.dumps(self.config, sort_keys=True)
            f.attrs["schema"] = "diffcalo.journal-export"
            f["id"] = np.array([r["id"] for r in recs], dtype=np.int64)
            f["seed"] = np.array([r["seed"] for r in recs], dtype=np.int64)
            for k in ("fom", "cost"):
                f[k] = np.array([np.nan if r[k] is None else r[k] for r in recs], dtype=float)
            text = h5py.string_dtype()
            for k in ("status", "worker", "error"):
                f.create_dataset(k, data=[r[k] or "" for r in recs], dtype=text)
            for k in ("design", "metrics", "timings"):
                f.create_dataset(k, data=[json.dumps(r[k], sort_keys=True) for r in recs], dtype=text)
        return path
