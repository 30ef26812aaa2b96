"""Compiled-code housekeeping for long-lived processes.

XLA keeps the machine code of every compiled executable in its own memory mappings, and JAX keeps the
executables in its caches for the life of the process. A process that compiles again and again (a study
worker: each evaluation traces fresh training closures, ~1 500 mappings per evaluation measured on the
flagship's objective; the test suite: thousands of compilations) grows its mapping count until it reaches
the kernel's limit (``vm.max_map_count``, 65 530 by default), where the next compilation's ``mmap``
fails and XLA dies with a segmentation fault. :func:`trim_compiled_code` empties JAX's caches (the
executables and their mappings go with them) once a process holds more than a fraction of the limit;
later calls compile again.
"""

from __future__ import annotations

import gc
import pathlib

__all__ = ["memory_mappings", "max_memory_mappings", "trim_compiled_code"]

_DEFAULT_LIMIT = 65530


def memory_mappings() -> int | None:
    """The number of memory mappings of this process (None where /proc is not available)."""
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return None


def max_memory_mappings() -> int:
    """The kernel's per-process limit on memory mappings (``vm.max_map_count``; 65 530 if unreadable)."""
    try:
        return int(pathlib.Path("/proc/sys/vm/max_map_count").read_text())
    except (OSError, ValueError):
        return _DEFAULT_LIMIT


def trim_compiled_code(fraction: float = 0.4) -> bool:
    """Clear JAX's compilation caches when this process holds more than ``fraction`` of the mapping limit
    (module docstring); returns whether it did."""
    n = memory_mappings()
    if n is None or n <= fraction * max_memory_mappings():
        return False
    import jax

    jax.clear_caches()
    gc.collect()
    return True
