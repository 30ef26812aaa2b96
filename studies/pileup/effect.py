"""Effect of pile-up (40 collisions per crossing) on 10 GeV photons per region, and of the per-cell
time window: the classical 3x3 sum around the impact cell (median and half the 16-84 % width, GeV)
without pile-up, with it, and with it after a 2-sigma time window (diffcalo.reco.timing).

    .venv/bin/python studies/pileup/effect.py [--photons 5000]
"""

import argparse

import jax
import numpy as np

import diffcalo as dc
from diffcalo.pileup import PileupModel
from diffcalo.reco.timing import TimeWindow


def summary(e):
    lo, med, hi = np.percentile(e, [16, 50, 84])
    return f"{med:.2f} ± {0.5 * (hi - lo):.2f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photons", type=int, default=5000)
    args = ap.parse_args(argv)
    pu = PileupModel.default(collisions_per_crossing=40)
    print("| region | no pile-up | 40 collisions | 40 collisions, 2-sigma time window |")
    print("|---|---|---|---|")
    for name in ("lhcb-current", "lhcb-upgrade2-baseline"):
        det = dc.Detector.from_layout(dc.layout.preset(name))
        for i, region in enumerate(det.layout.regions):
            p = dc.gun(jax.random.key(i), args.photons, det.layout, region=i, energy=10.0)
            clean = dc.simulate(det, p, key=jax.random.key(100 + i), mode="realistic").as_numpy()
            piled = dc.simulate(det, p, key=jax.random.key(100 + i), mode="realistic", pileup=pu).as_numpy()
            cut, _ = TimeWindow.fit(piled, det, n_sigma=2.0).apply(piled)
            s = [np.asarray(c.energy)[:, :, 1:4, 1:4].sum(axis=(1, 2, 3)) for c in (clean, piled, cut)]
            label = f"{name.replace('lhcb-', '')} {region.name} ({region.cell_size_mm / 10:.3g} cm)"
            print(f"| {label} | " + " | ".join(summary(v) for v in s) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
