"""Config validation and the simulate / inspect commands (datasets, determinism, plots)."""


import numpy as np
import pytest

from diffcalo.cli import main
from diffcalo.config import ConfigError, load_simulation_config
from diffcalo.io import dataset_info, read_clusters

CONFIG = """
seed = 5
batch = 150

[layout]
preset = "lhcb-upgrade2-baseline"

[particles]
n = 400
pid = 22
energy = { kind = "log-uniform", low = 2.0, high = 50.0 }
region = "spacal-pb"

[simulation]
mode = "realistic"
window = 5

[pileup]
collisions = 40
max_background = 12
"""


def _write(tmp_path, text, name="cfg.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_simulate_writes_a_dataset_and_is_deterministic(tmp_path, capsys):
    cfg = _write(tmp_path, CONFIG)
    assert main(["simulate", str(cfg), "-o", str(tmp_path / "a.h5"), "-q"]) == 0
    assert main(["simulate", str(cfg), "-o", str(tmp_path / "b.h5"), "-q"]) == 0
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()
    out = capsys.readouterr().out
    assert "wrote 400 clusters" in out and "background particles per window" in out
    info = dataset_info(tmp_path / "a.h5")
    assert info["n_clusters"] == 400 and info["seed"] == 5 and info["config"]["collisions"] == 40.0
    c = read_clusters(tmp_path / "a.h5")
    assert np.all(c.region == 1) and c.n_background.mean() > 1 and np.all(c.energy >= 0)
    # a different seed gives different data
    assert main(["simulate", str(_write(tmp_path, CONFIG.replace("seed = 5", "seed = 6"), "c.toml")),
                 "-o", str(tmp_path / "c.h5"), "-q"]) == 0
    assert not np.array_equal(read_clusters(tmp_path / "c.h5").energy, c.energy)
    # refuses to overwrite without --force
    assert main(["simulate", str(cfg), "-o", str(tmp_path / "a.h5"), "-q"]) == 2


def test_inspect_prints_a_summary_and_draws(tmp_path, capsys):
    cfg = _write(tmp_path, CONFIG)
    main(["simulate", str(cfg), "-o", str(tmp_path / "a.h5"), "-q"])
    assert main(["inspect", str(tmp_path / "a.h5"), "--plot", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    assert "400 clusters of shape (2, 5, 5)" in out and "background particles per window" in out
    for name in ("clusters.png", "occupancy.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 10_000
    assert main(["inspect", str(tmp_path / "missing.h5")]) == 2


@pytest.mark.parametrize("change, message", [
    (("mode = \"realistic\"", "mode = \"fast\""), "simulation.mode = 'fast': allowed: relaxed, realistic"),
    (("window = 5", "window = 4"), "simulation.window = 4: must be odd"),
    (("n = 400", "n = -3"), r"particles.n = -3: must be an integer in \[1, 10000000000\]"),
    (("kind = \"log-uniform\"", "kind = \"loguniform\""), "particles.energy.kind = 'loguniform': allowed"),
    (("preset = \"lhcb-upgrade2-baseline\"", "preset = \"lhcb\""), "layout.preset = 'lhcb': allowed"),
    (("collisions = 40", "collisions = -1"), r"pileup.collisions = -1: must be a finite number >= 0 and <= 200"),
    (("pid = 22", "pid = 211"), "particles.pid = 211: allowed"),
    (("[simulation]", "[simulaton]"), "unknown key 'simulaton'"),
    (("window = 5", "windw = 5"), r"unknown key\(s\) \['windw'\] in \[simulation\]"),
    (("low = 2.0, high = 50.0", "low = 50.0, high = 2.0"), "particles.energy = .*: need low < high"),
    (("low = 2.0, high = 50.0", "low = \"2\", high = 50.0"), "particles.energy.low = '2': must be a finite number > 0"),
    (("low = 2.0, high = 50.0", "low = 2.0, high = inf"), "particles.energy.high = inf: must be a finite number"),
    (("{ kind = \"log-uniform\", low = 2.0, high = 50.0 }", "{ kind = \"discrete\", values = 5 }"),
     "particles.energy.values = 5: a non-empty list of energies in GeV"),
    (("collisions = 40", "collisions = 1e12"), r"pileup.collisions = 1000000000000.0: must be a finite number >= 0 "
                                               r"and <= 200"),
    (("region = \"spacal-pb\"", "region = 1.5"), r"particles.region = 1.5: a region name or index"),
    (("region = \"spacal-pb\"", "region = \"edge\""), r"particles.region = 'edge': the layout's regions are"),
    (("mode = \"realistic\"", "mode = [\"realistic\"]"), r"simulation.mode = \['realistic'\]: allowed: relaxed"),
])
def test_config_errors_name_key_value_and_allowed(tmp_path, change, message):
    cfg = _write(tmp_path, CONFIG.replace(*change))
    with pytest.raises(ConfigError, match=message):
        load_simulation_config(cfg)


def test_a_layout_definition_with_a_nan_distance_is_refused(tmp_path):
    layout = """[layout]
name = "wall"
module_mm = 121.2
modules_x = 4
modules_y = 4
z_mm = nan
regions = [{ name = "all", technology = "shashlik", cell_size_mm = 60.6, modules_x = 4, modules_y = 4 }]
"""
    cfg = _write(tmp_path, layout + CONFIG.split("[particles]")[1].join(["[particles]", ""]).replace(
        "region = \"spacal-pb\"\n", ""))
    with pytest.raises(ConfigError, match=r"\[layout\]: layout .wall.: z_mm = nan: must be a finite number in \[0, 1e\+06\]"):
        load_simulation_config(cfg)


def test_config_file_problems(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_simulation_config(tmp_path / "none.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_simulation_config(_write(tmp_path, "[layout\npreset = 1"))


LAYOUT_DEFINITION = """
[layout]
name = "two-regions"
module_mm = 121.2
modules_x = 16
modules_y = 12
beam_hole = [2, 2]
z_mm = 12620.0
regions = [
  { name = "core", technology = "spacal-w", cell_size_mm = 15.15, modules_x = 6, modules_y = 4 },
  { name = "rest", technology = "shashlik", cell_size_mm = 40.4, modules_x = 16, modules_y = 12 },
]
"""


def test_layout_definition_in_a_config(tmp_path):
    text = CONFIG.replace('[layout]\npreset = "lhcb-upgrade2-baseline"\n', LAYOUT_DEFINITION).replace(
        'region = "spacal-pb"', 'region = "core"')
    cfg = load_simulation_config(_write(tmp_path, text))
    lay = cfg.build_layout()
    assert lay.name == "two-regions" and [lay.modules_in_region(i) for i in range(2)] == [20, 168]
    assert main(["simulate", str(_write(tmp_path, text)), "-o", str(tmp_path / "d.h5"), "-q"]) == 0
    assert np.all(read_clusters(tmp_path / "d.h5").region == 0)
    bad = text.replace('technology = "spacal-w"', 'technology = "lego"')
    with pytest.raises(ConfigError, match=r"\[layout\]: .*technology = 'lego': unknown; available"):
        load_simulation_config(_write(tmp_path, bad))
