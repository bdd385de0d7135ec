import itertools

import numpy as np
import pytest

from ada3d_qgis.engine import Ada3DError
from ada3d_qgis.engine.tiling import (
    CONTEXT_TILES,
    balanced_tile,
    context_tile_count,
    spans,
    spread_tiles,
    tile_grid,
)


def _check_spans(length, tile, overlap):
    out = spans(length, tile, overlap)
    covered = np.zeros(length, int)
    for s in out:
        assert 0 <= s.start and s.start + s.size <= length
        assert s.size == min(tile, length)
        assert s.start <= s.core_start < s.core_stop <= s.start + s.size
        covered[s.core_start : s.core_stop] += 1
        # Every inner window edge lies at least `overlap` pixels from the core.
        if s.start > 0:
            assert s.core_start - s.start >= overlap
        if s.start + s.size < length:
            assert s.start + s.size - s.core_stop >= overlap
    assert (covered == 1).all(), "cores must partition the line"
    return out


@pytest.mark.parametrize(
    ("length", "tile", "overlap"),
    [(96, 48, 12), (100, 48, 12), (510, 128, 12), (47, 48, 12), (48, 48, 12), (49, 48, 12),
     (1000, 256, 24), (20000, 512, 32)],
)
def test_cores_partition_and_keep_the_halo(length, tile, overlap):
    _check_spans(length, tile, overlap)


def test_small_raster_is_one_window():
    (s,) = spans(30, 256, 24)
    assert (s.start, s.size, s.core_start, s.core_stop) == (0, 30, 0, 30)


def test_tile_not_larger_than_twice_the_overlap_is_refused():
    with pytest.raises(Ada3DError, match="twice the overlap"):
        spans(200, 48, 24)


@pytest.mark.parametrize("ratio", [2, 4])
def test_grid_is_on_whole_ms_pixels(ratio):
    width, height = 52 * ratio, 37 * ratio
    tiles = tile_grid(width, height, 61, 9, ratio)  # rounded up to multiples of r
    cover = np.zeros((height, width), int)
    for t in tiles:
        for v in (t.x, t.y, t.width, t.height, t.core_x, t.core_y, t.core_width, t.core_height):
            assert v % ratio == 0
        mx, my, mw, mh = t.ms_window(ratio)
        assert (mx * ratio, my * ratio, mw * ratio, mh * ratio) == (t.x, t.y, t.width, t.height)
        rows, cols = t.core_slices
        window = np.zeros((t.height, t.width), bool)
        window[rows, cols] = True
        assert window.sum() == t.core_width * t.core_height
        cover[t.core_y : t.core_y + t.core_height, t.core_x : t.core_x + t.core_width] += 1
    assert (cover == 1).all()
    assert len({(t.width, t.height) for t in tiles}) == 1, "edge tiles keep the full size"


def test_grid_size_must_be_multiple_of_ratio():
    with pytest.raises(ValueError):
        tile_grid(101, 100, 48, 12, 2)


def test_spread_tiles_pick_at_most_16_spread_over_the_scene():
    tiles = tile_grid(2000, 1000, 128, 16, 2)
    picked = spread_tiles(tiles)
    assert len(picked) <= 16 and len(picked) >= 12
    xs, ys = {t.x for t in tiles}, {t.y for t in tiles}
    # The corners of the scene are represented: the pooled context sees its extent.
    for x, y in itertools.product((min(xs), max(xs)), (min(ys), max(ys))):
        assert any(t.x == x and t.y == y for t in picked)


def test_spread_tiles_on_a_long_strip_and_small_grids():
    strip = tile_grid(64, 4000, 64, 8, 2)  # one column of tiles
    picked = spread_tiles(strip)
    assert len(picked) == 16
    assert picked[0].y == 0 and picked[-1].y == max(t.y for t in strip)
    few = tile_grid(200, 200, 128, 16, 2)
    assert spread_tiles(few) == few


def test_context_tile_count_is_a_fixed_share_of_the_scene():
    assert context_tile_count(1) == 1
    assert context_tile_count(16) == 1
    assert context_tile_count(17) == 2
    assert context_tile_count(200) == 13
    assert context_tile_count(10_000) == CONTEXT_TILES


def test_a_single_context_tile_is_the_middle_one():
    tiles = tile_grid(1000, 1000, 200, 16, 2)  # 5 x 5 tiles
    (picked,) = spread_tiles(tiles, 1)
    xs, ys = sorted({t.x for t in tiles}), sorted({t.y for t in tiles})
    assert (picked.x, picked.y) == (xs[2], ys[2])


@pytest.mark.parametrize(("length", "tile", "overlap"), [(1022, 320, 14), (4094, 320, 14),
                                                         (600, 256, 24), (257, 256, 24)])
def test_balanced_windows_are_as_few_and_never_larger(length, tile, overlap):
    full = spans(length, tile, overlap)
    size = balanced_tile(length, tile, overlap, 2)
    assert size <= tile and size % 2 == 0
    balanced = _check_spans(length, size, overlap)
    assert len(balanced) == len(full)
    assert len(balanced) * size <= len(full) * tile


def test_balanced_grid_does_less_work_on_a_1022_px_scene():
    tiles = tile_grid(1022, 1022, 320, 14, 2)
    assert len(tiles) == 16
    assert {(t.width, t.height) for t in tiles} == {(278, 278)}


def test_window_unpacks_in_gdal_order_and_scales():
    from ada3d_qgis.engine.tiling import Window, windows

    win = Window(64, 32, 128, 96)
    assert tuple(win) == (64, 32, 128, 96)
    assert win.scaled(4) == Window(16, 8, 32, 24)
    tile = tile_grid(512, 512, 256, 16, 2)[1]
    assert tile.window == Window(tile.x, tile.y, tile.width, tile.height)
    assert windows(100, 50, 64) == [Window(0, 0, 64, 50), Window(64, 0, 36, 50)]
