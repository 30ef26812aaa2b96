"""The LUXE study's classical estimators and figures of merit (studies/luxe_ecal/run.py)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SPEC = importlib.util.spec_from_file_location("luxe_run", Path(__file__).parent.parent / "studies" / "luxe_ecal" / "run.py")
luxe = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(luxe)


def _single_pad_showers(cols, rows, energies, xc):
    """Showers that light one pad per layer: cols, rows [n, L] pad indices in the crop."""
    n, L = cols.shape
    cells = np.zeros((n, L, 11, luxe.CROP_W), np.float32)
    for i in range(n):
        for l in range(L):
            cells[i, l, rows[i, l], cols[i, l]] = energies[i, l]
    z = np.zeros(n)
    return luxe.ShowerSet(cells=cells, total=cells.reshape(n, -1).sum(1), e=np.full(n, 10.0), x=z, y=z,
                          tx=z, ty=z, xc=np.asarray(xc, float))


def test_classical_position_is_the_weighted_line_fit_of_layer_centroids():
    rng = np.random.default_rng(3)
    n, L = 5, 20
    cols = rng.integers(2, luxe.CROP_W - 2, (n, L))
    rows = rng.integers(2, 9, (n, L))
    w = rng.uniform(0.1, 2.0, (n, L))
    s = _single_pad_showers(cols, rows, w, xc=[-100.0, 0.0, 25.0, 40.0, 250.0])
    z = 4.0 + 4.5 * np.arange(L)
    got = luxe.classical_position(s, z)
    for i in range(n):
        # independent reference: np.polyfit minimises sum (w_i r_i)^2, so pass sqrt of the energy weights
        px = np.polyfit(z, (cols[i] - luxe.CROP_W // 2) * luxe.PAD_MM, 1, w=np.sqrt(w[i]))
        py = np.polyfit(z, (rows[i] - 5) * luxe.PAD_MM, 1, w=np.sqrt(w[i]))
        np.testing.assert_allclose(got[i], [px[1] + s.xc[i], py[1], px[0], py[0]], rtol=1e-4, atol=1e-4)


def test_mae_ratio_and_its_bootstrap_error():
    rng = np.random.default_rng(0)
    e = np.repeat([5.0, 10.0], 4000)
    noise = rng.normal(size=e.size)
    out = luxe.mae_ratio(e, e + 0.5 * noise, e + noise, boot=200)
    for v, r, err in out:
        assert r == pytest.approx(0.5, abs=1e-12)          # paired: the same noise scaled
        assert err < 1e-9
    out = luxe.mae_ratio(e, e + 0.5 * rng.normal(size=e.size), e + noise, boot=200)
    for v, r, err in out:
        # independent noise: ratio 0.5 within a few bootstrap errors; the error ~ sqrt(2) * 0.75 / sqrt(n) * 0.5
        assert abs(r - 0.5) < 4 * err
        assert 0.005 < err < 0.02


def test_fit_line_recovers_a_calibration():
    x = np.linspace(0.0, 10.0, 50)
    c0, c1 = luxe.fit_line(x, 0.3 + 1.07 * x)
    assert (c0, c1) == (pytest.approx(0.3), pytest.approx(1.07))


def test_image_inputs_normalise_the_maps_and_carry_the_classical_estimate():
    from diffcalo.reco import image_inputs

    rng = np.random.default_rng(1)
    cells = rng.uniform(0, 1, (7, 20, 11, 13)).astype(np.float32)
    e_cal = rng.uniform(3, 20, 7)
    inp = image_inputs(cells, e_cal * 1.1, e_cal)
    assert inp.images.shape == (7, 11, 13, 20)
    np.testing.assert_allclose(np.asarray(inp.images).reshape(7, -1).mean(1), 1.0, rtol=1e-5)   # mean cell = 1
    np.testing.assert_allclose(np.asarray(inp.base)[:, 0], e_cal, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(inp.scalars)[:, 0], np.log(e_cal / 10.0), rtol=1e-5)
    tgt = rng.normal(size=(7, 4))
    pos = image_inputs(cells, e_cal, e_cal, vectors=rng.normal(size=(7, 2, 2)), target=tgt)
    assert pos.vectors.shape == (7, 2, 2) and np.all(np.asarray(pos.base) == 0) and np.all(np.asarray(pos.scale) == 1)
    signed = cells - 0.5                                     # relaxed-mode cells: mean near zero
    m = np.asarray(image_inputs(signed, e_cal, e_cal).images)
    np.testing.assert_allclose(np.abs(m).reshape(7, -1).mean(1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match=r"cells must be \[n, layers, H, W\]"):
        image_inputs(cells[0], e_cal, e_cal)
    with pytest.raises(ValueError, match="e_cal has 6 entries for 7 images"):
        image_inputs(cells, e_cal, e_cal[:6])
