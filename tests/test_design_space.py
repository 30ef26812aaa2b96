"""A physically sensible design space: cells never get smaller going outward unless the study asks for it
([design] cell_size_order), every optimiser respects it, an empty space is refused with the keys to
change, old journals keep their meaning, and ring sizes are shown in metres."""

import sys
from pathlib import Path

import pytest

from diffcalo.config import ConfigError
from diffcalo.errors import StudyError
from diffcalo.layout import preset
from diffcalo.study.config import cheapest_design, load_study_config, study_config_from_dict, study_config_from_flat
from diffcalo.study.design import (
    cell_size_order_ok,
    describe_design,
    design_space,
    extent_label,
    layout_from_design,
    value_label,
)
from surrogates.bayesopt import BayesianOptimizer, RandomSearch
from surrogates.space import Space

sys.path.insert(0, str(Path(__file__).parent))
from study_toys import toy_objective  # noqa: E402

OPTIONS = ["spacal-w:15.15", "spacal-pb:30.3", "shashlik:60.6"]          # 1.5, 3 and 6 cm cells


def _cfg(order=None, **design):
    d = dict(dict(regions=2, options=OPTIONS, max_ring=3, split=False), **design)
    if order is not None:
        d["cell_size_order"] = order
    return study_config_from_dict({"design": d, "budget": {"total": 1e6}})      # the budget never decides here


def _cells(cfg, design):
    return [layout_from_design(cfg, design).regions[i].cell_size_mm for i in range(cfg.regions)]


def _violates(cfg, design) -> bool:
    cells = _cells(cfg, design)
    return any(outer < inner for inner, outer in zip(cells, cells[1:]))


# ---- the constraint -------------------------------------------------------------------------------------------
def test_finer_cells_outside_coarser_ones_are_rejected_equal_and_coarser_accepted():
    cfg = _cfg()
    assert cfg.cell_size_order == "non-decreasing-outward"                    # the default
    space = design_space(cfg)
    coarse_inside = dict(option_0="spacal-pb:30.3", option_1="spacal-w:15.15", ring_0=2)      # 3 cm in, 1.5 cm out
    fine_inside = dict(option_0="spacal-w:15.15", option_1="spacal-pb:30.3", ring_0=2)        # 1.5 cm in, 3 cm out
    equal = dict(option_0="spacal-pb:30.3", option_1="spacal-pb:30.3", ring_0=2)              # 3 cm, 3 cm
    assert not cell_size_order_ok(cfg, coarse_inside) and not space.feasible(coarse_inside)
    assert cell_size_order_ok(cfg, fine_inside) and space.feasible(fine_inside)
    assert cell_size_order_ok(cfg, equal) and space.feasible(equal)
    # three regions: one step down anywhere is enough to reject
    cfg3 = _cfg(regions=3)
    ok = dict(option_0="spacal-w:15.15", option_1="spacal-pb:30.3", option_2="shashlik:60.6", ring_0=1, ring_1=2)
    assert design_space(cfg3).feasible(ok)
    assert not design_space(cfg3).feasible(dict(ok, option_2="spacal-w:15.15"))
    assert not design_space(cfg3).feasible(dict(ok, option_0="shashlik:60.6"))


def test_the_budget_still_holds_with_the_order():
    cfg = study_config_from_dict({"design": dict(regions=2, options=OPTIONS, max_ring=12, split=False),
                                  "budget": {"total": 16000.0}})
    space = design_space(cfg)
    cheap = dict(option_0="spacal-pb:30.3", option_1="shashlik:60.6", ring_0=1)
    dear = dict(cheap, ring_0=12)                               # the order holds, the cost does not
    assert layout_from_design(cfg, cheap).cost() <= 16000.0 < layout_from_design(cfg, dear).cost()
    assert space.feasible(cheap) and not space.feasible(dear)


def test_free_order_is_the_old_space_draw_for_draw():
    cfg = _cfg("free", regions=3, max_ring=4)
    space = design_space(cfg)
    coarse_inside = dict(option_0="shashlik:60.6", option_1="spacal-w:15.15", option_2="spacal-w:15.15", ring_0=1,
                         ring_1=1)
    assert cell_size_order_ok(cfg, coarse_inside) and space.feasible(coarse_inside)

    def old_constraint(design):                                   # the constraint before the key existed
        try:
            return layout_from_design(cfg, design).cost() <= cfg.budget
        except ValueError:
            return False

    old = Space(space.parameters, constraint=old_constraint)
    for method in ("uniform", "lhs", "sobol"):
        assert space.sample(200, rng=4, method=method) == old.sample(200, rng=4, method=method)
    assert any(_violates(cfg, d) for d in space.sample(200, rng=4))       # and it does propose them


# ---- every proposal respects it -----------------------------------------------------------------------------------
def test_samples_lhs_sobol_and_the_grid_never_violate_the_order():
    cfg = _cfg(regions=3, max_ring=2)
    space = design_space(cfg)
    for method in ("uniform", "lhs", "sobol"):
        designs = space.sample(300, rng=1, method=method)
        assert len(designs) == 300 and not any(_violates(cfg, d) for d in designs)
    grid = space.grid()
    # 3 options in 3 regions: 10 non-decreasing tuples of the 27, times 2 x 2 rings
    assert len(grid) == 10 * 4 and not any(_violates(cfg, d) for d in grid)
    free = design_space(_cfg("free", regions=3, max_ring=2)).grid()
    assert len(free) == 27 * 4


