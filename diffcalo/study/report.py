r"""Study reports: PNG figures and a Markdown summary from a run directory's journal.

Figures: the best layout drawn on the wall; the figure of merit against the evaluation number (with
the best so far); cost against figure of merit for all evaluations with the Pareto front; slices of a
GP fitted to the journal through the best design, one panel per design parameter; and, when the
run directory holds ``baselines.json`` (written by the flagship study), the baselines' figures of
merit beside the best design's.

Written for a reader who has not seen the code: designs in words
(:func:`~diffcalo.study.design.describe_design`: how far each region reaches from the beam in metres,
with its ring in modules), the search space's cell-size rule, units on every figure of merit, axis and column,
the statistical error next to every figure of merit, resolution-fit terms at their bound shown as
limits and poor fits flagged (:func:`~diffcalo.metrics.format_fit`).

The caller chooses the matplotlib backend (the ``diffcalo`` command uses Agg).
"""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np

from diffcalo.io import write_text_atomic
from diffcalo.metrics import format_measurement, measurement_parts
from diffcalo.samples import M_PI0
from diffcalo.study.config import FIGURES_OF_MERIT, FOM_ERRORS, StudyConfig, study_config_from_flat
from diffcalo.study.design import (
    PRESET_TITLES,
    describe_design,
    describe_preset,
    design_space,
    extent_label,
    layout_from_design,
    parameter_label,
    value_label,
)
from diffcalo.study.objective import MAX_BACKGROUND_PER_WINDOW
from diffcalo.study.runner import load_journal, split_records
from diffcalo.technologies import technology_label

__all__ = ["write_report", "pareto_front", "gp_slices_figure", "FOM_DESCRIPTIONS", "fom_label", "format_fom"]

#: Each figure of merit for a reader: (what it is, unit; "" for a dimensionless number).
FOM_DESCRIPTIONS = {"pi0_resolution": ("π0 → γγ effective mass resolution", "MeV"),
                    "pi0_width": ("π0 → γγ mass peak width (signal + background fit)", "MeV"),
                    "bs_significance": ("B_s → J/ψ π0 significance S/√(S+B)", "")}
#: Legend of the values outside the search space in the GP slices.
INFEASIBLE_LABEL = "outside the space (budget, wall or cell-size order)"


def fom_label(name: str) -> str:
    """A figure of merit with its unit, for axes and table columns: "π0 → γγ mass core width (MeV)"."""
    text, unit = FOM_DESCRIPTIONS[name]
    return f"{text} ({unit or 'dimensionless'})"


def _fom_error(name: str, metrics: dict) -> float | None:
    key = FOM_ERRORS[name]
    value = (metrics or {}).get(key) if key else None
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def format_fom(name: str, value: float, metrics: dict, *, bold: bool = False, with_unit: bool = True) -> str:
    """A figure of merit with its statistical error (from ``metrics``) and unit: "95.3 ± 1.2 MeV"; a
    figure of merit without an error estimate says so ("2.31 (statistical error not estimated)").
    ``with_unit=False`` for a table column that names the unit."""
    unit = FOM_DESCRIPTIONS[name][1] if with_unit else ""
    if name.startswith("pi0") and metrics.get("pi0_is_measurement") is False:
        shown = f"**{value:.4g}**" if bold else f"{value:.4g}"
        return shown + (f" {unit}" if unit else "") + " (no π0 peak: the no-peak value, the fit range's width; not a measurement)"
    err = _fom_error(name, metrics)
    if err is not None:
        shown, err_text = measurement_parts(value, err)
        return (f"**{shown}**" if bold else shown) + f" ± {err_text}" + (f" {unit}" if unit else "")
    shown = f"**{value:.4g}**" if bold else f"{value:.4g}"
    why = "not estimated" if FOM_ERRORS[name] is None else "not recorded"
    return shown + (f" {unit}" if unit else "") + f" (statistical error {why})"


def pareto_front(cost, fom, minimize: bool = True) -> np.ndarray:
    """Indices of the non-dominated points (lower cost and better figure of merit), by cost."""
    cost = np.asarray(cost, dtype=float)
    f = np.asarray(fom, dtype=float) * (1 if minimize else -1)
    order = np.lexsort((f, cost))
    front, best = [], np.inf
    for i in order:
        if f[i] < best:
            front.append(i)
            best = f[i]
    return np.asarray(front, dtype=int)




