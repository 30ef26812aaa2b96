"""HDF5 shower datasets: a versioned schema, atomic streaming writes, validated reads.

Schema ``diffcalo.clusters`` version 3 (one HDF5 file):

* file attributes: ``schema`` = "diffcalo.clusters", ``schema_version`` = 3, ``n_clusters``,
  ``diffcalo_version``, ``config`` (JSON text of the full configuration that produced the data, "{}"
  if none), ``seed`` (int, -1 if none), ``complete`` (True once the writer closed cleanly);
* group ``clusters`` with one dataset per :class:`~diffcalo.clusters.Clusters` field, first axis
  the cluster index: ``energy`` float32 [N, L, K, K] (GeV, EM scale), ``time`` float32 [N, L, K, K]
  (ns; 0 where a cell has no energy), ``e_true`` [N], ``x``, ``y``,
  ``tx``, ``ty`` float32 [N], ``pid`` int32 [N], ``offset`` float32 [N, 2], ``centre`` float32 [N, 2]
  (window centre on the wall, mm; version 3), ``cell_index`` int32 [N, 2],
  ``cell_size_mm`` float32 [N], ``region``, ``status`` int32 [N], ``leakage`` float32 [N] (NaN when
  unknown, e.g. imported data), ``n_background`` int32 [N] (pile-up particles drawn per window), ``t_true`` float32 [N] (version 2). Datasets are chunked along N, gzip-compressed with shuffle, and
  carry Fletcher-32 checksums so that corrupted chunks are detected on read.
* optional group ``extras``: further per-cluster arrays (first axis the cluster index) that a producer
  keeps beside the record, e.g. a Geant4 shower library's per-layer deposits; read with
  :func:`read_extras` (readers of the record ignore them).

Writes go to a hidden temporary file in the destination folder, which is renamed over the final
name only when the writer closes without error: a writer killed mid-way leaves no file under the
final name, and an existing file there stays intact. Reads check the schema, version, fields,
shapes, dtypes and that energies are finite, and raise :class:`DatasetError` naming the problem.
Both directions stream in chunks, so datasets larger than memory can be written and read.
"""

from __future__ import annotations

import dataclasses
import errno
import glob
import json
import os
import pathlib
from collections.abc import Iterator, Mapping

import numpy as np

from diffcalo.errors import DatasetError

__all__ = ["SCHEMA", "SCHEMA_VERSION", "FIELDS", "DatasetError", "DatasetWriter", "write_clusters",
           "read_clusters", "iter_clusters", "dataset_info", "import_calochallenge", "write_text_atomic",
           "check_cluster_values", "read_extras",
           "temporary_sibling"]

SCHEMA = "diffcalo.clusters"
SCHEMA_VERSION = 3
#: Versions this module reads. Version 1 had no ``t_true``; it reads as NaN (no time truth). Versions
#: 1 and 2 had no ``centre`` (the window centre); it reads as impact point minus offset (from truth).
READABLE_VERSIONS = (1, 2, 3)

#: field -> (dtype, number of trailing axes); energy's trailing shape is [L, K, K] or [L, Ny, Nx].
FIELDS: dict[str, tuple[str, int]] = {
    "energy": ("float32", 3), "time": ("float32", 3), "e_true": ("float32", 0), "x": ("float32", 0), "y": ("float32", 0),
    "tx": ("float32", 0), "ty": ("float32", 0), "pid": ("int32", 0), "offset": ("float32", 1),
    "centre": ("float32", 1),
    "cell_index": ("int32", 1), "cell_size_mm": ("float32", 0), "region": ("int32", 0),
    "status": ("int32", 0), "leakage": ("float32", 0), "n_background": ("int32", 0),
    "t_true": ("float32", 0),
}
#: Fields added after version 1 (absent from version-1 files).
_ADDED_IN = {"t_true": 2, "centre": 3}
_FINITE = ("energy", "time", "e_true", "x", "y", "tx", "ty", "centre")



