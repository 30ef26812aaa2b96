r"""A study's design <-> ECAL layout, and designs in words.

Design space (:func:`design_space`) of an ECAL wall with ``regions`` nested regions:

- ``option_i`` (categorical, one per region, innermost first): ``"technology:cell_mm"`` from the config
  (:func:`diffcalo.study.config.parse_option` reads it);
- ``ring_i`` (integer 1..max_ring, one per inner region): region i extends its inner neighbour (the
  beam hole for i = 0) by ``ring_i`` modules on each side in x and round(ring_i * H/W) (at least 1) in
  y, H/W the wall's aspect ratio; the last region is the rest of the wall;
- ``split`` (categorical true/false, when the config searches it): read segmented technologies in
  their sections (true) or as one section (false).

Known constraint (:func:`design_space`): the layout is valid (regions nested inside the wall), its cost
is within the budget and, with ``[design] cell_size_order = "non-decreasing-outward"`` (the default),
its cell sizes do not decrease going outward (:func:`cell_size_order_ok`; equal sizes allowed): no
coarser cells nearer the beam. The optimisers never propose a design that breaks it (random search,
the initial Sobol design, LHS sweeps, the grid and the GP's candidates all pass through it). The search
space knows nothing of physics; :func:`layout_from_design` turns a design into a
:class:`~diffcalo.layout.Layout`.

Words for a reader (:func:`describe_design`, :func:`describe_preset`, :func:`parameter_label`,
:func:`value_label`, :func:`extent_label`): technologies by their display names, cell sizes in cm, the
reach of each inner region from the beam in metres with its ring in modules, e.g.
``"SpaCal-Pb 3 cm out to x = ±0.36 m, y = ±0.36 m (ring 1 module) / Shashlik 6 cm out to x = ±1.45 m,
y = ±1.21 m (ring 9 modules) / Shashlik 6 cm, no split"``.
"""

from __future__ import annotations

import functools

from diffcalo.layout import cell_size_label
from diffcalo.study.config import StudyConfig, parse_option, require_study_config
from diffcalo.technologies import technology_label
from surrogates.space import Categorical, Integer, Space

__all__ = ["read_designs", "design_space", "DesignSpace", "layout_from_design", "cell_size_order_ok", "describe_design",
           "describe_layout", "describe_preset", "parameter_label", "value_label", "extent_label", "PRESET_TITLES"]

#: What each layout preset is, in words.
PRESET_TITLES = {"lhcb-current": "current LHCb layout", "lhcb-upgrade2-baseline": "LHCb Upgrade II baseline",
                 "luxe": "LUXE ECAL", "toy": "toy calorimeter"}


def _wall(cfg: StudyConfig):
    from diffcalo.layout import preset

    return preset(cfg.layout)


def _inner_rectangles(wall, rings) -> list[tuple[int, int]]:
    """The outer rectangle (modules_x, modules_y) of each inner region for its ring sizes (innermost
    first): the one home of the ring geometry (module docstring). Not checked against the wall."""
    aspect = wall.modules_y / wall.modules_x
    prev, out = tuple(wall.beam_hole), []
    for ring in rings:
        prev = (prev[0] + 2 * int(ring), prev[1] + 2 * max(1, round(int(ring) * aspect)))
        out.append(prev)
    return out


def layout_from_design(config: StudyConfig, design: dict):
    """The :class:`~diffcalo.layout.Layout` of a design (validated).

    Raises:
        TypeError: ``config`` is not a :class:`~diffcalo.study.config.StudyConfig`.
        ValueError: the regions do not fit in the wall (or another layout rule is broken).
    """
    from diffcalo.layout import Layout, Region

    cfg = require_study_config(config)
    wall = _wall(cfg)
    sizes = _inner_rectangles(wall, [design[f"ring_{i}"] for i in range(cfg.regions - 1)])
    for i, (mx, my) in enumerate(sizes):
        if mx >= wall.modules_x or my >= wall.modules_y:
            raise ValueError(f"design: region {i} ({mx} x {my} modules) does not fit inside the "
                             f"{wall.modules_x} x {wall.modules_y} wall")
    sizes.append((wall.modules_x, wall.modules_y))
    split = bool(design.get("split", True))
    regions = []
    for i, (mx, my) in enumerate(sizes):
        tech, cell = parse_option(design[f"option_{i}"])
        regions.append(Region(f"region {i + 1}", tech, cell, mx, my, sections=None if split else 1))
    return Layout(name="design", module_mm=wall.module_mm, modules_x=wall.modules_x, modules_y=wall.modules_y,
                  regions=tuple(regions), beam_hole=wall.beam_hole, z_mm=wall.z_mm).validate()


