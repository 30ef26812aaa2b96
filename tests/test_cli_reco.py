"""diffcalo train / evaluate from the command line, and reconstruction-config errors."""

import json

import jax
import pytest

import diffcalo as dc
from diffcalo.cli import main
from diffcalo.config import ConfigError, load_reco_config
from diffcalo.io import write_clusters

CONFIG = """
[reco]
tasks = ["energy", "position"]
[reco.model]
conv = [8, 8]
dense = [16]
[reco.train]
epochs = 2
[reco.train.position]
loss = "huber"
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, upgrade2):
    d = tmp_path_factory.mktemp("reco")
    out = []
    for seed, name in ((1, "train.h5"), (2, "test.h5")):
        p = dc.gun(jax.random.key(seed), 1500, upgrade2.layout, region="middle")
        out.append(write_clusters(d / name, dc.simulate(upgrade2, p, key=jax.random.key(seed + 3), mode="realistic")))
    (d / "reco.toml").write_text(CONFIG)
    return d


def test_train_then_evaluate_writes_metrics_and_figures(dataset, capsys):
    d = dataset
    assert main(["train", str(d / "reco.toml"), "--data", str(d / "train.h5"), "-o", str(d / "model"), "-q"]) == 0
    assert (d / "model" / "energy.msgpack").exists() and (d / "model" / "position.json").exists()
    assert main(["evaluate", str(d / "model"), "--data", str(d / "test.h5"), "-o", str(d / "eval")]) == 0
    out = capsys.readouterr().out
    assert "region 2 network" in out and "region 2 classical" in out
    m = json.loads((d / "eval" / "metrics.json").read_text())
    net, cl = m["2"]["network"], m["2"]["classical"]
    assert 0.0 < net["energy_rel"]["core"] < 0.2 and 0.0 < cl["energy_rel"]["core"] < 0.2
    assert (d / "eval" / "reco_region2.png").stat().st_size > 10_000


def test_train_refuses_a_dataset_of_another_shape(dataset, upgrade2, capsys, tmp_path):
    p = dc.gun(jax.random.key(4), 300, upgrade2.layout, region="middle")
    write_clusters(tmp_path / "w3.h5", dc.simulate(upgrade2, p, key=jax.random.key(5), window=3),
                   config=dict(mode="relaxed"))          # relaxed mode: signed cells are allowed
    rc = main(["train", str(dataset / "reco.toml"), "--data", str(dataset / "train.h5"), "--validation",
               str(tmp_path / "w3.h5"), "-o", str(tmp_path / "m"), "-q"])
    assert rc == 2
    assert "clusters of shape (2, 3, 3); the training data" in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("[reco]\ntasks = ['energy', 'mass']", r"reco.tasks = \['energy', 'mass'\]: a non-empty list of"),
    ("[reco.train]\nloss = 'l3'", r"reco.train.loss = 'l3': allowed: mse, mae, huber"),
    ("[reco.train.time]\noptimizer = 'lbfgs'", r"reco.train.time.optimizer = 'lbfgs': allowed: adam, adamw"),
    ("[reco.model]\nconv = [8, -1]", r"reco.model.conv\[1\] = -1: must be an integer in \[1, 4096\]"),
    ("[reco.model]\nbatch_norm = 'no'", r"reco.model.batch_norm = 'no': must be true or false"),
    ("[reco.train]\nseed = 100000000000000000000000000", r"reco.train.seed = 100000000000000000000000000: must be an integer"),
    ("[reco.model]\nwidth = 3", r"unknown key\(s\) \['width'\] in \[reco.model\]"),
    ("[reco]\nvalidation_fraction = 1.5", r"reco.validation_fraction = 1.5"),
    ("[training]\nepochs = 3", r"unknown top-level key\(s\) \['training'\]"),
])
def test_reco_config_errors_name_key_value_and_allowed(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_reco_config(path)


def test_reco_config_errors_name_the_table_that_holds_the_key(tmp_path):
    shared_typo = tmp_path / "a.toml"
    shared_typo.write_text('[reco]\ntasks = ["energy"]\n[reco.train]\nepoch = 3\n[reco.train.energy]\nloss = "mse"\n')
    with pytest.raises(ConfigError, match=r"\[reco.train\]: train: unknown option\(s\) \['epoch'\]"):
        load_reco_config(shared_typo)
    zero = tmp_path / "b.toml"
    zero.write_text("[reco]\n[reco.train]\nlearning_rate = 0\n")
    with pytest.raises(ConfigError, match=r"reco.train.learning_rate = 0: must be a finite number > 0"):
        load_reco_config(zero)
