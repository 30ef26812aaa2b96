"""Geant4 as an offline reference (the ``geant4-pybind`` wheel; ``pip install -e '.[geant4]'``).

- :mod:`diffcalo.geant4.data`: the substitute data directory EM-only Geant4 needs offline
  (``diffcalo geant4 setup``) and the environment a Geant4 process must start with;
- :mod:`diffcalo.geant4.geometry`, :mod:`diffcalo.geant4.worker`, :mod:`diffcalo.geant4.backend`: the
  Geant4 backend of :func:`diffcalo.simulate` (``backend="geant4"``);
- :mod:`diffcalo.geant4.library`: shower libraries (``diffcalo geant4 library``);
- :mod:`diffcalo.geant4.calibrate`, :mod:`diffcalo.geant4.validate`: the calibration of the parametric
  model to the libraries (``diffcalo calibrate``) and ``diffcalo validate --geant4``.

Importing these modules does not import Geant4 (only worker processes do). See ``docs/geant4.md``.
"""

from diffcalo.geant4.data import DATA_VARIABLES, default_data_dir, ensure_data, environment, setup_data
from diffcalo.geant4.geometry import register_geant4_material

__all__ = ["DATA_VARIABLES", "environment", "setup_data", "default_data_dir", "ensure_data",
           "register_geant4_material"]
