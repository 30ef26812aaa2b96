"""Every error a user can cause, in one place, under one base class.

The command line catches :class:`DiffcaloError` (and operating-system errors such as a full disk)
and prints one line naming what failed and what to do; anything else is a bug and keeps its
traceback. Each subclass also derives from the built-in exception it refines (``ValueError`` for
bad values, ``RuntimeError`` for a run that cannot go on), so existing ``except ValueError`` code
still catches it. The modules that raise them re-export their own (``diffcalo.config.ConfigError``
is this ``ConfigError``).
"""

from __future__ import annotations

__all__ = ["DiffcaloError", "ConfigError", "DatasetError", "TrainingError", "StudyError", "JournalError",
           "RunLockedError"]


class DiffcaloError(Exception):
    """Something the user can fix; the message names the file, key or value and what is allowed."""


class ConfigError(DiffcaloError, ValueError):
    """A config value that is not allowed: the message names key, value and what is allowed."""


class DatasetError(DiffcaloError, ValueError):
    """A dataset file that cannot be used: names the file and what is wrong."""


class TrainingError(DiffcaloError, RuntimeError):
    """Training that cannot go on (a non-finite loss, inputs that do not fit the network); the message
    says what happened and what to change."""


class StudyError(DiffcaloError, RuntimeError):
    """A study that cannot run or resume; the message says why."""


class JournalError(DiffcaloError, RuntimeError):
    """A journal file that cannot be used; the message names the file and the problem."""


class RunLockedError(DiffcaloError, RuntimeError):
    """Another driver holds the run directory; the message names it (PID, host, start time)."""
