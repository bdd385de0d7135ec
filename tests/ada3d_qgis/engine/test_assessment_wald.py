"""Tests of the reduced-resolution inputs (ada3d_qgis.engine.assessment_wald) on
the real Landsat 8 sample: the streamed degradation equals the whole-array
functions of ada3d_qgis.core.degrade."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal
from tiny_models import read_array as _read
from tiny_models import read_geo as _geo
from tiny_models import warp_window

from ada3d_qgis.core.degrade import degrade, wald_pair
from ada3d_qgis.engine import assessment_wald as A
from ada3d_qgis.engine.feedback import QuietFeedback

# --- Wald degradation, streamed --------------------------------------------------------


@pytest.mark.parametrize("origin", [(0, 0), (6, 4)])
def test_degrade_stream_equals_the_whole_array(sample, origin):
    ms = sample["ms"][:, :150, :170]
    r, gain = 2, 0.3
    out_w, out_h = (170 - origin[0]) // r - 3, (150 - origin[1]) // r - 2
    got = np.full((4, out_h, out_w), np.nan)

    def write(x, y, a):
        got[:, y : y + a.shape[1], x : x + a.shape[2]] = a

    def read(x, y, w, h):
        return ms[:, y : y + h, x : x + w]

    A.degrade_stream(read, (170, 150), origin, (out_w, out_h), r, gain, write, QuietFeedback(),
                     window=40)
    whole = degrade(ms, r, gain)[:, origin[1] // r :, origin[0] // r :][:, :out_h, :out_w]
    np.testing.assert_allclose(got, whole, rtol=1e-12)


def test_wald_inputs_equal_wald_pair_on_the_sample(sample, sample_ms, sample_pan, tmp_path):
    wald = A.wald_inputs(str(sample_pan), str(sample_ms), tmp_path, window=64)
    ms_gt = sample["ms_gt"]
    # Independently: the PAN cubic-warped onto the MS / 2 grid (511 whole 15 m
    # pixels from the MS corner), then the whole-array protocol.
    pan_fine = warp_window(sample_pan, ms_gt[0], ms_gt[3], 15.0, 511, 511)[0]
    ms_lr, pan_lr, target = wald_pair(sample["ms"], pan_fine, 2, 2)
    assert target.shape == (4, 254, 254) and wald.ratio == 2
    assert (wald.grid.width, wald.grid.height, wald.grid.x0) == (254, 254, ms_gt[0])
    np.testing.assert_array_equal(_read(wald.ms_lr), ms_lr.astype(np.float32))
    np.testing.assert_array_equal(_read(wald.pan_lr), pan_lr.astype(np.float32))
    gt_ms, _ = _geo(wald.ms_lr)
    gt_pan, _ = _geo(wald.pan_lr)
    assert gt_ms == (ms_gt[0], 60.0, 0.0, ms_gt[3], 0.0, -60.0)
    assert gt_pan == (ms_gt[0], 30.0, 0.0, ms_gt[3], 0.0, -30.0)
    ds = gdal.Open(str(wald.ms_lr))
    names = [ds.GetRasterBand(i).GetDescription() for i in range(1, 5)]
    ds = None
    assert names[0].startswith("Blue")