def cell_size_order_ok(config: StudyConfig, design: dict) -> bool:
    """Whether a design keeps the config's cell-size order: with ``cell_size_order =
    "non-decreasing-outward"`` every region's cell size is at least its inner neighbour's (equal sizes
    allowed; 1 µm tolerance); always True with ``"free"``."""
    cfg = require_study_config(config)
    if cfg.cell_size_order == "free":
        return True
    cells = [_cell_mm(design[f"option_{i}"]) for i in range(cfg.regions)]
    return all(outer >= inner - 1e-3 for inner, outer in zip(cells, cells[1:]))


@functools.lru_cache(maxsize=256)
def _cell_mm(option: str) -> float:
    """The cell size (mm) of an option, parsed once (the constraint sees it for every draw of a sample)."""
    return parse_option(option)[1]


class DesignSpace(Space):
    """A study's :class:`~surrogates.space.Space`: the same space, with more rejection rounds when
    sampling (2000, not 200). The cell-size order keeps only a few per cent of the option tuples of a
    space with many regions (4 % of the 5-region default, 0.7 % with the budget): drawing the
    optimiser's pool of 2048 candidates by rejection then needs more rounds than 200 (each draws twice
    the designs still missing). Where 200 rounds sufficed the samples are the same."""

    def sample(self, n: int, *, rng=None, method: str = "uniform", max_tries: int = 2000) -> list[dict]:
        return super().sample(n, rng=rng, method=method, max_tries=max_tries)


def design_space(config: StudyConfig) -> DesignSpace:
    """The :class:`surrogates.space.Space` of the study, with the known constraint: the config's
    cell-size order (:func:`cell_size_order_ok`, checked first: it is cheap), a valid layout (regions
    inside the wall) and a cost within the budget.

    Raises:
        ConfigError: the inner regions do not fit in the wall even with rings of one module (the space
            is empty; the budget is checked when the config is loaded).
    """
    from diffcalo.config import ConfigError

    cfg = require_study_config(config)
    wall = _wall(cfg)
    fits = [mx < wall.modules_x and my < wall.modules_y for mx, my in _inner_rectangles(wall, [1] * (cfg.regions - 1))]
    if not all(fits):
        room = 1 + fits.index(False)
        raise ConfigError(f"design.regions = {cfg.regions}: the {cfg.layout!r} wall ({wall.modules_x} x {wall.modules_y} "
                          f"modules, beam hole {wall.beam_hole[0]} x {wall.beam_hole[1]}) has room for at most {room} "
                          f"region{'s' if room > 1 else ''} (each inner region adds at least one module on each side); "
                          f"set design.regions <= {room} or choose another wall.layout")
    params = [Categorical(f"option_{i}", tuple(cfg.options)) for i in range(cfg.regions)]
    params += [Integer(f"ring_{i}", 1, cfg.max_ring) for i in range(cfg.regions - 1)]
    if cfg.split:
        params.append(Categorical("split", (True, False)))

    def feasible(design):
        try:
            return cell_size_order_ok(cfg, design) and layout_from_design(cfg, design).cost() <= cfg.budget
        except ValueError:
            return False

    return DesignSpace(params, constraint=feasible)


# ---- words ---------------------------------------------------------------------------------------------
def _option_label(option) -> str:
    tech, cell = parse_option(option)
    return f"{technology_label(tech)} {cell_size_label(cell)} cm"


def _segmented(technologies) -> bool:
    """Whether any of the technologies is read out in more than one longitudinal section."""
    from diffcalo.technologies import default_registry

    reg = default_registry()
    return any(len(reg.get(t).sections or ()) > 1 for t in technologies if t in reg)


def extent_label(modules_x: int, modules_y: int, module_mm: float) -> str:
    """How far a region reaches from the beam: the half-width and half-height of its outer rectangle
    (``modules_x`` x ``modules_y`` modules of ``module_mm``) in metres, "x = ±1.45 m, y = ±1.21 m" (no
    "|x|": the text goes into Markdown tables)."""
    return f"x = ±{modules_x * module_mm / 2000:.2f} m, y = ±{modules_y * module_mm / 2000:.2f} m"


def _ring_label(ring: int) -> str:
    return f"ring {ring} module{'s' if ring != 1 else ''}"


