"""Field checks: the one home for validating values at the boundary (config files, command-line
overrides, layout definitions, design files).

Every check takes the key as the user wrote it (``"particles.n"``), the value, and what is allowed,
and raises :class:`~diffcalo.errors.ConfigError` (a ``ValueError``) naming all three; booleans are
never accepted as numbers, and numbers must be finite.
"""

from __future__ import annotations

import math
from typing import Any

from diffcalo.errors import ConfigError

__all__ = ["fail", "check_int", "check_number", "check_choice", "check_bool", "check_str", "is_int", "is_number"]


def is_int(value: Any) -> bool:
    """An integer that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float that is not a bool (an int beyond float range is not finite)."""
    try:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    except OverflowError:
        return False


def fail(key: str, value: Any, allowed: str) -> ConfigError:
    """The error for ``key = value``: ``allowed`` says what is."""
    return ConfigError(f"{key} = {value!r}: {allowed}")


def check_int(key: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as an int in [lo, hi] (bools and floats refused), else :class:`ConfigError` naming ``key``."""
    if not is_int(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = (f" in [{lo}, {hi}]" if lo is not None else f" <= {hi}") if hi is not None else \
            (f" >= {lo}" if lo is not None else "")
        raise fail(key, value, f"must be an integer{rng}")
    return value


def check_number(key: str, value: Any, lo: float | None = None, hi: float | None = None, *,
                 strict: bool = False, unit: str = "") -> float:
    """``value`` as a finite float with lo <= value <= hi (lo < value if ``strict``), else
    :class:`ConfigError` naming ``key``; ints are accepted, bools, strings and NaN / inf are not."""
    ok = is_number(value)
    if ok and lo is not None:
        ok = value > lo if strict else value >= lo
    if ok and hi is not None:
        ok = value <= hi
    if not ok:
        parts = ([f"{'>' if strict else '>='} {lo:g}"] if lo is not None else []) + \
                ([f"<= {hi:g}"] if hi is not None else [])
        raise fail(key, value, "must be a finite number" + (f" {' and '.join(parts)}" if parts else "")
                    + (f" {unit}" if unit else ""))
    return float(value)


def check_choice(key: str, value: Any, allowed) -> Any:
    """``value`` as one of ``allowed`` (names, or integers such as particle ids; of the same type: a
    bool is not an int, 1.0 is not 1), else :class:`ConfigError` listing them."""
    allowed = list(allowed)
    if not any(type(value) is type(a) and value == a for a in allowed):
        raise fail(key, value, f"allowed: {', '.join(map(str, allowed))}")
    return value


def check_bool(key: str, value: Any) -> bool:
    """``value`` as a bool (true / false in TOML and JSON), else :class:`ConfigError`."""
    if not isinstance(value, bool):
        raise fail(key, value, "must be true or false")
    return value


def check_str(key: str, value: Any, what: str = "a string") -> str:
    """``value`` as a string, else :class:`ConfigError` saying it must be ``what``."""
    if not isinstance(value, str):
        raise fail(key, value, f"must be {what}")
    return value
