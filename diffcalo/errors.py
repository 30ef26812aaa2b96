"""One base class for every error a user can cause (bad config, file, dataset, journal, study).

The command line catches :class:`DiffcaloError` (and operating-system errors such as a full disk)
and prints one line naming what failed and what to do; anything else is a bug and keeps its
traceback. Each subclass also derives from the built-in exception it refines (``ValueError`` for
bad values, ``RuntimeError`` for a run that cannot go on), so existing ``except ValueError`` code
still catches it.
"""

from __future__ import annotations

__all__ = ["DiffcaloError"]


class DiffcaloError(Exception):
    """Something the user can fix; the message names the file, key or value and what is allowed."""
