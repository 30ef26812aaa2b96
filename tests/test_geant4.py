"""The offline Geant4 data directory (diffcalo.geant4.data): BREMX.DAT parsing and the Seltzer-Berger file
layout, clear errors; the full set-up when the geant4 extra is installed (skipped otherwise, saying so)."""

import importlib.util

import numpy as np
import pytest

from diffcalo.errors import ConfigError
from diffcalo.geant4 import data as g4data


def _fake_bremx(n_e=3, n_k=4):
    header = " ".join(f"w{i}" for i in range(37))
    t = np.geomspace(0.001, 10000.0, n_e)
    k = np.linspace(0.0, 1.0, n_k)
    values = [(z * 100 + i) for z in range(1, 101) for i in range(n_e * n_k)]
    return f"{header}\n{n_e} {n_k}\n" + " ".join(map(str, t)) + "\n" + " ".join(map(str, k)) + "\n" \
        + " ".join(map(str, values)) + "\n\x1a", t, k


def test_bremx_is_parsed_and_written_in_the_geant4_layout(tmp_path):
    text, t, k = _fake_bremx()
    t_mev, frac, tables = g4data.parse_bremx(text)
    np.testing.assert_allclose(t_mev, t)
    np.testing.assert_allclose(frac, k)
    assert sorted(tables) == list(range(1, 101)) and tables[74].shape == (3, 4)
    assert tables[74][1, 2] == 74 * 100 + 1 * 4 + 2                   # rows: electron energies
    g4data.write_brem_sb(t_mev, frac, tables, tmp_path)
    lines = (tmp_path / "brem_SB" / "br74").read_text().splitlines()
    assert lines[0] == "0 4 3"                                        # type, nx (k/T), ny (ln T)
    np.testing.assert_allclose([float(v) for v in lines[2].split()], np.log(t), rtol=1e-7)
    assert [float(v) for v in lines[4].split()] == [7404, 7405, 7406, 7407]
    with pytest.raises(ValueError, match="not the layout of BREMX.DAT"):
        g4data.parse_bremx(text + " 1 2 3")
    with pytest.raises(ValueError, match="not the layout of BREMX.DAT"):
        g4data.parse_bremx("too short")


def test_setup_errors_are_clear(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="not a Geant4 data directory made by 'diffcalo geant4 setup'"):
        g4data.environment(tmp_path)
    (tmp_path / "exists").mkdir()
    with pytest.raises(ConfigError, match="exists; add --force"):
        g4data.setup_data(tmp_path / "exists")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ConfigError, match=r"Geant4 is not installed: pip install -e '.\[geant4\]'"):
        g4data.setup_data(tmp_path / "new")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    wrong = tmp_path / "BREMX.DAT"
    wrong.write_text(_fake_bremx()[0])
    with pytest.raises(ConfigError, match="sha256 .* is not the expected"):
        g4data.setup_data(tmp_path / "new", bremx=wrong)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["BREMX.DAT", "exists"]      # nothing left behind


@pytest.mark.skipif(importlib.util.find_spec("geant4_pybind") is None,
                    reason="the geant4 extra is not installed (pip install -e '.[geant4]'): full set-up not tested")
def test_full_setup_with_geant4(tmp_path):
    out = g4data.setup_data(tmp_path / "g4", log=lambda *a: None)
    env = g4data.environment(out)
    assert set(env) == set(g4data.DATA_VARIABLES) | {"GEANT4_DATA_DIR"}
    led = out / "G4EMLOW-substitute"
    assert len(list((led / "brem_SB").iterdir())) == 100 and (out / "G4ENSDFSTATE-substitute" / "ENSDFSTATE.dat").exists()
    rows = (led / "epics2017" / "phot" / "pe-cs-74.dat").read_text().splitlines()[2:]
    e, v = np.array([[float(x) for x in r.split()] for r in rows]).T
    sigma = v / e ** 3                                                # barn
    k_edge = 0.0695                                                   # W K edge, MeV
    below, above = sigma[np.searchsorted(e, k_edge) - 3], sigma[np.searchsorted(e, k_edge) + 3]
    assert above > 3 * below                                          # the K edge is resolved
