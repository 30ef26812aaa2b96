"""The configuration reference page (``docs/configuration.md``), generated from the config loaders.

Every key of the three config formats (simulation: ``diffcalo simulate``; reconstruction:
``diffcalo train``; study: ``diffcalo optimize`` / ``sweep``) is described here, next to the code,
with its type, allowed values and unit. Defaults are not written by hand: they are what the real
loader gives for a file that omits the key, so the page cannot drift from the code. The test suite
checks that the page is this module's output, that every field of the config dataclasses is
documented and that every documented key is accepted by its loader.

Regenerate the page with ``python -m diffcalo.config_reference docs/configuration.md``.
"""

from __future__ import annotations

import dataclasses
import pathlib
import tempfile
from typing import Any

__all__ = ["Key", "simulation_keys", "reco_keys", "study_keys", "defaults", "render", "EXAMPLES"]

#: The commented example file of each format, shipped with the package (``diffcalo/examples/``).
EXAMPLES = {"simulation": "simulate.toml", "reco": "reco.toml", "study": "study.toml"}

_REQUIRED = object()        # a key that a layout definition must give (no default)


@dataclasses.dataclass(frozen=True)
class Key:
    """One key of a config file.

    Attributes:
        key: the key as written in the file, section included ("particles.n"; "layout.regions[].name"
            for a key of every table in a list).
        attr: where the loaded config holds its value ("n", "model.conv", "train.energy.loss"), or None
            for a key with no default (``default`` then gives the text shown).
        type: TOML type.
        allowed: allowed values or range.
        unit: physical unit ("" for none).
        text: what it does.
        default: the default shown when ``attr`` is None ("required", or a text).
    """

    key: str
    attr: str | None
    type: str
    allowed: str
    unit: str
    text: str
    default: Any = _REQUIRED


