"""Shared fixtures. Seeds are fixed; float64 is enabled locally (``jax.enable_x64``) where a
numerical check needs it."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

import diffcalo as dc
from diffcalo.validation import GEANT4_LUXE_FILE

# The suite's study processes claim CPUs among themselves only: a diffcalo study running elsewhere on the
# machine (or another test run) must not change which CPUs the placement tests see as free.
os.environ["DIFFCALO_CPU_LOCK_DIR"] = tempfile.mkdtemp(prefix="diffcalo-test-cpus-")
atexit.register(shutil.rmtree, os.environ["DIFFCALO_CPU_LOCK_DIR"], ignore_errors=True)


@pytest.fixture(autouse=True, scope="module")
def _bounded_compiled_code():
    """Thousands of compilations in one process reach the kernel's memory-mapping limit, where XLA's
    next compilation dies with a segmentation fault (:mod:`diffcalo.jaxcache`): trim after each module."""
    yield
    from diffcalo.jaxcache import trim_compiled_code

    trim_compiled_code(0.25)


@pytest.fixture(scope="session")
def upgrade2():
    return dc.Detector.from_layout(dc.layout.lhcb_upgrade2_baseline())


@pytest.fixture(scope="session")
def luxe_detector():
    return dc.Detector.from_layout(dc.layout.luxe())


@pytest.fixture(scope="session")
def geant4_luxe():
    import numpy as np

    return dict(np.load(GEANT4_LUXE_FILE))
