"""pi0 -> gamma gamma and B_s -> J/psi pi0 mass peaks on the Upgrade II baseline with pile-up:
one reconstruction (one network per task for the whole wall, the region entering as a feature)
against the classical one.

Photons for training: log-uniform 1-100 GeV over the whole wall, from the interaction point, 40
collisions per crossing. Signal: the analytic pi0 (minimum-bias-like spectrum) and B_s -> J/psi pi0
samples of :mod:`diffcalo.samples`; pairs with both photons on the wall and above 1 GeV. The photon
directions come from the reconstructed impact points; the J/psi is taken as measured perfectly.

    .venv/bin/python studies/reco_upgrade2/mass_peaks.py [--train 80000] [-o studies/reco_upgrade2/results]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import numpy as np

import diffcalo as dc
from diffcalo import metrics
from diffcalo.plotting import plot_mass_peak
from diffcalo.reco import Reconstruction, TrainConfig
from diffcalo.reco.classical import window_centre
from diffcalo.samples import M_BS, M_PI0, bs_jpsi_pi0_sample, pi0_sample

sys.path.insert(0, str(Path(__file__).parent))
from common import parse  # noqa: E402


def photon_p4(energy, pos, z_mm):
    d = np.stack([pos[:, 0], pos[:, 1], np.full(len(pos), z_mm)], axis=1)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return np.concatenate([energy[:, None], energy[:, None] * d], axis=1)


def reconstruct_pairs(reco, det, sample, key, pileup, e_min=1.0):
    c = dc.simulate(det, sample.photons, key=key, mode="realistic", pileup=pileup, on_invalid="flag")
    pred = reco.predict(c)
    centre = window_centre(c)
    out = {}
    for who, e_key, o_key in (("network", "energy", "offset"), ("classical", "classical_energy", "classical_offset")):
        p4 = photon_p4(pred[e_key], centre + pred[o_key], det.layout.z_mm).reshape(-1, 2, 4)
        out[who] = p4
    e_true = np.asarray(c.e_true).reshape(-1, 2)
    ok = (np.asarray(c.status).reshape(-1, 2) == 0).all(1) & (e_true > e_min).all(1)
    for who in ("network", "classical"):
        ok &= np.isfinite(out[who]).all(axis=(1, 2))
    return {k: v[ok] for k, v in out.items()}, ok


def main():
    args, out, det, pu = parse(__doc__.split("\n")[0], 80000, lambda ap: ap.add_argument(
        "--signal", type=int, default=40000, help="pi0 and B_s decays generated"))
    spectrum = dc.log_uniform_energy(1.0, 100.0)
    sims = [dc.simulate(det, dc.gun(jax.random.key(s), n, det.layout, energy=spectrum), key=jax.random.key(s + 5),
                        mode="realistic", pileup=pu) for s, n in ((1, args.train), (2, args.train // 5))]
    reco = Reconstruction.fit(sims[0], sims[1], tasks=("energy", "position"), z_mm=det.layout.z_mm,
                              train_config=TrainConfig(use_time=True))
    result = {}
    # pi0
    pi0 = pi0_sample(jax.random.key(40), args.signal, layout=det.layout)
    pairs, _ = reconstruct_pairs(reco, det, pi0, jax.random.key(41), pu)
    masses = {who: dc.samples.invariant_mass(p[:, 0], p[:, 1]) for who, p in pairs.items()}
    result["pi0"] = {who: metrics.fit_mass_peak(m, window=(0.0, 0.3)) for who, m in masses.items()}
    # the study objective's figure of merit: signal + background fit over 0-400 MeV, effective resolution
    result["pi0_fit"] = {}
    for who, m in masses.items():
        fit = metrics.fit_mass_peak_with_background(m, window=(0.0, 0.4))
        fom = metrics.pi0_figure_of_merit(fit)
        result["pi0_fit"][who] = dict(fit, effective=fom.value, effective_err=fom.error,
                                      is_measurement=fom.is_measurement, note=fom.reason)
    result["pi0"]["pairs"] = int(len(masses["network"]))
    plot_mass_peak(masses, out / f"pi0_mass_pu{args.collisions:g}.png", title=f"pi0 -> gamma gamma, {args.collisions:g} collisions/crossing")
    # B_s -> J/psi pi0
    bs = bs_jpsi_pi0_sample(jax.random.key(50), args.signal, layout=det.layout)
    pairs, ok = reconstruct_pairs(reco, det, bs, jax.random.key(51), pu)
    jpsi = bs.jpsi_p4[bs.accepted][ok]
    masses_bs = {who: dc.samples.invariant_mass(jpsi, p[:, 0], p[:, 1]) for who, p in pairs.items()}
    result["bs"] = {who: metrics.fit_mass_peak(m, window=(4.5, 6.2)) for who, m in masses_bs.items()}
    result["bs"]["pairs"] = int(len(masses_bs["network"]))
    plot_mass_peak(masses_bs, out / f"bs_mass_pu{args.collisions:g}.png", title="B_s -> J/psi pi0", xlim=(4.5, 6.2))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"mass_peaks_pu{args.collisions:g}.json").write_text(json.dumps(result, indent=1))
    lines = ["| peak | reco | mean (MeV) | core width (MeV) |", "|---|---|---|---|"]
    for peak, pdg in (("pi0", M_PI0), ("bs", M_BS)):
        for who in ("network", "classical"):
            r = result[peak][who]
            lines.append(f"| {peak} (PDG {1000 * pdg:.1f}) | {who} | {1000 * r['mean']:.1f} | "
                         f"{1000 * r['width']:.1f} +- {1000 * r['width_err']:.1f} |")
    lines += ["", "| pi0, signal + background fit | reco | mean (MeV) | width (MeV) | purity (+-30 MeV) | "
              "effective resolution (MeV) |", "|---|---|---|---|---|---|"]
    for who in ("network", "classical"):
        r = result["pi0_fit"][who]
        eff = (f"{1000 * r['effective']:.1f} +- {1000 * r['effective_err']:.1f}" if r["is_measurement"]
               else f"no peak ({r['note']})")
        lines.append(f"| pi0 | {who} | {1000 * r['mean']:.1f} | {1000 * r['width']:.1f} +- {1000 * r['width_err']:.1f} | "
                     f"{r['purity']:.3f} | {eff} |")
    text = (f"Upgrade II baseline, {args.collisions:g} collisions per crossing; one reconstruction for the whole wall "
            f"trained on {args.train} photons; {result['pi0']['pairs']} pi0 and {result['bs']['pairs']} B_s candidates "
            "(both photons > 1 GeV).\n\n" + "\n".join(lines) + "\n")
    (out / f"mass_peaks_pu{args.collisions:g}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
