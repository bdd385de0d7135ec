"""bench.quality's six-band validation cases (issue 18); development data only."""

from __future__ import annotations

import numpy as np

from bench import quality
from model_export.data import load_fusebox_pair


def test_six_band_cases_hold_swir_in_wavelength_order(shared_data):
    four = quality.load_cases(shared_data, 4)
    six = quality.load_cases(shared_data, 6)
    assert [c.name for c in six] == [c.name for c in four] and len(six) == 7
    assert all(c.ms.shape[0] == 6 for c in six) and all(c.ms.shape[0] == 4 for c in four)
    for a, b in zip(four, six, strict=True):
        # The first four bands are the 4-band cases' B, G, R, NIR; the PAN is the same.
        assert np.array_equal(a.ms, b.ms[:4]) and np.array_equal(a.pan, b.pan)
    first = next(c for c in six if c.name.startswith("L7"))
    number = first.name.removeprefix("L7 fusebox")
    folder = shared_data / "landsat7_fusebox"
    swir, _ = load_fusebox_pair(folder / f"{number}_ms.mat", folder / f"{number}_pan.mat", (4, 5))
    assert np.array_equal(first.ms[4:], swir)


def test_the_eight_band_proxy_inserts_yellow_and_red_edge_between_real_bands(shared_data):
    six = quality.load_cases(shared_data, 6)
    eight = quality.load_cases(shared_data, 8)
    assert [c.name for c in eight] == [c.name for c in six]
    for a, b in zip(six, eight, strict=True):
        assert b.ms.shape == (8, *a.ms.shape[1:]) and np.array_equal(a.pan, b.pan)
        # B, G, (G+R)/2, R, (R+NIR)/2, NIR, SWIR1, SWIR2: the six real bands kept in order.
        assert np.array_equal(b.ms[[0, 1, 3, 5, 6, 7]], a.ms)
        np.testing.assert_allclose(b.ms[2], (a.ms[1] + a.ms[2]) / 2, rtol=1e-6)
        np.testing.assert_allclose(b.ms[4], (a.ms[2] + a.ms[3]) / 2, rtol=1e-6)
        assert not np.allclose(b.ms[2], b.ms[1])
