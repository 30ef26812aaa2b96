"""Built-in module technologies.

Stack geometries follow the references below. Fibre (SpaCal) modules are described as equivalent layers with
the fibre pitch and the absorber/fibre volume ratio, so the GFlash mixture rules and the sampling
frequency apply; their sampling term is set to the published test-beam value instead of the
layer formula. Readout numbers (light yield, noise, timing) are typical published values; costs
are illustrative relative numbers in kCHF for budget studies, not LHCb figures.

These module constants are the published descriptions. The registry (``default_registry().get(name)``,
what layouts and studies use) gives each its calibration to Geant4 from
``diffcalo/technologies/calibration/<name>.json`` (``diffcalo calibrate``; ``docs/geant4.md``).

References:
    LHCb Collaboration, "LHCb calorimeters TDR", CERN-LHCC-2000-036 (Shashlik: 66 x (2 mm Pb +
    4 mm scintillator), ~10 %/sqrt(E) (+) 1 %, ~3000 photo-electrons/GeV);
    LHCb Collaboration, "Framework TDR for the LHCb Upgrade II", CERN-LHCC-2021-012 (SpaCal-W with
    GAGG fibres, 1.5 cm cells; SpaCal-Pb with polystyrene fibres, 3 cm cells; front/back split);
    RADiCAL: sigma_t = 256 ps GeV^0.5 / sqrt(E) (+) 17.5 ps (time resolution anchor);
    LUXE CDR, arXiv:2102.02032 (ECAL: 20 x (3.5 mm W + 320 um Si), 5 mm pads);
    S. Schnake, "Energy regression with deep learning", Hamburg 2019 (toy steel/brass calorimeter).
"""

from __future__ import annotations

from diffcalo.technologies.base import Block, Technology

__all__ = ["SHASHLIK", "SPACAL_W", "SPACAL_PB", "SIW", "TOY_SCINT", "BUILTINS"]

SHASHLIK = Technology(
    name="shashlik",
    description="LHCb Shashlik: 66 x (2 mm Pb + 4 mm scintillator), 25 X0, 12.12 cm modules",
    label="Shashlik",
    stack=(Block(absorber_mm=2.0, active_mm=4.0, absorber="Pb", active="polystyrene", count=66),),
    cell_sizes_mm=(40.4, 60.6, 121.2),
    light_yield_pe_per_gev=3000.0,
    noise_gev=0.003,
    constant_term=0.008,
    time_stochastic_ns=0.3,
    time_constant_ns=0.05,
    threshold_gev=0.009,
    cost_per_module=3.0,
    cost_per_channel=0.3,
)

# W/GAGG SpaCal: 1 mm square GAGG fibres at 1.7 mm pitch (fibre volume fraction 0.35), 14 cm deep,
# read out as a 4 cm front and a 10 cm back section.
SPACAL_W = Technology(
    name="spacal-w",
    description="SpaCal-W: tungsten with GAGG crystal fibres, 1.5 cm cells, front/back split",
    label="SpaCal-W",
    stack=(Block(absorber_mm=1.112, active_mm=0.588, absorber="W", active="GAGG", count=82),),
    sections=(24, 58),
    cell_sizes_mm=(15.15,),
    light_yield_pe_per_gev=3000.0,
    noise_gev=0.005,
    constant_term=0.01,
    sampling_term=0.10,
    time_stochastic_ns=0.256,
    time_constant_ns=0.0175,
    threshold_gev=0.015,
    cost_per_module=40.0,
    cost_per_channel=0.3,
)

# Pb/polystyrene SpaCal: fibre volume fraction 0.55 at 1.7 mm pitch, which gives R_M ~ 30 mm;
# 29 cm deep, read out as an 8 cm front and a 21 cm back section.
SPACAL_PB = Technology(
    name="spacal-pb",
    description="SpaCal-Pb: lead with polystyrene fibres, 3 cm cells, front/back split",
    label="SpaCal-Pb",
    stack=(Block(absorber_mm=0.765, active_mm=0.935, absorber="Pb", active="polystyrene", count=171),),
    sections=(47, 124),
    cell_sizes_mm=(30.3,),
    light_yield_pe_per_gev=2000.0,
    noise_gev=0.005,
    constant_term=0.01,
    sampling_term=0.10,
    time_stochastic_ns=0.3,
    time_constant_ns=0.02,
    threshold_gev=0.015,
    cost_per_module=10.0,
    cost_per_channel=0.3,
)

SIW = Technology(
    name="siw",
    description="LUXE Si-W: 20 x (3.5 mm W + 0.32 mm Si), 5 mm pads, every layer read out",
    label="Si-W",
    stack=(Block(absorber_mm=3.5, active_mm=0.32, absorber="W", active="Si", count=20, gap_mm=0.68),),
    sections=(1,) * 20,
    cell_sizes_mm=(5.0,),
    module_mm=55.0,
    light_yield_pe_per_gev=0.0,
    # cell energies are in shower-energy units (deposit / sampling fraction 1.32 %): a MIP (92 keV
    # in 320 um Si) reads ~7 MeV; noise 1 MeV = 0.14 MIP (S/N ~ 7), zero suppression at 3 MeV
    # = 0.43 MIP. Without the threshold the realistic readout of the 24 200 pads adds a ~9 GeV
    # pedestal of clipped noise; with it, 3-20 GeV positrons read 0.93-0.95 of their energy.
    noise_gev=0.001,
    constant_term=0.0,
    threshold_gev=0.003,
    cost_per_module=5.0,
    cost_per_channel=0.01,
)

TOY_SCINT = Technology(
    name="toy-scint",
    description="Toy steel/brass/scintillator calorimeter, 17 layers, 8 x 8 cells of 30 mm",
    label="toy scintillator",
    stack=(
        Block(absorber_mm=40.0, active_mm=9.0, absorber="steel", active="polystyrene", count=1),
        Block(absorber_mm=50.5, active_mm=3.7, absorber="brass", active="polystyrene", count=8),
        Block(absorber_mm=56.5, active_mm=3.7, absorber="brass", active="polystyrene", count=6),
        Block(absorber_mm=75.0, active_mm=3.7, absorber="steel", active="polystyrene", count=1),
        Block(absorber_mm=0.0, active_mm=9.0, absorber="steel", active="polystyrene", count=1),
    ),
    sections=(1,) * 17,
    cell_sizes_mm=(30.0,),
    module_mm=240.0,
    light_yield_pe_per_gev=0.0,
    noise_gev=0.0,
    constant_term=0.0,
    cost_per_module=1.0,
    cost_per_channel=0.01,
)

BUILTINS: tuple[Technology, ...] = (SHASHLIK, SPACAL_W, SPACAL_PB, SIW, TOY_SCINT)
