"""HDF5 datasets: round trip, streaming, validation errors, atomic writes under SIGKILL, import."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import jax
import numpy as np
import pytest

import diffcalo as dc
from diffcalo.io import (
    FIELDS,
    DatasetError,
    DatasetWriter,
    dataset_info,
    import_calochallenge,
    iter_clusters,
    read_clusters,
    write_clusters,
)


@pytest.fixture(scope="module")
def clusters():
    det = dc.Detector.from_layout(dc.layout.lhcb_upgrade2_baseline())
    p = dc.gun(jax.random.key(0), 300, det.layout, region="spacal-w")
    return dc.simulate(det, p, key=jax.random.key(1), mode="realistic")


def _equal(a, b):
    for name in FIELDS:
        np.testing.assert_array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)), err_msg=name)


def test_round_trip_is_bit_exact_with_config_and_seed(tmp_path, clusters):
    path = write_clusters(tmp_path / "a.h5", clusters, config={"layout": "lhcb-upgrade2-baseline", "n": 300},
                          seed=7, chunk_size=64)
    _equal(read_clusters(path), clusters)
    info = dataset_info(path)
    assert info["n_clusters"] == 300 and info["energy_shape"] == (2, 5, 5)
    assert info["seed"] == 7 and info["config"] == {"layout": "lhcb-upgrade2-baseline", "n": 300}
    with h5py.File(path) as f:
        ds = f["clusters/energy"]
        assert ds.chunks[0] == 64 and ds.compression == "gzip" and ds.fletcher32


def test_streaming_in_small_chunks(tmp_path, clusters):
    path = tmp_path / "s.h5"
    with DatasetWriter(path, chunk_size=50) as w:
        for start in range(0, 300, 70):
            w.append(jax.tree_util.tree_map(lambda a: a[start:start + 70], clusters))
    parts = list(iter_clusters(path, chunk_size=33))
    assert [p.n for p in parts] == [33] * 9 + [3]
    joined = jax.tree_util.tree_map(lambda *a: np.concatenate(a), *parts)
    _equal(joined, clusters)


def test_same_data_and_seed_give_identical_files(tmp_path, clusters):
    a = write_clusters(tmp_path / "a.h5", clusters, config={"k": 1}, seed=3)
    b = write_clusters(tmp_path / "b.h5", clusters, config={"k": 1}, seed=3)
    assert a.read_bytes() == b.read_bytes()


def test_truncated_and_corrupted_files(tmp_path, clusters):
    path = write_clusters(tmp_path / "t.h5", clusters)
    data = path.read_bytes()
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="trunc.h5: not a readable HDF5 file"):
        read_clusters(trunc)
    # flip bytes inside the energy data: the Fletcher-32 checksum catches it
    with h5py.File(path) as f:
        offset = f["clusters/energy"].id.get_chunk_info(0).byte_offset
    bad = bytearray(data)
    bad[offset + 100: offset + 116] = b"\xff" * 16
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(bytes(bad))
    with pytest.raises(DatasetError, match=r"corrupt.h5: clusters 0-\d+ cannot be read \(corrupted\?\)"):
        read_clusters(corrupt)
    with pytest.raises(DatasetError, match="no such file"):
        read_clusters(tmp_path / "missing.h5")


def test_version_1_file_reads_without_time_truth(tmp_path, clusters):
    path = write_clusters(tmp_path / "v1.h5", clusters)
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = 1
        del f["clusters/t_true"]
    back = read_clusters(path)
    assert np.isnan(back.t_true).all()
    np.testing.assert_array_equal(back.energy, np.asarray(clusters.energy))
    # a version-2 file without t_true is damaged, not old
    path = write_clusters(tmp_path / "v2.h5", clusters)
    with h5py.File(path, "a") as f:
        del f["clusters/t_true"]
    with pytest.raises(DatasetError, match="missing field clusters/t_true"):
        read_clusters(path)


def test_version_2_file_reads_the_window_centre_from_truth(tmp_path, clusters):
    """Before version 3 the window centre was not stored: it reads as impact point minus offset, which is
    what the simulator stores as ``centre`` (checked on the fixture's simulated clusters)."""
    ok = np.asarray(clusters.status) == 0
    from_truth = np.stack([np.asarray(clusters.x), np.asarray(clusters.y)], axis=1) - np.asarray(clusters.offset)
    np.testing.assert_allclose(np.asarray(clusters.centre)[ok], from_truth[ok], atol=1e-3)
    assert ok.sum() > 10
    path = write_clusters(tmp_path / "v2.h5", clusters)
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = 2
        del f["clusters/centre"]
    back = read_clusters(path)
    np.testing.assert_allclose(back.centre, from_truth.astype(np.float32), atol=1e-3)


def test_time_truth_is_the_flight_time(clusters):
    ok = np.asarray(clusters.status) == 0
    z = dc.layout.lhcb_upgrade2_baseline().z_mm
    flight = np.sqrt(np.asarray(clusters.x) ** 2 + np.asarray(clusters.y) ** 2 + z ** 2)
    np.testing.assert_allclose(np.asarray(clusters.t_true)[ok], flight[ok] / 299.792458, rtol=1e-6)


def test_wrong_schema_version_missing_field_and_nan(tmp_path, clusters):
    path = write_clusters(tmp_path / "v.h5", clusters)
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(DatasetError, match=r"schema_version = 99; this diffcalo reads versions \(1, 2, 3\)"):
        read_clusters(path)
    path = write_clusters(tmp_path / "m.h5", clusters)
    with h5py.File(path, "a") as f:
        del f["clusters/e_true"]
    with pytest.raises(DatasetError, match="missing field clusters/e_true"):
        read_clusters(path)
    path = write_clusters(tmp_path / "n.h5", clusters)
    with h5py.File(path, "a") as f:
        f["clusters/energy"][17, 0, 2, 2] = np.nan
    with pytest.raises(DatasetError, match=r"clusters/energy\[17\] is not finite"):
        read_clusters(path)
    with pytest.raises(FileExistsError, match="exists; pass overwrite=True"):
        write_clusters(path, clusters)


_WRITER = textwrap.dedent("""
    import sys, time, numpy as np
    from diffcalo.io import DatasetWriter, FIELDS
    n = 100
    trailing = {0: (), 1: (2,), 3: (2, 5, 5)}
    batch = {k: np.zeros((n,) + trailing[nd], dtype=d) for k, (d, nd) in FIELDS.items()}
    with DatasetWriter(sys.argv[1], overwrite=True, chunk_size=50) as w:
        for i in range(10_000):
            w.append(batch)
            if i == 3:
                print("writing", flush=True)
            time.sleep(0.01)
""")


@pytest.mark.parametrize("existing", [False, True])
def test_writer_killed_midway_leaves_no_partial_file(tmp_path, clusters, existing):
    path = tmp_path / "k.h5"
    if existing:
        write_clusters(path, clusters)
        before = path.read_bytes()
    with subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout.readline().strip() == "writing"
        time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    if existing:
        assert path.read_bytes() == before
        _equal(read_clusters(path), clusters)
    else:
        assert not path.exists()
    # the temporary file is hidden and never mistaken for a dataset
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "k.h5"]
    assert all(n.startswith(".k.h5.tmp-") for n in leftovers)