def simulation_keys() -> list[Key]:
    """Keys of a simulation config (:func:`diffcalo.config.load_simulation_config`)."""
    from diffcalo.config import MAX_BACKGROUND, MAX_BATCH, MAX_COLLISIONS, MAX_ENERGY_GEV
    from diffcalo.layout import MAX_MODULE_MM, MAX_MODULES, MAX_Z_MM, PRESETS, Layout, Region
    from diffcalo.particles import SUPPORTED_PIDS

    layout_default = {f.name: f.default for f in dataclasses.fields(Layout)}
    region_default = {f.name: f.default for f in dataclasses.fields(Region)}
    presets = ", ".join(f'"{p}"' for p in PRESETS)
    return [
        Key("seed", "seed", "integer", "0 ... 2^63 - 1", "",
            "Random seed of the run: the same seed gives identical clusters."),
        Key("batch", "batch", "integer", f"1 ... {MAX_BATCH}", "clusters",
            "Clusters simulated and written per streamed batch (memory use grows with it)."),
        Key("layout.preset", "layout", "string", presets, "",
            "A preset wall. Give either `preset` or a definition (the keys below), not both."),
        Key("layout.name", None, "string", "any", "", "Definition: name of the wall."),
        Key("layout.module_mm", None, "float", f"> 0, <= {MAX_MODULE_MM:g}", "mm", "Definition: module size."),
        Key("layout.modules_x", None, "integer", f"1 ... {MAX_MODULES}", "modules", "Definition: wall width."),
        Key("layout.modules_y", None, "integer", f"1 ... {MAX_MODULES}", "modules", "Definition: wall height."),
        Key("layout.beam_hole", None, "[integer, integer]", ">= 0 each", "modules",
            "Definition: central beam hole, width and height.", default=list(layout_default["beam_hole"])),
        Key("layout.z_mm", None, "float", f">= 0, <= {MAX_Z_MM:g} (0: test beam at normal incidence)", "mm",
            "Definition: distance of the wall's front face from the interaction point.", default=layout_default["z_mm"]),
        Key("layout.regions", None, "list of tables", "at least one", "",
            "Definition: the regions, innermost first; the last covers the whole wall."),
        Key("layout.regions[].name", None, "string", "any", "", "Region name (`particles.region` may refer to it)."),
        Key("layout.regions[].technology", None, "string", "a registered technology (`diffcalo technologies`)", "",
            "Module technology of the region."),
        Key("layout.regions[].cell_size_mm", None, "float", "a cell size the technology allows; divides the module size",
            "mm", "Cell (readout channel) size."),
        Key("layout.regions[].modules_x", None, "integer", ">= 1, <= the wall's", "modules",
            "Outer width of the region, centred on the beam."),
        Key("layout.regions[].modules_y", None, "integer", ">= 1, <= the wall's", "modules",
            "Outer height of the region, centred on the beam."),
        Key("layout.regions[].sections", None, "integer", ">= 1, or omitted", "",
            "Longitudinal readout sections: omitted = the technology's own segmentation, 1 = no split.",
            default=region_default["sections"]),
        Key("particles.n", "n", "integer", "1 ... 10^10", "particles", "Number of particles (clusters) to simulate."),
        Key("particles.pid", "pid", "integer", ", ".join(map(str, SUPPORTED_PIDS)), "",
            "PDG code: 22 photon, 11 electron, -11 positron."),
        Key("particles.energy", "energy", "table or float",
            '{ kind = "uniform" | "log-uniform", low, high } or { kind = "discrete", values = [...] } or a number; '
            f"0 < energies <= {MAX_ENERGY_GEV:g}, low < high", "GeV", "Energy spectrum of the particles."),
        Key("particles.region", "region", "string or integer", "a region name or index of the layout", "",
            "Shoot at one region only (omitted: the whole wall)."),
        Key("particles.direction", "direction", "string or [float, float]", '"from-ip" or [tx, ty], slopes in [-1, 1]',
            "slope", "Direction: from the interaction point, or a fixed slope (tx = px/pz, ty = py/pz)."),
        Key("simulation.mode", "mode", "string", '"realistic", "relaxed"', "",
            "Realistic (hard cell boundaries, discrete photo-electrons, thresholds) or relaxed (smooth, differentiable)."),
        Key("simulation.window", "window", "integer", "odd, 1 ... 31", "cells", "Cluster window: window x window cells."),
        Key("simulation.depth_nodes", "depth_nodes", "integer", "1 ... 64, or omitted", "",
            "Longitudinal integration nodes of the shower (omitted: the simulator's own choice per region)."),
        Key("pileup.collisions", "collisions", "float", f"0 ... {MAX_COLLISIONS:g}", "collisions per crossing",
            "Pile-up overlaid in every window (0 switches it off)."),
        Key("pileup.max_background", "max_background", "integer", f"1 ... {MAX_BACKGROUND}", "particles per window",
            "Cap on background candidates drawn per window (the overlay's thinning; windows above it are "
            "clipped and counted)."),
    ]


