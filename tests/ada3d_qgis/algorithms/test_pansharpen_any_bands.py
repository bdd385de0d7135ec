"""Issue 18 through processing.run: with a band-agnostic model installed, the
algorithm runs 3-, 5- and 6-band inputs (crops of the real Landsat 8 sample;
the 5th and 6th bands are made from its own bands, as no 6-band sample ships)
and says in the log which model it chose and why."""

from __future__ import annotations

import shutil

import numpy as np
import processing
import pytest
from osgeo import gdal
from qgis.core import QgsProcessingFeedback
from tiny_models import small_pair

from ada3d_qgis.engine import models

ALG = "ada3d:pansharpen"

pytestmark = pytest.mark.slow  # the band-agnostic fixture is a dynamo export


class Log(QgsProcessingFeedback):
    def __init__(self) -> None:
        super().__init__()
        self.infos: list[str] = []

    def pushInfo(self, info):
        self.infos.append(info)


@pytest.fixture
def installed(tmp_path, monkeypatch, agnostic_model, tiny_model):
    """The shipped-model folder holds the tiny 4-band model and the band-agnostic one."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(agnostic_model, folder / "any.onnx")
    shutil.copy(tiny_model, folder / "fixed_4b.onnx")
    monkeypatch.setattr(models, "SHIPPED_DIR", folder)
    return folder


@pytest.fixture
def six_band(tmp_path, sample_pan, sample_ms):
    """(pan, ms): a 49 x 49 MS crop with two more bands (stand-ins for SWIR1 and
    SWIR2: mixtures of its NIR, red and green), and its PAN."""
    pan, ms4 = small_pair(tmp_path / "small", sample_pan, sample_ms)
    src = gdal.Open(str(ms4))
    data = src.ReadAsArray().astype(np.float64)
    extra = [0.6 * data[3] + 0.4 * data[2], 0.5 * data[3] + 0.5 * data[1]]
    stack = np.concatenate([data, np.stack(extra)]).round().astype(np.uint16)
    out = tmp_path / "ms6.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(out), 49, 49, 6, gdal.GDT_UInt16)
    ds.SetGeoTransform(src.GetGeoTransform())
    ds.SetProjection(src.GetProjection())
    names = ["Blue", "Green", "Red", "NIR", "SWIR1", "SWIR2"]
    for i in range(6):
        band = ds.GetRasterBand(i + 1)
        band.WriteArray(stack[i])
        band.SetDescription(names[i])
    ds = None
    return pan, out


def _run(pan, ms, out, bands, **extra):
    log = Log()
    params = {"PANCHROMATIC": str(pan), "SPECTRAL": str(ms), "SPECTRAL_BANDS": bands,
              "DEVICE": 2, "OUTPUT": str(out), **extra}
    result = processing.run(ALG, params, feedback=log)
    model_line = next(line for line in log.infos if line.startswith("Model: "))
    return result, model_line, gdal.Open(result["OUTPUT"]).ReadAsArray().astype(np.float64)


@pytest.mark.parametrize("bands", [[1, 2, 3], [1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6]])
def test_band_counts_no_fixed_model_takes_run_on_the_band_agnostic_one(
    ada3d_provider, installed, six_band, tmp_path, bands
):
    pan, ms = six_band
    n = len(bands)
    result, line, fused = _run(pan, ms, tmp_path / "fused.tif", bands)
    assert result["MODEL_USED"] == str(installed / "any.onnx")
    assert "band-agnostic" in line and "any 3 to 6 bands" in line, line
    assert f"run on the {n} selected bands, as no model is made for exactly {n} bands" in line
    assert fused.shape == (n, 98, 98)
    # The untrained head perturbs a bilinear start: each band stays that band.
    src = gdal.Open(str(ms)).ReadAsArray().astype(np.float64)[:n]
    means = fused.reshape(n, -1).mean(axis=1) / src.reshape(n, -1).mean(axis=1)
    assert np.all(np.abs(means - 1) < 0.1), means


def test_tiles_with_the_pooled_context_match_one_window_at_five_bands(
    ada3d_provider, installed, six_band, tmp_path
):
    """The context length follows the band count: tiles sharing the pooled
    context give what one whole window gives."""
    pan, ms = six_band
    bands = [1, 2, 3, 4, 5]
    _, _, whole = _run(pan, ms, tmp_path / "whole.tif", bands, TILE_SIZE=200)
    _, _, tiled = _run(pan, ms, tmp_path / "tiled.tif", bands, TILE_SIZE=48, OVERLAP=16)
    assert whole.shape == tiled.shape == (5, 98, 98)
    assert np.abs(whole - tiled).max() <= 0.01 * (whole.max() - whole.min())


def test_four_bands_keep_the_model_made_for_them(ada3d_provider, installed, six_band, tmp_path):
    pan, ms = six_band
    result, line, fused = _run(pan, ms, tmp_path / "fused.tif", [1, 2, 3, 4])
    assert result["MODEL_USED"] == str(installed / "fixed_4b.onnx")
    assert "preferred to the band-agnostic any.onnx" in line, line
    assert fused.shape == (4, 98, 98)


def test_bands_without_descriptions_get_no_trained_band_names(
    ada3d_provider, installed, six_band, tmp_path
):
    """The band-agnostic model was trained on B, G, R, NIR, SWIR1, SWIR2, but
    any three bands may be selected: their output is not labelled by those names."""
    pan, ms = six_band
    bare = tmp_path / "bare.tif"
    gdal.Translate(str(bare), str(ms))
    ds = gdal.Open(str(bare), gdal.GA_Update)
    for i in range(6):
        ds.GetRasterBand(i + 1).SetDescription("")
    ds = None
    result, _, fused = _run(pan, bare, tmp_path / "fused.tif", [4, 5, 6])
    out = gdal.Open(result["OUTPUT"])
    names = [out.GetRasterBand(i + 1).GetDescription() for i in range(out.RasterCount)]
    assert fused.shape[0] == 3 and names == ["band1", "band2", "band3"]
