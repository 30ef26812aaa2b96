"""Design studies: config validation, the design space, the runner's resilience and executor equivalence."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from diffcalo.config import ConfigError
from diffcalo.errors import StudyError
from diffcalo.study.config import load_study_config, parse_option, study_config_from_dict, study_config_from_flat
from diffcalo.study.design import design_space, layout_from_design
from diffcalo.study.executors import make_executor
from diffcalo.study.journal import Journal, JournalError
from diffcalo.study.runner import run_study

sys.path.insert(0, str(Path(__file__).parent))
from study_toys import failing_objective, noisy_toy_objective, toy_objective  # noqa: E402

TESTS = Path(__file__).parent


def _cfg(**sections):
    return study_config_from_dict({k: v for k, v in sections.items()})


# ---- config -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("[study]\nfigure_of_merit = 'resolution'", r"study.figure_of_merit = 'resolution': allowed: pi0_resolution, pi0_width, bs_significance"),
    ("[design]\noptions = ['pbwo4:22']", r"design.options = 'pbwo4:22': unknown technology 'pbwo4'"),
    ("[design]\noptions = ['shashlik:50']", r"technology 'shashlik' allows cell sizes \[40.4, 60.6, 121.2\] mm"),
    ("[design]\noptions = ['shashlik']", r"write each option as 'technology:cell_mm'"),
    ("[design]\nregions = 9", r"design.regions = 9: must be an integer in \[1, 5\]"),
    ("[design]\nsplit = 'yes'", r"design.split = 'yes': must be true or false"),
    ("[budget]\ntotal = -3", r"budget.total = -3: must be a finite number > 0 kCHF"),
    ("[study]\nfigure_of_merit = ['pi0_width']", r"study.figure_of_merit = \['pi0_width'\]: allowed: pi0_resolution, pi0_width"),
    ("[wall]\nlayout = ['lhcb-current']", r"wall.layout = \['lhcb-current'\]: allowed: lhcb-current"),
    ("[samples]\nphoton_energy = [1.0, inf]", r"samples.photon_energy\[1\] = inf: must be a finite number > 0"),
    ("[samples]\nphoton_energy = ['1', 10]", r"samples.photon_energy\[0\] = '1': must be a finite number > 0"),
    ("[samples]\ntrain_photons = 1000000000000", r"samples.train_photons = 1000000000000: must be an integer in "
                                                  r"\[600, 1000000\]"),
    ("[study]\ncollisions = 1e12", r"study.collisions = 1000000000000.0: must be a finite number >= 0 and <= 200"),
    ("[design]\noptions = [1.5]", r"design.options = 1.5: each option is a string"),
    ("[executor]\nworkers = 'two'", r"executor.workers = 'two': must be an integer in \[1, 1024\]"),
    ("[optimizer]\nkind = 'cma'", r"optimizer.kind = 'cma': allowed: gp, random"),
    ("[executor]\nkind = 'slurm'", r"executor.kind = 'slurm': allowed: inprocess, process, dask"),
    ("[optimiser]\nkind = 'gp'", r"unknown section \[optimiser\]"),
    ("[samples]\ntrain_photon = 3", r"unknown key\(s\) \['train_photon'\] in \[samples\]"),
    ("[samples]\nphoton_energy = [10, 1]", r"samples.photon_energy = \[10, 1\]: \[low, high\] in GeV"),
    ("[wall]\nlayout = 'atlas'", r"wall.layout = 'atlas': allowed: lhcb-current"),
    ("[optimizer]\nacquisition = 'pi'", r"optimizer.acquisition = 'pi': allowed: nei, log_ei, ucb"),
    ("[optimizer]\nreevaluate_top = -1", r"optimizer.reevaluate_top = -1: must be an integer in \[0, 1000\]"),
    ("[study]\nfigure_of_merit = 'bs_significance'\n[optimizer]\nnoise = 'known'",
     r"optimizer.noise = 'known': .*'learned' for study.figure_of_merit = 'bs_significance' \(it has no error estimate"),
    ("[design]\ncell_size_order = 'inward'", r"design.cell_size_order = 'inward': allowed: non-decreasing-outward, free"),
    ("[budget]\ntotal = 5000", r"budget.total = 5000 kCHF: no design of this space fits it; the cheapest, option "
                               r"'shashlik:121.2' in every region, costs 10930 kCHF"),
])
def test_study_config_errors_name_key_value_and_allowed(tmp_path, text, message):
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_study_config(path)
    assert str(info.value).startswith(f"{path}: ")           # the file is named too


def test_design_space_layouts_and_the_budget_constraint():
    cfg = _cfg(design=dict(regions=3), budget=dict(total=12000.0))
    space = design_space(cfg)
    assert [p.name for p in space.parameters] == ["option_0", "option_1", "option_2", "ring_0", "ring_1", "split"]
    d = dict(option_0="spacal-w:15.15", option_1="shashlik:40.4", option_2="shashlik:121.2", ring_0=2, ring_1=6,
             split=False)
    lay = layout_from_design(cfg, d)
    assert [(r.modules_x, r.modules_y) for r in lay.regions] == [(8, 8), (20, 18), (64, 52)]
    assert lay.regions[0].sections == 1
    assert space.feasible(d) == (lay.cost() <= 12000.0)
    assert not space.feasible(dict(d, ring_0=12, ring_1=12))          # fits the wall, over budget
    wide = _cfg(design=dict(regions=3, max_ring=30))
    too_big = dict(d, ring_0=20, ring_1=12)
    assert not design_space(wide).feasible(too_big)
    with pytest.raises(ValueError, match=r"region 1 \(68 x 56 modules\) does not fit inside the 64 x 52 wall"):
        layout_from_design(wide, too_big)
    for s in space.sample(50, rng=0):
        assert layout_from_design(cfg, s).cost() <= 12000.0


# ---- runner -----------------------------------------------------------------------------------------------
def test_failures_are_recorded_and_the_study_goes_on(tmp_path):
    cfg = _cfg(optimizer=dict(kind="random", evaluations=10))
    j = run_study(cfg, tmp_path / "run", objective=failing_objective, progress=False, log=lambda *a: None)
    c = j.counts()
    assert c["done"] + c["failed"] == 10 and c["failed"] >= 1
    failed = j.records("failed")[0]
    assert failed["error"] == "FloatingPointError: NaN training loss" and failed["design"]["ring_0"] % 2 == 1


def test_a_study_killed_with_sigkill_resumes_to_exactly_the_planned_evaluations(tmp_path):
    run = tmp_path / "run"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        from study_toys import toy_objective
        from diffcalo.study.config import study_config_from_dict
        from diffcalo.study.runner import run_study
        cfg = study_config_from_dict({{"optimizer": {{"evaluations": 14, "initial": 4}}}})
        run_study(cfg, {str(run)!r}, objective=toy_objective, progress=False, resume={{resume}})
    """)
    env = dict(os.environ, TOY_SLEEP="0.25")
    proc = subprocess.Popen([sys.executable, "-c", script.replace("{resume}", "False")], env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.2)
        if (run / "journal.sqlite").exists():
            with Journal.open(run / "journal.sqlite") as j:
                if j.counts()["done"] >= 5:
                    break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with Journal.open(run / "journal.sqlite") as j:
        before = j.counts()
    assert 5 <= before["done"] < 14
    subprocess.run([sys.executable, "-c", script.replace("{resume}", "True")], env=env, check=True)
    with Journal.open(run / "journal.sqlite") as j:
        recs, config = j.records(), j.config
        assert j.counts() == {"pending": 0, "running": 0, "done": 14, "failed": 0}
    assert len(recs) == 14 and [r["id"] for r in recs] == list(range(1, 15))
    keys = {json.dumps(r["design"], sort_keys=True) for r in recs}
    assert len(keys) == 14                                   # no design evaluated twice
    assert all(r["fom"] == toy_objective(study_config_from_flat(config), r["design"], 0)["fom"] for r in recs)