def test_failed_writer_removes_its_temporary(tmp_path, clusters):
    path = tmp_path / "f.h5"
    with pytest.raises(RuntimeError, match="boom"):
        with DatasetWriter(path) as w:
            w.append(clusters)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_import_calochallenge(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "cc.h5"
    showers = rng.exponential(50.0, size=(30, 3 * 4 * 5)).astype(np.float32)     # MeV
    with h5py.File(src, "w") as f:
        f["showers"] = showers
        f["incident_energies"] = np.linspace(1000, 30000, 30, dtype=np.float32)[:, None]
    dst = import_calochallenge(src, tmp_path / "cc-diffcalo.h5", layers=3, ny=4, nx=5, cell_size_mm=10.0,
                               chunk_size=8)
    c = read_clusters(dst)
    assert c.energy.shape == (30, 3, 4, 5)
    np.testing.assert_allclose(c.energy.reshape(30, -1), showers / 1000.0, rtol=1e-6)
    np.testing.assert_allclose(c.e_true, np.linspace(1, 30, 30), rtol=1e-6)
    assert np.all(np.isnan(c.leakage))
    assert json.loads(json.dumps(dataset_info(dst)["config"]))["format"] == "calochallenge"
    with pytest.raises(DatasetError, match="showers have 60 voxels; layers x ny x nx = 2 x 4 x 5 = 40"):
        import_calochallenge(src, tmp_path / "x.h5", layers=2, ny=4, nx=5, cell_size_mm=10.0)
