"""Prototype EM-only Geant4 run on the substitute data (scratch, not project code).

python run_block.py DATA_DIR MATERIAL E_GeV NEVT [particle]
Prints: brems X0 checks (EmCalculator), photo-effect cross sections, and
longitudinal/lateral shower profile summary in a homogeneous block.
"""
import os
import sys
import time

import numpy as np

data = os.path.abspath(sys.argv[1])
for line in open(os.path.join(os.path.dirname(data), "data_env.sh")):
    k, v = line.split()[1].split("=", 1)
    os.environ[k] = v
os.environ["GEANT4_DATA_DIR"] = data

import geant4_pybind as g4  # noqa: E402

MATNAME, E_GEV, NEVT = sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
PART = sys.argv[5] if len(sys.argv) > 5 else "e-"
NZ, NXY, CELL = 120, 61, 2.5 * g4.mm


class Det(g4.G4VUserDetectorConstruction):
    def Construct(self):
        nist = g4.G4NistManager.Instance()
        self.mat = nist.FindOrBuildMaterial(MATNAME)
        if os.environ.get("ALLZ"):
            self.els = [nist.FindOrBuildElement(z) for z in range(1, 101)]
            print("elements in table:", g4.G4Element.GetNumberOfElements())
        vac = nist.FindOrBuildMaterial("G4_Galactic")
        self.X0 = self.mat.GetRadlen()
        self.dz = 0.5 * self.X0
        hx, hz = 0.5 * NXY * CELL, 0.5 * NZ * self.dz
        world = g4.G4LogicalVolume(g4.G4Box("W", 2 * hx, 2 * hx, 4 * hz), vac, "World")
        blk = g4.G4LogicalVolume(g4.G4Box("B", hx, hx, hz), self.mat, "Block")
        lay = g4.G4LogicalVolume(g4.G4Box("L", hx, hx, 0.5 * self.dz), self.mat, "Layer")
        row = g4.G4LogicalVolume(g4.G4Box("R", hx, 0.5 * CELL, 0.5 * self.dz), self.mat, "Row")
        self.cell = g4.G4LogicalVolume(g4.G4Box("C", 0.5 * CELL, 0.5 * CELL, 0.5 * self.dz), self.mat, "Cell")
        g4.G4PVReplica("Cell", self.cell, row, g4.kXAxis, NXY, CELL)
        g4.G4PVReplica("Row", row, lay, g4.kYAxis, NXY, CELL)
        g4.G4PVReplica("Layer", lay, blk, g4.kZAxis, NZ, self.dz)
        wpv = g4.G4PVPlacement(None, g4.G4ThreeVector(), world, "World", None, False, 0)
        g4.G4PVPlacement(None, g4.G4ThreeVector(0, 0, hz), blk, "Block", world, False, 0)
        self.keep = [world, blk, lay, row]
        return wpv

    def ConstructSDandField(self):
        sd = g4.G4MultiFunctionalDetector("calo")
        g4.G4SDManager.GetSDMpointer().AddNewDetector(sd)
        sd.RegisterPrimitive(g4.G4PSEnergyDeposit3D("edep", NZ, NXY, NXY, 2, 1, 0))
        g4.G4VUserDetectorConstruction.SetSensitiveDetector(self, self.cell, sd)


class PL(g4.G4VModularPhysicsList):
    def __init__(self):
        super().__init__()
        self.RegisterPhysics(g4.G4EmStandardPhysics())


class Gun(g4.G4VUserPrimaryGeneratorAction):
    def __init__(self):
        super().__init__()
        self.gun = g4.G4ParticleGun(1)
        self.gun.SetParticleDefinition(g4.G4ParticleTable.GetParticleTable().FindParticle(PART))
        self.gun.SetParticleEnergy(E_GEV * g4.GeV)
        self.gun.SetParticlePosition(g4.G4ThreeVector(0, 0, -1 * g4.mm))
        self.gun.SetParticleMomentumDirection(g4.G4ThreeVector(0, 0, 1))

    def GeneratePrimaries(self, ev):
        self.gun.GeneratePrimaryVertex(ev)


ACC = np.zeros(NZ * NXY * NXY)
TOT = []


class Ev(g4.G4UserEventAction):
    def EndOfEventAction(self, ev):
        hce = ev.GetHCofThisEvent()
        hid = g4.G4SDManager.GetSDMpointer().GetCollectionID("calo/edep")
        idx, val = zip(*hce.GetHC(hid)) if hce.GetHC(hid).entries() else ((), ())
        np.add.at(ACC, np.array(idx, int), np.array(val))
        TOT.append(sum(val))


