"""Tests of the streamed assessment engine (ada3d_qgis.engine.assessment) on
the real Landsat 8 sample: window-by-window results equal the whole-array
functions of ada3d_qgis.core.metrics and ada3d_qgis.core.degrade on arrays
this file builds itself (the grids from the sample's known geometry: the PAN
origin is half a PAN pixel up and left of the MS origin)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from osgeo import gdal
from tiny_models import read_array as _read
from tiny_models import warp_window

from ada3d_qgis.core.degrade import degrade, upsample_cubic, wald_pair
from ada3d_qgis.core.metrics import METRIC_KEYS, no_reference_metrics, reference_metrics
from ada3d_qgis.engine import Ada3DError, Cancelled
from ada3d_qgis.engine import assessment as A
from ada3d_qgis.engine.raster_io import Grid
from ada3d_qgis.engine.report import plan_layout
from ada3d_qgis.engine.tiling import windows

REL = 1e-9




def _write(path, image, gt, wkt, dtype=gdal.GDT_Float32, nodata=None, names=()):
    image = image.reshape(-1, *image.shape[-2:])
    ds = gdal.GetDriverByName("GTiff").Create(
        str(path), image.shape[2], image.shape[1], image.shape[0], dtype
    )
    ds.SetGeoTransform(gt)
    ds.SetProjection(wkt)
    for i, band in enumerate(image):
        b = ds.GetRasterBand(i + 1)
        b.WriteArray(band)
        if nodata is not None:
            b.SetNoDataValue(nodata)
        if i < len(names):
            b.SetDescription(names[i])
        del b
    ds = None
    return str(path)




def _assert_close(got: dict, expected: dict, keys) -> None:
    for k in keys:
        assert got[k] == pytest.approx(expected[k], rel=REL), k




@pytest.fixture(scope="module")
def full_res(sample, sample_ms, tmp_path_factory):
    """A plausible fused image on the whole PAN grid: the MS cubic-warped onto
    it plus the PAN's high-pass detail; and the arrays of the scored area, the
    whole 512 x 512 PAN (every PAN pixel whose centre the MS covers)."""
    folder = tmp_path_factory.mktemp("full_res")
    gt = sample["pan_gt"]
    up = warp_window(sample_ms, gt[0], gt[3], 15.0, 512, 512)
    pan = sample["pan"]
    detail = pan - upsample_cubic(degrade(pan, 2, 0.15), 2)
    fused = up + 0.8 * detail
    path = _write(folder / "fused.tif", fused, gt, sample["wkt"])
    fused = _read(path)  # as stored (float32)
    # The MS on the exact 2 x PAN grid over the area (the alignment the engine does).
    ms_area = warp_window(sample_ms, gt[0], gt[3], 30.0, 256, 256)
    return {"path": path, "fused": fused, "pan": pan, "ms": ms_area, "folder": folder}


# --- geometry helpers ------------------------------------------------------------------


def test_windows_tile_the_area_on_the_block_grid():
    wins = windows(100, 70, 32)
    covered = np.zeros((70, 100), int)
    for x, y, w, h in wins:
        assert x % 32 == 0 and y % 32 == 0
        covered[y : y + h, x : x + w] += 1
    assert (covered == 1).all()
    assert A.window_size(64, 500) == 448 and A.window_size(96, 50) == 96


# --- no reference ----------------------------------------------------------------------


def test_no_reference_streamed_equals_whole_area(full_res, sample_ms, sample_pan):
    opts = A.AssessOptions(fused=full_res["path"], pan=str(sample_pan), ms=str(sample_ms),
                           window=128)
    res = A.assess(opts)
    expected = no_reference_metrics(full_res["fused"], full_res["ms"], full_res["pan"], 2)
    assert res.mode == "no-reference" and res.ratio == 2
    assert (res.grid.width, res.grid.height) == (512, 512)
    assert res.details["tiles_lr"] == expected["tiles_lr"] == 64
    _assert_close(res.metrics, {"D_LAMBDA": expected["D_LAMBDA"], "D_S": expected["D_S"],
                                "QNR": expected["QNR"]}, ("D_LAMBDA", "D_S", "QNR"))
    assert all(math.isnan(res.metrics[k]) for k in ("Q2N", "SAM", "ERGAS", "SCC", "PSNR"))
    assert set(res.metrics) == set(METRIC_KEYS)


def test_no_reference_with_mask_and_nodata(full_res, sample, sample_ms, sample_pan, tmp_path):
    gt = sample["pan_gt"]
    fused = _read(full_res["path"])
    fused[:, 300:340, 20:90] = -9999.0  # nodata in the fused raster
    path = _write(tmp_path / "fused_nd.tif", fused, gt, sample["wkt"], nodata=-9999.0)
    # A mask on the MS grid (30 m): another invalid patch.
    ms_gt = sample["ms_gt"]
    mask = np.ones((256, 256), np.uint8)
    mask[20:60, 100:140] = 0
    mask_path = _write(tmp_path / "mask.tif", mask, ms_gt, sample["wkt"], gdal.GDT_Byte)
    res = A.assess(A.AssessOptions(fused=path, pan=str(sample_pan), ms=str(sample_ms),
                                   mask=mask_path, window=128))
    valid = np.ones((512, 512), bool)
    valid[300:340, 20:90] = False  # area pixels = PAN pixels
    # MS pixel j covers PAN pixels 2j + 0.5 .. 2j + 2.5: nearest-neighbour puts
    # PAN pixel a (centre a + 0.5) in MS pixel floor(a / 2).
    idx = np.arange(512) // 2
    mask_area = mask[idx.astype(int)][:, idx.astype(int)].astype(bool)
    valid &= mask_area
    expected = no_reference_metrics(
        np.where(valid, full_res["fused"], np.nan), full_res["ms"], full_res["pan"], 2,
        valid=valid,
    )
    assert res.details["tiles_lr"] == expected["tiles_lr"] < 64
    _assert_close(res.metrics, {"QNR": expected["QNR"], "D_S": expected["D_S"]}, ("QNR", "D_S"))


# --- with a reference ------------------------------------------------------------------


@pytest.fixture(scope="module")
def perturbed(sample, tmp_path_factory):
    """A fused image on the MS grid (an imperfect estimate of the MS)."""
    ms = sample["ms"]
    rng = np.random.default_rng(5)
    est = upsample_cubic(degrade(ms, 2, 0.3), 2)
    fused = 1.02 * est + 0.03 * est[[1, 2, 3, 0]] + rng.normal(0, 30, ms.shape)
    folder = tmp_path_factory.mktemp("reference")
    path = _write(folder / "fused.tif", fused, sample["ms_gt"], sample["wkt"])
    return {"path": path, "fused": _read(path), "folder": folder}


def _lowres_pair(sample, folder) -> tuple[str, str]:
    """PAN and MS whose pixel sizes give ratio 2 (only the ratio is read)."""
    ms_lr, pan_lr, _ = wald_pair(sample["ms"], sample["pan"], 2, 2)
    gt = sample["ms_gt"]
    ms_path = _write(folder / "ms_lr.tif", ms_lr, (gt[0], 60.0, 0, gt[3], 0, -60.0), sample["wkt"])
    pan_path = _write(folder / "pan_lr.tif", pan_lr, gt, sample["wkt"])
    return pan_path, ms_path


REF_KEYS = {"Q2N": "Q2N", "SAM": "SAM", "ERGAS": "ERGAS", "SCC": "SCC", "PSNR": "PSNR"}


def test_reference_streamed_equals_whole_array(sample, sample_ms, perturbed):
    pan, ms = _lowres_pair(sample, perturbed["folder"])
    res = A.assess(A.AssessOptions(fused=perturbed["path"], pan=pan, ms=ms,
                                   reference=str(sample_ms), window=64))
    expected = reference_metrics(sample["ms"], perturbed["fused"], 2, 65535.0)
    assert res.mode == "reference" and res.details["data_range"] == 65535.0
    assert res.details["q2n_tiles"] == 64
    _assert_close(res.metrics, {k: expected[v] for k, v in REF_KEYS.items()}, REF_KEYS)
    np.testing.assert_allclose(res.details["scc_bands"], expected["scc_bands"], rtol=REL)
    assert all(math.isnan(res.metrics[k]) for k in ("D_LAMBDA", "D_S", "QNR"))


def test_reference_offset_by_whole_pixels_scores_the_common_part(sample, sample_ms, perturbed):
    pan, ms = _lowres_pair(sample, perturbed["folder"])
    ref_path = str(perturbed["folder"] / "ref_crop.tif")
    gdal.Translate(ref_path, str(sample_ms), srcWin=[10, 6, 200, 180])
    res = A.assess(A.AssessOptions(fused=perturbed["path"], pan=pan, ms=ms, reference=ref_path,
                                   window=64))
    fused = perturbed["fused"][:, 6:186, 10:210]
    expected = reference_metrics(sample["ms"][:, 6:186, 10:210], fused, 2, 65535.0)
    assert res.grid.x0 == sample["ms_gt"][0] + 10 * 30.0
    _assert_close(res.metrics, {k: expected[v] for k, v in REF_KEYS.items()}, REF_KEYS)


def test_reference_nodata_and_observed_data_range(sample, perturbed):
    folder = perturbed["folder"]
    pan, ms = _lowres_pair(sample, folder)
    ref = sample["ms"].astype(np.float32) / 65535.0  # a float reference: no type range
    fused = perturbed["fused"].astype(np.float32) / 65535.0
    fused[:, 100:150, 40:90] = -1.0
    ref_path = _write(folder / "ref_float.tif", ref, sample["ms_gt"], sample["wkt"])
    fused_path = _write(folder / "fused_nd.tif", fused, sample["ms_gt"], sample["wkt"], nodata=-1)
    res = A.assess(A.AssessOptions(fused=fused_path, pan=pan, ms=ms, reference=ref_path,
                                   window=96))
    valid = np.ones((256, 256), bool)
    valid[100:150, 40:90] = False
    ref64 = ref.astype(np.float64)
    data_range = float(ref64[:, valid].max() - ref64[:, valid].min())
    expected = reference_metrics(ref64, np.where(valid, fused, np.nan), 2, data_range, valid)
    assert res.details["data_range"] == pytest.approx(data_range, rel=1e-12)
    assert res.details["pixels"] == valid.sum()
    _assert_close(res.metrics, {k: expected[v] for k, v in REF_KEYS.items()}, REF_KEYS)


# --- errors ------------------------------------------------------------------------------


def test_errors_a_user_can_cause(sample, sample_ms, sample_pan, perturbed):
    folder = perturbed["folder"]
    pan, ms = _lowres_pair(sample, folder)
    gt = sample["ms_gt"]
    half = _write(folder / "half.tif", sample["ms"], (gt[0] + 15, 30, 0, gt[3], 0, -30),
                  sample["wkt"])
    three = _write(folder / "three.tif", sample["ms"][:3], gt, sample["wkt"])
    far = _write(folder / "far.tif", sample["ms"], (gt[0] + 1.2e5, 30, 0, gt[3], 0, -30),
                 sample["wkt"])

    def run(**kw):
        base = {"fused": perturbed["path"], "pan": pan, "ms": ms}
        A.assess(A.AssessOptions(**{**base, **kw}))

    with pytest.raises(Ada3DError, match="fraction of a pixel"):
        run(reference=half)
    with pytest.raises(Ada3DError, match="reference has 3"):
        run(reference=three)
    with pytest.raises(Ada3DError, match="do not overlap"):
        run(reference=far)
    with pytest.raises(Ada3DError, match="whole-number ratio"):
        run(reference=str(sample_ms), pan=ms, ms=pan)  # swapped: ratio 1/2
    # Without a reference the fused raster must be on the PAN grid.
    with pytest.raises(Ada3DError, match="not the panchromatic raster's"):
        run(pan=str(sample_pan), ms=str(sample_ms))
    with pytest.raises(Ada3DError, match="cannot be opened"):
        run(reference=str(folder / "missing.tif"))


def test_cancel_stops_and_writes_no_report(full_res, sample_ms, sample_pan, tmp_path):
    class CancelSoon:
        calls = 0

        def setProgress(self, p):
            pass

        def pushInfo(self, text):
            pass

        def isCanceled(self):
            self.calls += 1
            return self.calls > 2

    html = tmp_path / "r.html"
    with pytest.raises(Cancelled):
        A.assess(A.AssessOptions(fused=full_res["path"], pan=str(sample_pan), ms=str(sample_ms),
                                 report=str(html), window=128), CancelSoon())
    assert list(tmp_path.iterdir()) == []


# --- pictures ------------------------------------------------------------------------------


def test_sam_collector_averages_into_overview_pixels_and_keeps_the_crop():
    grid = Grid(0.0, 100.0, 1.0, 1.0, 70, 50, "")
    lay = plan_layout(grid, max_side=20, crop=16)  # factor 4: 17 x 12 overview
    lay = type(lay)(lay.grid, lay.factor, lay.width, lay.height, (30, 20, 16, 16))
    angles = np.random.default_rng(6).uniform(0, 10, (50, 70))
    angles[5, 5] = np.nan
    col = A.SamCollector(lay)
    for x, y, w, h in windows(70, 50, 24):
        col.add(x, y, angles[y : y + h, x : x + w])
    blocks = angles[:48, :68].reshape(12, 4, 17, 4)
    np.testing.assert_allclose(col.overview(), np.nanmean(blocks, axis=(1, 3)), rtol=1e-12)
    np.testing.assert_array_equal(col.crop, angles[20:36, 30:46])


def test_report_of_a_reference_run(sample, sample_ms, perturbed, tmp_path):
    pan, ms = _lowres_pair(sample, perturbed["folder"])
    html = tmp_path / "report.html"
    res = A.assess(A.AssessOptions(fused=perturbed["path"], pan=pan, ms=ms,
                                   reference=str(sample_ms), report=str(html)))
    assert res.report == html
    text = html.read_text(encoding="utf-8")
    for key in ("Q2N", "SAM", "ERGAS", "SCC", "PSNR"):
        assert f'id="{key}">{res.metrics[key]:.4f}<' in text
    # MS, PAN, fused, reference and SAM: overview and crop each, plus the legend.
    assert text.count("<img") == 11 and "Reference" in text
    assert 'src="http' not in text and "href" not in text
