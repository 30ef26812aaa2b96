r"""Gradient fidelity of L-GSO on a continuous calorimeter design: the surrogate's gradient against the
exact autodiff gradient of the same expected objective, along an L-GSO optimisation path.

Design problem (:mod:`diffcalo.design_gradient`): the LHCb shashlik stack (66 layers; nominal 2 mm Pb,
4 mm scintillator), psi = (absorber_mm, active_mm), photons of 1-50 GeV (log-uniform) at a uniform
offset in the central 40.4 mm cell, 3 x 3 window, relaxed parametric simulator; objective the mean
squared relative energy error of a frozen linear calibration (refitted at every centre, where it is
stationary, so the frozen-calibration gradient is the total one); depth <= 396 mm (the module).

At every L-GSO iteration: the calibration is refitted at the centre (2e4 clusters), L-GSO fits its
surrogate to the simulator rows in its trust region and takes its gradient; the exact gradient at the
same centre is the autodiff gradient through the relaxed simulator of a 4e4-cluster estimate (4
independent batches give its own error). Reported per iteration: cosine, norm ratio |g_lgso| / |g_exact|,
and the exact gradient's relative error (a cosine is only as good as the reference it is measured
against).

    .venv/bin/python studies/lgso_gradient_fidelity/run.py [--iterations 15] [--seed 0] [--model flow]

Writes ``studies/lgso_gradient_fidelity/results/fidelity_<model>_s<seed>[_box].json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import jax  # noqa: E402

from diffcalo.design_gradient import stack_problem  # noqa: E402
from surrogates.lgso import LGSO  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "results"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="flow", choices=("flow", "gan"))
    ap.add_argument("--samples", type=int, default=2000, help="clusters per psi point")
    ap.add_argument("--start", default="1.0,2.5", help="absorber_mm,active_mm")
    ap.add_argument("--trust-region", default="ball", choices=("ball", "box"),
                    help="how L-GSO cuts its step (the saved runs: ball, the default before L-GSO's became box)")
    ap.add_argument("--table", action="store_true", help="only print the README table of the saved runs")
    args = ap.parse_args(argv)
    if args.table:
        print(table())
        return
    prob = stack_problem("shashlik")
    start = np.array([float(v) for v in args.start.split(",")])
    scale = np.asarray(prob.psi0)
    key = jax.random.key(args.seed)
    cal = prob.fit_calibration(start, jax.random.fold_in(key, 10_000))
    opt = LGSO(start, prob.objective(cal), y_dim=prob.n_sections, x_dim=3, bounds=prob.bounds, scale=scale,
               radius=0.1, n_points=8, samples_per_point=args.samples, model=args.model,
               constraint=prob.depth_constraint, seed=args.seed, progress=lambda m: print(m, flush=True),
               trust_region=args.trust_region)
    rows = []
    t0 = time.time()
    for it in range(args.iterations):
        centre = opt.ask()[-1]
        cal = prob.fit_calibration(centre, jax.random.fold_in(key, 10_000 + it))
        opt.set_objective(prob.objective(cal))
        psi, x, y = prob.simulate_rows(jax.random.fold_in(key, it), opt.ask(), args.samples)
        rec = opt.tell(psi, x, y)
        if rec["gradient"] is None:
            break
        at = np.asarray(rec["centre"])
        if not np.allclose(at, centre):              # a rejected step: the centre went back; refit there
            cal = prob.fit_calibration(at, jax.random.fold_in(key, 20_000 + it))
        v, ve, g, ge = prob.gradient_with_error(at, cal, jax.random.fold_in(key, 30_000 + it), n=40_000)
        gl = np.asarray(rec["gradient"])
        cos = float(gl @ g / (np.linalg.norm(gl) * np.linalg.norm(g)))
        row = dict(iteration=it, centre=at.tolist(), calibration=cal.tolist(), value=v, value_err=ve,
                   exact_gradient=g.tolist(), exact_gradient_err=ge.tolist(), lgso_gradient=gl.tolist(),
                   cosine=cos, norm_ratio=float(np.linalg.norm(gl) / np.linalg.norm(g)),
                   exact_rel_err=float(np.linalg.norm(ge) / np.linalg.norm(g)), radius=rec["radius"],
                   accepted=rec["accepted"], seconds=time.time() - t0)
        rows.append(row)
        print(f"iteration {it}: centre {np.round(at, 3).tolist()} objective {v:.5f} +- {ve:.1e} "
              f"(sigma_E/E {np.sqrt(v):.4f}); cosine {cos:+.3f}, norm ratio {row['norm_ratio']:.2f}, "
              f"exact gradient rel. error {row['exact_rel_err']:.3f}", flush=True)
    cos = np.array([r["cosine"] for r in rows])
    nr = np.array([r["norm_ratio"] for r in rows])
    summary = dict(median_cosine=float(np.median(cos)), cosine_iqr=[float(np.percentile(cos, 25)), float(np.percentile(cos, 75))],
                   median_norm_ratio=float(np.median(nr)), mean_log_norm_ratio=float(np.mean(np.log(nr))),
                   iterations=len(rows), model=args.model, seed=args.seed, samples=args.samples,
                   command=" ".join(["studies/lgso_gradient_fidelity/run.py"] + (argv or sys.argv[1:])))
    print(f"median cosine {summary['median_cosine']:.3f} (IQR {summary['cosine_iqr'][0]:.3f}-{summary['cosine_iqr'][1]:.3f}), "
          f"median norm ratio {summary['median_norm_ratio']:.2f} over {len(rows)} iterations")
    OUT.mkdir(parents=True, exist_ok=True)
    stem = OUT / f"fidelity_{args.model}_s{args.seed}{'_box' if args.trust_region == 'box' else ''}"
    stem.with_suffix(".json").write_text(json.dumps(dict(summary=summary, rows=rows), indent=1))
    plot(rows, summary, stem.with_suffix(".png"))


def table() -> str:
    """The README table: one row per saved run."""
    lines = ["| surrogate, seed | median cosine (IQR) | lowest cosine | median norm ratio (range) | "
             "sigma_E/E start -> end | command |", "|---|---|---|---|---|---|"]
    for f in sorted(OUT.glob("fidelity_*.json")):
        d = json.loads(f.read_text())
        s, rows = d["summary"], d["rows"]
        nr = [r["norm_ratio"] for r in rows]
        box = f.stem.endswith("_box")
        lines.append(f"| {s['model']}, {s['seed']}{', box' if box else ''} | {s['median_cosine']:.3f} ({s['cosine_iqr'][0]:.3f}-{s['cosine_iqr'][1]:.3f}) | "
                     f"{min(r['cosine'] for r in rows):.3f} | {s['median_norm_ratio']:.2f} ({min(nr):.2f}-{max(nr):.2f}) | "
                     f"{100 * rows[0]['value'] ** 0.5:.1f} % -> {100 * rows[-1]['value'] ** 0.5:.1f} % | "
                     f"`run.py --seed {s['seed']} --model {s['model']}{' --trust-region box' if box else ''}` |")
    return "\n".join(lines)


def plot(rows, summary, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    it = [r["iteration"] for r in rows]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    ax[0].plot(it, [r["cosine"] for r in rows], "o-")
    ax[0].axhline(0.9, color="k", ls=":", lw=1)
    ax[0].set_ylabel("cosine(L-GSO, exact)")
    ax[1].plot(it, [r["norm_ratio"] for r in rows], "o-")
    ax[1].axhline(1.0, color="k", ls=":", lw=1)
    ax[1].set_yscale("log")
    ax[1].set_ylabel("|g L-GSO| / |g exact|")
    c = np.array([r["centre"] for r in rows])
    ax[2].plot(c[:, 0], c[:, 1], "o-")
    for r in rows:
        g = np.asarray(r["exact_gradient"])
        ax[2].annotate("", xy=np.asarray(r["centre"]) - 0.15 * g / np.linalg.norm(g), xytext=r["centre"],
                       arrowprops=dict(arrowstyle="->", color="C1", lw=0.8))
    ax[2].set_xlabel("absorber (mm Pb)")
    ax[2].set_ylabel("active (mm scintillator)")
    ax[2].set_title("path (orange: exact descent direction)", fontsize=9)
    for a in ax[:2]:
        a.set_xlabel("L-GSO iteration")
    fig.suptitle(f"L-GSO ({summary['model']}) vs autodiff on the shashlik stack: median cosine "
                 f"{summary['median_cosine']:.3f}, median norm ratio {summary['median_norm_ratio']:.2f}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
