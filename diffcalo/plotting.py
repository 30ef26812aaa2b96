"""Pictures: layouts on the wall, example clusters, reconstruction performance (matplotlib, PNG files).

Library code does not choose the matplotlib backend; the command line (or the user's script) does.
"""

from __future__ import annotations

import pathlib

import numpy as np

from diffcalo.layout import cell_size_label
from diffcalo.metrics import ResolutionFit, fit_mass_peak, format_fit
from diffcalo.technologies import technology_label

__all__ = ["plot_layout", "plot_clusters", "plot_occupancy", "plot_reco", "plot_mass_peak", "TECHNOLOGY_COLOURS"]

TECHNOLOGY_COLOURS = {
    "spacal-w": "#1b5e9e",
    "spacal-pb": "#4fa3d9",
    "shashlik": "#f2b134",
    "siw": "#8e6bbf",
    "toy-scint": "#7fbf7b",
}


def _blend(colour, weight):
    """``colour`` mixed with white: weight 1 = the colour itself."""
    from matplotlib.colors import to_rgb

    return tuple(weight * c + (1 - weight) for c in to_rgb(colour))


def _save(fig, path, tight: bool = True) -> pathlib.Path:
    """Lay out, write (creating the folder; through a temporary file and a rename, so a failed write
    leaves no partial image) and close a figure; return the path."""
    import os

    import matplotlib.pyplot as plt

    from diffcalo.io import temporary_sibling

    try:
        if tight:
            fig.tight_layout()
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_sibling(path)
        try:
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    finally:
        plt.close(fig)
    return path