def reco_keys() -> list[Key]:
    """Keys of a reconstruction config (:func:`diffcalo.config.load_reco_config`)."""
    from diffcalo.reco.config import OPTIMIZERS, SCHEDULES
    from diffcalo.reco.features import TASKS
    from diffcalo.reco.losses import LOSSES
    from diffcalo.reco.models import CONV_DIMS, PADDINGS

    quoted = lambda names: ", ".join(f'"{n}"' for n in names)
    train = [
        ("loss", "string", quoted(LOSSES), "", "Loss: mse, mae, huber, physics ((E - E_hat)^2 / E), "
         "truncated_gaussian (likelihood with boundary correction)."),
        ("loss_options", "table", "options of the loss", "", "Options of the loss (e.g. the huber delta)."),
        ("optimizer", "string", quoted(OPTIMIZERS), "", "Optimiser (adamw uses `weight_decay`)."),
        ("learning_rate", "float", "> 0", "", "Peak learning rate."),
        ("schedule", "string", quoted(SCHEDULES), "", "Learning-rate schedule over the run (warmup_cosine: 5 % warm-up; "
         "exponential: x 0.1 over the run)."),
        ("weight_decay", "float", ">= 0", "", "Decoupled weight decay (adamw)."),
        ("batch_size", "integer", "1 ... 2^20", "clusters", "Mini-batch size."),
        ("epochs", "integer", "1 ... 100000", "epochs", "Maximum number of epochs."),
        ("patience", "integer", "1 ... 100000", "epochs", "Early stopping: epochs without a better validation loss."),
        ("conv_l2", "float", ">= 0", "", "L2 penalty on the convolution kernels (per sample)."),
        ("dense_l1", "float", ">= 0", "", "L1 penalty on the dense kernels (per sample)."),
        ("dense_l2", "float", ">= 0", "", "L2 penalty on the dense kernels (per sample)."),
        ("augment", "boolean", "true, false", "", "Symmetry augmentation (flips, 90-degree turns on square maps)."),
        ("use_time", "boolean", "true, false", "", "Feed cell times to the energy and position networks too "
         "(always on for the time task)."),
        ("seed", "integer", "0 ... 2^31 - 1", "", "Seed of initialisation, shuffling and augmentation."),
    ]
    return [
        Key("reco.tasks", "tasks", "list of strings", f"{quoted(TASKS)}, each at most once", "",
            "Networks to train."),
        Key("reco.validation_fraction", "validation_fraction", "float", "0 < f < 1", "",
            "Fraction of the `--data` file held out for validation when no `--validation` file is given."),
        Key("reco.model.conv", "model.conv", "list of integers", "1 ... 4096 each", "channels",
            "Channels of the convolutional layers."),
        Key("reco.model.dense", "model.dense", "list of integers", "1 ... 4096 each, at least one", "units",
            "Widths of the dense layers after the merge of the convolutional and feature branches."),
        Key("reco.model.kernel", "model.kernel", "integer", "odd, 1 ... 15", "cells", "Convolution kernel size."),
        Key("reco.model.padding", "model.padding", "string", quoted(PADDINGS), "",
            "Convolution padding; auto: valid on windows up to 9 cells, same + pooling on larger images."),
        Key("reco.model.batch_norm", "model.batch_norm", "boolean", "true, false", "", "BatchNorm after each convolution."),
        Key("reco.model.conv_dims", "model.conv_dims", "integer", ", ".join(map(str, CONV_DIMS)), "",
            "2: readout sections are feature maps; 3: they are a depth axis convolved in 3-D."),
    ] + [Key(f"reco.train.{name}", f"train.{TASKS[0]}.{name}", typ, allowed, unit,
             text)
         for name, typ, allowed, unit, text in train]


