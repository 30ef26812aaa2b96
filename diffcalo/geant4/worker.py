r"""The Geant4 side of the backend: runs in a worker process, builds a stack, shoots showers.

Geant4 allows one run manager per process, so each worker process keeps one application
(:func:`run_showers` builds it on first use and rebuilds only the geometry when a task brings another
:class:`~diffcalo.geant4.geometry.StackSpec`). Physics: ``G4EmStandardPhysics`` (option 0) alone, the
production cut 0.7 mm (Geant4's default), on the substitute data of :mod:`diffcalo.geant4.data`.

Scoring is done by Geant4's C++ scorers, with no Python callback per step:
``G4MultiFunctionalDetector`` s with ``G4PSEnergyDeposit3D`` primitives on the replicated cells of the
active slabs (energy per section and cell) and per layer (active and absorber energy per layer). Python
runs once per event, to set the primary and to read the hit maps.

Determinism: a task's showers depend only on its ``seed`` (the engine is re-seeded before every
task), not on the worker, the order of tasks or what the process ran before.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

__all__ = ["run_showers", "PHYSICS_LIST", "PRODUCTION_CUT_MM", "geant4_version"]

PHYSICS_LIST = "G4EmStandardPhysics (option 0) only"
PRODUCTION_CUT_MM = 0.7
_PARTICLE_NAMES = {11: "e-", -11: "e+", 22: "gamma"}
#: The gun starts this far (mm) in front of the first layer.
GUN_DISTANCE_MM = 1.0

# One application per process (Geant4's run manager is a process-wide singleton).
_APP: dict = {}


def geant4_version() -> str:
    """The Geant4 version string of the installed wheel (imports Geant4: call in a worker)."""
    return _version_string(_geant4())


def _geant4(data_dir: str | None = None):
    if data_dir is not None:
        from diffcalo.geant4.data import environment

        env = environment(data_dir)
        if "geant4_pybind" not in sys.modules:
            os.environ.update(env)
        elif os.environ.get("GEANT4_DATA_DIR") != env["GEANT4_DATA_DIR"]:
            raise RuntimeError(f"this process already runs Geant4 on {os.environ.get('GEANT4_DATA_DIR')}; "
                               f"cannot switch to {data_dir}")
    import geant4_pybind

    return geant4_pybind


def run_showers(data_dir: str, spec_json: str, particles: dict, seed: int, window: int | None) -> dict:
    """Simulate one task's showers in this process.

    Args:
        data_dir: the Geant4 data directory (``diffcalo geant4 setup``).
        spec_json: :meth:`StackSpec.to_json` of the stack.
        particles: arrays ``pid`` (11, -11, 22), ``energy`` (GeV), ``x``, ``y`` (mm, on the front face,
            relative to the centre of the grid), ``tx``, ``ty`` (slopes).
        seed: the engine's seed for this task.
        window: crop the central ``window`` x ``window`` cells (None: the whole grid).

    Returns:
        ``cells`` float32 [n, S, K, K] (energy in the active medium per section and cell, GeV),
        ``layer_active`` and ``layer_absorber`` float32 [n, L] (energy per layer over the whole grid,
        GeV), ``seconds`` (CPU time of the showers), ``geant4`` (the version string).
    """
    import time

    g4 = _geant4(data_dir)
    app = _APP.get("app")
    with _quiet_stdout():                   # Geant4's banner and initialisation chatter (G4cout)
        if app is None:
            app = _APP["app"] = _Application(g4)
        app.set_geometry(spec_json)
        t0 = time.process_time()
        out = app.run(particles, int(seed), window)
    out["seconds"] = time.process_time() - t0
    out["geant4"] = _version_string(g4)
    return out


def _version_string(g4) -> str:
    return str(g4.G4Version).replace("$", "").replace("Name:", "").strip()


class _quiet_stdout:
    """Send file descriptor 1 (where Geant4's G4cout writes) to /dev/null inside the block; G4cerr
    (warnings, errors) still reaches stderr."""

    def __enter__(self):
        sys.stdout.flush()
        self.saved = os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)

    def __exit__(self, *exc):
        os.dup2(self.saved, 1)
        os.close(self.saved)


class _Application:
    """The run manager, physics list, gun and event action of one process."""

    def __init__(self, g4):
        self.g4 = g4
        self.spec = None
        self.key = None
        self.builds = 0
        rm = g4.G4RunManagerFactory.CreateRunManager(g4.G4RunManagerType.Serial)
        self.rm = rm
        self.detector = _make_detector_class(g4)(self)
        rm.SetUserInitialization(self.detector)
        rm.SetUserInitialization(_make_physics_class(g4)())
        self.gun = _make_gun_class(g4)(self)
        self.event_action = _make_event_class(g4)(self)
        rm.SetUserInitialization(_make_actions_class(g4)(self))
        ui = g4.G4UImanager.GetUIpointer()
        self.ui = ui
        for c in ("/control/verbose 0", "/run/verbose 0", "/event/verbose 0", "/tracking/verbose 0",
                  "/process/em/verbose 0", "/process/had/verbose 0", "/material/verbose 0"):
            ui.ApplyCommand(c)
        self.initialised = False

    def set_geometry(self, spec_json: str) -> None:
        from diffcalo.geant4.geometry import LayerSpec, StackSpec

        d = json.loads(spec_json)
        d["blocks"] = tuple(LayerSpec(**b) for b in d["blocks"])
        d["sections"] = tuple(d["sections"])
        d["materials"] = tuple((m, tuple(v)) for m, v in d["materials"])
        spec = StackSpec(**d)
        if spec.key() == self.key:
            return
        self.spec, self.key = spec, spec.key()
        if not self.initialised:
            self.rm.Initialize()
            self.ui.ApplyCommand(f"/run/setCut {PRODUCTION_CUT_MM} mm")
            self.initialised = True
        else:
            self.ui.ApplyCommand("/run/reinitializeGeometry true")

    def run(self, particles: dict, seed: int, window: int | None) -> dict:
        g4 = self.g4
        spec = self.spec
        n = len(particles["energy"])
        self.particles = {k: np.asarray(v) for k, v in particles.items()}
        ns, nl = spec.n_sections, spec.n_layers
        self.cells = np.zeros((n, ns, spec.ny, spec.nx), np.float32)
        self.layer_active = np.zeros((n, nl), np.float32)
        self.layer_absorber = np.zeros((n, nl), np.float32)
        g4.G4Random.setTheSeed(seed)
        self.rm.BeamOn(n)
        cells = self.cells
        if window is not None:
            cy, cx, h = spec.ny // 2, spec.nx // 2, window // 2
            cells = cells[:, :, cy - h:cy + h + 1, cx - h:cx + h + 1]
        return dict(cells=np.ascontiguousarray(cells), layer_active=self.layer_active,
                    layer_absorber=self.layer_absorber)

    # ---- geometry ----------------------------------------------------------------------------------
    def material(self, name: str):
        g4 = self.g4
        kind, *rest = dict(self.spec.materials)[name]
        nist = g4.G4NistManager.Instance()
        if kind == "nist":
            return nist.FindOrBuildMaterial(rest[0])
        g4name = f"diffcalo_{name}"
        existing = g4.G4Material.GetMaterial(g4name, False)
        if existing is not None:
            return existing
        density, parts = rest
        m = g4.G4Material(g4name, density * g4.g / g4.cm3, len(parts))
        for symbol, amount in parts.items():
            element = nist.FindOrBuildElement(symbol)
            if kind == "atoms":
                m.AddElementByNumberOfAtoms(element, int(amount))
            else:
                m.AddElementByMassFraction(element, float(amount) / sum(parts.values()))
        return m

    def construct(self):
        g4, spec = self.g4, self.spec
        mm = g4.mm
        self.builds += 1
        tag = f"_{self.builds}"
        keep = self._keep = []
        vacuum = g4.G4NistManager.Instance().FindOrBuildMaterial("G4_Galactic")
        air = self.material("air")
        hx, hy = 0.5 * spec.nx * spec.cell_mm * mm, 0.5 * spec.ny * spec.cell_mm * mm
        depth = spec.depth_mm * mm
        world = g4.G4LogicalVolume(g4.G4Box("World", 1.2 * hx + 10 * mm, 1.2 * hy + 10 * mm,
                                            depth + 20 * mm), vacuum, "World")
        world_pv = g4.G4PVPlacement(None, g4.G4ThreeVector(), world, "World", None, False, 0)
        keep += [world, world_pv]
        # front face at z = 0; sections -> layers -> (absorber, active -> rows -> cells)
        layer_lvs = {}
        self.active_cells, self.absorbers = [], []
        for bi, b in enumerate(spec.blocks):
            pitch = b.pitch_mm * mm
            layer = g4.G4LogicalVolume(g4.G4Box("Layer", hx, hy, 0.5 * pitch), air, f"Layer{bi}{tag}")
            z = -0.5 * pitch
            if b.absorber_mm > 0:
                absorber = g4.G4LogicalVolume(g4.G4Box("Abs", hx, hy, 0.5 * b.absorber_mm * mm),
                                              self.material(b.absorber), f"Abs{bi}{tag}")
                keep.append(g4.G4PVPlacement(None, g4.G4ThreeVector(0, 0, z + 0.5 * b.absorber_mm * mm), absorber,
                                             "Abs", layer, False, 0))
                self.absorbers.append(absorber)
                keep.append(absorber)
            z += b.absorber_mm * mm
            act_mat = self.material(b.active)
            half_t = 0.5 * b.active_mm * mm
            active = g4.G4LogicalVolume(g4.G4Box("Act", hx, hy, half_t), act_mat, f"Act{bi}{tag}")
            row = g4.G4LogicalVolume(g4.G4Box("Row", hx, 0.5 * spec.cell_mm * mm, half_t), act_mat, f"Row{bi}{tag}")
            cell = g4.G4LogicalVolume(g4.G4Box("Cell", 0.5 * spec.cell_mm * mm, 0.5 * spec.cell_mm * mm, half_t),
                                      act_mat, f"Cell{bi}{tag}")
            keep += [g4.G4PVReplica("Cell", cell, row, g4.kXAxis, spec.nx, spec.cell_mm * mm),
                     g4.G4PVReplica("Row", row, active, g4.kYAxis, spec.ny, spec.cell_mm * mm),
                     g4.G4PVPlacement(None, g4.G4ThreeVector(0, 0, z + half_t), active, "Act", layer, False, 0)]
            keep += [layer, active, row, cell]
            self.active_cells.append(cell)
            layer_lvs[bi] = layer
        z0, li = 0.0, 0
        block_of_layer = [bi for bi, b in enumerate(spec.blocks) for _ in range(b.count)]
        start = 0
        for s, nlay in enumerate(spec.sections):
            thick = sum(spec.blocks[block_of_layer[i]].pitch_mm for i in range(start, start + nlay)) * mm
            section = g4.G4LogicalVolume(g4.G4Box("Section", hx, hy, 0.5 * thick), air, f"Section{s}{tag}")
            keep.append(section)
            keep.append(g4.G4PVPlacement(None, g4.G4ThreeVector(0, 0, z0 + 0.5 * thick), section, "Section", world,
                                         False, s))
            zl = -0.5 * thick
            for i in range(start, start + nlay):
                pitch = spec.blocks[block_of_layer[i]].pitch_mm * mm
                keep.append(g4.G4PVPlacement(None, g4.G4ThreeVector(0, 0, zl + 0.5 * pitch),
                                             layer_lvs[block_of_layer[i]], "Layer", section, False, li))
                zl += pitch
                li += 1
            z0 += thick
            start += nlay
        return world_pv

    def construct_sd(self):
        g4, spec = self.g4, self.spec
        sdm = g4.G4SDManager.GetSDMpointer()
        tag = f"{self.builds}"
        # depths from a cell: 0 cell, 1 row, 2 active slab, 3 layer, 4 section
        active = g4.G4MultiFunctionalDetector(f"active{tag}")
        sdm.AddNewDetector(active)
        active.RegisterPrimitive(g4.G4PSEnergyDeposit3D("cells", spec.n_sections, spec.ny, spec.nx, 4, 1, 0))
        active.RegisterPrimitive(g4.G4PSEnergyDeposit3D("layers", spec.n_layers, 1, 1, 3, 2, 2))
        for cell in self.active_cells:
            g4.G4VUserDetectorConstruction.SetSensitiveDetector(self.detector, cell, active)
        self.ids = [sdm.GetCollectionID(f"active{tag}/cells"), sdm.GetCollectionID(f"active{tag}/layers")]
        if self.absorbers:
            # depths from an absorber slab: 0 slab, 1 layer
            absorber = g4.G4MultiFunctionalDetector(f"absorber{tag}")
            sdm.AddNewDetector(absorber)
            absorber.RegisterPrimitive(g4.G4PSEnergyDeposit3D("layers", spec.n_layers, 1, 1, 1, 0, 0))
            for lv in self.absorbers:
                g4.G4VUserDetectorConstruction.SetSensitiveDetector(self.detector, lv, absorber)
            self.ids.append(sdm.GetCollectionID(f"absorber{tag}/layers"))
        self._sds = (active,) + ((absorber,) if self.absorbers else ())

    # ---- events ------------------------------------------------------------------------------------
    def generate(self, event):
        g4 = self.g4
        i = event.GetEventID()
        p = self.particles
        gun = self.gun.gun
        gun.SetParticleDefinition(self.particle_table.FindParticle(_PARTICLE_NAMES[int(p["pid"][i])]))
        gun.SetParticleEnergy(float(p["energy"][i]) * g4.GeV)
        tx, ty = float(p["tx"][i]), float(p["ty"][i])
        d = GUN_DISTANCE_MM
        gun.SetParticlePosition(g4.G4ThreeVector((float(p["x"][i]) - tx * d) * g4.mm,
                                                 (float(p["y"][i]) - ty * d) * g4.mm, -d * g4.mm))
        gun.SetParticleMomentumDirection(g4.G4ThreeVector(tx, ty, 1.0).unit())
        gun.GeneratePrimaryVertex(event)

    def record(self, event):
        i = event.GetEventID()
        hce = event.GetHCofThisEvent()
        flat = self.cells[i].reshape(-1)
        for idx, val in hce.GetHC(self.ids[0]):
            flat[idx] += val
        for idx, val in hce.GetHC(self.ids[1]):
            self.layer_active[i, idx] += val
        if len(self.ids) > 2:
            for idx, val in hce.GetHC(self.ids[2]):
                self.layer_absorber[i, idx] += val
        scale = 1.0 / self.g4.GeV
        self.cells[i] *= scale
        self.layer_active[i] *= scale
        self.layer_absorber[i] *= scale


def _make_detector_class(g4):
    class Detector(g4.G4VUserDetectorConstruction):
        def __init__(self, app):
            super().__init__()
            self.app = app

        def Construct(self):
            return self.app.construct()

        def ConstructSDandField(self):
            self.app.construct_sd()

    return Detector


def _make_physics_class(g4):
    class Physics(g4.G4VModularPhysicsList):
        def __init__(self):
            super().__init__()
            self.RegisterPhysics(g4.G4EmStandardPhysics())

    return Physics


def _make_gun_class(g4):
    class Gun(g4.G4VUserPrimaryGeneratorAction):
        def __init__(self, app):
            super().__init__()
            self.app = app
            self.gun = g4.G4ParticleGun(1)
            app.particle_table = g4.G4ParticleTable.GetParticleTable()

        def GeneratePrimaries(self, event):
            self.app.generate(event)

    return Gun


def _make_event_class(g4):
    class Event(g4.G4UserEventAction):
        def __init__(self, app):
            super().__init__()
            self.app = app

        def EndOfEventAction(self, event):
            self.app.record(event)

    return Event


def _make_actions_class(g4):
    class Actions(g4.G4VUserActionInitialization):
        def __init__(self, app):
            super().__init__()
            self.app = app

        def Build(self):
            self.SetUserAction(self.app.gun)
            self.SetUserAction(self.app.event_action)

    return Actions
