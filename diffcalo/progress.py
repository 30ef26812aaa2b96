"""Progress of long phases that have no count to show (a compilation, one big simulate call, a fit).

:func:`phase` shows ``message ... 12 s`` on stderr, ticking every second while the phase runs, and
leaves ``message: 37 s`` when it ends; loops with a count use ``tqdm`` directly.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time

__all__ = ["phase"]


@contextlib.contextmanager
def phase(message: str, *, enabled: bool = True, stream=None):
    """Context manager: report ``message`` and its elapsed time while the block runs (nothing when
    ``enabled`` is False). On a terminal a daemon thread ticks the elapsed time every second; to a file
    (a captured log) it writes one line at the start and one at the end."""
    if not enabled:
        yield
        return
    from tqdm import tqdm

    stream = stream or sys.stderr
    if not (hasattr(stream, "isatty") and stream.isatty()):     # a log file: the start and the end only
        print(f"{message} ...", file=stream, flush=True)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            print(f"{message}: {time.perf_counter() - t0:.0f} s", file=stream, flush=True)
        return
    bar = tqdm(total=None, desc=message, bar_format="{desc} ... {elapsed}", file=stream, leave=False)
    done = threading.Event()

    def tick():
        while not done.wait(1.0):
            bar.refresh()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    t0 = time.perf_counter()
    try:
        yield
    finally:
        done.set()
        ticker.join()
        bar.close()
        print(f"{message}: {time.perf_counter() - t0:.0f} s", file=stream, flush=True)
