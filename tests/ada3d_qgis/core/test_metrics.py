"""Tests of ada3d_qgis.core.metrics against independent implementations.

References: the ``sewar`` package (SAM, ERGAS, PSNR, Q2n, and its UQI for
the Q index of D_lambda/D_s), scipy for the SCC Laplacian, and a slow Q4
written here with 4 x 4 real matrices of Hamilton quaternions. Images: the
real Landsat 8 sample and a "fused" image made from it by Wald degradation,
cubic upsampling and per-band perturbations.
"""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal
from scipy import ndimage
from sewar import full_ref

from ada3d_qgis.core import metrics as M
from ada3d_qgis.core.degrade import degrade, upsample_cubic


def _read(path) -> np.ndarray:
    ds = gdal.Open(str(path))
    arr = ds.ReadAsArray().astype(np.float64)
    ds = None
    return arr


def _hwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(1, 2, 0))


@pytest.fixture(scope="module")
def ms(sample_ms) -> np.ndarray:
    return _read(sample_ms)


@pytest.fixture(scope="module")
def pan(sample_pan) -> np.ndarray:
    return _read(sample_pan)


@pytest.fixture(scope="module")
def fused(ms) -> np.ndarray:
    """A plausible, imperfect estimate of ``ms``: EXP baseline plus band
    gains, offsets, a little band mixing and noise (so SAM is not ~0)."""
    rng = np.random.default_rng(7)
    est = upsample_cubic(degrade(ms, 2, 0.3), 2)
    gains = np.array([1.02, 0.97, 1.01, 0.99])[:, None, None]
    mixed = 0.95 * est + 0.05 * est[[1, 2, 3, 0]]
    return (
        gains * mixed
        + np.array([30.0, -50.0, 10.0, 80.0])[:, None, None]
        + rng.normal(0, 40, ms.shape)
    )


# --- Q2n ------------------------------------------------------------------


def _hamilton_left(a: np.ndarray) -> np.ndarray:
    """4 x 4 real matrix of left multiplication by quaternion a."""
    a0, a1, a2, a3 = a
    return np.array(
        [
            [a0, -a1, -a2, -a3],
            [a1, a0, -a3, a2],
            [a2, a3, a0, -a1],
            [a3, -a2, a1, a0],
        ]
    )


def _q4_reference(ref: np.ndarray, fus: np.ndarray, block: int = 32) -> float:
    """Slow Q4: loops over tiles and pixels with quaternion matrices.

    Each pixel is the Hamilton quaternion b0 + b1 i + b2 j + b3 k of its
    (tile-standardised) bands; the covariance is E[x y*] - E[x] E[y]*, each
    product computed as a 4 x 4 real matrix times a vector.
    """
    conj = np.array([1.0, -1.0, -1.0, -1.0])
    values = []
    for r0 in range(0, ref.shape[1] - block + 1, block):
        for c0 in range(0, ref.shape[2] - block + 1, block):
            x = ref[:, r0 : r0 + block, c0 : c0 + block].reshape(4, -1)
            y = fus[:, r0 : r0 + block, c0 : c0 + block].reshape(4, -1)
            mean = x.mean(axis=1, keepdims=True)
            std = x.std(axis=1, ddof=1, keepdims=True)
            x = (x - mean) / std + 1
            y = (y - mean) / std + 1
            n = x.shape[1]
            prod = np.zeros(4)
            for k in range(n):
                prod += _hamilton_left(x[:, k]) @ (conj * y[:, k])
            mx, my = x.mean(axis=1), y.mean(axis=1)
            cov = (prod / n - _hamilton_left(mx) @ (conj * my)) * n / (n - 1)
            var_x = ((x - mx[:, None]) ** 2).sum() / (n - 1)
            var_y = ((y - my[:, None]) ** 2).sum() / (n - 1)
            nx, ny = np.linalg.norm(mx), np.linalg.norm(my)
            q = 4 * np.linalg.norm(cov) * nx * ny / ((var_x + var_y) * (nx**2 + ny**2))
            values.append(q)
    return float(np.mean(values))