def study_keys() -> list[Key]:
    """Keys of a study config (:func:`diffcalo.study.config.load_study_config`)."""
    from diffcalo.config import MAX_COLLISIONS, MAX_ENERGY_GEV
    from diffcalo.layout import PRESETS
    from diffcalo.study.config import (
        ACQUISITIONS,
        CELL_SIZE_ORDERS,
        EXECUTORS,
        FIGURES_OF_MERIT,
        LGSO_MODELS,
        MAX_SIGNAL_DECAYS,
        MAX_TRAIN_PHOTONS,
        NOISE_MODES,
        OPTIMIZERS,
        STACK_BACKENDS,
        STACK_RECONSTRUCTIONS,
    )

    quoted = lambda names: ", ".join(f'"{n}"' for n in names)
    return [
        Key("study.name", "name", "string", "non-empty, no '/'", "", "Name of the study (names the run directory)."),
        Key("study.seed", "seed", "integer", "0 ... 2^31 - 1", "", "Seed of the study (simulation, training, optimiser)."),
        Key("study.figure_of_merit", "figure_of_merit", "string", quoted(FIGURES_OF_MERIT), "",
            "pi0_resolution: effective pi0 -> gamma gamma mass resolution per candidate in MeV, sqrt(n / I) of a "
            "signal + background fit (the peak width, grown by background under and candidates off the peak; "
            "minimised); pi0_width: the Gaussian width of that fit in MeV (minimised); both from the pi0 of "
            "B_s -> J/psi pi0, designs without a 5-sigma peak get the fit range's width (400 MeV); bs_significance: "
            "S/sqrt(S+B) of B_s -> J/psi pi0 against J/psi + pi0 from another collision, with pile-up in a time "
            "window from a time network; time and mass windows chosen for the best significance (maximised)."),
        Key("study.collisions", "collisions", "float", f"0 ... {MAX_COLLISIONS:g}", "collisions per crossing",
            "Pile-up of every evaluation."),
        Key("wall.layout", "layout", "string", quoted(PRESETS), "",
            "Preset whose wall geometry (module size, wall, beam hole, z) the designs fill."),
        Key("design.regions", "regions", "integer", "1 ... 5", "regions",
            "Nested regions of a design; the last one covers the rest of the wall."),
        Key("design.options", "options", "list of strings", '"technology:cell_mm", a cell size the technology allows, '
            "modules of the wall's size, each at most once", "mm",
            "Technology and cell size each region may take (e.g. \"shashlik:60.6\")."),
        Key("design.max_ring", "max_ring", "integer", "1 ... the wall's size in modules", "modules",
            "An inner region adds 1 ... max_ring modules on each side (x)."),
        Key("design.split", "split", "boolean", "true, false", "",
            "Search the longitudinal split (one or two readout sections) of segmented technologies."),
        Key("design.cell_size_order", "cell_size_order", "string", quoted(CELL_SIZE_ORDERS), "",
            "non-decreasing-outward: only designs whose cells never get smaller going outward (each region's "
            "cells at least as large as those of the region inside it; equal sizes allowed), a known constraint "
            "of the space like the budget, so no optimiser proposes coarser cells nearer the beam; free: any "
            "order. A study journal written before this key existed reads back as free."),
        Key("budget.total", "budget", "float", "> 0, at least the cheapest design's cost", "kCHF",
            "Cost limit of a design (the technologies' illustrative module and channel costs). A budget below the "
            "cheapest design (the cheapest option on the whole wall) is refused when the file is loaded."),
        Key("samples.train_photons", "train_photons", "integer", f"200 x regions ... {MAX_TRAIN_PHOTONS}", "photons",
            "Training photons per design, spread equally over the regions."),
        Key("samples.signal_decays", "signal_decays", "integer", f"100 ... {MAX_SIGNAL_DECAYS}", "decays",
            "pi0 (and B_s) decays per design for the figure of merit."),
        Key("samples.photon_energy", "photon_energy", "[float, float]", f"0 < low < high <= {MAX_ENERGY_GEV:g}", "GeV",
            "Training photon energies, log-uniform in [low, high]."),
        Key("reco.epochs", "epochs", "integer", "1 ... 10000", "epochs", "Training epochs of the reconstruction networks."),
        Key("reco.batch_size", "batch_size", "integer", "8 ... 65536", "clusters", "Training mini-batch size."),
        Key("reco.time_window_sigmas", "time_window_sigmas", "float", "0 ... 100", "time resolutions",
            "Per-cell time window around the signal vertex's expected arrival (diffcalo.reco.timing), half-width "
            "in the technology's time resolution sigma_t(E); cells outside it are dropped before training and "
            "reconstruction (with pile-up only). 0 switches it off; a journal without the key had it off."),
        Key("optimizer.kind", "optimizer", "string", quoted(OPTIMIZERS), "",
            "gp: Gaussian-process Bayesian optimisation; random: random search (both search [design]); lgso: local "
            "generative surrogate optimisation, gradient: gradient descent through the relaxed simulator (both "
            "optimise [continuous], a stack's layer thicknesses)."),
        Key("optimizer.evaluations", "evaluations", "integer", "1 ... 100000", "designs", "Designs evaluated in total."),
        Key("optimizer.batch", "batch", "integer", "1 ... 1024", "designs",
            "Designs proposed at once (evaluated in parallel by the workers)."),
        Key("optimizer.initial", "initial", "integer", "1 ... 100000", "designs",
            "Random designs before the Gaussian process proposes."),
        Key("optimizer.acquisition", "acquisition", "string", quoted(ACQUISITIONS), "",
            "gp: nei = log noisy expected improvement (integrates over the noisy incumbent; batches sample the "
            "pending designs), log_ei = analytic log EI on the lowest posterior mean, ucb = lower confidence bound."),
        Key("optimizer.noise", "noise", "string", quoted(NOISE_MODES), "",
            "gp: learned = one noise variance fitted by the GP; known = each evaluation's variance is its figure "
            "of merit's statistical error squared (pi0_resolution and pi0_width only)."),
        Key("optimizer.reevaluate_top", "reevaluate_top", "integer", "0 ... 1000", "designs",
            "After the search, re-evaluate the k evaluated designs with the best posterior mean with fresh seeds "
            "(reported separately: values free of the winner's curse). 0: off."),
        Key("optimizer.reevaluate_seeds", "reevaluate_seeds", "integer", "1 ... 1000", "seeds",
            "Fresh seeds per re-evaluated design (1000, 1001, ...: never used by the search)."),
        Key("executor.kind", "executor", "string", quoted(EXECUTORS), "",
            "Where designs are evaluated: this process, a process pool, or Dask."),
        Key("executor.workers", "workers", "integer", "1 ... 1024", "processes", "Parallel workers."),
        Key("executor.scheduler", "scheduler", "string", '"" or an address like "tcp://host:8786"', "",
            'An existing Dask scheduler ("" starts a local cluster).'),
        Key("continuous.technology", "stack_technology", "string", "a sampling technology with one layer type", "",
            "Continuous studies (optimizer.kind lgso / gradient): the technology whose absorber and active "
            "thickness per layer are optimised for the photon energy resolution of a linear calibration."),
        Key("continuous.backend", "stack_backend", "string", quoted(STACK_BACKENDS), "",
            "The simulator of a continuous study: the relaxed parametric one, or Geant4 as a black box (lgso only)."),
        Key("continuous.absorber_mm", "absorber_range", "[low, high]", "0 < low < high", "mm",
            "Bounds of the absorber thickness per layer ([] : 0.2-3 x the technology's)."),
        Key("continuous.active_mm", "active_range", "[low, high]", "0 < low < high", "mm",
            "Bounds of the active thickness per layer ([] : 0.2-3 x the technology's)."),
        Key("continuous.cell_mm", "cell_range", "[low, high]", "within the technology's allowed sizes, or []", "mm",
            "Also optimise the cell size (continuous between these bounds; [] : fixed at the smallest allowed)."),
        Key("continuous.window_sigmas", "window_range", "[low, high]", "0.1 ... 100, or []", "time resolutions",
            "With pile-up: also optimise the per-cell time window's half-width (diffcalo.reco.timing) between these "
            "bounds ([] : no time window)."),
        Key("continuous.pileup_radius_mm", "pileup_radius_mm", "float", "0, or clear of the beam hole ... 3700", "mm",
            "Pile-up of study.collisions on an LHCb-size wall, photons from the interaction point at the module "
            "nearest (this, 0) mm; the objective becomes the pseudo-Huber loss and the calibration gets a pedestal "
            "(diffcalo.design_gradient). 0: no pile-up."),
        Key("continuous.start", "stack_start", "[absorber, active, (cell), (window)]",
            "within the bounds and the depth limit", "mm",
            "The start, one value per optimised parameter ([] : the technology's thicknesses, its smallest cell, 3)."),
        Key("continuous.max_depth_mm", "max_depth_mm", "float", ">= 0", "mm",
            "Depth limit: layers x (absorber + active) <= it (0: the stack's own depth), met by every proposal."),
        Key("continuous.iterations", "iterations", "integer", "1 ... 10000", "", "L-GSO iterations / gradient steps."),
        Key("continuous.samples", "samples_per_point", "integer", "100 ... 1000000", "photons",
            "Photons simulated per design point (one simulator call)."),
        Key("continuous.model", "lgso_model", "string", quoted(LGSO_MODELS), "",
            "lgso: the conditional surrogate, flow matching or the paper's Cramér GAN."),
        Key("continuous.radius", "radius", "float", "0 ... 10", "x nominal thickness",
            "lgso: half-width of the trust-region box; gradient: the largest step."),
        Key("continuous.learning_rate", "learning_rate", "float", "0 ... 10", "x nominal thickness",
            "Adam's learning rate (in units of the technology's own thicknesses)."),
        Key("continuous.reconstruction", "stack_reconstruction", "string", quoted(STACK_RECONSTRUCTIONS), "",
            "The frozen reconstruction: a linear calibration of the section energies (with a pedestal under pile-up), "
            "or the Flax energy network (diffcalo.design_gradient.NetCalibration), retrained at every refit (each "
            "gradient refit, each L-GSO iteration on the centre's rows). A call's own fom stays the linear one."),
        Key("continuous.refit_every", "refit_every", "integer", "1 ... 10000", "steps",
            "gradient: refit the linear calibration every this many steps (lgso refits it at every iteration)."),
    ]


