r"""Run-directory lock: one driver per study directory.

A driver holds an exclusive ``flock`` on ``RUN_DIR/.lock`` for as long as it runs and writes its PID,
host, start time and command into the file. A second driver on the same directory is refused with a
message naming the holder. The kernel drops the lock when its holder dies (even by SIGKILL), so a
stale lock needs no clean-up: the next driver takes it over and says whose it was. On a filesystem
without ``flock`` support the lock is skipped with a warning (two drivers would then go undetected).
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import socket
import sys
import warnings

from diffcalo.errors import RunLockedError

__all__ = ["RunLock", "RunLockedError"]



def _describe(info: dict) -> str:
    when = info.get("started")
    when = datetime.datetime.fromtimestamp(when).isoformat(timespec="seconds") if isinstance(when, (int, float)) else "?"
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {when}"


class RunLock:
    """``with RunLock(run_dir, log=print):`` holds the lock of ``run_dir`` for the block.

    Raises:
        RunLockedError: another live driver holds it.
    """

    def __init__(self, run_dir, *, log=print):
        self.run_dir = pathlib.Path(run_dir)
        self.path = self.run_dir / ".lock"
        self._fd: int | None = None
        self._log = log

    def _read(self, fd) -> dict:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            text = os.read(fd, 4096).decode("utf-8", "replace")
            info = json.loads(text) if text.strip() else {}
            return info if isinstance(info, dict) else {}
        except (OSError, json.JSONDecodeError):
            return {}

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:                            # not a POSIX system
            warnings.warn("diffcalo: no file locking on this OS; a second driver on the same run directory "
                          "would not be detected", RuntimeWarning, stacklevel=2)
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = self._read(fd)
            os.close(fd)
            pid = info.get("pid", "?")
            raise RunLockedError(
                f"{self.run_dir}: another diffcalo driver is running this study ({_describe(info)}); wait for it "
                f"to finish, or stop it (kill {pid}) and continue with --resume") from None
        except OSError as exc:                         # e.g. ENOLCK on a filesystem without flock
            os.close(fd)
            warnings.warn(f"diffcalo: cannot lock {self.path} ({exc.strerror}); a second driver on this run "
                          "directory would not be detected", RuntimeWarning, stacklevel=2)
            return self
        previous = self._read(fd)
        if previous.get("pid"):
            self._log(f"{self.run_dir}: the driver that held this run directory ({_describe(previous)}) is gone; "
                      "taking over")
        info = dict(pid=os.getpid(), host=socket.gethostname(), started=datetime.datetime.now().timestamp(),
                    command=" ".join(sys.argv))
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(info).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Clear the holder's record and drop the lock (a clean exit leaves no 'gone' message)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        os.close(fd)                                   # closing the descriptor drops the flock

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