def temporary_sibling(path) -> pathlib.Path:
    """The hidden temporary name beside ``path`` that a write goes to before its rename
    (``.NAME.tmp-PID``); temporary files of dead processes on this host are removed first."""
    path = pathlib.Path(path)
    _remove_stale_temporaries(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _remove_stale_temporaries(path: pathlib.Path) -> None:
    """Delete ``.NAME.tmp-PID`` files beside ``path`` left by processes that no longer run (killed
    writers). A PID that is alive, or unknown, is left alone."""
    try:
        siblings = list(path.parent.glob(f".{glob.escape(path.name)}.tmp-*"))
    except OSError:
        return
    for tmp in siblings:
        try:
            pid = int(tmp.name.rsplit(".tmp-", 1)[1].split("-")[0])   # .NAME.tmp-PID, .NAME.tmp-PID-wal
        except (ValueError, IndexError):
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except OSError:         # alive under another user, or no permission to ask
            continue


def write_text_atomic(path, text: str) -> pathlib.Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename: the final name holds
    either the old content or the whole new one, never a part (a full disk leaves no temporary file)."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path, data: bytes) -> pathlib.Path:
    """:func:`write_text_atomic` for bytes."""
    path = pathlib.Path(path)
    tmp = temporary_sibling(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _h5py():
    import h5py

    return h5py


class DatasetWriter:
    """Stream clusters into a new dataset file; use as a context manager.

    Args:
        path: final file name (``.h5``).
        config: the full configuration that produced the data (JSON-serialisable mapping).
        seed: the seed used (int), or None.
        chunk_size: clusters per HDF5 chunk (also the unit of compression).
        overwrite: replace an existing file at ``path`` (atomically, on success only).

    Example::

        with DatasetWriter("out.h5", config=cfg, seed=7) as w:
            for batch in batches:
                w.append(batch)
    """

    def __init__(self, path, *, config: Mapping | None = None, seed: int | None = None,
                 chunk_size: int = 4096, overwrite: bool = False):
        self.path = pathlib.Path(path)
        if self.path.is_dir():
            raise DatasetError(f"{self.path}: is a directory; give the dataset a file name (e.g. {self.path / 'data.h5'})")
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} exists; pass overwrite=True to replace it")
        for parent in self.path.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise DatasetError(f"{self.path}: {parent} is a file, not a directory")
                break
        if not (isinstance(chunk_size, int) and chunk_size >= 1):
            raise ValueError(f"chunk_size = {chunk_size!r}: must be an integer >= 1")
        try:
            self._config = json.dumps(dict(config or {}), sort_keys=True)
        except TypeError as exc:
            raise ValueError(f"config: not JSON-serialisable ({exc})") from None
        self._seed = -1 if seed is None else int(seed)
        self._chunk = chunk_size
        self._tmp = temporary_sibling(self.path)
        self._file = None
        self._n = 0

    def __enter__(self) -> "DatasetWriter":
        h5py = _h5py()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # No chunk cache: every chunk is written (and fails, on a full disk) inside append(), and a
        # flush after each batch leaves no dirty data for close() to write. HDF5 cannot close a file
        # whose cached writes fail (measured: h5py then segfaults at exit); with nothing cached the
        # close after a failed write succeeds and the temporary file is removed. The v110 file format
        # checksums its metadata (superblock, object headers, B-trees): a damaged file is reported as
        # an error on read, where the old format's unchecked metadata could crash HDF5 itself.
        try:
            self._file = h5py.File(self._tmp, "w", rdcc_nbytes=0, libver=("v110", "latest"))
        except (OSError, RuntimeError) as exc:          # named by the user's path, not the temporary's
            code = getattr(exc, "errno", None) or errno.EIO
            raise OSError(code, f"cannot create the dataset ({os.strerror(code)})", str(self.path)) from None
        try:
            self._file.attrs.update(schema=SCHEMA, schema_version=SCHEMA_VERSION, n_clusters=0, config=self._config,
                                    seed=self._seed, complete=False, diffcalo_version=_version())
            self._file.create_group("clusters")
        except BaseException:
            f, self._file = self._file, None
            try:
                f.close()
            finally:
                self._tmp.unlink(missing_ok=True)
            raise
        return self

    def append(self, clusters, extras: Mapping | None = None) -> None:
        """Append a batch (a :class:`~diffcalo.clusters.Clusters` or a mapping field -> array), and
        optionally per-cluster ``extras`` (name -> array with the batch's clusters first; every batch
        must bring the same names)."""
        if self._file is None:
            raise RuntimeError("DatasetWriter.append outside of 'with DatasetWriter(...) as w:'")
        data = _as_arrays(clusters)
        n = data["energy"].shape[0]
        extras = {k: np.asarray(v) for k, v in (extras or {}).items()}
        for k, a in extras.items():
            if a.ndim < 1 or a.shape[0] != n:
                raise ValueError(f"append: extras[{k!r}] has shape {a.shape}; expected {n} clusters first")
        known = sorted(self._file["extras"].keys()) if "extras" in self._file else None
        if (self._n > 0 or known) and sorted(extras) != (known or []):
            raise ValueError(f"append: extras {sorted(extras)}; earlier batches had {known or []}")
        for name in _FINITE:
            bad = np.flatnonzero(~np.isfinite(data[name].reshape(n, -1)).all(axis=1))
            if bad.size:
                raise ValueError(f"append: {name} is not finite in {bad.size} of {n} clusters (first: {bad[0]}); "
                                 "nothing of this batch was written")
        group = self._file["clusters"]
        for name in FIELDS:                           # refuse a batch before any of it is written
            if name in group and group[name].shape[1:] != data[name].shape[1:]:
                raise ValueError(f"append: {name} has shape {data[name].shape[1:]} per cluster; the file has "
                                 f"{group[name].shape[1:]}")
        if "extras" in self._file:
            for name, a in extras.items():
                if name in self._file["extras"] and self._file["extras"][name].shape[1:] != a.shape[1:]:
                    raise ValueError(f"append: extras[{name!r}] has shape {a.shape[1:]} per cluster; the file has "
                                     f"{self._file['extras'][name].shape[1:]}")
        try:
            if extras:
                eg = self._file.require_group("extras")
                for name, a in extras.items():
                    if name not in eg:
                        eg.create_dataset(name, shape=(0,) + a.shape[1:], maxshape=(None,) + a.shape[1:], dtype=a.dtype,
                                          chunks=(min(self._chunk, max(n, 1)),) + a.shape[1:], compression="gzip",
                                          compression_opts=4, shuffle=True, fletcher32=True)
                    ds = eg[name]
                    if ds.shape[1:] != a.shape[1:]:
                        raise ValueError(f"append: extras[{name!r}] has shape {a.shape[1:]} per cluster; the file has "
                                         f"{ds.shape[1:]}")
                    ds.resize(self._n + n, axis=0)
                    ds[self._n:self._n + n] = a
            for name, (dtype, _) in FIELDS.items():
                a = data[name]
                if name not in group:
                    group.create_dataset(name, shape=(0,) + a.shape[1:], maxshape=(None,) + a.shape[1:], dtype=dtype,
                                         chunks=(min(self._chunk, max(n, 1)),) + a.shape[1:], compression="gzip",
                                         compression_opts=4, shuffle=True, fletcher32=True)
                ds = group[name]
                if ds.shape[1:] != a.shape[1:]:
                    raise ValueError(f"append: {name} has shape {a.shape[1:]} per cluster; the file has {ds.shape[1:]}")
                ds.resize(self._n + n, axis=0)
                ds[self._n:self._n + n] = a
            self._n += n
            self._file.attrs["n_clusters"] = self._n
            self._file.flush()
        except (OSError, RuntimeError) as exc:          # HDF5 reports a failed write (full disk, I/O error)
            code = getattr(exc, "errno", None) or (errno.ENOSPC if "No space left" in str(exc) else errno.EIO)
            raise OSError(code, f"{os.strerror(code)} while writing the dataset (nothing is left under the final "
                                "name)", str(self.path)) from None

    def __exit__(self, exc_type, exc, tb) -> None:
        """Close the file deterministically (h5py objects never linger for the garbage collector), then
        rename it over the final name only if everything succeeded; otherwise remove it."""
        f, self._file = self._file, None
        ok = exc_type is None
        try:
            if ok and self._n == 0:
                ok = False
                raise ValueError(f"{self.path}: no clusters were appended; nothing written")
            if ok:
                f.attrs["complete"] = True
                f.flush()
        except BaseException:
            ok = False
            raise
        finally:
            try:
                f.close()
            except Exception:               # noqa: BLE001 - closing after a failed write (disk full)
                if ok:
                    ok = False
                    raise
            finally:
                if not ok:
                    self._tmp.unlink(missing_ok=True)
        if not ok:
            return                          # the caller's exception propagates
        try:
            with open(self._tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(self._tmp, self.path)
        finally:
            self._tmp.unlink(missing_ok=True)


def write_clusters(path, clusters, *, config: Mapping | None = None, seed: int | None = None,
                   chunk_size: int = 4096, overwrite: bool = False, extras: Mapping | None = None) -> pathlib.Path:
    """Write one batch of clusters (and optional ``extras``) to ``path`` atomically (see :class:`DatasetWriter`)."""
    with DatasetWriter(path, config=config, seed=seed, chunk_size=chunk_size, overwrite=overwrite) as w:
        w.append(clusters, extras)
    return pathlib.Path(path)


def dataset_info(path) -> dict:
    """Validate a dataset's structure (not its values) and return its attributes and shapes.

    Raises:
        DatasetError: unreadable (truncated, corrupted, not HDF5), wrong schema or version,
            incomplete (the writer did not finish), missing fields, wrong dtypes or shapes.
    """
    h5py = _h5py()
    path = pathlib.Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    if path.is_dir():
        raise DatasetError(f"{path}: is a directory, not a dataset file")
    try:
        f = h5py.File(path, "r")
    except (OSError, RuntimeError) as exc:
        raise DatasetError(f"{path}: not a readable HDF5 file (truncated or corrupted?): {exc}") from None
    try:
        return _dataset_info(f, path)
    except (OSError, RuntimeError, KeyError, TypeError) as exc:
        raise DatasetError(f"{path}: the file's structure cannot be read (corrupted?): {type(exc).__name__}: {exc}") from None
    finally:
        f.close()


def _dataset_info(f, path: pathlib.Path) -> dict:
    if True:
        attrs = dict(f.attrs)
        if attrs.get("schema") != SCHEMA:
            raise DatasetError(f"{path}: schema = {attrs.get('schema')!r}; expected {SCHEMA!r} "
                               "(not a diffcalo cluster dataset)")
        version = attrs.get("schema_version")
        version = version.item() if isinstance(version, np.generic) else version
        if version not in READABLE_VERSIONS:
            raise DatasetError(f"{path}: schema_version = {version!r}; this diffcalo reads versions "
                               f"{READABLE_VERSIONS}")
        if not bool(attrs.get("complete", False)):
            raise DatasetError(f"{path}: incomplete (the writer did not finish)")
        try:
            n = int(attrs.get("n_clusters", -1))
        except (TypeError, ValueError, OverflowError):
            raise DatasetError(f"{path}: the 'n_clusters' attribute = {attrs.get('n_clusters')!r} is not an integer") from None
        if n < 0:
            raise DatasetError(f"{path}: n_clusters = {n}; must be >= 0")
        if "clusters" not in f or not isinstance(f["clusters"], _h5py().Group):
            raise DatasetError(f"{path}: missing group 'clusters'")
        group = f["clusters"]
        shapes = {}
        for name, (dtype, ndim) in FIELDS.items():
            if name not in group and _ADDED_IN.get(name, 0) > version:
                continue
            if name not in group:
                raise DatasetError(f"{path}: missing field clusters/{name}")
            ds = group[name]
            if ds.dtype != np.dtype(dtype):
                raise DatasetError(f"{path}: clusters/{name} has dtype {ds.dtype}; expected {dtype}")
            if ds.ndim != 1 + ndim or ds.shape[0] != n:
                raise DatasetError(f"{path}: clusters/{name} has shape {ds.shape}; expected {n} clusters "
                                   f"and {ndim} trailing axes")
            shapes[name] = ds.shape
        if shapes["offset"][1:] != (2,) or shapes["cell_index"][1:] != (2,):
            raise DatasetError(f"{path}: offset and cell_index must be [N, 2]")
        extras = {}
        if "extras" in f:
            for name, ds in f["extras"].items():
                if not isinstance(ds, _h5py().Dataset) or ds.ndim < 1 or ds.shape[0] != n:
                    raise DatasetError(f"{path}: extras/{name} must be an array with {n} clusters first")
                extras[name] = ds.shape[1:]
    config = attrs.get("config", "{}")
    try:
        if isinstance(config, (bytes, np.bytes_)):
            config = bytes(config).decode()
        if not isinstance(config, str):
            raise TypeError(type(config).__name__)
        config = json.loads(config)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError, RecursionError):
        raise DatasetError(f"{path}: the 'config' attribute is not JSON text ({str(config)[:60]!r}); the file was "
                           "not written by diffcalo or was edited") from None
    if not isinstance(config, dict):
        raise DatasetError(f"{path}: the 'config' attribute must be a JSON object, not {type(config).__name__}")
    try:
        seed = int(attrs.get("seed", -1))
    except (TypeError, ValueError, OverflowError):
        raise DatasetError(f"{path}: the 'seed' attribute = {attrs.get('seed')!r} is not an integer") from None
    return dict(n_clusters=n, schema_version=version, energy_shape=shapes["energy"][1:], seed=seed,
                config=config, diffcalo_version=attrs.get("diffcalo_version"), path=path, extras=extras)


def iter_clusters(path, *, chunk_size: int = 65536, check_values: bool = True) -> Iterator:
    """Yield the dataset as :class:`~diffcalo.clusters.Clusters` batches of ``chunk_size`` clusters.

    Each batch is checked for non-finite values in energy and truth (``check_values``).
    """
    from diffcalo.simulation import Clusters

    info = dataset_info(path)
    h5py = _h5py()
    n = info["n_clusters"]
    signed = info["config"].get("mode") == "relaxed"
    n_regions = _regions_of(info["config"])
    with h5py.File(path, "r") as f:
        group = f["clusters"]
        for start in range(0, n, chunk_size):
            stop = min(start + chunk_size, n)
            try:
                arrays = {name: group[name][start:stop] for name in FIELDS if name in group}
            except (OSError, RuntimeError, ValueError) as exc:
                raise DatasetError(f"{path}: clusters {start}-{stop} cannot be read (corrupted?): {exc}") from None
            if check_values:
                check_cluster_values(arrays, start, where=str(path), signed_cells=signed,
                                     n_regions=n_regions)
            if "centre" not in arrays:          # before version 3: the window centre from truth
                arrays["centre"] = (np.stack([arrays["x"], arrays["y"]], axis=1) - arrays["offset"]).astype(np.float32)
            for name, (dtype, _) in FIELDS.items():
                if name not in arrays:          # older schema: field unknown at the time
                    arrays[name] = np.full(stop - start, np.nan, dtype)
            yield Clusters(**{k: np.asarray(v) for k, v in arrays.items()})


def check_cluster_values(arrays: Mapping, start: int = 0, *, where: str = "clusters", signed_cells: bool = False,
                         n_regions: int | None = None) -> None:
    """Refuse impossible cluster contents with :class:`DatasetError` naming the field and the first bad
    cluster: non-finite energies, times or truth; a true energy <= 0; negative cell energies (except
    in relaxed-mode data, ``signed_cells``, whose smooth noise is signed); a region index < 0 or not
    in the layout (``n_regions``); an unsupported particle id."""
    from diffcalo.particles import SUPPORTED_PIDS

    n = len(arrays["energy"])

    def refuse(name, mask, what):
        bad = np.flatnonzero(mask)
        if bad.size:
            i = int(bad[0])
            value = np.asarray(arrays[name][i])
            shown = f"{value.item()!r}" if value.ndim == 0 else f"smallest cell {value.min():.4g}"
            raise DatasetError(f"{where}: clusters/{name}[{start + i}] {what} (value {shown}; {bad.size} of clusters "
                               f"{start}-{start + n - 1})")

    for name in _FINITE:
        if name in arrays:
            refuse(name, ~np.isfinite(np.asarray(arrays[name]).reshape(n, -1)).all(axis=1), "is not finite")
    refuse("e_true", np.asarray(arrays["e_true"]) <= 0, "is not > 0: a true energy must be > 0 GeV")
    if not signed_cells:
        refuse("energy", (np.asarray(arrays["energy"]).reshape(n, -1) < 0).any(axis=1),
               "has a negative cell energy (only relaxed-mode data may have signed cells)")
    region = np.asarray(arrays["region"])
    refuse("region", region < 0, "is negative: region indices are >= 0")
    if n_regions is not None:
        refuse("region", region >= n_regions, f"is not a region of the dataset's layout (0..{n_regions - 1})")
    refuse("pid", ~np.isin(np.asarray(arrays["pid"]), SUPPORTED_PIDS), f"is not a supported particle id {SUPPORTED_PIDS}")


def _regions_of(config: Mapping) -> int | None:
    """Number of regions of the layout a dataset's simulation config describes (None if unknown)."""
    layout = config.get("layout")
    if isinstance(layout, str):
        from diffcalo.layout import PRESETS, preset

        return len(preset(layout).regions) if layout in PRESETS else None
    if isinstance(layout, dict) and isinstance(layout.get("regions"), list):
        return len(layout["regions"])
    return None


def read_clusters(path, *, check_values: bool = True):
    """Read a whole dataset (validated) into one :class:`~diffcalo.clusters.Clusters` of numpy arrays."""
    from diffcalo.simulation import Clusters

    return Clusters.concatenate(list(iter_clusters(path, check_values=check_values)))


def read_extras(path, names=None) -> dict[str, np.ndarray]:
    """The dataset's ``extras`` arrays (all, or ``names``); {} when it has none.

    Raises:
        DatasetError: as :func:`dataset_info`, or a requested name that is not there.
    """
    info = dataset_info(path)
    wanted = list(info["extras"]) if names is None else list(names)
    missing = [k for k in wanted if k not in info["extras"]]
    if missing:
        raise DatasetError(f"{path}: no extras {missing}; it has {sorted(info['extras']) or 'none'}")
    h5py = _h5py()
    with h5py.File(path, "r") as f:
        try:
            return {k: f["extras"][k][...] for k in wanted}
        except (OSError, RuntimeError, ValueError) as exc:
            raise DatasetError(f"{path}: extras cannot be read (corrupted?): {exc}") from None


def import_calochallenge(src, dst, *, layers: int, ny: int, nx: int, cell_size_mm: float,
                         pid: int = 22, energy_unit: str = "MeV", chunk_size: int = 4096,
                         overwrite: bool = False) -> pathlib.Path:
    """Convert a CaloChallenge-style file into a diffcalo dataset.

    The source holds ``showers`` [N, voxels] and ``incident_energies`` [N, 1]; ``voxels`` must equal
    layers x ny x nx (the voxel order of the source: layer-major, then rows, then columns). Energies
    are converted to GeV. Impact points are unknown and set to the centre (x = y = 0), leakage to NaN.
    """
    h5py = _h5py()
    scale = {"MeV": 1e-3, "GeV": 1.0}.get(energy_unit)
    if scale is None:
        raise ValueError(f"energy_unit = {energy_unit!r}: allowed 'MeV' or 'GeV'")
    src = pathlib.Path(src)
    try:
        f = h5py.File(src, "r")
    except OSError as exc:
        raise DatasetError(f"{src}: not a readable HDF5 file: {exc}") from None
    with f:
        for key in ("showers", "incident_energies"):
            if key not in f:
                raise DatasetError(f"{src}: missing dataset {key!r}; found {sorted(f.keys())}")
        showers, inc = f["showers"], f["incident_energies"]
        n, voxels = showers.shape
        if voxels != layers * ny * nx:
            raise DatasetError(f"{src}: showers have {voxels} voxels; layers x ny x nx = {layers} x {ny} x {nx} "
                               f"= {layers * ny * nx}")
        if inc.shape[0] != n:
            raise DatasetError(f"{src}: incident_energies has {inc.shape[0]} rows for {n} showers")
        with DatasetWriter(dst, config=dict(imported_from=str(src), format="calochallenge", layers=layers,
                                            ny=ny, nx=nx, cell_size_mm=cell_size_mm, energy_unit=energy_unit),
                           chunk_size=chunk_size, overwrite=overwrite) as w:
            for start in range(0, n, chunk_size):
                stop = min(start + chunk_size, n)
                m = stop - start
                e = np.asarray(showers[start:stop], dtype=np.float64).reshape(m, layers, ny, nx) * scale
                e_true = np.asarray(inc[start:stop], dtype=np.float64).reshape(m) * scale
                zeros = np.zeros(m, np.float32)
                w.append(dict(energy=e.astype(np.float32), time=np.zeros(e.shape, np.float32), e_true=e_true.astype(np.float32), x=zeros, y=zeros,
                              tx=zeros, ty=zeros, pid=np.full(m, pid, np.int32), offset=np.zeros((m, 2), np.float32), centre=np.zeros((m, 2), np.float32),
                              cell_index=np.full((m, 2), -1, np.int32), cell_size_mm=np.full(m, cell_size_mm, np.float32),
                              region=np.zeros(m, np.int32), status=np.zeros(m, np.int32),
                              leakage=np.full(m, np.nan, np.float32), n_background=np.zeros(m, np.int32),
                              t_true=np.full(m, np.nan, np.float32)))
    return pathlib.Path(dst)


def _as_arrays(clusters) -> dict[str, np.ndarray]:
    if dataclasses.is_dataclass(clusters):
        clusters = {f.name: getattr(clusters, f.name) for f in dataclasses.fields(clusters)}
    missing = [k for k in FIELDS if k not in clusters]
    if missing:
        raise ValueError(f"append: missing fields {missing}")
    out = {k: np.asarray(clusters[k]).astype(FIELDS[k][0], copy=False) for k in FIELDS}
    n = out["energy"].shape[0]
    for k, a in out.items():
        if a.ndim != 1 + FIELDS[k][1] or a.shape[0] != n:
            raise ValueError(f"append: {k} has shape {a.shape}; expected {n} clusters and {FIELDS[k][1]} trailing axes")
    return out


def _version() -> str:
    from diffcalo import __version__

    return __version__
