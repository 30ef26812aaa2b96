"""What a physicist reads from a study: designs in words, units and statistical errors in the summary and
the report, resolution-fit terms at their bound shown as bounds, poor fits flagged, the GP-slices figure."""

import pickle
import re

import numpy as np
import pytest

from diffcalo.study.config import StudyConfig, parse_option, study_config_from_dict, study_config_from_flat
from diffcalo.study.design import describe_design, describe_preset, design_space, layout_from_design, parameter_label, value_label

DESIGN = dict(option_0="spacal-pb:30.3", option_1="shashlik:60.6", option_2="shashlik:60.6", ring_0=1, ring_1=9,
              split=False)


def test_a_design_and_the_presets_in_words():
    cfg = study_config_from_dict({})
    rings = ("out to x = ±0.36 m, y = ±0.36 m (ring 1 module)",          # 6 x 6 modules of 121.2 mm
             "out to x = ±1.45 m, y = ±1.21 m (ring 9 modules)")        # 24 x 20
    assert describe_design(cfg, DESIGN) == \
        f"SpaCal-Pb 3 cm {rings[0]} / Shashlik 6 cm {rings[1]} / Shashlik 6 cm, no split"
    assert describe_design(cfg, dict(DESIGN, option_0="spacal-w:15.15", split=True)) == \
        f"SpaCal-W 1.5 cm {rings[0]} / Shashlik 6 cm {rings[1]} / Shashlik 6 cm, split"
    # the split changes nothing when no region is segmented: it is not mentioned
    assert describe_design(cfg, dict(DESIGN, option_0="shashlik:40.4")) == \
        f"Shashlik 4 cm {rings[0]} / Shashlik 6 cm {rings[1]} / Shashlik 6 cm"
    assert describe_preset("lhcb-current") == "current LHCb layout (Shashlik 4 / 6 / 12 cm)"
    assert describe_preset("lhcb-upgrade2-baseline") == \
        "LHCb Upgrade II baseline (SpaCal-W 1.5 cm / SpaCal-Pb 3 cm / Shashlik 6 / 12 cm)"
    assert [parameter_label(p.name) for p in design_space(cfg).parameters] == [
        "region 1 technology", "region 2 technology", "region 3 technology", "ring 1 (modules per side)",
        "ring 2 (modules per side)", "longitudinal split"]
    assert value_label("option_1", "spacal-w:15.15") == "SpaCal-W 1.5 cm"
    assert [value_label("split", v) for v in (True, False)] == ["split", "no split"]
    assert [value_label("ring_0", v, cfg) for v in (1, 9)] == ["1 (0.12 m)", "9 (1.09 m)"]     # x 121.2 mm
    assert [r.name for r in layout_from_design(cfg, DESIGN).regions] == ["region 1", "region 2", "region 3"]


def test_one_option_parser_and_the_config_travels_as_a_validated_study_config():
    from diffcalo.config import ConfigError
    from diffcalo.study.objective import evaluate_design, evaluate_preset

    assert parse_option("shashlik:60.6") == ("shashlik", 60.6)
    for bad in ("shashlik", "shashlik:nan", "shashlik:-4", "shashlik:4 cm"):
        with pytest.raises(ConfigError, match="write each option as 'technology:cell_mm'"):
            parse_option(bad)
    cfg = study_config_from_dict({"design": {"regions": 2}})
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert study_config_from_flat(cfg.as_dict()) == cfg
    with pytest.raises(ConfigError, match=r"command-line options: unknown key\(s\) \['wokers'\]"):
        study_config_from_flat(dict(cfg.as_dict(), wokers=2), where="command-line options")
    with pytest.raises(ConfigError, match=r"executor.workers = 0: must be an integer in \[1, 1024\]"):
        study_config_from_flat(dict(cfg.as_dict(), workers=0))
    for call in (lambda: evaluate_design(cfg.as_dict(), DESIGN, 0), lambda: evaluate_preset(cfg.as_dict(), "toy", 0),
                 lambda: design_space(cfg.as_dict()), lambda: layout_from_design(cfg.as_dict(), DESIGN)):
        with pytest.raises(TypeError, match="expected a StudyConfig, got dict"):
            call()


def _record(eid, fom, err=None, cost=14122.0, design=DESIGN):
    metrics = {"pi0_width_mev": fom, "channels": 5000}
    if err is not None:
        metrics["pi0_width_err_mev"] = err
    return dict(id=eid, status="done", design=design, fom=fom, cost=cost, metrics=metrics)


