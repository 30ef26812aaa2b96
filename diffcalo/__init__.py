"""diffcalo: differentiable design of electromagnetic calorimeters.

Public API::

    import diffcalo as dc
    det = dc.Detector.from_layout(dc.layout.lhcb_upgrade2_baseline())
    particles = dc.gun(jax.random.key(0), 1000, det.layout, region="spacal-w")
    clusters = dc.simulate(det, particles, key=jax.random.key(1))
"""

from diffcalo import io, layout, materials, pileup, samples, technologies
from diffcalo.detector import Detector
from diffcalo.layout import Layout, Region
from diffcalo.particles import Particles, discrete_energy, gun, log_uniform_energy, uniform_energy
from diffcalo.simulation import Clusters, simulate
from diffcalo.technologies import Block, Technology

__version__ = "0.1.0"

__all__ = ["Detector", "Layout", "Region", "Particles", "Clusters", "Technology", "Block", "simulate",
           "gun", "uniform_energy", "log_uniform_energy", "discrete_energy", "layout", "materials",
           "technologies", "pileup", "samples", "io", "__version__"]
