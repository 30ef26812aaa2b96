"""The shower simulator: :func:`simulate` (entry point, :mod:`.simulator`) and its parts.

- :mod:`.simulator`: input checks and dispatch on ``backend=``;
- :mod:`.parametric`: the parametric backend (one jitted function);
- :mod:`.regions`: per-region tables (technology constants, depth nodes);
- :mod:`.kernel`: the shower kernel (mean cell energies of a batch of showers);
- :mod:`.readout`: fluctuations, photo-electrons, cell times;
- :mod:`.overlay`: pile-up background in every window;
- :mod:`.gflash`, :mod:`.cells`: the GFlash profiles and the closed-form cell integrals.
"""

from diffcalo.clusters import Clusters
from diffcalo.simulation.readout import MODES, SPEED_OF_LIGHT_MM_PER_NS, cell_time_jitter, combine_deposits
from diffcalo.simulation.regions import DEFAULT_DEPTH_NODES, allocate_depth_nodes, region_tables
from diffcalo.simulation.simulator import BACKENDS, simulate

__all__ = ["Clusters", "simulate", "BACKENDS", "MODES", "DEFAULT_DEPTH_NODES", "region_tables",
           "allocate_depth_nodes", "combine_deposits", "cell_time_jitter", "SPEED_OF_LIGHT_MM_PER_NS"]
