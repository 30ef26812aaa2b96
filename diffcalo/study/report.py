r"""Study reports: PNG figures and a Markdown summary from a run directory's journal.

Figures: the best layout drawn on the wall; the figure of merit against the evaluation number (with
the best so far); cost against figure of merit for all evaluations with the Pareto front; slices of a
GP fitted to the journal along its most important parameters (shortest length scales); and, when the
run directory holds ``baselines.json`` (written by the flagship study), the baselines' figures of
merit beside the best design's.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from diffcalo.io import write_text_atomic
from diffcalo.study.config import FIGURES_OF_MERIT, study_config_from_dict
from diffcalo.study.runner import load_journal

__all__ = ["write_report", "pareto_front"]


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


def _plot_resolution_curves(curves, path, plt, save) -> None:
    """One panel per layout: the network's energy resolution vs energy in each region."""
    from diffcalo.plotting import _plain_log_ticks

    fig, axes = plt.subplots(1, len(curves), figsize=(4.6 * len(curves), 3.8), squeeze=False, sharey=True)
    for ax, (label, regions) in zip(axes[0], curves):
        for r in regions:
            c = r["energy_curve"]
            ax.errorbar(c["energy"], 100 * np.asarray(c["resolution"]), yerr=100 * np.asarray(c["resolution_err"]),
                        fmt="-o", ms=3, capsize=2, label=f"region {r['region']}: {r['cell_mm']:.0f} mm cells")
        ax.set(xscale="log", yscale="log", xlabel="photon energy (GeV)", title=label)
        _plain_log_ticks(ax)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("energy resolution σ(E)/E (%)")
    save(fig, path)