def test_resume_refuses_a_corrupted_journal_and_a_changed_config(tmp_path):
    cfg = _cfg(optimizer=dict(kind="random", evaluations=3))
    run_study(cfg, tmp_path / "ok", objective=toy_objective, progress=False).close()
    with pytest.raises(StudyError, match="the study config differs"):
        run_study(_cfg(optimizer=dict(kind="random", evaluations=4)), tmp_path / "ok", resume=True,
                  objective=toy_objective, progress=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "journal.sqlite").write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(JournalError, match="not a SQLite file"):
        run_study(cfg, bad, resume=True, objective=toy_objective, progress=False)


def _sweep_designs(cfg, n=6):
    return design_space(cfg).sample(n, rng=3, method="lhs")


def _journal_rows(j):
    return [(r["id"], r["status"], json.dumps(r["design"], sort_keys=True), r["fom"], r["cost"],
             json.dumps(r["metrics"], sort_keys=True)) for r in j.records()]


def test_inprocess_process_pool_and_dask_give_identical_journals(tmp_path):
    pytest.importorskip("distributed")
    cfg = _cfg(optimizer=dict(evaluations=6))
    designs = _sweep_designs(cfg)
    rows = {}
    for kind in ("inprocess", "process", "dask"):
        ex = make_executor(kind, workers=2)
        try:
            j = run_study(cfg, tmp_path / kind, designs=designs, objective=toy_objective, executor=ex, progress=False)
        finally:
            ex.close()
        rows[kind] = _journal_rows(j)
        j.close()
    assert rows["inprocess"] == rows["process"] == rows["dask"]
    assert len(rows["dask"]) == 6


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity control on this OS")
@pytest.mark.parametrize("kind", ["process", "dask"])
def test_local_workers_are_pinned_to_one_cpu_each(tmp_path, kind):
    """XLA sizes its thread pool from the CPU affinity (its thread-count flags are ignored), so each
    worker of a local pool / LocalCluster is pinned to its own CPU: no oversubscription."""
    if kind == "dask":
        pytest.importorskip("distributed")
    from study_toys import affinity_objective

    cfg = _cfg(optimizer=dict(evaluations=6))
    ex = make_executor(kind, workers=2)
    try:
        j = run_study(cfg, tmp_path / "run", designs=_sweep_designs(cfg, 6), objective=affinity_objective,
                      executor=ex, progress=False, log=lambda *a: None)
    finally:
        ex.close()
    per_worker = {r["worker"]: tuple(r["metrics"]["cpus"]) for r in j.records()}
    assert all(len(c) == 1 for c in per_worker.values()), per_worker
    if len(per_worker) == 2:
        assert len(set(per_worker.values())) == min(2, len(os.sched_getaffinity(0))), per_worker


