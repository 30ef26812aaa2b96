"""Simulation configs: TOML -> a frozen, validated dataclass.

Errors name the key, the value and what is allowed; unknown keys (typos) are errors. Example::

    [layout]
    preset = "lhcb-upgrade2-baseline"
    # or a definition instead of a preset:
    # name = "my-wall"; module_mm = 121.2; modules_x = 64; modules_y = 52; beam_hole = [4, 4]; z_mm = 12620
    # regions = [{ name = "inner", technology = "spacal-w", cell_size_mm = 15.15, modules_x = 8, modules_y = 6 }, ...]

    [particles]
    n = 100000
    pid = 22                    # 22 photon, 11 electron, -11 positron
    energy = { kind = "log-uniform", low = 2.0, high = 100.0 }   # or uniform / discrete (values = [...]) or a number
    region = "spacal-w"         # optional: one region (name or index)
    direction = "from-ip"       # or [tx, ty]

    [simulation]
    mode = "realistic"          # or "relaxed"
    window = 5

    [pileup]
    collisions = 40             # 0 switches pile-up off
    max_background = 48

    seed = 1
    batch = 20000               # clusters per streamed batch
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import tomllib
from typing import Any

from diffcalo.checks import check_bool, check_choice, check_int, check_number, check_str, is_int
from diffcalo.checks import fail as _fail
from diffcalo.errors import ConfigError

__all__ = ["SimulationConfig", "load_simulation_config", "RecoConfig", "load_reco_config", "ConfigError",
           "names_file", "MAX_COLLISIONS", "MAX_BACKGROUND"]

#: Pile-up beyond this many collisions per crossing is refused: the background cap per window
#: (``max_background``) would clip most windows (HL-LHC runs at up to ~200; LHCb Upgrade II at ~40).
MAX_COLLISIONS = 200.0
#: Largest background cap per window (each slot costs one shower per window in memory and time).
MAX_BACKGROUND = 64
#: Largest particle energy accepted in a config (GeV; the LHC beam energy).
MAX_ENERGY_GEV = 7000.0
#: Largest number of clusters simulated in one batch (one simulate call holds the batch in memory).
MAX_BATCH = 200_000



@dataclasses.dataclass(frozen=True)
class SimulationConfig:
    layout: str | dict = "lhcb-upgrade2-baseline"
    n: int = 10000
    pid: int = 22
    energy: dict = dataclasses.field(default_factory=lambda: {"kind": "log-uniform", "low": 2.0, "high": 100.0})
    region: str | int | None = None
    direction: str | tuple[float, float] = "from-ip"
    mode: str = "realistic"
    window: int = 5
    depth_nodes: int | None = None
    collisions: float = 0.0
    max_background: int = 48
    seed: int = 0
    batch: int = 20000

    def as_dict(self) -> dict:
        """The fully resolved config (stored with every dataset)."""
        d = dataclasses.asdict(self)
        d["direction"] = list(d["direction"]) if isinstance(d["direction"], tuple) else d["direction"]
        return d

    def build_layout(self):
        """The :class:`~diffcalo.layout.Layout` (preset name or definition), validated."""
        from diffcalo.layout import Layout, Region, preset

        if isinstance(self.layout, str):
            return preset(self.layout)
        d = dict(self.layout)
        regions = tuple(Region(**r) for r in d.pop("regions"))
        if "beam_hole" in d:
            d["beam_hole"] = tuple(d["beam_hole"])
        return Layout(regions=regions, **d).validate()

    def energy_spectrum(self):
        from diffcalo.particles import discrete_energy, log_uniform_energy, uniform_energy

        e = self.energy
        return {"uniform": lambda: uniform_energy(e["low"], e["high"]),
                "log-uniform": lambda: log_uniform_energy(e["low"], e["high"]),
                "discrete": lambda: discrete_energy(e["values"])}[e["kind"]]()


_SECTIONS = {
    "layout": {"preset", "name", "module_mm", "modules_x", "modules_y", "beam_hole", "z_mm", "regions"},
    "particles": {"n", "pid", "energy", "region", "direction"},
    "simulation": {"mode", "window", "depth_nodes"},
    "pileup": {"collisions", "max_background"},
}
_TOP = {"seed", "batch"}


@contextlib.contextmanager
def names_file(path):
    """Prefix the file name to a :class:`ConfigError` raised inside the block (if it lacks it)."""
    try:
        yield
    except ConfigError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise ConfigError(f"{path}: {exc}") from None


def _read_toml(path: pathlib.Path) -> dict:
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text (UTF-8) file: byte {exc.start} cannot be decoded; "
                          "a config is a TOML text file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except (ValueError, RecursionError) as exc:      # e.g. an integer of more than 4300 digits
        raise ConfigError(f"{path}: cannot be read as TOML: {str(exc)[:120]}") from None


def load_simulation_config(path) -> SimulationConfig:
    """Read and validate a simulation config file (errors name the file, the key, the value and what
    is allowed)."""
    with names_file(path):
        return _load_simulation_config(pathlib.Path(path))


def _load_simulation_config(path: pathlib.Path) -> SimulationConfig:
    from diffcalo.layout import PRESETS
    from diffcalo.particles import SUPPORTED_PIDS

    path = pathlib.Path(path)
    raw = _read_toml(path)
    for key, value in raw.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise _fail(key, value, "must be a table [" + key + "]")
            unknown = set(value) - _SECTIONS[key]
            if unknown:
                raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)} in [{key}]; allowed: {sorted(_SECTIONS[key])}")
        elif key not in _TOP:
            raise ConfigError(f"{path}: unknown key {key!r}; allowed sections {sorted(_SECTIONS)} and keys {sorted(_TOP)}")
    lay, par, sim, pu = (raw.get(k, {}) for k in ("layout", "particles", "simulation", "pileup"))
    kw: dict[str, Any] = {}
    if "preset" in lay:
        if set(lay) != {"preset"}:
            raise ConfigError(f"[layout]: give either preset or a definition, not both (keys {sorted(lay)})")
        kw["layout"] = check_choice("layout.preset", lay["preset"], sorted(PRESETS))
    elif lay:
        need = {"name", "module_mm", "modules_x", "modules_y", "regions"}
        if not need <= set(lay):
            raise ConfigError(f"[layout]: a definition needs the keys {sorted(need)}; missing {sorted(need - set(lay))}")
        if not isinstance(lay["regions"], list) or not lay["regions"]:
            raise _fail("layout.regions", lay["regions"], "a non-empty list of region tables")
        region_keys = {"name", "technology", "cell_size_mm", "modules_x", "modules_y", "sections"}
        for i, r in enumerate(lay["regions"]):
            if not isinstance(r, dict) or not {"name", "technology", "cell_size_mm", "modules_x", "modules_y"} <= set(r) \
                    or set(r) - region_keys:
                raise _fail(f"layout.regions[{i}]", r, "a table with keys name, technology, cell_size_mm, modules_x, "
                            "modules_y and optionally sections")
        if "beam_hole" in lay and not isinstance(lay["beam_hole"], list):
            raise _fail("layout.beam_hole", lay["beam_hole"], "must be [modules_x, modules_y], integers >= 0")
        kw["layout"] = dict(lay)

    if "n" in par:
        kw["n"] = check_int("particles.n", par["n"], 1, 10 ** 10)
    if "pid" in par:
        kw["pid"] = check_choice("particles.pid", par["pid"], SUPPORTED_PIDS)
    if "energy" in par:
        e = par["energy"]
        if isinstance(e, (int, float)) and not isinstance(e, bool):      # a number: one energy (checked below)
            e = {"kind": "discrete", "values": [e]}
        if not isinstance(e, dict) or e.get("kind") not in ("uniform", "log-uniform", "discrete"):
            raise _fail("particles.energy.kind", e.get("kind") if isinstance(e, dict) else e,
                        "allowed 'uniform', 'log-uniform', 'discrete' (or a number of GeV)")
        need = {"discrete": {"kind", "values"}}.get(e["kind"], {"kind", "low", "high"})
        if set(e) != need:
            raise ConfigError(f"particles.energy = {e!r}: kind {e['kind']!r} takes exactly the keys {sorted(need)}")
        if e["kind"] == "discrete":
            if not isinstance(e["values"], list) or not e["values"]:
                raise _fail("particles.energy.values", e["values"], "a non-empty list of energies in GeV")
            vals = [check_number(f"particles.energy.values[{i}]", v, 0.0, MAX_ENERGY_GEV, strict=True, unit="GeV")
                    for i, v in enumerate(e["values"])]
            e = {"kind": "discrete", "values": vals}
        else:
            low = check_number("particles.energy.low", e["low"], 0.0, MAX_ENERGY_GEV, strict=True, unit="GeV")
            high = check_number("particles.energy.high", e["high"], 0.0, MAX_ENERGY_GEV, strict=True, unit="GeV")
            if not low < high:
                raise _fail("particles.energy", e, "need low < high")
            e = {"kind": e["kind"], "low": low, "high": high}
        kw["energy"] = e
    if "region" in par:
        r = par["region"]
        if not (isinstance(r, str) or (is_int(r) and r >= 0)):
            raise _fail("particles.region", r, "a region name or index (integer >= 0) of the layout")
        kw["region"] = r
    if "direction" in par:
        d = par["direction"]
        if d != "from-ip":
            if not (isinstance(d, list) and len(d) == 2):
                raise _fail("particles.direction", d, "allowed 'from-ip' or [tx, ty]")
            d = tuple(check_number(f"particles.direction[{i}]", v, -1.0, 1.0, unit="(slope)") for i, v in enumerate(d))
        kw["direction"] = d
    if "mode" in sim:
        kw["mode"] = check_choice("simulation.mode", sim["mode"], ("relaxed", "realistic"))
    if "window" in sim:
        w = check_int("simulation.window", sim["window"], 1, 31)
        if w % 2 == 0:
            raise _fail("simulation.window", w, "must be odd")
        kw["window"] = w
    if "depth_nodes" in sim:
        kw["depth_nodes"] = check_int("simulation.depth_nodes", sim["depth_nodes"], 1, 64)
    if "collisions" in pu:
        kw["collisions"] = check_number("pileup.collisions", pu["collisions"], 0.0, MAX_COLLISIONS,
                                        unit="collisions per crossing (0 = no pile-up)")
    if "max_background" in pu:
        kw["max_background"] = check_int("pileup.max_background", pu["max_background"], 1, MAX_BACKGROUND)
    if "seed" in raw:
        kw["seed"] = check_int("seed", raw["seed"], 0, 2 ** 63 - 1)
    if "batch" in raw:
        kw["batch"] = check_int("batch", raw["batch"], 1, MAX_BATCH)
    cfg = SimulationConfig(**kw)
    try:
        layout = cfg.build_layout()
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: [layout]: {exc}") from None
    if cfg.region is not None:
        names = [r.name for r in layout.regions]
        if isinstance(cfg.region, str) and cfg.region not in names or \
                isinstance(cfg.region, int) and cfg.region >= len(names):
            raise _fail("particles.region", cfg.region, f"the layout's regions are {names} (or indices 0..{len(names) - 1})")
    return cfg


# ---- reconstruction configs ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RecoConfig:
    """A reconstruction config (``diffcalo train``): tasks, architecture, training settings per task.

    TOML layout::

        [reco]
        tasks = ["energy", "position", "time"]
        validation_fraction = 0.2        # of the --data file, when no --validation file is given
        [reco.model]                     # diffcalo.reco.models.ModelConfig
        conv = [32, 32, 16]
        dense = [64, 32, 16]
        [reco.train]                     # diffcalo.reco.TrainConfig, for every task
        loss = "mse"
        [reco.train.time]                # per-task overrides
        loss = "huber"
    """

    tasks: tuple[str, ...]
    validation_fraction: float
    model: Any
    train: dict

    def as_dict(self) -> dict:
        return dict(tasks=list(self.tasks), validation_fraction=self.validation_fraction,
                    model=dataclasses.asdict(self.model), train={t: dataclasses.asdict(c) for t, c in self.train.items()})


#: Bounds of integer settings of the reconstruction (widths, sizes, counts): beyond them a model does not fit in memory.
_RECO_INT_BOUNDS = {"seed": (0, 2 ** 31 - 1), "kernel": (1, 15), "conv_dims": (2, 3), "batch_size": (1, 1 << 20),
                    "epochs": (1, 100_000), "patience": (1, 100_000)}
_RECO_WIDTH_MAX = 4096
#: Bounds (low, high, low excluded) of float settings; the others are in [0, 1e6].
_RECO_FLOAT_BOUNDS = {"learning_rate": (0.0, 1e6, True)}


def _check_fields(prefix: str, raw: dict, defaults, choices: dict | None = None) -> None:
    """Type-check a reconstruction table against the defaults of its dataclass: bools must be booleans,
    integers integers (bounded), numbers finite numbers, layer lists lists of integers (1..4096), and
    the keys of ``choices`` one of their allowed names (errors name the full key, e.g.
    ``reco.train.time.loss``)."""
    choices = choices or {}
    for key, value in raw.items():
        if key not in {f.name for f in dataclasses.fields(defaults)}:
            continue                                    # unknown keys are reported by the caller
        default = getattr(defaults, key)
        name = f"{prefix}.{key}"
        if key in choices:
            check_choice(name, value, choices[key])
        elif isinstance(default, bool):
            check_bool(name, value)
        elif isinstance(default, int):
            check_int(name, value, *_RECO_INT_BOUNDS.get(key, (0, 10 ** 9)))
        elif isinstance(default, float):
            lo, hi, strict = _RECO_FLOAT_BOUNDS.get(key, (0.0, 1e6, False))
            check_number(name, value, lo, hi, strict=strict)
        elif isinstance(default, tuple):
            if not isinstance(value, list):
                raise _fail(name, value, f"a list of layer widths (integers 1..{_RECO_WIDTH_MAX})")
            for i, v in enumerate(value):
                check_int(f"{name}[{i}]", v, 1, _RECO_WIDTH_MAX)
        elif isinstance(default, str):
            check_str(name, value)
        elif isinstance(default, dict) and not isinstance(value, dict):
            raise _fail(name, value, "must be a table")


def load_reco_config(path) -> RecoConfig:
    """Read and validate a reconstruction config file (errors name the file, the key, the value and
    what is allowed)."""
    with names_file(path):
        return _load_reco_config(pathlib.Path(path))


def _load_reco_config(path: pathlib.Path) -> RecoConfig:
    from diffcalo.reco import TASKS, ModelConfig, TrainConfig
    from diffcalo.reco.config import OPTIMIZERS, SCHEDULES
    from diffcalo.reco.losses import LOSSES

    path = pathlib.Path(path)
    raw = _read_toml(path)
    unknown = set(raw) - {"reco"}
    if unknown or not isinstance(raw.get("reco", {}), dict):
        raise ConfigError(f"{path}: unknown top-level key(s) {sorted(unknown)} or [reco] not a table; a reconstruction "
                          "config has one table [reco]")
    reco = dict(raw.get("reco", {}))
    allowed = {"tasks", "validation_fraction", "model", "train"}
    if set(reco) - allowed:
        raise ConfigError(f"{path}: unknown key(s) {sorted(set(reco) - allowed)} in [reco]; allowed: {sorted(allowed)}")
    tasks = reco.get("tasks", list(TASKS))
    if not isinstance(tasks, list) or not tasks or any(not isinstance(x, str) or x not in TASKS for x in tasks) \
            or len(set(tasks)) != len(tasks):
        raise _fail("reco.tasks", tasks, f"a non-empty list of {list(TASKS)}, each at most once")
    vf = check_number("reco.validation_fraction", reco.get("validation_fraction", 0.2), 0.0, 1.0, strict=True)
    if vf >= 1.0:
        raise _fail("reco.validation_fraction", vf, "a number between 0 and 1 (exclusive)")
    model_raw = reco.get("model", {})
    if not isinstance(model_raw, dict):
        raise _fail("reco.model", model_raw, "must be a table [reco.model]")
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    if set(model_raw) - known:
        raise ConfigError(f"{path}: unknown key(s) {sorted(set(model_raw) - known)} in [reco.model]; allowed: {sorted(known)}")
    _check_fields("reco.model", model_raw, ModelConfig())
    try:
        model = ModelConfig(**model_raw)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"{path}: [reco.model]: {exc}") from None
    train_raw = reco.get("train", {})
    if not isinstance(train_raw, dict):
        raise _fail("reco.train", train_raw, "must be a table [reco.train]")
    train_raw = dict(train_raw)
    per_task = {x: train_raw.pop(x) for x in list(train_raw) if x in TASKS}
    for x, table in per_task.items():
        if not isinstance(table, dict):
            raise _fail(f"reco.train.{x}", table, f"must be a table [reco.train.{x}]")
    train = {}
    choices = dict(loss=LOSSES, optimizer=OPTIMIZERS, schedule=SCHEDULES)
    _check_fields("reco.train", train_raw, TrainConfig(), choices)
    for x, table in per_task.items():
        _check_fields(f"reco.train.{x}", table, TrainConfig(), choices)
    try:                                   # the shared table on its own: its errors name [reco.train]
        TrainConfig.from_dict(train_raw)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"{path}: [reco.train]: {exc}") from None
    for x in tasks:
        merged = {**train_raw, **per_task.get(x, {})}
        try:
            train[x] = TrainConfig.from_dict(merged)
        except (TypeError, ValueError, OverflowError) as exc:
            where = f"[reco.train.{x}]" if x in per_task else "[reco.train]"
            raise ConfigError(f"{path}: {where}: {exc}") from None
    return RecoConfig(tasks=tuple(tasks), validation_fraction=float(vf), model=model, train=train)
