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