def test_a_dask_worker_killed_mid_task_is_retried_or_recorded_and_the_study_goes_on(tmp_path):
    pytest.importorskip("distributed")
    cfg = _cfg(optimizer=dict(evaluations=5))
    designs = _sweep_designs(cfg, 5)
    marker = tmp_path / "died-once"
    os.environ["TOY_KILL_ONCE"] = str(marker)
    os.environ["TOY_KILL_ALWAYS"] = json.dumps(designs[3], sort_keys=True)
    # One worker: with two, the scheduler may retry the always-killing task on the worker that runs a
    # neighbour, and Dask then counts the neighbour's task as suspicious too (see docs in runner.py).
    ex = make_executor("dask", workers=1)
    try:
        from study_toys import killing_objective

        j = run_study(cfg, tmp_path / "run", designs=designs, objective=killing_objective, executor=ex,
                      progress=False, log=lambda *a: None)
    finally:
        ex.close()
        del os.environ["TOY_KILL_ONCE"], os.environ["TOY_KILL_ALWAYS"]
    recs = j.records()
    assert marker.exists()                                   # a worker did die
    assert [r["status"] for r in recs] == ["done", "done", "done", "failed", "done"]
    assert "KilledWorker" in recs[3]["error"]


def test_report_and_cli_errors(tmp_path, capsys):
    from diffcalo.cli import main

    cfg = _cfg(optimizer=dict(evaluations=8, initial=4))
    run_study(cfg, tmp_path / "run", objective=toy_objective, progress=False).close()
    assert main(["report", str(tmp_path / "run")]) == 0
    text = (tmp_path / "run" / "report.md").read_text()
    best = min(toy_objective(cfg, r["design"], 0)["fom"] for r in Journal.open(tmp_path / "run" / "journal.sqlite").records())
    assert f"{cfg.figure_of_merit} = **{best:.4g}**" in text
    # the toy's region summary: b and c end on their bound 0 and are shown as bounds, not measurements
    assert ("| best design | 1 | 40.4 | 5.0 | a = 10.00 %/√E, b = 0.00 % (at its bound), c = 0.00 MeV/E (at its "
            "bound) | ") in text
    for png in ("best_layout.png", "resolution_curves.png", "fom_vs_evaluation.png", "pareto.png", "gp_slices.png"):
        assert (tmp_path / "run" / png).stat().st_size > 5000
    assert main(["report", str(tmp_path)]) == 2
    assert "no journal.sqlite here" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[optimizer]\nkind = 'cma'\n")
    assert main(["optimize", str(bad), "-o", str(tmp_path / "x")]) == 2
    assert "optimizer.kind = 'cma': allowed: gp, random" in capsys.readouterr().err


