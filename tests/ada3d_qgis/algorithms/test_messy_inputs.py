"""Messy real-world inputs through ``qgis_process.bin`` (issue 14), the way an
analyst runs them from a shell: what the command prints and leaves behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from osgeo import gdal

from scripts.qgis_env import prepare_config, run_qgis_process

ALG = "ada3d:pansharpen"


@pytest.fixture(scope="module")
def qgis_config(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("qgis_config_messy")


def _pansharpen(config: Path, pan, ms, model, out, *extra: str, env_extra=None):
    env = prepare_config(config)
    env.update(env_extra or {})
    return run_qgis_process(
        env, "run", ALG, "--", f"PANCHROMATIC={pan}", f"SPECTRAL={ms}", f"MODEL={model}",
        "DEVICE=2", f"OUTPUT={out}", *extra, timeout=600,
    )


def _band_count(path) -> int:
    ds = gdal.Open(str(path))
    count = ds.RasterCount
    ds = None
    return count


def test_spectral_bands_given_as_a_comma_separated_list(
    qgis_config, sample_pan, sample_ms, tiny_model, tmp_path
):
    out = tmp_path / "listed.tif"
    proc = _pansharpen(qgis_config, sample_pan, sample_ms, tiny_model, out,
                       "SPECTRAL_BANDS=1,2,3,4")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "do not exist" not in proc.stderr and _band_count(out) == 4
    # A reversed list is taken as given, with the warning.
    proc = _pansharpen(qgis_config, sample_pan, sample_ms, tiny_model, tmp_path / "rev.tif",
                       "SPECTRAL_BANDS=4,3,2,1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Warning: the selected bands are not in the order the model" in (
        proc.stdout + proc.stderr
    )
    proc = _pansharpen(qgis_config, sample_pan, sample_ms, tiny_model, tmp_path / "bad.tif",
                       "SPECTRAL_BANDS=1,two")
    assert proc.returncode != 0
    assert "Bands are given by their numbers, separated by commas (for example 1,2,3,4); " \
        "'1,two' is not such a list." in proc.stderr
    assert not (tmp_path / "bad.tif").exists()


def _damage_band(src, dst, band_number: int) -> Path:
    """A copy of ``src`` whose band ``band_number`` cannot be decoded (its
    compressed blocks overwritten), the others intact: QGIS loads the layer
    (it samples bands 1-3 for its default style), the plugin's read fails."""
    ds = gdal.Translate(str(dst), str(src), creationOptions=[
        "TILED=YES", "COMPRESS=DEFLATE", "INTERLEAVE=BAND", "BLOCKXSIZE=64", "BLOCKYSIZE=64"])
    band = ds.GetRasterBand(band_number)
    bx, by = band.GetBlockSize()
    spans = [
        (int(band.GetMetadataItem(f"BLOCK_OFFSET_{x}_{y}", "TIFF")),
         int(band.GetMetadataItem(f"BLOCK_SIZE_{x}_{y}", "TIFF")))
        for y in range(-(-ds.RasterYSize // by)) for x in range(-(-ds.RasterXSize // bx))
    ]
    del band
    ds = None
    with open(dst, "r+b") as f:
        for offset, size in spans:
            f.seek(offset + 2)
            f.write(b"\xff" * (size - 4))
    return Path(dst)


def test_gdal_error_lines_do_not_precede_the_plugins_sentence(
    qgis_config, sample_pan, sample_ms, tiny_model, tmp_path
):
    ms = _damage_band(sample_ms, tmp_path / "ms_damaged_nir.tif", 4)
    out = tmp_path / "out"
    out.mkdir()
    # Multi-threaded decoding (QGIS users set it for speed) reports from
    # worker threads, which a per-thread error handler does not cover.
    proc = _pansharpen(qgis_config, sample_pan, ms, tiny_model, out / "fused.tif",
                       env_extra={"GDAL_NUM_THREADS": "ALL_CPUS"})
    assert proc.returncode != 0
    print(proc.stderr.strip().splitlines()[-1])
    assert "Reading (resampling) the multispectral raster failed" in proc.stderr
    assert "band 4" in proc.stderr
    assert "ERROR 1:" not in proc.stderr, proc.stderr
    assert os.listdir(out) == []


def test_an_output_format_that_cannot_hold_the_result_is_refused(
    qgis_config, sample_pan, sample_ms, tiny_model, tmp_path
):
    proc = _pansharpen(qgis_config, sample_pan, sample_ms, tiny_model, tmp_path / "fused.jpg")
    assert proc.returncode != 0
    assert "The JPEG JFIF (.jpg) format cannot hold this result (4 band(s) of UInt16): it " \
        "changes the pixel values (lossy compression or a narrower value range); use GeoTIFF " \
        "(.tif)." in proc.stderr
    assert not any(tmp_path.iterdir())


def test_a_missing_onnxruntime_is_named(tmp_path, sample_pan, sample_ms):
    config = tmp_path / "config"
    env = prepare_config(config)
    # The profile's dependency folder without onnxruntime: as on a fresh install.
    for link in (config / "profiles").rglob("onnxruntime"):
        link.unlink()
    proc = run_qgis_process(
        env, "run", ALG, "--", f"PANCHROMATIC={sample_pan}", f"SPECTRAL={sample_ms}",
        f"OUTPUT={tmp_path / 'fused.tif'}", timeout=600,
    )
    assert proc.returncode != 0
    assert "onnxruntime is not installed" in proc.stderr, proc.stderr[-2000:]
    assert "No model is installed" not in proc.stderr
    assert not (tmp_path / "fused.tif").exists()

