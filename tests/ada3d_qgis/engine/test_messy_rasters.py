"""Real-world inputs built from the embedded Landsat 8 sample the way a user's
files look (issue 14): each ends in a correct result or a clear refusal,
never in a silent wrong raster."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from ada3d_qgis.engine import Ada3DError, pipeline
from ada3d_qgis.engine import raster_io as rio
from ada3d_qgis.engine.pipeline import RunOptions, run

REPO = Path(__file__).resolve().parents[3]


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


# ----------------------------------------------------------------- 3. output formats


@pytest.fixture()
def no_session(monkeypatch):
    """Fail the test if a run gets as far as opening the model."""
    def refuse(*args, **kwargs):
        raise AssertionError("the run started work before refusing its output")

    monkeypatch.setattr(pipeline, "open_session", refuse)


@pytest.mark.parametrize(
    ("ext", "expected"),
    [
        ("jpg", "The JPEG JFIF (.jpg) format cannot hold this result (4 band(s) of UInt16): "
                "it changes the pixel values"),
        ("xyz", "(.xyz) format cannot hold this result (4 band(s) of UInt16): it stores 1 "
                "band(s), not 4"),
        ("gif", "Graphics Interchange Format (.gif) format cannot hold"),
        ("bmp", "(.bmp) format cannot hold this result"),
        ("vrt", "Virtual Raster (.vrt) format cannot hold"),
        ("foo", "No GDAL raster format that can be written uses the extension .foo"),
    ],
)
def test_an_output_format_that_cannot_hold_the_result_is_refused_before_any_work(
    tmp_path, sample_pan, sample_ms, tiny_model, no_session, ext, expected
):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(Ada3DError) as info:
        _run(sample_pan, sample_ms, out / f"fused.{ext}", tiny_model)
    message = str(info.value)
    assert expected in message and "GeoTIFF" in message and "\n" not in message, message
    assert os.listdir(out) == []


def test_formats_that_hold_the_result_write_it_faithfully(
    tmp_path, sample_pan, sample_ms, tiny_model
):
    _run(sample_pan, sample_ms, tmp_path / "fused.tif", tiny_model)
    ref, _ = _read(tmp_path / "fused.tif")
    for name in ("fused.png", "fused.img"):
        _run(sample_pan, sample_ms, tmp_path / name, tiny_model)
        got, _ = _read(tmp_path / name)
        assert np.array_equal(got, ref), name
        ds = gdal.Open(str(tmp_path / name))
        assert ds.GetGeoTransform() == gdal.Open(str(tmp_path / "fused.tif")).GetGeoTransform()
        ds = None


def test_the_format_check_catches_lossy_clipping_and_short_formats():
    ok = rio.check_output_format
    assert ok("x.tif", None, 4, gdal.GDT_UInt16) == "GTiff"
    assert ok("x.png", None, 3, gdal.GDT_Byte) == "PNG"
    assert ok("x", None, 2, gdal.GDT_Float32) == "GTiff"
    cases = {
        ("x.jpg", 3, gdal.GDT_Byte, ()): "changes the pixel values",  # lossy
        ("x.tif", 4, gdal.GDT_UInt16, ("NBITS=12",)): "changes the pixel values",  # clipped
        ("x.png", 2, gdal.GDT_Float32, ()): "Portable Network Graphics (.png) format",
        ("x.asc", 4, gdal.GDT_Int16, ()): "GDAL refuses to write it (AAIG driver doesn't "
                                          "support 4 bands",
    }
    for (path, bands, gdal_type, options), expected in cases.items():
        with pytest.raises(Ada3DError, match=re.escape(expected)):
            ok(path, None, bands, gdal_type, options)


# ----------------------------------------------------------------- 5. output = input


@pytest.mark.parametrize(("role", "spelling"), [("panchromatic", "same"),
                                               ("multispectral", "same"),
                                               ("panchromatic", "through a link")])
def test_an_output_that_is_an_input_is_refused(
    tmp_path, sample_pan, sample_ms, tiny_model, no_session, role, spelling
):
    pan, ms = tmp_path / "pan.tif", tmp_path / "ms.tif"
    shutil.copy(sample_pan, pan)
    shutil.copy(sample_ms, ms)
    target = pan if role == "panchromatic" else ms
    before = target.read_bytes()
    given = target
    if spelling == "through a link":
        (tmp_path / "link").symlink_to(tmp_path, target_is_directory=True)
        given = tmp_path / "link" / target.name
    with pytest.raises(Ada3DError, match=f"is the {role} input raster"):
        _run(pan, ms, given, tiny_model)
    assert target.read_bytes() == before
    assert sorted(n for n in os.listdir(tmp_path) if n != "link") == ["ms.tif", "pan.tif"]


# ----------------------------------------------------------------- 6. interrupted runs

_STALLING_RUN = """
import sys, time
from ada3d_qgis.engine.pipeline import RunOptions, run

