"""Commented example config files, one per format: ``simulate.toml`` (``diffcalo simulate``),
``reco.toml`` (``diffcalo train``) and ``study.toml`` (``diffcalo optimize`` / ``sweep``).
Every key is described in ``docs/configuration.md``."""

from __future__ import annotations

import pathlib

__all__ = ["path", "NAMES"]

NAMES = ("simulate.toml", "reco.toml", "study.toml")


def path(name: str) -> pathlib.Path:
    """The installed path of the example ``name`` (one of :data:`NAMES`)."""
    if name not in NAMES:
        raise ValueError(f"no example {name!r}; available: {', '.join(NAMES)}")
    return pathlib.Path(__file__).resolve().parent / name
