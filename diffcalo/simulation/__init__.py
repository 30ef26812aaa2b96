"""The shower simulator (parametric JAX backend)."""

from diffcalo.simulation.core import MODES, Clusters, region_tables, simulate

__all__ = ["Clusters", "simulate", "MODES", "region_tables"]
