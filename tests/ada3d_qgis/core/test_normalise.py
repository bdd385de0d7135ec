"""Tests of the scene-level normalisation (ada3d_qgis.core.normalise)."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal

from ada3d_qgis.core.normalise import (
    METHOD,
    BandStats,
    RunningStats,
    denormalise,
    normalise,
    scene_stats,
)


@pytest.fixture(scope="module")
def ms(sample_ms) -> np.ndarray:
    ds = gdal.Open(str(sample_ms))
    arr = ds.ReadAsArray()
    ds = None
    return arr


def test_method_name_is_the_metadata_contract():
    assert METHOD == "scene_meanstd"


def test_scene_stats_match_numpy(ms):
    stats = scene_stats(ms)
    x = ms.reshape(4, -1).astype(np.float64)
    np.testing.assert_allclose(stats.mean, x.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(stats.std, x.std(axis=1), rtol=1e-10)


def test_streamed_equals_whole_with_mask(ms):
    valid = np.ones(ms.shape[1:], bool)
    valid[40:90, 100:250] = False
    rs = RunningStats(4)
    for r0 in range(0, 256, 48):
        for c0 in range(0, 256, 80):
            rs.update(ms[:, r0 : r0 + 48, c0 : c0 + 80], valid[r0 : r0 + 48, c0 : c0 + 80])
    stats = rs.result()
    x = ms[:, valid].astype(np.float64)
    np.testing.assert_allclose(stats.mean, x.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(stats.std, x.std(axis=1), rtol=1e-10)
    np.testing.assert_array_equal(rs.count, [valid.sum()] * 4)


def test_nan_nodata_under_the_mask_is_ignored(ms):
    # Float rasters often carry NaN as nodata: masked NaNs must not leak.
    img = ms.astype(np.float64)
    valid = np.ones(ms.shape[1:], bool)
    valid[:10] = False
    img[:, :10] = np.nan
    rs = RunningStats(4)
    rs.update(img[:, :128], valid[:128])  # the first window holds the NaNs
    rs.update(img[:, 128:], valid[128:])
    stats = rs.result()
    x = ms[:, 10:].reshape(4, -1).astype(np.float64)
    np.testing.assert_allclose(stats.mean, x.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(stats.std, x.std(axis=1), rtol=1e-10)


def test_per_band_mask_and_empty_first_window(ms):
    valid = np.ones(ms.shape, bool)
    valid[2, :, :200] = False
    rs = RunningStats(4)
    rs.update(ms[:, :, :10], np.zeros((10,), bool)[None, None, :].repeat(256, 1).repeat(4, 0))
    rs.update(ms, valid)
    stats = rs.result()
    assert stats.mean[2] == pytest.approx(ms[2, :, 200:].astype(float).mean(), rel=1e-12)
    assert stats.mean[0] == pytest.approx(ms[0].astype(float).mean(), rel=1e-12)
    with pytest.raises(ValueError):
        RunningStats(2).result()
    empty = RunningStats(4)
    empty.update(ms, np.zeros(ms.shape[1:], bool))
    with pytest.raises(ValueError):
        empty.result()


def test_large_offsets_keep_precision():
    # Values around 1e7 with a spread of 50 (above the constant-band floor of
    # 1e-6 |mean|): E[x^2] - E[x]^2 in float64 would err by ~1e-5 relative.
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 50, (1, 64, 64))
    rs = RunningStats(1)
    for r0 in range(0, 64, 16):
        rs.update(1e7 + noise[:, r0 : r0 + 16])
    stats = rs.result()
    assert stats.std[0] == pytest.approx(noise.std(), rel=1e-9)
    assert stats.mean[0] == pytest.approx(1e7 + noise.mean(), rel=1e-15)


def test_normalise_roundtrip_and_constant_band(ms):
    img = ms.astype(np.float64)
    img[3] = 1234.0  # a constant band must not divide by zero
    stats = scene_stats(img)
    z = normalise(img, stats)
    assert z.dtype == np.float32 and np.isfinite(z).all()
    np.testing.assert_allclose(z[:3].reshape(3, -1).mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(z[:3].reshape(3, -1).std(axis=1), 1, rtol=1e-5)
    back = denormalise(z, stats)
    np.testing.assert_allclose(back, img, rtol=1e-6)
    # Per-pixel vectors (bands,) work as well as images.
    np.testing.assert_allclose(normalise(img[:, 5, 7], stats), z[:, 5, 7], rtol=1e-6)


def test_band_stats_json_roundtrip(ms):
    stats = scene_stats(ms)
    back = BandStats.from_json(stats.to_json())
    np.testing.assert_array_equal(back.mean, stats.mean)
    np.testing.assert_array_equal(back.std, stats.std)
