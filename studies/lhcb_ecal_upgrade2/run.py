"""The flagship LHCb ECAL Upgrade II study: GP-BO vs random search vs the current and baseline layouts.

    .venv/bin/python studies/lhcb_ecal_upgrade2/run.py            # the full study (study.toml)
    .venv/bin/python studies/lhcb_ecal_upgrade2/run.py --quick    # the embedded quick variant (= diffcalo demo)

Writes <output>/summary.md, <output>/{gp,random}/report.md with figures, journals and baselines.json;
``--resume`` continues an interrupted run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffcalo.study.config import load_study_config
from diffcalo.study.flagship import QUICK, run_flagship


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the embedded quick configuration")
    ap.add_argument("--config", default=str(Path(__file__).with_name("study.toml")))
    ap.add_argument("-o", "--output", default="runs/lhcb_ecal_upgrade2")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    cfg = QUICK if args.quick else load_study_config(args.config)
    print(run_flagship(cfg, args.output, resume=args.resume).read_text())


if __name__ == "__main__":
    main()