def _cell_size_order_text(cfg: StudyConfig) -> str:
    """The search space's cell-size rule in words (``[design] cell_size_order``)."""
    if cfg.cell_size_order == "free":
        return ("Cell sizes in any order (design.cell_size_order = \"free\"): a region may have finer cells than "
                "the region inside it.")
    return ("Cell sizes never decrease going outward (design.cell_size_order = \"non-decreasing-outward\"): the "
            "search space held only designs whose regions have cells at least as large as those of the region "
            "inside them.")


def _with_error(value: float, err, scale: float = 1.0, decimals: int = 1) -> str:
    """``value`` (times ``scale``) with its statistical error when there is one."""
    if isinstance(err, (int, float)) and math.isfinite(err):
        return format_measurement(scale * value, scale * err, decimals)
    return f"{scale * value:.{decimals}f}"


def _plot_resolution_curves(curves, path, plt, save) -> None:
    """One panel per layout: the network's energy resolution vs energy in each region."""
    from diffcalo.plotting import _plain_log_ticks

    fig, axes = plt.subplots(1, len(curves), figsize=(4.6 * len(curves), 3.8), squeeze=False, sharey=True)
    for ax, (label, regions) in zip(axes[0], curves):
        for r in regions:
            c = r["energy_curve"]
            ax.errorbar(c["energy"], 100 * np.asarray(c["resolution"]), yerr=100 * np.asarray(c["resolution_err"]),
                        fmt="-o", ms=3, capsize=2, label=f"region {r['region'] + 1}: {r['cell_mm']:g} mm cells")
        ax.set(xscale="log", yscale="log", xlabel="photon energy (GeV)", title=label)
        _plain_log_ticks(ax)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("energy resolution σ(E)/E (%)")
    save(fig, path)


