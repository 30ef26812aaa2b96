"""A detector: a layout with its technologies resolved, as a differentiable pytree.

The geometry (:class:`~diffcalo.layout.Layout`) is static; the per-region technologies (their layer
thicknesses) and cell sizes are pytree leaves, so ``jax.grad`` of anything computed by
:func:`diffcalo.simulate` flows to them.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from diffcalo.layout import Layout
from diffcalo.technologies import Technology, default_registry

__all__ = ["Detector"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Detector:
    """Layout + one :class:`Technology` per region + cell sizes [n_regions] in mm."""

    technologies: tuple[Technology, ...]
    cell_size_mm: jnp.ndarray
    layout: Layout = dataclasses.field(metadata=dict(static=True))

    @classmethod
    def from_layout(cls, layout: Layout, registry=None) -> "Detector":
        """Validate the layout and resolve its technologies from the registry."""
        reg = registry or default_registry()
        layout.validate(reg)
        techs = []
        for r in layout.regions:
            t = reg.get(r.technology)
            if r.sections == 1 and t.n_sections > 1:
                t = dataclasses.replace(t, sections=None)
            techs.append(t)
        return cls(technologies=tuple(techs),
                   cell_size_mm=jnp.asarray([r.cell_size_mm for r in layout.regions], dtype=float),
                   layout=layout)

    @property
    def n_regions(self) -> int:
        return len(self.technologies)

    @property
    def n_sections(self) -> int:
        """Sections of the output clusters: the largest number over the regions."""
        return max(t.n_sections for t in self.technologies)

    def replace_region(self, index: int, *, technology: Technology | None = None,
                       cell_size_mm=None) -> "Detector":
        """A copy with region ``index``'s technology and/or cell size replaced (cell size may be traced).

        Any positive cell size is accepted here, so that cell sizes can be varied continuously in
        gradient studies; :meth:`Layout.validate` enforces the allowed sizes that tile a module.
        """
        self._check_index(index)
        if cell_size_mm is not None and not isinstance(cell_size_mm, jax.core.Tracer):
            v = float(cell_size_mm)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"regions[{index}].cell_size_mm = {v}: must be a positive number of mm")
        if technology is not None:
            technology.validate()
        techs = list(self.technologies)
        if technology is not None:
            techs[index] = technology
        cells = self.cell_size_mm if cell_size_mm is None else self.cell_size_mm.at[index].set(cell_size_mm)
        return dataclasses.replace(self, technologies=tuple(techs), cell_size_mm=cells)

    def with_thickness(self, index: int, *, absorber_mm=None, active_mm=None) -> "Detector":
        """A copy with region ``index``'s absorber and/or active thickness replaced (may be traced;
        concrete values are validated: absorber >= 0, active > 0)."""
        self._check_index(index)
        t = self.technologies[index].with_thickness(absorber_mm=absorber_mm, active_mm=active_mm)
        return self.replace_region(index, technology=t)

    def _check_index(self, index: int) -> None:
        if not (isinstance(index, int) and 0 <= index < self.n_regions):
            names = [r.name for r in self.layout.regions]
            raise IndexError(f"region index {index!r}: the detector has {self.n_regions} regions "
                             f"(0..{self.n_regions - 1}: {names})")

    def sampling_fraction(self):
        """Visible fraction of EM energy per region and output section: [n_regions, n_sections].

        Multiply cluster energies (EM scale) by it to get the energy deposited in the active medium.
        """
        rows = []
        for t in self.technologies:
            sf = t.section_sampling_fraction()
            rows.append(jnp.concatenate([sf, jnp.repeat(sf[-1:], self.n_sections - sf.shape[0])]))
        return jnp.stack(rows)
