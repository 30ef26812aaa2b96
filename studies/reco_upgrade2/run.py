"""Network vs classical reconstruction on the LHCb Upgrade II baseline with pile-up, region by region.

For each region: photons (log-uniform 2-100 GeV, from the interaction point) with 40 collisions per
crossing of pile-up, realistic readout; classical calibration and the energy (cell times as input),
position (with times) and time networks trained on ``--train`` clusters; evaluated on 20k test
clusters: energy resolution fit a, b, c (network vs calibrated sum), position resolution (network vs
S-curve-corrected log-weighted centroid) and time resolution (network vs energy-weighted mean).

Writes results.json, results.md and per-region figures into ``--output``::

    .venv/bin/python studies/reco_upgrade2/run.py [--train 50000] [--collisions 40] [-o studies/reco_upgrade2/results]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

import diffcalo as dc
from diffcalo.plotting import plot_reco
from diffcalo.reco import Reconstruction, TrainConfig, evaluate

sys.path.insert(0, str(Path(__file__).parent))
from common import parse  # noqa: E402


def table_rows(reg, entry) -> list[str]:
    """The results.md rows of one region: network and classical; fit terms at their bound shown as limits
    (:func:`diffcalo.metrics.format_fit`), poor fits flagged."""
    from diffcalo.metrics import format_fit

    rows = []
    for who in ("network", "classical"):
        b = entry[who]
        rows.append(f"| {reg.name} ({reg.cell_size_mm:g} mm) | {who} | {format_fit(b['energy_fit'])} "
                    f"| {100 * b['energy_rel']['core']:.2f} / {100 * b['energy_rel']['rms']:.1f} "
                    f"| {np.mean(b['position_mm']['core']):.2f} / {np.mean(b['position_mm']['rms']):.2f} "
                    f"| {b['time_ps']['core']:.1f} / {b['time_ps']['rms']:.0f} |")
    return rows


def main():
    args, out, det, pu = parse(__doc__.split("\n")[0], 50000,
                               lambda ap: ap.add_argument("--test", type=int, default=20000))
    configs = dict(energy=TrainConfig(use_time=True), position=TrainConfig(use_time=True),
                   time=TrainConfig(loss="huber"))
    summary, lines = {}, []
    for r, reg in enumerate(det.layout.regions):
        t0 = time.perf_counter()
        sims = [dc.simulate(det, dc.gun(jax.random.key(10 * r + s), n, det.layout, region=reg.name),
                            key=jax.random.key(10 * r + s + 5), mode="realistic", pileup=pu)
                for s, n in ((1, args.train), (2, args.train // 5), (3, args.test))]
        reco = Reconstruction.fit(sims[0], sims[1], z_mm=det.layout.z_mm, train_config=configs, progress=True)
        ev = evaluate(reco, sims[2])
        entry = ev["regions"][str(r)]
        entry["seconds"] = time.perf_counter() - t0
        summary[reg.name] = entry
        plot_reco(ev, sims[2], out, names=[x.name for x in det.layout.regions])
        lines += table_rows(reg, entry)
        print("\n".join(lines[-2:]), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    head = ("| region | reco | energy resolution fit a/√E ⊕ b ⊕ c/E | sigma_E/E core / RMS (%) | position core / RMS (mm) "
            "| time core / RMS (ps) |\n|---|---|---|---|---|---|\n")
    (out / "results.md").write_text(f"Upgrade II baseline, {args.collisions:g} collisions per crossing, photons 2-100 GeV "
                                    f"from the IP, {args.train} training clusters per region, {args.test} test clusters.\n\n"
                                    + head + "\n".join(lines) + "\n")
    print(f"wrote {out}/results.md")


if __name__ == "__main__":
    main()
