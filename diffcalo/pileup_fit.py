"""Fit the default pile-up flux model to Pythia 8 minimum-bias events, and check it against direct sums
of generated hits (needs the ``pythia`` extra: ``pip install pythia8mc``).

``python -m diffcalo.pileup_fit --events 20000 -o diffcalo/data/pileup_pythia8_14tev.json`` remakes the
shipped parameters; ``diffcalo pileup --check`` (:func:`check`) generates an independent sample (another
seed) and compares the model's window occupancy with direct sums of its hits. What the fit does:

1. generates inelastic pp collisions at 14 TeV (``SoftQCD:inelastic``) with a fixed seed;
2. propagates every final-state particle moving forward in a straight line from its production
   vertex to the ECAL face at z = 12.62 m; charged particles get a transverse-momentum kick of
   +-1.2 GeV in x at the dipole centre (z = 5.3 m) -- an approximation of the LHCb magnet that
   ignores the field map, fringe fields and the tracking stations' material;
3. keeps particles that land on the wall (7.8 m x 6.3 m), in four classes: photons, electrons
   (e+-), charged hadrons (with muons: they deposit as minimum-ionising particles) and neutral
   hadrons (neutrinos dropped). The energy a particle can deposit (:func:`deposit_energy`): the
   kinetic energy E - m for baryons, E + m for antibaryons (annihilation), E otherwise;
4. per class, tabulates the hit density per collision and cm^2 in cells of (|x|, |y|) (quadrants
   folded; made non-increasing away from the beam along each axis; the model interpolates log density
   bilinearly between cell centres): the dipole kick spreads charged particles in x, so a function of r
   alone misses the corners of the wall by 10-20 %. On hits at r >= :data:`R_FIT_MIN_MM` from the
   beam only (closer hits go down the beam hole of every ECAL layout; they carry most of the energy
   crossing the ECAL plane and must not set the spectrum of hits further out) it stores, in fine
   radial bins, quantiles of log10 of the
   transverse energy *at the hit*, E_T = E sin(theta_hit) with tan(theta_hit) = r / z (for a neutral
   particle from the origin this is its pT). The model gives a hit at radius r the energy
   E = E_T / sin(theta_hit): energy follows position (E ~ pT z / r near the beam), which a single
   energy spectrum per wide radial bin does not (the fault of format 1, which gave hits at 250-1000 mm
   the TeV-scale energies of particles going down the beam hole);
5. stores quantiles of the arrival delay behind a photon from the origin (production time + slower
   flight), per class.
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
#: Hits closer to the beam are left out of the fit (inside every ECAL's beam hole; LHCb's is 242 mm).
R_FIT_MIN_MM = 200.0
#: Radial bins of the E_T spectra (mm); the last bin extends to the wall's corners.
R_EDGES_MM = [R_FIT_MIN_MM, 250.0, 300.0, 350.0, 400.0, 500.0, 600.0, 700.0, 850.0, 1000.0, 1250.0, 1500.0,
              2000.0, 2500.0, 3000.0, 1e9]
#: Quantile levels of the stored spectra: dense in the upper tail, whose few hardest hits would
#: otherwise set the mean (the last segment, 0.999-1, spans up to the largest hit).
#: Cells of the density tables in |x| and |y| (mm): the dipole kick spreads charged particles in x, so
#: the density is not a function of r alone.
DENSITY_X_EDGES_MM = [0.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 800.0, 1000.0, 1250.0, 1500.0, 2000.0, 2500.0,
                      3000.0, 3500.0, HALF_X_MM]
DENSITY_Y_EDGES_MM = [0.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 800.0, 1000.0, 1250.0, 1500.0, 2000.0, 2500.0,
                      HALF_Y_MM]
QUANTILES = np.concatenate([np.linspace(0.0, 0.95, 39), [0.96, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999, 1.0]])
CLASSES = ("photon", "electron", "charged_hadron", "neutral_hadron")
#: Version of the model file format (2: E_T spectra in fine radial bins; 1: energy in three bins).
MODEL_FORMAT = 2
#: Columns of the hit arrays of :func:`generate`.
HIT_COLUMNS = ("x_mm", "y_mm", "energy_gev", "delay_ns", "event")


def classify(pid: int, charge: float) -> str | None:
    a = abs(pid)
    if a in (12, 14, 16):
        return None
    if pid == 22:
        return "photon"
    if a == 11:
        return "electron"
    return "charged_hadron" if charge != 0 else "neutral_hadron"


def deposit_energy(pid: int, energy: float, mass: float) -> float:
    """The energy a particle can leave in a calorimeter (GeV): kinetic energy E - m for baryons (their
    mass stays in the nucleon), E + m for antibaryons (they annihilate with a nucleon), E otherwise.
    Baryons are PDG codes 1000 <= |id| < 10000."""
    if 1000 <= abs(pid) < 10000:
        return energy - mass if pid > 0 else energy + mass
    return energy


def sin_theta(r_mm, z_mm: float = Z_ECAL_MM):
    """sin of the polar angle of a point at radius ``r_mm`` on the plane at ``z_mm`` seen from the origin."""
    r = np.asarray(r_mm, dtype=float)
    return r / np.sqrt(r * r + z_mm * z_mm)


def generate(n_events: int, seed: int, *, progress: bool = False):
    """Hits on the ECAL face: dict class -> array [hits, 5] with the columns :data:`HIT_COLUMNS`
    (x, y in mm, deposit energy in GeV (:func:`deposit_energy`), delay in ns, event index)."""
    try:
        import pythia8mc as pythia8
    except ImportError:
        raise RuntimeError("generating minimum-bias events needs Pythia 8: pip install --only-binary=:all: pythia8mc "
                           "(or the pythia extra)") from None
    import sys

    from tqdm import tqdm

    py = pythia8.Pythia("", False)
    for s in ("Beams:eCM = 14000.", "SoftQCD:inelastic = on", "Next:numberCount = 0", "Random:setSeed = on",
              f"Random:seed = {seed}", "Print:quiet = on"):
        py.readString(s)
    if not py.init():
        raise RuntimeError("Pythia failed to initialise")
    hits = {c: [] for c in CLASSES}
    c_mm_per_ns = 299.792458
    done = 0
    bar = tqdm(total=n_events, desc="Pythia 8 minimum bias", unit="event", file=sys.stderr, disable=not progress,
               leave=False)
    while done < n_events:
        if not py.next():
            continue
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
            hits[cls].append((x, y, deposit_energy(prt.id(), prt.e(), prt.m()), delay, done))
        done += 1
        bar.update(1)
    bar.close()
    return {c: np.asarray(v, dtype=float).reshape(-1, len(HIT_COLUMNS)) for c, v in hits.items()}


def fit_class(h: np.ndarray, n_events: int) -> dict:
    """One class's density table, E_T quantiles per radial bin and delay quantiles (module docstring)."""
    ax, ay = np.abs(h[:, 0]), np.abs(h[:, 1])
    counts, _, _ = np.histogram2d(ay, ax, bins=[DENSITY_Y_EDGES_MM, DENSITY_X_EDGES_MM])   # [ny, nx]
    area_cm2 = 4.0 * np.outer(np.diff(DENSITY_Y_EDGES_MM), np.diff(DENSITY_X_EDGES_MM)) / 100.0   # four quadrants
    # half a hit in empty cells (sparse classes), then non-increasing away from the beam along each axis
    log_rho = np.log(np.maximum(counts, 0.5) / n_events / area_cm2)
    log_rho = np.maximum.accumulate(log_rho[::-1, ::-1], axis=0)
    log_rho = np.maximum.accumulate(log_rho, axis=1)[::-1, ::-1]
    r = np.hypot(h[:, 0], h[:, 1])
    h, r = h[r >= R_FIT_MIN_MM], r[r >= R_FIT_MIN_MM]
    et = h[:, 2] * sin_theta(r)
    log_et = np.log10(np.maximum(et, 1e-6))
    e_q, n_bin = [], []
    for lo, hi in zip(R_EDGES_MM[:-1], R_EDGES_MM[1:]):
        sel = (r >= lo) & (r < hi)
        n_bin.append(int(sel.sum()))
        # too few hits in a bin (electrons): the spectrum of all hits, E_T varies slowly with r
        e_q.append(np.quantile(log_et[sel] if sel.sum() >= 40 else log_et, QUANTILES).tolist())
    return dict(log_density_per_cm2=log_rho.tolist(), hits_per_collision=float(len(h) / n_events),
                hits_per_bin=n_bin, hits_per_density_cell=counts.astype(int).tolist(),
                log10_et_gev_quantiles=e_q, delay_ns_quantiles=np.quantile(h[:, 3], QUANTILES).tolist())


