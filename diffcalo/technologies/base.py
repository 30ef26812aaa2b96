r"""The module-technology contract.

A technology is data: a stack of layer blocks (absorber and active material with thicknesses in mm),
a longitudinal readout segmentation, the allowed cell sizes, readout properties (photo-statistics,
noise, constant term, timing) and a cost. It is a frozen dataclass registered as a JAX pytree whose
leaves are the continuous, differentiable numbers (thicknesses); names and counts are static.

Two methods may be overridden by a plugin:

* :meth:`Technology.effective_medium` — the effective shower medium and sampling properties
  (default: the GFlash mixture rules of :func:`diffcalo.materials.stack_properties`);
* :meth:`Technology.layer_depths` — layer boundaries in radiation lengths and in mm
  (default: cumulative layer thicknesses, each layer in its own materials' X0).

Everything else (batching over particles, cell integrals, fluctuations) is done by the simulator.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from diffcalo.materials import StackProperties, get_material, sampling_thickness_factor, stack_properties
from diffcalo.technologies.calibration import Calibration

__all__ = ["Block", "Technology", "validate_cell_size"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Block:
    """``count`` identical layers of ``absorber_mm`` of absorber followed by ``active_mm`` of active.

    ``gap_mm`` of air (or glue, support) per layer is counted as passive material. Thicknesses are
    pytree leaves (differentiable); materials and the count are static.
    """

    absorber_mm: Any
    active_mm: Any
    absorber: str = dataclasses.field(default="Pb", metadata=dict(static=True))
    active: str = dataclasses.field(default="polystyrene", metadata=dict(static=True))
    count: int = dataclasses.field(default=1, metadata=dict(static=True))
    gap_mm: float = dataclasses.field(default=0.0, metadata=dict(static=True))


def validate_cell_size(cell_size_mm: float, module_mm: float, allowed: tuple[float, ...],
                       where: str) -> None:
    """Raise a ValueError unless the cell size is allowed and tiles the module.

    Args:
        cell_size_mm: requested cell size in mm.
        module_mm: module size in mm.
        allowed: the technology's allowed cell sizes in mm (empty: any size that tiles the module).
        where: name of the field for the message (e.g. ``"layout.regions[2].cell_size_mm"``).
    """
    if not (isinstance(cell_size_mm, (int, float)) and math.isfinite(cell_size_mm) and cell_size_mm > 0):
        raise ValueError(f"{where} = {cell_size_mm!r}: must be a positive number of mm")
    n = module_mm / cell_size_mm
    tiles = abs(n - round(n)) < 1e-6 * max(1.0, n)
    if allowed:
        if not any(abs(cell_size_mm - a) < 1e-6 for a in allowed):
            raise ValueError(
                f"{where} = {cell_size_mm} mm: not allowed for this technology; allowed: "
                + ", ".join(f"{a:g}" for a in allowed))
    if not tiles:
        divisors = [module_mm / k for k in range(1, 13)]
        raise ValueError(
            f"{where} = {cell_size_mm} mm: must divide the module size {module_mm:g} mm; "
            "allowed: " + ", ".join(f"{d:g}" for d in divisors))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Technology:
    r"""A calorimeter module technology.

    Attributes:
        name: registry name, e.g. ``"shashlik"``.
        stack: the layer blocks, front to back.
        sections: number of layers in each longitudinal readout section, front to back; must sum
            to the number of layers. ``None`` = one section.
        cell_sizes_mm: allowed cell sizes in mm (each must divide ``module_mm``).
        module_mm: transverse module size in mm.
        light_yield_pe_per_gev: photo-electrons per GeV of (EM-scale) deposited energy; 0 = no
            photo-statistics term. It belongs to the stack as defined: a copy with other thicknesses
            (:meth:`with_thickness`) scales it with the sampling fraction (the light comes from the
            energy deposited in the active medium), :meth:`photoelectrons_per_gev`.
        noise_gev: electronic noise per channel in GeV (EM scale).
        constant_term: relative constant term b of sigma/E (per shower).
        sampling_term: stochastic sampling term a in sqrt(GeV); ``None`` = from the stack with
            a = k sqrt(d_active / f_mip) (Fabjan-Gianotti). Set it for fibre (SpaCal) modules. Either
            belongs to the stack as defined (and calibrated): a copy with other thicknesses
            (:meth:`with_thickness`) scales it by :func:`sampling_thickness_factor`, the dependence
            measured with Geant4 (``studies/sampling_term_geant4``).
        time_stochastic_ns: A in sigma_t = A / sqrt(E/GeV) (+) B, in ns.
        time_constant_ns: B in ns.
        threshold_gev: zero-suppression threshold per channel in realistic mode (GeV).
        cost_per_module: cost of one module (kCHF; illustrative values for the built-ins).
        cost_per_channel: cost of one readout channel (kCHF).
        description: one line for listings.
        label: display name for tables and figures (e.g. ``"SpaCal-Pb"``); empty: ``name``.
        calibration: the :class:`~diffcalo.technologies.calibration.Calibration` tuning the parametric
            model to Geant4 (None: the model as published). The registry gives the built-ins their
            shipped calibration.
    """

    stack: tuple[Block, ...]
    name: str = dataclasses.field(metadata=dict(static=True))
    sections: tuple[int, ...] | None = dataclasses.field(default=None, metadata=dict(static=True))
    cell_sizes_mm: tuple[float, ...] = dataclasses.field(default=(), metadata=dict(static=True))
    module_mm: float = dataclasses.field(default=121.2, metadata=dict(static=True))
    light_yield_pe_per_gev: float = dataclasses.field(default=0.0, metadata=dict(static=True))
    #: The sampling fraction of the stack ``light_yield_pe_per_gev`` was given for (set by
    #: :meth:`with_thickness`; None: this stack's own).
    light_yield_sampling_fraction: float | None = dataclasses.field(default=None, metadata=dict(static=True))
    #: (absorber per layer in X0, f_mip, sampling term before calibration) of the stack the sampling term
    #: was given / calibrated for (set by :meth:`with_thickness`; None: this stack's own).
    sampling_reference: tuple[float, float, float] | None = dataclasses.field(default=None, metadata=dict(static=True))
    noise_gev: float = dataclasses.field(default=0.0, metadata=dict(static=True))
    constant_term: float = dataclasses.field(default=0.0, metadata=dict(static=True))
    sampling_term: float | None = dataclasses.field(default=None, metadata=dict(static=True))
    time_stochastic_ns: float = dataclasses.field(default=0.0, metadata=dict(static=True))
    time_constant_ns: float = dataclasses.field(default=0.0, metadata=dict(static=True))
    threshold_gev: float = dataclasses.field(default=0.0, metadata=dict(static=True))
    cost_per_module: float = dataclasses.field(default=0.0, metadata=dict(static=True))
    cost_per_channel: float = dataclasses.field(default=0.0, metadata=dict(static=True))
    description: str = dataclasses.field(default="", metadata=dict(static=True))
    label: str = dataclasses.field(default="", metadata=dict(static=True))
    calibration: Calibration | None = dataclasses.field(default=None, metadata=dict(static=True))

    # ---- static structure --------------------------------------------------------------------
    @property
    def display_name(self) -> str:
        """The name for readers: ``label``, or the registry name when no label is set."""
        return self.label or self.name

    @property
    def n_layers(self) -> int:
        """Number of layers in the stack."""
        return sum(b.count for b in self.stack)

    @property
    def section_layers(self) -> tuple[int, ...]:
        """Layers per readout section (front to back)."""
        return self.sections if self.sections is not None else (self.n_layers,)

    @property
    def n_sections(self) -> int:
        """Number of longitudinal readout sections."""
        return len(self.section_layers)

    def validate(self) -> "Technology":
        """Check the description; raise ValueError naming the field. Returns ``self``."""
        where = f"technology {self.name!r}"
        if not self.stack:
            raise ValueError(f"{where}: stack is empty; give at least one Block")
        for i, b in enumerate(self.stack):
            for field in ("absorber", "active"):
                try:
                    get_material(getattr(b, field))
                except KeyError as e:
                    raise ValueError(f"{where}: stack[{i}].{field}: {e.args[0]}") from None
            if get_material(b.active).sampling_constant is None:
                raise ValueError(f"{where}: stack[{i}].active = {b.active!r} cannot be an active medium")
            if not (isinstance(b.count, int) and b.count >= 1):
                raise ValueError(f"{where}: stack[{i}].count = {b.count!r}: must be an integer >= 1")
            for field in ("absorber_mm", "active_mm"):
                v = getattr(b, field)
                if _concrete(v) and not (math.isfinite(float(v)) and float(v) >= 0):
                    raise ValueError(f"{where}: stack[{i}].{field} = {float(v)} mm: must be >= 0 and finite")
            if _concrete(b.active_mm) and not float(b.active_mm) > 0:
                raise ValueError(f"{where}: stack[{i}].active_mm = {float(b.active_mm)} mm: must be > 0")
            if b.gap_mm < 0:
                raise ValueError(f"{where}: stack[{i}].gap_mm = {b.gap_mm} mm: must be >= 0")
        if self.sections is not None:
            if any((not isinstance(s, int)) or s < 1 for s in self.sections) or sum(self.sections) != self.n_layers:
                raise ValueError(
                    f"{where}: sections = {self.sections}: must be positive layer counts summing to "
                    f"the {self.n_layers} layers of the stack")
        if self.module_mm <= 0:
            raise ValueError(f"{where}: module_mm = {self.module_mm}: must be > 0")
        for c in self.cell_sizes_mm:
            validate_cell_size(c, self.module_mm, (), f"{where}: cell_sizes_mm entry")
        if self.light_yield_sampling_fraction is not None and not (
                math.isfinite(self.light_yield_sampling_fraction) and self.light_yield_sampling_fraction > 0):
            raise ValueError(f"{where}: light_yield_sampling_fraction = {self.light_yield_sampling_fraction}: must be "
                             "> 0 or None")
        for field in ("light_yield_pe_per_gev", "noise_gev", "constant_term", "time_stochastic_ns",
                      "time_constant_ns", "threshold_gev", "cost_per_module", "cost_per_channel"):
            v = getattr(self, field)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{where}: {field} = {v}: must be >= 0 and finite")
        if self.sampling_term is not None and not (math.isfinite(self.sampling_term) and self.sampling_term >= 0):
            raise ValueError(f"{where}: sampling_term = {self.sampling_term}: must be >= 0 or None")
        if self.calibration is not None:
            if not isinstance(self.calibration, Calibration):
                raise ValueError(f"{where}: calibration = {self.calibration!r}: must be a diffcalo Calibration or None")
            self.calibration.validate(f"{where}: calibration")
        return self

    @property
    def calibrated(self) -> Calibration:
        """The calibration in force (the identity when there is none)."""
        return self.calibration if self.calibration is not None else Calibration()

    # ---- differentiable physics (overridable) -----------------------------------------------------
    def _layer_arrays(self):
        """Per-layer absorber and active thicknesses (mm), jnp arrays of length n_layers."""
        absorber = jnp.concatenate([jnp.broadcast_to(jnp.asarray(b.absorber_mm, dtype=float), (b.count,))
                                    for b in self.stack])
        active = jnp.concatenate([jnp.broadcast_to(jnp.asarray(b.active_mm, dtype=float), (b.count,))
                                  for b in self.stack])
        return absorber, active

    def effective_medium(self) -> StackProperties:
        """Effective shower medium of the whole stack (GFlash mixture rules)."""
        passive: dict[str, Any] = {}
        active: dict[str, Any] = {}
        for b in self.stack:
            passive[b.absorber] = passive.get(b.absorber, 0.0) + b.count * jnp.asarray(b.absorber_mm)
            if b.gap_mm:
                passive["air"] = passive.get("air", 0.0) + b.count * b.gap_mm
            active[b.active] = active.get(b.active, 0.0) + b.count * jnp.asarray(b.active_mm)
        props = stack_properties([(get_material(k), v) for k, v in passive.items()],
                                 [(get_material(k), v) for k, v in active.items()],
                                 n_layers=self.n_layers)
        if self.sampling_term is not None:
            props = dataclasses.replace(props, sampling_term=jnp.asarray(self.sampling_term))
        if self.sampling_reference is not None:
            t_ref, f_ref, a_ref = self.sampling_reference
            factor = sampling_thickness_factor(self._absorber_x0_per_layer(), props.mip_fraction) / \
                sampling_thickness_factor(t_ref, f_ref)
            props = dataclasses.replace(props, sampling_term=a_ref * factor)
        cal = self.calibrated
        if cal.sampling_fraction_scale != 1.0 or cal.sampling_term_scale != 1.0:
            props = dataclasses.replace(props, sampling_fraction=props.sampling_fraction * cal.sampling_fraction_scale,
                                        sampling_term=props.sampling_term * cal.sampling_term_scale)
        return props

    def _absorber_x0_per_layer(self):
        """Passive material per layer in radiation lengths (absorber and gaps, averaged over the layers)."""
        t = sum(b.count * (jnp.asarray(b.absorber_mm) / get_material(b.absorber).x0_mm
                           + b.gap_mm / get_material("air").x0_mm) for b in self.stack)
        return t / self.n_layers

    def layer_depths(self):
        """Cumulative layer boundaries: (t_edges [n_layers+1] in X0, z_edges [n_layers+1] in mm).

        Each layer's depth in radiation lengths uses its own materials, so non-uniform stacks
        (the steel/brass toy) are placed correctly; the effective medium then sets the shower shape.
        """
        ts, zs = [], []
        for b in self.stack:
            absm, actm = get_material(b.absorber), get_material(b.active)
            t_layer = jnp.asarray(b.absorber_mm) / absm.x0_mm + jnp.asarray(b.active_mm) / actm.x0_mm \
                + b.gap_mm / get_material("air").x0_mm
            z_layer = jnp.asarray(b.absorber_mm) + jnp.asarray(b.active_mm) + b.gap_mm
            ts.append(jnp.broadcast_to(t_layer, (b.count,)))
            zs.append(jnp.broadcast_to(z_layer, (b.count,)))
        t = jnp.concatenate([jnp.zeros(1), jnp.cumsum(jnp.concatenate(ts))])
        z = jnp.concatenate([jnp.zeros(1), jnp.cumsum(jnp.concatenate(zs))])
        return t, z

    def layer_sampling_fraction(self):
        """Visible (active) fraction of EM shower energy per layer, e/mip * f_mip: [n_layers]."""
        out = []
        for b in self.stack:
            passive = [(get_material(b.absorber), jnp.asarray(b.absorber_mm))]
            if b.gap_mm:
                passive.append((get_material("air"), b.gap_mm))
            p = stack_properties(passive, [(get_material(b.active), jnp.asarray(b.active_mm))])
            out.append(jnp.broadcast_to(p.sampling_fraction, (b.count,)))
        return jnp.concatenate(out) * self.calibrated.sampling_fraction_scale

    def section_sampling_fraction(self):
        """Visible fraction of EM energy per readout section (the mean of its layers'): [n_sections].
        The EM scale of every backend: cell energy = deposit in the active medium / this."""
        sf = self.layer_sampling_fraction()
        edges = self.section_layer_edges()
        return jnp.stack([jnp.mean(sf[a:b]) for a, b in zip(edges[:-1], edges[1:])])

    def mip_response(self):
        r"""What a minimum-ionising particle crossing the stack at normal incidence reads, per
        section (EM-scale GeV: energy lost in all materials / (e/mip)), and the probability that a
        hadron interacts in the stack, 1 - exp(-sum rho t / lambda_I) with the rule of thumb
        lambda_I = 35 A^(1/3) g/cm^2 per material.

        Returns:
            (mip_gev [n_sections], interaction_probability scalar), differentiable in thicknesses.
        """
        props = self.effective_medium()
        per_layer, grammage_over_lambda = [], 0.0
        for b in self.stack:
            pieces = [(get_material(b.absorber), jnp.asarray(b.absorber_mm)), (get_material(b.active), jnp.asarray(b.active_mm))]
            if b.gap_mm:
                pieces.append((get_material("air"), jnp.asarray(b.gap_mm)))
            loss = sum(m.dedx_min * m.density * 0.1 * t for m, t in pieces)              # MeV per layer
            per_layer.append(jnp.broadcast_to(loss, (b.count,)))
            grammage_over_lambda = grammage_over_lambda + b.count * sum(
                m.density * 0.1 * t / (35.0 * m.a ** (1.0 / 3.0)) for m, t in pieces)
        loss = jnp.concatenate(per_layer) / 1000.0 / props.e_over_mip
        edges = self.section_layer_edges()
        mip = jnp.stack([jnp.sum(loss[a:b]) for a, b in zip(edges[:-1], edges[1:])])
        return mip, 1.0 - jnp.exp(-grammage_over_lambda)

    def section_layer_edges(self) -> tuple[int, ...]:
        """Layer index at which each section starts, plus n_layers at the end."""
        edges = [0]
        for n in self.section_layers:
            edges.append(edges[-1] + n)
        return tuple(edges)

    # ---- design helpers -----------------------------------------------------------------------
    def with_thickness(self, *, absorber_mm=None, active_mm=None) -> "Technology":
        """A copy with every block's absorber and/or active thickness replaced (may be traced). Its
        photo-electron yield per GeV follows the sampling fraction (:meth:`photoelectrons_per_gev`)."""
        blocks = tuple(
            dataclasses.replace(
                b,
                absorber_mm=b.absorber_mm if absorber_mm is None else absorber_mm,
                active_mm=b.active_mm if active_mm is None else active_mm,
            )
            for b in self.stack
        )
        ref = self.light_yield_sampling_fraction
        sref = self.sampling_reference
        with jax.ensure_compile_time_eval():              # this (concrete) stack's own, also inside a jit trace
            if ref is None and self.light_yield_pe_per_gev > 0:
                ref = float(jnp.mean(self.layer_sampling_fraction()))
            if sref is None and self._absorber_x0_per_layer() > 0:
                props = self.effective_medium()
                sref = (float(self._absorber_x0_per_layer()), float(props.mip_fraction),
                        float(props.sampling_term) / self.calibrated.sampling_term_scale)
        return dataclasses.replace(self, stack=blocks, light_yield_sampling_fraction=ref, sampling_reference=sref)

    def photoelectrons_per_gev(self):
        """Photo-electrons per GeV of EM-scale energy of this stack: ``light_yield_pe_per_gev`` times the
        ratio of this stack's mean sampling fraction to that of the stack it was given for (a thinner
        scintillator sees less of the shower, so fewer photo-electrons per GeV). May be traced."""
        if self.light_yield_sampling_fraction is None or self.light_yield_pe_per_gev <= 0:
            return jnp.asarray(float(self.light_yield_pe_per_gev))
        return self.light_yield_pe_per_gev * jnp.mean(self.layer_sampling_fraction()) / self.light_yield_sampling_fraction

    def depth_mm(self) -> float:
        """Total depth of the stack in mm (concrete thicknesses only)."""
        return float(self.layer_depths()[1][-1])

    def summary(self) -> dict[str, float]:
        """Plain-float summary of the effective medium, for listings and reports."""
        p = self.effective_medium()
        t, z = self.layer_depths()
        return dict(
            n_layers=self.n_layers, n_sections=self.n_sections, depth_mm=float(z[-1]),
            depth_x0=float(t[-1]), x0_mm=float(p.x0_mm), moliere_radius_mm=float(p.moliere_radius_mm),
            ec_mev=float(p.ec_mev), z_eff=float(p.z_eff), sampling_fraction=float(p.sampling_fraction),
            sampling_term=float(p.sampling_term),
        )


def _concrete(v) -> bool:
    return not isinstance(v, jax.core.Tracer)
