"""Pictures: layouts on the wall and example clusters (matplotlib, Agg backend, PNG files)."""

from __future__ import annotations

import pathlib

import numpy as np

__all__ = ["plot_layout", "plot_clusters", "plot_occupancy", "TECHNOLOGY_COLOURS"]

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
    """Lay out, write (creating the folder) and close a figure; return the path."""
    import matplotlib.pyplot as plt

    if tight:
        fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
    from matplotlib.collections import LineCollection
    from matplotlib.patches import Patch, Rectangle

    plt = _pyplot()
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
        label = f"{r.name}: {r.technology} {c / 10:g} cm" + (f", {rows[i]['sections']} sections" if rows[i]["sections"] > 1 else "")
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
    from matplotlib.colors import LogNorm

    plt = _pyplot()
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
    from diffcalo.io import iter_clusters

    plt = _pyplot()
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