def test_the_summary_names_designs_units_and_errors():
    from diffcalo.study.flagship import summary_text

    cfg = study_config_from_dict({"study": {"figure_of_merit": "pi0_width"}})
    runs = {"gp": [_record(1, 97.0, 1.4), _record(2, 95.28, 1.21)],
            "random": [_record(1, 97.0, 1.4, design=dict(DESIGN, ring_1=3))]}
    baselines = {"lhcb-current": dict(fom=105.5, cost=9000.0, metrics={"pi0_width_err_mev": 1.5}, within_budget=True),
                 "lhcb-upgrade2-baseline": dict(fom=99.86, cost=17000.0, metrics={"pi0_width_err_mev": 1.3},
                                                within_budget=False)}
    text = summary_text(cfg, runs, baselines, wall_time_s=12.0)
    assert "| | design | π0 → γγ mass peak width (signal + background fit) (MeV) | cost (kCHF) |" in text
    assert ("| best observed of GP-BO (evaluation 2) | SpaCal-Pb 3 cm out to x = ±0.36 m, y = ±0.36 m (ring 1 module) / "
            "Shashlik 6 cm out to x = ±1.45 m, y = ±1.21 m (ring 9 modules) / Shashlik 6 cm, no split | 95.3 ± 1.2 | "
            "14122 |") in text
    # both GP-BO evaluations are of one design (replicates): the recommendation pools them, between the two
    import re

    m = re.search(r"\| recommended by GP-BO \(GP posterior mean ± sd\) \| SpaCal-Pb 3 cm .*, no split \| "
                  r"([0-9.]+) ± ([0-9.]+) \| 14122 \|", text)
    assert m and 95.28 < float(m.group(1)) < 97.0 and 0 < float(m.group(2)) < 2.0, text
    assert "| baseline | current LHCb layout (Shashlik 4 / 6 / 12 cm) | 105.5 ± 1.5 | 9000 |" in text
    assert "| 99.9 ± 1.3 | 17000 (over budget) |" in text
    assert "option_0" not in text and "ring_0" not in text
    significance = StudyConfig(figure_of_merit="bs_significance")
    text = summary_text(significance, {"gp": [_record(1, 2.5)]}, {}, wall_time_s=1.0)
    assert "B_s → J/ψ π0 significance S/√(S+B) (dimensionless)" in text
    assert "| 2.5 (statistical error not estimated) |" in text


def _fit_at_bound():
    """A resolution fit whose constant and noise terms end on their bound 0, and a fit that does not
    describe its points."""
    from diffcalo.metrics import fit_resolution

    e = np.array([2.0, 5.0, 10.0, 20.0, 50.0, 100.0])
    good = fit_resolution(e, 0.1 / np.sqrt(e), 0.002 * np.ones_like(e))
    poor = fit_resolution(e, 0.02 + 0.001 * e, 0.001 * np.ones_like(e))
    return good, poor


def physics_like_objective(config, design, seed):
    """The shape of the real objective's result, with real resolution fits (module level: workers import it)."""
    import dataclasses

    good, poor = _fit_at_bound()
    score = 90.0 + sum(config.options.index(design[f"option_{i}"]) for i in range(config.regions))
    score += 0.3 * sum((design[f"ring_{i}"] - 3) ** 2 for i in range(config.regions - 1))
    curve = dict(energy=[2.0, 8.0, 32.0], resolution=[0.07, 0.035, 0.018], resolution_err=[0.002, 0.001, 0.0005])
    regions = [dict(region=i, cell_mm=40.4, n=400, energy_curve=curve,
                    energy_fit=dataclasses.asdict(poor if i == 1 else good), energy_core=0.05, energy_core_err=0.002,
                    position_core_mm=[3.0, 3.1], position_core_err_mm=[0.1, 0.1]) for i in range(config.regions)]
    metrics = dict(pi0_mean_mev=134.0, pi0_width_mev=score, pi0_width_err_mev=1.25, pi0_pairs=900, channels=5000,
                   pileup_capped_fraction=0.0, regions=regions)
    return dict(fom=score, cost=1000.0, metrics=metrics, timings=dict(simulate=1.0))


def test_the_report_shows_units_errors_bounds_and_poor_fits(tmp_path):
    from diffcalo.study.report import write_report
    from diffcalo.study.runner import run_study

    cfg = study_config_from_dict({"study": {"figure_of_merit": "pi0_width"},
                                  "optimizer": {"kind": "random", "evaluations": 5}})
    run_study(cfg, tmp_path / "run", objective=physics_like_objective, progress=False, log=lambda *a: None).close()
    text = write_report(tmp_path / "run").read_text()
    assert "Figure of merit: **π0 → γγ mass peak width (signal + background fit) (MeV)**" in text
    assert "pi0_width = **" in text and "** ± 1.2 MeV, cost 1000 kCHF" in text
    assert "| π0 mass peak width (MeV) | " in text and " ± 1.2 |" in text
    assert "| energy core σ(E)/E (%) |" in text and "| 5.0 ± 0.2 |" in text and "| 3.0 ± 0.1, 3.1 ± 0.1 |" in text
    good, poor = _fit_at_bound()
    assert good.constant_limit is not None                  # b ended on its bound: a limit, not a measurement
    assert "b < " in text and "c < " in text
    assert "POOR FIT" in text and "**Poor fits**" in text and "best design, region 2" in text
    assert "option_0" not in text and "ring_0" not in text
    assert ("| region | technology | cell size (mm) | outer edge (half-width x, half-height y) | modules | "
            "longitudinal sections | channels | cost (kCHF) |") in text
    assert re.search(r"\n\| 3 \| [^|\n]+ \| [0-9.]+ \| x = ±3.88 m, y = ±3.15 m \| ", text)    # the whole 64 x 52 wall
    assert "Cell sizes never decrease going outward" in text