class Stall:
    def setProgress(self, progress):
        if progress > 5.0:  # the statistics pass is over: the output is being written
            print("WRITING", flush=True)
            time.sleep(600)
    def pushInfo(self, text):
        pass
    pushWarning = pushDebugInfo = pushInfo
    def isCanceled(self):
        return False

pan, ms, out, model = sys.argv[1:]
run(RunOptions(pan, ms, out, model=model, device="cpu", tile_size=128, overlap=16), Stall())
"""


def _temporaries(folder) -> list[str]:
    return sorted(n for n in os.listdir(folder) if ".ada3d-tmp-" in n)


def test_a_run_killed_with_sigterm_leaves_a_temporary_the_next_run_removes(
    tmp_path, sample_pan, sample_ms, tiny_model
):
    out = tmp_path / "fused.tif"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen(
        [sys.executable, "-c", _STALLING_RUN, str(sample_pan), str(sample_ms), str(out),
         str(tiny_model)],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert child.stdout.readline().strip() == "WRITING"
        left = _temporaries(tmp_path)
        assert len(left) == 1 and left[0].startswith(f".fused.ada3d-tmp-{child.pid}-"), left
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == -signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert _temporaries(tmp_path) == left, "SIGTERM gives no chance to clean up"
    size = (tmp_path / left[0]).stat().st_size
    fb = _run(sample_pan, sample_ms, out, tiny_model)
    assert os.listdir(tmp_path) == ["fused.tif"]
    removed = [line for line in fb.lines if line.startswith("Removed 1 temporary file(s)")]
    assert removed and left[0] in removed[0], fb.lines
    print(f"{removed[0]} (its size: {size} bytes)")


def test_only_leftovers_of_dead_processes_on_this_computer_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert not rio.process_alive(dead.pid) and rio.process_alive(os.getpid())
    host = rio._host_tag()
    names = {
        f".a.ada3d-tmp-{dead.pid}-{host}-0123abcd.tif": False,  # dead: removed
        f".a.ada3d-tmp-{dead.pid}-{host}-0123abcd.stage.tif": False,
        f".b.ada3d-tmp-{os.getpid()}-{host}-89abcdef.tif": True,  # running: kept
        f".c.ada3d-tmp-{dead.pid}-{'0' * 8 if host != '0' * 8 else '1' * 8}-0123abcd.tif": True,
        "a.tif": True,  # not a temporary
    }
    for name in names:
        (tmp_path / name).write_bytes(b"x" * 1000)
    note = rio.remove_stale_temporaries(tmp_path)
    assert sorted(os.listdir(tmp_path)) == sorted(n for n, kept in names.items() if kept)
    assert note.startswith("Removed 2 temporary file(s) left in") and "(0.0 MiB)" in note
    assert rio.remove_stale_temporaries(tmp_path) is None


# ----------------------------------------------------------------- 7. messages that name the cause


@pytest.fixture()
def small_disk(tmp_path):
    """A real 512 KiB file system (tmpfs; root only), unmounted afterwards."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(folder)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_an_output_larger_than_the_free_space_is_refused_before_the_run(
    small_disk, sample_pan, sample_ms, tiny_model, no_session
):
    with pytest.raises(Ada3DError) as info:
        _run(sample_pan, sample_ms, small_disk / "fused.tif", tiny_model)
    message = str(info.value)
    print(message)
    assert "The output needs up to 2.0 MiB (4 band(s) of 512 x 512 pixels, 2 byte(s) each" in (
        message
    ) and "an upper bound" in message and f"are free in {small_disk}" in message
    assert os.listdir(small_disk) == []