def test_q4_matches_quaternion_matrix_reference(ms, fused):
    # 96 x 128 crop: 12 tiles, enough for a slow per-pixel loop.
    ref, fus = ms[:, 32:128, 64:192], fused[:, 32:128, 64:192]
    expected = _q4_reference(ref, fus)
    assert M.q2n(ref, fus) == pytest.approx(expected, rel=1e-10)
    assert 0.5 < expected < 1.0


@pytest.mark.parametrize("bands", [3, 4, 6, 8])
def test_q2n_matches_sewar(ms, fused, bands):
    # sewar's q2n ports the reference toolbox (bands zero-padded to 2^k).
    ref = np.concatenate([ms, ms[::-1] * 0.8 + 100])[:bands]
    fus = np.concatenate([fused, fused[::-1] * 0.8 + 90])[:bands]
    expected = full_ref.q2n(_hwc(ref), _hwc(fus), ws=32)
    assert M.q2n(ref, fus) == pytest.approx(expected, rel=1e-9)


def test_q2n_limits(ms, fused):
    assert M.q2n(ms, ms) == pytest.approx(1.0, abs=1e-12)
    assert M.q2n(ms, fused) < M.q2n(ms, 0.5 * fused + 0.5 * ms)


# --- pixel metrics --------------------------------------------------------


def test_sam_ergas_psnr_match_sewar(ms, fused):
    gt, p = _hwc(ms), _hwc(fused)
    res = M.reference_metrics(ms, fused, ratio=2, data_range=65535)
    assert res["SAM"] == pytest.approx(np.degrees(full_ref.sam(gt, p)), rel=1e-9)
    assert res["ERGAS"] == pytest.approx(full_ref.ergas(gt, p, r=1 / 2), rel=1e-12)
    assert res["PSNR"] == pytest.approx(full_ref.psnr(gt, p, MAX=65535), rel=1e-12)
    for b in range(4):
        assert res["psnr_bands"][b] == pytest.approx(
            full_ref.psnr(ms[b], fused[b], MAX=65535), rel=1e-12
        )
        assert res["rmse_bands"][b] == pytest.approx(full_ref.rmse(ms[b], fused[b]), rel=1e-12)
    assert M.sam(ms, fused) == res["SAM"]
    assert M.ergas(ms, fused, 4) == pytest.approx(res["ERGAS"] / 2)
    assert 0.1 < res["SAM"] < 10


def test_scc_matches_scipy_laplacian_correlation(ms, fused):
    kernel = np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], float)
    res = M.reference_metrics(ms, fused, ratio=2)
    per_band = []
    for b in range(4):
        hr = ndimage.correlate(ms[b], kernel)[1:-1, 1:-1]
        hf = ndimage.correlate(fused[b], kernel)[1:-1, 1:-1]
        per_band.append(np.corrcoef(hr.ravel(), hf.ravel())[0, 1])
    np.testing.assert_allclose(res["scc_bands"], per_band, rtol=1e-10)
    assert res["SCC"] == pytest.approx(np.mean(per_band), rel=1e-10)
    assert M.scc(ms, ms) == pytest.approx(1.0)


def test_mask_equals_cropping(ms, fused):
    # Excluding the right half by mask must equal scoring the left half
    # alone (128 is a multiple of the tile size, so the same tiles count).
    valid = np.ones(ms.shape[1:], bool)
    valid[:, 128:] = False
    masked = M.reference_metrics(ms, fused, 2, 65535, valid=valid)
    cropped = M.reference_metrics(ms[:, :, :128], fused[:, :, :128], 2, 65535)
    for key in ("Q2N", "SAM", "ERGAS", "PSNR", "SCC", "pixels", "q2n_tiles"):
        assert masked[key] == pytest.approx(cropped[key], rel=1e-12), key
    # Non-finite fused pixels are invalid too.
    nan_fused = fused.copy()
    nan_fused[2, :, 128:] = np.nan
    with_nan = M.reference_metrics(ms, nan_fused, 2, 65535)
    assert with_nan["ERGAS"] == pytest.approx(cropped["ERGAS"], rel=1e-12)
    assert with_nan["Q2N"] == pytest.approx(cropped["Q2N"], rel=1e-12)


