"""A demo third-party technology: a homogeneous PbWO4 crystal module read in one section."""

import dataclasses

from diffcalo.technologies import Block, Technology


def make_technology() -> Technology:
    """A 22 cm PbWO4 crystal module (25 X0), 2.2 cm cells, as a one-layer 'stack'."""
    return Technology(
        name="demo-pbwo4",
        description="PbWO4 crystals (CMS-like), 22 mm cells",
        stack=(Block(absorber_mm=0.0, active_mm=220.0, absorber="Pb", active="PbWO4", count=1),),
        cell_sizes_mm=(22.0,),
        module_mm=22.0,
        sampling_term=0.028,
        light_yield_pe_per_gev=4500.0,
        noise_gev=0.04,
        constant_term=0.003,
        cost_per_module=2.0,
        cost_per_channel=0.2,
    )


def not_a_technology():
    return {"name": "oops"}


def duplicate_shashlik() -> Technology:
    from diffcalo.technologies.builtin import SHASHLIK

    return dataclasses.replace(SHASHLIK, description="a plugin that reuses a built-in name")
