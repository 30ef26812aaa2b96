r"""Material constants and the effective-medium rules of a sampling stack.

All constants are PDG values ("Atomic and nuclear properties of materials", pdg.lbl.gov/AtomicNuclearProperties);
lengths in mm, densities in g/cm^3, radiation lengths given both in g/cm^2 (``x0_gcm2``) and in mm
(:attr:`Material.x0_mm`), critical energies in MeV (Rossi definition, electrons), minimum ionisation
``dedx_min`` in MeV cm^2/g.

Mixtures and compounds follow the PDG rules (w_j = mass fractions):

.. math::
    1/X_0 = \sum_j w_j / X_{0,j}, \qquad
    E_c = X_0 \sum_j w_j E_{c,j} / X_{0,j}, \qquad
    1/R_M = \frac{1}{E_s} \sum_j w_j E_{c,j} / X_{0,j}, \qquad Z_{eff} = \sum_j w_j Z_j

The stack functions (:func:`stack_properties`) are written in ``jax.numpy`` so that absorber and
active thicknesses can be differentiated.

References:
    PDG Review of Particle Physics, "Passage of particles through matter" (radiation length,
    critical energy, Moliere radius); G. Grindhammer and S. Peters, hep-ex/0001020 (sampling
    frequency and e/mip of a sampling calorimeter); C. W. Fabjan and F. Gianotti,
    Rev. Mod. Phys. 75 (2003) 1243 (sampling term 2.7 % sqrt(d/f_samp)).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import jax.numpy as jnp

__all__ = [
    "sampling_thickness_factor",
    "SAMPLING_ABSORBER_EXPONENT",
    "SAMPLING_FRACTION_EXPONENT",
    "ES_MEV",
    "HOMOGENEOUS_FS",
    "Material",
    "MATERIALS",
    "get_material",
    "mixture",
    "compound",
    "StackProperties",
    "stack_properties",
]

#: Sampling frequency that marks a homogeneous medium (no passive material): GFlash's sampling
#: corrections, all proportional to 1/F_S or to (1 - e/mip), then vanish.
HOMOGENEOUS_FS = 1e9

#: Scale energy E_s = m_e c^2 sqrt(4 pi / alpha) in MeV (Moliere radius R_M = X0 E_s / E_c).
ES_MEV = 21.2052


@dataclasses.dataclass(frozen=True)
class Material:
    """A homogeneous material (element, compound or mixture treated as one medium).

    Attributes:
        name: short name used by technologies ("Pb", "W", "polystyrene", ...).
        z: atomic number, or mass-weighted Z for compounds and mixtures (GFlash convention).
        a: atomic mass in g/mol (mass-weighted for compounds).
        density: g/cm^3.
        x0_gcm2: radiation length in g/cm^2.
        ec_mev: critical energy for electrons in MeV.
        dedx_min: minimum ionisation loss in MeV cm^2/g.
        sampling_constant: k in the sampling term a = k sqrt(d_active[mm] / f_mip) when this
            material is the active medium (Fabjan-Gianotti: 2.7 % for scintillator and liquid argon).
            ``None`` for materials that are never used as active media.
    """

    name: str
    z: float
    a: float
    density: float
    x0_gcm2: float
    ec_mev: float
    dedx_min: float
    sampling_constant: float | None = None

    @property
    def x0_mm(self) -> float:
        """Radiation length in mm."""
        return 10.0 * self.x0_gcm2 / self.density

    @property
    def moliere_radius_mm(self) -> float:
        """Moliere radius R_M = X0 E_s / E_c in mm."""
        return self.x0_mm * ES_MEV / self.ec_mev

    @property
    def dedx_mev_per_mm(self) -> float:
        """Minimum ionisation loss per mm of material (MeV/mm)."""
        return 0.1 * self.dedx_min * self.density


def _approx_x0_gcm2(z: float, a: float) -> float:
    """Radiation length from the PDG fit 716.4 A / (Z (Z+1) ln(287/sqrt Z)) g/cm^2."""
    return 716.4 * a / (z * (z + 1.0) * math.log(287.0 / math.sqrt(z)))


def _approx_ec_mev(z: float) -> float:
    """Critical energy of solids and liquids, 610 MeV / (Z + 1.24) (PDG)."""
    return 610.0 / (z + 1.24)


def _element(name: str, z: int, a: float, density: float, x0: float | None = None,
             ec: float | None = None, dedx: float = 1.5) -> Material:
    return Material(
        name=name, z=float(z), a=a, density=density,
        x0_gcm2=x0 if x0 is not None else _approx_x0_gcm2(z, a),
        ec_mev=ec if ec is not None else _approx_ec_mev(z),
        dedx_min=dedx,
    )


def mixture(name: str, mass_fractions: Mapping[Material, float], density: float,
            sampling_constant: float | None = None) -> Material:
    """A mixture of materials given by mass fractions (normalised here), with the PDG rules.

    Args:
        name: name of the new material.
        mass_fractions: component material -> mass fraction (any positive weights; normalised).
        density: density of the mixture in g/cm^3.
        sampling_constant: see :class:`Material`.

    Raises:
        ValueError: a non-positive weight or density, or no components.
    """
    if not mass_fractions:
        raise ValueError(f"mixture {name!r}: needs at least one component")
    if density <= 0:
        raise ValueError(f"mixture {name!r}: density = {density} g/cm^3; must be > 0")
    for m, w in mass_fractions.items():
        if not w > 0:
            raise ValueError(f"mixture {name!r}: mass fraction of {m.name} = {w}; must be > 0")
    total = sum(mass_fractions.values())
    w = {m: f / total for m, f in mass_fractions.items()}
    inv_x0 = sum(f / m.x0_gcm2 for m, f in w.items())
    ec_over_x0 = sum(f * m.ec_mev / m.x0_gcm2 for m, f in w.items())
    x0 = 1.0 / inv_x0
    return Material(
        name=name,
        z=sum(f * m.z for m, f in w.items()),
        a=sum(f * m.a for m, f in w.items()),
        density=density,
        x0_gcm2=x0,
        ec_mev=x0 * ec_over_x0,
        dedx_min=sum(f * m.dedx_min for m, f in w.items()),
        sampling_constant=sampling_constant,
    )


def compound(name: str, atoms: Mapping[Material, int], density: float,
             sampling_constant: float | None = None) -> Material:
    """A compound from a chemical formula (element -> number of atoms per molecule)."""
    return mixture(name, {m: n * m.a for m, n in atoms.items()}, density, sampling_constant)


# --- elements (PDG tabulated values where the material is used directly) -------------------------
_H = _element("H", 1, 1.008, 8.376e-5, x0=63.04, ec=344.8, dedx=4.103)
_C = _element("C", 6, 12.011, 2.0, x0=42.70, ec=81.74, dedx=1.742)
_O = _element("O", 8, 15.999, 1.141, x0=34.24, ec=66.0, dedx=1.801)
_AL = _element("Al", 13, 26.98, 2.699, x0=24.01, ec=42.70, dedx=1.615)
_SI = Material("Si", 14.0, 28.0855, 2.329, 21.82, 40.19, 1.664, sampling_constant=0.0407)
_FE = _element("Fe", 26, 55.845, 7.874, x0=13.84, ec=21.68, dedx=1.451)
_CU = _element("Cu", 29, 63.546, 8.960, x0=12.86, ec=19.42, dedx=1.403)
_ZN = _element("Zn", 30, 65.38, 7.133, x0=12.43, ec=18.88, dedx=1.411)
_GA = _element("Ga", 31, 69.723, 5.904, dedx=1.379)
_GD = _element("Gd", 64, 157.25, 7.90, dedx=1.163)
_W = _element("W", 74, 183.84, 19.30, x0=6.76, ec=7.97, dedx=1.145)
_PB = _element("Pb", 82, 207.2, 11.35, x0=6.37, ec=7.43, dedx=1.122)

#: Polystyrene scintillator (C8H8), PDG values; Z = mass-weighted 5.61.
_POLYSTYRENE = Material("polystyrene", 5.61, 11.16, 1.060, 43.79, 93.11, 1.936, sampling_constant=0.027)
#: Dry air (only as gaps in stacks).
_AIR = Material("air", 7.31, 14.6, 1.205e-3, 36.62, 87.92, 1.815)
#: Lead tungstate, PDG: X0 = 8.9 mm, R_M = 19.6 mm, Ec = 9.64 MeV.
_PBWO4 = Material("PbWO4", 68.4, 151.7, 8.28, 7.39, 9.64, 1.229, sampling_constant=0.027)
#: Brass, 70 % Cu / 30 % Zn by mass.
_BRASS = mixture("brass", {_CU: 0.70, _ZN: 0.30}, density=8.53)
#: Gadolinium aluminium gallium garnet Gd3Al2Ga3O12 (GAGG:Ce scintillating crystal fibres).
_GAGG = compound("GAGG", {_GD: 3, _AL: 2, _GA: 3, _O: 12}, density=6.63, sampling_constant=0.027)

#: Sampling constant of silicon sensors: fixed on the CALICE Si-W physics prototype
#: (16.5 %/sqrt(E) with 0.525 mm Si and, where the energy is deposited, 2.8 mm W;
#: NIM A 608 (2009) 372): 0.165 / sqrt(0.525 / 0.0318) = 0.0407. Independent of the LUXE
#: Geant4 reference used for validation.

MATERIALS: dict[str, Material] = {
    m.name: m
    for m in (_PB, _W, _FE, _CU, _ZN, _AL, _SI, _C, _O, _H, _GA, _GD,
              _POLYSTYRENE, _AIR, _PBWO4, _BRASS, _GAGG)
}
MATERIALS["steel"] = dataclasses.replace(_FE, name="steel")
MATERIALS["scintillator"] = dataclasses.replace(_POLYSTYRENE, name="scintillator")


def get_material(name: str) -> Material:
    """Look a material up by name; the error lists the known names."""
    try:
        return MATERIALS[name]
    except KeyError:
        raise KeyError(
            f"unknown material {name!r}; known materials: {', '.join(sorted(MATERIALS))}"
        ) from None


@dataclasses.dataclass(frozen=True)
class StackProperties:
    """Effective properties of a sampling stack (jnp scalars, differentiable in the thicknesses).

    Attributes:
        x0_mm: effective radiation length in mm.
        moliere_radius_mm: effective Moliere radius in mm.
        ec_mev: effective critical energy in MeV.
        z_eff: mass-weighted atomic number.
        sampling_frequency: F_S = X0_eff / (d_p + d_a) (mean pitch).
        e_over_mip: GFlash e/mip, 1 / (1 + 0.007 (Z_passive - Z_active)).
        mip_fraction: mip sampling fraction of the active medium (energy-loss weighted).
        sampling_fraction: visible fraction of an EM shower's energy, e/mip * mip_fraction.
        sampling_term: stochastic term a (in sqrt(GeV)) from k sqrt(d_active / f_mip).
        density: mean density in g/cm^3.
    """

    x0_mm: jnp.ndarray
    moliere_radius_mm: jnp.ndarray
    ec_mev: jnp.ndarray
    z_eff: jnp.ndarray
    sampling_frequency: jnp.ndarray
    e_over_mip: jnp.ndarray
    mip_fraction: jnp.ndarray
    sampling_fraction: jnp.ndarray
    sampling_term: jnp.ndarray
    density: jnp.ndarray


#: Exponents of :func:`sampling_thickness_factor`, fitted to Geant4 (``studies/sampling_term_geant4``:
#: 20 Pb / polystyrene stacks, 0.5-4 mm Pb x 0.5-8 mm scintillator, photons of 2 and 8 GeV; within
#: 0.94-1.11 of Geant4 on them and 0.93-1.04 on 4 held-out W / polystyrene stacks).
SAMPLING_ABSORBER_EXPONENT = 0.395
SAMPLING_FRACTION_EXPONENT = 0.301


def sampling_thickness_factor(absorber_x0_per_layer, mip_fraction):
    r"""How the sampling term of a stack varies with its layer thicknesses, up to a constant:

    .. math:: a \propto t_p^{\alpha} \left(\frac{1 - f_{mip}}{f_{mip}}\right)^{\gamma},

    t_p the absorber per layer in radiation lengths, f_mip the minimum-ionising sampling fraction,
    alpha = :data:`SAMPLING_ABSORBER_EXPONENT`, gamma = :data:`SAMPLING_FRACTION_EXPONENT`, measured with
    Geant4. The PDG form k sqrt(d_active / f_mip) (the absolute scale of :func:`stack_properties`) grows
    with the active thickness at a fixed absorber; Geant4 says the opposite (a thicker scintillator
    samples more of the shower: 2 mm Pb with 0.5 mm scintillator gives a = 0.13, with 8 mm 0.058), and
    the PDG form misses it by factors 0.46-2.8 over that grid. Technologies use this factor as a ratio
    to the stack they were calibrated for (:meth:`~diffcalo.technologies.Technology.with_thickness`), so
    a calibrated stack keeps its sampling term. Differentiable (jnp)."""
    f = jnp.clip(mip_fraction, 1e-6, 1 - 1e-6)
    return jnp.asarray(absorber_x0_per_layer) ** SAMPLING_ABSORBER_EXPONENT * ((1 - f) / f) ** SAMPLING_FRACTION_EXPONENT


def stack_properties(passive: Sequence[tuple[Material, jnp.ndarray]],
                     active: Sequence[tuple[Material, jnp.ndarray]],
                     n_layers: int = 1) -> StackProperties:
    r"""Effective medium of a sampling stack from its pieces (GFlash rules, hep-ex/0001020).

    Each piece is ``(material, thickness_mm)``, the thickness summed over the ``n_layers`` layers
    the effective medium describes (for a periodic stack: one period and ``n_layers=1``, or the
    whole stack and its layer count). ``passive`` holds absorbers and gaps, ``active`` the
    sensitive media. Thicknesses may be traced jnp values: everything here is differentiable.

    .. math::
        F_S = X_{0,eff} / (d_p + d_a), \qquad
        \hat e = 1 / (1 + 0.007 (Z_{pas} - Z_{act})), \qquad
        a = k \sqrt{d_a / f_{mip}}

    with Z_pas, Z_act the mass-weighted Z of each group, d per layer, f_mip the minimum-ionising
    sampling fraction and k the active medium's :attr:`Material.sampling_constant`.

    Returns:
        :class:`StackProperties`.
    """
    if not active:
        raise ValueError("stack_properties: the stack has no active medium")
    pieces = list(passive) + list(active)
    mass = [m.density * jnp.asarray(t) for m, t in pieces]
    total_mass = sum(mass)
    total_t = sum(jnp.asarray(t) for _, t in pieces)
    w = [mj / total_mass for mj in mass]
    inv_x0 = sum(wj / m.x0_gcm2 for wj, (m, _) in zip(w, pieces))
    ec_over_x0 = sum(wj * m.ec_mev / m.x0_gcm2 for wj, (m, _) in zip(w, pieces))
    x0_gcm2 = 1.0 / inv_x0
    density = total_mass / total_t
    x0_mm = 10.0 * x0_gcm2 / density

    def mean_z(group):
        masses = [m.density * jnp.asarray(t) for m, t in group]
        total = sum(masses)
        return sum(mj * m.z for mj, (m, _) in zip(masses, group)) / jnp.where(total > 0, total, 1.0), total

    act_loss = sum(m.dedx_min * m.density * jnp.asarray(t) for m, t in active)
    pas_loss = sum(m.dedx_min * m.density * jnp.asarray(t) for m, t in passive) if passive else 0.0
    mip_fraction = act_loss / (act_loss + pas_loss)
    z_act, _ = mean_z(active)
    if passive:
        z_pas, pas_mass = mean_z(passive)
        sampling = pas_mass > 0
    else:
        z_pas, sampling = z_act, jnp.asarray(False)
    # A stack without passive material is homogeneous: e/mip = 1 and no sampling corrections
    # (F_S -> infinity, represented by HOMOGENEOUS_FS).
    e_over_mip = jnp.where(sampling, 1.0 / (1.0 + 0.007 * (z_pas - z_act)), 1.0)
    k = active[0][0].sampling_constant
    if k is None:
        raise ValueError(f"stack_properties: {active[0][0].name} has no sampling constant; "
                         "it cannot be the active medium")
    active_per_layer = sum(jnp.asarray(t) for _, t in active) / n_layers
    return StackProperties(
        x0_mm=x0_mm,
        moliere_radius_mm=10.0 * ES_MEV / ec_over_x0 / density,
        ec_mev=x0_gcm2 * ec_over_x0,
        z_eff=sum(wj * m.z for wj, (m, _) in zip(w, pieces)),
        sampling_frequency=jnp.where(sampling, x0_mm / (total_t / n_layers), HOMOGENEOUS_FS),
        e_over_mip=jnp.asarray(e_over_mip),
        mip_fraction=mip_fraction,
        sampling_fraction=e_over_mip * mip_fraction,
        sampling_term=k * jnp.sqrt(active_per_layer / mip_fraction),
        density=density,
    )