def test_sam_map(ms, fused):
    ang = M.sam_map(ms, fused)
    assert ang.shape == ms.shape[1:]
    assert np.nanmean(ang) == pytest.approx(M.sam(ms, fused), rel=1e-12)
    zero = ms.copy()
    zero[:, 0, 0] = 0
    assert np.isnan(M.sam_map(zero, fused)[0, 0])


# --- streaming ------------------------------------------------------------


def _windows(rows: int, cols: int, wr: int, wc: int):
    for r0 in range(0, rows, wr):
        for c0 in range(0, cols, wc):
            yield r0, min(r0 + wr, rows), c0, min(c0 + wc, cols)


def test_reference_metrics_streamed_equals_whole(ms, fused):
    valid = np.ones(ms.shape[1:], bool)
    valid[200:230, 10:90] = False  # a nodata patch crossing window borders
    whole = M.reference_metrics(ms, fused, 2, 65535, valid=valid)
    acc = M.ReferenceMetrics(4, 2, 65535)
    rows, cols = ms.shape[1:]
    for r0, r1, c0, c1 in _windows(rows, cols, 64, 96):
        # One pixel of halo where the image has it, for the SCC Laplacian.
        t, b = min(r0, 1), min(rows - r1, 1)
        left, right = min(c0, 1), min(cols - c1, 1)
        sl = (slice(r0 - t, r1 + b), slice(c0 - left, c1 + right))
        acc.update(
            ms[:, sl[0], sl[1]],
            fused[:, sl[0], sl[1]],
            valid[sl],
            halo=(t, b, left, right),
            origin=(r0, c0),
        )
    streamed = acc.result()
    for key in ("Q2N", "SAM", "ERGAS", "PSNR", "SCC", "pixels", "q2n_tiles"):
        assert streamed[key] == pytest.approx(whole[key], rel=1e-10), key
    np.testing.assert_allclose(streamed["scc_bands"], whole["scc_bands"], rtol=1e-10)
    with pytest.raises(ValueError):
        acc.update(ms[:, :32, :32], fused[:, :32, :32], origin=(16, 0))


# --- no-reference metrics -------------------------------------------------


def _q_block_sewar(a: np.ndarray, b: np.ndarray) -> float:
    """Wang-Bovik Q of one tile through sewar's SSIM: with constants
    C1 = C2 ~ 1e-24 SSIM is Q, and a tile-sized window in 'valid' mode
    gives the single value of the whole tile. (sewar's own ``uqi`` is not
    usable: it multiplies window means by the window size as if they were
    sums, which changes its value.)"""
    return full_ref.ssim(a, b, ws=a.shape[0], K1=1e-12, K2=1e-12, MAX=1.0)[0]


def _q_sewar(a: np.ndarray, b: np.ndarray, block: int) -> float:
    vals = []
    for r0 in range(0, a.shape[0] - block + 1, block):
        for c0 in range(0, a.shape[1] - block + 1, block):
            ta = a[r0 : r0 + block, c0 : c0 + block]
            tb = b[r0 : r0 + block, c0 : c0 + block]
            vals.append(_q_block_sewar(ta, tb))
    return float(np.mean(vals))


def test_q_index_matches_sewar_uqi(ms, fused):
    assert M.q_index(ms[0], fused[0]) == pytest.approx(_q_sewar(ms[0], fused[0], 32), rel=1e-9)


