"""The simulator's entry point: :func:`simulate` checks its inputs and dispatches to a backend.

Backends (:data:`BACKENDS`): ``"parametric"`` (:mod:`diffcalo.simulation.parametric`, GFlash showers
in JAX, differentiable) and ``"geant4"`` (:mod:`diffcalo.geant4.backend`, Geant4 in worker processes;
the ``geant4`` extra). Every backend returns the same :class:`~diffcalo.clusters.Clusters` record.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from diffcalo.clusters import Clusters
from diffcalo.detector import Detector
from diffcalo.layout import STATUS_BEAM_HOLE, STATUS_OK
from diffcalo.particles import Particles
from diffcalo.simulation.parametric import simulate_parametric
from diffcalo.simulation.readout import MODES
from diffcalo.simulation.regions import DEFAULT_DEPTH_NODES, cached_region_tables, canonical_geometry

__all__ = ["simulate", "BACKENDS"]

#: Simulators behind :func:`simulate`.
BACKENDS = ("parametric", "geant4")


def simulate(detector: Detector, particles: Particles, *, key, mode: str = "relaxed", window: int = 5,
             depth_nodes: int | None = None, image: bool = False,
             on_invalid: str = "raise", pileup=None, max_background: int = 48,
             timing: bool = True, backend: str = "parametric", backend_options: dict | None = None) -> Clusters:
    r"""Simulate calorimeter clusters for a batch of particles.

    Args:
        detector: the :class:`~diffcalo.detector.Detector` (layout + technologies + cell sizes).
        particles: the :class:`~diffcalo.particles.Particles` batch.
        key: PRNG key (keyword-only).
        mode: ``"relaxed"`` (smooth, differentiable) or ``"realistic"`` (discrete photo-electrons,
            thresholds, never negative).
        window: K, the cluster window is K x K cells centred on the impact cell (odd, >= 1).
        depth_nodes: radial-profile evaluations per shower (window mode), spread over the readout
            sections by :func:`allocate_depth_nodes` (default 4); in image mode each layer is one
            node. The longitudinal fractions per section are exact whatever the number.
        image: return the whole wall as one image ``[n, L, Ny, Nx]`` instead of windows (single-region
            layouts of small stacks such as LUXE and the toy; each layer its own section).
        on_invalid: ``"raise"``: a particle in the beam hole or outside the wall is an error;
            ``"flag"``: such clusters get ``status`` 1 or 2 and zero energy.
        pileup: a :class:`~diffcalo.pileup.PileupModel` to overlay background particles in every
            window (window mode; see :mod:`diffcalo.simulation.overlay`), or None.
        max_background: static cap on the background candidates per window (masked slots of the
            overlay's thinning; default 48); ``Clusters.n_background`` holds the background particles
            hitting the window, and windows whose candidates exceeded the cap are marked there (a
            count > ``max_background``). Background showers use one depth node per readout section.
        timing: compute cell times (default). ``False`` skips them (``time`` is all zeros): about
            a third faster when only energies are needed.
        backend: the simulator behind the call (:data:`BACKENDS`): ``"parametric"`` (GFlash showers in
            JAX, differentiable) or ``"geant4"`` (full Geant4 showers in worker processes; not
            differentiable, no pile-up; returns numpy arrays; see :mod:`diffcalo.geant4.backend`).
        backend_options: keyword options of the backend: for ``"geant4"`` ``workers``, ``executor``
            (``"process"``, ``"dask"``, ``"inprocess"``), ``data_dir``, ``progress``.

    Returns:
        :class:`Clusters`.

    The function is jitted once per (shapes, mode, window, depth_nodes, image, detector structure); a
    second call with new data of the same shapes does not recompile. Under an outer ``jax.jit``
    or ``jax.grad`` the input checks that need concrete values are skipped.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend = {backend!r}: allowed {BACKENDS}")
    if mode not in MODES:
        raise ValueError(f"mode = {mode!r}: allowed {MODES}")
    if not (isinstance(window, int) and window >= 1 and window % 2 == 1):
        raise ValueError(f"window = {window!r}: must be an odd integer >= 1")
    if depth_nodes is None:
        depth_nodes = max(DEFAULT_DEPTH_NODES, detector.n_sections) if not image else 1
    if not (isinstance(depth_nodes, int) and depth_nodes >= 1):
        raise ValueError(f"depth_nodes = {depth_nodes!r}: must be an integer >= 1")
    if not image and depth_nodes < detector.n_sections:
        raise ValueError(f"depth_nodes = {depth_nodes}: the detector reads {detector.n_sections} sections; "
                         "give at least one node per section")
    if on_invalid not in ("raise", "flag"):
        raise ValueError(f"on_invalid = {on_invalid!r}: allowed 'raise' or 'flag'")
    if not isinstance(detector, Detector):
        raise TypeError(f"detector: expected a diffcalo Detector (Detector.from_layout(layout)), "
                        f"got {type(detector).__name__}")
    if not isinstance(particles, Particles):
        raise TypeError(f"particles: expected diffcalo Particles, got {type(particles).__name__}")
    if image:
        if detector.n_regions != 1:
            raise ValueError(f"image = True needs a single-region layout; {detector.layout.name!r} has "
                             f"{detector.n_regions} regions (use window mode)")
        ncell = (detector.layout.width_mm / detector.layout.regions[0].cell_size_mm) * \
                (detector.layout.height_mm / detector.layout.regions[0].cell_size_mm)
        if ncell > 100_000:
            raise ValueError(f"image = True: the wall has {ncell:.0f} cells; image mode is for small "
                             "stacks (at most 100000 cells); use window mode")
    _check_key(key)
    concrete = not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(particles))
    region, status = detector.layout.region_of(particles.x, particles.y)
    if concrete:
        particles.validate()
        # under an outer jit even closed-over particles give a traced status: skip the check then
        if on_invalid == "raise" and not isinstance(status, jax.core.Tracer):
            status = np.asarray(status)
            bad = np.flatnonzero(status != STATUS_OK)
            if bad.size:
                i = bad[0]
                what = "in the beam hole" if status[i] == STATUS_BEAM_HOLE else "outside the wall"
                lay = detector.layout
                raise ValueError(
                    f"particles[{i}] at (x, y) = ({float(particles.x[i]):.1f}, {float(particles.y[i]):.1f}) mm "
                    f"is {what} ({bad.size} of {status.size} particles are off the active wall); the wall spans |x| < {lay.width_mm / 2:g}, "
                    f"|y| < {lay.height_mm / 2:g} mm, beam hole {lay.beam_hole[0]} x {lay.beam_hole[1]} "
                    "modules. Pass on_invalid='flag' to keep them with status 1 (beam hole) or 2 (outside)")
    if pileup is not None:
        from diffcalo.pileup import PileupModel

        if not isinstance(pileup, PileupModel):
            raise TypeError(f"pileup: expected a diffcalo PileupModel (PileupModel.default()), got {type(pileup).__name__}")
        if image:
            raise ValueError("pileup with image = True is not supported; use window mode")
        if not (isinstance(max_background, int) and max_background >= 1):
            raise ValueError(f"max_background = {max_background!r}: must be an integer >= 1")
    if backend == "geant4":
        return _simulate_geant4(detector, particles, key, mode, window, image, timing, pileup, backend_options)
    if backend_options:
        raise ValueError(f"backend_options = {backend_options!r}: the parametric backend takes none")
    if pileup is not None and not timing:
        raise ValueError("timing = False with pileup: the overlay combines deposit times; keep timing on")
    # Region look-up and the per-region tables outside the jit (traceable, so gradients still flow
    # to technology parameters and cell sizes), and a canonical geometry inside it: the compiled
    # kernel depends only on the wall, the number of regions and of sections (array shapes), not on
    # which technologies or cell sizes fill the regions nor where the regions end, so every design of
    # a study with the same number of regions and sections shares one compiled simulator.
    tables = cached_region_tables(detector, depth_nodes, image)
    tables_bg = cached_region_tables(detector, detector.n_sections, False) if pileup is not None else None
    return simulate_parametric(canonical_geometry(detector.layout, image), detector.cell_size_mm, tables, tables_bg,
                         particles, key, region, status, mode, window, depth_nodes, image, pileup,
                         max_background if pileup is not None else 48, bool(timing))


