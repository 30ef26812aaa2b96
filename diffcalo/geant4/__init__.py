"""Geant4 as an offline reference (the ``geant4`` extra: ``pip install -e '.[geant4]'``).

So far: :mod:`diffcalo.geant4.data` builds the substitute data directory that EM-only Geant4 needs
offline (``diffcalo geant4 setup DIR``) and gives the environment a Geant4 process must start with.
The backend, shower libraries and calibration (issue 14) build on it. Background and measurements:
``docs/dev/geant4-offline-data.md``.
"""

from diffcalo.geant4.data import DATA_VARIABLES, environment, setup_data

__all__ = ["DATA_VARIABLES", "environment", "setup_data"]
