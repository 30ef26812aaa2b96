"""Layouts: presets, look-ups, counts, cost, drawing and validation."""

import dataclasses

import numpy as np
import pytest

from diffcalo.layout import lhcb_current, lhcb_upgrade2_baseline, luxe, preset, toy


def test_lhcb_current_module_and_channel_counts():
    lay = lhcb_current().validate()
    assert [lay.modules_in_region(i) for i in range(3)] == [176, 448, 2688]
    assert sum(lay.modules_in_region(i) for i in range(3)) == 3312   # LHCb ECAL module count
    assert [lay.channels_in_region(i) for i in range(3)] == [1584, 1792, 2688]
    assert lay.width_mm == pytest.approx(7756.8) and lay.height_mm == pytest.approx(6302.4)


def test_upgrade2_baseline_counts():
    lay = lhcb_upgrade2_baseline().validate()
    # 32 SpaCal-W + 144 SpaCal-Pb modules replace the 176 inner Shashlik modules
    assert [lay.modules_in_region(i) for i in range(4)] == [32, 144, 448, 2688]
    assert lay.channels_in_region(0) == 32 * 64 * 2          # 8x8 cells, front + back
    assert lay.channels_in_region(1) == 144 * 16 * 2
    assert lay.cost() == pytest.approx(sum(r["cost"] for r in lay.table()))


def test_luxe_and_toy_grids():
    lx = luxe().validate()
    assert lx.width_mm / 5.0 == 110 and lx.height_mm / 5.0 == 11
    assert lx.channels_in_region(0) == 110 * 11 * 20
    ty = toy().validate()
    assert ty.channels_in_region(0) == 8 * 8 * 17


def test_lookup_regions_cells_and_flags():
    lay = lhcb_upgrade2_baseline()
    x = np.array([300.0, 700.0, 1500.0, 3000.0, 0.0, 5000.0])
    y = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    out = lay.lookup(x, y)
    assert list(out["region"]) == [0, 1, 2, 3, -1, -2]
    assert list(out["status"]) == [0, 0, 0, 0, 1, 2]
    # cell centre within half a cell of the point, on the region's grid
    ok = out["status"] == 0
    assert np.all(np.abs(out["cell_x"][ok] - x[ok]) <= out["cell_size_mm"][ok] / 2)
    assert out["cell_size_mm"][0] == 15.15 and out["cell_size_mm"][3] == 121.2
    # cells line up with module edges: the wall edge is a cell edge
    x0, _ = lay.origin_mm
    assert (out["cell_x"][3] - x0) / 121.2 % 1 == pytest.approx(0.5)


def test_bad_layouts_give_clear_errors():
    lay = lhcb_current()
    bad = dataclasses.replace(lay, regions=(dataclasses.replace(lay.regions[0], technology="lego"),) + lay.regions[1:])
    with pytest.raises(ValueError, match=r"regions\[0\] \('inner'\).technology = 'lego': unknown; available: .*shashlik"):
        bad.validate()
    bad = dataclasses.replace(lay, regions=(dataclasses.replace(lay.regions[0], cell_size_mm=50.0),) + lay.regions[1:])
    with pytest.raises(ValueError, match=r"cell_size_mm = 50.0 mm: not allowed for this technology; allowed: 40.4, 60.6, 121.2"):
        bad.validate()
    bad = dataclasses.replace(lay, regions=lay.regions[:2])
    with pytest.raises(ValueError, match="outermost region must cover the whole wall"):
        bad.validate()
    bad = dataclasses.replace(lay, regions=(dataclasses.replace(lay.regions[0], modules_x=40),) + lay.regions[1:])
    with pytest.raises(ValueError, match="must enclose the region inside it"):
        bad.validate()
    with pytest.raises(KeyError, match="unknown layout preset 'lhcb'; available: lhcb-current"):
        preset("lhcb")


def test_layout_picture(tmp_path):
    from diffcalo.plotting import plot_layout

    out = plot_layout(lhcb_upgrade2_baseline(), tmp_path / "layout.png")
    assert out.stat().st_size > 20_000
    import matplotlib.image as mpimg

    img = mpimg.imread(out)
    assert img.shape[0] > 400 and img.shape[1] > 400
    # more than two colours: regions are coloured by technology
    assert len(np.unique(img.reshape(-1, img.shape[-1])[:, :3].round(2), axis=0)) > 4
