"""Fuzzing every input boundary: config files (simulate, reco, study), sweep design files, HDF5 datasets
and study journals. Each document is built from the real schema (a valid example), then mutated:
values replaced by wrong types, 0, negatives, NaN, inf, huge numbers; keys deleted or added; bytes
flipped. Every case must end in the library's own error (naming the file and, for a changed value,
the key) or in a valid input: never another exception.

The default run uses a fixed set of examples (``derandomize``) that fits in the test budget; the long
profile draws fresh ones::

    DIFFCALO_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/test_fuzz.py
"""

from __future__ import annotations

import copy
import json
import math
import os
import sqlite3
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffcalo.config import ConfigError, load_reco_config, load_simulation_config
from diffcalo.errors import DiffcaloError
from diffcalo.io import DatasetError, read_clusters, write_clusters
from diffcalo.study.config import load_study_config
from diffcalo.study.journal import Journal, JournalError

EXAMPLES = int(os.environ.get("DIFFCALO_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=EXAMPLES or 100, derandomize=not EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

# ---- documents from the real schema -------------------------------------------------------------------------
SIMULATION = {
    "seed": 3, "batch": 500,
    "layout": {"name": "wall", "module_mm": 121.2, "modules_x": 8, "modules_y": 6, "beam_hole": [2, 2], "z_mm": 12620.0,
               "regions": [{"name": "inner", "technology": "spacal-w", "cell_size_mm": 15.15, "modules_x": 4,
                            "modules_y": 4},
                           {"name": "outer", "technology": "shashlik", "cell_size_mm": 60.6, "modules_x": 8,
                            "modules_y": 6, "sections": 1}]},
    "particles": {"n": 1000, "pid": 22, "energy": {"kind": "log-uniform", "low": 2.0, "high": 100.0},
                  "region": "inner", "direction": "from-ip"},
    "simulation": {"mode": "realistic", "window": 5, "depth_nodes": 4},
    "pileup": {"collisions": 40.0, "max_background": 12},
}
RECO = {"reco": {"tasks": ["energy", "position"], "validation_fraction": 0.2,
                 "model": {"conv": [8, 8], "dense": [16, 8]},
                 "train": {"loss": "mse", "epochs": 3, "batch_size": 64, "learning_rate": 0.001,
                           "time": {"loss": "huber"}}}}
STUDY = {
    "study": {"name": "fuzz", "seed": 0, "figure_of_merit": "pi0_width", "collisions": 40.0},
    "wall": {"layout": "lhcb-upgrade2-baseline"},
    "design": {"regions": 3, "options": ["spacal-w:15.15", "shashlik:40.4", "shashlik:121.2"], "max_ring": 12,
               "split": True},
    "budget": {"total": 16100.0},
    "samples": {"train_photons": 6000, "signal_decays": 3000, "photon_energy": [1.0, 100.0]},
    "reco": {"epochs": 6, "batch_size": 256},
    "optimizer": {"kind": "gp", "evaluations": 12, "batch": 2, "initial": 6},
    "executor": {"kind": "inprocess", "workers": 1, "scheduler": ""},
}

MUTANTS = st.one_of(
    st.sampled_from([0, -1, 1, 2, 7, 2 ** 31, 2 ** 62, -(2 ** 62), 10 ** 30, -(10 ** 400), 0.0, -0.5, 0.5, 1e-300, 1e300, -1e300,
                     math.nan, math.inf, -math.inf, "", "x", "2", "1e3", "nan", "from-ip", "realistic", True, False,
                     [], [1], [1.0, 2.0], ["a"], [[1]], [math.nan, 1.0], {}, {"a": 1}, {"kind": "uniform"}]),
    st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
)


# ---- a minimal TOML writer (tomllib only reads) ----------------------------------------------------------------
def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_string(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def _toml_string(s: str) -> str:
    """A TOML basic string: JSON escapes for the BMP, raw characters beyond it, DEL escaped."""
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def to_toml(doc: dict, prefix: str = "") -> str:
    lines = [f"{_toml_string(k)} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for k, v in doc.items():
        if isinstance(v, dict):
            name = f"{prefix}.{_toml_string(k)}" if prefix else _toml_string(k)
            lines += ["", f"[{name}]", to_toml(v, name)]
    return "\n".join(lines)


# ---- mutations ---------------------------------------------------------------------------------------------------
def _paths(doc, prefix=()):
    items = doc.items() if isinstance(doc, dict) else enumerate(doc)
    for k, v in items:
        yield prefix + (k,)
        if isinstance(v, (dict, list)):
            yield from _paths(v, prefix + (k,))


def _parent(doc, path):
    for k in path[:-1]:
        doc = doc[k]
    return doc


@st.composite
def mutated(draw, base: dict):
    """(document, the path changed or None, the kind of change)."""
    doc = copy.deepcopy(base)
    path = draw(st.sampled_from(sorted(_paths(doc), key=str)))
    kind = draw(st.sampled_from(["value", "value", "value", "delete", "unknown"]))
    parent = _parent(doc, path)
    if kind == "value":
        parent[path[-1]] = draw(MUTANTS)
    elif kind == "delete":
        if isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    else:
        target = parent[path[-1]] if isinstance(parent[path[-1]], dict) else (parent if isinstance(parent, dict) else doc)
        target["zz_unknown"] = draw(MUTANTS)
    return doc, path, kind


def _check_config_error(exc: ConfigError, file: Path, path, kind) -> None:
    msg = str(exc)
    assert msg.startswith(f"{file}: "), msg
    if kind == "value":
        names = [str(k) for k in path if isinstance(k, str)]
        assert any(n in msg for n in names), (path, msg)


def _write(tmp: Path, text: str) -> Path:
    p = tmp / "config.toml"
    p.write_text(text)
    return p


def _fuzz_config(loader, base, doc_path_kind):
    doc, path, kind = doc_path_kind
    with tempfile.TemporaryDirectory() as d:
        file = _write(Path(d), to_toml(doc))
        try:
            loader(file)
        except ConfigError as exc:
            _check_config_error(exc, file, path, kind)


def test_the_base_documents_are_valid(tmp_path):
    load_simulation_config(_write(tmp_path, to_toml(SIMULATION)))
    load_reco_config(_write(tmp_path, to_toml(RECO)))
    load_study_config(_write(tmp_path, to_toml(STUDY)))


@FUZZ
@given(mutated(SIMULATION))
def test_fuzz_simulation_configs(case):
    _fuzz_config(load_simulation_config, SIMULATION, case)


@FUZZ
@given(mutated(RECO))
def test_fuzz_reco_configs(case):
    _fuzz_config(load_reco_config, RECO, case)


@FUZZ
@given(mutated(STUDY))
def test_fuzz_study_configs(case):
    _fuzz_config(load_study_config, STUDY, case)


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_config_bytes(data):
    with tempfile.TemporaryDirectory() as d:
        file = Path(d) / "c.toml"
        file.write_bytes(data)
        for loader in (load_simulation_config, load_reco_config, load_study_config):
            try:
                loader(file)
            except ConfigError as exc:
                assert str(exc).startswith(f"{file}: ")


# ---- sweep design files ---------------------------------------------------------------------------------------------
DESIGNS = [{"option_0": "spacal-w:15.15", "option_1": "shashlik:40.4", "option_2": "shashlik:121.2", "ring_0": 2,
            "ring_1": 4, "split": True},
           {"option_0": "shashlik:40.4", "option_1": "shashlik:40.4", "option_2": "shashlik:121.2", "ring_0": 1,
            "ring_1": 1, "split": False}]
_SPACE = {}


def _space():
    if not _SPACE:
        from diffcalo.study.config import study_config_from_dict
        from diffcalo.study.design import design_space

        _SPACE["space"] = design_space(study_config_from_dict(STUDY))
    return _SPACE["space"]


@FUZZ
@given(st.one_of(mutated({"designs": DESIGNS}).map(lambda c: (json.dumps(c[0]["designs"] if "designs" in c[0]
                                                                          else c[0]), c)),
                 st.binary(max_size=80).map(lambda b: (b, None))))
def test_fuzz_design_files(case):
    from diffcalo.study.design import read_designs

    data, _ = case
    with tempfile.TemporaryDirectory() as d:
        file = Path(d) / "designs.json"
        file.write_bytes(data if isinstance(data, bytes) else data.encode())
        try:
            designs = read_designs(file, _space())
        except ConfigError as exc:
            assert str(exc).startswith(f"{file}: "), str(exc)
        else:
            assert all(_space().feasible(x) for x in designs)


# ---- HDF5 datasets ------------------------------------------------------------------------------------------------------
def _clusters(n=120, seed=0):
    rng = np.random.default_rng(seed)
    e = rng.exponential(0.5, size=(n, 2, 5, 5)).astype(np.float32)
    z = np.zeros(n, np.float32)
    return dict(energy=e, time=np.where(e > 0, 40.0, 0.0).astype(np.float32),
                e_true=rng.uniform(1, 50, n).astype(np.float32), x=z + 300, y=z + 200, tx=z + 0.02, ty=z + 0.01,
                pid=np.full(n, 22, np.int32), offset=np.zeros((n, 2), np.float32), centre=np.zeros((n, 2), np.float32) + 300,
                cell_index=np.ones((n, 2), np.int32),
                cell_size_mm=z + 15.15, region=(np.arange(n) % 4).astype(np.int32), status=np.zeros(n, np.int32),
                leakage=z, n_background=np.zeros(n, np.int32), t_true=z + 42.0)


_ATTRS = ["schema", "schema_version", "n_clusters", "config", "seed", "complete"]
_FIELD_NAMES = sorted(_clusters(2))
_BAD_VALUES = [0.0, -1.0, np.nan, np.inf, 1e30, 99, -5, 5]


@st.composite
def dataset_mutation(draw):
    kind = draw(st.sampled_from(["attr", "attr_delete", "field_delete", "field_dtype", "field_shape", "value",
                                 "bitflip"]))
    if kind in ("attr", "attr_delete"):
        return kind, draw(st.sampled_from(_ATTRS)), draw(MUTANTS.filter(lambda v: not isinstance(v, (dict, list))
                                                                       or v == [1]))
    if kind == "bitflip":
        return kind, draw(st.lists(st.integers(0, 10 ** 6), min_size=1, max_size=20)), None
    if kind == "value":
        return kind, (draw(st.sampled_from(_FIELD_NAMES)), draw(st.integers(0, 119))), draw(st.sampled_from(_BAD_VALUES))
    return kind, draw(st.sampled_from(_FIELD_NAMES)), None


def _apply(path: Path, mutation) -> None:
    kind, what, value = mutation
    if kind == "bitflip":
        raw = bytearray(path.read_bytes())
        for off in what:
            raw[off % len(raw)] ^= 0xFF
        path.write_bytes(bytes(raw))
        return
    with h5py.File(path, "a") as f:
        if kind == "attr":
            try:
                f.attrs[what] = value
            except (TypeError, ValueError, OverflowError):
                try:
                    f.attrs[what] = str(value)
                except ValueError:                  # h5py stores no NUL inside a string: leave it
                    pass
        elif kind == "attr_delete":
            del f.attrs[what]
        elif kind == "field_delete":
            del f[f"clusters/{what}"]
        elif kind == "field_dtype":
            data = f[f"clusters/{what}"][()]
            del f[f"clusters/{what}"]
            f[f"clusters/{what}"] = data.astype(np.float64 if data.dtype != np.float64 else np.int64)
        elif kind == "field_shape":
            data = f[f"clusters/{what}"][()]
            del f[f"clusters/{what}"]
            f[f"clusters/{what}"] = data[:-1]
        else:
            name, i = what
            ds = f[f"clusters/{name}"]
            row = ds[i]
            ds[i] = np.full_like(row, value) if np.issubdtype(ds.dtype, np.floating) or math.isfinite(value) and \
                float(value).is_integer() and abs(value) < 2 ** 31 else row


@FUZZ
@given(dataset_mutation())
def test_fuzz_datasets(mutation):
    from diffcalo.cli import main

    with tempfile.TemporaryDirectory() as d:
        path = write_clusters(Path(d) / "data.h5", _clusters(), config={"layout": "lhcb-upgrade2-baseline",
                                                                         "mode": "realistic"}, seed=1)
        _apply(path, mutation)
        try:
            c = read_clusters(path)
        except DatasetError as exc:
            assert str(exc).startswith(f"{path}: "), str(exc)
        else:                           # a valid file: what it holds passes the value checks
            assert (np.asarray(c.e_true) > 0).all() and np.isfinite(np.asarray(c.energy)).all()
            assert (np.asarray(c.energy) >= 0).all() and (np.asarray(c.region) >= 0).all()
        assert main(["inspect", str(path)]) in (0, 2)


def test_a_dataset_with_impossible_contents_is_refused_with_the_field_named(tmp_path):
    base = _clusters()
    cases = [("e_true", 7, 0.0, r"clusters/e_true\[7\] is not > 0"),
             ("energy", 3, -0.2, r"clusters/energy\[3\] has a negative cell energy"),
             ("region", 5, 9, r"clusters/region\[5\] is not a region of the dataset's layout \(0..3\)"),
             ("region", 6, -1, r"clusters/region\[6\] is negative"),
             ("time", 2, np.nan, r"clusters/time\[2\] is not finite")]
    for i, (name, row, value, message) in enumerate(cases):
        path = write_clusters(tmp_path / f"d{i}.h5", base, config={"layout": "lhcb-upgrade2-baseline", "mode": "realistic"})
        with h5py.File(path, "a") as f:
            ds = f[f"clusters/{name}"]
            r = ds[row]
            if np.ndim(r):
                r[..., 0] = value
            else:
                r = value
            ds[row] = r
        with pytest.raises(DatasetError, match=message):
            read_clusters(path)


# ---- journals ---------------------------------------------------------------------------------------------------------
_JOURNAL_SQL = [
    "UPDATE evaluations SET design = ? WHERE id = 1", "UPDATE evaluations SET metrics = ? WHERE id = 2",
    "UPDATE evaluations SET timings = ? WHERE id = 1", "UPDATE evaluations SET fom = ? WHERE id = 2",
    "UPDATE evaluations SET cost = ? WHERE id = 1", "UPDATE evaluations SET seed = ? WHERE id = 1",
    "UPDATE evaluations SET batch = ? WHERE id = 2", "UPDATE evaluations SET status = ? WHERE id = 1",
    "UPDATE meta SET value = ? WHERE key = 'config'", "UPDATE meta SET value = ? WHERE key = 'schema_version'",
    "UPDATE meta SET value = ? WHERE key = 'mode'", "DELETE FROM meta WHERE key = ?", "DELETE FROM evaluations WHERE id = ?",
]
_SQL_VALUES = st.one_of(st.sampled_from(["{", "null", "[]", "{}", "\"x\"", "1", "nan", "running", "done", "config",
                                         "schema", "2", "-1", "{\"a\": 1}", "", b"\x00\xff".hex()]),
                        st.integers(-5, 5), st.floats(allow_nan=True), st.none())
_JOURNAL = {}


def _journal_template() -> Path:
    if "path" not in _JOURNAL:
        from study_toys import toy_objective

        from diffcalo.study.config import study_config_from_dict
        from diffcalo.study.runner import run_study

        d = Path(tempfile.mkdtemp(prefix="diffcalo-fuzz-"))
        cfg = study_config_from_dict({"optimizer": {"kind": "random", "evaluations": 4}})
        run_study(cfg, d / "run", objective=toy_objective, progress=False, log=lambda *a: None).close()
        _JOURNAL.update(path=d / "run", cfg=cfg)
    return _JOURNAL["path"]


@FUZZ
@given(st.one_of(st.tuples(st.sampled_from(_JOURNAL_SQL), _SQL_VALUES),
                 st.lists(st.integers(0, 10 ** 6), min_size=1, max_size=30)))
def test_fuzz_journals(mutation):
    import shutil

    from study_toys import toy_objective

    from diffcalo.study.runner import run_study

    template = _journal_template()
    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / "run"
        shutil.copytree(template, run)
        path = run / "journal.sqlite"
        if isinstance(mutation, tuple):
            sql, value = mutation
            con = sqlite3.connect(path)
            try:
                con.execute(sql, (value,))
                con.commit()
            except sqlite3.IntegrityError:         # the schema's CHECK refuses the change: nothing to read
                pass
            finally:
                con.close()
        else:
            raw = bytearray(path.read_bytes())
            for off in mutation:
                raw[off % len(raw)] ^= 0xFF
            path.write_bytes(bytes(raw))
        try:
            with Journal.open(path) as j:
                j.records()
                j.counts()
                j.config
        except JournalError as exc:
            assert str(exc).startswith(f"{path}: "), str(exc)
        try:
            run_study(_JOURNAL["cfg"], run, resume=True, objective=toy_objective, progress=False,
                      log=lambda *a: None).close()
        except DiffcaloError as exc:
            assert str(path) in str(exc) or str(run) in str(exc), str(exc)
