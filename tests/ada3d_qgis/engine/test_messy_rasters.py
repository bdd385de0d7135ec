"""Real-world inputs built from the embedded Landsat 8 sample the way a user's
files look (issue 14): each ends in a correct result or a clear refusal,
never in a silent wrong raster."""

from __future__ import annotations

import os

import numpy as np
import pytest
from osgeo import gdal

from ada3d_qgis.engine import Ada3DError
from ada3d_qgis.engine import raster_io as rio
from ada3d_qgis.engine.pipeline import RunOptions, run


class Log:
    """Feedback that keeps every log line (any level) and never cancels."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def setProgress(self, progress: float) -> None:
        pass

    def pushInfo(self, text: str) -> None:
        self.lines.append(text)

    pushWarning = pushDebugInfo = pushInfo

    def isCanceled(self) -> bool:
        return False


def _run(pan, ms, out, model, **extra) -> Log:
    fb = Log()
    run(RunOptions(str(pan), str(ms), str(out), model=str(model), device="cpu", **extra), fb)
    return fb


def _read(path) -> tuple[np.ndarray, list[float | None]]:
    ds = gdal.Open(str(path))
    data = ds.ReadAsArray()
    nodata = [ds.GetRasterBand(i + 1).GetNoDataValue() for i in range(ds.RasterCount)]
    ds = None
    return data, nodata


def _create_like(src_path, dst_path, data: np.ndarray, gdal_type: int, options=()):
    """A new GeoTIFF holding ``data`` on the grid of ``src_path``, made with
    Create() and GDAL's defaults, as scripts that save arrays do."""
    src = gdal.Open(str(src_path))
    ds = gdal.GetDriverByName("GTiff").Create(
        str(dst_path), src.RasterXSize, src.RasterYSize, data.shape[0], gdal_type, list(options)
    )
    ds.SetGeoTransform(src.GetGeoTransform())
    ds.SetProjection(src.GetProjection())
    for i, plane in enumerate(data):
        band = ds.GetRasterBand(i + 1)
        band.WriteArray(plane)
        del band
    ds = None
    src = None
    return dst_path


def _colour_interpretations(path) -> list[str]:
    ds = gdal.Open(str(path))
    names = [
        gdal.GetColorInterpretationName(ds.GetRasterBand(i + 1).GetColorInterpretation())
        for i in range(ds.RasterCount)
    ]
    ds = None
    return names


def _set_nodata(path, value: float, edit=None) -> None:
    """Give every band nodata ``value``; ``edit(band_index, array)`` may change
    a band's pixels first."""
    ds = gdal.Open(str(path), gdal.GA_Update)
    for i in range(ds.RasterCount):
        band = ds.GetRasterBand(i + 1)
        if edit is not None:
            data = band.ReadAsArray()
            edit(i, data)
            band.WriteArray(data)
        band.SetNoDataValue(value)
        del band
    ds = None


@pytest.fixture()
def sample_bytes(sample_ms) -> np.ndarray:
    """The sample's MS scaled to 8 bits (B, G, R, NIR)."""
    ds = gdal.Open(str(sample_ms))
    data = ds.ReadAsArray().astype(np.float64)
    ds = None
    return np.clip(np.rint(data / data.max() * 255), 1, 255).astype(np.uint8)


# ----------------------------------------------------------------- 1. colour interpretation


def test_a_byte_ms_tagged_rgb_alpha_is_fused_as_four_bands_of_data(
    tmp_path, sample_pan, sample_ms, sample_bytes, tiny_model
):
    ms = _create_like(sample_ms, tmp_path / "ms_byte.tif", sample_bytes, gdal.GDT_Byte)
    assert _colour_interpretations(ms) == ["Red", "Green", "Blue", "Alpha"]
    out = tmp_path / "fused.tif"
    fb = _run(sample_pan, ms, out, tiny_model)
    data, nodata = _read(out)
    assert data.shape[0] == 4 and data.dtype == np.uint8
    # Every band, the NIR tagged Alpha included, is the (interpolated) input:
    # its mean is the input's and no pixel is empty.
    for band, src in zip(data.astype(float), sample_bytes.astype(float), strict=True):
        assert abs(band.mean() - src.mean()) < 0.02 * src.mean()
        assert nodata[0] is None or not (band == nodata[0]).any()
    assert any("band 4 is tagged as alpha" in line and "read as data" in line
               for line in fb.lines), fb.lines


