"""Particle batches as pytrees, and particle guns.

A :class:`Particles` batch holds, per particle: PDG id, energy (GeV), impact point x, y on the ECAL
front face (mm), slopes tx = px/pz, ty = py/pz, and production time (ns). Guns draw batches with
explicit PRNG keys; they run eagerly (not under jit) and validate what they produce.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Particles", "PHOTON", "ELECTRON", "POSITRON", "SUPPORTED_PIDS", "gun",
           "uniform_energy", "log_uniform_energy", "discrete_energy", "sample_positions", "from_vertices"]

PHOTON = 22
ELECTRON = 11
POSITRON = -11
SUPPORTED_PIDS = (PHOTON, ELECTRON, POSITRON)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Particles:
    """A batch of particles hitting the calorimeter (all arrays [n])."""

    pid: jnp.ndarray
    energy: jnp.ndarray
    x: jnp.ndarray
    y: jnp.ndarray
    tx: jnp.ndarray
    ty: jnp.ndarray
    time: jnp.ndarray

    @classmethod
    def create(cls, *, energy, x, y, pid=PHOTON, tx=0.0, ty=0.0, time=0.0) -> "Particles":
        """Build a validated batch; scalars broadcast to the batch size.

        Raises:
            ValueError: non-finite or non-positive energies, non-finite positions or slopes, an
                unsupported particle id, or arrays of mismatched lengths (the message names the
                field, the first offending index and value).
        """
        energy = np.atleast_1d(np.asarray(energy, dtype=float))
        if energy.ndim != 1:
            raise ValueError(f"particles.energy: shape {energy.shape}; expected a 1-D array (one energy per particle)")
        n = energy.shape[0]
        fields = {}
        for name, v in dict(pid=pid, x=x, y=y, tx=tx, ty=ty, time=time).items():
            a = np.asarray(v)
            if a.ndim == 0:
                a = np.full(n, a)
            if a.shape != (n,):
                raise ValueError(f"particles.{name}: shape {a.shape}; expected ({n},) like particles.energy")
            fields[name] = a
        particles = cls(pid=jnp.asarray(fields["pid"], dtype=jnp.int32), energy=jnp.asarray(energy),
                        x=jnp.asarray(fields["x"], dtype=float), y=jnp.asarray(fields["y"], dtype=float),
                        tx=jnp.asarray(fields["tx"], dtype=float), ty=jnp.asarray(fields["ty"], dtype=float),
                        time=jnp.asarray(fields["time"], dtype=float))
        particles.validate()
        return particles

    @property
    def n(self) -> int:
        return int(self.energy.shape[0])

    def validate(self) -> "Particles":
        """Check concrete values; raise ValueError naming the field, index and value."""
        e = np.asarray(self.energy)
        bad = np.flatnonzero(~(np.isfinite(e) & (e > 0)))
        if bad.size:
            raise ValueError(f"particles.energy[{bad[0]}] = {e[bad[0]]}: energies must be finite and > 0 GeV "
                             f"({bad.size} bad values)")
        for name in ("x", "y", "tx", "ty", "time"):
            a = np.asarray(getattr(self, name))
            bad = np.flatnonzero(~np.isfinite(a))
            if bad.size:
                raise ValueError(f"particles.{name}[{bad[0]}] = {a[bad[0]]}: must be finite ({bad.size} bad values)")
        pid = np.asarray(self.pid)
        bad = np.flatnonzero(~np.isin(pid, SUPPORTED_PIDS))
        if bad.size:
            raise ValueError(f"particles.pid[{bad[0]}] = {pid[bad[0]]}: supported particle ids are "
                             f"{SUPPORTED_PIDS} (photon, electron, positron)")
        return self

    def __getitem__(self, idx) -> "Particles":
        return jax.tree_util.tree_map(lambda a: a[idx], self)


# ---- energy spectra ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Spectrum:
    kind: str
    low: float = 0.0
    high: float = 0.0
    values: tuple[float, ...] = ()

    def sample(self, key, n):
        if self.kind == "uniform":
            return jax.random.uniform(key, (n,), minval=self.low, maxval=self.high)
        if self.kind == "log-uniform":
            return jnp.exp(jax.random.uniform(key, (n,), minval=math.log(self.low), maxval=math.log(self.high)))
        vals = jnp.asarray(self.values, dtype=float)
        return vals[jax.random.randint(key, (n,), 0, len(self.values))]


def uniform_energy(low: float, high: float) -> _Spectrum:
    """Energies uniform in [low, high] GeV."""
    _check_range("energy", low, high)
    return _Spectrum("uniform", low, high)


def log_uniform_energy(low: float, high: float) -> _Spectrum:
    """Energies uniform in log E between low and high GeV."""
    _check_range("energy", low, high)
    return _Spectrum("log-uniform", low, high)


def discrete_energy(values: Sequence[float]) -> _Spectrum:
    """Energies drawn with equal probability from a list (GeV)."""
    vals = tuple(float(v) for v in values)
    if not vals or not all(math.isfinite(v) and v > 0 for v in vals):
        raise ValueError(f"energy values = {values!r}: need a non-empty list of finite energies > 0 GeV")
    return _Spectrum("discrete", values=vals)


def _check_range(name, low, high):
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
        raise ValueError(f"{name} range = [{low}, {high}] GeV: need 0 < low < high, both finite")


# ---- positions ----------------------------------------------------------------------------------------
def sample_positions(key, n: int, layout, *, region: int | str | None = None,
                     cell: tuple[int, int] | None = None):
    """Impact points uniform over the wall (beam hole excluded), one region, or one cell.

    Args:
        key: PRNG key.
        n: number of points.
        layout: the :class:`~diffcalo.layout.Layout`.
        region: index or name of a region; ``None`` = the whole wall.
        cell: (ix, iy) of one cell of ``region`` (requires ``region``): uniform inside that cell.

    Returns:
        (x [n], y [n]) in mm.
    """
    if region is not None and isinstance(region, str):
        names = [r.name for r in layout.regions]
        if region not in names:
            raise ValueError(f"region = {region!r}: unknown; the layout's regions are {names}")
        region = names.index(region)
    if region is not None and not (0 <= region < len(layout.regions)):
        raise ValueError(f"region = {region}: must be in 0..{len(layout.regions) - 1}")
    if cell is not None:
        if region is None:
            raise ValueError("cell given without region: a cell index needs the region's cell grid")
        c = layout.regions[region].cell_size_mm
        x0, y0 = layout.origin_mm
        kx, ky = jax.random.split(key)
        x = x0 + (cell[0] + jax.random.uniform(kx, (n,))) * c
        y = y0 + (cell[1] + jax.random.uniform(ky, (n,))) * c
        reg, _ = layout.region_of(x, y)
        if not bool(jnp.all(reg == region)):
            raise ValueError(f"cell = {cell}: not inside region {layout.regions[region].name!r}")
        return x, y
    half = 0.5 * layout.module_mm
    if region is None:
        hx, hy = layout.modules_x * half, layout.modules_y * half
    else:
        hx, hy = layout.regions[region].modules_x * half, layout.regions[region].modules_y * half
    xs, ys, got = [], [], 0
    while got < n:
        key, kx, ky = jax.random.split(key, 3)
        m = max(2 * (n - got), 64)
        x = jax.random.uniform(kx, (m,), minval=-hx, maxval=hx)
        y = jax.random.uniform(ky, (m,), minval=-hy, maxval=hy)
        reg, status = layout.region_of(x, y)
        ok = (status == 0) if region is None else (reg == region)
        ok = np.asarray(ok)
        xs.append(np.asarray(x)[ok])
        ys.append(np.asarray(y)[ok])
        got += int(ok.sum())
    return jnp.asarray(np.concatenate(xs)[:n]), jnp.asarray(np.concatenate(ys)[:n])


def gun(key, n: int, layout, *, energy=None, pid: int = PHOTON, region: int | str | None = None,
        cell: tuple[int, int] | None = None, direction: str | tuple[float, float] = "from-ip",
        time: float = 0.0) -> Particles:
    """A particle gun: ``n`` particles of one type on the wall.

    Args:
        key: PRNG key.
        n: batch size (>= 1).
        layout: the wall (positions and the distance to the interaction point).
        energy: a spectrum from :func:`uniform_energy`, :func:`log_uniform_energy`,
            :func:`discrete_energy`, or a float (fixed energy). Default: log-uniform 2-100 GeV.
        pid: 22 (photon), 11 (electron) or -11 (positron).
        region, cell: restrict positions (see :func:`sample_positions`).
        direction: ``"from-ip"`` (slopes x/z, y/z from the interaction point at ``layout.z_mm``),
            or fixed slopes (tx, ty).
        time: production time in ns.
    """
    import operator

    try:
        n = operator.index(n)
    except TypeError:
        raise ValueError(f"n = {n!r}: must be an integer >= 1") from None
    if n < 1:
        raise ValueError(f"n = {n!r}: must be an integer >= 1")
    if pid not in SUPPORTED_PIDS:
        raise ValueError(f"pid = {pid}: supported particle ids are {SUPPORTED_PIDS}")
    if energy is None:
        energy = log_uniform_energy(2.0, 100.0)
    elif isinstance(energy, (int, float)):
        energy = discrete_energy([energy])
    elif not isinstance(energy, _Spectrum):
        raise ValueError(f"energy = {energy!r}: give a number (GeV) or a spectrum: uniform_energy(lo, hi), "
                         "log_uniform_energy(lo, hi) or discrete_energy([...])")
    ke, kp = jax.random.split(key)
    e = energy.sample(ke, n)
    x, y = sample_positions(kp, n, layout, region=region, cell=cell)
    if direction == "from-ip":
        if layout.z_mm <= 0:
            raise ValueError(f"direction = 'from-ip' needs layout.z_mm > 0 (layout {layout.name!r} has "
                             f"{layout.z_mm}); give fixed slopes (tx, ty) instead")
        tx, ty = x / layout.z_mm, y / layout.z_mm
    else:
        try:
            tx, ty = (float(v) for v in direction)
        except (TypeError, ValueError):
            raise ValueError(f"direction = {direction!r}: 'from-ip' or a pair of slopes (tx, ty)") from None
    return Particles.create(energy=e, x=x, y=y, pid=pid, tx=tx, ty=ty, time=time)


def from_vertices(particles: Particles, vertex_z_mm, time_ns, wall_z_mm: float) -> Particles:
    """The same impact points, produced at vertices (0, 0, ``vertex_z_mm``) at arrival offsets ``time_ns``
    (arrays [n] or scalars, e.g. from :func:`diffcalo.pileup.luminous_region`): slopes x / (Z - z_v),
    y / (Z - z_v) towards the wall at ``wall_z_mm`` = Z, and production times set to the offsets (the
    simulator adds the flight from the origin, so a particle arrives at offset + flight / c)."""
    z_v = np.broadcast_to(np.asarray(vertex_z_mm, dtype=float), np.shape(particles.x))
    lever = wall_z_mm - z_v
    if not np.all(lever > 0):
        raise ValueError(f"vertex_z_mm: every vertex must lie before the wall at z = {wall_z_mm} mm "
                         f"(largest {float(np.max(z_v))} mm)")
    x, y = np.asarray(particles.x, dtype=float), np.asarray(particles.y, dtype=float)
    t = np.broadcast_to(np.asarray(time_ns, dtype=float), x.shape)
    return dataclasses.replace(particles, tx=jnp.asarray(x / lever), ty=jnp.asarray(y / lever), time=jnp.asarray(t))
