"""Fit the default pile-up flux model to Pythia 8 minimum-bias events (needs the ``pythia`` extra).

Run ``python -m diffcalo.pileup_fit --events 20000 -o diffcalo/data/pileup_pythia8_14tev.json`` to
remake the shipped parameters. What it does:

1. generates inelastic pp collisions at 14 TeV (``SoftQCD:inelastic``) with a fixed seed;
2. propagates every final-state particle moving forward in a straight line from its production
   vertex to the ECAL face at z = 12.62 m; charged particles get a transverse-momentum kick of
   +-1.2 GeV in x at the dipole centre (z = 5.3 m) -- an approximation of the LHCb magnet that
   ignores the field map, fringe fields and the tracking stations' material;
3. keeps particles that land on the wall (7.8 m x 6.3 m), in four classes: photons, electrons
   (e+-), charged hadrons (with muons: they deposit as minimum-ionising particles) and neutral
   hadrons (neutrinos dropped);
4. per class, fits the hit density per collision and cm^2 with rho(r) = N (1 + (r/r0)^2)^(-beta),
   and stores quantiles of log10(E/GeV) in radial bins and of the arrival delay behind a photon
   from the origin (production time + slower flight).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import time

import numpy as np

Z_ECAL_MM = 12620.0
Z_DIPOLE_MM = 5300.0
KICK_GEV = 1.2
HALF_X_MM, HALF_Y_MM = 3878.4, 3151.2
R_EDGES_MM = [0.0, 1000.0, 2000.0, 1e9]
QUANTILES = np.linspace(0.0, 1.0, 41)
CLASSES = ("photon", "electron", "charged_hadron", "neutral_hadron")


def classify(pid: int, charge: float) -> str | None:
    a = abs(pid)
    if a in (12, 14, 16):
        return None
    if pid == 22:
        return "photon"
    if a == 11:
        return "electron"
    return "charged_hadron" if charge != 0 else "neutral_hadron"


def generate(n_events: int, seed: int):
    """Hits on the ECAL face: dict class -> arrays (x, y, energy, delay_ns)."""
    import pythia8mc as pythia8

    py = pythia8.Pythia("", False)
    for s in ("Beams:eCM = 14000.", "SoftQCD:inelastic = on", "Next:numberCount = 0", "Random:setSeed = on",
              f"Random:seed = {seed}", "Print:quiet = on"):
        py.readString(s)
    if not py.init():
        raise RuntimeError("Pythia failed to initialise")
    hits = {c: [] for c in CLASSES}
    c_mm_per_ns = 299.792458
    done = 0
    while done < n_events:
        if not py.next():
            continue
        done += 1
        for prt in py.event:
            if not prt.isFinal() or prt.pz() <= 0.0:
                continue
            cls = classify(prt.id(), prt.charge())
            if cls is None:
                continue
            x0, y0, z0 = prt.xProd(), prt.yProd(), prt.zProd()
            if z0 > Z_DIPOLE_MM:
                continue
            px, py_, pz = prt.px(), prt.py(), prt.pz()
            tx, ty = px / pz, py_ / pz
            if prt.charge() != 0:
                xm = x0 + tx * (Z_DIPOLE_MM - z0)
                ym = y0 + ty * (Z_DIPOLE_MM - z0)
                tx2 = (px + math.copysign(KICK_GEV, prt.charge())) / pz
                x = xm + tx2 * (Z_ECAL_MM - Z_DIPOLE_MM)
                y = ym + ty * (Z_ECAL_MM - Z_DIPOLE_MM)
            else:
                x = x0 + tx * (Z_ECAL_MM - z0)
                y = y0 + ty * (Z_ECAL_MM - z0)
            if abs(x) > HALF_X_MM or abs(y) > HALF_Y_MM:
                continue
            path = math.sqrt((x - x0) ** 2 + (y - y0) ** 2 + (Z_ECAL_MM - z0) ** 2)
            beta = prt.pAbs() / prt.e()
            t = prt.tProd() / c_mm_per_ns + path / (beta * c_mm_per_ns)
            delay = t - math.sqrt(x * x + y * y + Z_ECAL_MM ** 2) / c_mm_per_ns
            hits[cls].append((x, y, prt.e(), delay))
    return {c: np.asarray(v, dtype=float).reshape(-1, 4) for c, v in hits.items()}


def fit_class(h: np.ndarray, n_events: int) -> dict:
    from scipy.optimize import curve_fit

    r = np.hypot(h[:, 0], h[:, 1])
    edges = np.concatenate([np.linspace(0, 1000, 21), np.linspace(1100, 3000, 20), [3300, 3600, 3878]])
    counts, _ = np.histogram(r, bins=edges)
    # fraction of each annulus inside the wall rectangle (Monte Carlo, fixed seed)
    rng = np.random.default_rng(0)
    frac = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        rr = np.sqrt(rng.uniform(lo * lo, hi * hi, 20000))
        phi = rng.uniform(0, 2 * np.pi, 20000)
        frac.append(np.mean((np.abs(rr * np.cos(phi)) < HALF_X_MM) & (np.abs(rr * np.sin(phi)) < HALF_Y_MM)))
    area_cm2 = np.pi * (edges[1:] ** 2 - edges[:-1] ** 2) / 100.0 * np.asarray(frac)
    rho = counts / n_events / area_cm2
    mid = 0.5 * (edges[1:] + edges[:-1])
    ok = counts > 0
    err = np.sqrt(np.maximum(counts, 1)) / n_events / area_cm2

    def model(r, log_n, r0, beta):
        return log_n - beta * np.log1p((r / r0) ** 2)

    popt, _ = curve_fit(model, mid[ok], np.log(rho[ok]), p0=[np.log(rho[ok][0]), 200.0, 1.0],
                        sigma=(err / np.maximum(rho, 1e-30))[ok], maxfev=20000,
                        bounds=([-30, 1.0, 0.01], [10, 5000.0, 5.0]))
    e_q = []
    for lo, hi in zip(R_EDGES_MM[:-1], R_EDGES_MM[1:]):
        sel = (r >= lo) & (r < hi)
        vals = np.log10(h[sel, 2]) if sel.sum() >= 20 else np.log10(h[:, 2])
        e_q.append(np.quantile(vals, QUANTILES).tolist())
    return dict(density=dict(log_norm_per_cm2=float(popt[0]), r0_mm=float(popt[1]), beta=float(popt[2])),
                hits_per_collision=float(len(h) / n_events),
                log10_energy_gev_quantiles=e_q, delay_ns_quantiles=np.quantile(h[:, 3], QUANTILES).tolist(),
                fit_check=dict(r_mm=mid[ok].tolist(), density_per_cm2=rho[ok].tolist()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("-o", "--output", default=str(pathlib.Path(__file__).parent / "data" / "pileup_pythia8_14tev.json"))
    args = ap.parse_args(argv)
    t0 = time.time()
    hits = generate(args.events, args.seed)
    from importlib.metadata import version

    model = dict(
        source=f"Pythia {version('pythia8mc')} (pythia8mc) SoftQCD:inelastic pp 14 TeV, {args.events} "
               f"events, seed {args.seed}; straight lines to z = {Z_ECAL_MM:g} mm, charged kick {KICK_GEV} GeV "
               f"in x at z = {Z_DIPOLE_MM:g} mm (python -m diffcalo.pileup_fit)",
        z_mm=Z_ECAL_MM, r_edges_mm=R_EDGES_MM, quantiles=QUANTILES.tolist(), collision_time_sigma_ns=0.19,
        classes={c: fit_class(hits[c], args.events) for c in CLASSES},
    )
    out = pathlib.Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(model, indent=1))
    print(f"{args.events} events in {time.time() - t0:.0f} s -> {out}")
    for c, m in model["classes"].items():
        d = m["density"]
        print(f"  {c:<15} {m['hits_per_collision']:6.2f} hits/collision on the wall; rho(0) = "
              f"{math.exp(d['log_norm_per_cm2']):.2e}/cm2, r0 = {d['r0_mm']:.0f} mm, beta = {d['beta']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
