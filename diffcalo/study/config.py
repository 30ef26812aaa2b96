r"""Study configuration: a TOML file -> frozen dataclasses, validated at load time.

Layout of a study file (every key optional except where noted; defaults in the dataclasses)::

    [study]
    name = "upgrade2-quick"
    seed = 0
    figure_of_merit = "pi0_width"          # "pi0_width" (minimise) or "bs_significance" (maximise)
    collisions = 40.0                      # pile-up collisions per crossing

    [wall]
    layout = "lhcb-upgrade2-baseline"      # wall geometry (module size, wall, beam hole, z) of this preset

    [design]                               # the search space of an ECAL wall
    regions = 3                            # nested regions, the last one covers the rest of the wall
    options = ["spacal-w:15.15", "spacal-pb:30.3", "shashlik:40.4", "shashlik:60.6", "shashlik:121.2"]
    max_ring = 12                          # an inner region adds 1..max_ring modules on each side (x)
    split = true                           # search the longitudinal split of segmented technologies

    [budget]
    total = 16100.0                        # kCHF (the technologies' illustrative module/channel costs)

    [samples]
    train_photons = 24000                  # per design, spread equally over the regions
    signal_decays = 6000
    photon_energy = [1.0, 100.0]           # GeV, log-uniform

    [reco]
    epochs = 12
    batch_size = 256

    [optimizer]
    kind = "gp"                            # "gp" or "random"
    evaluations = 16
    batch = 2                              # designs proposed at once (parallel workers)
    initial = 6

    [executor]
    kind = "inprocess"                     # "inprocess", "process" or "dask"
    workers = 1
    scheduler = ""                         # address of an existing Dask scheduler ("" = LocalCluster)

Errors name the key, the value and what is allowed (:class:`~diffcalo.config.ConfigError`).
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Any

from diffcalo.config import ConfigError, _read_toml

__all__ = ["StudyConfig", "load_study_config", "study_config_from_dict", "FIGURES_OF_MERIT", "EXECUTORS",
           "OPTIMIZERS"]

FIGURES_OF_MERIT = {"pi0_width": "minimise", "bs_significance": "maximise"}
EXECUTORS = ("inprocess", "process", "dask")
OPTIMIZERS = ("gp", "random")


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    name: str = "study"
    seed: int = 0
    figure_of_merit: str = "pi0_width"
    collisions: float = 40.0
    layout: str = "lhcb-upgrade2-baseline"
    regions: int = 3
    options: tuple[str, ...] = ("spacal-w:15.15", "spacal-pb:30.3", "shashlik:40.4", "shashlik:60.6",
                                "shashlik:121.2")
    max_ring: int = 12
    split: bool = True
    budget: float = 16100.0
    train_photons: int = 24000
    signal_decays: int = 6000
    photon_energy: tuple[float, float] = (1.0, 100.0)
    epochs: int = 12
    batch_size: int = 256
    optimizer: str = "gp"
    evaluations: int = 16
    batch: int = 2
    initial: int = 6
    executor: str = "inprocess"
    workers: int = 1
    scheduler: str = ""

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["options"] = list(self.options)
        d["photon_energy"] = list(self.photon_energy)
        return d

    @property
    def option_pairs(self) -> list[tuple[str, float]]:
        return [_parse_option(o) for o in self.options]


_SECTIONS = {
    "study": {"name", "seed", "figure_of_merit", "collisions"},
    "wall": {"layout"},
    "design": {"regions", "options", "max_ring", "split"},
    "budget": {"total"},
    "samples": {"train_photons", "signal_decays", "photon_energy"},
    "reco": {"epochs", "batch_size"},
    "optimizer": {"kind", "evaluations", "batch", "initial"},
    "executor": {"kind", "workers", "scheduler"},
}
_RENAME = {("budget", "total"): "budget", ("optimizer", "kind"): "optimizer", ("executor", "kind"): "executor",
           ("wall", "layout"): "layout"}


def _parse_option(text: str):
    tech, _, cell = str(text).partition(":")
    try:
        return tech, float(cell)
    except ValueError:
        raise ConfigError(f"design.options: {text!r}: write each option as 'technology:cell_mm', "
                          "e.g. 'shashlik:60.6'") from None


def _fail(key, value, allowed):
    return ConfigError(f"{key} = {value!r}: {allowed}")


def _int(key, v, lo=None, hi=None):
    if not isinstance(v, int) or isinstance(v, bool) or (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f" in [{lo}, {hi}]" if hi is not None else (f" >= {lo}" if lo is not None else "")
        raise _fail(key, v, f"must be an integer{rng}")
    return v


def _num(key, v, lo=None, strict=False):
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or \
            (lo is not None and (v <= lo if strict else v < lo)):
        raise _fail(key, v, f"must be a number {'>' if strict else '>='} {lo}" if lo is not None else "must be a number")
    return float(v)


def study_config_from_dict(raw: dict, where: str = "study config") -> StudyConfig:
    """Validate a parsed study file (see the module docstring)."""
    from diffcalo.layout import PRESETS, preset
    from diffcalo.technologies import default_registry

    flat: dict[str, Any] = {}
    for section, table in raw.items():
        if section not in _SECTIONS:
            raise ConfigError(f"{where}: unknown section [{section}]; allowed: {', '.join(f'[{s}]' for s in _SECTIONS)}")
        if not isinstance(table, dict):
            raise _fail(section, table, f"must be a table [{section}]")
        unknown = sorted(set(table) - _SECTIONS[section])
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown} in [{section}]; allowed: {sorted(_SECTIONS[section])}")
        for k, v in table.items():
            flat[_RENAME.get((section, k), k)] = v
    cfg = StudyConfig()
    d = dataclasses.asdict(cfg)
    d.update(flat)
    if not isinstance(d["name"], str) or not d["name"]:
        raise _fail("study.name", d["name"], "must be a non-empty string")
    _int("study.seed", d["seed"], 0)
    if d["figure_of_merit"] not in FIGURES_OF_MERIT:
        raise _fail("study.figure_of_merit", d["figure_of_merit"], f"allowed: {', '.join(FIGURES_OF_MERIT)}")
    d["collisions"] = _num("study.collisions", d["collisions"], 0.0)
    if d["layout"] not in PRESETS:
        raise _fail("wall.layout", d["layout"], f"allowed: {', '.join(PRESETS)}")
    wall = preset(d["layout"])
    _int("design.regions", d["regions"], 1, 5)
    if not isinstance(d["options"], (list, tuple)) or not d["options"]:
        raise _fail("design.options", d["options"], "a non-empty list of 'technology:cell_mm'")
    reg = default_registry()
    for o in d["options"]:
        tech, cell = _parse_option(o)
        if tech not in reg:
            raise _fail("design.options", o, f"unknown technology {tech!r}; available: {', '.join(reg.available())}")
        t = reg.get(tech)
        if all(abs(cell - c) > 1e-6 for c in t.cell_sizes_mm):
            raise _fail("design.options", o, f"technology {tech!r} allows cell sizes {list(t.cell_sizes_mm)} mm")
        if abs(t.module_mm - wall.module_mm) > 1e-6:
            raise _fail("design.options", o, f"{tech!r} modules are {t.module_mm:g} mm; the {d['layout']} wall has "
                        f"{wall.module_mm:g} mm modules")
    d["options"] = tuple(d["options"])
    _int("design.max_ring", d["max_ring"], 1, max(wall.modules_x, wall.modules_y))
    if not isinstance(d["split"], bool):
        raise _fail("design.split", d["split"], "must be true or false")
    d["budget"] = _num("budget.total", d["budget"], 0.0, strict=True)
    _int("samples.train_photons", d["train_photons"], 200 * d["regions"])
    _int("samples.signal_decays", d["signal_decays"], 100)
    pe = d["photon_energy"]
    if not (isinstance(pe, (list, tuple)) and len(pe) == 2 and all(isinstance(v, (int, float)) for v in pe)
            and 0 < pe[0] < pe[1]):
        raise _fail("samples.photon_energy", pe, "[low, high] in GeV with 0 < low < high")
    d["photon_energy"] = (float(pe[0]), float(pe[1]))
    _int("reco.epochs", d["epochs"], 1)
    _int("reco.batch_size", d["batch_size"], 8)
    if d["optimizer"] not in OPTIMIZERS:
        raise _fail("optimizer.kind", d["optimizer"], f"allowed: {', '.join(OPTIMIZERS)}")
    _int("optimizer.evaluations", d["evaluations"], 1)
    _int("optimizer.batch", d["batch"], 1)
    _int("optimizer.initial", d["initial"], 1)
    if d["executor"] not in EXECUTORS:
        raise _fail("executor.kind", d["executor"], f"allowed: {', '.join(EXECUTORS)}")
    _int("executor.workers", d["workers"], 1)
    if not isinstance(d["scheduler"], str):
        raise _fail("executor.scheduler", d["scheduler"], "an address string like 'tcp://host:8786' or ''")
    return StudyConfig(**d)


def load_study_config(path) -> StudyConfig:
    """Read and validate a study TOML file."""
    path = pathlib.Path(path)
    return study_config_from_dict(_read_toml(path), where=str(path))
