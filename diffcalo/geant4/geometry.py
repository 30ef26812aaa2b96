r"""The Geant4 description of a technology's stack: plain data, built without Geant4.

:func:`stack_spec` turns a :class:`~diffcalo.technologies.Technology` and a cell grid into a
:class:`StackSpec` (layers front to back, each an absorber slab, an active slab divided into cells and
an air gap, grouped into readout sections). The worker (:mod:`diffcalo.geant4.worker`) builds exactly
this in Geant4; nothing here imports Geant4, so the spec can be made, hashed and shipped to worker
processes anywhere.

Materials: every diffcalo material name maps to a Geant4 definition (:data:`GEANT4_MATERIALS`): a NIST
material where one exists (``G4_Pb``, ``G4_W``, ``G4_Si``, ``G4_POLYSTYRENE``, ...), otherwise a
compound or mixture from NIST elements with the density of :mod:`diffcalo.materials`. A plugin
technology whose materials are not in the table registers them with :func:`register_geant4_material`.

SpaCal modules (fibres in an absorber matrix) are built as their equivalent layers: the same absorber
and fibre volume fractions and sampling pitch as the parametric description (the "equivalent
homogeneous-layer approximation"; see ``docs/geant4.md`` for its expected error).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

from diffcalo.errors import ConfigError

__all__ = ["GEANT4_MATERIALS", "LayerSpec", "StackSpec", "stack_spec", "register_geant4_material",
           "geant4_material", "grid_cells"]

#: diffcalo material name -> Geant4 definition: ``("nist", NAME)``, ``("atoms", density g/cm3,
#: {element symbol: atoms per molecule})`` or ``("mass", density g/cm3, {element symbol: mass fraction})``.
GEANT4_MATERIALS: dict[str, tuple] = {
    "Pb": ("nist", "G4_Pb"), "W": ("nist", "G4_W"), "Si": ("nist", "G4_Si"), "Fe": ("nist", "G4_Fe"),
    "Cu": ("nist", "G4_Cu"), "Zn": ("nist", "G4_Zn"), "Al": ("nist", "G4_Al"), "C": ("nist", "G4_C"),
    "O": ("nist", "G4_lO2"), "H": ("nist", "G4_H"), "Ga": ("nist", "G4_Ga"), "Gd": ("nist", "G4_Gd"),
    "steel": ("nist", "G4_Fe"),
    "polystyrene": ("nist", "G4_POLYSTYRENE"), "scintillator": ("nist", "G4_POLYSTYRENE"),
    "air": ("nist", "G4_AIR"), "PbWO4": ("nist", "G4_PbWO4"),
    "brass": ("mass", 8.53, {"Cu": 0.70, "Zn": 0.30}),
    "GAGG": ("atoms", 6.63, {"Gd": 3, "Al": 2, "Ga": 3, "O": 12}),
}


def register_geant4_material(name: str, definition: tuple) -> None:
    """Give a (plugin) material a Geant4 definition; see :data:`GEANT4_MATERIALS` for the forms.

    Raises:
        ConfigError: the definition is not one of the three forms.
    """
    _check_definition(name, definition)
    GEANT4_MATERIALS[name] = tuple(definition)


def _check_definition(name, d) -> None:
    ok = isinstance(d, tuple) and len(d) >= 2 and d[0] in ("nist", "atoms", "mass")
    if ok and d[0] == "nist":
        ok = len(d) == 2 and isinstance(d[1], str) and d[1].startswith("G4_")
    elif ok:
        ok = (len(d) == 3 and isinstance(d[1], (int, float)) and d[1] > 0 and isinstance(d[2], dict) and d[2]
              and all(isinstance(k, str) and isinstance(v, (int, float)) and v > 0 for k, v in d[2].items()))
    if not ok:
        raise ConfigError(f"Geant4 material {name!r} = {d!r}: expected ('nist', 'G4_...'), ('atoms', density g/cm3, "
                          "{symbol: count}) or ('mass', density g/cm3, {symbol: fraction})")


def geant4_material(name: str) -> tuple:
    """The Geant4 definition of a diffcalo material (a clear error for a material without one)."""
    try:
        return GEANT4_MATERIALS[name]
    except KeyError:
        raise ConfigError(f"material {name!r} has no Geant4 definition; known: {', '.join(sorted(GEANT4_MATERIALS))}. "
                          "A plugin registers one with diffcalo.geant4.register_geant4_material(name, ('nist', "
                          "'G4_...'))") from None


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """``count`` identical layers: absorber slab, active slab (segmented into cells), air gap (mm)."""

    absorber: str
    absorber_mm: float
    active: str
    active_mm: float
    gap_mm: float
    count: int

    @property
    def pitch_mm(self) -> float:
        return self.absorber_mm + self.active_mm + self.gap_mm


@dataclasses.dataclass(frozen=True)
class StackSpec:
    """Everything the worker builds: layer blocks, readout sections, the cell grid and the materials.

    Attributes:
        technology: the technology's registry name (for messages and library metadata).
        blocks: the layer blocks, front to back.
        sections: layers per readout section (sum = number of layers).
        cell_mm: cell size (mm); the active slabs are divided into ``nx`` x ``ny`` cells centred on
            the beam axis (x = y = 0 at the centre of the central cell when ``nx``, ``ny`` are odd).
        nx, ny: cells along x and y.
        materials: name -> Geant4 definition of every material used.
    """

    technology: str
    blocks: tuple[LayerSpec, ...]
    sections: tuple[int, ...]
    cell_mm: float
    nx: int
    ny: int
    materials: tuple[tuple[str, tuple], ...]

    @property
    def n_layers(self) -> int:
        return sum(b.count for b in self.blocks)

    @property
    def n_sections(self) -> int:
        return len(self.sections)

    @property
    def depth_mm(self) -> float:
        return sum(b.count * b.pitch_mm for b in self.blocks)

    def layer_sections(self) -> list[int]:
        """Section index of every layer."""
        out = []
        for s, n in enumerate(self.sections):
            out += [s] * n
        return out

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    def key(self) -> str:
        """A short hash identifying the geometry (workers rebuild only when it changes)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