def defaults() -> dict:
    """The loaded config of an empty file, per format: where every default shown comes from."""
    from diffcalo.config import load_reco_config, load_simulation_config
    from diffcalo.study.config import study_config_from_dict

    with tempfile.TemporaryDirectory() as tmp:
        empty = pathlib.Path(tmp) / "empty.toml"
        empty.write_text("")
        return dict(simulation=load_simulation_config(empty), reco=load_reco_config(empty),
                    study=study_config_from_dict({}))


def lookup(config, attr: str):
    """The value at a dotted path of a loaded config (attributes, or keys of a dict)."""
    value = config
    for part in attr.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return value


def _toml(value) -> str:
    """A default as it would be written in the file."""
    if value is _REQUIRED:
        return "required in a definition"
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}" if value else "{}"
    if isinstance(value, float):
        return f"{value:g}" if "e" in f"{value:g}" else repr(value)
    return str(value)


_FORMATS = [
    ("simulation", "Simulation config", "diffcalo simulate CONFIG -o data.h5",
     "A dataset of simulated clusters: the wall, the particles, the simulator settings and pile-up. "
     "Keys at the top of the file (`seed`, `batch`) come before the first table.", simulation_keys),
    ("reco", "Reconstruction config", "diffcalo train CONFIG --data train.h5 -o model/",
     "The reconstruction networks: which tasks, their architecture and training settings. "
     "Everything sits under one table [reco]. A `reco.train` key set in [reco.train] applies to every task; "
     "set in [reco.train.TASK] (e.g. [reco.train.time]) it applies to that task only.", reco_keys),
    ("study", "Study config", "diffcalo optimize CONFIG -o runs/  (or diffcalo sweep CONFIG ...)",
     "A design study: the search space of ECAL walls, the budget, the samples and reconstruction per "
     "evaluation, the optimiser and where evaluations run.", study_keys),
]


