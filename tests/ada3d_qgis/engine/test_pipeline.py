import os

import numpy as np
import pytest
from osgeo import gdal
from tiny_models import bilinear_up

from ada3d_qgis.engine import Ada3DError, Cancelled, pipeline
from ada3d_qgis.engine import raster_io as rio
from ada3d_qgis.engine import session as ses
from ada3d_qgis.engine.pipeline import (
    RunOptions,
    batches,
    fuse_tiles,
    pooled_context,
    run,
    scene_statistics,
)
from ada3d_qgis.engine.session import open_session
from ada3d_qgis.engine.tiling import spread_tiles, tile_grid


class Quiet:
    def __init__(self, cancel_after=None):
        self.log, self.progress, self.cache = [], [], []
        self.cancel_after = cancel_after

    def setProgress(self, p):
        self.progress.append(p)
        self.cache.append(gdal.GetCacheMax())

    def pushInfo(self, text):
        self.log.append(text)

    def isCanceled(self):
        tiles = sum(1 for line in self.log if line.startswith("Tile "))
        return self.cancel_after is not None and tiles >= self.cancel_after


@pytest.fixture()
def aligned(small):
    pan, ms = small
    inputs = rio.align_inputs(
        rio.open_raster(str(pan), "p"), 1, rio.open_raster(str(ms), "m"), [1, 2, 3, 4], 2
    )
    yield inputs
    inputs.close()