def test_pareto_front():
    from diffcalo.study.report import pareto_front

    cost = [1, 2, 3, 4, 2.5]
    fom = [5, 3, 4, 1, 2]
    assert list(pareto_front(cost, fom)) == [0, 1, 4, 3]
    assert list(pareto_front(cost, fom, minimize=False)) == [0]


def test_a_design_that_does_not_fit_the_wall_is_refused():
    """The physics objective refuses a design whose regions do not fit in the wall before any work (the
    runner records it as a failed evaluation). Its determinism and per-region summary: next test."""
    from diffcalo.study.objective import evaluate_design

    cfg = _cfg(design=dict(regions=2, options=["spacal-pb:30.3", "shashlik:121.2"], max_ring=12, split=False))
    with pytest.raises(ValueError, match="does not fit inside"):
        evaluate_design(cfg, dict(option_0="spacal-pb:30.3", option_1="shashlik:121.2", ring_0=40), seed=3)


def test_the_same_study_run_twice_gives_identical_journals(tmp_path):
    """The README's reproducibility claim with the physics objective: two drivers (separate processes,
    started together, each pinned to its own CPU) running the same small study give the same designs,
    figures of merit and metrics, bit for bit."""
    study = tmp_path / "study.toml"
    study.write_text(textwrap.dedent("""
        [study]
        name = "twice"
        seed = 5
        [design]
        regions = 2
        options = ["spacal-pb:30.3", "shashlik:121.2"]
        split = false
        [samples]
        train_photons = 900
        signal_decays = 600
        [reco]
        epochs = 2
        [optimizer]
        kind = "gp"
        evaluations = 3
        initial = 2
        batch = 1
    """))
    procs = [subprocess.Popen([sys.executable, "-m", "diffcalo.cli", "optimize", str(study), "-o", str(tmp_path / f"run{i}"),
                               "-q"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in (1, 2)]
    for p in procs:
        out, _ = p.communicate(timeout=900)
        assert p.returncode == 0, out
    recs = [Journal.open(tmp_path / f"run{i}" / "journal.sqlite").records() for i in (1, 2)]
    rows = [[(r["design"], r["fom"], json.dumps(r["metrics"], sort_keys=True)) for r in rs] for rs in recs]
    assert len(rows[0]) == 3 and all(r[1] is not None for r in rows[0])
    assert rows[0] == rows[1]
    # what one evaluation reports: a pi0 width in MeV, the layout's cost, a falling resolution curve in
    # every region, the timings
    cfg = study_config_from_flat(json.loads((tmp_path / "run1" / "config.json").read_text()))
    for r in recs[0]:
        assert 0.0 < r["fom"] < 1000.0
        assert r["cost"] == pytest.approx(layout_from_design(cfg, r["design"]).cost())
        regions = r["metrics"]["regions"]
        assert [g["region"] for g in regions] == [0, 1]
        assert [round(g["cell_mm"], 1) for g in regions] == [round(parse_option(r["design"][f"option_{i}"])[1], 1)
                                                             for i in range(2)]
        for g in regions:
            res = g["energy_curve"]["resolution"]
            assert len(res) >= 4 and res[-1] < res[0]                    # resolution improves with energy
        assert set(r["timings"]) == {"simulate", "train", "metrics", "total"}


def test_an_empty_design_space_fails_before_any_journal_exists(tmp_path):
    """Regions that cannot fit the wall are found when the space is built: the study stops with the
    config error and leaves no journal, so a corrected rerun needs no --resume or cleaning up."""
    cfg = study_config_from_dict({"wall": {"layout": "toy"}, "design": {"regions": 2, "options": ["toy-scint:30"],
                                                                         "split": False, "max_ring": 1}})
    with pytest.raises(ConfigError, match="has room for at most 1 region"):
        run_study(cfg, tmp_path / "run", objective=toy_objective, progress=False)
    assert not (tmp_path / "run" / "journal.sqlite").exists()


def test_the_top_designs_are_reevaluated_with_fresh_seeds_resumed_and_reported_apart(tmp_path, capsys):
    import sqlite3

    from diffcalo.cli import main
    from diffcalo.study.report import recommendation
    from diffcalo.study.runner import split_records

    cfg = _cfg(optimizer=dict(evaluations=8, initial=4, noise="known", reevaluate_top=2, reevaluate_seeds=2))
    run = tmp_path / "run"
    with run_study(cfg, run, objective=noisy_toy_objective, progress=False, log=lambda *a: None) as j:
        search, again = split_records(j)
        meta = j.get_meta("reevaluation")
    assert len(search) == 8 and len(again) == 4 and all(r["status"] == "done" for r in again)
    assert sorted(r["seed"] for r in again) == [1000, 1000, 1001, 1001] and meta["seeds"] == [1000, 1001]
    assert {r["batch"] for r in again} == {meta["batch"]} and meta["batch"] > max(r["batch"] for r in search)
    # the two designs are the search's two best posterior means (GP of the search with its known noise)
    rec = recommendation(cfg, search)
    assert meta["designs"][0] == rec["design"] and len({json.dumps(d, sort_keys=True) for d in meta["designs"]}) == 2
    searched = {json.dumps(r["design"], sort_keys=True) for r in search}
    assert all(json.dumps(d, sort_keys=True) in searched for d in meta["designs"])
    for r in again:
        assert r["fom"] == pytest.approx(noisy_toy_objective(cfg, r["design"], r["seed"])["fom"])
    # a driver that died after planning the re-evaluation but before adding its rows: resume runs them
    con = sqlite3.connect(run / "journal.sqlite")
    with con:
        con.execute("DELETE FROM evaluations WHERE batch = ?", (meta["batch"],))
    con.close()
    with run_study(cfg, run, objective=noisy_toy_objective, resume=True, progress=False, log=lambda *a: None) as j:
        search2, again2 = split_records(j)
    assert [r["design"] for r in search2] == [r["design"] for r in search]
    assert [(r["design"], r["seed"], r["fom"]) for r in again2] == [(r["design"], r["seed"], r["fom"]) for r in again]
    from diffcalo.cli import _study_end

    assert _study_end(Journal.open(run / "journal.sqlite"), run) == 0        # what `diffcalo optimize` prints
    out = capsys.readouterr().out
    assert "best observed (evaluation " in out and "recommended (GP posterior mean ± sd): pi0_resolution = " in out
    assert main(["report", str(run)]) == 0
    text = (run / "report.md").read_text()
    assert "## Recommended design" in text and "## Re-evaluation of the top designs" in text
    assert "fresh seeds (1000, 1001)" in text and text.count("| 2/2 |") == 2


def test_a_dask_cluster_that_lost_every_worker_is_scaled_up_or_fails_clearly(monkeypatch):
    pytest.importorskip("distributed")
    from study_toys import worker_pid

    ex = make_executor("dask", workers=1)
    try:
        monkeypatch.setattr(type(ex), "NO_WORKER_GRACE", 1.0)
        ex.cluster.scale(0)                      # every worker gone, as after a nanny that gave up
        deadline = time.time() + 60
        while ex._n_workers() and time.time() < deadline:
            time.sleep(0.2)
        assert ex._n_workers() == 0
        fut = ex.submit(worker_pid, 0.0)
        done = ex.wait([fut])                    # scaled back up once: the task runs
        assert done == {fut} and fut.result() > 0
        ex.cluster.scale(0)
        while ex._n_workers() and time.time() < deadline + 60:
            time.sleep(0.2)
        monkeypatch.setattr(ex.cluster, "scale", lambda n: None)      # a cluster that cannot start workers
        with pytest.raises(StudyError, match=r"the Dask cluster has had no worker for 1 s \(after starting new "
                                             r"ones\); the journal is intact: .*--resume"):
            ex.wait([ex.submit(worker_pid, 0.0)])
    finally:
        ex.close()