def plot_layout(layout, path, *, registry=None, title: str | None = None) -> pathlib.Path:
    """Draw a layout: regions coloured by technology, the cell grid, the beam hole; save a PNG.

    Args:
        layout: a :class:`~diffcalo.layout.Layout`.
        path: output file (PNG).
        registry: technology registry (default: the global one).
        title: figure title (default: layout name, channels and cost).

    Returns:
        The path written.
    """
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection
    from matplotlib.patches import Patch, Rectangle

    rows = layout.table(registry)
    fig, ax = plt.subplots(figsize=(9, 9 * layout.height_mm / layout.width_mm + 1.2), dpi=110)
    m = layout.module_mm
    colours: dict[str, str] = {}
    legend: list[tuple] = []
    palette = iter(["#d95f5f", "#5fd9a6", "#b65fd9", "#d9c45f", "#5f7cd9"])
    for i in reversed(range(len(layout.regions))):
        r = layout.regions[i]
        colour = TECHNOLOGY_COLOURS.get(r.technology) or colours.get(r.technology) or next(palette)
        shade = 1.0 - 0.6 * i / max(len(layout.regions) - 1, 1)
        hx, hy = r.modules_x * m / 2, r.modules_y * m / 2
        fill = _blend(colour, shade)
        ax.add_patch(Rectangle((-hx, -hy), 2 * hx, 2 * hy, facecolor=fill, edgecolor="k", lw=1.2))
        c = r.cell_size_mm
        xs = np.arange(-hx, hx + 1e-6, c)
        ys = np.arange(-hy, hy + 1e-6, c)
        segs = [[(x, -hy), (x, hy)] for x in xs] + [[(-hx, y), (hx, y)] for y in ys]
        lw = 0.15 if c < m else 0.35
        ax.add_collection(LineCollection(segs, colors="k", linewidths=lw, alpha=0.6))
        label = f"{r.name}: {technology_label(r.technology)} {cell_size_label(c)} cm" + (f", {rows[i]['sections']} sections" if rows[i]["sections"] > 1 else "")
        colours.setdefault(r.technology, colour)
        legend.append((label, fill, rows[i]))
    if layout.beam_hole[0] > 0:
        bx, by = layout.beam_hole[0] * m / 2, layout.beam_hole[1] * m / 2
        ax.add_patch(Rectangle((-bx, -by), 2 * bx, 2 * by, facecolor="white", edgecolor="k", lw=1.2, hatch="//"))
    handles = [Patch(facecolor=fill, edgecolor="k", label=f"{label}: {row['modules']} modules, {row['channels']} ch")
               for label, fill, row in reversed(legend)]
    if layout.beam_hole[0] > 0:
        handles.append(Patch(facecolor="white", edgecolor="k", hatch="//", label="beam hole"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, fontsize=8, frameon=False)
    ax.set_xlim(-layout.width_mm / 2, layout.width_mm / 2)
    ax.set_ylim(-layout.height_mm / 2, layout.height_mm / 2)
    ax.set_aspect("equal")
    ax.set_xlabel("x [mm]")
    ax.set_ylabel("y [mm]")
    total_ch = sum(r["channels"] for r in rows)
    ax.set_title(title or f"{layout.name}: {total_ch} channels, cost {layout.cost(registry):.0f} kCHF")
    return _save(fig, path)


def plot_clusters(clusters, path, *, n: int = 6, title: str | None = None) -> pathlib.Path:
    """Draw the first ``n`` clusters, one column each and one row per readout section (log colour;
    cells at or below 1e-4 of the maximum, including zero-suppressed ones, share the darkest colour)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    e = np.asarray(clusters.energy)[:n]
    n = e.shape[0]
    n_sec = e.shape[1]
    fig, axes = plt.subplots(n_sec, n, figsize=(2.2 * n, 2.2 * n_sec + 0.6), squeeze=False, dpi=100)
    vmax = max(float(e.max()), 1e-3)
    for j in range(n):
        for s in range(n_sec):
            ax = axes[s, j]
            img = np.clip(e[j, s], vmax * 1e-4, None)
            im = ax.imshow(img, origin="lower", norm=LogNorm(vmin=vmax * 1e-4, vmax=vmax), cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            if s == 0:
                ax.set_title(f"E={float(clusters.e_true[j]):.1f} GeV", fontsize=8)
            if j == 0:
                label = ("front", "back")[s] if n_sec == 2 else f"section {s}"
                ax.set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.colorbar(im, ax=axes, shrink=0.8, label="cell energy [GeV]")
    return _save(fig, path, tight=False)


def plot_occupancy(dataset, path, *, bins: int = 64) -> pathlib.Path:
    """Occupancy map of a dataset: mean number of background particles per window vs impact point,
    and the number of clusters per bin (two panels)."""
    import matplotlib.pyplot as plt

    from diffcalo.io import iter_clusters

    xs, ys, nb = [], [], []
    for c in iter_clusters(dataset):
        xs.append(c.x)
        ys.append(c.y)
        nb.append(c.n_background)
    x, y, nb = (np.concatenate(v) for v in (xs, ys, nb))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), dpi=100)
    counts, xe, ye = np.histogram2d(x, y, bins=bins)
    sums, _, _ = np.histogram2d(x, y, bins=[xe, ye], weights=nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / counts, np.nan)
    for ax, data, label in ((axes[0], mean, "background particles per window"), (axes[1], counts, "clusters")):
        im = ax.pcolormesh(xe, ye, data.T, cmap="viridis")
        fig.colorbar(im, ax=ax, label=label)
        ax.set_xlabel("x [mm]")
        ax.set_ylabel("y [mm]")
        ax.set_aspect("equal")
    return _save(fig, path)


def plot_reco(evaluation: dict, clusters, out_dir, names=None, *, collisions: float | None = None) -> list:
    """Figures of :func:`diffcalo.reco.pipeline.evaluate`, one PNG per region, network vs classical.

    Panels: response vs energy; calibrated (response-corrected) sigma/E per energy bin with its fit
    a/sqrt(E) (+) b (+) c/E drawn over the points (:func:`diffcalo.metrics.energy_curve`,
    :func:`~diffcalo.metrics.format_fit`); residual distributions of energy, position and time over
    robust ranges (0.5 to 99.5 % quantiles of both estimates: the tails are counted in the legend,
    not piled in edge bins); the position residual vs the true offset in the cell (the S-curve).

    Args:
        evaluation: the result of :func:`~diffcalo.reco.pipeline.evaluate`.
        clusters: the clusters it was evaluated on (with truth).
        out_dir: folder for ``reco_region{r}.png``.
        names: per region index, a label for the titles, e.g. "inner: SpaCal-W" (default "region r").
        collisions: pile-up of the sample in collisions per crossing, for the titles (None: not shown).

    Returns:
        The PNG paths.
    """
    import matplotlib.pyplot as plt

    out_dir = pathlib.Path(out_dir)
    pred = evaluation["predictions"]
    region = np.asarray(clusters.region)
    e_true = np.asarray(clusters.e_true, dtype=float)
    offset = np.asarray(clusters.offset, dtype=float)
    paths = []
    styles = dict(network=dict(color="#c0392b", marker="o"), classical=dict(color="#2c3e50", marker="s"))
    keys = dict(network=("energy", "offset", "time"), classical=("classical_energy", "classical_offset", "classical_time"))
    pileup = ("" if collisions is None else ", no pile-up" if collisions == 0
              else f", pile-up {collisions:g} collisions/crossing")
    for r, entry in evaluation["regions"].items():
        label = names[int(r)] if names else f"region {r}"
        m = region == int(r)
        cell = entry["cell_mm"]
        fig, ax = plt.subplots(2, 3, figsize=(18, 9.5), gridspec_kw=dict(width_ratios=[1, 1.5, 1]))
        residuals = {}
        for who in ("network", "classical"):
            e_key, o_key, t_key = keys[who]
            residuals[who] = dict(energy=(pred[e_key][m] - e_true[m]) / e_true[m],
                                  position=pred[o_key][m, 0] - offset[m, 0])
            if "time_ps" in entry[who]:
                residuals[who]["time"] = 1000 * (pred[t_key][m] - np.asarray(clusters.t_true)[m])
        for who in ("network", "classical"):
            c = {k: np.asarray(v, dtype=float) for k, v in entry[who]["energy_curve"].items()}
            ax[0, 0].plot(c["energy"], c["response"], "-", label=who, **styles[who])
            _draw_calibrated_resolution(ax[0, 1], who, c, entry[who]["calibrated_energy_fit"], styles[who])
            for a, kind, scale in ((ax[0, 2], "energy", 100.0), (ax[1, 0], "position", 1.0), (ax[1, 2], "time", 1.0)):
                if kind not in residuals[who]:
                    continue
                extra = f", core {entry[who]['time_ps']['core']:.0f} ps" if kind == "time" else ""
                _robust_hist(a, who, scale * residuals[who][kind],
                             [scale * residuals[w][kind] for w in residuals if kind in residuals[w]],
                             styles[who]["color"], extra)
            off = offset[m, 0] / cell
            bins = np.linspace(-0.5, 0.5, 21)
            idx = np.digitize(off, bins) - 1
            dx = residuals[who]["position"]
            prof = [np.median(dx[idx == i]) if (idx == i).sum() > 5 else np.nan for i in range(20)]
            ax[1, 1].plot(0.5 * (bins[1:] + bins[:-1]), prof, "-", label=who, **styles[who])
        ax[0, 0].axhline(1.0, color="grey", lw=0.8, ls=":")
        ax[0, 0].set(xscale="log", xlabel="true energy [GeV]", ylabel="response <E_reco / E_true> (core mean) [1]",
                     title="response")
        ax[0, 1].set(xscale="log", yscale="log", xlabel="true energy [GeV]",
                     ylabel="calibrated σ(E)/E [%]", title="resolution (response-corrected; curves: fits)")
        for a in ax[0, :2]:
            _plain_log_ticks(a)
        ax[0, 2].set(xlabel="(E_reco - E_true) / E_true [%]", ylabel="clusters per bin", yscale="log",
                     title="energy residual")
        ax[1, 0].set(xlabel="x_reco - x_true [mm]", ylabel="clusters per bin", yscale="log", title="position residual")
        ax[1, 1].set(xlabel="true x offset in the cell [cell units]", ylabel="median x_reco - x_true [mm]",
                     title="position bias vs offset in the cell")
        ax[1, 2].set(xlabel="t_reco - t_true [ps]", ylabel="clusters per bin", yscale="log", title="time residual")
        if not any("time" in v for v in residuals.values()):
            ax[1, 2].set_axis_off()
        for a in ax.ravel():
            if a.get_legend_handles_labels()[0]:
                a.legend(fontsize=7)
        fig.suptitle(f"{label}, {cell:.4g} mm cells{pileup}: {entry['n']} test clusters")
        paths.append(_save(fig, out_dir / f"reco_region{r}.png"))
    return paths


def _draw_calibrated_resolution(ax, who, curve, fit, style):
    """The calibrated sigma/E points (%) of one estimator and its fit (``calibrated_energy_fit`` of
    :func:`~diffcalo.reco.pipeline.evaluate`, a dict) drawn over them, the fit in the legend."""
    e, res, err = curve["energy"], curve["calibrated_resolution"], curve["calibrated_resolution_err"]
    ok = np.isfinite(res) & np.isfinite(err) & (err > 0)
    text = format_fit(fit)
    fit = ResolutionFit(**{k: (tuple(v) if k == "fixed" else v) for k, v in fit.items()}) if "chi2" in fit else None
    ax.errorbar(e[ok], 100 * res[ok], yerr=100 * err[ok], fmt="none", capsize=2, ecolor=style["color"])
    text = text.replace(" (χ²", "\n(χ²").replace(" (POOR", "\n(POOR")
    ax.plot(e[ok], 100 * res[ok], ls="none", label=f"{who}: {text}", **style)
    if fit is not None and ok.any():
        grid = np.geomspace(e[ok].min(), e[ok].max(), 100)
        ax.plot(grid, 100 * fit(grid), "-", color=style["color"], lw=1.2)


def _robust_hist(ax, who, values, all_values, colour, extra=""):
    """A step histogram of ``values`` over a range from all estimates together (the same bins for every
    estimate): the 0.5-99.5 % quantiles, narrowed to 12 robust widths (1.4826 x median absolute deviation)
    around the median when the tails are longer; the fraction outside the range goes in the legend."""
    pooled = np.concatenate([v[np.isfinite(v)] for v in all_values])
    lo, hi = np.quantile(pooled, [0.005, 0.995])
    median = np.median(pooled)
    width = 1.4826 * np.median(np.abs(pooled - median))
    if width > 0:
        lo, hi = max(lo, median - 12 * width), min(hi, median + 12 * width)
    pad = 0.05 * (hi - lo) or 1.0
    lo, hi = lo - pad, hi + pad
    values = values[np.isfinite(values)]
    outside = np.mean((values < lo) | (values > hi)) if values.size else 0.0
    ax.hist(values, bins=100, range=(lo, hi), histtype="step", color=colour,
            label=f"{who}{extra} ({100 * outside:.1f} % outside)")


def _plain_log_ticks(ax):
    """Log x axis labelled with plain numbers at 1-2-5 steps (no crowded minor labels)."""
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    ax.xaxis.set_major_locator(FixedLocator([1, 2, 5, 10, 20, 50, 100, 200]))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_mass_peak(masses: dict, out_path, *, title: str = "pi0 -> gamma gamma", xlim=(0.0, 0.3)) -> pathlib.Path:
    """Histograms of reconstructed masses (label -> GeV array) with their core widths."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, m in masses.items():
        m = np.asarray(m)
        fit = fit_mass_peak(m, window=xlim)
        ax.hist(m, bins=120, range=xlim, histtype="step",
                label=f"{label}: mean {1000 * fit['mean']:.1f} MeV, width {1000 * fit['width']:.1f} MeV")
    ax.set(xlabel="m(gamma gamma) (GeV)", ylabel="candidates", title=title)
    ax.legend(fontsize=7)
    return _save(fig, out_path)
