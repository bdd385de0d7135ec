import math
import os

import numpy as np
import pytest
from osgeo import gdal, osr

from ada3d_qgis.engine import Ada3DError
from ada3d_qgis.engine import raster_io as rio


def _ds(path):
    return rio.open_raster(str(path), "test")


def test_output_window_on_the_sample_is_every_pan_pixel_the_ms_covers(sample_pan, sample_ms):
    pan_ds, ms_ds = _ds(sample_pan), _ds(sample_ms)
    pan, ms = rio.grid_of(pan_ds, "pan"), rio.grid_of(ms_ds, "ms")
    col, row, width, height = rio.output_window(pan, ms, 2)
    # Brute force: a PAN pixel counts when its centre lies on the MS footprint
    # (edges included), as gdal:pansharp's extent.
    inside_c = [
        c for c in range(pan.width)
        if ms.x0 - 1e-6 <= pan.x0 + (c + 0.5) * pan.dx <= ms.x1 + 1e-6
    ]
    inside_r = [
        r for r in range(pan.height)
        if ms.y1 - 1e-6 <= pan.y0 - (r + 0.5) * pan.dy <= ms.y0 + 1e-6
    ]
    assert (col, row, width, height) == (inside_c[0], inside_r[0], len(inside_c), len(inside_r))
    # The sample's MS sits half a PAN pixel off: the whole 512 x 512 PAN is covered.
    assert (col, row, width, height) == (0, 0, 512, 512)
    assert rio.input_ratio(pan_ds, ms_ds) == pytest.approx(2.0)


def test_an_output_of_odd_size_reads_inputs_past_its_edges(sample_pan, sample_ms, tmp_path):
    """A 511 px PAN (odd, not whole 2 x 2 blocks): the output is 511 px, the
    work grid 512; reads past the PAN give NaN, MS cells past its footprint
    repeat the edge cell."""
    pan_path = tmp_path / "pan511.tif"
    gdal.Translate(str(pan_path), str(sample_pan), srcWin=[0, 0, 511, 509])
    pan_ds, ms_ds = _ds(pan_path), _ds(sample_ms)
    inputs = rio.align_inputs(pan_ds, 1, ms_ds, [1, 2, 3, 4], 2)
    try:
        assert (inputs.output.width, inputs.output.height) == (511, 509)
        assert (inputs.grid.width, inputs.grid.height) == (512, 510)
        pan = inputs.read_pan(500, 500, 12, 10)
        assert np.isnan(pan[:, 11]).all() and np.isnan(pan[9]).all()
        assert np.isfinite(pan[:9, :11]).all()
        ms = inputs.read_ms(250, 250, 6, 5)
        assert ms.shape == (4, 5, 6) and np.isfinite(ms).all()
        assert inputs.ms_cols == (0, 256) and inputs.ms_rows == (0, 255)
        far = inputs.read_ms(254, 253, 4, 4)
        np.testing.assert_array_equal(far[:, :, 2], far[:, :, 1])
        np.testing.assert_array_equal(far[:, 2, :], far[:, 1, :])
    finally:
        inputs.close()


def test_ms_cells_past_the_footprint_repeat_the_last_one_inside(sample_pan, sample_ms, tmp_path):
    """The MS ends mid-block at ratio 4: the output still has every PAN pixel
    whose centre it covers, and no gap where the last block's centre is past it."""
    ms_path = tmp_path / "ms_cut.tif"
    gdal.Translate(str(ms_path), str(sample_ms), srcWin=[0, 0, 100, 256])
    pan_ds, ms_ds = _ds(sample_pan), _ds(ms_path)
    # Ratio 4 on the ratio-2 sample: only the geometry matters here.
    inputs = rio.align_inputs(pan_ds, 1, ms_ds, [1, 2], 4)
    try:
        # The MS edge is at 200.5 PAN pixels: it covers PAN centres 0.5 .. 200.5.
        assert inputs.output.width == 201 and inputs.grid.width == 204
        # The cell over PAN columns 200-203 has its centre at 202, past the edge.
        assert inputs.ms_cols == (0, 50)
        ms = inputs.read_ms(48, 0, 3, 8)
        assert np.isfinite(ms).all()
        np.testing.assert_array_equal(ms[:, :, 2], ms[:, :, 1])
    finally:
        inputs.close()