def test_an_unselected_alpha_band_masks_the_others(tmp_path, sample_pan, sample_ms, tiny_model):
    ds = gdal.Open(str(sample_ms))
    data = ds.ReadAsArray()
    ds = None
    alpha = np.full(data.shape[1:], 255, np.uint16)
    alpha[100:140, 60:100] = 0
    ms = _create_like(sample_ms, tmp_path / "ms_alpha.tif", np.concatenate([data, alpha[None]]),
                      gdal.GDT_UInt16)
    ds = gdal.Open(str(ms), gdal.GA_Update)
    band = ds.GetRasterBand(5)
    band.SetColorInterpretation(gdal.GCI_AlphaBand)
    del band
    ds = None
    assert _colour_interpretations(ms)[4] == "Alpha"
    out = tmp_path / "fused.tif"
    fb = _run(sample_pan, ms, out, tiny_model, ms_bands=[1, 2, 3, 4])
    got, nodata = _read(out)
    assert got.shape[0] == 4 and nodata[0] is not None
    empty = got == nodata[0]
    # MS pixel (r, c) covers output pixels 2r .. 2r + 1 (half a PAN pixel off).
    assert empty[:, 2 * 100 + 2 : 2 * 140 - 2, 2 * 60 + 2 : 2 * 100 - 2].all()
    outside = np.ones(got.shape[1:], bool)
    outside[2 * 100 - 4 : 2 * 140 + 4, 2 * 60 - 4 : 2 * 100 + 4] = False
    assert not empty[:, outside].any()
    assert any("band 5 is an alpha band" in line for line in fb.lines), fb.lines


def test_a_selected_alpha_band_is_data_an_unselected_one_a_mask(
    tmp_path, sample_pan, sample_ms, sample_bytes
):
    ms = _create_like(sample_ms, tmp_path / "ms_byte.tif", sample_bytes, gdal.GDT_Byte)
    _set_nodata(ms, 0, lambda i, a: a.__setitem__((slice(20, 30), slice(20, 30)), 0)
                if i == 3 else None)
    pan_ds, ms_ds = rio.open_raster(str(sample_pan), "p"), rio.open_raster(str(ms), "m")
    # Bands 1-3 with the alpha (NIR) unselected: band 4 masks them.
    masked = rio.align_inputs(pan_ds, 1, ms_ds, [1, 2, 3], 2)
    # All four selected: the alpha band is one band of data among others.
    plain = rio.align_inputs(pan_ds, 1, ms_ds, [1, 2, 3, 4], 2)
    try:
        assert masked.bands == 3 and plain.bands == 4
        a = masked.read_ms(0, 0, masked.grid.width // 2, masked.grid.height // 2)
        b = plain.read_ms(0, 0, plain.grid.width // 2, plain.grid.height // 2)
        # The aligned grid is a quarter MS pixel off the source.
        assert np.isnan(a[:, 21:29, 21:29]).all()
        assert np.isfinite(b[:3, 21:29, 21:29]).all() and np.isnan(b[3, 21:29, 21:29]).all()
        assert np.isfinite(a[:, 40:, 40:]).all()
        assert any("band 4 is an alpha band" in n for n in masked.notes)
        assert any("band 4 is tagged as alpha" in n for n in plain.notes)
    finally:
        masked.close()
        plain.close()


# ----------------------------------------------------------------- 2. nodata band by band


def test_nodata_in_one_band_stays_in_that_band(tmp_path, sample_pan, sample_ms, tiny_model):
    ms = tmp_path / "ms_nd.tif"
    gdal.Translate(str(ms), str(sample_ms))
    _set_nodata(ms, 0)
    ms_gap = tmp_path / "ms_nir_gap.tif"
    gdal.Translate(str(ms_gap), str(sample_ms))
    _set_nodata(ms_gap, 0, lambda i, a: a.__setitem__((slice(100, 140), slice(60, 100)), 0)
                if i == 3 else None)
    _run(sample_pan, ms, tmp_path / "full.tif", tiny_model)
    _run(sample_pan, ms_gap, tmp_path / "gap.tif", tiny_model)
    full, _ = _read(tmp_path / "full.tif")
    got, nodata = _read(tmp_path / "gap.tif")
    assert nodata == [0.0] * 4
    block = (slice(2 * 100 + 2, 2 * 140 - 2), slice(2 * 60 + 2, 2 * 100 - 2))
    assert (got[3][block] == 0).all(), "the NIR gap is nodata in the output"
    assert (got[:3][(slice(None), *block)] > 0).all(), "the other bands keep their data"
    assert np.abs(got[:3].astype(int) - full[:3]).max() <= 1
    print(f"NIR gap: {int((got[3] == 0).sum())} nodata pixels in the NIR band, "
          f"{int((got[:3] == 0).sum())} in the others")


def test_a_band_with_only_nodata_is_refused_by_name(tmp_path, sample_pan, sample_ms, tiny_model):
    ms = tmp_path / "ms_empty_red.tif"
    gdal.Translate(str(ms), str(sample_ms))
    _set_nodata(ms, 0, lambda i, a: a.fill(0) if i == 2 else None)
    with pytest.raises(Ada3DError) as info:
        _run(sample_pan, ms, tmp_path / "x.tif", tiny_model)
    message = str(info.value)
    assert "band 3 (Red (B4" in message and "holds only nodata (0)" in message, message
    assert os.listdir(tmp_path) == ["ms_empty_red.tif"]
