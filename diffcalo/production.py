"""Producing simulated samples: a :class:`~diffcalo.config.SimulationConfig` into an HDF5 dataset
(:func:`simulate_dataset`), and a per-region summary of showers on a layout (:func:`showers_summary`).

These are the library halves of ``diffcalo simulate`` and ``diffcalo showers``: the command line only
parses, loads and prints.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from collections.abc import Callable

import numpy as np

__all__ = ["simulate_dataset", "showers_summary", "dataset_layout", "dataset_z_mm", "COMPILE_NOTE"]

#: Printed before a first simulator call (measured on the 2-core machines here: 5-25 s, more under load).
COMPILE_NOTE = "compiling the simulator (first call, ~5-25 s)"


def _log(enabled: bool, message: str) -> None:
    if enabled:
        import sys

        print(message, file=sys.stderr, flush=True)


def simulate_dataset(cfg, path, *, overwrite: bool = False, progress: bool = True,
                     check_stop: Callable[[], None] | None = None) -> dict:
    """Simulate ``cfg.n`` clusters in batches of ``cfg.batch`` and stream them into ``path`` (atomic:
    an interrupted run leaves no file).

    Args:
        cfg: a validated :class:`~diffcalo.config.SimulationConfig`.
        path: output ``.h5`` file.
        overwrite: replace an existing file (otherwise :class:`FileExistsError`).
        progress: a progress bar (and a note while the first batch compiles the simulator).
        check_stop: called between batches (and after the last); raising there (e.g. KeyboardInterrupt
            on a signal) abandons the file.

    Returns:
        dict(n, path, background_per_window (mean, or None without pile-up), capped_fraction).
    """
    import jax
    from tqdm import tqdm

    import diffcalo as dc
    from diffcalo.io import DatasetWriter
    from diffcalo.pileup import PileupModel

    det = dc.Detector.from_layout(cfg.build_layout())
    spectrum = cfg.energy_spectrum()
    pileup = PileupModel.default(collisions_per_crossing=cfg.collisions) if cfg.collisions > 0 else None
    direction = cfg.direction if det.layout.z_mm > 0 or cfg.direction != "from-ip" else (0.0, 0.0)
    root = jax.random.key(cfg.seed)
    out = pathlib.Path(path)
    if out.exists() and not out.is_dir() and not overwrite:
        raise FileExistsError(f"{out} exists; add --force to replace it")
    check = check_stop or (lambda: None)
    n_bg, capped = [], 0
    with DatasetWriter(out, config=cfg.as_dict(), seed=cfg.seed, overwrite=overwrite) as writer, \
            tqdm(total=cfg.n, unit="cluster", unit_scale=True, disable=not progress, desc="simulate") as bar:
        for i, start in enumerate(range(0, cfg.n, cfg.batch)):
            check()
            if i == 0 and progress:
                bar.set_postfix_str(COMPILE_NOTE)
            size = min(cfg.batch, cfg.n - start)
            k_gun, k_sim = jax.random.split(jax.random.fold_in(root, i))
            p = dc.gun(k_gun, size, det.layout, energy=spectrum, pid=cfg.pid, region=cfg.region, direction=direction)
            c = dc.simulate(det, p, key=k_sim, mode=cfg.mode, window=cfg.window, depth_nodes=cfg.depth_nodes,
                            pileup=pileup, max_background=cfg.max_background)
            writer.append(c)
            nb = np.asarray(c.n_background)
            n_bg.append(nb.mean())
            capped += int((nb > cfg.max_background).sum())
            if i == 0 and progress:
                bar.set_postfix_str("")
            bar.update(size)
        check()                      # an interrupt during the last batch: nothing is kept
    return dict(n=cfg.n, path=out, background_per_window=float(np.mean(n_bg)) if pileup else None,
                capped_fraction=capped / cfg.n)


@dataclasses.dataclass(frozen=True)
class RegionShowers:
    """Showers of one region (means over the photons): window sum / true energy and its rms, the seed
    cell's and the central 3 x 3's fractions of the window sum, the front section's fraction,
    clusters per second (second call) and the first call's seconds (with compilation)."""

    region: str
    technology: str
    cell_size_mm: float
    sections: int
    sum_over_true: float
    sum_over_true_rms: float
    seed_fraction: float
    fraction_3x3: float
    front_fraction: float
    clusters_per_s: float
    first_call_s: float