def fit(hits: dict, n_events: int, *, source: str) -> dict:
    """The model file's content (format :data:`MODEL_FORMAT`) from :func:`generate`'s hits."""
    return dict(format=MODEL_FORMAT, source=source, z_mm=Z_ECAL_MM, r_min_mm=R_FIT_MIN_MM, r_edges_mm=R_EDGES_MM,
                density_x_edges_mm=DENSITY_X_EDGES_MM, density_y_edges_mm=DENSITY_Y_EDGES_MM,
                energy_variable="log10 E_T at the hit (GeV), E_T = E sin(theta_hit); E = E_T / sin(theta_hit)",
                quantiles=QUANTILES.tolist(),
                classes={c: fit_class(hits[c], n_events) for c in CLASSES})


# ---- check against direct sums --------------------------------------------------------------------
def direct_window_sums(hits: dict, n_events: int, centres, widths, hole_half_mm=(0.0, 0.0), *, batches: int = 10):
    """Mean hits, energy and E_T per collision of each class in square windows, summed directly over
    generated hits (hits in the beam hole |x| < hx and |y| < hy are not on the calorimeter).

    Args:
        hits: :func:`generate`'s output; n_events: the number of collisions generated.
        centres: [W, 2] window centres (mm); widths: [W] window sides (mm).
        batches: the events are split in this many batches for the statistical errors.

    Returns:
        dict class -> dict(hits, energy_gev, et_gev) -> (mean [W], error [W]) per collision, where the
        error is the batch-to-batch standard error.
    """
    centres = np.asarray(centres, dtype=float)
    widths = np.broadcast_to(np.asarray(widths, dtype=float), centres.shape[:1])
    out = {}
    hx, hy = hole_half_mm
    for cls, h in hits.items():
        keep = ~((np.abs(h[:, 0]) < hx) & (np.abs(h[:, 1]) < hy))
        h = h[keep]
        order = np.argsort(h[:, 0])
        h = h[order]
        x, y, e, ev = h[:, 0], h[:, 1], h[:, 2], h[:, 4].astype(int)
        et = e * sin_theta(np.hypot(x, y))
        batch = np.minimum(ev * batches // max(n_events, 1), batches - 1)
        events_per_batch = np.bincount(np.minimum(np.arange(n_events) * batches // max(n_events, 1), batches - 1),
                                       minlength=batches).astype(float)
        sums = np.zeros((3, len(centres), batches))
        for i, ((cx, cy), w) in enumerate(zip(centres, widths)):
            lo, hi = np.searchsorted(x, [cx - w / 2, cx + w / 2])
            sel = np.abs(y[lo:hi] - cy) < w / 2
            b = batch[lo:hi][sel]
            sums[0, i] = np.bincount(b, minlength=batches)
            sums[1, i] = np.bincount(b, weights=e[lo:hi][sel], minlength=batches)
            sums[2, i] = np.bincount(b, weights=et[lo:hi][sel], minlength=batches)
        rate = sums / events_per_batch                                   # per collision, per batch
        mean = sums.sum(axis=2) / n_events
        err = rate.std(axis=2, ddof=1) / np.sqrt(batches)
        out[cls] = {k: (mean[j], err[j]) for j, k in enumerate(("hits", "energy_gev", "et_gev"))}
    return out


def check(model, layout, *, events: int = 20000, seed: int = 1, window: int = 5, samples: int = 2000,
          hits=None, tolerance: float = 0.15, progress: bool = True) -> list[dict]:
    """Compare :func:`diffcalo.pileup.occupancy` with direct sums of generated hits in the same windows.

    Generates ``events`` minimum-bias collisions with ``seed`` (pass a seed other than the fit's,
    20261122, for an independent check; or pass ``hits`` from :func:`generate`), and per region of
    ``layout`` compares, averaged over the same ``samples`` windows of K x K cells (``events`` must
    be the number of collisions behind ``hits`` when they are given), the mean number of
    background particles, their energy and E_T per crossing. Returns one dict per region with the
    model's and the direct values, the direct values' statistical errors, the ratios and ``ok``
    (both the hit and the energy ratio within ``tolerance``, or within 3 statistical errors).
    """
    from diffcalo.pileup import occupancy

    if hits is None:
        hits = generate(events, seed, progress=progress)
    rows = occupancy(model, layout, window=window, samples=samples, seed=seed, return_windows=True)
    hole = layout.beam_hole_half_mm
    n = model.collisions_per_crossing
    out = []
    for row in rows:
        centres, widths = row.pop("windows"), row["window_mm"]
        direct = direct_window_sums(hits, events, centres, widths, hole)
        d = {}
        for q in ("hits", "energy_gev", "et_gev"):
            tot = sum(direct[c][q][0] for c in direct) * n               # per crossing, per window
            # windows are correlated (they overlap): the error of the mean over windows is that of
            # the summed batches, i.e. the batch spread of the window average
            err = math.sqrt(sum(float(np.mean(direct[c][q][1])) ** 2 for c in direct)) * n
            d[q] = (float(tot.mean()), err)
        per_class = {c: float(direct[c]["hits"][0].mean() * n) for c in direct}
        ratio = {q: row[q] / d[q][0] if d[q][0] > 0 else float("nan") for q in d}
        ok = all(abs(ratio[q] - 1) <= tolerance or abs(row[q] - d[q][0]) <= 3 * d[q][1]
                 for q in ("hits", "energy_gev"))
        out.append(dict(row, direct={q: d[q][0] for q in d}, direct_err={q: d[q][1] for q in d},
                        direct_hits_per_class=per_class, ratio=ratio, ok=bool(ok)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("-o", "--output", default=str(pathlib.Path(__file__).parent / "data" / "pileup_pythia8_14tev.json"))
    args = ap.parse_args(argv)
    t0 = time.time()
    hits = generate(args.events, args.seed, progress=True)
    from importlib.metadata import version

    source = (f"Pythia {version('pythia8mc')} (pythia8mc) SoftQCD:inelastic pp 14 TeV, {args.events} "
              f"events, seed {args.seed}; straight lines to z = {Z_ECAL_MM:g} mm, charged kick {KICK_GEV} GeV "
              f"in x at z = {Z_DIPOLE_MM:g} mm; hits at r >= {R_FIT_MIN_MM:g} mm (python -m diffcalo.pileup_fit)")
    model = fit(hits, args.events, source=source)
    out = pathlib.Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(model, indent=1))
    print(f"{args.events} events in {time.time() - t0:.0f} s -> {out}")
    for c, m in model["classes"].items():
        print(f"  {c:<15} {m['hits_per_collision']:6.2f} hits per collision on the wall at r >= {R_FIT_MIN_MM:g} mm")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
