"""The "Ada3D Pansharpen" algorithm through processing.run, on real imagery
(crops of the embedded Landsat 8 sample, with its half-PAN-pixel offset)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import onnx
import processing
import pytest
from onnx import TensorProto, helper
from osgeo import gdal
from qgis.core import QgsProcessingException, QgsProcessingFeedback, QgsRasterLayer
from tiny_models import shifted_copy

from ada3d_qgis.engine import raster_io as rio
from ada3d_qgis.engine.models import shipped_models
from ada3d_qgis.engine.session import cuda_problem
from ada3d_qgis.engine.tiling import tile_grid

ALG = "ada3d:pansharpen"


class Recorder(QgsProcessingFeedback):
    """Keeps the log and errors; cancels once ``cancel_after`` tiles are done."""

    def __init__(self, cancel_after: int | None = None) -> None:
        super().__init__()
        self.infos: list[str] = []
        self.details: list[str] = []
        self.errors: list[str] = []
        self.cancel_after = cancel_after

    def pushInfo(self, info):
        self.infos.append(info)
        tiles = sum(1 for line in self.infos if line.startswith("Tile "))
        if self.cancel_after is not None and tiles >= self.cancel_after:
            self.cancel()

    def pushDebugInfo(self, info):
        self.details.append(info)

    def reportError(self, error, fatalError=False):
        self.errors.append(error)


def _run(params, feedback=None):
    return processing.run(ALG, params, feedback=feedback or Recorder())


def _params(pan, ms, out, model, **extra):
    return {"PANCHROMATIC": str(pan), "SPECTRAL": str(ms), "MODEL": str(model),
            "DEVICE": 2, "OUTPUT": str(out), **extra}


def _error(params) -> str:
    """The message the analyst sees when the run fails (and that it failed)."""
    fb = Recorder()
    with pytest.raises(QgsProcessingException) as info:
        _run(params, fb)
    # processing.run re-raises processAlgorithm's exception; errors found while
    # preparing reach the feedback and a generic exception is raised.
    return "\n".join([str(info.value), *fb.errors])


def _read(path):
    ds = gdal.Open(str(path))
    assert ds is not None
    data = ds.ReadAsArray()
    band = ds.GetRasterBand(1)
    info = {
        "gt": ds.GetGeoTransform(),
        "wkt": ds.GetProjection(),
        "nodata": band.GetNoDataValue(),
        "descriptions": [ds.GetRasterBand(i + 1).GetDescription() for i in range(ds.RasterCount)],
        "type": band.DataType,
    }
    del band
    ds = None
    return data, info


@pytest.fixture()
def out_dir(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


# ----------------------------------------------------------------- georeferencing


def test_output_is_on_the_pan_grid_over_the_common_area(ada3d_provider, small, tiny_model, out_dir):
    pan, ms = small
    fb = Recorder()
    result = _run(_params(pan, ms, out_dir / "fused.tif", tiny_model), fb)
    assert result["OUTPUT"] == str(out_dir / "fused.tif")
    assert result["MODEL_USED"] == str(tiny_model)
    assert result["EXECUTION_PROVIDER"] == "CPUExecutionProvider" and result["TILES"] == 1
    data, info = _read(result["OUTPUT"])
    pan_ds = gdal.Open(str(pan))
    pgt = pan_ds.GetGeoTransform()
    assert rio.same_crs(info["wkt"], pan_ds.GetProjection())
    assert (info["gt"][1], info["gt"][5]) == (pgt[1], pgt[5])
    # The origin is a PAN pixel corner: the first PAN pixel whose centre the MS
    # covers (the MS starts half a PAN pixel in, on that pixel's centre).
    col = (info["gt"][0] - pgt[0]) / pgt[1]
    row = (info["gt"][3] - pgt[3]) / pgt[5]
    assert (col, row) == (0.0, 0.0)
    assert data.shape == (4, 98, 98)  # every PAN pixel: the MS covers all their centres
    assert info["descriptions"][2].startswith("Red")
    assert info["type"] == gdal.GDT_UInt16
    # Content is registered: compared with GDAL's own bilinear warp of the MS onto
    # the output grid, the fit is best without any shift.
    ref = gdal.Warp("", str(ms), format="MEM", outputBounds=(
        info["gt"][0], info["gt"][3] + 98 * info["gt"][5], info["gt"][0] + 98 * info["gt"][1],
        info["gt"][3]), width=98, height=98, resampleAlg="bilinear").ReadAsArray()
    inner = (slice(None), slice(8, -8), slice(8, -8))

    def err(dy, dx):
        return np.abs(np.roll(data.astype(float), (dy, dx), (1, 2)) - ref)[inner].mean()

    assert err(0, 0) < 0.5 * min(err(1, 0), err(-1, 0), err(0, 1), err(0, -1))
    assert any("Model: " in line for line in fb.infos)
    assert any(line.startswith("Device: CPU") for line in fb.infos)
    # Library names and the tile plan are details, apart from the summary.
    assert any("CPUExecutionProvider" in line for line in fb.details)
    # (QGIS itself closes the log with the "Results:" dictionary.)
    assert not any("ExecutionProvider" in line for line in fb.infos
                   if not line.startswith("Results:"))
    assert any(line.startswith("Tiling: 1 windows") for line in fb.details)
    assert any(line.startswith("Output: 98 x 98 px") and "1 tile(s)" in line
               for line in fb.infos)
    assert any(line.startswith("Done in ") and "megapixels per second" in line
               for line in fb.infos)


def test_extent_is_the_one_gdal_pansharp_gives(ada3d_provider, sample_pan, sample_ms, out_dir):
    """The whole sample: 512 x 512 on the PAN grid, as gdal:pansharp writes it."""
    ours = _run(_params(sample_pan, sample_ms, out_dir / "ours.tif", ""))["OUTPUT"]
    gdal_out = str(out_dir / "gdal.tif")
    processing.run("gdal:pansharp", {"SPECTRAL": str(sample_ms),
                                     "PANCHROMATIC": str(sample_pan), "OUTPUT": gdal_out})
    a, b = gdal.Open(ours), gdal.Open(gdal_out)
    assert (a.RasterXSize, a.RasterYSize) == (b.RasterXSize, b.RasterYSize) == (512, 512)
    assert a.GetGeoTransform() == pytest.approx(b.GetGeoTransform())
    data = a.ReadAsArray()
    # Every pixel holds data, the edge rows and columns included.
    assert a.GetRasterBand(1).GetNoDataValue() is None and (data > 0).all()
    a = b = None


def test_layers_and_paths_give_the_same_result(ada3d_provider, small, tiny_model, out_dir):
    pan, ms = small
    _run(_params(pan, ms, out_dir / "paths.tif", tiny_model))
    pan_layer, ms_layer = QgsRasterLayer(str(pan), "pan"), QgsRasterLayer(str(ms), "ms")
    try:
        assert pan_layer.isValid() and ms_layer.isValid()
        params = _params(pan, ms, out_dir / "layers.tif", tiny_model)
        params.update(PANCHROMATIC=pan_layer, SPECTRAL=ms_layer, PAN_BAND=1,
                      SPECTRAL_BANDS=[1, 2, 3, 4])
        _run(params)
    finally:
        del pan_layer, ms_layer
    a, _ = _read(out_dir / "paths.tif")
    b, _ = _read(out_dir / "layers.tif")
    assert np.array_equal(a, b)


def test_temporary_output_and_default_model_settings(ada3d_provider, small, tiny_model):
    pan, ms = small
    result = _run({"PANCHROMATIC": str(pan), "SPECTRAL": str(ms), "MODEL": str(tiny_model),
                   "OUTPUT": "TEMPORARY_OUTPUT"})
    assert os.path.isfile(result["OUTPUT"])
    ds = gdal.Open(result["OUTPUT"])
    assert ds.GetMetadata("IMAGE_STRUCTURE").get("COMPRESSION") == "DEFLATE"
    ds = None


# ----------------------------------------------------------------- nodata and types


def test_nodata_in_ms_and_pan_becomes_output_nodata(ada3d_provider, small, tiny_model, tmp_path,
                                                    out_dir):
    pan, ms = small
    pan_nd, ms_nd = tmp_path / "pan_nd.tif", tmp_path / "ms_nd.tif"
    shutil.copy(pan, pan_nd)
    shutil.copy(ms, ms_nd)
    ds = gdal.Open(str(ms_nd), gdal.GA_Update)
    data = ds.ReadAsArray()
    data[:, 10:16, 20:30] = 0  # MS rows/cols in MS pixels
    for i in range(4):
        band = ds.GetRasterBand(i + 1)
        band.WriteArray(data[i])
        band.SetNoDataValue(0)
        del band
    ds = None
    ds = gdal.Open(str(pan_nd), gdal.GA_Update)
    band = ds.GetRasterBand(1)
    pdata = band.ReadAsArray()
    pdata[60:70, 5:15] = 65535
    band.WriteArray(pdata)
    band.SetNoDataValue(65535)
    del band
    ds = None

    _run(_params(pan_nd, ms_nd, out_dir / "nd.tif", tiny_model))
    _run(_params(pan, ms, out_dir / "full.tif", tiny_model))
    got, info = _read(out_dir / "nd.tif")
    full, _ = _read(out_dir / "full.tif")
    assert info["nodata"] == 0
    gap = got == 0
    # Output pixel (y, x) is PAN pixel (y, x); MS pixel k spans PAN pixels
    # 2k + 0.5 .. 2k + 2.5 (half a PAN pixel off) -> output 2k .. 2k + 2, roughly.
    assert gap[:, 60:70, 5:15].all(), "PAN nodata"
    assert gap[:, 2 * 10 + 2 : 2 * 16 - 2, 2 * 20 + 2 : 2 * 30 - 2].all(), "MS nodata"
    expected_gap = np.zeros((98, 98), bool)
    expected_gap[60:70, 5:15] = True
    expected_gap[2 * 10 - 4 : 2 * 16 + 4, 2 * 20 - 4 : 2 * 30 + 4] = True
    assert not gap[:, ~expected_gap].any(), "nodata must not spread"
    # Away from the gaps (beyond the bilinear support) the values are unchanged.
    far = ~np.pad(expected_gap, 0)
    far[57:73, 2:18] = False
    far[2 * 10 - 8 : 2 * 16 + 8, 2 * 20 - 8 : 2 * 30 + 8] = False
    assert np.abs(got[:, far].astype(int) - full[:, far]).max() <= 1


@pytest.mark.parametrize(("gdal_type", "scale"), [(gdal.GDT_Byte, 1 / 256), (gdal.GDT_Float32,
                                                                              1 / 65535)])
def test_uint8_and_float32_inputs(ada3d_provider, small, tiny_model, tmp_path, out_dir,
                                  gdal_type, scale):
    pan, ms = small
    name = gdal.GetDataTypeName(gdal_type)
    conv = {}
    for label, src in (("pan", pan), ("ms", ms)):
        ds = gdal.Open(str(src))
        n = ds.RasterCount
        ds = None
        conv[label] = tmp_path / f"{label}_{name}.tif"
        gdal.Translate(str(conv[label]), str(src), outputType=gdal_type,
                       scaleParams=[[0, 65535, 0, 65535 * scale]] * n)
    _run(_params(conv["pan"], conv["ms"], out_dir / f"{name}.tif", tiny_model))
    _run(_params(pan, ms, out_dir / "ref.tif", tiny_model))
    got, info = _read(out_dir / f"{name}.tif")
    ref, _ = _read(out_dir / "ref.tif")
    assert info["type"] == gdal_type
    assert got.dtype == rio.numpy_type(gdal_type)
    # Same picture, in the input's units.
    for g, r in zip(got.astype(float), ref.astype(float), strict=True):
        assert np.corrcoef(g.ravel(), r.ravel())[0, 1] > 0.99
    assert np.allclose(got.mean(), ref.mean() * scale, rtol=0.02)


# ----------------------------------------------------------------- options and formats


def test_creation_options_and_another_format(ada3d_provider, small, tiny_model, out_dir):
    pan, ms = small
    _run(_params(pan, ms, out_dir / "lzw.tif", tiny_model, OPTIONS="COMPRESS=LZW|TILED=YES"))
    ds = gdal.Open(str(out_dir / "lzw.tif"))
    assert ds.GetMetadata("IMAGE_STRUCTURE")["COMPRESSION"] == "LZW"
    ds = None
    _run(_params(pan, ms, out_dir / "fused.png", tiny_model))
    png, info = _read(out_dir / "fused.png")
    tif, tinfo = _read(out_dir / "lzw.tif")
    assert np.array_equal(png, tif) and info["gt"] == tinfo["gt"]
    assert not [n for n in os.listdir(out_dir) if "ada3d-tmp" in n]


# ----------------------------------------------------------------- errors


def _identity_onnx(path):
    node = helper.make_node("Identity", ["ms"], ["fused"])
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("ms", TensorProto.FLOAT, [1, 4, 2, 2])],
        [helper.make_tensor_value_info("fused", TensorProto.FLOAT, [1, 4, 2, 2])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                ir_version=9), str(path))
    return path


def test_errors_are_sentences_and_leave_nothing(ada3d_provider, small, tiny_model, tmp_path,
                                                out_dir):
    pan, ms = small
    out = out_dir / "x.tif"
    far = shifted_copy(ms, tmp_path / "far.tif", 100_000)
    coarse = tmp_path / "ms60.tif"
    gdal.Translate(str(coarse), str(ms), xRes=60, yRes=60, resampleAlg="average")
    text = tmp_path / "text.onnx"
    text.write_text("not a model")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(tiny_model.read_bytes()[:4000])
    proto = onnx.load(str(tiny_model))
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != "tile_size"]
    del proto.metadata_props[:]
    for k, v in kept:
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    no_tile = tmp_path / "no_tile.onnx"
    onnx.save(proto, str(no_tile))

    cases = {
        "do not overlap": _params(pan, far, out, tiny_model),
        "takes 4 multispectral bands": _params(pan, ms, out, tiny_model,
                                               SPECTRAL_BANDS=[1, 2, 3]),
        "band selection is empty": _params(pan, ms, out, tiny_model, SPECTRAL_BANDS=[]),
        "not a readable ONNX model": _params(pan, ms, out, text),
        "truncated": _params(pan, ms, out, truncated),
        "no Ada3D metadata": _params(pan, ms, out, _identity_onnx(tmp_path / "id.onnx")),
        "lacks the keys tile_size": _params(pan, ms, out, no_tile),
        "does not exist": _params(pan, ms, out_dir / "missing" / "x.tif", tiny_model),
        "4 times the panchromatic pixel size, but the model tiny_bilinear.onnx is made for a "
        "ratio of 2": _params(pan, coarse, out, tiny_model),
        "model file": _params(pan, ms, out, tmp_path / "nope.onnx"),
    }
    for expected, params in cases.items():
        message = _error(params)
        assert expected in message, (expected, message)
        assert os.listdir(out_dir) == [], expected


def test_cuda_requested_but_unavailable(ada3d_provider, small, tiny_model, out_dir):
    problem = cuda_problem()
    if problem is None:
        pytest.skip("CUDA really works here")
    pan, ms = small
    message = _error(_params(pan, ms, out_dir / "x.tif", tiny_model, DEVICE=1))
    assert "DEVICE is CUDA, but CUDA cannot run here" in message and problem in message
    assert os.listdir(out_dir) == []


def test_cancel_after_the_first_tile_leaves_nothing(ada3d_provider, small, tiny_model, out_dir):
    pan, ms = small
    fb = Recorder(cancel_after=1)
    with pytest.raises(QgsProcessingException) as excinfo:
        _run(_params(pan, ms, out_dir / "x.tif", tiny_model, TILE_SIZE=48, OVERLAP=12), fb)
    assert sum(1 for line in fb.infos if line.startswith("Tile ")) == 1
    assert "Cancelled" in str(excinfo.value) or any("Cancelled" in e for e in fb.errors)
    assert os.listdir(out_dir) == []


# ----------------------------------------------------------------- tiled vs one tile


def _border_steps(error: np.ndarray, borders: list[int], axis: int) -> tuple[float, float]:
    """(largest mean jump of ``error`` across a tile border along ``axis``, 99th
    percentile of the same statistic over all other positions): a seam shows as
    a border whose jump stands out from the ordinary ones."""
    other = 1 if axis == 2 else 2
    jumps = np.abs(np.diff(error, axis=axis)).mean(axis=(0, other))  # between i-1 and i
    at_border = np.array([jumps[i - 1] for i in borders])
    ordinary = np.delete(jumps, [i - 1 for i in borders])
    return float(at_border.max()), float(np.percentile(ordinary, 99))


@pytest.mark.slow
def test_tiled_run_matches_one_whole_image_pass_on_a_1024_px_scene(
    ada3d_provider, sample_pan_1024, sample_ms_512, out_dir
):
    """Issue 3's proof on a real 1024 x 1024 PAN scene with the shipped ratio-2
    model: the default tiled run (pooled context from spread tiles, then every
    tile with it) and one whole-image pass differ by less than 0.5 % of the data
    range (RMSE), and the difference has no step at the tile borders."""
    shipped = [(p, m) for p, m in shipped_models() if m.ratio == 2 and m.bands == 4]
    assert shipped, "the ratio-2 model ships with the plugin"
    model, meta = shipped[0]
    fb = Recorder()
    _run(_params(sample_pan_1024, sample_ms_512, out_dir / "tiled.tif", model), fb)
    tiles_line = next(line for line in fb.details if line.startswith("Tiling: "))
    assert "pooled context from" in tiles_line, fb.details
    fb_whole = Recorder()
    _run(_params(sample_pan_1024, sample_ms_512, out_dir / "whole.tif", model,
                 TILE_SIZE=1100), fb_whole)
    assert any("fits one tile" in line for line in fb_whole.details), fb_whole.details
    tiled, _ = _read(out_dir / "tiled.tif")
    whole, _ = _read(out_dir / "whole.tif")
    assert tiled.shape == whole.shape and tiled.shape[1] >= 1020 and tiled.shape[2] >= 1020
    error = tiled.astype(float) - whole
    data_range = float(whole.max()) - float(whole.min())
    rmse = float(np.sqrt((error**2).mean()))
    grid = tile_grid(tiled.shape[2], tiled.shape[1], meta.tile_size, meta.overlap, 2)
    print(f"{tiles_line}\nRMSE {rmse:.3f} = {100 * rmse / data_range:.4f} % of the range")
    assert rmse < 0.005 * data_range
    for axis, starts in ((2, {t.core_x for t in grid}), (1, {t.core_y for t in grid})):
        borders = sorted(starts - {0})
        assert len(borders) >= 2, tiles_line
        border, ordinary = _border_steps(error, borders, axis)
        print(f"axis {axis}: largest mean jump of the difference across a tile border "
              f"{border:.3f}, 99th percentile elsewhere {ordinary:.3f}")
        assert border <= max(ordinary, 1e-6)