def test_gp_slices_one_panel_per_parameter_with_distinct_readable_titles():
    import matplotlib.pyplot as plt

    from diffcalo.study.report import gp_slices_figure

    cfg = study_config_from_dict({})
    space = design_space(cfg)
    designs = space.sample(8, rng=1, method="lhs")
    records = [dict(design=d, fom=physics_like_objective(cfg, d, 0)["fom"]) for d in designs]
    fig = gp_slices_figure(cfg, records, records[0]["design"])
    try:
        titles = [ax.get_title() for ax in fig.axes]
        assert titles == [parameter_label(p.name) for p in space.parameters]
        assert len(set(titles)) == len(titles) == len(space.parameters)
        for ax, p in zip(fig.axes, space.parameters):
            assert "GP mean ± 1σ" in [t.get_text() for t in ax.get_legend().get_texts()]
            assert "(MeV)" in ax.get_ylabel()
            if hasattr(p, "choices"):       # categorical: points with error bars, never joined by a line
                assert all(line.get_linestyle() in ("None", "") for line in ax.get_lines() if len(line.get_xdata()) > 1)
                assert [t.get_text() for t in ax.get_xticklabels()] == [value_label(p.name, v) for v in p.choices]
            else:                           # rings: modules with their width in metres
                assert [t.get_text() for t in ax.get_xticklabels()][:2] == ["1 (0.12 m)", "2 (0.24 m)"]
                assert ax.get_xlabel() == "modules added on each side in x (their width in m)"
    finally:
        plt.close(fig)


def test_the_summary_reevaluates_with_fresh_seeds_and_calls_ties():
    """Re-evaluated means with their standard errors (hand-computed), the difference to the Upgrade II
    baseline in standard errors: 11 sigma is significant, 2.4 sigma is a tie."""
    from diffcalo.study.flagship import summary_text

    cfg = study_config_from_dict({"study": {"figure_of_merit": "pi0_width"}})
    runs = {"gp:0": [_record(1, 60.0, 1.0)], "gp:1": [_record(1, 61.0, 1.0)], "random:0": [_record(2, 66.0, 1.0)]}
    vals = lambda *v: {"values": {str(1000 + i): dict(fom=x) for i, x in enumerate(v)}}
    results = {"lhcb-current": dict(what="lhcb-current", **vals(88.0, 90.0, 92.0)),        # 90 +- 1.155
               "lhcb-upgrade2-baseline": dict(what="lhcb-upgrade2-baseline", **vals(71.0, 72.0, 73.0)),  # 72 +- 0.577
               "gp:0": dict(what=DESIGN, **vals(69.0, 70.0, 71.0)),                        # 70 +- 0.577
               "gp:1": dict(what=DESIGN, **vals(73.0, 71.0, 72.0, 72.0)),                  # 72 +- 0.408
               "random:0": dict(what=DESIGN, **vals(80.0, 81.0))}                          # 80.5 +- 0.5
    text = summary_text(cfg, runs, {}, wall_time_s=1.0, reevaluations=dict(seeds=[1000, 1001, 1002], results=results))
    assert "## Re-evaluated with fresh seeds 1000, 1001, 1002" in text
    assert "| baseline | current LHCb layout (Shashlik 4 / 6 / 12 cm) | 90.0 ± 1.2 (n = 3) |" in text
    assert "| 72.00 ± 0.58 (n = 3) |" in text
    assert ("- current LHCb layout (Shashlik 4 / 6 / 12 cm) vs the Upgrade II baseline: 18.0 ± 1.3 (13.9 standard "
            "errors): significantly worse.") in text
    assert ("best of GP-BO (optimiser seed 0) vs the Upgrade II baseline: -2.00 ± 0.82 (2.4 standard errors): a tie "
            "(< 3 standard errors).") in text
    assert "best of GP-BO (optimiser seed 1) vs the Upgrade II baseline: 0.00 ± 0.71 (0.0 standard errors): a tie" in text
    assert ("best of random search (optimiser seed 0) vs the Upgrade II baseline: 8.50 ± 0.76 (11.1 standard errors): "
            "significantly worse.") in text
    assert "- GP-BO: mean of the 2 runs' re-evaluated best designs 71.0 ± 1.0" in text
    assert "[GP-BO (optimiser seed 1)](gp/seed1/report.md)" in text