def write_report(run_dir) -> pathlib.Path:
    """Write report.md and the figures into ``run_dir``; returns the Markdown path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffcalo.plotting import _save, plot_layout
    from diffcalo.study.objective import _as_sections, design_space, layout_from_design

    run_dir = pathlib.Path(run_dir)
    with load_journal(run_dir) as j:
        flat = j.config
        recs = j.records()
        counts = j.counts()
    cfg = study_config_from_dict(_as_sections(flat))
    minimize = FIGURES_OF_MERIT[cfg.figure_of_merit] == "minimise"
    done = [r for r in recs if r["status"] == "done"]
    lines = [f"# Study report: {cfg.name}", "",
             f"Figure of merit: **{cfg.figure_of_merit}** ({FIGURES_OF_MERIT[cfg.figure_of_merit]}), "
             f"{cfg.collisions:g} collisions per crossing, budget {cfg.budget:g} kCHF, optimiser {cfg.optimizer}.",
             f"Evaluations: {counts['done']} done, {counts['failed']} failed, {counts['pending'] + counts['running']} "
             "unfinished.", ""]
    if not done:
        lines.append("No successful evaluation yet.")
        return write_text_atomic(run_dir / "report.md", "\n".join(lines) + "\n")
    fom = np.array([r["fom"] for r in done])
    cost = np.array([r["cost"] for r in done])
    ids = np.array([r["id"] for r in done])
    best_i = int(np.argmin(fom) if minimize else np.argmax(fom))
    best = done[best_i]
    capped = [r["metrics"].get("pileup_capped_fraction", 0.0) for r in done]
    if max(capped) > 0.001:
        lines += [f"**Pile-up cap:** in up to {100 * max(capped):.1f} % of the windows (median "
                  f"{100 * float(np.median(capped)):.1f} %) more background particles were drawn than the simulator's "
                  "cap of 12 per window and the excess was dropped: the figures underestimate pile-up there.", ""]
    layout = layout_from_design(cfg, best["design"])
    plot_layout(layout, run_dir / "best_layout.png",
                title=f"best design (evaluation {best['id']}): {cfg.figure_of_merit} = {best['fom']:.4g}, "
                      f"cost {best['cost']:.0f} kCHF")
    # figure of merit vs evaluation
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ids, fom, "o", ms=4, label="evaluation")
    running = np.minimum.accumulate(fom) if minimize else np.maximum.accumulate(fom)
    ax.step(ids, running, where="post", label="best so far")
    failed = [r["id"] for r in recs if r["status"] == "failed"]
    if failed:
        ax.plot(failed, np.full(len(failed), running[-1]), "x", color="red", label="failed")
    ax.set(xlabel="evaluation", ylabel=cfg.figure_of_merit)
    ax.legend(fontsize=8)
    _save(fig, run_dir / "fom_vs_evaluation.png")
    # Pareto front
    front = pareto_front(cost, fom, minimize)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(cost, fom, "o", ms=4, alpha=0.6, label="evaluations")
    ax.plot(cost[front], fom[front], "-s", color="C3", label="Pareto front")
    ax.axvline(cfg.budget, ls="--", color="grey", label="budget")
    baselines = {}
    bpath = run_dir / "baselines.json"
    if bpath.exists():
        baselines = json.loads(bpath.read_text())
        for k, (name, b) in enumerate(baselines.items()):
            if "fom" in b:
                ax.plot(b["cost"], b["fom"], "*", ms=14, color=f"C{4 + k}", label=name)
    ax.set(xlabel="cost (kCHF)", ylabel=cfg.figure_of_merit)
    ax.legend(fontsize=7)
    _save(fig, run_dir / "pareto.png")
    # GP slices along the most important parameters
    figures = ["best_layout.png", "fom_vs_evaluation.png", "pareto.png"]
    if len(done) >= 5:
        from surrogates.gp import GP

        space = design_space(cfg)
        x = space.encode([r["design"] for r in done])
        gp = GP(x, fom, restarts=2, seed=0)
        ls = gp.length_scales
        importance = []
        for p, s in zip(space.parameters, space.slices):
            importance.append((float(np.min(ls[s])), p))
        importance.sort(key=lambda t: t[0])
        top = [p for _, p in importance[:3]]
        fig, axes = plt.subplots(1, len(top), figsize=(4.5 * len(top), 3.6), squeeze=False)
        for ax, p in zip(axes[0], top):
            values = list(p.choices) if hasattr(p, "choices") else (
                list(range(p.low, p.high + 1)) if hasattr(p, "high") and isinstance(p.low, int) else
                list(np.linspace(p.low, p.high, 40)))
            designs = [dict(best["design"], **{p.name: v}) for v in values]
            mu, sd = gp.predict(space.encode(designs))
            xs = np.arange(len(values))
            ax.plot(xs, mu, "-o", ms=3)
            ax.fill_between(xs, mu - 2 * sd, mu + 2 * sd, alpha=0.2)
            ax.set_xticks(xs[:: max(1, len(xs) // 8)])
            ax.set_xticklabels([str(v) for v in values][:: max(1, len(xs) // 8)], rotation=30, fontsize=7)
            ax.set(xlabel=p.name, ylabel=f"GP mean of {cfg.figure_of_merit}", title="other parameters at the best design")
        _save(fig, run_dir / "gp_slices.png")
        figures.append("gp_slices.png")
    lines += ["## Best design", "", f"Evaluation {best['id']}: {cfg.figure_of_merit} = **{best['fom']:.4g}**, "
              f"cost {best['cost']:.0f} kCHF, {best['metrics'].get('channels', '?')} channels.", "",
              "| region | technology | cell (mm) | modules | sections |", "|---|---|---|---|---|"]
    for r in layout.table():
        lines.append(f"| {r['region']} | {r['technology']} | {r['cell_size_mm']:g} | {r['modules']} | {r['sections']} |")
    lines += ["", "Metrics: " + ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                                          for k, v in best["metrics"].items() if not isinstance(v, (list, dict))), ""]
    curves = [("best design", best["metrics"].get("regions"))]
    curves += [(name, b.get("metrics", {}).get("regions")) for name, b in baselines.items()]
    curves = [(label, regions) for label, regions in curves if regions]
    if curves:
        _plot_resolution_curves(curves, run_dir / "resolution_curves.png", plt, _save)
        figures.insert(1, "resolution_curves.png")
        lines += ["## Resolution per region (held-out photons, reconstruction network)", "",
                  "| layout | region | cell (mm) | energy core σ(E)/E | a (%·√GeV) | b (%) | c (GeV) | "
                  "position core x, y (mm) |", "|---|---|---|---|---|---|---|---|"]
        for label, regions in curves:
            for r in regions:
                f = r.get("energy_fit", {})
                abc = (" | ".join(f"{100 * f[k]:.1f}" if k != "noise" else f"{f[k]:.2f}"
                                  for k in ("stochastic", "constant", "noise")) if "stochastic" in f else "– | – | –")
                px, py = r["position_core_mm"]
                lines.append(f"| {label} | {r['region']} | {r['cell_mm']:.1f} | {100 * r['energy_core']:.1f} % | "
                             f"{abc} | {px:.1f}, {py:.1f} |")
        lines.append("")
    t = [r["timings"] for r in done if r["timings"]]
    if t:
        keys = [k for k in ("simulate", "train", "metrics", "total") if k in t[0]]
        lines.append("Time per evaluation (median s): " + ", ".join(f"{k} {np.median([x.get(k, 0) for x in t]):.1f}"
                                                                    for k in keys))
        lines.append("")
    if baselines:
        lines += ["## Baselines", "", f"| layout | {cfg.figure_of_merit} | cost (kCHF) |", "|---|---|---|",
                  f"| best design | {best['fom']:.4g} | {best['cost']:.0f} |"]
        for name, b in baselines.items():
            lines.append(f"| {name} | {b.get('fom', float('nan')):.4g} | {b.get('cost', float('nan')):.0f} |")
        lines.append("")
    lines += ["## Figures", ""] + [f"![{f}]({f})" for f in figures]
    return write_text_atomic(run_dir / "report.md", "\n".join(lines) + "\n")