_GEANT4_OPTIONS = ("workers", "executor", "scheduler", "data_dir", "progress")


def _simulate_geant4(detector, particles, key, mode, window, image, timing, pileup, options):
    if pileup is not None:
        raise ValueError("pileup with backend = 'geant4' is not supported: overlay pile-up with the parametric "
                         "backend (or simulate the background particles with Geant4 too)")
    options = dict(options or {})
    unknown = sorted(set(options) - set(_GEANT4_OPTIONS))
    if unknown:
        raise ValueError(f"backend_options: unknown {unknown}; the geant4 backend takes {_GEANT4_OPTIONS}")
    if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves((detector, particles))):
        raise ValueError("backend = 'geant4' cannot run under jax.jit or jax.grad (Geant4 is not differentiable); "
                         "use the parametric backend there")
    from diffcalo.geant4.backend import simulate_geant4

    return simulate_geant4(detector, particles, key=key, mode=mode, window=window, image=image,
                           timing=timing, **options)


def _check_key(key) -> None:
    """A clear error for something that is not a JAX PRNG key (``jax.random.key(seed)``)."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and key.shape == ():
        return
    if dtype is not None and dtype == jnp.uint32 and getattr(key, "shape", None) == (2,):
        return  # legacy raw key from jax.random.PRNGKey
    raise TypeError(f"key = {key!r}: expected a single JAX PRNG key, e.g. key=jax.random.key(0) "
                    "(split a key for several calls)")