def test_scene_statistics_match_numpy_over_the_aligned_inputs(aligned):
    stats = scene_statistics(aligned, Quiet())
    g = aligned.grid
    ms = aligned.read_ms(0, 0, g.width // 2, g.height // 2).astype(np.float64)
    pan = aligned.read_pan(0, 0, g.width, g.height).astype(np.float64)
    assert np.allclose(stats.ms.mean, ms.mean(axis=(1, 2)), rtol=1e-9)
    assert np.allclose(stats.ms.std, ms.std(axis=(1, 2)), rtol=1e-6)
    assert np.allclose(stats.pan.mean, [pan.mean()], rtol=1e-9)
    assert stats.ms_gaps == [False] * 4 and not stats.pan_gaps


def _assemble(model, inputs, tiles, stats, context, weight):
    g = inputs.grid
    out = np.full((4, g.height, g.width), np.nan)
    for t in tiles:
        (fused,) = fuse_tiles(model, inputs, [t], stats, context, weight)
        out[:, t.core_y : t.core_y + t.core_height, t.core_x : t.core_x + t.core_width] = (
            fused.values
        )
    assert np.isfinite(out).all()
    return out


def test_tiles_with_a_fixed_context_equal_the_whole_image(aligned, random_model):
    model = open_session(random_model, "cpu")
    halo = model.metadata.halo
    stats = scene_statistics(aligned, Quiet())
    g = aligned.grid
    tiles = tile_grid(g.width, g.height, 4 * halo, halo, 2)
    assert len(tiles) >= 4
    context = pooled_context(model, aligned, spread_tiles(tiles), stats, Quiet())
    whole_tile = tile_grid(g.width, g.height, g.width, halo, 2)
    whole = _assemble(model, aligned, whole_tile, stats, context, 1.0)
    tiled = _assemble(model, aligned, tiles, stats, context, 1.0)
    data_range = whole.max() - whole.min()
    assert np.abs(tiled - whole).max() < 1e-5 * data_range
    # The test has teeth: this network depends on the context ...
    own = _assemble(model, aligned, whole_tile, stats, None, 0.0)
    assert np.abs(own - whole).max() > 1e-3 * data_range
    # ... and tiles that do not reach beyond their core by the halo differ.
    bare = tile_grid(g.width, g.height, 2 * halo, 0, 2)
    assert np.abs(_assemble(model, aligned, bare, stats, context, 1.0) - whole).max() > (
        1e-3 * data_range
    )


@pytest.mark.parametrize("starved", [False, True])
def test_run_writes_the_bilinear_result_of_an_untrained_model(
    tmp_path, small, tiny_model, monkeypatch, starved
):
    pan, ms = small
    out = tmp_path / "fused.tif"
    fb = Quiet()
    if starved:
        # No block cache at all: the output blocks a row of tiles writes in
        # part are flushed before the next row completes them, and inputs are
        # read again; the file must come out the same.
        monkeypatch.setattr(pipeline, "GDAL_CACHE_MIN_BYTES", 0)
        monkeypatch.setattr(pipeline, "SWEEP_CACHE_MARGIN", 0)
    before = gdal.GetCacheMax()
    result = run(
        RunOptions(str(pan), str(ms), str(out), model=str(tiny_model), device="cpu",
                   tile_size=48, overlap=12),
        fb,
    )
    assert gdal.GetCacheMax() == before
    assert max(fb.cache) == (0 if starved else pipeline.GDAL_CACHE_MIN_BYTES) < before
    # The small pair's MS covers all 98 x 98 PAN pixels (centres on its edge count).
    assert (result.width, result.height) == (98, 98)
    assert result.tiles == 16 == len(tile_grid(98, 98, 48, 12, 2))
    assert result.output == out and os.listdir(tmp_path) == ["fused.tif"]
    assert fb.progress[-1] == pytest.approx(100) and fb.progress == sorted(fb.progress)
    assert any(line.startswith("Model: ") for line in fb.log)
    assert any("CPUExecutionProvider" in line for line in fb.log)
    assert any(line.startswith("Tiling: 16 windows of 44 x 44 px (at most 48)")
               for line in fb.log)
    # Tile counts agree: the summary and the ETA lines count the same 16 tiles.
    assert any(line.startswith("Output: 98 x 98 px") and "; 16 tile(s)." in line
               for line in fb.log)
    etas = [line for line in fb.log if line.startswith("Tile ") and "left" in line]
    assert etas and all(line.split()[1].endswith("/16;") for line in etas)
    assert any(line.startswith("Done in ") and "megapixels per second" in line
               for line in fb.log)
    # Expected, computed independently: bilinear upsampling of the MS on the
    # r x PAN grid (as GDAL resamples it), rounded to uint16.
    pan_ds, ms_ds = rio.open_raster(str(pan), "p"), rio.open_raster(str(ms), "m")
    inputs = rio.align_inputs(pan_ds, 1, ms_ds, [1, 2, 3, 4], 2)
    g = inputs.grid
    expected = bilinear_up(inputs.read_ms(0, 0, g.width // 2, g.height // 2), 2)
    inputs.close()
    ds = gdal.Open(str(out))
    got = ds.ReadAsArray()
    assert got.dtype == np.uint16 and got.shape == (4, g.height, g.width)
    assert np.abs(got - np.rint(expected)).max() <= 1
    assert ds.GetGeoTransform() == g.geotransform
    ds = None


def test_cancel_after_the_first_tile_leaves_nothing(tmp_path, small, tiny_model):
    pan, ms = small
    fb = Quiet(cancel_after=1)
    with pytest.raises(Cancelled):
        run(RunOptions(str(pan), str(ms), str(tmp_path / "x.tif"), model=str(tiny_model),
                       device="cpu", tile_size=48, overlap=12), fb)
    assert sum(1 for line in fb.log if line.startswith("Tile ")) == 1
    assert os.listdir(tmp_path) == []


def test_wrong_band_count_is_refused_before_any_work(tmp_path, small, tiny_model):
    pan, ms = small
    with pytest.raises(Ada3DError, match="takes 4"):
        run(RunOptions(str(pan), str(ms), str(tmp_path / "x.tif"), ms_bands=[1, 2],
                       model=str(tiny_model)), Quiet())
    assert os.listdir(tmp_path) == []


def test_batches_keep_order_size_and_one_window_shape():
    from ada3d_qgis.engine.tiling import Tile

    tiles = tile_grid(96, 96, 48, 12, 2)
    assert len({(t.width, t.height) for t in tiles}) == 1
    runs = list(batches(tiles, 4))
    assert [len(b) for b in runs] == [4, 4, 1] and [t for b in runs for t in b] == tiles
    odd = Tile(99, 0, 0, 10, 10, 0, 0, 10, 10)
    runs = list(batches([*tiles[:2], odd, tiles[2]], 4))
    assert [len(b) for b in runs] == [2, 1, 1]


def test_a_run_in_batches_of_tiles_writes_the_same_file(tmp_path, small, random_model,
                                                       monkeypatch):
    pan, ms = small
    opts = dict(model=str(random_model), device="cpu", tile_size=48, overlap=12)
    run(RunOptions(str(pan), str(ms), str(tmp_path / "one.tif"), **opts), Quiet())
    real_open = pipeline.open_session

    def batched(path, device):
        model = real_open(path, device)
        per_tile = ses.TILE_BUDGET_MIB * 2**20 * 44 * 44 / model.metadata.tile_size**2
        model.batch_memory = int(4.5 * per_tile)  # four of the 44 x 44 windows fit
        return model

    monkeypatch.setattr(pipeline, "open_session", batched)
    fb = Quiet()
    result = run(RunOptions(str(pan), str(ms), str(tmp_path / "four.tif"), **opts), fb)
    assert result.tiles == 16 and fb.progress[-1] == pytest.approx(100)
    assert any(line.startswith("Tiling: 16 windows of 44 x 44")
               and "; 4 tiles per model run" in line for line in fb.log)
    one = gdal.Open(str(tmp_path / "one.tif")).ReadAsArray().astype(np.int64)
    four = gdal.Open(str(tmp_path / "four.tif")).ReadAsArray().astype(np.int64)
    assert one.std() > 10  # a generic network: tiles differ
    assert np.abs(one - four).max() <= 1


def test_the_result_does_not_depend_on_the_tile_size(tmp_path, sample_pan, sample_ms):
    """The pooled context always comes from windows of the model's tile size,
    so tiles of any size (as on machines with other core counts) give one result."""
    from bench.equality import float_copy

    pan = float_copy(sample_pan, tmp_path / "pan.tif")
    ms = float_copy(sample_ms, tmp_path / "ms.tif")
    outputs, logs = [], []
    for tile in (0, 96, 182):
        out, fb = tmp_path / f"fused_{tile}.tif", Quiet()
        run(RunOptions(str(pan), str(ms), str(out), device="cpu", tile_size=tile), fb)
        outputs.append(gdal.Open(str(out)).ReadAsArray())
        logs.append(next(line for line in fb.log if line.startswith("Tiling: ")))
    # Three different grids, one context window of the model's tile size.
    assert len(set(logs)) == 3
    assert all("pooled context from 1 spread window(s) of 190 x 190 px" in t for t in logs)
    scale = outputs[0].reshape(4, -1).std(axis=1)[:, None, None]
    for other in outputs[1:]:
        assert np.abs(other - outputs[0]).max() / scale.min() < 1e-5
    assert scale.min() > 100


def test_the_consistency_projection_is_tile_exact_and_brings_the_result_to_the_ms(
    tmp_path, sample_pan, sample_ms
):
    from ada3d_qgis.core.degrade import DEFAULT_MS_GAIN, consistency_projection, degrade
    from bench.equality import float_copy

    pan = float_copy(sample_pan, tmp_path / "pan.tif")
    ms = float_copy(sample_ms, tmp_path / "ms.tif")
    outputs, logs = {}, {}
    for tile, consistency in ((0, False), (0, True), (128, True)):
        out, fb = tmp_path / f"fused_{tile}_{consistency}.tif", Quiet()
        run(RunOptions(str(pan), str(ms), str(out), device="cpu", tile_size=tile,
                       consistency=consistency), fb)
        outputs[tile, consistency] = gdal.Open(str(out)).ReadAsArray().astype(np.float64)
        logs[tile, consistency] = fb.log
    assert any("Consistency with the multispectral" in line for line in logs[0, True])
    assert not any("Consistency" in line for line in logs[0, False])
    # The MS the engine fuses: resampled onto the grid of 2 x 2 PAN pixel blocks.
    pan_ds, ms_ds = rio.open_raster(str(pan), "p"), rio.open_raster(str(ms), "m")
    inputs = rio.align_inputs(pan_ds, 1, ms_ds, [1, 2, 3, 4], 2)
    g = inputs.grid
    msa = np.asarray(inputs.read_ms(0, 0, g.width // 2, g.height // 2), np.float64)
    inputs.close()
    scale = msa.reshape(4, -1).std(axis=1)[:, None, None]
    # Tiles of another size give the same result: the overlap grew by the projection's reach.
    assert np.abs(outputs[128, True] - outputs[0, True]).max() / scale.min() < 1e-4

    def mismatch(fused):
        """The result degraded to 30 m against that MS (inside the scene)."""
        return np.abs(degrade(fused, 2, DEFAULT_MS_GAIN) - msa)[:, 8:-8, 8:-8].mean()

    assert mismatch(outputs[0, True]) < 0.9 * mismatch(outputs[0, False])
    # It is the projection of the plain result over the whole scene: the pooled
    # context is the same with or without the option.
    whole = consistency_projection(outputs[0, False], msa, 2)
    assert np.abs(whole - outputs[0, True]).max() / scale.min() < 1e-3
    assert np.abs(outputs[0, True] - outputs[0, False]).max() / scale.min() > 1e-3