def describe_design(config: StudyConfig, design: dict, *, sep: str = " / ") -> str:
    """A design in words: each region innermost first as "technology cell-size", an inner region with how
    far it reaches from the beam (:func:`extent_label`) and its ring (modules added on each side), then
    the longitudinal split when the design chooses it and a region has a segmented technology, e.g.
    "SpaCal-Pb 3 cm out to x = ±0.36 m, y = ±0.36 m (ring 1 module) / Shashlik 6 cm out to x = ±1.45 m,
    y = ±1.21 m (ring 9 modules) / Shashlik 6 cm, no split". ``sep`` joins the regions (a figure title
    takes one per line).
    """
    cfg = require_study_config(config)
    wall = _wall(cfg)
    rings = [int(design[f"ring_{i}"]) for i in range(cfg.regions - 1)]
    parts = [_option_label(design[f"option_{i}"]) for i in range(cfg.regions)]
    for i, (ring, (mx, my)) in enumerate(zip(rings, _inner_rectangles(wall, rings))):
        parts[i] += f" out to {extent_label(mx, my, wall.module_mm)} ({_ring_label(ring)})"
    out = sep.join(parts)
    if "split" in design and _segmented(parse_option(design[f"option_{i}"])[0] for i in range(cfg.regions)):
        out += ", split" if design["split"] else ", no split"
    return out


def describe_layout(layout) -> str:
    """The regions of a layout in words, innermost first, neighbours of one technology grouped:
    "SpaCal-W 1.5 cm / SpaCal-Pb 3 cm / Shashlik 6 / 12 cm"."""
    groups: list[tuple[str, list[str]]] = []
    for r in layout.regions:
        label, size = technology_label(r.technology), cell_size_label(r.cell_size_mm)
        if groups and groups[-1][0] == label:
            groups[-1][1].append(size)
        else:
            groups.append((label, [size]))
    return " / ".join(f"{label} {' / '.join(sizes)} cm" for label, sizes in groups)


def describe_preset(name: str) -> str:
    """A layout preset in words: "current LHCb layout (Shashlik 4 / 6 / 12 cm)"."""
    from diffcalo.layout import preset

    return f"{PRESET_TITLES.get(name, name)} ({describe_layout(preset(name))})"


def parameter_label(name: str) -> str:
    """A design parameter's name for a reader: "option_0" -> "region 1 technology", "ring_0" -> "ring 1
    (modules per side)", "split" -> "longitudinal split" (regions counted from 1, innermost first)."""
    kind, _, index = name.rpartition("_")
    if kind == "option" and index.isdigit():
        return f"region {int(index) + 1} technology"
    if kind == "ring" and index.isdigit():
        return f"ring {int(index) + 1} (modules per side)"
    return {"split": "longitudinal split"}.get(name, name)


def value_label(name: str, value, config: StudyConfig | None = None) -> str:
    """A design parameter's value for a reader: "spacal-pb:30.3" -> "SpaCal-Pb 3 cm", True -> "split"; a
    ring in modules, with ``config`` also its width on each side in x in metres: 9 -> "9 (1.09 m)" on
    the LHCb wall (121.2 mm modules)."""
    if name.startswith("option_"):
        return _option_label(value)
    if name == "split":
        return "split" if value else "no split"
    if name.startswith("ring_") and config is not None:
        return f"{value} ({int(value) * _wall(require_study_config(config)).module_mm / 1000:.2f} m)"
    return str(value)


def read_designs(path, space) -> list[dict]:
    """A sweep's design file: a JSON list of designs, each valid in the study's ``space`` and feasible.

    Raises:
        ConfigError: unreadable, not JSON, not a list of objects, a design outside the space or
            infeasible (over budget, not fitting the wall, against the cell-size order; the message names
            the file and the design's index).
    """
    import json
    import pathlib

    from diffcalo.config import ConfigError

    path = pathlib.Path(path)

    try:
        designs = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such design file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text (UTF-8) file (byte {exc.start}); a design file is JSON") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:      # nesting too deep, an integer of > 4300 digits
        raise ConfigError(f"{path}: cannot be read as JSON: {str(exc)[:120]}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a design file") from None
    if not isinstance(designs, list) or not designs:
        raise ConfigError(f"{path}: must hold a non-empty JSON list of designs (objects like "
                          f"{{{', '.join(repr(n) + ': ...' for n in space.names)}}})")
    for i, d in enumerate(designs):
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: design {i} = {d!r}: must be a JSON object of {space.names}")
        try:
            space.validate(d)
        except ValueError as exc:
            raise ConfigError(f"{path}: design {i}: {exc}") from None
        if not space.feasible(d):
            raise ConfigError(f"{path}: design {i} {d} is outside the study's space: over the budget, regions that do "
                              "not fit in the wall, or finer cells outside coarser ones (design.cell_size_order)")
    return designs
