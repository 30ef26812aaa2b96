"""The shower simulator (parametric JAX backend)."""

from diffcalo.simulation.core import (
    DEFAULT_DEPTH_NODES,
    MODES,
    Clusters,
    allocate_depth_nodes,
    region_tables,
    simulate,
)

__all__ = ["Clusters", "simulate", "MODES", "DEFAULT_DEPTH_NODES", "region_tables", "allocate_depth_nodes"]
