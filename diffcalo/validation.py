"""Physics validation of the parametric simulator against published numbers and Geant4 showers.

Each function returns plain numbers (dicts) so that the tests assert on them and the CLI
(``diffcalo validate``) prints them; nothing here is tuned to the references it is compared with.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from diffcalo.detector import Detector
from diffcalo.layout import lhcb_current, luxe
from diffcalo.metrics import binned_resolution, fit_resolution
from diffcalo.particles import ELECTRON, PHOTON, Particles, discrete_energy, gun
from diffcalo.simulation import gflash, kernel, region_tables, simulate
from diffcalo.technologies import default_registry

__all__ = ["shashlik_resolution", "shower_maximum_scaling", "moliere_containment", "compare_geant4_luxe",
           "GEANT4_LUXE_FILE"]

#: Geant4 11.4 LUXE electron showers shipped with the package (see diffcalo/data/geant4/README.md).
GEANT4_LUXE_FILE = pathlib.Path(__file__).resolve().parent / "data" / "geant4" / "luxe_eminus_200x5.npz"


def shashlik_resolution(*, energies=(2.0, 5.0, 10.0, 20.0, 50.0, 100.0), per_energy: int = 4000,
                        region: str = "middle", mode: str = "realistic", seed: int = 0) -> dict:
    """Photon energy resolution of the LHCb Shashlik (5x5 window sum) fitted with a, b, c terms.

    Returns a dict with the fit (a, b, c and errors), the per-energy resolution and response.
    """
    det = Detector.from_layout(lhcb_current())
    k1, k2 = jax.random.split(jax.random.key(seed))
    p = gun(k1, len(energies) * per_energy, det.layout, region=region, energy=discrete_energy(energies), pid=PHOTON)
    c = simulate(det, p, key=k2, mode=mode)
    total = np.asarray(c.energy).sum(axis=(1, 2, 3))
    e, res, err, resp = binned_resolution(np.asarray(c.e_true), total)
    fit = fit_resolution(e, res, err)
    return dict(fit=fit, energies=e, resolution=res, resolution_err=err, response=resp)


def _mean_profile_parameters(tech, energy, pid):
    """Mean (T, alpha) and per-layer mean fractions of one technology at one energy (z1 = z2 = 0)."""
    reg_det = Detector(technologies=(tech,), cell_size_mm=jnp.asarray([tech.module_mm]), layout=_dummy_layout(tech))
    tab = {k: v[0] for k, v in region_tables(reg_det, max(4, tech.n_sections), False).items()}
    t_max, alpha, beta = gflash.sample_shape(
        *kernel.longitudinal_parameters(jnp.asarray(energy), tab, jnp.asarray(pid == PHOTON)), 0.0, 0.0)
    return tab, t_max, alpha, beta


def _dummy_layout(tech):
    from diffcalo.layout import Layout, Region

    cell = tech.cell_sizes_mm[0] if tech.cell_sizes_mm else tech.module_mm
    return Layout(name="validation", module_mm=tech.module_mm, modules_x=1, modules_y=1, z_mm=0.0,
                  regions=(Region("all", tech.name, cell, 1, 1),))


def shower_maximum_scaling(technology: str = "siw", *, energies=(2.0, 5.0, 10.0, 20.0, 50.0, 100.0),
                           n: int = 2000, seed: int = 0) -> dict:
    """Depth of the mean longitudinal profile's maximum vs ln E from simulated layer profiles.

    Uses a 9x9 window on a one-region layout whose technology reads every layer, electrons at normal incidence;
    the maximum is located by a parabola through the three layers around the peak.

    Returns:
        dict(energies, t_max_x0 [m], slope (X0 per unit ln E), intercept).
    """
    reg = default_registry()
    tech = reg.get(technology)
    if tech.n_sections != tech.n_layers:
        raise ValueError(f"shower_maximum_scaling: {technology!r} does not read every layer; use siw or toy-scint")
    det = Detector.from_layout(_dummy_layout(tech))
    t_edges, _ = tech.layer_depths()
    t_mid = np.asarray(0.5 * (t_edges[1:] + t_edges[:-1]))
    dt = np.diff(np.asarray(t_edges))
    t_max = []
    for i, e in enumerate(energies):
        p = Particles.create(energy=np.full(n, e), x=np.zeros(n), y=np.zeros(n), pid=ELECTRON)
        c = simulate(det, p, key=jax.random.key(seed + i), window=9)
        prof = np.asarray(c.energy).sum(axis=(2, 3)).mean(axis=0) / dt   # energy per X0
        k = int(np.clip(prof.argmax(), 1, len(prof) - 2))
        y0, y1, y2 = prof[k - 1:k + 2]
        shift = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
        t_max.append(t_mid[k] + shift * 0.5 * (t_mid[k + 1] - t_mid[k - 1]))
    slope, intercept = np.polyfit(np.log(energies), t_max, 1)
    return dict(energies=np.asarray(energies), t_max_x0=np.asarray(t_max), slope=float(slope),
                intercept=float(intercept))


def moliere_containment(technology: str = "shashlik", *, energy: float = 10.0, radius_rm: float = 1.0,
                        n_slabs: int = 200) -> float:
    """Fraction of a mean shower's energy inside a cylinder of ``radius_rm`` Moliere radii.

    Depth-weighted over the stack with the mean (T, alpha): sum over fine slabs of the slab fraction
    times p r^2/(r^2 + R_C^2) + (1 - p) r^2/(r^2 + R_T^2) (the radial CDF of each component).
    """
    tech = default_registry().get(technology)
    tab, t_max, alpha, beta = _mean_profile_parameters(tech, energy, PHOTON)
    t_end = tab["t_edges"][-1]
    edges = jnp.linspace(0.0, t_end, n_slabs + 1)
    frac = gflash.longitudinal_fractions(edges, alpha, beta)
    tau = 0.5 * (edges[1:] + edges[:-1]) / t_max
    rc, rt, p = kernel.radial_parameters(jnp.asarray(energy), tau, tab)
    r2 = radius_rm ** 2
    inside = p * r2 / (r2 + rc ** 2) + (1 - p) * r2 / (r2 + rt ** 2)
    return float(jnp.sum(frac * inside) / jnp.sum(frac))


def compare_geant4_luxe(path: str | pathlib.Path = GEANT4_LUXE_FILE, *, seed: int = 0, oversample: int = 4) -> dict:
    """Compare the simulator with the Geant4 LUXE electron showers (diffcalo/data/geant4/README.md).

    The same electrons (energies and gun positions as in the file, each simulated ``oversample``
    times so that the model's statistical error is small next to Geant4's 200 showers per energy)
    are simulated in image mode with the ``siw`` technology, noise off (Geant4 has none), and
    converted to energy deposited in the silicon with the model's sampling fraction.

    Returns a dict with, per energy: sampling fraction (sim, g4), resolution sigma/E (sim, g4),
    the fitted stochastic terms, the normalised per-layer profiles and the layers holding 80 % of
    the energy with the largest relative deviation there, and 3x3 / 5x5 containment around the
    impact pad. Profile ratios come with their statistical errors (``profile_ratio_err``, from
    the shower-to-shower spread of both samples); ``max_profile_excess`` is the largest deviation
    beyond two standard errors.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Geant4 reference file {path} not found (see diffcalo/data/geant4/README.md)")
    ref = np.load(path)
    for key in ("edep", "e_true", "gun_xy"):
        if key not in ref.files:
            raise ValueError(f"{path}: missing array {key!r}; found {ref.files}")
    g4 = np.asarray(ref["edep"], dtype=float)            # MeV in Si, [N, 20, 11, 110]
    e_true = np.asarray(ref["e_true"], dtype=float)
    gun_xy = np.asarray(ref["gun_xy"], dtype=float)
    tech = dataclasses.replace(default_registry().get("siw"), noise_gev=0.0, constant_term=0.0)
    det = Detector.from_layout(luxe()).replace_region(0, technology=tech)
    p = Particles.create(energy=np.repeat(e_true, oversample), x=np.repeat(gun_xy[:, 0], oversample),
                         y=np.repeat(gun_xy[:, 1], oversample), pid=ELECTRON)
    c = simulate(det, p, key=jax.random.key(seed), image=True)
    sf = np.asarray(det.sampling_fraction())[0]
    sim = np.asarray(c.energy, dtype=np.float32) * (sf[None, :, None, None] * 1000.0).astype(np.float32)
    del c

    def containment(arr, half):
        reps = len(arr) // len(gun_xy)
        cells = det.layout.lookup(np.repeat(gun_xy[:, 0], reps), np.repeat(gun_xy[:, 1], reps))
        ix, iy = cells["ix"], cells["iy"]
        img = arr.sum(axis=1)
        out = np.empty(len(img))
        for i in range(len(img)):
            win = img[i, max(iy[i] - half, 0):iy[i] + half + 1, max(ix[i] - half, 0):ix[i] + half + 1]
            out[i] = win.sum() / img[i].sum()
        return out

    e_sim = np.repeat(e_true, oversample)
    truths = {"sim": e_sim, "g4": e_true}
    result = dict(energies=np.unique(e_true), per_energy=[], oversample=oversample)
    for name, arr in (("sim", sim), ("g4", g4)):
        tot = arr.sum(axis=(1, 2, 3))
        e, res, err, _ = binned_resolution(truths[name], tot)
        # pure stochastic term: with five energies from 3 to 20 GeV a free constant term is
        # not constrained and makes the comparison of a fragile
        result[f"fit_{name}"] = fit_resolution(e, res, err, fit_constant=False, fit_noise=False)
        result[f"containment3_{name}"] = float(containment(arr, 1).mean())
        result[f"containment5_{name}"] = float(containment(arr, 2).mean())
        result[f"sampling_fraction_{name}"] = float((tot / (truths[name] * 1000.0)).mean())
    for e in result["energies"]:
        row = dict(energy=float(e))
        for name, arr in (("sim", sim), ("g4", g4)):
            m = truths[name] == e
            tot = arr[m].sum(axis=(1, 2, 3))
            row[f"sampling_fraction_{name}"] = float(tot.mean() / (e * 1000.0))
            row[f"resolution_{name}"] = float(tot.std(ddof=1) / tot.mean())
            layers = arr[m].sum(axis=(2, 3))                              # [showers, L]
            mean = layers.mean(axis=0)
            row[f"profile_{name}"] = mean / mean.sum()
            row[f"profile_relerr_{name}"] = layers.std(axis=0, ddof=1) / np.sqrt(m.sum()) / np.maximum(mean, 1e-30)
        # the layers that hold 80 % of the (Geant4) energy, taken in order of content
        order = np.argsort(row["profile_g4"])[::-1]
        keep = np.sort(order[:int(np.searchsorted(np.cumsum(row["profile_g4"][order]), 0.8) + 1)])
        ratio = row["profile_sim"][keep] / row["profile_g4"][keep]
        ratio_err = ratio * np.hypot(row["profile_relerr_sim"][keep], row["profile_relerr_g4"][keep])
        row["core_layers"] = keep
        row["profile_ratio"] = ratio
        row["profile_ratio_err"] = ratio_err
        row["max_profile_deviation"] = float(np.abs(ratio - 1.0).max())
        row["max_profile_excess"] = float(np.max(np.abs(ratio - 1.0) - 2.0 * ratio_err))
        result["per_energy"].append(row)
    result["max_profile_excess"] = max(r["max_profile_excess"] for r in result["per_energy"])
    result["max_profile_deviation"] = max(r["max_profile_deviation"] for r in result["per_energy"])
    return result
