"""Pile-up background on the ECAL face: a flux model per particle class.

For each class (photons, electrons, charged hadrons, neutral hadrons) the model gives the hit
density per cm^2 and per collision, rho(r) = N (1 + (r/r0)^2)^(-beta) with r the distance to the
beam on the ECAL face, an energy spectrum (quantiles of log10 E in radial bins) and the spread of
arrival delays behind a photon from the origin. Scaled by the number of collisions per crossing
(default 40, LHCb Upgrade II). The shipped default (``data/pileup_pythia8_14tev.json``) was fitted
to Pythia 8 minimum-bias events at 14 TeV by :mod:`diffcalo.pileup_fit`, which documents the
approximations (straight lines, a 1.2 GeV dipole kick); it loads without Pythia installed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["PileupClass", "PileupModel", "DEFAULT_MODEL_FILE", "occupancy"]

DEFAULT_MODEL_FILE = pathlib.Path(__file__).parent / "data" / "pileup_pythia8_14tev.json"


@dataclasses.dataclass(frozen=True)
class PileupClass:
    """One particle class of the flux model (see module docstring)."""

    name: str
    log_norm_per_cm2: float
    r0_mm: float
    beta: float
    hits_per_collision: float
    log10_energy_quantiles: tuple[tuple[float, ...], ...]   # [radial bin][quantile]
    delay_ns_quantiles: tuple[float, ...]

    def density(self, r_mm):
        """Hits per cm^2 per collision at distance ``r_mm`` from the beam."""
        return jnp.exp(self.log_norm_per_cm2) * (1.0 + (r_mm / self.r0_mm) ** 2) ** (-self.beta)


@dataclasses.dataclass(frozen=True)
class PileupModel:
    """The background flux: classes, radial bins of the spectra, collisions per crossing."""

    classes: tuple[PileupClass, ...]
    r_edges_mm: tuple[float, ...]
    quantiles: tuple[float, ...]
    collisions_per_crossing: float = 40.0
    collision_time_sigma_ns: float = 0.19
    source: str = ""

    @classmethod
    def from_json(cls, path, *, collisions_per_crossing: float = 40.0) -> "PileupModel":
        """Load a model file written by :mod:`diffcalo.pileup_fit`; errors name the missing key."""
        path = pathlib.Path(path)
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read the pile-up model: {exc}") from None
        try:
            classes = tuple(
                PileupClass(name=name, log_norm_per_cm2=c["density"]["log_norm_per_cm2"], r0_mm=c["density"]["r0_mm"],
                            beta=c["density"]["beta"], hits_per_collision=c["hits_per_collision"],
                            log10_energy_quantiles=tuple(tuple(q) for q in c["log10_energy_gev_quantiles"]),
                            delay_ns_quantiles=tuple(c["delay_ns_quantiles"]))
                for name, c in raw["classes"].items())
            model = cls(classes=classes, r_edges_mm=tuple(raw["r_edges_mm"]), quantiles=tuple(raw["quantiles"]),
                        collision_time_sigma_ns=raw.get("collision_time_sigma_ns", 0.19), source=raw.get("source", ""))
        except KeyError as exc:
            raise ValueError(f"{path}: pile-up model lacks the key {exc.args[0]!r}") from None
        return model.with_collisions(collisions_per_crossing)

    @classmethod
    def default(cls, *, collisions_per_crossing: float = 40.0) -> "PileupModel":
        """The shipped Pythia 8 (14 TeV minimum bias) model."""
        return cls.from_json(DEFAULT_MODEL_FILE, collisions_per_crossing=collisions_per_crossing)

    def with_collisions(self, n: float) -> "PileupModel":
        if not (isinstance(n, (int, float)) and math.isfinite(n) and n >= 0):
            raise ValueError(f"collisions_per_crossing = {n!r}: must be a number >= 0")
        return dataclasses.replace(self, collisions_per_crossing=float(n))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    def density(self, x_mm, y_mm):
        """Hits per cm^2 per crossing, per class: [n_classes, ...]."""
        r = jnp.hypot(x_mm, y_mm)
        return self.collisions_per_crossing * jnp.stack([c.density(r) for c in self.classes])

    def expected_counts(self, x_mm, y_mm, width_mm):
        """Mean number of background hits per class in squares of side ``width_mm`` centred at (x, y).

        The density is integrated with a 3 x 3 Gauss-Legendre rule over the square. Returns [C, ...].
        """
        g, w = np.polynomial.legendre.leggauss(3)
        total = 0.0
        half = 0.5 * jnp.asarray(width_mm)
        for gi, wi in zip(g, w):
            for gj, wj in zip(g, w):
                total = total + 0.25 * wi * wj * self.density(x_mm + gi * half, y_mm + gj * half)
        return total * (jnp.asarray(width_mm) ** 2 / 100.0)

    def mean_energy(self, x_mm, y_mm):
        """Mean energy (GeV) of a background hit per class at (x, y): [C, ...]."""
        r = np.hypot(np.asarray(x_mm), np.asarray(y_mm))
        b = np.clip(np.searchsorted(self.r_edges_mm, r, side="right") - 1, 0, len(self.r_edges_mm) - 2)
        out = []
        for c in self.classes:
            q = np.asarray(c.log10_energy_quantiles)                 # [bins, Q]
            mean_per_bin = np.trapezoid(10.0 ** q, self.quantiles, axis=1)
            out.append(mean_per_bin[b])
        return np.stack(out)

    def sample_energy(self, key, class_index, x_mm, y_mm):
        """Energies (GeV) by inverse-CDF interpolation of the class's quantiles at (x, y) (jnp)."""
        r = jnp.hypot(x_mm, y_mm)
        edges = jnp.asarray(self.r_edges_mm)
        b = jnp.clip(jnp.searchsorted(edges, r, side="right") - 1, 0, len(self.r_edges_mm) - 2)
        table = jnp.asarray([c.log10_energy_quantiles for c in self.classes])   # [C, bins, Q]
        rows = table[class_index, b]                                            # [..., Q]
        u = jax.random.uniform(key, jnp.shape(r))
        qs = jnp.asarray(self.quantiles)
        idx = jnp.clip(jnp.searchsorted(qs, u, side="right") - 1, 0, len(self.quantiles) - 2)
        lo = jnp.take_along_axis(rows, idx[..., None], axis=-1)[..., 0]
        hi = jnp.take_along_axis(rows, idx[..., None] + 1, axis=-1)[..., 0]
        f = (u - qs[idx]) / (qs[idx + 1] - qs[idx])
        return 10.0 ** (lo + f * (hi - lo))


def occupancy(model: PileupModel, layout, *, window: int = 5, samples: int = 4000, seed: int = 0) -> list[dict]:
    """Mean background hits and incident energy per K x K window, per region, averaged over the region.

    Returns one dict per region: region, cell_size_mm, window_mm, hits (total and per class),
    energy_gev (mean incident background energy per window).
    """
    from diffcalo.particles import sample_positions

    rows = []
    key = jax.random.key(seed)
    for i, region in enumerate(layout.regions):
        key, k = jax.random.split(key)
        x, y = sample_positions(k, samples, layout, region=i)
        width = window * region.cell_size_mm
        counts = np.asarray(model.expected_counts(x, y, width))            # [C, samples]
        energy = (counts * model.mean_energy(x, y)).sum(axis=0)
        rows.append(dict(region=region.name, cell_size_mm=region.cell_size_mm, window_mm=width,
                         hits=float(counts.sum(axis=0).mean()),
                         hits_per_class={c: float(v) for c, v in zip(model.names, counts.mean(axis=1))},
                         energy_gev=float(energy.mean())))
    return rows