def test_aligned_ms_is_the_sample_shifted_by_a_quarter_pixel(sample_pan, sample_ms):
    pan_ds, ms_ds = _ds(sample_pan), _ds(sample_ms)
    inputs = rio.align_inputs(pan_ds, 1, ms_ds, [1, 2, 3, 4], 2)
    try:
        g = inputs.grid
        assert inputs.bands == 4 and "cubic" in inputs.resampling
        ms = inputs.read_ms(0, 0, g.width // 2, g.height // 2).astype(np.float64)
        src = ms_ds.ReadAsArray().astype(np.float64)
        # The aligned grid starts on PAN pixel 0, half a PAN pixel (a quarter of
        # an MS pixel) before the MS: target pixel j is centred on source pixel
        # j - 0.25. Reference: Keys' cubic convolution (a = -0.5) there.
        def keys(x, a=-0.5):
            x = abs(x)
            if x <= 1:
                return (a + 2) * x**3 - (a + 3) * x**2 + 1
            return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a

        taps = [keys(1.75), keys(0.75), keys(0.25), keys(1.25)]  # source j-2 .. j+1
        n = ms.shape[1] - 4
        ref = sum(
            wy * wx * src[:, i : i + n, k : k + n]
            for i, wy in enumerate(taps)
            for k, wx in enumerate(taps)
        )
        inner = ms[:, 2 : 2 + n, 2 : 2 + n]
        assert np.abs(inner - ref).max() < 0.01
        # Control: the unshifted source is far off, so the check above has teeth.
        assert np.abs(inner - src[:, 2 : 2 + n, 2 : 2 + n]).mean() > 50
        assert inputs.ms_descriptions[0].startswith("Blue")
        pan = inputs.read_pan(0, 0, g.width, g.height)
        assert np.array_equal(pan, pan_ds.ReadAsArray()[: g.height, : g.width])
    finally:
        inputs.close()


def test_an_aligned_ms_is_copied_exactly(tmp_path, sample_pan, sample_ms):
    # Move the MS origin onto the PAN grid: then the warp must be a plain copy.
    pan_gt = _ds(sample_pan).GetGeoTransform()
    ms_path = tmp_path / "ms_aligned.tif"
    gdal.Translate(str(ms_path), str(sample_ms)).SetGeoTransform(
        (pan_gt[0] + 4 * pan_gt[1], 30.0, 0.0, pan_gt[3] - 6 * 15.0, 0.0, -30.0)
    )
    pan_ds, ms_ds = _ds(sample_pan), _ds(ms_path)
    inputs = rio.align_inputs(pan_ds, 1, ms_ds, [3, 1], 2)
    try:
        assert (inputs.col, inputs.row) == (4, 6)
        assert inputs.resampling.startswith("the multispectral grid already")
        g = inputs.grid
        got = inputs.read_ms(0, 0, g.width // 2, g.height // 2)
        src = ms_ds.ReadAsArray()[[2, 0], : g.height // 2, : g.width // 2]
        assert np.array_equal(got, src.astype(np.float32))
    finally:
        inputs.close()


def test_ms_in_another_crs_is_reprojected_onto_the_pan_grid(tmp_path, sample_pan, sample_ms):
    other = tmp_path / "ms_utm15.tif"
    gdal.Warp(str(other), str(sample_ms), dstSRS="EPSG:32615", resampleAlg="cubic")
    pan_ds = _ds(sample_pan)
    ref = rio.align_inputs(pan_ds, 1, _ds(sample_ms), [1, 2, 3, 4], 2)
    ratio = rio.input_ratio(pan_ds, _ds(other))
    assert ratio == pytest.approx(2.0, rel=0.05)
    rep = rio.align_inputs(pan_ds, 1, _ds(other), [1, 2, 3, 4], 2)
    try:
        assert rio.same_crs(rep.grid.crs_wkt, rio.grid_of(pan_ds, "pan").crs_wkt)
        assert "reprojected" in rep.resampling
        # The two MS grids may sit half an MS pixel apart (their windows start on
        # different PAN pixels), hence the loose bound; a real misregistration of
        # a few pixels drops the correlation well below it (control).
        assert _pan_space_correlation(ref, rep) > 0.92
        assert _pan_space_correlation(ref, rep, shift=5) < 0.85
        assert _pan_space_correlation(ref, rep, shift=-5) < 0.85
    finally:
        ref.close()
        rep.close()


def _pan_space_correlation(a, b, shift=0):
    """Correlation of two aligned inputs' MS, compared on the PAN grid (each MS
    pixel repeated r x r at its PAN position) where both have data."""

    def on_pan(x):
        ms = x.read_ms(0, 0, x.grid.width // 2, x.grid.height // 2)
        return ms.repeat(2, axis=1).repeat(2, axis=2)

    pa, pb = on_pan(a), on_pan(b)
    c0, r0 = max(a.col, b.col + shift), max(a.row, b.row)
    c1 = min(a.col + a.grid.width, b.col + shift + b.grid.width)
    r1 = min(a.row + a.grid.height, b.row + b.grid.height)
    va = pa[:, r0 - a.row : r1 - a.row, c0 - a.col : c1 - a.col]
    vb = pb[:, r0 - b.row : r1 - b.row, c0 - b.col - shift : c1 - b.col - shift]
    ok = np.isfinite(va).all(0) & np.isfinite(vb).all(0)
    assert ok.mean() > 0.8
    # The worst band: pooling bands would let the band means dominate.
    return min(np.corrcoef(x[ok], y[ok])[0, 1] for x, y in zip(va, vb, strict=True))


def test_disjoint_rasters_are_refused(tmp_path, sample_pan, sample_ms):
    from tiny_models import shifted_copy

    far = shifted_copy(sample_ms, tmp_path / "far.tif", 50_000)
    with pytest.raises(Ada3DError, match="do not overlap"):
        rio.align_inputs(_ds(sample_pan), 1, _ds(far), [1], 2)


def test_band_checks(sample_ms):
    ds = _ds(sample_ms)
    with pytest.raises(Ada3DError, match="empty"):
        rio.check_bands(ds, [], "multispectral")
    with pytest.raises(Ada3DError, match=r"band.*5"):
        rio.check_bands(ds, [1, 5], "multispectral")


@pytest.mark.parametrize("gdal_exceptions", [False, True])
def test_unreadable_and_ungeoreferenced_inputs(tmp_path, gdal_exceptions):
    """The same sentences whether or not something in the process has
    switched on gdal.UseExceptions(), which is left as it was."""
    was = gdal.GetUseExceptions()
    (gdal.UseExceptions if gdal_exceptions else gdal.DontUseExceptions)()
    try:
        _check_unreadable_and_ungeoreferenced(tmp_path)
        assert bool(gdal.GetUseExceptions()) == gdal_exceptions
    finally:
        (gdal.UseExceptions if was else gdal.DontUseExceptions)()


def _check_unreadable_and_ungeoreferenced(tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff")
    with pytest.raises(Ada3DError, match="cannot be opened"):
        rio.open_raster(str(bad), "panchromatic")
    plain = tmp_path / "plain.tif"
    gdal.GetDriverByName("GTiff").Create(str(plain), 8, 8, 1).FlushCache()
    with pytest.raises(Ada3DError, match="no georeferencing"):
        rio.grid_of(_ds(plain), "panchromatic")


def test_pan_nodata_reads_as_nan(tmp_path, sample_pan, sample_ms):
    pan = tmp_path / "pan_nd.tif"
    ds = gdal.Translate(str(pan), str(sample_pan))
    band = ds.GetRasterBand(1)
    data = band.ReadAsArray()
    data[10:20, 30:40] = 0
    band.WriteArray(data)
    band.SetNoDataValue(0)
    del band
    ds = None
    inputs = rio.align_inputs(_ds(pan), 1, _ds(sample_ms), [1], 2)
    try:
        got = inputs.read_pan(0, 0, 64, 64)
        # The output window starts at PAN pixel (0, 0).
        assert np.isnan(got[10:20, 30:40]).all()
        assert np.isfinite(got).sum() == 64 * 64 - 100
    finally:
        inputs.close()


# ----------------------------------------------------------------- types and values


def test_to_output_rounds_clips_and_avoids_the_nodata_value():
    values = np.array([-5.0, 0.0, 0.4, 0.6, 254.5, 300.0])
    out = rio.to_output(values, gdal.GDT_Byte, 0.0)
    assert out.dtype == np.uint8
    assert out.tolist() == [1, 1, 1, 1, 254, 255]  # 254.5 rounds to even
    assert rio.to_output(values, gdal.GDT_Byte, None).tolist() == [0, 0, 0, 1, 254, 255]
    mid = rio.to_output(np.array([7.0, 8.2]), gdal.GDT_UInt16, 7.0)
    assert mid.tolist() == [8, 8]
    f = rio.to_output(np.array([1.25, -3.5]), gdal.GDT_Float32, float("nan"))
    assert f.dtype == np.float32 and f.tolist() == [1.25, -3.5]


def test_choose_nodata():
    assert rio.choose_nodata(gdal.GDT_UInt16, 0.0, False) == 0.0
    assert rio.choose_nodata(gdal.GDT_UInt16, None, False) is None
    assert rio.choose_nodata(gdal.GDT_UInt16, None, True) == 0.0
    assert rio.choose_nodata(gdal.GDT_Int16, None, True) == -32768.0
    assert rio.choose_nodata(gdal.GDT_Byte, -9999.0, True) == 0.0  # does not fit
    assert math.isnan(rio.choose_nodata(gdal.GDT_Float32, None, True))
    assert rio.choose_nodata(gdal.GDT_Float32, -9999.0, False) == -9999.0


def test_options_parse_and_merge():
    assert rio.parse_options("COMPRESS=LZW|TILED=NO") == ["COMPRESS=LZW", "TILED=NO"]
    assert rio.parse_options(" ") == []
    with pytest.raises(Ada3DError, match="KEY=VALUE"):
        rio.parse_options("COMPRESS")
    merged = rio.merge_options(rio.GTIFF_OPTIONS, ["compress=LZW"])
    assert "COMPRESS=DEFLATE" not in merged and "compress=LZW" in merged
    assert "BIGTIFF=IF_SAFER" in merged


# ----------------------------------------------------------------- output writer


def _grid():
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32616)
    return rio.Grid(456322.5, 3403837.5, 15.0, 15.0, 40, 30, srs.ExportToWkt())


def _write(path, driver="GTiff", options=(), commit=True):
    writer = rio.OutputWriter(
        str(path), driver, _grid(), gdal.GDT_UInt16, 0.0, ["Blue", "NIR"], options
    )
    block = np.arange(2 * 30 * 40, dtype=np.uint16).reshape(2, 30, 40) + 1
    writer.write(0, 0, block[:, :, :20])
    writer.write(20, 0, block[:, :, 20:])
    if commit:
        writer.commit()
    return writer, block


def test_writer_commits_a_georeferenced_file_and_leaves_no_temporary(tmp_path):
    _write(tmp_path / "out.tif")
    assert os.listdir(tmp_path) == ["out.tif"]
    ds = gdal.Open(str(tmp_path / "out.tif"))
    assert ds.GetGeoTransform() == _grid().geotransform
    assert rio.same_crs(ds.GetProjection(), _grid().crs_wkt)
    b1, b2 = ds.GetRasterBand(1), ds.GetRasterBand(2)
    assert (b1.GetDescription(), b2.GetDescription()) == ("Blue", "NIR")
    assert b1.GetNoDataValue() == 0.0 and b2.GetNoDataValue() == 0.0
    assert ds.GetMetadata("IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
    assert b1.GetBlockSize() != [40, 1]  # tiled, not stripped
    assert ds.ReadAsArray()[1, 29, 39] == 2 * 30 * 40
    del b1, b2
    ds = None


def test_writer_while_writing_and_on_abort_shows_no_target(tmp_path):
    writer, _ = _write(tmp_path / "out.tif", commit=False)
    names = os.listdir(tmp_path)
    assert "out.tif" not in names and len(names) == 1 and names[0].startswith(".out.ada3d-tmp")
    writer.abort()
    assert os.listdir(tmp_path) == []


def test_writer_context_manager_aborts_on_error(tmp_path):
    with pytest.raises(RuntimeError), rio.OutputWriter(
        str(tmp_path / "x.tif"), "GTiff", _grid(), gdal.GDT_Byte, None, [""]
    ):
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_writer_replaces_an_existing_output(tmp_path):
    (tmp_path / "out.tif").write_bytes(b"old")
    (tmp_path / "out.tif.aux.xml").write_text("<stale/>")
    _write(tmp_path / "out.tif")
    assert os.listdir(tmp_path) == ["out.tif"]
    assert gdal.Open(str(tmp_path / "out.tif")).RasterCount == 2


def test_writer_user_options_override_the_defaults(tmp_path):
    _write(tmp_path / "out.tif", options=["COMPRESS=LZW"])
    ds = gdal.Open(str(tmp_path / "out.tif"))
    assert ds.GetMetadata("IMAGE_STRUCTURE")["COMPRESSION"] == "LZW"


def test_writer_createcopy_format_with_sidecar(tmp_path):
    # PNG has no Create(): written as a temporary GTiff, converted, then moved
    # with its .aux.xml (georeferencing) sidecar.
    _, block = _write(tmp_path / "out.png", driver="PNG")
    names = sorted(os.listdir(tmp_path))
    assert names[0] == "out.png" and all(n.startswith("out.png") for n in names)
    ds = gdal.Open(str(tmp_path / "out.png"))
    assert ds.GetDriver().ShortName == "PNG"
    assert np.array_equal(ds.ReadAsArray(), block)
    assert ds.GetGeoTransform() == _grid().geotransform


def test_writer_refuses_a_missing_folder(tmp_path):
    with pytest.raises(Ada3DError, match="does not exist"):
        _write(tmp_path / "missing" / "out.tif")


def test_driver_for_path():
    assert rio.driver_for_path("a/b.TIF") == "GTiff"
    assert rio.driver_for_path("a/b.img") == "HFA"
    assert rio.driver_for_path("a/b") == "GTiff"
    with pytest.raises(Ada3DError, match="extension"):
        rio.driver_for_path("a/b.notaformat")


def test_row_sweep_bytes_counts_every_block_a_row_of_windows_crosses(tmp_path):
    tiled = gdal.GetDriverByName("GTiff").Create(
        str(tmp_path / "tiled.tif"), 1000, 800, 3, gdal.GDT_UInt16, ["TILED=YES"])
    # 300 rows cross at most 3 block rows of 256; 500 px (+ one block, as a
    # window need not start on a block) round up to 3 block columns.
    assert rio.row_sweep_bytes(tiled, 3, 500, 300) == 3 * 256 * 768 * 2 * 3
    # Never more columns than the raster has.
    assert rio.row_sweep_bytes(tiled, 1, 5000, 300) == 3 * 256 * 1024 * 2
    tiled = None
    strips = gdal.GetDriverByName("GTiff").Create(
        str(tmp_path / "strips.tif"), 1000, 800, 1, gdal.GDT_Float32, ["BLOCKYSIZE=1"])
    assert rio.row_sweep_bytes(strips, 1, 500, 300) == 301 * 1000 * 4
    strips = None