def render() -> str:
    """The reference page (Markdown)."""
    loaded = defaults()
    lines = ["# Configuration reference", "",
             "<!-- generated by `python -m diffcalo.config_reference docs/configuration.md`: edit the descriptions in",
             "     diffcalo/config_reference.py, not this page (tests/test_config_reference.py checks they agree) -->", "",
             "diffcalo reads three TOML formats. Every key is optional (a layout definition needs the keys marked so); a key",
             "the loader does not know is an error (a typo never passes silently), and every value is checked",
             "when the file is loaded (errors name the file, the key, the value and what is allowed).",
             "Defaults below are what the loader gives when the key is left out.",
             "Units: lengths in mm, energies in GeV, costs in kCHF.", "",
             "A commented example of each format ships with the package, in `diffcalo/examples/` "
             "(`python -c \"import diffcalo.examples as e; print(e.path('study.toml'))\"` prints where).", ""]
    for name, title, command, intro, keys in _FORMATS:
        lines += [f"## {title}", "", f"`{command}`. {intro} Example: "
                  f"[`diffcalo/examples/{EXAMPLES[name]}`](../diffcalo/examples/{EXAMPLES[name]}).", "",
                  "| key | type | default | allowed | unit | meaning |", "|---|---|---|---|---|---|"]
        for k in keys():
            default = lookup(loaded[name], k.attr) if k.attr else k.default
            cells = [f"`{k.key}`", k.type, f"`{_toml(default)}`", k.allowed, k.unit or "–", k.text]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Write the page to the path given (or print it)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    text = render()
    if args:
        pathlib.Path(args[0]).write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