def gp_slices_figure(cfg: StudyConfig, records: list[dict], best_design: dict):
    """Slices of a GP fitted to the finished evaluations through the best design: one panel per design
    parameter (in the order of the design space), the other parameters at their best values. Categorical parameters are points with error bars, ordered ones a line with a band; both
    show the GP mean ± 1σ of the latent function (noise excluded); values outside the search space (over
    budget, regions that do not fit the wall, finer cells outside coarser ones) are drawn grey. Ring
    values are labelled with their width in metres (:func:`~diffcalo.study.design.value_label`).

    Args:
        cfg: the study config.
        records: finished journal records (``design``, ``fom``), at least 2.
        best_design: the design the slices go through.

    Returns:
        The matplotlib Figure (one axes per parameter).
    """
    import matplotlib.pyplot as plt

    from surrogates.gp import GP

    space = design_space(cfg)
    fom = np.array([r["fom"] for r in records], dtype=float)
    gp = GP(space.encode([r["design"] for r in records]), fom, restarts=2, seed=0)
    n = len(space.parameters)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.8 * ncols, 3.9 * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        fig.delaxes(ax)
    for ax, p in zip(axes.flat, space.parameters):
        values = p.levels(40)
        designs = [dict(best_design, **{p.name: v}) for v in values]
        mu, sd = gp.predict(space.encode(designs))
        ok = np.array([space.feasible(d) for d in designs])
        xs = np.arange(len(values))
        if hasattr(p, "choices"):
            ax.errorbar(xs[ok], mu[ok], yerr=sd[ok], fmt="o", ms=5, capsize=3, color="C0", label="GP mean ± 1σ")
            if not ok.all():
                ax.errorbar(xs[~ok], mu[~ok], yerr=sd[~ok], fmt="o", ms=5, capsize=3, color="0.65", mfc="none",
                            label=INFEASIBLE_LABEL)
        else:
            ax.plot(xs, mu, "-", color="C0", label="GP mean")
            ax.fill_between(xs, mu - sd, mu + sd, color="C0", alpha=0.25, label="GP mean ± 1σ")
            if not ok.all():
                ax.plot(xs[~ok], mu[~ok], "x", color="0.5", label=INFEASIBLE_LABEL)
        i = next(k for k, v in enumerate(values) if v == best_design[p.name] and type(v) is type(best_design[p.name]))
        ax.plot(xs[i], mu[i], "*", ms=13, color="C3", label="best design", zorder=5)
        ax.set_xlim(-0.5, len(xs) - 0.5)
        step = max(1, len(xs) // 12)
        ax.set_xticks(xs[::step])
        slanted = hasattr(p, "choices") or p.name.startswith("ring_")
        ax.set_xticklabels([value_label(p.name, v, cfg) for v in values][::step], rotation=30 if slanted else 0,
                           ha="right" if slanted else "center", fontsize=8)
        ax.set(title=parameter_label(p.name), ylabel=fom_label(cfg.figure_of_merit))
        if not hasattr(p, "choices"):
            ax.set_xlabel("modules added on each side in x (their width in m)" if p.name.startswith("ring_")
                          else p.name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("GP slices through the best design (the other parameters at their best values)")
    fig.tight_layout()
    return fig


def _metrics_rows(cfg: StudyConfig, m: dict) -> list[str]:
    """The scalar metrics of one evaluation as table rows with units and errors."""
    known = {
        "pi0_resolution_mev": ("π0 effective mass resolution (MeV)",
                               lambda: format_fom("pi0_resolution", m["pi0_resolution_mev"], m, with_unit=False)),
        "pi0_width_mev": ("π0 mass peak width (MeV)",
                          lambda: format_fom("pi0_width", m["pi0_width_mev"], m, with_unit=False)),
        "pi0_mean_mev": ("π0 mass peak position (MeV)",
                         lambda: "no peak" if m["pi0_mean_mev"] is None else f"{m['pi0_mean_mev']:.1f}"),
        "pi0_purity": ("π0 purity S/(S+B) within ±30 MeV", lambda: f"{m['pi0_purity']:.3f}"),
        "pi0_note": ("π0 fit note", lambda: m["pi0_note"] or "peak measured"),
        "pi0_pairs": ("π0 candidates used (both photons E_T > 200 MeV, reconstructed)", lambda: f"{m['pi0_pairs']}"),
        "bs_significance": ("B_s significance S/√(S+B) (dimensionless)",
                            lambda: format_fom("bs_significance", m["bs_significance"], m)),
        "bs_width_mev": ("B_s mass core width (MeV; statistical error not recorded)",
                         lambda: f"{m['bs_width_mev']:.1f}"),
        "bs_mean_mev": ("B_s mass peak position (MeV)", lambda: f"{m['bs_mean_mev']:.1f}"),
        "bs_window": ("B_s mass window (GeV)", lambda: f"{m['bs_window'][0]:.3f} – {m['bs_window'][1]:.3f}"),
        "bs_candidates": ("B_s candidates", lambda: f"{m['bs_candidates']}"),
        "channels": ("readout channels", lambda: f"{m['channels']}"),
        "pileup_capped_fraction": ("windows over the pile-up cap (%)",
                                   lambda: f"{100 * m['pileup_capped_fraction']:.2f}"),
        "energy_epochs": ("training epochs run, energy network", lambda: f"{m['energy_epochs']}"),
        "position_epochs": ("training epochs run, position network", lambda: f"{m['position_epochs']}"),
    }
    rows = ["| quantity | value |", "|---|---|"]
    for key, (label, text) in known.items():
        if key in m:
            rows.append(f"| {label} | {text()} |")
    skip = set(known) | {"pi0_width_err_mev", "pi0_resolution_err_mev", "regions"}
    for key, value in m.items():
        if key not in skip and not isinstance(value, (list, dict)):
            rows.append(f"| {key} | {value:.4g} |" if isinstance(value, float) else f"| {key} | {value} |")
    return rows


def _resolution_rows(curves) -> tuple[list[str], list[str]]:
    """The per-region resolution table (rows) and the poor fits named (for a note under it)."""
    from diffcalo.metrics import POOR_FIT_P_VALUE, format_fit, is_poor_fit, no_better_than_cell_centre

    rows = ["| layout | region | cell size (mm) | energy core σ(E)/E (%) | resolution fit σ(E)/E = a/√E ⊕ b ⊕ c/E "
            "(E in GeV) | position core σx, σy (mm) |", "|---|---|---|---|---|---|"]
    poor, cell_centre = [], False
    for label, regions in curves:
        for r in regions:
            fit = r.get("energy_fit", {})
            ex, ey = (r.get("position_core_err_mm") or (None, None))
            px, py = r["position_core_mm"]
            flat = no_better_than_cell_centre((px, py), r["cell_mm"])
            cell_centre = cell_centre or flat
            rows.append(f"| {label} | {r['region'] + 1} | {r['cell_mm']:.1f} | "
                        f"{_with_error(r['energy_core'], r.get('energy_core_err'), 100)} | {format_fit(fit)} | "
                        f"{_with_error(px, ex)}, {_with_error(py, ey)}{' †' if flat else ''} |")
            if is_poor_fit(fit):
                poor.append(f"{label}, region {r['region'] + 1}")
    notes = ["Fit terms: c/E with c in MeV and E in GeV (c = 70 MeV/E is 0.07/E); \"< x\" is a one-sigma upper "
             "limit (the term is compatible with 0)."]
    if cell_centre:
        notes.append("† position core width within 15 % of cell size/√12, the width of a position that knows only "
                     "the hit cell: the reconstruction finds no position inside the cell (pile-up-dominated windows).")
    if poor:
        notes.append(f"**Poor fits** (χ² probability below {100 * POOR_FIT_P_VALUE:g} %): {'; '.join(poor)}. The "
                 "a/√E ⊕ b ⊕ c/E curve does not describe these points; read the measured curve "
                 "(resolution_curves.png), not the fitted terms.")
    return rows, notes


def recommendation(cfg: StudyConfig, records: list[dict]) -> dict | None:
    """The recommended design of a study's search evaluations (``records``, re-evaluations excluded):
    the evaluated design with the best posterior mean of a GP of all of them
    (:meth:`surrogates.bayesopt.BayesianOptimizer.recommend`, the study's noise setting), or None before
    two successful evaluations."""
    from diffcalo.study.runner import _noise_of
    from surrogates.bayesopt import BayesianOptimizer

    if sum(r["status"] == "done" for r in records) < 2:
        return None
    rows = [r for r in records if r["status"] in ("done", "failed")]
    opt = BayesianOptimizer(design_space(cfg), seed=cfg.seed, minimize=FIGURES_OF_MERIT[cfg.figure_of_merit] == "minimise",
                            noise=cfg.noise)
    opt.tell([r["design"] for r in rows], [r["fom"] if r["status"] == "done" else None for r in rows],
             noise=[_noise_of(cfg, r) for r in rows])
    return opt.recommend()


def _recommendation_lines(cfg: StudyConfig, records: list[dict], best: dict, minimize: bool) -> list[str]:
    rec = recommendation(cfg, records)
    if rec is None:
        return []
    fname = cfg.figure_of_merit
    same = rec["design"] == best["design"]
    lines = ["## Recommended design", "",
             "The design a Gaussian process of all the search's evaluations believes best: the lowest posterior mean "
             "among the evaluated designs (replicates pooled). With a noisy figure of merit this, not the best "
             "observed value, is the study's answer: the best observed value is biased "
             f"{'low' if minimize else 'high'} by the winner's curse.", "",
             f"**{describe_design(cfg, rec['design'])}**" + (" (the best observed design)" if same else ""), "",
             f"Posterior mean {fname} = {format_measurement(rec['mean'], rec['sd'])} {FOM_DESCRIPTIONS[fname][1]}".rstrip()
             + f" (± the GP's posterior standard deviation), observed {rec['observed']:.4g} in {rec['evaluations']} "
             "evaluation(s).", ""]
    return lines


def _reevaluation_lines(cfg: StudyConfig, again: list[dict]) -> list[str]:
    if not again:
        return []
    fname = cfg.figure_of_merit
    by_design: dict[str, list[dict]] = {}
    for r in again:
        by_design.setdefault(json.dumps(r["design"], sort_keys=True), []).append(r)
    lines = ["## Re-evaluation of the top designs", "",
             f"The designs with the best posterior means evaluated again with fresh seeds "
             f"({', '.join(str(s) for s in sorted({r['seed'] for r in again}))}): mean ± standard error over the seeds "
             "(free of the winner's curse; differences below 3 standard errors are ties).", "",
             f"| rank | design | {fom_label(fname)} re-evaluated | seeds done |", "|---|---|---|---|"]
    for rank, rows in enumerate(by_design.values(), 1):
        vals = [r["fom"] for r in rows if r["status"] == "done"]
        if len(vals) >= 2:
            shown = format_measurement(float(np.mean(vals)), float(np.std(vals, ddof=1) / math.sqrt(len(vals))))
        else:
            shown = f"{vals[0]:.4g}" if vals else "n/a"
        lines.append(f"| {rank} | {describe_design(cfg, rows[0]['design'])} | {shown} | {len(vals)}/{len(rows)} |")
    return lines + [""]


def write_report(run_dir) -> pathlib.Path:
    """Write report.md and the figures into ``run_dir``; returns the Markdown path."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from diffcalo.plotting import _save, plot_layout

    run_dir = pathlib.Path(run_dir)
    with load_journal(run_dir) as j:
        flat = j.config
        recs, again = split_records(j)
        counts = j.counts()
    cfg = study_config_from_flat(flat, where=f"{run_dir}/journal.sqlite")
    if cfg.continuous:
        from diffcalo.study.continuous import write_continuous_report

        return write_continuous_report(run_dir)
    fname = cfg.figure_of_merit
    minimize = FIGURES_OF_MERIT[fname] == "minimise"
    done = [r for r in recs if r["status"] == "done"]
    lines = [f"# Study report: {cfg.name}", "",
             f"Figure of merit: **{fom_label(fname)}** ({fname}, {FIGURES_OF_MERIT[fname]}), "
             f"{cfg.collisions:g} collisions per crossing, budget {cfg.budget:g} kCHF, optimiser {cfg.optimizer}.",
             f"Evaluations: {counts['done']} done, {counts['failed']} failed, {counts['pending'] + counts['running']} "
             "unfinished.", "",
             "Designs read from the beam outwards (region 1 innermost): technology and cell size of each region, "
             "how far each inner region reaches from the beam (the half-width x and half-height y of its outer "
             "edge, in metres) with the ring of modules it adds on each side of its inner neighbour, and the "
             "longitudinal split of segmented technologies.",
             _cell_size_order_text(cfg), ""]
    if not done:
        lines.append("No successful evaluation yet.")
        return write_text_atomic(run_dir / "report.md", "\n".join(lines) + "\n")
    fom = np.array([r["fom"] for r in done])
    fom_err = np.array([_fom_error(fname, r["metrics"]) or np.nan for r in done])
    cost = np.array([r["cost"] for r in done])
    ids = np.array([r["id"] for r in done])
    best_i = int(np.argmin(fom) if minimize else np.argmax(fom))
    best = done[best_i]
    best_text = describe_design(cfg, best["design"])
    capped = [r["metrics"].get("pileup_capped_fraction", 0.0) for r in done]
    if max(capped) > 0.001:
        lines += [f"**Pile-up cap:** in {100 * min(capped):.1f} to {100 * max(capped):.1f} % of the windows (median "
                  f"{100 * float(np.median(capped)):.1f} %) more background particles were drawn than the simulator's "
                  f"cap of {MAX_BACKGROUND_PER_WINDOW} per window and the excess was dropped: the figures underestimate pile-up there, and by "
                  "an amount that depends on the design (more for large cells), which biases comparisons between "
                  "designs.", ""]
    if fname in ("pi0_width", "pi0_resolution"):
        mean = best["metrics"].get("pi0_mean_mev")
        if isinstance(mean, (int, float)) and abs(mean - 1000 * M_PI0) > 200 * M_PI0:
            lines += [f"**Pile-up dominated:** the best design's π0 peak sits at {mean:.0f} MeV instead of "
                      f"{1000 * M_PI0:.0f} MeV: the photon energies are dominated by pile-up in the reconstruction "
                      "windows, and the widths compare how designs cope with that, not their resolution for isolated "
                      "photons.", ""]
    layout = layout_from_design(cfg, best["design"])
    one_per_line = describe_design(cfg, best["design"], sep="\n")
    plot_layout(layout, run_dir / "best_layout.png",
                title=f"best design (evaluation {best['id']})\n{one_per_line}\n{FOM_DESCRIPTIONS[fname][0]} "
                      f"{format_fom(fname, best['fom'], best['metrics'])}, cost {best['cost']:.0f} kCHF")
    # figure of merit vs evaluation
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    if np.isfinite(fom_err).any():
        ax.errorbar(ids, fom, yerr=np.nan_to_num(fom_err), fmt="o", ms=4, capsize=2,
                    label="evaluation (± statistical error)")
    else:
        ax.plot(ids, fom, "o", ms=4, label="evaluation")
    running = np.minimum.accumulate(fom) if minimize else np.maximum.accumulate(fom)
    ax.step(ids, running, where="post", label="best so far")
    failed = [r["id"] for r in recs if r["status"] == "failed"]
    if failed:
        ax.plot(failed, np.full(len(failed), running[-1]), "x", color="red", label="failed")
    ax.set(xlabel="evaluation number", ylabel=fom_label(fname), title=f"{cfg.name}: figure of merit per evaluation")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    _save(fig, run_dir / "fom_vs_evaluation.png")
    # Pareto front
    front = pareto_front(cost, fom, minimize)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    if np.isfinite(fom_err).any():
        ax.errorbar(cost, fom, yerr=np.nan_to_num(fom_err), fmt="o", ms=4, alpha=0.6, capsize=2, label="evaluations")
    else:
        ax.plot(cost, fom, "o", ms=4, alpha=0.6, label="evaluations")
    ax.plot(cost[front], fom[front], "-s", color="C3", label="Pareto front")
    ax.axvline(cfg.budget, ls="--", color="grey", label="budget")
    baselines = {}
    bpath = run_dir / "baselines.json"
    if bpath.exists():
        baselines = json.loads(bpath.read_text())
        for k, (name, b) in enumerate(baselines.items()):
            if "fom" in b:
                ax.errorbar(b["cost"], b["fom"], yerr=_fom_error(fname, b.get("metrics", {})), fmt="*", ms=14,
                            color=f"C{4 + k}", label=PRESET_TITLES.get(name, name))
    ax.set(xlabel="cost (kCHF)", ylabel=fom_label(fname), title=f"{cfg.name}: cost against figure of merit")
    ax.legend(fontsize=7)
    _save(fig, run_dir / "pareto.png")
    figures = ["best_layout.png", "fom_vs_evaluation.png", "pareto.png"]
    if len(done) >= 5:
        _save(gp_slices_figure(cfg, done, best["design"]), run_dir / "gp_slices.png")
        figures.append("gp_slices.png")
    lines += ["## Best observed design", "", f"**{best_text}**", "",
              f"Evaluation {best['id']}: {fname} = {format_fom(fname, best['fom'], best['metrics'], bold=True)}, "
              f"cost {best['cost']:.0f} kCHF, {sum(r['channels'] for r in layout.table())} readout channels.", "",
              "| region | technology | cell size (mm) | outer edge (half-width x, half-height y) | modules | "
              "longitudinal sections | channels | cost (kCHF) |",
              "|---|---|---|---|---|---|---|---|"]
    for i, (r, region) in enumerate(zip(layout.table(), layout.regions)):
        edge = extent_label(region.modules_x, region.modules_y, layout.module_mm)
        lines.append(f"| {i + 1} | {technology_label(r['technology'])} | {r['cell_size_mm']:g} | {edge} | "
                     f"{r['modules']} | {r['sections']} | {r['channels']} | {r['cost']:.0f} |")
    lines += ["", "Metrics of the best design (statistical errors where estimated):", ""]
    lines += _metrics_rows(cfg, best["metrics"]) + [""]
    lines += _recommendation_lines(cfg, recs, best, minimize) + _reevaluation_lines(cfg, again)
    curves = [("best design", best["metrics"].get("regions"))]
    curves += [(PRESET_TITLES.get(name, name), b.get("metrics", {}).get("regions")) for name, b in baselines.items()]
    curves = [(label, regions) for label, regions in curves if regions]
    if curves:
        _plot_resolution_curves(curves, run_dir / "resolution_curves.png", plt, _save)
        figures.insert(1, "resolution_curves.png")
        rows, notes = _resolution_rows(curves)
        lines += ["## Resolution per region (held-out photons, reconstruction network)", ""] + rows + [""]
        for note in notes:                       # one paragraph each
            lines += [note, ""]
    t = [r["timings"] for r in done if r["timings"]]
    if t:
        keys = [k for k in ("simulate", "train", "metrics", "total") if k in t[0]]
        lines.append("Time per evaluation (median, s): " + ", ".join(f"{k} {np.median([x.get(k, 0) for x in t]):.1f}"
                                                                     for k in keys))
        lines.append("")
    if baselines:
        lines += ["## Baselines", "", f"| layout | design | {fom_label(fname)} | cost (kCHF) |", "|---|---|---|---|",
                  f"| best design | {best_text} | {format_fom(fname, best['fom'], best['metrics'], with_unit=False)} | "
                  f"{best['cost']:.0f} |"]
        for name, b in baselines.items():
            val = format_fom(fname, b["fom"], b.get("metrics", {}), with_unit=False) if "fom" in b else f"failed: {b.get('error', '')}"
            lines.append(f"| baseline | {describe_preset(name)} | {val} | "
                         f"{b.get('cost', float('nan')):.0f} |")
        lines.append("")
    lines += ["## Figures", ""] + [f"![{f}]({f})" for f in figures]
    return write_text_atomic(run_dir / "report.md", "\n".join(lines) + "\n")
