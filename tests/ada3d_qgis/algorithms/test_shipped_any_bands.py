"""The shipped band-agnostic models through ``qgis_process.bin``, on the real
six-band Landsat 8 sample and an eight-band input made from it, the way an
analyst with such a raster runs them: no MODEL given, the plugin chooses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from ada3d_qgis.engine.models import SHIPPED_DIR, choose_model
from ada3d_qgis.engine.session import read_metadata

ALG = "ada3d:pansharpen"
DATA = Path(__file__).resolve().parents[2] / "data"
SAMPLE_MS6 = DATA / "l8_ms6.tif"
ANY_R2 = SHIPPED_DIR / "ada3d_r2_any_landsat.onnx"
ANY_R4 = SHIPPED_DIR / "ada3d_r4_any_vhr.onnx"


def _run(qgis_process, pan, ms, out):
    proc = qgis_process("run", ALG, "--", f"PANCHROMATIC={pan}", f"SPECTRAL={ms}",
                        "DEVICE=2", f"OUTPUT={out}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _block_mean(a: np.ndarray, r: int) -> np.ndarray:
    h, w = a.shape[-2] // r * r, a.shape[-1] // r * r
    return a[..., :h, :w].reshape(*a.shape[:-2], h // r, r, w // r, r).mean(axis=(-3, -1))


def _fused_agrees_with_the_ms(out: Path, ms: np.ndarray) -> None:
    """Each fused band, averaged back to 30 m, follows its MS band closely
    (the PAN grid is half a PAN pixel off the MS grid: compare inside)."""
    fused = gdal.Open(str(out)).ReadAsArray().astype(np.float64)
    assert fused.shape == (ms.shape[0], 512, 512)
    back = _block_mean(fused[:, 1:-1, 1:-1], 2)
    for band in range(ms.shape[0]):
        a, b = back[band, 2:-2, 2:-2], ms[band, 2:-3, 2:-3]
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95, band


def test_six_landsat_bands_run_the_band_agnostic_model(qgis_process, sample_pan, tmp_path):
    out = tmp_path / "six.tif"
    log = _run(qgis_process, sample_pan, SAMPLE_MS6, out)
    assert f"Model: {ANY_R2.name}" in log and "run on the 6 selected bands" in log, log[-3000:]
    ms = gdal.Open(str(SAMPLE_MS6)).ReadAsArray().astype(np.float64)
    _fused_agrees_with_the_ms(out, ms)
    ds = gdal.Open(str(out))
    assert ds.GetRasterBand(6).GetDescription().startswith("SWIR2")
    ds = None


def test_eight_bands_run_and_the_log_says_it_is_beyond_training(
    qgis_process, sample_pan, tmp_path
):
    """Blue, green, yellow, red, red edge, NIR, SWIR1, SWIR2: the six real bands
    with two in between, as bench.quality's 8-band proxy builds them."""
    from bench.quality import proxy_8

    six = gdal.Open(str(SAMPLE_MS6))
    ms8 = proxy_8(six.ReadAsArray().astype(np.float32))
    path = tmp_path / "ms8.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(path), 256, 256, 8, gdal.GDT_Float32)
    ds.SetGeoTransform(six.GetGeoTransform())
    ds.SetProjection(six.GetProjection())
    for i, band in enumerate(ms8):
        ds.GetRasterBand(i + 1).WriteArray(band)
    ds = six = None
    out = tmp_path / "eight.tif"
    log = _run(qgis_process, sample_pan, path, out)
    assert f"Model: {ANY_R2.name}" in log
    assert "run on the 8 selected bands, more than the 6 it was trained with" in log
    _fused_agrees_with_the_ms(out, ms8.astype(np.float64))


@pytest.mark.parametrize(("ratio", "fixed", "agnostic"), [
    (2.0, "ada3d_r2_4b_landsat.onnx", ANY_R2),
    (4.0, "ada3d_r4_4b_vhr.onnx", ANY_R4),
])
def test_four_bands_take_the_band_agnostic_model_only_where_it_validated_as_well(
    ratio, fixed, agnostic
):
    fixed_meta = read_metadata(SHIPPED_DIR / fixed)
    agnostic_meta = read_metadata(agnostic)
    theirs = agnostic_meta.validation["subsets"]["B,G,R,NIR"]["ergas"]
    choice = choose_model(4, ratio, descriptions=["Blue", "Green", "Red", "NIR"])
    expected = agnostic.name if theirs <= fixed_meta.validation["ergas"] else fixed
    assert choice.path.name == expected, choice.reason
    for bands in (3, 5, 6, 7, 8):
        assert choose_model(bands, ratio).path == agnostic


def test_the_consistency_option_runs_from_the_command_line(qgis_process, sample_pan, tmp_path):
    out = tmp_path / "consistent.tif"
    proc = qgis_process("run", ALG, "--", f"PANCHROMATIC={sample_pan}", f"SPECTRAL={SAMPLE_MS6}",
                        "DEVICE=2", "CONSISTENCY=true", f"OUTPUT={out}")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "Consistency with the multispectral: every tile is projected onto it" in log
    ms = gdal.Open(str(SAMPLE_MS6)).ReadAsArray().astype(np.float64)
    _fused_agrees_with_the_ms(out, ms)
