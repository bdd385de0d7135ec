"""The consistency projection (core/degrade.py) that bench.quality scores and
the plugin's CONSISTENCY option applies."""

from __future__ import annotations

import numpy as np

from ada3d_qgis.core.degrade import (
    DEFAULT_MS_GAIN,
    consistency_projection,
    degrade,
    upsample_cubic,
)


def test_projection_moves_the_degraded_image_towards_the_ms():
    rng = np.random.default_rng(0)
    truth = rng.random((3, 64, 64)).cumsum(1).cumsum(2) / 100
    ms = degrade(truth, 2, DEFAULT_MS_GAIN)
    fused = upsample_cubic(ms, 2) + rng.normal(0, 0.5, truth.shape)
    before = fused.copy()
    gaps = [
        np.abs(degrade(consistency_projection(fused, ms, 2, steps), 2, DEFAULT_MS_GAIN) - ms).mean()
        for steps in (0, 1, 2)
    ]
    # Each step brings it closer, the first by more than half; the input is left as it was.
    assert gaps[0] > 2 * gaps[1] and gaps[1] > 1.2 * gaps[2]
    assert np.array_equal(fused, before)
    # The projection adds a low-pass correction only: the detail stays.
    detail = fused - upsample_cubic(degrade(fused, 2, DEFAULT_MS_GAIN), 2)
    kept = consistency_projection(fused, ms, 2)
    kept_detail = kept - upsample_cubic(degrade(kept, 2, DEFAULT_MS_GAIN), 2)
    assert np.corrcoef(detail.ravel(), kept_detail.ravel())[0, 1] > 0.9
