"""The flagship LHCb ECAL Upgrade II study: GP-BO vs random search vs the current and baseline layouts.

    .venv/bin/python studies/lhcb_ecal_upgrade2/run.py            # the full study (study.toml)
    .venv/bin/python studies/lhcb_ecal_upgrade2/run.py --quick    # the embedded quick variant (= diffcalo demo)
    .venv/bin/python studies/lhcb_ecal_upgrade2/run.py --replicas 3 --reevaluate 3   # noise-aware comparison

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
    ap.add_argument("--replicas", type=int, default=1, help="optimiser seeds per optimiser (default 1)")
    ap.add_argument("--reevaluate", type=int, default=0,
                    help="fresh seeds to re-evaluate each run's best design and the baselines with (default 0)")
    ap.add_argument("--evaluations", type=int, default=None, help="override the config's evaluations per run")
    ap.add_argument("--initial", type=int, default=None, help="override the config's initial (random) evaluations")
    args = ap.parse_args()
    cfg = QUICK if args.quick else load_study_config(args.config)
    changes = {k: v for k, v in (("evaluations", args.evaluations), ("initial", args.initial)) if v is not None}
    if changes:
        from diffcalo.study.config import study_config_from_dict, study_config_from_flat

        cfg = cfg if not isinstance(cfg, dict) else study_config_from_dict(cfg)
        cfg = study_config_from_flat(dict(cfg.as_dict(), **changes))
    print(run_flagship(cfg, args.output, resume=args.resume, replicas=args.replicas,
                       reevaluate=args.reevaluate).read_text())


if __name__ == "__main__":
    main()