def grid_cells(cell_mm: float, moliere_mm: float, depth_mm: float, window: int, max_offset_mm: float,
               max_slope: float) -> int:
    """Odd number of cells per side of the scored grid: at least the window plus one cell, and wide
    enough for 5 Moliere radii on each side of the shower axis wherever it leaves the stack
    (offset + slope x depth), so lateral containment is not cut by the world."""
    half = 5.0 * moliere_mm + max_offset_mm + max_slope * depth_mm
    n = max(window + 2, 2 * math.ceil(half / cell_mm - 0.5) + 1)
    return n if n % 2 == 1 else n + 1


def stack_spec(technology, cell_mm: float, nx: int, ny: int | None = None) -> StackSpec:
    """The :class:`StackSpec` of ``technology`` with an ``nx`` x ``ny`` grid of ``cell_mm`` cells.

    Raises:
        ConfigError: a thickness that is not a finite number >= 0 (traced values cannot go to Geant4),
            a material without a Geant4 definition, or a bad grid.
    """
    ny = nx if ny is None else ny
    name = getattr(technology, "name", "?")
    if not (isinstance(cell_mm, (int, float)) and math.isfinite(cell_mm) and cell_mm > 0):
        raise ConfigError(f"cell size = {cell_mm!r} mm: must be a positive number")
    for n, what in ((nx, "nx"), (ny, "ny")):
        if not (isinstance(n, int) and n >= 1):
            raise ConfigError(f"{what} = {n!r}: must be an integer >= 1")
    blocks = []
    for i, b in enumerate(technology.stack):
        vals = {}
        for field in ("absorber_mm", "active_mm"):
            try:
                v = float(getattr(b, field))
            except (TypeError, ValueError):
                raise ConfigError(f"technology {name!r}: stack[{i}].{field} is not a concrete number (a traced "
                                  "value cannot be simulated by Geant4)") from None
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"technology {name!r}: stack[{i}].{field} = {v}: must be >= 0 and finite")
            vals[field] = v
        blocks.append(LayerSpec(absorber=b.absorber, absorber_mm=vals["absorber_mm"], active=b.active,
                                active_mm=vals["active_mm"], gap_mm=float(b.gap_mm), count=int(b.count)))
    used = sorted({m for b in blocks for m in (b.absorber, b.active)} | {"air"})
    materials = tuple((m, geant4_material(m)) for m in used)
    return StackSpec(technology=name, blocks=tuple(blocks), sections=tuple(technology.section_layers),
                     cell_mm=float(cell_mm), nx=nx, ny=ny, materials=materials)