@pytest.mark.parametrize("kind", [RandomSearch, BayesianOptimizer])
def test_random_search_and_gp_bo_never_propose_a_violating_design(kind):
    """Ask/tell with the real optimisers on a 3-region space (the order keeps 10 of the 27 option
    tuples): the initial Sobol design, the GP's candidate pool and its local perturbations all pass
    the constraint."""
    cfg = _cfg(regions=3, max_ring=4)
    opt = kind(design_space(cfg), seed=3, **({"n_initial": 4, "pool": 256} if kind is BayesianOptimizer else {}))
    asked = []
    for _ in range(5):
        designs = opt.ask(2)
        asked += designs
        opt.tell(designs, [toy_objective(cfg, d, 0)["fom"] for d in designs])
    assert len(asked) == 10 and not any(_violates(cfg, d) for d in asked)
    if kind is BayesianOptimizer:
        assert opt.last_model is not None                    # the GP did propose


def test_a_study_run_by_the_runner_never_evaluates_a_violating_design(tmp_path):
    from diffcalo.study.runner import run_study

    cfg = study_config_from_dict({"design": dict(regions=3, max_ring=4),
                                  "optimizer": dict(kind="gp", evaluations=8, initial=4, batch=2)})
    with run_study(cfg, tmp_path / "run", objective=toy_objective, progress=False, log=lambda *a: None) as j:
        designs = [r["design"] for r in j.records()]
    assert len(designs) == 8 and not any(_violates(cfg, d) for d in designs)


def test_five_regions_the_sparsest_default_space_is_still_sampled():
    """The order keeps 4 % of the option tuples of five regions (0.7 % with the budget): rejection
    sampling needs more rounds than surrogates' default of 200 (which finds 233 of these 256 designs;
    the GP's candidate pool is 2048), and the design space allows them."""
    cfg = study_config_from_dict({"design": {"regions": 5}})
    designs = design_space(cfg).sample(256, rng=0, method="sobol")
    assert len(designs) == 256 and not any(_violates(cfg, d) for d in designs)


# ---- an empty space is refused -------------------------------------------------------------------------------------
def test_a_budget_below_the_cheapest_design_is_refused_at_load_time(tmp_path):
    cfg = _cfg()
    cost, option, split = cheapest_design(cfg)
    assert (option, split) == ("shashlik:60.6", True)
    uniform = dict(option_0=option, option_1=option, ring_0=1)
    assert cost == pytest.approx(layout_from_design(cfg, uniform).cost())   # any ring: the whole wall is 6 cm
    assert cost == pytest.approx((64 * 52 - 4 * 4) * (3.0 + 4 * 0.3))       # modules x (module + 4 channels)
    path = tmp_path / "s.toml"
    path.write_text(f"[design]\nregions = 2\noptions = {OPTIONS}\n[budget]\ntotal = {cost - 1:.1f}\n")
    with pytest.raises(ConfigError, match=rf"{path}: budget.total = {cost - 1:.1f} kCHF: no design of this space "
                                          rf"fits it; the cheapest, option 'shashlik:60.6' in every region, costs "
                                          rf"{cost:.0f} kCHF. Raise budget.total or add a cheaper option to design.options"):
        load_study_config(path)
    # a journal's stored config still loads (its report must work even if the technologies' costs change)
    assert study_config_from_flat(dict(cfg.as_dict(), budget=cost - 1)).budget == cost - 1
    # at the cheapest cost the space holds that one design (any ring), which keeps the order
    tight = study_config_from_dict({"design": dict(regions=2, options=OPTIONS, split=False),
                                    "budget": {"total": cost + 0.01}})
    assert design_space(tight).feasible(uniform)
    assert {(d["option_0"], d["option_1"]) for d in design_space(tight).sample(5, rng=0)} == {(option, option)}


def test_the_order_alone_never_empties_a_space():
    """Whatever the options, the cheapest design (the cheapest option everywhere) keeps the order: the
    cheapest design of the ordered space costs exactly what the cheapest of the free space costs."""
    for options in (OPTIONS, ["spacal-w:15.15", "shashlik:121.2"], ["shashlik:40.4", "spacal-pb:30.3"]):
        ordered = design_space(_cfg(options=options, max_ring=2))
        free = design_space(_cfg("free", options=options, max_ring=2))
        cost = lambda designs: min(layout_from_design(_cfg(options=options), d).cost() for d in designs)  # noqa: E731
        assert cost(ordered.grid()) == pytest.approx(cost(free.grid()))
        assert cost(ordered.grid()) == pytest.approx(cheapest_design(_cfg(options=options))[0])


