r"""Study configuration: a TOML file -> frozen dataclasses, validated at load time.

Layout of a study file (every key optional except where noted; defaults in the dataclasses)::

    [study]
    name = "upgrade2-quick"
    seed = 0
    figure_of_merit = "pi0_resolution"     # "pi0_resolution", "pi0_width" (minimise) or "bs_significance" (maximise)
    collisions = 40.0                      # pile-up collisions per crossing

    [wall]
    layout = "lhcb-upgrade2-baseline"      # wall geometry (module size, wall, beam hole, z) of this preset

    [design]                               # the search space of an ECAL wall
    regions = 3                            # nested regions, the last one covers the rest of the wall
    options = ["spacal-w:15.15", "spacal-pb:30.3", "shashlik:40.4", "shashlik:60.6", "shashlik:121.2"]
    max_ring = 12                          # an inner region adds 1..max_ring modules on each side (x)
    split = true                           # search the longitudinal split of segmented technologies
    cell_size_order = "non-decreasing-outward"   # a region's cells are never smaller than those inside it
                                           # ("free": any order, e.g. 6 cm cells inside 4 cm cells)

    [budget]
    total = 16100.0                        # kCHF (the technologies' illustrative module/channel costs)

    [samples]
    train_photons = 24000                  # per design, spread equally over the regions
    signal_decays = 6000
    photon_energy = [1.0, 100.0]           # GeV, log-uniform

    [reco]
    epochs = 12
    batch_size = 256
    time_window_sigmas = 2.0               # per-cell time window around the signal's expected arrival,
                                           # half-width in the technology's time resolutions (0: off)

    [optimizer]
    kind = "gp"                            # "gp" or "random" (a layout study); "lgso" or "gradient" (a
                                           # continuous stack study, [continuous] below)
    evaluations = 16
    batch = 2                              # designs proposed at once (parallel workers)
    initial = 6
    acquisition = "nei"                    # gp: "nei" (noisy EI), "log_ei" or "ucb"
    noise = "learned"                      # gp: "learned", or "known" (the figure of merit's own error)
    reevaluate_top = 0                     # at the end: re-evaluate the k designs with the best posterior
    reevaluate_seeds = 3                   # mean with this many fresh seeds each (reported separately)

    [executor]
    kind = "inprocess"                     # "inprocess", "process" or "dask"
    workers = 1
    scheduler = ""                         # address of an existing Dask scheduler ("" = LocalCluster)

    [continuous]                           # only with optimizer.kind = "lgso" or "gradient"
    technology = "shashlik"                # the sampling stack whose layer thicknesses are optimised
    backend = "parametric"                 # the simulator: "parametric" (relaxed) or "geant4" (the black box;
                                           # lgso only: Geant4 gives no gradients)
    absorber_mm = [0.3, 4.5]               # bounds of the absorber thickness per layer (default: 0.2-3 x
    active_mm = [0.8, 12.0]                # the technology's), and of the active thickness
    cell_mm = [40.4, 121.2]                # optional: also optimise the cell size within these bounds
                                           # (inside the technology's smallest and largest allowed sizes)
    window_sigmas = [1.0, 10.0]            # optional, with pile-up: also the per-cell time window's
                                           # half-width (in time resolutions) within these bounds
    pileup_radius_mm = 1500.0              # pile-up of study.collisions on an LHCb-size wall, photons at
                                           # the module nearest (this, 0) mm (0: no pile-up)
    start = [1.5, 4.0, 60.6, 3.0]          # the start, one value per optimised parameter (default: the
                                           # technology's thicknesses, its smallest cell, 3 resolutions)
    max_depth_mm = 0.0                     # layers x (absorber + active) <= this (0: the stack's own depth)
    iterations = 15                        # L-GSO iterations / gradient steps
    samples = 2000                         # photons simulated per design point (per call)
    model = "flow"                         # lgso: the surrogate, "flow" (flow matching) or "gan"
    radius = 0.2                           # lgso: trust-region half-width; gradient: the largest step
    learning_rate = 0.1                    # Adam's, in units of the technology's own thicknesses
    refit_every = 3                        # gradient: refit the calibration every this many steps
    reconstruction = "linear"              # the frozen reconstruction: "linear" (section weights) or
                                           # "network" (the Flax energy network, retrained at each refit)

Continuous studies (``optimizer.kind = "lgso"`` or ``"gradient"``, :mod:`diffcalo.study.continuous`)
optimise the absorber and active thickness of one technology's layers (and optionally its cell size and,
with pile-up, the time window) for the photon energy resolution of a linear calibration (photons from
``samples.photon_energy``; pile-up of ``study.collisions`` when ``pileup_radius_mm`` > 0); the layout
keys ([wall], [design], [budget]) and the pi0 figure of merit do not apply to them.

Errors name the key, the value and what is allowed (:class:`~diffcalo.config.ConfigError`). A study
file whose design space holds no design at all because even the cheapest design is over the budget is
refused at load time (:func:`cheapest_design`); one whose inner regions cannot fit in the wall, when
its space is built (:func:`diffcalo.study.design.design_space`).

Cell-size order (``[design] cell_size_order``). By default (``"non-decreasing-outward"``) the design
space only holds designs whose cell size never decreases going outward (region i+1's cells at least
as large as region i's; equal sizes allowed): granularity does not get coarser towards the beam. It
is part of the space's known constraint, with the budget, so no optimiser ever proposes a design that
breaks it. ``"free"`` lets every region take any option (the only behaviour before the key existed).
The constraint alone never empties a space: the cheapest design, one option everywhere, keeps it.

Compatibility. The flat form (:meth:`StudyConfig.as_dict`, stored in every journal) records
``cell_size_order`` only when it is not ``"free"`` (and ``time_window_sigmas`` only when it is not 0), and :func:`study_config_from_flat` reads an absent
key as ``"free"``: a journal written before the key existed reads back as the study it was (free
order), and resumes with a study file that sets ``cell_size_order = "free"``. A study file without the
key gets the new default, so resuming such an old journal with it is refused (the configs differ)
rather than continued under another search space.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Any

from diffcalo.checks import check_bool, check_choice, check_int, check_number
from diffcalo.checks import fail as _fail
from diffcalo.config import MAX_COLLISIONS, MAX_ENERGY_GEV, ConfigError, _read_toml, names_file

__all__ = ["StudyConfig", "load_study_config", "study_config_from_dict", "study_config_from_flat",
           "require_study_config", "cheapest_design", "FIGURES_OF_MERIT", "EXECUTORS", "OPTIMIZERS", "CONTINUOUS_OPTIMIZERS", "CELL_SIZE_ORDERS",
           "MAX_TRAIN_PHOTONS", "MAX_SIGNAL_DECAYS"]

FIGURES_OF_MERIT = {"pi0_resolution": "minimise", "pi0_width": "minimise", "bs_significance": "maximise"}
#: Sample-size caps: one evaluation simulates all its photons in one call and holds them in memory
#: (measured on the quick study's baseline layout: peak RSS 1.40 GB at 6 000 training photons + 3 000
#: decays, 1.66 GB at 24 000 + 12 000, i.e. ~15 kB per training photon with its share of decays).
#: The caps keep one evaluation under ~17 GB (the machines here have 24 GB).
MAX_TRAIN_PHOTONS = 1_000_000
MAX_SIGNAL_DECAYS = 500_000
EXECUTORS = ("inprocess", "process", "dask")
OPTIMIZERS = ("gp", "random", "lgso", "gradient")
#: The optimisers of continuous stack studies (:mod:`diffcalo.study.continuous`).
CONTINUOUS_OPTIMIZERS = ("lgso", "gradient")
#: The frozen reconstructions of continuous studies (:mod:`diffcalo.design_gradient`).
STACK_RECONSTRUCTIONS = ("linear", "network")
#: Flat names of the ``[continuous]`` keys (only written to a journal by continuous studies).
CONTINUOUS_KEYS = ("stack_technology", "stack_backend", "absorber_range", "active_range", "stack_start", "max_depth_mm", "iterations",
                   "samples_per_point", "lgso_model", "radius", "learning_rate", "refit_every", "cell_range",
                   "window_range", "pileup_radius_mm", "stack_reconstruction")
LGSO_MODELS = ("flow", "gan")
STACK_BACKENDS = ("parametric", "geant4")
#: ``[optimizer] acquisition`` of the GP (surrogates.acquisition.ACQUISITIONS) and ``noise``
#: (surrogates.bayesopt.NOISE_MODES): spelled out here so that loading a config imports no optimiser.
ACQUISITIONS = ("nei", "log_ei", "ucb")
NOISE_MODES = ("learned", "known")
#: The metric holding each figure of merit's statistical error (None: not estimated).
FOM_ERRORS = {"pi0_resolution": "pi0_resolution_err_mev", "pi0_width": "pi0_width_err_mev", "bs_significance": None}
#: ``[design] cell_size_order``: which designs the space holds, by the order of their regions' cell sizes.
CELL_SIZE_ORDERS = {"non-decreasing-outward": "each region's cells at least as large as the cells of the region "
                                              "inside it (equal sizes allowed)",
                    "free": "any order (finer cells may lie outside coarser ones)"}
#: The value of a flat config (a journal's) that does not record ``cell_size_order``: such a journal was
#: written before the key existed, when every order was allowed.
FLAT_CELL_SIZE_ORDER = "free"


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """A validated study configuration (module docstring; build it with :func:`load_study_config`,
    :func:`study_config_from_dict` or :func:`study_config_from_flat`). Frozen and picklable: it travels
    as it is to the worker processes that evaluate designs."""

    name: str = "study"
    seed: int = 0
    figure_of_merit: str = "pi0_resolution"
    collisions: float = 40.0
    layout: str = "lhcb-upgrade2-baseline"
    regions: int = 3
    options: tuple[str, ...] = ("spacal-w:15.15", "spacal-pb:30.3", "shashlik:40.4", "shashlik:60.6",
                                "shashlik:121.2")
    max_ring: int = 12
    split: bool = True
    cell_size_order: str = "non-decreasing-outward"
    budget: float = 16100.0
    train_photons: int = 24000
    signal_decays: int = 6000
    photon_energy: tuple[float, float] = (1.0, 100.0)
    epochs: int = 12
    batch_size: int = 256
    time_window_sigmas: float = 2.0
    optimizer: str = "gp"
    evaluations: int = 16
    batch: int = 2
    initial: int = 6
    acquisition: str = "nei"
    noise: str = "learned"
    reevaluate_top: int = 0
    reevaluate_seeds: int = 3
    executor: str = "inprocess"
    workers: int = 1
    scheduler: str = ""
    stack_technology: str = "shashlik"
    stack_backend: str = "parametric"
    absorber_range: tuple[float, ...] = ()
    active_range: tuple[float, ...] = ()
    stack_start: tuple[float, ...] = ()
    max_depth_mm: float = 0.0
    iterations: int = 15
    samples_per_point: int = 2000
    lgso_model: str = "flow"
    radius: float = 0.2
    learning_rate: float = 0.1
    refit_every: int = 3
    cell_range: tuple[float, ...] = ()
    window_range: tuple[float, ...] = ()
    pileup_radius_mm: float = 0.0
    stack_reconstruction: str = "linear"

    @property
    def stack_parameters(self) -> tuple[str, ...]:
        """The optimised parameters of a continuous study (:data:`diffcalo.design_gradient.PARAMETERS`)."""
        return ("absorber_mm", "active_mm") + (("cell_mm",) if self.cell_range else ()) + \
            (("window_sigmas",) if self.window_range else ())

    @property
    def continuous(self) -> bool:
        """Whether this is a continuous stack study (``optimizer.kind`` "lgso" or "gradient")."""
        return self.optimizer in CONTINUOUS_OPTIMIZERS

    def as_dict(self) -> dict:
        """The flat, JSON-ready form (the journal stores it; :func:`study_config_from_flat` reads it back).
        ``cell_size_order`` is left out when it is ``"free"``, as in the journals written before the key
        existed (module docstring, Compatibility)."""
        d = dataclasses.asdict(self)
        d["options"] = list(self.options)
        d["photon_energy"] = list(self.photon_energy)
        if d["cell_size_order"] == FLAT_CELL_SIZE_ORDER:
            del d["cell_size_order"]
        if d["time_window_sigmas"] == 0.0:
            del d["time_window_sigmas"]
        for k in CONTINUOUS_KEYS:          # layout studies: as before the keys existed
            if self.continuous:
                d[k] = list(d[k]) if isinstance(d[k], tuple) else d[k]
            else:
                del d[k]
        return d


def require_study_config(config) -> StudyConfig:
    """``config`` itself if it is a :class:`StudyConfig`, else a TypeError saying how to make one."""
    if not isinstance(config, StudyConfig):
        raise TypeError(f"expected a StudyConfig, got {type(config).__name__}: build one with load_study_config(), "
                        "study_config_from_dict() (TOML sections) or study_config_from_flat() (StudyConfig.as_dict())")
    return config


_SECTIONS = {
    "study": {"name", "seed", "figure_of_merit", "collisions"},
    "wall": {"layout"},
    "design": {"regions", "options", "max_ring", "split", "cell_size_order"},
    "budget": {"total"},
    "samples": {"train_photons", "signal_decays", "photon_energy"},
    "reco": {"epochs", "batch_size", "time_window_sigmas"},
    "optimizer": {"kind", "evaluations", "batch", "initial", "acquisition", "noise", "reevaluate_top",
                  "reevaluate_seeds"},
    "executor": {"kind", "workers", "scheduler"},
    "continuous": {"technology", "backend", "absorber_mm", "active_mm", "start", "max_depth_mm", "iterations", "samples", "model",
                   "radius", "learning_rate", "refit_every", "cell_mm", "window_sigmas", "pileup_radius_mm",
                   "reconstruction"},
}
_RENAME = {("budget", "total"): "budget", ("optimizer", "kind"): "optimizer", ("executor", "kind"): "executor",
           ("wall", "layout"): "layout", ("continuous", "technology"): "stack_technology",
           ("continuous", "backend"): "stack_backend",
           ("continuous", "absorber_mm"): "absorber_range", ("continuous", "active_mm"): "active_range",
           ("continuous", "start"): "stack_start", ("continuous", "samples"): "samples_per_point",
           ("continuous", "model"): "lgso_model", ("continuous", "cell_mm"): "cell_range",
           ("continuous", "window_sigmas"): "window_range", ("continuous", "reconstruction"): "stack_reconstruction"}
#: TOML name of each flat [continuous] key, for error messages.
_CONTINUOUS_TOML = {flat: f"continuous.{toml}" for (sec, toml), flat in _RENAME.items() if sec == "continuous"}


def parse_option(text) -> tuple[str, float]:
    """``"technology:cell_mm"`` -> (technology, cell size in mm > 0), e.g. ``"shashlik:60.6"`` ->
    ``("shashlik", 60.6)``.

    Raises:
        ConfigError: not of that form, or the cell size is not a finite number > 0.
    """
    tech, _, cell = str(text).partition(":")
    try:
        value = float(cell)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(cell)
        return tech, value
    except ValueError:
        raise ConfigError(f"design.options: {text!r}: write each option as 'technology:cell_mm', "
                          "e.g. 'shashlik:60.6'") from None


def study_config_from_dict(raw: dict, where: str = "study config") -> StudyConfig:
    """Validate a parsed study file (TOML sections, see the module docstring)."""
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
    return _within_reach(_validated(flat))


def study_config_from_flat(flat: dict, where: str = "study config") -> StudyConfig:
    """Validate a flat config, the form of :meth:`StudyConfig.as_dict` (a journal's stored config, or a
    loaded config with command-line changes); keys not given take their defaults, except
    ``cell_size_order``, which is ``"free"`` when not given (as in a journal written before the key
    existed; module docstring, Compatibility)."""
    if not isinstance(flat, dict):
        raise ConfigError(f"{where}: {flat!r}: must be a table of study settings")
    unknown = sorted(set(flat) - {f.name for f in dataclasses.fields(StudyConfig)})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: "
                          f"{sorted(f.name for f in dataclasses.fields(StudyConfig))}")
    return _validated({"cell_size_order": FLAT_CELL_SIZE_ORDER, "time_window_sigmas": 0.0, **flat})


def _validated(flat: dict) -> StudyConfig:
    """The checks of every value (errors name the TOML key) on the defaults updated by ``flat``."""
    from diffcalo.layout import PRESETS, preset
    from diffcalo.technologies import default_registry

    d = dataclasses.asdict(StudyConfig())
    d.update(flat)
    if not isinstance(d["name"], str) or not d["name"] or "/" in d["name"] or d["name"] in (".", ".."):
        raise _fail("study.name", d["name"], "must be a non-empty string without '/' (it names the run directory)")
    check_int("study.seed", d["seed"], 0, 2 ** 31 - 1)
    check_choice("study.figure_of_merit", d["figure_of_merit"], FIGURES_OF_MERIT)
    d["collisions"] = check_number("study.collisions", d["collisions"], 0.0, MAX_COLLISIONS,
                                   unit="collisions per crossing")
    check_choice("wall.layout", d["layout"], PRESETS)
    wall = preset(d["layout"])
    check_int("design.regions", d["regions"], 1, 5)
    if not isinstance(d["options"], (list, tuple)) or not d["options"]:
        raise _fail("design.options", d["options"], "a non-empty list of 'technology:cell_mm'")
    reg = default_registry()
    for o in d["options"]:
        if not isinstance(o, str):
            raise _fail("design.options", o, "each option is a string 'technology:cell_mm', e.g. 'shashlik:60.6'")
        tech, cell = parse_option(o)
        if tech not in reg:
            raise _fail("design.options", o, f"unknown technology {tech!r}; available: {', '.join(reg.available())}")
        t = reg.get(tech)
        if all(abs(cell - c) > 1e-6 for c in t.cell_sizes_mm):
            raise _fail("design.options", o, f"technology {tech!r} allows cell sizes {list(t.cell_sizes_mm)} mm")
        if abs(t.module_mm - wall.module_mm) > 1e-6:
            raise _fail("design.options", o, f"{tech!r} modules are {t.module_mm:g} mm; the {d['layout']} wall has "
                        f"{wall.module_mm:g} mm modules")
    if len(set(d["options"])) != len(d["options"]):
        raise _fail("design.options", d["options"], "each option at most once")
    d["options"] = tuple(d["options"])
    check_int("design.max_ring", d["max_ring"], 1, max(wall.modules_x, wall.modules_y))
    check_bool("design.split", d["split"])
    check_choice("design.cell_size_order", d["cell_size_order"], CELL_SIZE_ORDERS)
    d["budget"] = check_number("budget.total", d["budget"], 0.0, strict=True, unit="kCHF")
    check_int("samples.train_photons", d["train_photons"], 200 * d["regions"], MAX_TRAIN_PHOTONS)
    check_int("samples.signal_decays", d["signal_decays"], 100, MAX_SIGNAL_DECAYS)
    pe = d["photon_energy"]
    if not (isinstance(pe, (list, tuple)) and len(pe) == 2):
        raise _fail("samples.photon_energy", pe, "[low, high] in GeV with 0 < low < high")
    low = check_number("samples.photon_energy[0]", pe[0], 0.0, MAX_ENERGY_GEV, strict=True, unit="GeV")
    high = check_number("samples.photon_energy[1]", pe[1], 0.0, MAX_ENERGY_GEV, strict=True, unit="GeV")
    if not low < high:
        raise _fail("samples.photon_energy", pe, "[low, high] in GeV with 0 < low < high")
    d["photon_energy"] = (low, high)
    check_int("reco.epochs", d["epochs"], 1, 10_000)
    check_int("reco.batch_size", d["batch_size"], 8, 65_536)
    d["time_window_sigmas"] = check_number("reco.time_window_sigmas", d["time_window_sigmas"], 0.0, 100.0,
                                           unit="time resolutions")
    check_choice("optimizer.kind", d["optimizer"], OPTIMIZERS)
    check_int("optimizer.evaluations", d["evaluations"], 1, 100_000)
    check_int("optimizer.batch", d["batch"], 1, 1024)
    check_int("optimizer.initial", d["initial"], 1, 100_000)
    check_choice("optimizer.acquisition", d["acquisition"], ACQUISITIONS)
    check_choice("optimizer.noise", d["noise"], NOISE_MODES)
    if d["noise"] == "known" and FOM_ERRORS[d["figure_of_merit"]] is None:
        raise _fail("optimizer.noise", d["noise"],
                    f"'learned' for study.figure_of_merit = {d['figure_of_merit']!r} (it has no error estimate; "
                    f"'known' needs one of {sorted(k for k, v in FOM_ERRORS.items() if v)})")
    check_int("optimizer.reevaluate_top", d["reevaluate_top"], 0, 1000)
    check_int("optimizer.reevaluate_seeds", d["reevaluate_seeds"], 1, 1000)
    check_choice("executor.kind", d["executor"], EXECUTORS)
    check_int("executor.workers", d["workers"], 1, 1024)
    if not isinstance(d["scheduler"], str) or (d["scheduler"] and "://" not in d["scheduler"]):
        raise _fail("executor.scheduler", d["scheduler"], "an address string like 'tcp://host:8786' or ''")
    _validated_continuous(d)
    return StudyConfig(**d)


def _validated_continuous(d: dict) -> None:
    """The [continuous] keys (in place): refused unless the optimiser is continuous; ranges, start and depth
    checked against the technology."""
    default = StudyConfig()
    key = lambda k: _CONTINUOUS_TOML.get(k, f"continuous.{k}")      # noqa: E731
    if d["optimizer"] not in CONTINUOUS_OPTIMIZERS:
        for k in ("absorber_range", "active_range", "stack_start", "cell_range", "window_range"):
            if isinstance(d[k], list):
                d[k] = tuple(d[k])
        norm = lambda v: tuple(v) if isinstance(v, (list, tuple)) else v      # noqa: E731
        given = [key(k) for k in CONTINUOUS_KEYS if norm(d[k]) != norm(getattr(default, k))]
        if given:
            raise _fail("optimizer.kind", d["optimizer"], f"'lgso' or 'gradient' for the [continuous] settings {given} "
                        f"(the layout optimisers {', '.join(o for o in OPTIMIZERS if o not in CONTINUOUS_OPTIMIZERS)} "
                        "search [design])")
        return
    from diffcalo.technologies import default_registry

    reg = default_registry()
    tech = d["stack_technology"]
    if tech not in reg:
        raise _fail(key("stack_technology"), tech, f"one of {', '.join(reg.available())}")
    t = reg.get(tech)
    if len(t.stack) != 1 or t.stack[0].absorber_mm <= 0:
        ok = [n for n in reg.available() if len(reg.get(n).stack) == 1 and reg.get(n).stack[0].absorber_mm > 0]
        raise _fail(key("stack_technology"), tech, "a sampling technology with one repeated layer type; "
                    f"available: {', '.join(ok)}")
    nominal = (float(t.stack[0].absorber_mm), float(t.stack[0].active_mm))
    for k, nom in (("absorber_range", nominal[0]), ("active_range", nominal[1])):
        v = d[k]
        if v in ((), []):
            d[k] = (0.2 * nom, 3.0 * nom)
            continue
        if not (isinstance(v, (list, tuple)) and len(v) == 2):
            raise _fail(key(k), v, "[low, high] in mm with 0 < low < high")
        lo = check_number(f"{key(k)}[0]", v[0], 0.0, 1000.0, strict=True, unit="mm")
        hi = check_number(f"{key(k)}[1]", v[1], 0.0, 1000.0, strict=True, unit="mm")
        if not lo < hi:
            raise _fail(key(k), v, "[low, high] in mm with 0 < low < high")
        d[k] = (lo, hi)
    sizes = t.cell_sizes_mm or (t.module_mm,)
    d["pileup_radius_mm"] = check_number(key("pileup_radius_mm"), d["pileup_radius_mm"], 0.0, 3700.0, unit="mm")
    if d["pileup_radius_mm"] and d["pileup_radius_mm"] < 2 * t.module_mm + 3 * max(sizes):
        raise _fail(key("pileup_radius_mm"), d["pileup_radius_mm"], f"0 (no pile-up) or >= "
                    f"{2 * t.module_mm + 3 * max(sizes):g} mm (the window clear of the 4 x 4-module beam hole)")
    for k, lo_ok, hi_ok, unit in (("cell_range", min(sizes), max(sizes), "mm"), ("window_range", 0.1, 100.0, "time resolutions")):
        v = d[k]
        if v in ((), []):
            d[k] = ()
            continue
        if not (isinstance(v, (list, tuple)) and len(v) == 2):
            raise _fail(key(k), v, f"[low, high] ({unit}) within [{lo_ok:g}, {hi_ok:g}], or [] (not optimised)")
        lo = check_number(f"{key(k)}[0]", v[0], lo_ok, hi_ok, unit=unit)
        hi = check_number(f"{key(k)}[1]", v[1], lo_ok, hi_ok, unit=unit)
        if not lo < hi:
            raise _fail(key(k), v, f"[low, high] with low < high, within [{lo_ok:g}, {hi_ok:g}] {unit}")
        d[k] = (lo, hi)
    if d["window_range"] and not d["pileup_radius_mm"]:
        raise _fail(key("window_range"), list(d["window_range"]), "[] without pile-up (the time window only trades "
                    "signal against pile-up): set continuous.pileup_radius_mm")
    if (d["window_range"] or d["pileup_radius_mm"]) and d["stack_backend"] == "geant4":
        raise _fail(key("stack_backend"), d["stack_backend"], "'parametric' with pile-up or a time window "
                    "(the Geant4 backend simulates no pile-up)")
    names = ["absorber_mm", "active_mm"] + (["cell_mm"] if d["cell_range"] else []) + \
        (["window_sigmas"] if d["window_range"] else [])
    ranges = [d["absorber_range"], d["active_range"]] + ([d["cell_range"]] if d["cell_range"] else []) + \
        ([d["window_range"]] if d["window_range"] else [])
    default_start = {"absorber_mm": nominal[0], "active_mm": nominal[1], "cell_mm": float(min(sizes)),
                     "window_sigmas": 3.0}
    start = d["stack_start"]
    if start in ((), []):
        start = tuple(min(max(default_start[n], r[0]), r[1]) for n, r in zip(names, ranges))
    if not (isinstance(start, (list, tuple)) and len(start) == len(names)):
        raise _fail(key("stack_start"), start, "[" + ", ".join(names) + "] (one value per optimised parameter)")
    start = tuple(check_number(f"{key('stack_start')}[{i}]", v, 0.0, 1000.0, strict=True, unit=n.rsplit("_", 1)[-1])
                  for i, (v, n) in enumerate(zip(start, names)))
    for i, (n, r) in enumerate(zip(names, ranges)):
        if not r[0] <= start[i] <= r[1]:
            raise _fail(key("stack_start"), list(start), f"{n} = {start[i]:g} within its bounds {list(r)}")
    d["stack_start"] = start
    layers = int(t.summary()["n_layers"])
    d["max_depth_mm"] = check_number(key("max_depth_mm"), d["max_depth_mm"], 0.0, 1e5, unit="mm")
    depth = d["max_depth_mm"] or layers * sum(nominal)
    if layers * sum(start[:2]) > depth * (1 + 1e-9):
        raise _fail(key("stack_start"), list(start), f"a stack within the depth limit: {layers} layers x "
                    f"({start[0]:g} + {start[1]:g}) mm = {layers * sum(start[:2]):g} mm > {depth:g} mm")
    check_choice(key("stack_backend"), d["stack_backend"], STACK_BACKENDS)
    if d["stack_backend"] == "geant4" and d["optimizer"] != "lgso":
        raise _fail(key("stack_backend"), d["stack_backend"], f"'parametric' for optimizer.kind = {d['optimizer']!r} "
                    "(Geant4 gives no gradients; use optimizer.kind = 'lgso')")
    check_int(key("iterations"), d["iterations"], 1, 10_000)
    check_int(key("samples_per_point"), d["samples_per_point"], 100, 1_000_000)
    check_choice(key("lgso_model"), d["lgso_model"], LGSO_MODELS)
    d["radius"] = check_number(key("radius"), d["radius"], 0.0, 10.0, strict=True, unit="(fraction of the nominal thickness)")
    d["learning_rate"] = check_number(key("learning_rate"), d["learning_rate"], 0.0, 10.0, strict=True)
    check_int(key("refit_every"), d["refit_every"], 1, 10_000)
    check_choice(key("stack_reconstruction"), d["stack_reconstruction"], STACK_RECONSTRUCTIONS)


def _within_reach(cfg: StudyConfig) -> StudyConfig:
    """``cfg`` if its cheapest design fits the budget, else a ConfigError naming budget.total and
    design.options. Checked on study files, not on a journal's stored config: a finished study's report
    must still load if the technologies' costs change later. Continuous studies have no layout: passed."""
    if cfg.continuous:
        return cfg
    cost, option, split = cheapest_design(cfg)
    if cost > cfg.budget:
        how = "" if split else ", no split"
        raise ConfigError(f"budget.total = {cfg.budget:g} kCHF: no design of this space fits it; the cheapest, option "
                          f"{option!r} in every region{how}, costs {cost:.0f} kCHF. Raise budget.total or add a cheaper "
                          "option to design.options")
    return cfg


def cheapest_design(config: StudyConfig) -> tuple[float, str, bool]:
    """The cheapest design of a study's space: (cost in kCHF, option, split). It puts one option on the
    whole wall (cost is per module and per channel, so any mix costs at least as much as the cheapest
    option everywhere), the split chosen where the config searches it (else True: the technologies' own
    sections). One option everywhere keeps every cell-size order: the order constraint alone never
    empties a space, only the budget (checked at load time) or the wall (too small for the regions)."""
    from diffcalo.layout import Region, preset

    cfg = require_study_config(config)
    wall = preset(cfg.layout)
    costs = []
    for option in cfg.options:
        tech, cell = parse_option(option)
        for split in ((True, False) if cfg.split else (True,)):
            region = Region("whole wall", tech, cell, wall.modules_x, wall.modules_y, sections=None if split else 1)
            costs.append((dataclasses.replace(wall, regions=(region,)).cost(), option, split))
    return min(costs, key=lambda t: t[0])


def load_study_config(path) -> StudyConfig:
    """Read and validate a study TOML file."""
    path = pathlib.Path(path)
    with names_file(path):
        return study_config_from_dict(_read_toml(path), where=str(path))
