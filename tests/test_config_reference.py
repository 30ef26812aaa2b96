"""The configuration reference page and the example configs cannot drift from the loaders."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest

from diffcalo import config_reference as ref
from diffcalo.config import RecoConfig, SimulationConfig, load_reco_config, load_simulation_config
from diffcalo.examples import NAMES, path
from diffcalo.layout import Layout, Region
from diffcalo.reco import ModelConfig, TrainConfig
from diffcalo.study.config import StudyConfig, load_study_config

PAGE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
KEYS = dict(simulation=ref.simulation_keys(), reco=ref.reco_keys(), study=ref.study_keys())


def test_page_is_the_generated_reference():
    assert PAGE.read_text(encoding="utf-8") == ref.render(), \
        "docs/configuration.md is stale: run `python -m diffcalo.config_reference docs/configuration.md`"


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_every_field_of_every_config_is_documented():
    attrs = {name: {k.attr for k in keys if k.attr} for name, keys in KEYS.items()}
    assert _fields(SimulationConfig) == attrs["simulation"]
    layout_keys = {k.key.split(".")[-1] for k in KEYS["simulation"] if k.key.startswith("layout.") and "[]" not in k.key}
    assert _fields(Layout) <= layout_keys
    assert _fields(Region) == {k.key.split(".")[-1] for k in KEYS["simulation"] if k.key.startswith("layout.regions[].")}
    assert _fields(StudyConfig) == attrs["study"]
    reco = attrs["reco"]
    assert {a.split(".")[0] for a in reco} == _fields(RecoConfig)
    assert {a.split(".")[1] for a in reco if a.startswith("model.")} == _fields(ModelConfig)
    assert {a.split(".")[2] for a in reco if a.startswith("train.")} == _fields(TrainConfig)


def _file_with(key: ref.Key, value_text: str, fmt: str) -> str:
    """A config file setting one documented key."""
    section, _, name = key.key.rpartition(".")
    if fmt == "reco" and section == "reco":
        return f"[reco]\n{name} = {value_text}\n"
    return f"[{section}]\n{name} = {value_text}\n" if section else f"{name} = {value_text}\n"


@pytest.mark.parametrize("fmt", ["simulation", "reco", "study"])
def test_every_documented_key_is_read_by_its_loader_with_the_documented_default(fmt, tmp_path):
    loaders = dict(simulation=load_simulation_config, reco=load_reco_config, study=load_study_config)
    defaults = ref.defaults()[fmt]
    for key in KEYS[fmt]:
        if key.attr is None:
            continue
        default = ref.lookup(defaults, key.attr)
        if default is None:            # "not set": nothing to write
            continue
        file = tmp_path / f"{key.key}.toml"
        file.write_text(_file_with(key, ref._toml(default), fmt))
        assert ref.lookup(loaders[fmt](file), key.attr) == default, key.key


@pytest.mark.parametrize("name", NAMES)
def test_examples_load_with_the_real_loaders(name):
    loader = {"simulate.toml": load_simulation_config, "reco.toml": load_reco_config, "study.toml": load_study_config}
    config = loader[name](path(name))
    assert config is not None
    assert name in ref.EXAMPLES.values()


def test_simulation_example_layout_definition_loads_when_uncommented(tmp_path):
    text = path("simulate.toml").read_text()
    head, rest = text.split("[layout]\n", 1)
    block, tail = rest.split("[particles]", 1)
    definition = "\n".join(line[2:] for line in block.splitlines() if line.startswith("# ") and not line.startswith("# ..."))
    file = tmp_path / "definition.toml"
    file.write_text(head + "[layout]\n" + definition + "\n[particles]" + tail)
    config = load_simulation_config(file)
    assert isinstance(config.layout, dict) and len(config.build_layout().regions) == 2


def test_examples_are_package_data():
    import tomllib

    pyproject = tomllib.loads((PAGE.parent.parent / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["diffcalo"]
    assert "examples/*.toml" in patterns
