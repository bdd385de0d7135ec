"""Tests of the Wald-protocol degradation (ada3d_qgis.core.degrade).

Expected values are derived from first principles: the Fourier transform of a
Gaussian, the symmetry of block-centre sampling, and polynomials that a
symmetric normalised filter (or Keys' cubic) reproduces exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from osgeo import gdal

from ada3d_qgis.core.degrade import (
    SENSOR_GAINS,
    block_centre_taps,
    cubic_phase_weights,
    degrade,
    filter_halo,
    mtf_sigma,
    sensor_gains,
    upsample_cubic,
    wald_pair,
)


def _read(path) -> np.ndarray:
    ds = gdal.Open(str(path))
    arr = ds.ReadAsArray()
    ds = None
    return arr


@pytest.mark.parametrize("ratio", [2, 3, 4])
@pytest.mark.parametrize("gain", [0.1, 0.15, 0.3, 0.4])
def test_taps_response_at_nyquist_is_the_gain(ratio, gain):
    # The magnitude of the taps' DTFT does not depend on where they sit, so a
    # plain zero-padded FFT measures the filter at 1/(2 ratio) cycles/pixel.
    _, w = block_centre_taps(ratio, mtf_sigma(ratio, gain))
    n = 2 * ratio * 256
    spectrum = np.abs(np.fft.rfft(w, n))
    assert spectrum[0] == pytest.approx(1.0, abs=1e-12)
    assert spectrum[n // (2 * ratio)] == pytest.approx(gain, abs=1e-3)


def test_mtf_sigma_matches_continuous_gaussian_transform():
    # Numerical Fourier integral of the continuous Gaussian at f = 1/(2r).
    ratio, gain = 4, 0.3
    sigma = mtf_sigma(ratio, gain)
    x = np.linspace(-12 * sigma, 12 * sigma, 200001)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    f = 1 / (2 * ratio)
    response = np.trapz(g * np.cos(2 * np.pi * f * x), x) / np.trapz(g, x)
    assert response == pytest.approx(gain, rel=1e-6)
    with pytest.raises(ValueError):
        mtf_sigma(2, 1.0)


@pytest.mark.parametrize("ratio", [2, 3, 4])
@pytest.mark.parametrize("gain", [0.15, 0.3])
def test_degrade_nyquist_cosine_gain_and_phase(ratio, gain):
    # A cosine at the low-resolution Nyquist frequency, with a crest on the
    # centre of block 0, must come out as gain * (-1)^j. Sampling half a pixel
    # off the block centre would shrink it by cos(pi / (2 ratio)).
    n = 64 * ratio
    i = np.arange(n)
    wave = np.cos(2 * np.pi * (i - (ratio - 1) / 2) / (2 * ratio))
    image = np.repeat(wave[:, None], 8 * ratio, axis=1)
    out = degrade(image, ratio, gain)
    j = np.arange(out.shape[0])
    inner = slice(8, -8)
    expected = gain * (-1.0) ** j
    np.testing.assert_allclose(out[inner, :], np.repeat(expected[inner, None], 8, 1), atol=2e-3)


@pytest.mark.parametrize("ratio", [2, 3, 4])
def test_constant_blocks_return_their_constants(ratio):
    # With a gain close to one the Gaussian is narrow: every tap of weight
    # above 1e-12 falls inside the block, so the block's value comes back.
    rng = np.random.default_rng(1)
    lr = rng.uniform(0, 1000, (3, 7, 9))
    hr = np.kron(lr, np.ones((ratio, ratio)))
    out = degrade(hr, ratio, 0.999)
    np.testing.assert_allclose(out, lr, rtol=1e-9)


@pytest.mark.parametrize("ratio", [2, 3, 4])
def test_linear_ramp_sampled_at_block_centres(ratio):
    rows, cols = 40 * ratio, 30 * ratio
    r = np.arange(rows, dtype=np.float64)[:, None]
    c = np.arange(cols, dtype=np.float64)[None, :]
    image = 3.0 * r - 2.0 * c + 7.0
    out = degrade(image, ratio, 0.3)
    rc = np.arange(rows // ratio)[:, None] * ratio + (ratio - 1) / 2
    cc = np.arange(cols // ratio)[None, :] * ratio + (ratio - 1) / 2
    expected = 3.0 * rc - 2.0 * cc + 7.0
    m = 8  # away from the reflected border
    np.testing.assert_allclose(out[m:-m, m:-m], expected[m:-m, m:-m], atol=1e-9)


@pytest.mark.parametrize("ratio", [2, 3, 4])
def test_flips_commute_with_degradation(ratio):
    # Block-centre sampling with a symmetric mirror is symmetric under flips
    # and transposition; any phase error breaks this.
    rng = np.random.default_rng(2)
    image = rng.normal(size=(2, 12 * ratio, 10 * ratio))
    out = degrade(image, ratio, [0.3, 0.2])
    np.testing.assert_allclose(degrade(image[:, ::-1], ratio, [0.3, 0.2]), out[:, ::-1])
    np.testing.assert_allclose(degrade(image[:, :, ::-1], ratio, [0.3, 0.2]), out[:, :, ::-1])
    np.testing.assert_allclose(
        degrade(image.transpose(0, 2, 1), ratio, [0.3, 0.2]), out.transpose(0, 2, 1)
    )


def test_shapes_dtypes_and_per_band_gains():
    rng = np.random.default_rng(3)
    image = rng.normal(size=(3, 43, 50)).astype(np.float32)
    out = degrade(image, 4, [0.3, 0.15, 0.3])
    assert out.shape == (3, 10, 12) and out.dtype == np.float32
    assert degrade(image[0], 4).shape == (10, 12)
    assert degrade(image.astype(np.uint16), 2).dtype == np.float64
    # Per-band gains act band by band.
    np.testing.assert_allclose(out[1], degrade(image[1], 4, 0.15), rtol=1e-6)
    # A lower gain means a stronger blur: less variance left.
    assert out[1].std() < degrade(image[1], 4, 0.3).std()
    with pytest.raises(ValueError):
        degrade(image, 4, [0.3, 0.3])
    with pytest.raises(ValueError):
        degrade(image[:, :3, :3], 4)


def test_sensor_gain_table():
    ms, pan = sensor_gains("QuickBird", 4)
    assert ms == list(SENSOR_GAINS["quickbird"]["ms"]) and pan == 0.15
    assert sensor_gains("landsat8", 4) == ([0.3] * 4, 0.15)
    assert sensor_gains("ikonos", 3) == ([0.3] * 3, 0.17)


def test_real_ms_degradation_preserves_radiometry(sample_ms):
    ms = _read(sample_ms).astype(np.float64)
    out = degrade(ms, 2, 0.3)
    assert out.shape == (4, 128, 128)
    block_mean = ms.reshape(4, 128, 2, 128, 2).mean(axis=(2, 4))
    for b in range(4):
        assert out[b].mean() == pytest.approx(ms[b].mean(), rel=2e-3)
        assert np.corrcoef(out[b].ravel(), block_mean[b].ravel())[0, 1] > 0.97
        # The MTF blur removes detail: less spread than the block means.
        assert out[b].std() < block_mean[b].std()


def test_wald_pair_shapes_and_alignment_on_real_data(sample_ms, sample_pan):
    ms = _read(sample_ms).astype(np.float64)
    pan = _read(sample_pan).astype(np.float64)
    ms_lr, pan_lr, target = wald_pair(ms, pan[:, :509], native_ratio=2, model_ratio=4)
    # 509 PAN columns cover 254 MS columns; 252 is the largest multiple of 4.
    assert ms_lr.shape == (4, 64, 63)
    assert pan_lr.shape == (256, 252)
    np.testing.assert_array_equal(target, ms[:, :256, :252])
    # The degraded PAN lies on the MS grid: a PAN made by repeating an MS band
    # over each r x r block (a perfectly registered PAN) comes back as that
    # band when its filter is narrow.
    synthetic = np.kron(ms[2], np.ones((2, 2)))
    pan_lr_exact = wald_pair(ms, synthetic, 2, 4, pan_gain=0.999)[1]
    np.testing.assert_allclose(pan_lr_exact, ms[2, :256, :256], rtol=1e-9)
    # The real PAN is close to the visible bands at the MS scale. (It is not
    # perfectly registered: the L8 product has a residual ~7.5 m row offset.)
    vis = target[:3].mean(axis=0)
    assert np.corrcoef(pan_lr.ravel(), vis.ravel())[0, 1] > 0.8
    pan3 = pan[None]
    assert wald_pair(ms, pan3, 2, 2)[1].shape == (1, 256, 256)
    with pytest.raises(ValueError):
        wald_pair(ms, pan, 2, 3)


@pytest.mark.parametrize("ratio", [2, 3, 4])
def test_cubic_upsampling_reproduces_quadratics_on_block_centre_grid(ratio):
    # Keys' cubic (a = -1/2) interpolates quadratics exactly; sampling at
    # block centres on the low grid must give the fine grid's pixel centres.
    def poly(y, x):
        return 0.5 * y**2 - 0.3 * x * y + 2.0 * x + 1.0

    rl, cl = 20, 18
    yl = np.arange(rl)[:, None] * ratio + (ratio - 1) / 2
    xl = np.arange(cl)[None, :] * ratio + (ratio - 1) / 2
    low = poly(yl, xl)
    up = upsample_cubic(low, ratio)
    assert up.shape == (rl * ratio, cl * ratio)
    yh = np.arange(rl * ratio)[:, None].astype(float)
    xh = np.arange(cl * ratio)[None, :].astype(float)
    m = 3 * ratio
    np.testing.assert_allclose(up[m:-m, m:-m], poly(yh, xh)[m:-m, m:-m], atol=1e-8)
    offsets, w = cubic_phase_weights(ratio)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert offsets.shape == (ratio,)


def test_cubic_upsampling_real_ms_roundtrip(sample_ms):
    # Upsampling the degraded MS by 2 is the EXP baseline of the benchmark:
    # it must be a fair estimate of the original (relative RMSE a few %).
    ms = _read(sample_ms).astype(np.float32)
    up = upsample_cubic(degrade(ms, 2, 0.3), 2)
    assert up.shape == ms.shape and up.dtype == np.float32
    rel = math.sqrt(float(((up - ms) ** 2).mean())) / float(ms.mean())
    assert rel < 0.05


def test_filter_halo_makes_windows_exact(sample_pan):
    # Streaming: a window read with the halo and degraded alone gives the same
    # pixels as the whole image degraded at once.
    pan = _read(sample_pan).astype(np.float64)
    ratio, gain = 2, 0.15
    halo = filter_halo(ratio, gain)
    assert halo % ratio == 0
    whole = degrade(pan, ratio, gain)
    r0, r1, c0, c1 = 128, 256, 64, 320
    win = pan[r0 - halo : r1 + halo, c0 - halo : c1 + halo]
    part = degrade(win, ratio, gain)[
        halo // ratio : -(halo // ratio), halo // ratio : -(halo // ratio)
    ]
    np.testing.assert_allclose(part, whole[r0 // 2 : r1 // 2, c0 // 2 : c1 // 2], rtol=1e-12)
