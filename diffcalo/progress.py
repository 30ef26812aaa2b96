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
    ``enabled`` is False). The ticker is a daemon thread that only writes to ``stream`` (stderr)."""
    if not enabled:
        yield
        return
    from tqdm import tqdm

    stream = stream or sys.stderr
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
