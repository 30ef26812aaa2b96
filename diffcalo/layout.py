"""The ECAL wall: a grid of square modules, nested rectangular regions and a beam hole.

Coordinates: the wall is centred on the beam at (0, 0), x horizontal, y vertical, in mm. Regions
are rectangles of whole modules centred on the beam, listed from the innermost to the outermost;
a point belongs to the innermost region whose rectangle contains it. The outermost region's
rectangle is the whole wall. Cells tile each module (cell size = module size / n); the cell grid of
a region starts at the wall's lower-left corner, so cell edges line up with module edges.

Presets: :func:`lhcb_current`, :func:`lhcb_upgrade2_baseline`, :func:`luxe`, :func:`toy`.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from diffcalo.checks import is_int, is_number

__all__ = ["cell_size_label", "Region", "Layout", "lhcb_current", "lhcb_upgrade2_baseline", "luxe", "toy", "PRESETS",
           "preset", "STATUS_OK", "STATUS_BEAM_HOLE", "STATUS_OUTSIDE"]

STATUS_OK = 0
STATUS_BEAM_HOLE = 1
STATUS_OUTSIDE = 2


def cell_size_label(cell_mm: float) -> str:
    """A cell size (mm) in cm as physicists name it, without the unit: 60.6 mm -> "6", 15.15 mm -> "1.5",
    24.24 mm -> "2.4"."""
    cm = cell_mm / 10.0
    if round(cm) >= 1 and abs(cm - round(cm)) <= 0.03 * cm:
        return f"{round(cm):d}"
    return f"{cm:.2g}"


@dataclasses.dataclass(frozen=True)
class Region:
    """One region of the wall.

    Attributes:
        name: label ("inner", "middle", ...).
        technology: registered technology name.
        cell_size_mm: cell size; must be allowed by the technology and divide the module size.
        modules_x, modules_y: the region's outer rectangle in modules, centred on the beam.
        sections: longitudinal readout sections: ``None`` = the technology's own segmentation,
            ``1`` = read the whole depth as one section (no split).
    """

    name: str
    technology: str
    cell_size_mm: float
    modules_x: int
    modules_y: int
    sections: int | None = None


#: Geometry bounds (a wall of 1 km or 10 000 modules a side is a typo, and overflows the simulator).
MAX_Z_MM = 1e6
MAX_MODULE_MM = 1e4
MAX_MODULES = 10_000


def _check_types(layout, where: str) -> None:
    """Types and finiteness of every field (before any arithmetic on them): ValueError naming the field."""
    if not isinstance(layout.name, str):
        raise ValueError(f"layout.name = {layout.name!r}: must be a string")
    if not is_number(layout.module_mm):
        raise ValueError(f"{where}: module_mm = {layout.module_mm!r}: must be a finite number > 0 (mm)")
    for k in ("modules_x", "modules_y"):
        if not is_int(getattr(layout, k)):
            raise ValueError(f"{where}: {k} = {getattr(layout, k)!r}: must be an integer >= 1")
    hole = layout.beam_hole
    if not (isinstance(hole, (tuple, list)) and len(hole) == 2 and all(is_int(v) and v >= 0 for v in hole)):
        raise ValueError(f"{where}: beam_hole = {hole!r}: must be [modules_x, modules_y], integers >= 0")
    if not (is_number(layout.z_mm) and 0 <= layout.z_mm <= MAX_Z_MM):
        raise ValueError(f"{where}: z_mm = {layout.z_mm!r}: must be a finite number in [0, {MAX_Z_MM:g}] (mm from "
                         "the interaction point; 0 for a test beam at normal incidence)")
    if layout.module_mm > MAX_MODULE_MM or max(layout.modules_x, layout.modules_y) > MAX_MODULES:
        raise ValueError(f"{where}: {layout.modules_x} x {layout.modules_y} modules of {layout.module_mm:g} mm: at most "
                         f"{MAX_MODULES} modules a side of at most {MAX_MODULE_MM:g} mm")
    if not isinstance(layout.regions, (tuple, list)) or not all(isinstance(r, Region) for r in layout.regions):
        raise ValueError(f"{where}: regions must be a list of Region")
    for i, r in enumerate(layout.regions):
        f = f"{where}: regions[{i}]"
        for k in ("name", "technology"):
            if not isinstance(getattr(r, k), str):
                raise ValueError(f"{f}.{k} = {getattr(r, k)!r}: must be a string")
        if not (is_number(r.cell_size_mm) and r.cell_size_mm > 0):
            raise ValueError(f"{f}.cell_size_mm = {r.cell_size_mm!r}: must be a finite number > 0 (mm)")
        for k in ("modules_x", "modules_y"):
            if not (is_int(getattr(r, k)) and getattr(r, k) >= 1):
                raise ValueError(f"{f}.{k} = {getattr(r, k)!r}: must be an integer >= 1")
        if r.sections is not None and not is_int(r.sections):
            raise ValueError(f"{f}.sections = {r.sections!r}: must be an integer (1 or the technology's sections)")


@dataclasses.dataclass(frozen=True)
class Layout:
    """A wall of ``modules_x`` x ``modules_y`` modules of ``module_mm`` with nested regions.

    Attributes:
        name: label.
        module_mm: module size in mm.
        modules_x, modules_y: wall size in modules.
        regions: innermost first; the last one covers the whole wall.
        beam_hole: (modules_x, modules_y) of the central hole, or (0, 0).
        z_mm: distance of the wall's front face from the interaction point (mm).
    """

    name: str
    module_mm: float
    modules_x: int
    modules_y: int
    regions: tuple[Region, ...]
    beam_hole: tuple[int, int] = (0, 0)
    z_mm: float = 12620.0

    # ---- validation -----------------------------------------------------------------------------
    def validate(self, registry=None) -> "Layout":
        """Check geometry and technologies; raise ValueError naming the field. Returns ``self``."""
        from diffcalo.technologies import default_registry, validate_cell_size

        reg = registry or default_registry()
        where = f"layout {self.name!r}"
        _check_types(self, where)
        if not (self.module_mm > 0 and math.isfinite(self.module_mm)):
            raise ValueError(f"{where}: module_mm = {self.module_mm}: must be > 0")
        if self.modules_x < 1 or self.modules_y < 1:
            raise ValueError(f"{where}: wall of {self.modules_x} x {self.modules_y} modules: both must be >= 1")
        if not self.regions:
            raise ValueError(f"{where}: regions is empty; give at least one region")
        last = self.regions[-1]
        if (last.modules_x, last.modules_y) != (self.modules_x, self.modules_y):
            raise ValueError(
                f"{where}: regions[{len(self.regions) - 1}] ({last.name!r}) is {last.modules_x} x "
                f"{last.modules_y} modules; the outermost region must cover the whole wall "
                f"({self.modules_x} x {self.modules_y})")
        prev = self.beam_hole
        for i, r in enumerate(self.regions):
            f = f"{where}: regions[{i}] ({r.name!r})"
            if r.technology not in reg:
                raise ValueError(f"{f}.technology = {r.technology!r}: unknown; available: "
                                 + ", ".join(reg.available()))
            tech = reg.get(r.technology)
            if abs(tech.module_mm - self.module_mm) > 1e-6:
                raise ValueError(f"{f}.technology = {r.technology!r} has {tech.module_mm:g} mm modules; "
                                 f"the wall has {self.module_mm:g} mm modules")
            validate_cell_size(r.cell_size_mm, self.module_mm, tech.cell_sizes_mm, f"{f}.cell_size_mm")
            if r.modules_x < prev[0] or r.modules_y < prev[1] or (r.modules_x, r.modules_y) == tuple(prev):
                raise ValueError(f"{f}: {r.modules_x} x {r.modules_y} modules must enclose the region "
                                 f"inside it ({prev[0]} x {prev[1]})")
            if prev != (0, 0) and ((r.modules_x - prev[0]) % 2 or (r.modules_y - prev[1]) % 2):
                raise ValueError(f"{f}: {r.modules_x} x {r.modules_y} modules: the difference to the "
                                 f"inner rectangle ({prev[0]} x {prev[1]}) must be even so that "
                                 "regions are centred on whole modules")
            if r.sections is not None and r.sections not in (1, tech.n_sections):
                raise ValueError(f"{f}.sections = {r.sections}: allowed 1 (no split) or "
                                 f"{tech.n_sections} (the technology's segmentation)")
            prev = (r.modules_x, r.modules_y)
        return self

    # ---- geometry --------------------------------------------------------------------------------
    @property
    def width_mm(self) -> float:
        return self.modules_x * self.module_mm

    @property
    def height_mm(self) -> float:
        return self.modules_y * self.module_mm

    @property
    def beam_hole_half_mm(self) -> tuple[float, float]:
        """Half sizes (x, y) of the beam hole in mm ((0, 0) without a hole)."""
        bx, by = self.beam_hole
        if bx <= 0 or by <= 0:
            return (0.0, 0.0)
        return (0.5 * bx * self.module_mm, 0.5 * by * self.module_mm)

    @property
    def origin_mm(self) -> tuple[float, float]:
        """Lower-left corner of the wall."""
        return (-0.5 * self.width_mm, -0.5 * self.height_mm)

    def region_of(self, x, y):
        """Region index and status of points (jnp, traceable).

        Returns:
            (region [n] int32 with -1 for the beam hole and -2 outside the wall, status [n] int32).
        """
        ax, ay = jnp.abs(x), jnp.abs(y)
        half = 0.5 * self.module_mm
        region = jnp.full(jnp.shape(x), -2, dtype=jnp.int32)
        # Outermost first so that inner rectangles overwrite.
        for i in reversed(range(len(self.regions))):
            r = self.regions[i]
            inside = (ax < r.modules_x * half) & (ay < r.modules_y * half)
            region = jnp.where(inside, i, region)
        if self.beam_hole[0] > 0 and self.beam_hole[1] > 0:
            in_hole = (ax < self.beam_hole[0] * half) & (ay < self.beam_hole[1] * half)
            region = jnp.where(in_hole, -1, region)
        status = jnp.where(region >= 0, STATUS_OK, jnp.where(region == -1, STATUS_BEAM_HOLE, STATUS_OUTSIDE))
        return region, status.astype(jnp.int32)

    def cell_of(self, x, y, cell_size_mm):
        """Impact cell of points: global indices (ix, iy) on the region's cell grid and the centre.

        Cells tile modules: the grid restarts at each module's lower-left corner, so a cell size is
        measured from the module edge (jnp, traceable). The centre is differentiable in the cell
        size (the indices are not); with a size that tiles the module this is the wall-wide grid.

        Args:
            x, y: [n] points (mm).
            cell_size_mm: [n] or scalar cell size (mm).

        Returns:
            (ix, iy, centre_x, centre_y).
        """
        x0, y0 = self.origin_mm
        m = self.module_mm
        c_fixed = jax.lax.stop_gradient(cell_size_mm)
        per_module = jnp.round(m / c_fixed).astype(jnp.int32)

        def axis(v, v0):
            module = jnp.floor((v - v0) / m)
            corner = v0 + module * m
            local = jnp.floor((v - corner) / c_fixed)
            return (module.astype(jnp.int32) * per_module + local.astype(jnp.int32),
                    corner + (local + 0.5) * cell_size_mm)

        ix, cx = axis(x, x0)
        iy, cy = axis(y, y0)
        return ix, iy, cx, cy

    def lookup(self, x, y):
        """(x, y) -> region index, status, cell indices and cell centre (numpy, for users).

        Returns a dict of numpy arrays: region, status, ix, iy, cell_x, cell_y, cell_size_mm
        (indices -1 and NaN centres for points in the beam hole or off the wall).
        """
        x = jnp.asarray(np.asarray(x, dtype=float))
        y = jnp.asarray(np.asarray(y, dtype=float))
        region, status = self.region_of(x, y)
        sizes = jnp.asarray([r.cell_size_mm for r in self.regions])
        cell = sizes[jnp.clip(region, 0, None)]
        ix, iy, cx, cy = self.cell_of(x, y, cell)
        ok = np.asarray(status) == STATUS_OK
        return dict(region=np.asarray(region), status=np.asarray(status),
                    ix=np.where(ok, np.asarray(ix), -1), iy=np.where(ok, np.asarray(iy), -1),
                    cell_x=np.where(ok, np.asarray(cx), np.nan), cell_y=np.where(ok, np.asarray(cy), np.nan),
                    cell_size_mm=np.where(ok, np.asarray(cell), np.nan))

    # ---- counting --------------------------------------------------------------------------------
    def modules_in_region(self, i: int) -> int:
        """Number of modules in region ``i`` (its rectangle minus the one inside it)."""
        r = self.regions[i]
        inner = self.regions[i - 1] if i > 0 else None
        inner_xy = (inner.modules_x, inner.modules_y) if inner else self.beam_hole
        return r.modules_x * r.modules_y - inner_xy[0] * inner_xy[1]

    def cells_per_module(self, i: int) -> int:
        n = round(self.module_mm / self.regions[i].cell_size_mm)
        return n * n

    def sections_in_region(self, i: int, registry=None) -> int:
        from diffcalo.technologies import default_registry

        r = self.regions[i]
        return r.sections if r.sections is not None else (registry or default_registry()).get(r.technology).n_sections

    def channels_in_region(self, i: int, registry=None) -> int:
        """Readout channels of region ``i``: modules x cells per module x readout sections."""
        return self.modules_in_region(i) * self.cells_per_module(i) * self.sections_in_region(i, registry)

    def cost(self, registry=None) -> float:
        """Total cost: modules x cost per module + channels x cost per channel (kCHF)."""
        from diffcalo.technologies import default_registry

        reg = registry or default_registry()
        total = 0.0
        for i, r in enumerate(self.regions):
            t = reg.get(r.technology)
            total += self.modules_in_region(i) * t.cost_per_module
            total += self.channels_in_region(i, reg) * t.cost_per_channel
        return total

    def table(self, registry=None) -> list[dict]:
        """One row per region: name, technology, cell size, modules, channels, cost."""
        from diffcalo.technologies import default_registry

        reg = registry or default_registry()
        rows = []
        for i, r in enumerate(self.regions):
            t = reg.get(r.technology)
            ch = self.channels_in_region(i, reg)
            m = self.modules_in_region(i)
            rows.append(dict(region=r.name, technology=r.technology, cell_size_mm=r.cell_size_mm,
                             sections=self.sections_in_region(i, reg), modules=m, channels=ch,
                             cost=m * t.cost_per_module + ch * t.cost_per_channel))
        return rows


def lhcb_current() -> Layout:
    """The current LHCb ECAL: Shashlik everywhere, 4.04 / 6.06 / 12.12 cm cells,
    176 / 448 / 2688 modules (64 x 52 wall, 4 x 4 beam hole)."""
    return Layout(
        name="lhcb-current", module_mm=121.2, modules_x=64, modules_y=52, beam_hole=(4, 4),
        regions=(
            Region("inner", "shashlik", 40.4, 16, 12),
            Region("middle", "shashlik", 60.6, 32, 20),
            Region("outer", "shashlik", 121.2, 64, 52),
        ),
    )


def lhcb_upgrade2_baseline() -> Layout:
    """A hand-made LHCb Upgrade II baseline: SpaCal-W 1.5 cm cells on the 32 modules around the
    beam hole, SpaCal-Pb 3 cm cells on the next 144 (the current inner region), Shashlik 6 cm in
    the middle and 12 cm outside; SpaCal read out in a front and a back section."""
    return Layout(
        name="lhcb-upgrade2-baseline", module_mm=121.2, modules_x=64, modules_y=52, beam_hole=(4, 4),
        regions=(
            Region("spacal-w", "spacal-w", 15.15, 8, 6),
            Region("spacal-pb", "spacal-pb", 30.3, 16, 12),
            Region("middle", "shashlik", 60.6, 32, 20),
            Region("outer", "shashlik", 121.2, 64, 52),
        ),
    )


def luxe() -> Layout:
    """The LUXE ECAL: 20 layers W/Si, 110 x 11 pads of 5 mm (10 sensors of 55 mm), at z = 0."""
    return Layout(name="luxe", module_mm=55.0, modules_x=10, modules_y=1, z_mm=0.0,
                  regions=(Region("sensors", "siw", 5.0, 10, 1),))


def toy() -> Layout:
    """The 8 x 8 x 17 toy calorimeter (one 240 mm module of 30 mm cells)."""
    return Layout(name="toy", module_mm=240.0, modules_x=1, modules_y=1, z_mm=0.0,
                  regions=(Region("toy", "toy-scint", 30.0, 1, 1),))


PRESETS = {
    "lhcb-current": lhcb_current,
    "lhcb-upgrade2-baseline": lhcb_upgrade2_baseline,
    "luxe": luxe,
    "toy": toy,
}


def preset(name: str) -> Layout:
    """A preset layout by name; the error lists the presets."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise KeyError(f"unknown layout preset {name!r}; available: {', '.join(PRESETS)}") from None
