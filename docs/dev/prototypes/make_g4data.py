"""Prototype: build a substitute Geant4 data directory for EM-only physics.

Usage: python make_g4data.py BREMX.DAT OUTDIR
Scratch prototype (not project code).
"""
import os
import sys

import numpy as np

DATASETS = {  # env var -> subdirectory name
    "G4LEDATA": "G4EMLOW-substitute",
    "G4ENSDFSTATEDATA": "G4ENSDFSTATE-substitute",
    "G4LEVELGAMMADATA": "empty", "G4RADIOACTIVEDATA": "empty",
    "G4PARTICLEXSDATA": "empty", "G4NEUTRONHPDATA": "empty",
    "G4PIIDATA": "empty", "G4REALSURFACEDATA": "empty",
    "G4SAIDXSDATA": "empty", "G4ABLADATA": "empty",
    "G4INCLDATA": "empty", "G4CHANNELINGDATA": "empty",
}
ZMAX = 100


def env_for(out):
    return {k: os.path.join(out, v) for k, v in DATASETS.items()}


def read_bremx(path):
    tok = open(path).read().split()
    # 37 header words (4 text lines), then n_e, n_k
    ne, nk = int(tok[37]), int(tok[38])
    p = 39
    t_mev = np.array(tok[p:p + ne], float); p += ne
    kfrac = np.array(tok[p:p + nk], float); p += nk
    tables = {}
    for z in range(1, ZMAX + 1):
        tables[z] = np.array(tok[p:p + ne * nk], float).reshape(ne, nk); p += ne * nk
    assert tok[p:] in ([], ["\x1a"]), tok[p:p + 3]  # trailing DOS EOF byte
    return t_mev, kfrac, tables


def write_brem(t_mev, kfrac, tables, led):
    d = os.path.join(led, "brem_SB"); os.makedirs(d, exist_ok=True)
    y = np.log(t_mev)  # G4SeltzerBergerModel: y = ln(T / MeV)
    for z, tab in tables.items():
        with open(os.path.join(d, f"br{z}"), "w") as f:
            f.write(f"0 {len(kfrac)} {len(y)}\n")   # type nx ny ; x = k/T, y = ln T
            f.write(" ".join(f"{v:.8g}" for v in kfrac) + "\n")
            f.write(" ".join(f"{v:.8g}" for v in y) + "\n")
            for row in tab:                        # for each y (T): nx values, mb
                f.write(" ".join(f"{v:.6g}" for v in row) + "\n")


def sandia_pe(z_list, emin=1e-4, emax=1e5, n=1500):
    """per-atom photo-effect cross section (barn) on a log grid with edges resolved."""
    import geant4_pybind as g4
    mat = g4.G4NistManager.Instance().FindOrBuildMaterial("G4_Si")
    st = mat.GetSandiaTable()  # a material's table: static interval tables filled
    coef = g4.G4doubleVector([0.0] * 4)
    barn = 1e-22  # mm^2 (Geant4 internal)

    def cof(z, e):
        st.GetSandiaCofPerAtom(z, e, coef)
        return tuple(coef[i] for i in range(4))

    def xs(z, e):
        c = cof(z, e)
        return max(0.0, c[0] / e + c[1] / e**2 + c[2] / e**3 + c[3] / e**4) / barn

    out = {}
    grid = np.geomspace(emin, emax, n)
    for z in z_list:
        cs = [cof(z, e) for e in grid]
        edges = []
        for i in range(1, n):
            if cs[i] != cs[i - 1]:  # interval boundary between grid[i-1] and grid[i]
                lo, hi = grid[i - 1], grid[i]
                for _ in range(24):
                    mid = np.sqrt(lo * hi)
                    if cof(z, mid) == cs[i - 1]:
                        lo = mid
                    else:
                        hi = mid
                edges += [lo, hi]
        e = np.unique(np.concatenate([grid, edges]))
        out[z] = (e, np.array([xs(z, x) for x in e]))
    return out


def write_pe(pe, led):
    d = os.path.join(led, "epics2017", "phot"); os.makedirs(d, exist_ok=True)
    for z, (e, s) in pe.items():
        v = s * e**3  # G4LivermorePhotoElectricModel: cs = Value(E)/E^3, Value in barn*MeV^3
        with open(os.path.join(d, f"pe-cs-{z}.dat"), "w") as f:
            f.write(f"{e[0]:.10g} {e[-1]:.10g} {len(e)}\n{len(e)}\n")
            f.write("\n".join(f"{a:.17g} {b:.10g}" for a, b in zip(e, v)) + "\n")
        # one shell, binding ~0 (1 eV), parametrisation thresholds never reached
        par = "1 1 1e+30\n1e-06 0 0 0 0 0 0\n"
        for name in (f"pe-high-{z}.dat", f"pe-low-{z}.dat"):
            with open(os.path.join(d, name), "w") as f:
                f.write(par)


def write_rayleigh(led):
    d = os.path.join(led, "epics2017", "rayl"); os.makedirs(d, exist_ok=True)
    for z in range(1, ZMAX + 1):
        with open(os.path.join(d, f"re-cs-{z}.dat"), "w") as f:
            f.write("1e-06 100000 2\n2\n1e-06 0\n100000 0\n")  # sigma*E^2 = 0: switched off


def main():
    bremx, out = sys.argv[1], os.path.abspath(sys.argv[2])
    env = env_for(out)
    for v in env.values():
        os.makedirs(v, exist_ok=True)
    open(os.path.join(env["G4ENSDFSTATEDATA"], "ENSDFSTATE.dat"), "w").close()
    led = env["G4LEDATA"]
    t, k, tab = read_bremx(bremx)
    write_brem(t, k, tab, led)
    write_rayleigh(led)
    os.environ.update(env)
    os.environ["GEANT4_DATA_DIR"] = out
    write_pe(sandia_pe(range(1, ZMAX + 1)), led)
    print("\n".join(f"export {a}={b}" for a, b in env.items()))


if __name__ == "__main__":
    main()
