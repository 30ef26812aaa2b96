r"""A study's design <-> ECAL layout, and designs in words.

Design space (:func:`design_space`) of an ECAL wall with ``regions`` nested regions:

- ``option_i`` (categorical, one per region, innermost first): ``"technology:cell_mm"`` from the config
  (:func:`diffcalo.study.config.parse_option` reads it);
- ``ring_i`` (integer 1..max_ring, one per inner region): region i extends its inner neighbour (the
  beam hole for i = 0) by ``ring_i`` modules on each side in x and round(ring_i * H/W) (at least 1) in
  y, H/W the wall's aspect ratio; the last region is the rest of the wall;
- ``split`` (categorical true/false, when the config searches it): read segmented technologies in
  their sections (true) or as one section (false).

Known constraint: the layout is valid (regions nested inside the wall) and its cost is within the
budget. The search space knows nothing of physics; :func:`layout_from_design` turns a design into a
:class:`~diffcalo.layout.Layout`.

Words for a reader (:func:`describe_design`, :func:`describe_preset`, :func:`parameter_label`,
:func:`value_label`): technologies by their display names, cell sizes in cm,
e.g. ``"SpaCal-Pb 3 cm (ring 1) / Shashlik 6 cm (ring 9) / Shashlik 6 cm, no split"``.
"""

from __future__ import annotations

from diffcalo.layout import cell_size_label
from diffcalo.study.config import StudyConfig, parse_option, require_study_config
from diffcalo.technologies import technology_label

__all__ = ["read_designs", "design_space", "layout_from_design", "describe_design", "describe_layout",
           "describe_preset", "parameter_label", "value_label", "PRESET_TITLES"]

#: What each layout preset is, in words.
PRESET_TITLES = {"lhcb-current": "current LHCb layout", "lhcb-upgrade2-baseline": "LHCb Upgrade II baseline",
                 "luxe": "LUXE ECAL", "toy": "toy calorimeter"}


def layout_from_design(config: StudyConfig, design: dict):
    """The :class:`~diffcalo.layout.Layout` of a design (validated).

    Raises:
        TypeError: ``config`` is not a :class:`~diffcalo.study.config.StudyConfig`.
        ValueError: the regions do not fit in the wall (or another layout rule is broken).
    """
    from diffcalo.layout import Layout, Region, preset

    cfg = require_study_config(config)
    wall = preset(cfg.layout)
    aspect = wall.modules_y / wall.modules_x
    prev = wall.beam_hole
    regions = []
    split = bool(design.get("split", True))
    for i in range(cfg.regions):
        tech, cell = parse_option(design[f"option_{i}"])
        if i < cfg.regions - 1:
            ring = int(design[f"ring_{i}"])
            mx, my = prev[0] + 2 * ring, prev[1] + 2 * max(1, round(ring * aspect))
            if mx >= wall.modules_x or my >= wall.modules_y:
                raise ValueError(f"design: region {i} ({mx} x {my} modules) does not fit inside the "
                                 f"{wall.modules_x} x {wall.modules_y} wall")
        else:
            mx, my = wall.modules_x, wall.modules_y
        regions.append(Region(f"region {i + 1}", tech, cell, mx, my, sections=None if split else 1))
        prev = (mx, my)
    return Layout(name="design", module_mm=wall.module_mm, modules_x=wall.modules_x, modules_y=wall.modules_y,
                  regions=tuple(regions), beam_hole=wall.beam_hole, z_mm=wall.z_mm).validate()


def design_space(config: StudyConfig):
    """The :class:`surrogates.space.Space` of the study, with the known constraint (valid, within budget)."""
    from surrogates.space import Categorical, Integer, Space

    cfg = require_study_config(config)
    params = [Categorical(f"option_{i}", tuple(cfg.options)) for i in range(cfg.regions)]
    params += [Integer(f"ring_{i}", 1, cfg.max_ring) for i in range(cfg.regions - 1)]
    if cfg.split:
        params.append(Categorical("split", (True, False)))

    def feasible(design):
        try:
            return layout_from_design(cfg, design).cost() <= cfg.budget
        except ValueError:
            return False

    return Space(params, constraint=feasible)


# ---- words ---------------------------------------------------------------------------------------------
def _option_label(option) -> str:
    tech, cell = parse_option(option)
    return f"{technology_label(tech)} {cell_size_label(cell)} cm"


def _segmented(technologies) -> bool:
    """Whether any of the technologies is read out in more than one longitudinal section."""
    from diffcalo.technologies import default_registry

    reg = default_registry()
    return any(len(reg.get(t).sections or ()) > 1 for t in technologies if t in reg)


def describe_design(config: StudyConfig, design: dict) -> str:
    """A design in words: each region innermost first as "technology cell-size" with its ring (modules
    added on each side), then the longitudinal split when the design chooses it and a region has a
    segmented technology, e.g. "SpaCal-Pb 3 cm (ring 1) / Shashlik 6 cm (ring 9) / Shashlik 6 cm, no split".
    """
    cfg = require_study_config(config)
    parts = []
    for i in range(cfg.regions):
        text = _option_label(design[f"option_{i}"])
        if i < cfg.regions - 1:
            text += f" (ring {int(design[f'ring_{i}'])})"
        parts.append(text)
    out = " / ".join(parts)
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


def value_label(name: str, value) -> str:
    """A design parameter's value for a reader: "spacal-pb:30.3" -> "SpaCal-Pb 3 cm", True -> "split"."""
    if name.startswith("option_"):
        return _option_label(value)
    if name == "split":
        return "split" if value else "no split"
    return str(value)


def read_designs(path, space) -> list[dict]:
    """A sweep's design file: a JSON list of designs, each valid in the study's ``space`` and feasible.

    Raises:
        ConfigError: unreadable, not JSON, not a list of objects, a design outside the space or
            infeasible (the message names the file and the design's index).
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
            raise ConfigError(f"{path}: design {i} {d} is outside the budget or does not fit in the wall")
    return designs