def test_a_disk_that_fills_up_during_the_run_is_named_as_full(
    small_disk, sample_pan, sample_ms, tiny_model, monkeypatch
):
    # The estimate says it fits (as it may with compression), then the disk fills.
    monkeypatch.setattr(rio, "check_free_space", lambda *args: None)
    with pytest.raises(Ada3DError) as info:
        _run(sample_pan, sample_ms, small_disk / "fused.tif", tiny_model)
    message = str(info.value)
    print(message)
    assert message.startswith(f"The disk holding {small_disk} is full") and "2.0 MiB" in message
    assert os.listdir(small_disk) == []


# ----------------------------------------------------------------- 4. model outputs


def _mislabelled_model(tiny_model, path, scale: int, cast_to_int: bool = False):
    """An ONNX file with the tiny model's Ada3D metadata (ratio 2) whose
    network upsamples the MS by ``scale`` (optionally to integers); scale 0:
    it reshapes the MS to a fixed size, which fails while it runs."""
    import onnx
    from onnx import TensorProto, helper

    k = json.loads(next(p.value for p in onnx.load(str(tiny_model)).metadata_props
                        if p.key == "context_size"))
    dims = ["n", 4, "h", "w"]
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1.0, 1.0, scale, scale])
    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [1, 4, 7, 7])
    nodes = [
        helper.make_node("Reshape", ["ms", "shape"], ["up"]) if scale == 0 else
        helper.make_node("Resize", ["ms", "", "scales"], ["up"], mode="nearest"),
        helper.make_node("Cast", ["up"], ["fused"], to=TensorProto.INT32) if cast_to_int
        else helper.make_node("Identity", ["up"], ["fused"]),
        helper.make_node("Identity", ["context"], ["context_out"]),
    ]
    graph = helper.make_graph(
        nodes, "mislabelled",
        [helper.make_tensor_value_info("ms", TensorProto.FLOAT, dims),
         helper.make_tensor_value_info("pan", TensorProto.FLOAT, ["n", 1, "H", "W"]),
         helper.make_tensor_value_info("context", TensorProto.FLOAT, ["n", k]),
         helper.make_tensor_value_info("context_weight", TensorProto.FLOAT, ["n", 1])],
        [helper.make_tensor_value_info("fused", TensorProto.INT32 if cast_to_int
                                       else TensorProto.FLOAT, None),
         helper.make_tensor_value_info("context_out", TensorProto.FLOAT, ["n", k])],
        initializer=[scales, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    for prop in onnx.load(str(tiny_model)).metadata_props:
        entry = model.metadata_props.add()
        entry.key, entry.value = prop.key, prop.value
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    ("scale", "cast", "expected"),
    [
        # The first run is the pooled context's, on a window of the model's tile size.
        (3, False, "its fused output is 1 x 4 x 768 x 768 where the tile needs 1 x 4 x 512 x 512"),
        (1, False, "its fused output is 1 x 4 x 256 x 256 where the tile needs 1 x 4 x 512 x 512"),
        (2, True, "its fused output holds int32 values, not floating-point numbers"),
        (0, False, "failed on a tile (ms 1x4x256x256, pan 1x1x512x512, context 1x"),
    ],
)
def test_a_model_whose_output_does_not_fit_the_tile_is_refused_and_writes_nothing(
    tmp_path, sample_pan, sample_ms, tiny_model, scale, cast, expected
):
    model = _mislabelled_model(tiny_model, tmp_path / "mislabelled.onnx", scale, cast)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(Ada3DError) as info:
        _run(sample_pan, sample_ms, out / "fused.tif", model, tile_size=256, overlap=16)
    message = str(info.value)
    assert message.startswith("The model mislabelled.onnx ") and expected in message, message
    assert "does not work as its Ada3D metadata say" in message
    assert os.listdir(out) == []


_RUN_AND_PRINT_ERROR = """
import sys
from ada3d_qgis.engine import Ada3DError
from ada3d_qgis.engine.pipeline import RunOptions, run

pan, ms, out, model = sys.argv[1:]
try:
    run(RunOptions(pan, ms, out, model=model or None, device="cpu"))
except Ada3DError as exc:
    print(f"ERROR: {exc}")
"""


@pytest.mark.parametrize("model", ["shipped", "given"])
def test_a_missing_onnxruntime_is_named(tmp_path, sample_pan, sample_ms, tiny_model, model):
    stub = tmp_path / "stub" / "onnxruntime"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(
        'raise ImportError("No module named \'onnxruntime\' (a test stub stands in for it)")\n'
    )
    env = dict(os.environ, PYTHONPATH=f"{stub.parent}{os.pathsep}{REPO}")
    proc = subprocess.run(
        [sys.executable, "-c", _RUN_AND_PRINT_ERROR, str(sample_pan), str(sample_ms),
         str(tmp_path / "fused.tif"), "" if model == "shipped" else str(tiny_model)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    errors = [line for line in proc.stdout.splitlines() if line.startswith("ERROR: ")]
    assert errors and "onnxruntime is not installed" in errors[0], proc.stdout + proc.stderr
    assert "No model is installed" not in proc.stdout
    assert not (tmp_path / "fused.tif").exists()


# ----------------------------------------------------------------- 8. band order


def test_bands_described_in_another_order_than_the_model_takes_get_a_warning(
    tmp_path, sample_pan, sample_ms, tiny_model
):
    fb = _run(sample_pan, sample_ms, tmp_path / "reversed.tif", tiny_model, ms_bands=[4, 3, 2, 1])
    warnings = [line for line in fb.lines if line.startswith("Warning: the selected bands")]
    assert len(warnings) == 1, fb.lines
    print(warnings[0])
    assert "not in the order the model tiny_bilinear.onnx takes them (B, G, R, NIR)" in (
        warnings[0]
    ) and "selected band 1 (band 4) is described 'NIR (B5, 0.85-0.88 um)' where the model " \
        "takes B" in warnings[0]
    fb = _run(sample_pan, sample_ms, tmp_path / "ordered.tif", tiny_model, ms_bands=[1, 2, 3, 4])
    assert not [line for line in fb.lines if "Warning: the selected bands" in line]


def test_band_kinds_read_descriptions_and_model_names():
    from ada3d_qgis.engine.models import band_kind

    kinds = {"Blue (B2, 0.45-0.51 um)": "blue", "B": "blue", "NIR (B5, 0.85-0.88 um)": "nir",
             "Near-Infrared": "nir", "Red Edge 1": "red edge", "R": "red",
             "Short-wave infrared 1": "swir", "Green": "green", "Band 1": None, "": None}
    assert {text: band_kind(text) for text in kinds} == kinds


def test_band_lists_as_qgis_process_and_python_give_them():
    assert rio.band_numbers("1,2,3") == [1, 2, 3]
    assert rio.band_numbers("4; 3 2") == [4, 3, 2]
    assert rio.band_numbers(["1", "2"]) == [1, 2]  # SPECTRAL_BANDS=1 SPECTRAL_BANDS=2
    assert rio.band_numbers([3, 1]) == [3, 1] and rio.band_numbers(2.0) == [2]
    assert rio.band_numbers("") == [] and rio.band_numbers(None) is None
    assert rio.band_numbers([object()]) is None  # left to QGIS
    with pytest.raises(Ada3DError, match=r"separated by commas .*'1,a' is not such a list"):
        rio.band_numbers("1,a")


def test_a_full_temporary_folder_does_not_pass_for_a_bad_format(small_disk, monkeypatch):
    # The probe raster goes to the system's temporary folder; when that is full
    # the format cannot be judged, and the run goes on (the output's own folder
    # is checked separately).
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (rio.free_bytes(small_disk)))
    monkeypatch.setattr(tempfile, "tempdir", str(small_disk))
    assert rio.check_output_format("x.tif", None, 4, gdal.GDT_UInt16) == "GTiff"
    assert rio.check_output_format("x.png", None, 4, gdal.GDT_UInt16) == "PNG"
    filler.unlink()
    with pytest.raises(Ada3DError, match="JPEG"):
        rio.check_output_format("x.jpg", None, 4, gdal.GDT_UInt16)
