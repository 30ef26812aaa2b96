"""The shower simulator (parametric JAX backend)."""

from diffcalo.simulation.core import (
    DEFAULT_DEPTH_NODES,
    MODES,
    Clusters,
    SPEED_OF_LIGHT_MM_PER_NS,
    allocate_depth_nodes,
    cell_time_jitter,
    combine_deposits,
    region_tables,
    simulate,
)

__all__ = ["Clusters", "simulate", "MODES", "DEFAULT_DEPTH_NODES", "region_tables", "allocate_depth_nodes",
           "combine_deposits", "cell_time_jitter", "SPEED_OF_LIGHT_MM_PER_NS"]
