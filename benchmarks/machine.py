"""What every benchmark prints about the run: the diffcalo revision and the machine's load."""

from __future__ import annotations

import os
import pathlib
import subprocess

__all__ = ["revision", "load"]


def revision() -> str:
    """Git revision of the working tree (with ``+dirty`` if diffcalo/ has uncommitted changes)."""
    root = pathlib.Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "diffcalo"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def load() -> str:
    """The 1/5/15-minute load averages, for judging whether the timings were disturbed."""
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"