class Act(g4.G4VUserActionInitialization):
    def Build(self):
        self.SetUserAction(Gun())
        self.SetUserAction(Ev())


rm = g4.G4RunManagerFactory.CreateRunManager(g4.G4RunManagerType.Serial)
det = Det()
rm.SetUserInitialization(det)
rm.SetUserInitialization(PL())
rm.SetUserInitialization(Act())
ui = g4.G4UImanager.GetUIpointer()
for c in ("/control/verbose 0", "/run/verbose 0", "/event/verbose 0", "/tracking/verbose 0",
          "/process/em/verbose 0", "/process/had/verbose 0"):
    ui.ApplyCommand(c)
t0 = time.time()
rm.Initialize()
ui.ApplyCommand("/run/setCut 0.7 mm")
g4.G4Random.setTheSeed(12345)

X0 = det.X0
print(f"material {MATNAME}: GetRadlen X0 = {X0:.4f} mm")
rm.BeamOn(1)  # warm-up (tables)
calc = g4.G4EmCalculator()
if os.environ.get("NOSMOOTH"): calc.SetApplySmoothing(False)
for T in (0.1, 0.5, 0.999, 1.001, 10.0):
    dedx = calc.ComputeDEDX(T * g4.GeV, "e-", "eBrem", MATNAME, T * g4.GeV)  # cut = T: all photons
    print(f"  e- T={T:7.3f} GeV  brem dE/dx(no cut)/E -> X0_eff = {T * g4.GeV / dedx:.4f} mm  ")
for Eg in (0.03, 0.1, 0.5, 1.0):
    mu = calc.ComputeCrossSectionPerVolume(Eg * g4.MeV, "gamma", "phot", MATNAME)
    rho = det.mat.GetDensity() / (g4.g / g4.cm3)
    print(f"  gamma {Eg:5.2f} MeV  photo mu/rho = {mu * g4.cm / rho:.4g} cm2/g")

ACC[:] = 0; TOT.clear()
t1 = time.time()
rm.BeamOn(NEVT)
dt = time.time() - t1
print(f"init {t1 - t0:.1f}s; {NEVT} x {E_GEV} GeV {PART}: {dt / NEVT:.3f} s/shower")
e = ACC.reshape(NZ, NXY, NXY) / NEVT
tot = e.sum()
long = e.sum(axis=(1, 2))
z = (np.arange(NZ) + 0.5) * 0.5  # in X0
print(f"mean E_dep/E0 = {np.mean(TOT) / (E_GEV * 1e3):.4f}, rms/mean = {np.std(TOT) / np.mean(TOT):.4f}")
print(f"mean depth = {np.sum(z * long) / tot:.3f} X0, t_max(peak bin) = {z[np.argmax(long)]:.2f} X0")
c = np.cumsum(long) / tot
for t in (10, 20, 25, 30, 40):
    print(f"  long. containment to {t} X0: {c[int(t / 0.5) - 1]:.4f}")
lat = e.sum(axis=0)
k = NXY // 2
for w in (1, 3, 5, 9):
    h = w // 2
    print(f"  lateral {w}x{w} cells ({w * CELL:.1f} mm)^2: {lat[k - h:k + h + 1, k - h:k + h + 1].sum() / tot:.4f}")
xx = (np.arange(NXY) - k) * CELL
r = np.hypot(*np.meshgrid(xx, xx))
for R in (9.3, 18.6):
    print(f"  within r<{R} mm (cell centres): {lat[r < R].sum() / tot:.4f}")

if os.environ.get("XSCHECK"):
    # unsmoothed check: brems cross sections above cuts, SB (T<1 GeV) vs analytic Rel model (T>1 GeV)
    for T in (0.9999, 1.0001):
        E = T * g4.GeV
        ks = np.geomspace(1e-3, E * 0.99999, 4000)
        sig = np.array([calc.ComputeCrossSectionPerVolume(E, "e-", "eBrem", MATNAME, k) for k in ks])
        dedx = np.sum(np.sqrt(ks[1:] * ks[:-1]) * (sig[:-1] - sig[1:]))  # k-weighted integral above 1 keV
        print(f"  T={T} GeV: sigma(k>1MeV)={sig[np.searchsorted(ks, 1.0)] * g4.cm:.4f}/cm "
              f"sigma(k>100MeV)={sig[np.searchsorted(ks, 100.0)] * g4.cm:.4f}/cm  X0_eff(unsmoothed)={(E + 0.511) / dedx:.4f} mm")
