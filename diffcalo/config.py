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
    max_background = 12

    seed = 1
    batch = 20000               # clusters per streamed batch
"""

from __future__ import annotations

import dataclasses
import pathlib
import tomllib
from typing import Any

from diffcalo.errors import DiffcaloError

__all__ = ["SimulationConfig", "load_simulation_config", "RecoConfig", "load_reco_config", "ConfigError"]


class ConfigError(DiffcaloError, ValueError):
    """A config value that is not allowed: the message names key, value and what is allowed."""


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
    max_background: int = 12
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


def _fail(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{key} = {value!r}: {allowed}")


def _read_toml(path: pathlib.Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_simulation_config(path) -> SimulationConfig:
    """Read and validate a simulation config file."""
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
        if lay["preset"] not in PRESETS:
            raise _fail("layout.preset", lay["preset"], f"allowed {sorted(PRESETS)}")
        kw["layout"] = lay["preset"]
    elif lay:
        need = {"name", "module_mm", "modules_x", "modules_y", "regions"}
        if not need <= set(lay):
            raise ConfigError(f"[layout]: a definition needs the keys {sorted(need)}; missing {sorted(need - set(lay))}")
        region_keys = {"name", "technology", "cell_size_mm", "modules_x", "modules_y", "sections"}
        for i, r in enumerate(lay["regions"]):
            if not isinstance(r, dict) or not {"name", "technology", "cell_size_mm", "modules_x", "modules_y"} <= set(r) \
                    or set(r) - region_keys:
                raise _fail(f"layout.regions[{i}]", r, "a table with keys name, technology, cell_size_mm, modules_x, "
                            "modules_y and optionally sections")
        kw["layout"] = dict(lay)

    def positive_int(key, value):
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise _fail(key, value, "must be an integer >= 1")
        return value

    if "n" in par:
        kw["n"] = positive_int("particles.n", par["n"])
    if "pid" in par:
        if par["pid"] not in SUPPORTED_PIDS:
            raise _fail("particles.pid", par["pid"], f"allowed {SUPPORTED_PIDS}")
        kw["pid"] = par["pid"]
    if "energy" in par:
        e = par["energy"]
        if isinstance(e, (int, float)) and not isinstance(e, bool):
            e = {"kind": "discrete", "values": [float(e)]}
        if not isinstance(e, dict) or e.get("kind") not in ("uniform", "log-uniform", "discrete"):
            raise _fail("particles.energy.kind", e.get("kind") if isinstance(e, dict) else e,
                        "allowed 'uniform', 'log-uniform', 'discrete' (or a number of GeV)")
        need = {"discrete": {"kind", "values"}}.get(e["kind"], {"kind", "low", "high"})
        if set(e) != need:
            raise ConfigError(f"particles.energy = {e!r}: kind {e['kind']!r} takes exactly the keys {sorted(need)}")
        kw["energy"] = e
    if "region" in par:
        kw["region"] = par["region"]
    if "direction" in par:
        d = par["direction"]
        if d != "from-ip" and not (isinstance(d, list) and len(d) == 2 and all(isinstance(v, (int, float)) for v in d)):
            raise _fail("particles.direction", d, "allowed 'from-ip' or [tx, ty]")
        kw["direction"] = d if d == "from-ip" else (float(d[0]), float(d[1]))
    if "mode" in sim:
        if sim["mode"] not in ("relaxed", "realistic"):
            raise _fail("simulation.mode", sim["mode"], "allowed 'relaxed', 'realistic'")
        kw["mode"] = sim["mode"]
    if "window" in sim:
        w = positive_int("simulation.window", sim["window"])
        if w % 2 == 0:
            raise _fail("simulation.window", w, "must be odd")
        kw["window"] = w
    if "depth_nodes" in sim:
        kw["depth_nodes"] = positive_int("simulation.depth_nodes", sim["depth_nodes"])
    if "collisions" in pu:
        c = pu["collisions"]
        if not (isinstance(c, (int, float)) and not isinstance(c, bool) and c >= 0):
            raise _fail("pileup.collisions", c, "must be a number >= 0 (0 = no pile-up)")
        kw["collisions"] = float(c)
    if "max_background" in pu:
        kw["max_background"] = positive_int("pileup.max_background", pu["max_background"])
    if "seed" in raw:
        if not (isinstance(raw["seed"], int) and not isinstance(raw["seed"], bool) and raw["seed"] >= 0):
            raise _fail("seed", raw["seed"], "must be an integer >= 0")
        kw["seed"] = raw["seed"]
    if "batch" in raw:
        kw["batch"] = positive_int("batch", raw["batch"])
    cfg = SimulationConfig(**kw)
    try:
        cfg.energy_spectrum()
    except ValueError as exc:
        raise ConfigError(f"particles.energy: {exc}") from None
    try:
        cfg.build_layout()
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"[layout]: {exc}") from None
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
        [reco.train]                     # diffcalo.reco.train.TrainConfig, for every task
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


def load_reco_config(path) -> RecoConfig:
    """Read and validate a reconstruction config file (errors name the key, the value and what is allowed)."""
    from diffcalo.reco.models import ModelConfig
    from diffcalo.reco.train import TASKS, TrainConfig

    path = pathlib.Path(path)
    raw = _read_toml(path)
    unknown = set(raw) - {"reco"}
    if unknown or not isinstance(raw.get("reco", {}), dict):
        raise ConfigError(f"{path}: unknown top-level key(s) {sorted(unknown)}; a reconstruction config has one table [reco]")
    reco = dict(raw.get("reco", {}))
    allowed = {"tasks", "validation_fraction", "model", "train"}
    if set(reco) - allowed:
        raise ConfigError(f"{path}: unknown key(s) {sorted(set(reco) - allowed)} in [reco]; allowed: {sorted(allowed)}")
    tasks = reco.get("tasks", list(TASKS))
    if not isinstance(tasks, list) or not tasks or any(t not in TASKS for t in tasks):
        raise _fail("reco.tasks", tasks, f"a non-empty list of {list(TASKS)}")
    vf = reco.get("validation_fraction", 0.2)
    if not isinstance(vf, (int, float)) or not 0 < vf < 1:
        raise _fail("reco.validation_fraction", vf, "a number between 0 and 1 (exclusive)")
    model_raw = reco.get("model", {})
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    if not isinstance(model_raw, dict) or set(model_raw) - known:
        raise ConfigError(f"{path}: unknown key(s) {sorted(set(model_raw) - known)} in [reco.model]; allowed: {sorted(known)}")
    try:
        model = ModelConfig(**model_raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: [reco.model]: {exc}") from None
    train_raw = dict(reco.get("train", {}))
    per_task = {t: train_raw.pop(t) for t in list(train_raw) if t in TASKS}
    train = {}
    for t in tasks:
        merged = {**train_raw, **per_task.get(t, {})}
        try:
            train[t] = TrainConfig.from_dict(merged)
        except (TypeError, ValueError) as exc:
            where = f"[reco.train.{t}]" if t in per_task else "[reco.train]"
            raise ConfigError(f"{path}: {where}: {exc}") from None
    return RecoConfig(tasks=tuple(tasks), validation_fraction=float(vf), model=model, train=train)