def showers_summary(layout, *, n: int, mode: str = "realistic", window: int = 5, seed: int = 0,
                    progress: bool = True):
    """Simulate ``n`` photons per region of ``layout`` (log-uniform 2-100 GeV, from the interaction
    point or at normal incidence when the layout has no distance to it) and summarise them.

    Returns:
        (list of :class:`RegionShowers`, the clusters of the first region).
    """
    import jax
    from tqdm import tqdm

    import diffcalo as dc

    det = dc.Detector.from_layout(layout)
    direction = "from-ip" if layout.z_mm > 0 else (0.0, 0.0)
    key = jax.random.key(seed)
    rows, first = [], None
    _log(progress, COMPILE_NOTE + ", then again for each new number of readout sections")
    for i, region in enumerate(tqdm(layout.regions, desc="regions", unit="region", disable=not progress)):
        key, k_gun, k_sim = jax.random.split(key, 3)
        p = dc.gun(k_gun, n, layout, region=i, energy=dc.log_uniform_energy(2.0, 100.0), direction=direction)
        t0 = time.perf_counter()
        c = jax.block_until_ready(dc.simulate(det, p, key=k_sim, mode=mode, window=window))
        first_call = time.perf_counter() - t0
        t0 = time.perf_counter()
        jax.block_until_ready(dc.simulate(det, p, key=k_sim, mode=mode, window=window))
        rate = n / (time.perf_counter() - t0)
        e = np.asarray(c.energy)
        k = window // 2
        window_sum = e.sum(axis=(1, 2, 3))
        total = window_sum / np.asarray(c.e_true)
        seed_frac = e[:, :, k, k].sum(axis=1) / window_sum
        c3 = e[:, :, k - 1:k + 2, k - 1:k + 2].sum(axis=(1, 2, 3)) / window_sum if k >= 1 else np.full_like(seed_frac, np.nan)
        front = e[:, 0].sum(axis=(1, 2)) / window_sum
        rows.append(RegionShowers(region.name, region.technology, region.cell_size_mm, layout.sections_in_region(i),
                                  float(total.mean()), float(total.std()), float(seed_frac.mean()), float(c3.mean()),
                                  float(front.mean()), rate, first_call))
        if first is None:
            first = c
    return rows, first


def dataset_layout(path):
    """The :class:`~diffcalo.layout.Layout` a dataset was simulated with, from its stored simulation
    config; None for datasets without one (e.g. imported from CaloChallenge files).

    Raises:
        DatasetError: the stored layout cannot be built (e.g. a plugin technology that is not installed).
    """
    from diffcalo.config import SimulationConfig
    from diffcalo.errors import ConfigError, DatasetError
    from diffcalo.io import dataset_info

    cfg = dataset_info(path)["config"]
    if not isinstance(cfg, dict) or "layout" not in cfg:
        return None
    known = {f.name for f in dataclasses.fields(SimulationConfig)}
    try:
        return SimulationConfig(**{k: v for k, v in cfg.items() if k in known}).build_layout()
    except (ConfigError, TypeError, ValueError, KeyError) as exc:
        raise DatasetError(f"{path}: the layout stored with the dataset cannot be built ({exc}); is a plugin "
                           "technology it uses missing?") from None


def dataset_z_mm(path) -> float:
    """Distance of the front face from the interaction point of the layout a dataset was simulated
    with (0 without a stored layout: no parallax correction)."""
    layout = dataset_layout(path)
    return float(layout.z_mm) if layout is not None else 0.0