def test_no_reference_metrics_match_alparone_with_sewar_q(ms, pan):
    # Full resolution on the real sample: MS 128 x 128, PAN 256 x 256.
    ms_c, pan_c = ms[:, :128, :128], pan[:256, :256]
    fused = upsample_cubic(ms_c, 2)
    pan_lr = degrade(pan, 2, 0.15)[:128, :128]
    res = M.no_reference_metrics(fused, ms_c, pan_c, 2, pan_lr=pan_lr)
    pairs = [(i, j) for i in range(4) for j in range(4) if i != j]
    d_lambda = np.mean(
        [abs(_q_sewar(fused[i], fused[j], 32) - _q_sewar(ms_c[i], ms_c[j], 32)) for i, j in pairs]
    )
    d_s = np.mean(
        [abs(_q_sewar(fused[i], pan_c, 32) - _q_sewar(ms_c[i], pan_lr, 32)) for i in range(4)]
    )
    assert res["D_LAMBDA"] == pytest.approx(d_lambda, rel=1e-9)
    assert res["D_S"] == pytest.approx(d_s, rel=1e-9)
    assert res["QNR"] == pytest.approx((1 - d_lambda) * (1 - d_s), rel=1e-9)
    assert M.d_lambda(fused, ms_c, 2) == pytest.approx(d_lambda, rel=1e-9)
    assert M.d_s(fused, ms_c, pan_c, 2, pan_lr=pan_lr) == pytest.approx(d_s, rel=1e-9)
    # By default the PAN is degraded with the Wald filter (same numbers on
    # the interior-cropped PAN up to its borders).
    assert M.qnr(fused, ms_c, pan_c, 2) == pytest.approx(res["QNR"], abs=0.02)
    assert 0 < d_lambda < 0.2 and 0 < d_s < 0.3


def test_no_reference_streamed_equals_whole(ms, pan):
    fused = upsample_cubic(ms, 2) + np.random.default_rng(3).normal(0, 30, (4, 512, 512))
    pan_lr = degrade(pan, 2, 0.15)
    valid = np.ones(pan.shape, bool)
    valid[300:340, 100:400] = False
    whole = M.no_reference_metrics(fused, ms, pan, 2, pan_lr=pan_lr, valid=valid)
    acc = M.NoReferenceMetrics(4, 2)
    for r0, r1, c0, c1 in _windows(512, 512, 128, 192):
        acc.update(
            fused[:, r0:r1, c0:c1],
            ms[:, r0 // 2 : r1 // 2, c0 // 2 : c1 // 2],
            pan[r0:r1, c0:c1],
            pan_lr[r0 // 2 : r1 // 2, c0 // 2 : c1 // 2],
            valid=valid[r0:r1, c0:c1],
            origin=(r0, c0),
        )
    streamed = acc.result()
    for key in ("D_LAMBDA", "D_S", "QNR", "tiles", "tiles_lr"):
        assert streamed[key] == pytest.approx(whole[key], rel=1e-10), key
    assert whole["tiles"] < 16 * 16  # the nodata patch removed tiles
    with pytest.raises(ValueError):
        acc.update(
            fused[:, :64, :64], ms[:, :32, :32], pan[:64, :64], pan_lr[:32, :32], origin=(32, 0)
        )


def test_table_wrappers(ms, fused, pan):
    rr = M.reduced_resolution(ms, fused, 2, 65535)
    whole = M.reference_metrics(ms, fused, 2, 65535)
    assert rr == {
        "SAM": whole["SAM"],
        "ERGAS": whole["ERGAS"],
        "Q2n": whole["Q2N"],
        "SCC": whole["SCC"],
        "PSNR": whole["PSNR"],
    }
    fr = M.full_resolution(upsample_cubic(ms, 2), ms, pan, 2)
    nr = M.no_reference_metrics(upsample_cubic(ms, 2), ms, pan, 2)
    assert fr == {"D_lambda": nr["D_LAMBDA"], "D_s": nr["D_S"], "QNR": nr["QNR"]}
    assert 0 < fr["QNR"] < 1


def test_accumulators_report_under_the_catalogue_keys(ms, fused, pan):
    ref = M.reference_metrics(ms, fused, 2, 65535)
    nr = M.no_reference_metrics(upsample_cubic(ms, 2), ms, pan, 2)
    assert set(M.REFERENCE_KEYS) <= set(ref) and set(M.NO_REFERENCE_KEYS) <= set(nr)
    assert M.METRIC_KEYS == (*M.REFERENCE_KEYS, *M.NO_REFERENCE_KEYS)
