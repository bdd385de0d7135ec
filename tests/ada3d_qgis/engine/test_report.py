"""Tests of the HTML report's building blocks (ada3d_qgis.engine.report):
contrast stretch, PNG encoding, colour ramp, layout, reading by warps, and the
self-contained HTML."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest
from osgeo import gdal

from ada3d_qgis.core.metrics import METRIC_KEYS
from ada3d_qgis.engine import report as R
from ada3d_qgis.engine.raster_io import Grid, grid_of


def _read(path) -> np.ndarray:
    ds = gdal.Open(str(path))
    arr = ds.ReadAsArray().astype(np.float64)
    ds = None
    return arr


def _decode_png(data: bytes) -> np.ndarray:
    name = "/vsimem/test_report_decode.png"
    gdal.FileFromMemBuffer(name, data)
    try:
        ds = gdal.Open(name)
        arr = ds.ReadAsArray()
        ds = None
    finally:
        gdal.Unlink(name)
    return arr


# --- stretch ----------------------------------------------------------------


def test_stretch_shares_the_first_images_percentiles():
    rng = np.random.default_rng(1)
    first = rng.normal(1000, 100, (3, 50, 60))
    second = first + 100.0
    a, b = R.stretch([first, second])
    assert a.dtype == np.uint8 and a.shape == first.shape
    lo = np.percentile(first.reshape(3, -1), 2, axis=1)
    hi = np.percentile(first.reshape(3, -1), 98, axis=1)
    expected = np.clip((first - lo[:, None, None]) / (hi - lo)[:, None, None], 0, 1) * 255
    assert np.abs(a.astype(float) - expected).max() <= 0.5 + 1e-9
    # The same value gets the same byte in both pictures (one shared stretch):
    # the brighter copy is brighter, not re-stretched to the same look.
    assert b.mean() > a.mean() + 20
    same = np.isclose(second[0], first[0, 10, 10])
    assert not same.any() or (b[0][same] == a[0, 10, 10]).all()


def test_stretch_paints_missing_pixels_grey():
    img = np.ones((3, 4, 4)) * np.arange(16).reshape(4, 4)
    img[:, 1, 2] = np.nan
    (out,) = R.stretch([img])
    assert (out[:, 1, 2] == R.NODATA_GREY).all()
    assert out[0, 0, 0] == 0 and out[0, 3, 3] == 255


# --- PNG, colour ramp -----------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 17, 23), (1, 9, 5), (12, 7)])
def test_png_round_trip(shape):
    img = np.random.default_rng(2).integers(0, 256, shape, dtype=np.uint8)
    decoded = _decode_png(R.png_bytes(img))
    np.testing.assert_array_equal(decoded.reshape(img.shape), img)


def test_side_by_side_png_file(tmp_path):
    a = np.full((3, 10, 6), 50, np.uint8)
    b = np.full((1, 8, 4), 200, np.uint8)  # grey: repeated to RGB
    canvas = R.side_by_side([a, b], gap=2)
    assert canvas.shape == (3, 10, 12)
    assert (canvas[:, :, :6] == 50).all() and (canvas[:, :8, 8:] == 200).all()
    assert (canvas[:, :, 6:8] == 255).all() and (canvas[:, 8:, 8:] == 255).all()
    path = R.write_png(canvas, tmp_path / "q.png")
    np.testing.assert_array_equal(_read(path).astype(np.uint8), canvas)
    assert [p.name for p in tmp_path.iterdir()] == ["q.png"]


def test_png_rejects_non_byte_images():
    with pytest.raises(ValueError):
        R.png_bytes(np.zeros((3, 4, 4), np.float32))


def test_colourise_ramp_ends_clipping_and_nodata():
    values = np.array([[0.0, 5.0, 10.0, 50.0, np.nan]])
    rgb = R.colourise(values, vmax=10.0)
    assert rgb.shape == (3, 1, 5) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[:, 0, 0], R._RAMP[0])
    np.testing.assert_array_equal(rgb[:, 0, 2], R._RAMP[-1])
    np.testing.assert_array_equal(rgb[:, 0, 3], rgb[:, 0, 2])  # clipped at vmax
    assert (rgb[:, 0, 4] == R.NODATA_GREY).all()
    # Viridis gets brighter from 0 to the top.
    bar = R.legend_bar(64, 2).astype(float).sum(axis=0)[0]
    assert bar[-1] > bar[0] and np.all(np.diff(bar[::8]) > 0)


# --- layout ---------------------------------------------------------------------


def _grid(width: int, height: int) -> Grid:
    return Grid(0.0, 1000.0, 1.0, 1.0, width, height, "")


def test_layout_shrinks_big_areas_by_whole_factors():
    lay = R.plan_layout(_grid(2000, 1000), max_side=512, crop=128)
    assert lay.factor == 4 and (lay.width, lay.height) == (500, 250)
    assert lay.crop == ((2000 - 128) // 2, (1000 - 128) // 2, 128, 128)
    og = lay.overview_grid
    assert (og.dx, og.width, og.x0) == (4.0, 500, 0.0)
    small = R.plan_layout(_grid(100, 60), max_side=512, crop=128)
    assert small.factor == 1 and small.crop == (0, 0, 100, 60)


def test_pick_crop_moves_to_the_textured_part():
    lay = R.plan_layout(_grid(400, 400), max_side=100, crop=80)  # factor 4
    detail = np.zeros((100, 100))
    detail[60:80, 10:30] = np.random.default_rng(3).normal(0, 1, (20, 20))
    x, y, w, h = R.pick_crop(lay, detail).crop
    assert (w, h) == (80, 80)
    # The crop (in area pixels) covers the textured block (overview 10..30, 60..80).
    assert x <= 10 * 4 and x + w >= 30 * 4 and y <= 60 * 4 and y + h >= 80 * 4


# --- band choice and reading ----------------------------------------------------------


def _mem(bands: int, names=(), interps=()) -> gdal.Dataset:
    ds = gdal.GetDriverByName("MEM").Create("", 4, 4, bands)
    for i, name in enumerate(names, start=1):
        b = ds.GetRasterBand(i)
        b.SetDescription(name)
        del b
    for i, interp in enumerate(interps, start=1):
        b = ds.GetRasterBand(i)
        b.SetColorInterpretation(interp)
        del b
    return ds


def test_true_colour_bands_from_names_interpretation_or_default(sample_ms):
    ds = gdal.Open(str(sample_ms))  # descriptions "Blue (B2 ...)", "Green ...", ...
    assert R.colour_bands(ds) == [3, 2, 1]
    ds = None
    rgbn = _mem(4, interps=(gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand))
    assert R.colour_bands(rgbn) == [1, 2, 3]
    assert R.colour_bands(_mem(4)) is None
    assert R.default_rgb(4) == [3, 2, 1] and R.default_rgb(3) == [1, 2, 3]
    assert R.default_rgb(2) == [1]


def test_warp_to_copies_on_the_same_grid_and_averages_when_shrinking(sample_ms):
    ds = gdal.Open(str(sample_ms))
    grid = grid_of(ds, "ms")
    ds = None
    ms = _read(sample_ms)
    same = R.warp_to(str(sample_ms), [3, 2, 1], grid, "ms")
    np.testing.assert_array_equal(same, ms[[2, 1, 0]])
    half = R.warp_to(str(sample_ms), [4], grid.window(0, 0, 128, 128, step=2), "ms")
    blocks = ms[3].reshape(128, 2, 128, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(half[0], blocks, rtol=1e-6)


# --- HTML -------------------------------------------------------------------------------


def _content(with_sam: bool = True) -> R.ReportContent:
    rng = np.random.default_rng(4)
    lay = R.plan_layout(_grid(64, 48), max_side=32, crop=16)  # factor 2
    panels = [
        R.Panel("MS (upsampled)", "ms.tif", [3, 2, 1], True),
        R.Panel("PAN <raw>", "pan.tif", [1], False),
        R.Panel("Fused", "fused.tif", [3, 2, 1], True),
    ]
    for p in panels:
        n = len(p.bands)
        p.overview = rng.normal(100, 10, (n, lay.height, lay.width))
        p.crop = rng.normal(100, 10, (n, 16, 16))
    metrics = dict.fromkeys(METRIC_KEYS, float("nan"))
    metrics.update(Q2N=0.8123456, SAM=2.5, ERGAS=3.25, SCC=0.9, PSNR=41.0)
    sam = None
    if with_sam:
        sam = R.SamPictures(rng.uniform(0, 5, (lay.height, lay.width)), np.full((16, 16), 1.0),
                            "the reference's")
    return R.ReportContent(
        title="Test report",
        mode="reference",
        metrics=metrics,
        facts=[("Mode", "with a reference")],
        inputs=[("Fused", "/data/fused & co.tif")],
        band_names=["Blue", "Green", "Red", "NIR"],
        band_rows={"RMSE": [1.0, 2.0, 3.0, 4.0]},
        notes=["A note."],
        panels=panels,
        sam=sam,
        layout=lay,
    )


def test_html_is_self_contained_with_table_and_pictures(tmp_path):
    content = _content()
    path = R.write_report(tmp_path / "r.html", content)
    text = path.read_text(encoding="utf-8")
    assert list(tmp_path.iterdir()) == [path]  # no temporary left behind
    sources = re.findall(r'src="([^"]*)"', text)
    # 3 overviews + 3 crops + SAM overview and crop + legend.
    assert len(sources) == 9
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "href" not in text and "http" not in text and "url(" not in text
    for s in sources:
        assert _decode_png(base64.b64decode(s.split(",", 1)[1])).size > 0
    assert 'id="Q2N">0.8123<' in text and 'id="QNR">n/a<' in text
    assert "PAN &lt;raw&gt;" in text and "fused &amp; co.tif" in text
    assert "NIR" in text and "4.0000" in text


def test_html_without_pictures_still_has_the_table():
    content = _content()
    content.panels, content.sam = [], None
    text = R.render_html(content)
    assert "<img" not in text and 'id="ERGAS">3.2500<' in text


def test_write_report_refuses_a_missing_folder(tmp_path):
    from ada3d_qgis.engine import Ada3DError

    with pytest.raises(Ada3DError, match="does not exist"):
        R.write_report(tmp_path / "nope" / "r.html", _content(False))
