"""Shared command-line set-up of the reconstruction studies on the Upgrade II baseline."""

from __future__ import annotations

import argparse
import pathlib

import diffcalo as dc
from diffcalo.pileup import PileupModel


def parse(description: str, train_default: int, extra=None):
    """Parse the common options (--train, --collisions, -o) plus ``extra(parser)``; return
    (args, output directory, detector, pile-up model or None)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--train", type=int, default=train_default, help="training photons")
    ap.add_argument("--collisions", type=float, default=40.0, help="pile-up collisions per crossing (0: none)")
    ap.add_argument("-o", "--output", default="studies/reco_upgrade2/results")
    if extra is not None:
        extra(ap)
    args = ap.parse_args()
    det = dc.Detector.from_layout(dc.layout.lhcb_upgrade2_baseline())
    pu = PileupModel.default(collisions_per_crossing=args.collisions) if args.collisions > 0 else None
    return args, pathlib.Path(args.output), det, pu
