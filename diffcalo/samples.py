r"""Physics signal samples: pi0 -> gamma gamma and B_s -> J/psi pi0 (pi0 -> gamma gamma).

Analytic generator (no Pythia needed): the parent's transverse momentum follows a Tsallis-like
spectrum dN/dpT ~ pT (1 + pT / (n T))^(-n) (sampled by inverse CDF on a grid), its pseudorapidity is
uniform in the LHCb acceptance 2 < eta < 5 and its azimuth uniform; two-body decays are isotropic
in the rest frame and boosted to the lab. Photons travel in straight lines from the origin to the
ECAL face at ``z_mm``. Each photon carries a truth link to its parent (index in the batch of
parents), so that reconstructed pairs can be matched. The spectrum's mean is 2 n T / (n - 3).
Default spectra: pi0 T = 0.2 GeV, n = 7 (mean pT 0.7 GeV, minimum-bias-like); B_s T = 1.2 GeV,
n = 8 (mean pT 3.84 GeV). Kinematics are computed in float64.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from diffcalo.particles import PHOTON, Particles

__all__ = ["M_PI0", "M_BS", "M_JPSI", "SignalSample", "pi0_sample", "bs_jpsi_pi0_sample", "pythia_sample",
           "invariant_mass"]

M_PI0 = 0.1349768     # GeV (PDG)
M_BS = 5.36692        # GeV (PDG)
M_JPSI = 3.096900     # GeV (PDG)


@dataclasses.dataclass(frozen=True)
class SignalSample:
    """Photons on the ECAL face plus truth.

    Attributes:
        photons: :class:`Particles` [2 m] (only photons that hit the wall outside the beam hole
            when ``layout`` was given, see ``accepted``).
        parent: [2 m] index of the parent decay (0..m-1) of each photon.
        photon_p4: [2 m, 4] photon four-momenta (E, px, py, pz) in GeV.
        parent_p4: [m, 4] four-momenta of the pi0 (or B_s) parents.
        accepted: [m] both photons of the parent on the active wall.
        jpsi_p4: [m, 4] J/psi four-momenta (B_s samples only, else None).
    """

    photons: Particles
    parent: np.ndarray
    photon_p4: np.ndarray
    parent_p4: np.ndarray
    accepted: np.ndarray
    jpsi_p4: np.ndarray | None = None


def invariant_mass(*p4s):
    """Invariant mass of the sum of four-momenta [..., 4] (E, px, py, pz)."""
    tot = sum(np.asarray(p, dtype=np.float64) for p in p4s)
    return np.sqrt(np.maximum(tot[..., 0] ** 2 - (tot[..., 1:] ** 2).sum(-1), 0.0))


def _tsallis_pt(key, n_samples, temperature, power):
    grid = np.linspace(0.0, 60.0 * temperature * power / max(power - 2.0, 1.0), 20001)
    pdf = grid * (1.0 + grid / (power * temperature)) ** (-power)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(grid))])
    cdf /= cdf[-1]
    u = np.asarray(jax.random.uniform(key, (n_samples,)), dtype=np.float64)
    return np.interp(u, cdf, grid)


def _parents(key, n, mass, temperature, power, eta_range=(2.0, 5.0)):
    k_pt, k_eta, k_phi = jax.random.split(key, 3)
    pt = _tsallis_pt(k_pt, n, temperature, power)
    eta = np.asarray(jax.random.uniform(k_eta, (n,), minval=eta_range[0], maxval=eta_range[1]), dtype=np.float64)
    phi = np.asarray(jax.random.uniform(k_phi, (n,), minval=0.0, maxval=2 * np.pi), dtype=np.float64)
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px ** 2 + py ** 2 + pz ** 2 + mass ** 2)
    return np.stack([e, px, py, pz], axis=-1)


def _two_body(key, parent_p4, m_parent, m1, m2):
    """Isotropic two-body decay in the rest frame, boosted to the lab: (p4_1, p4_2) [n, 4]."""
    n = parent_p4.shape[0]
    k_c, k_p = jax.random.split(key)
    # float64 from here on: a float32 unit vector would give the photons masses of order E x 1e-4
    cos_t = np.asarray(jax.random.uniform(k_c, (n,), minval=-1.0, maxval=1.0), dtype=np.float64)
    phi = np.asarray(jax.random.uniform(k_p, (n,), minval=0.0, maxval=2 * np.pi), dtype=np.float64)
    p = np.sqrt((m_parent ** 2 - (m1 + m2) ** 2) * (m_parent ** 2 - (m1 - m2) ** 2)) / (2 * m_parent)
    sin_t = np.sqrt(1 - cos_t ** 2)
    mom = p * np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=-1)
    d1 = np.concatenate([np.sqrt(p ** 2 + m1 ** 2)[None].repeat(n)[:, None], mom], axis=-1)
    d2 = np.concatenate([np.sqrt(p ** 2 + m2 ** 2)[None].repeat(n)[:, None], -mom], axis=-1)
    beta = parent_p4[:, 1:] / parent_p4[:, :1]
    return _boost(d1, beta), _boost(d2, beta)


def _boost(p4, beta):
    b2 = (beta ** 2).sum(-1)
    gamma = 1.0 / np.sqrt(1.0 - b2)
    bp = (beta * p4[:, 1:]).sum(-1)
    coef = np.where(b2 > 0, (gamma - 1.0) * bp / np.where(b2 > 0, b2, 1.0), 0.0)
    e = gamma * (p4[:, 0] + bp)
    p = p4[:, 1:] + (coef + gamma * p4[:, 0])[:, None] * beta
    return np.concatenate([e[:, None], p], axis=-1)


def _photons_on_wall(gammas, parent, layout, z_mm):
    e, px, py, pz = gammas.T
    tx, ty = px / pz, py / pz
    x, y = tx * z_mm, ty * z_mm
    if layout is not None:
        _, status = layout.region_of(jnp.asarray(x), jnp.asarray(y))
        on = (np.asarray(status) == 0) & (pz > 0)
    else:
        on = pz > 0
    return x, y, tx, ty, e, on


def _sample(key, n, layout, z_mm, make_pi0s):
    z = layout.z_mm if (layout is not None and z_mm is None) else (z_mm or 12620.0)
    pi0, extra = make_pi0s(key, n)
    g1, g2 = _two_body(jax.random.fold_in(key, 7), pi0, M_PI0, 0.0, 0.0)
    gammas = np.stack([g1, g2], axis=1).reshape(2 * n, 4)
    parent = np.repeat(np.arange(n), 2)
    x, y, tx, ty, e, on = _photons_on_wall(gammas, parent, layout, z)
    accepted = on.reshape(n, 2).all(axis=1)
    keep = np.repeat(accepted, 2)
    photons = Particles.create(energy=e[keep], x=x[keep], y=y[keep], tx=tx[keep], ty=ty[keep], pid=PHOTON)
    return photons, parent[keep], gammas[keep], accepted, extra


def pi0_sample(key, n: int, *, layout=None, z_mm: float | None = None, temperature_gev: float = 0.2,
               power: float = 7.0) -> SignalSample:
    """``n`` pi0 -> gamma gamma decays; photons that reach the wall (both of a pair) are kept."""
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n = {n!r}: must be an integer >= 1")

    def make(k, m):
        p = _parents(k, m, M_PI0, temperature_gev, power)
        return p, p

    photons, parent, p4, accepted, pi0 = _sample(key, n, layout, z_mm, make)
    return SignalSample(photons=photons, parent=parent, photon_p4=p4, parent_p4=pi0, accepted=accepted)


def bs_jpsi_pi0_sample(key, n: int, *, layout=None, z_mm: float | None = None, temperature_gev: float = 1.2,
                       power: float = 8.0) -> SignalSample:
    """``n`` B_s -> J/psi pi0 decays (pi0 -> gamma gamma); ``parent_p4`` holds the B_s, ``jpsi_p4``
    the J/psi (its muons are not simulated: the ECAL sees the two photons)."""
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n = {n!r}: must be an integer >= 1")
    store = {}

    def make(k, m):
        bs = _parents(k, m, M_BS, temperature_gev, power)
        jpsi, pi0 = _two_body(jax.random.fold_in(k, 3), bs, M_BS, M_JPSI, M_PI0)
        store.update(bs=bs, jpsi=jpsi)
        return pi0, bs

    photons, parent, p4, accepted, bs = _sample(key, n, layout, z_mm, make)
    return SignalSample(photons=photons, parent=parent, photon_p4=p4, parent_p4=bs, accepted=accepted,
                        jpsi_p4=store["jpsi"])


# ---- Pythia 8 (optional extra: pip install --only-binary=:all: pythia8mc) ---------------------------------
def _pythia(settings, seed: int):
    try:
        import pythia8mc as pythia8
    except ImportError:
        raise ImportError("source='pythia' needs the pythia extra: pip install --only-binary=:all: pythia8mc") from None
    py = pythia8.Pythia("", False)
    for s in ("Beams:eCM = 14000.", "Next:numberCount = 0", "Random:setSeed = on", f"Random:seed = {seed}",
              "Print:quiet = on", "111:onMode = off", "111:onIfMatch = 22 22", *settings):
        if not py.readString(s):
            raise RuntimeError(f"Pythia rejected the setting {s!r}")
    if not py.init():
        raise RuntimeError("Pythia failed to initialise")
    return py


def _p4(prt):
    return [prt.e(), prt.px(), prt.py(), prt.pz()]


def pythia_sample(key, n: int, *, channel: str = "bs", layout=None, z_mm: float | None = None,
                  max_events: int = 10_000_000) -> SignalSample:
    """Signal decays generated by Pythia 8 at 14 TeV with forced decays (needs ``pythia8mc``).

    ``channel="bs"``: HardQCD b-bbar production, B_s (and anti-B_s) forced to J/psi pi0, J/psi to
    mu mu, pi0 to gamma gamma; ``channel="pi0"``: pi0 -> gamma gamma from minimum-bias (SoftQCD)
    events, parents with 2 < eta < 5. Photons go in straight lines from their production vertex to
    the ECAL; pairs with both photons on the active wall are kept (as in the analytic samples).
    """
    if channel not in ("bs", "pi0"):
        raise ValueError(f"channel = {channel!r}: allowed 'bs', 'pi0'")
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n = {n!r}: must be an integer >= 1")
    seed = int(jax.random.randint(key, (), 1, 900_000_000))
    if channel == "bs":
        settings = ("HardQCD:hardbbbar = on", "531:onMode = off", "531:addChannel = 1 1.0 0 443 111",
                    "443:onMode = off", "443:onIfMatch = 13 -13")
        parent_id = 531
    else:
        settings = ("SoftQCD:inelastic = on",)
        parent_id = 111
    py = _pythia(settings, seed)
    z = layout.z_mm if (layout is not None and z_mm is None) else (z_mm or 12620.0)
    parents, jpsis, gammas, vertices = [], [], [], []
    events = 0
    while len(parents) < n and events < max_events:
        if not py.next():
            continue
        events += 1
        ev = py.event
        for i in range(ev.size()):
            prt = ev[i]
            if abs(prt.id()) != parent_id:
                continue
            daughters = [ev[j] for j in prt.daughterList()]
            if channel == "bs":
                pi0 = [d for d in daughters if d.id() == 111]
                jpsi = [d for d in daughters if d.id() == 443]
                if len(pi0) != 1 or len(jpsi) != 1:
                    continue
                photons = [ev[j] for j in pi0[0].daughterList()]
            else:
                pt = prt.pT()
                eta = np.arcsinh(prt.pz() / pt) if pt > 0 else 0.0
                if not 2.0 < eta < 5.0:
                    continue
                photons, jpsi = daughters, None
            if len(photons) != 2 or any(g.id() != 22 for g in photons):
                continue
            parents.append(_p4(prt))
            jpsis.append(_p4(jpsi[0]) if jpsi else [0.0] * 4)
            gammas.append([_p4(g) for g in photons])
            vertices.append([[g.xProd(), g.yProd(), g.zProd()] for g in photons])
            if len(parents) == n:
                break
    if len(parents) < n:
        raise RuntimeError(f"pythia_sample: {len(parents)} decays in {events} events (max_events = {max_events})")
    gam = np.asarray(gammas, dtype=np.float64).reshape(2 * n, 4)
    vtx = np.asarray(vertices, dtype=np.float64).reshape(2 * n, 3)
    tx, ty = gam[:, 1] / gam[:, 3], gam[:, 2] / gam[:, 3]
    x = vtx[:, 0] + tx * (z - vtx[:, 2])
    y = vtx[:, 1] + ty * (z - vtx[:, 2])
    if layout is not None:
        _, status = layout.region_of(jnp.asarray(x), jnp.asarray(y))
        on = (np.asarray(status) == 0) & (gam[:, 3] > 0)
    else:
        on = gam[:, 3] > 0
    accepted = on.reshape(n, 2).all(axis=1)
    keep = np.repeat(accepted, 2)
    photons = Particles.create(energy=gam[keep, 0], x=x[keep], y=y[keep], tx=tx[keep], ty=ty[keep], pid=PHOTON)
    return SignalSample(photons=photons, parent=np.repeat(np.arange(n), 2)[keep], photon_p4=gam[keep],
                        parent_p4=np.asarray(parents), accepted=accepted,
                        jpsi_p4=np.asarray(jpsis) if channel == "bs" else None)
