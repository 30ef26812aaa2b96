"""Shared fixtures. Seeds are fixed; float64 is enabled locally (``jax.enable_x64``) where a
numerical check needs it."""

from __future__ import annotations

import pathlib

import pytest

import diffcalo as dc

DATA = pathlib.Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def upgrade2():
    return dc.Detector.from_layout(dc.layout.lhcb_upgrade2_baseline())


@pytest.fixture(scope="session")
def luxe_detector():
    return dc.Detector.from_layout(dc.layout.luxe())


@pytest.fixture(scope="session")
def geant4_luxe():
    import numpy as np

    return dict(np.load(DATA / "geant4" / "luxe_eminus_200x5.npz"))
