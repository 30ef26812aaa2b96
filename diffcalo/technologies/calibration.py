r"""Per-technology calibration of the parametric shower model to Geant4: plain data.

A :class:`Calibration` holds the factors that tune the parametric model of one technology to its Geant4
shower library (``diffcalo calibrate TECH --library lib.h5`` fits them, :mod:`diffcalo.geant4.calibrate`):

* ``sampling_fraction_scale``: multiplies the sampling fraction of every layer (e/mip x f_mip of the
  GFlash mixture rules), so thickness changes still move it;
* ``sampling_term_scale``: multiplies the stochastic sampling term a (from the stack, or the
  technology's ``sampling_term``);
* ``constant_term``: a relative per-shower fluctuation of the sampled energy added (in quadrature to the
  technology's readout constant term) by the parametric backend only: what coarse sampling adds beyond
  a/sqrt(E) (the sampled fraction depends on where the shower develops relative to thick layers);
* ``core_scale``, ``tail_scale``: multiply the core and tail radii of the radial profile at every depth
  and energy; ``core_fraction_scale`` multiplies the core fraction p (clipped to [0, 1]);
  ``core_scale_log_e``: the core radius also scales by (1 + c ln(E / 10 GeV));
* ``t_max_shift_x0``: added to the mean depth of the shower maximum (X0); ``alpha_scale`` multiplies
  the mean Gamma shape parameter alpha.

The identity (:data:`IDENTITY`) leaves the model as published. Calibrations are stored as JSON
(:meth:`Calibration.to_json`, :func:`load_calibration`); the built-ins' live in
``diffcalo/technologies/calibration/<name>.json`` and are applied by the registry, and a plugin ships
its own file (or passes ``Technology(calibration=Calibration(...))``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib

__all__ = ["Calibration", "IDENTITY", "load_calibration", "BUILTIN_DIR", "builtin_calibration", "FIELDS"]

#: Where the built-in technologies' calibrations live.
BUILTIN_DIR = pathlib.Path(__file__).resolve().parent / "calibration"


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Factors tuning the parametric model of one technology (see the module docstring). Hashable: it is
    static data of a :class:`~diffcalo.technologies.Technology`."""

    sampling_fraction_scale: float = 1.0
    sampling_term_scale: float = 1.0
    constant_term: float = 0.0
    core_scale: float = 1.0
    core_scale_log_e: float = 0.0
    tail_scale: float = 1.0
    core_fraction_scale: float = 1.0
    t_max_shift_x0: float = 0.0
    alpha_scale: float = 1.0
    source: str = ""

    def validate(self, where: str = "calibration") -> "Calibration":
        """Raise ValueError naming the field unless every factor is finite (scales > 0)."""
        for f in dataclasses.fields(self):
            if f.name == "source":
                if not isinstance(self.source, str):
                    raise ValueError(f"{where}.source = {self.source!r}: must be a string")
                continue
            v = getattr(self, f.name)
            if not (isinstance(v, (int, float)) and math.isfinite(v)):
                raise ValueError(f"{where}.{f.name} = {v!r}: must be a finite number")
            if f.name.endswith("_scale") and not v > 0:
                raise ValueError(f"{where}.{f.name} = {v}: must be > 0")
            if f.name == "constant_term" and not 0 <= v < 1:
                raise ValueError(f"{where}.constant_term = {v}: must be in [0, 1)")
        return self

    @property
    def is_identity(self) -> bool:
        return dataclasses.replace(self, source="") == IDENTITY

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


IDENTITY = Calibration()
#: The fitted factors (every field but ``source``).
FIELDS = tuple(f.name for f in dataclasses.fields(Calibration) if f.name != "source")


def load_calibration(path) -> Calibration:
    """Read a calibration JSON file (the ``calibration`` object of ``diffcalo calibrate``'s output, or
    a bare object of the fields).

    Raises:
        ValueError: unreadable, not JSON, unknown fields (named) or bad values.
    """
    path = pathlib.Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable calibration file ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("calibration"), dict):
        data = data["calibration"]
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a calibration is a JSON object of {', '.join(FIELDS)}")
    unknown = sorted(set(data) - set(FIELDS) - {"source"})
    if unknown:
        raise ValueError(f"{path}: unknown calibration fields {unknown}; allowed {', '.join(FIELDS)}, source")
    return Calibration(**data).validate(str(path))


def builtin_calibration(name: str) -> Calibration | None:
    """The shipped calibration of a built-in technology, or None when there is none."""
    path = BUILTIN_DIR / f"{name}.json"
    return load_calibration(path) if path.is_file() else None