def test_regions_that_cannot_fit_the_wall_are_refused_when_the_space_is_built():
    cfg = study_config_from_dict({"wall": {"layout": "toy"},
                                  "design": {"regions": 2, "options": ["toy-scint:30.0"], "max_ring": 1}})
    with pytest.raises(ConfigError, match=r"design.regions = 2: the 'toy' wall \(1 x 1 modules, beam hole 0 x 0\) has "
                                          r"room for at most 1 region .*set design.regions <= 1"):
        design_space(cfg)


def test_the_baselines_are_layouts_evaluated_as_they_are(monkeypatch):
    """The reference layouts are not designs of the space: evaluate_preset evaluates the preset as it is,
    whatever the budget or the cell-size order (and both presets have non-decreasing cells anyway)."""
    from diffcalo.study import objective

    for name in objective.BASELINES:
        cells = [r.cell_size_mm for r in preset(name).regions]
        assert cells == sorted(cells), name
    monkeypatch.setattr(objective, "evaluate_layout", lambda config, layout, seed: layout)
    small = study_config_from_dict({"budget": {"total": 11000.0}})          # both baselines cost more
    for name in objective.BASELINES:
        assert preset(name).cost() > 11000.0
        assert objective.evaluate_preset(small, name, 0) == preset(name)


# ---- old files and journals ----------------------------------------------------------------------------------------
def test_old_study_files_get_the_default_and_old_journals_read_back_as_free(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text("[design]\nregions = 2\n")                                # a study file before the key
    assert load_study_config(path).cell_size_order == "non-decreasing-outward"
    ordered = study_config_from_dict({})
    free = study_config_from_dict({"design": {"cell_size_order": "free"}})
    assert ordered.as_dict()["cell_size_order"] == "non-decreasing-outward"
    assert "cell_size_order" not in free.as_dict()                 # the flat form of a journal before the key
    for cfg in (ordered, free):
        assert study_config_from_flat(cfg.as_dict()) == cfg
    with pytest.raises(ConfigError, match=r"design.cell_size_order = 'inward': allowed: non-decreasing-outward, free"):
        study_config_from_dict({"design": {"cell_size_order": "inward"}})


def test_an_old_journal_resumes_with_free_order_and_is_not_continued_under_the_new_default(tmp_path):
    """A free-order journal stores exactly the config of a journal written before the key existed."""
    from diffcalo.study.runner import run_study

    quiet = dict(objective=toy_objective, progress=False, log=lambda *a: None)
    opt = {"kind": "random", "evaluations": 3}
    free = study_config_from_dict({"design": {"cell_size_order": "free"}, "optimizer": opt})
    run_study(free, tmp_path / "run", **quiet).close()
    ordered = study_config_from_dict({"optimizer": dict(opt, evaluations=4)})
    with pytest.raises(StudyError, match=r"cell_size_order: journal '\(absent\)', now 'non-decreasing-outward'"):
        run_study(ordered, tmp_path / "run", resume=True, **quiet)
    more = study_config_from_dict({"design": {"cell_size_order": "free"}, "optimizer": dict(opt, evaluations=3)})
    with run_study(more, tmp_path / "run", resume=True, **quiet) as j:
        assert j.counts()["done"] == 3


# ---- ring sizes in metres ------------------------------------------------------------------------------------------
def test_rings_in_metres_hand_computed_on_the_lhcb_wall():
    """LHCb wall: 64 x 52 modules of 121.2 mm, beam hole 4 x 4, aspect 52/64 = 0.8125. Ring 1 around the
    hole: 6 x 6 modules (y: 4 + 2 max(1, round(0.81))), half-widths 3 x 121.2 = 0.3636 m. Ring 9 next: 24
    modules in x (6 + 18) and 20 in y (6 + 2 round(7.31)): |x| < 12 x 121.2 = 1.4544 m, |y| < 10 x 121.2 =
    1.212 m. Ring 9 alone is 9 x 121.2 = 1.0908 m wide on each side in x."""
    cfg = study_config_from_dict({})
    wall = preset(cfg.layout)
    assert (wall.module_mm, wall.modules_x, wall.modules_y, wall.beam_hole) == (121.2, 64, 52, (4, 4))
    design = dict(option_0="spacal-pb:30.3", option_1="shashlik:60.6", option_2="shashlik:60.6", ring_0=1, ring_1=9,
                  split=False)
    assert [(r.modules_x, r.modules_y) for r in layout_from_design(cfg, design).regions] == [(6, 6), (24, 20), (64, 52)]
    assert describe_design(cfg, design) == ("SpaCal-Pb 3 cm out to x = ±0.36 m, y = ±0.36 m (ring 1 module) / "
                                            "Shashlik 6 cm out to x = ±1.45 m, y = ±1.21 m (ring 9 modules) / "
                                            "Shashlik 6 cm, no split")
    assert describe_design(cfg, design, sep="\n").count("\n") == 2
    assert extent_label(24, 20, 121.2) == "x = ±1.45 m, y = ±1.21 m"
    assert extent_label(64, 52, 121.2) == "x = ±3.88 m, y = ±3.15 m"           # the whole wall: 3.8784 x 3.1512
    assert value_label("ring_1", 9, cfg) == "9 (1.09 m)"
    assert value_label("ring_1", 9) == "9"                                     # without a config: modules only
