"""bench/window_pair: one window's time the way the engine runs it."""

from __future__ import annotations

import numpy as np

from ada3d_qgis.engine.models import SHIPPED_DIR
from ada3d_qgis.engine.session import read_metadata
from bench.common import random_tile_feeds
from bench.window_pair import measure

MODEL = SHIPPED_DIR / "ada3d_r2_any_landsat.onnx"


def test_feeds_fit_the_band_count_and_fix_the_context():
    meta = read_metadata(MODEL)
    feeds = random_tile_feeds(meta, 32, 5, weight=1.0)
    assert feeds["ms"].shape == (1, 5, 16, 16) and feeds["pan"].shape == (1, 1, 32, 32)
    assert feeds["context"].shape == (1, meta.context_size_for(5))
    assert np.all(feeds["context_weight"] == 1)


def test_the_three_timings_are_measured():
    times = measure(MODEL, 32, 4)
    assert set(times) == {"alone", "two sessions", "one session"}
    assert all(0 < t < 10_000 for t in times.values())
