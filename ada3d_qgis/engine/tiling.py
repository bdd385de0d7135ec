"""The tile grid: windows with a halo on the exact r x PAN grid, cropped to cores.

With a fixed pooled context the network is a local operator whose receptive
field is ``halo`` PAN pixels (DESIGN.md, "Tiling and the pooled statistics").
A tile whose window reaches at least ``overlap >= halo`` pixels beyond its core
on every side that is not the raster's edge therefore gives, on its core,
exactly the whole-image result; at the raster's edge the tile sees the same
zero padding the whole image does. The cores partition the output, so no
blending is needed.

All positions and sizes are multiples of the ratio, so every window maps to
whole MS pixels. Edge windows are slid inwards to keep the full tile size
(every window has the same shape, which keeps onnxruntime's shape caches warm
and gives every pass-1 tile the same weight in the pooled context).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from . import Ada3DError

#: Pass 1 (the pooled context) runs on at most this many tiles ...
CONTEXT_TILES = 16
#: ... and on one tile per this many tiles of the scene (at least one), so that
#: pass 1 costs the same share of every run; the tiled-versus-whole-image test
#: in tests/ada3d_qgis/algorithms/test_pansharpen.py prints what it costs in
#: accuracy.
TILES_PER_CONTEXT_TILE = 16


@dataclass(frozen=True)
class Window:
    """A rectangle of pixels: top-left (``x``, ``y``) and size. It unpacks in
    GDAL's order (xoff, yoff, xsize, ysize), so ``ds.ReadAsArray(*window)``
    and ``read(*window)`` take it as it is."""

    x: int
    y: int
    width: int
    height: int

    def __iter__(self) -> Iterator[int]:
        return iter((self.x, self.y, self.width, self.height))

    def scaled(self, step: int) -> Window:
        """The same ground on a grid ``step`` times coarser (every value divided)."""
        return Window(self.x // step, self.y // step, self.width // step, self.height // step)


def windows(width: int, height: int, size: int) -> list[Window]:
    """Row-major windows of ``size`` tiling a ``width`` x ``height`` area (the
    last ones in each row and column cut at the edge)."""
    return [
        Window(x, y, min(size, width - x), min(size, height - y))
        for y in range(0, height, size)
        for x in range(0, width, size)
    ]


@dataclass(frozen=True)
class Span:
    """A 1-D window [start, start + size) and its core [core_start, core_stop)."""

    start: int
    size: int
    core_start: int
    core_stop: int


@dataclass(frozen=True)
class Tile:
    """A window of the output grid (PAN pixels) and the core it is kept for."""

    index: int
    x: int
    y: int
    width: int
    height: int
    core_x: int
    core_y: int
    core_width: int
    core_height: int

    @property
    def window(self) -> Window:
        """The tile's whole window (halo included) on the output grid."""
        return Window(self.x, self.y, self.width, self.height)

    def ms_window(self, ratio: int) -> tuple[int, int, int, int]:
        """(x, y, width, height) of the window on the aligned MS grid."""
        return self.x // ratio, self.y // ratio, self.width // ratio, self.height // ratio

    @property
    def core_slices(self) -> tuple[slice, slice]:
        """(rows, cols) of the core inside the window's array."""
        top, left = self.core_y - self.y, self.core_x - self.x
        return slice(top, top + self.core_height), slice(left, left + self.core_width)


def round_up(value: int, ratio: int) -> int:
    return -(-value // ratio) * ratio


def spans(length: int, tile: int, overlap: int) -> list[Span]:
    """Windows of ``tile`` pixels covering [0, length) whose cores leave ``overlap``
    pixels on every inner side; one window when the length fits in a tile."""
    if length <= tile:
        return [Span(0, length, 0, length)]
    step = tile - 2 * overlap
    if step <= 0:
        raise Ada3DError(
            f"The tile size ({tile} px) must exceed twice the overlap ({overlap} px)."
        )
    out: list[Span] = []
    start, core_start = 0, 0
    while start + tile < length:
        core_stop = start + tile - overlap
        out.append(Span(start, tile, core_start, core_stop))
        core_start = core_stop
        start += step
    # The last window is slid back to end at the edge; its core starts where the
    # previous one stopped, which is at least ``overlap`` inside it.
    out.append(Span(length - tile, tile, core_start, length))
    return out


def balanced_tile(length: int, tile: int, overlap: int, ratio: int) -> int:
    """The smallest window length (a multiple of ``ratio``, at most ``tile``) that
    covers ``length`` with as few windows as ``tile`` would.

    Windows keep one size, so with ``tile`` itself the last one mostly repeats
    its neighbour: a 1022 px side in 320 px windows (14 px overlap) takes four
    windows, 1280 px of work; four 278 px windows do the same in 1112 px.
    """
    if length <= tile or tile <= 2 * overlap:
        return tile
    cores = length - 2 * overlap
    windows = -(-cores // (tile - 2 * overlap))
    return min(tile, round_up(-(-cores // windows) + 2 * overlap, ratio))


def tile_grid(width: int, height: int, tile_size: int, overlap: int, ratio: int) -> list[Tile]:
    """Row-major tiles over a ``width`` x ``height`` output (multiples of ``ratio``).

    ``tile_size`` (the largest window) and ``overlap`` are rounded up to
    multiples of the ratio; the windows are then shrunk as far as their number
    allows (``balanced_tile``).
    """
    if width % ratio or height % ratio:
        raise ValueError(f"output size {width} x {height} is not a multiple of {ratio}")
    tile = round_up(max(tile_size, ratio), ratio)
    halo = round_up(max(overlap, 0), ratio)
    tiles = []
    for ys in spans(height, balanced_tile(height, tile, halo, ratio), halo):
        for xs in spans(width, balanced_tile(width, tile, halo, ratio), halo):
            tiles.append(
                Tile(
                    len(tiles),
                    xs.start,
                    ys.start,
                    xs.size,
                    ys.size,
                    xs.core_start,
                    ys.core_start,
                    xs.core_stop - xs.core_start,
                    ys.core_stop - ys.core_start,
                )
            )
    return tiles


def context_tile_count(tiles: int) -> int:
    """How many tiles pass 1 runs on for a scene of ``tiles`` tiles."""
    return max(1, min(CONTEXT_TILES, -(-tiles // TILES_PER_CONTEXT_TILE)))


def spread_tiles(tiles: list[Tile], count: int = CONTEXT_TILES) -> list[Tile]:
    """Up to ``count`` tiles spread evenly over the grid (for the pooled context):
    the corners and an even sub-grid between them, or the middle tile of an
    axis that gets only one."""
    if len(tiles) <= count:
        return list(tiles)
    xs = sorted({t.x for t in tiles})
    ys = sorted({t.y for t in tiles})
    nx, ny = len(xs), len(ys)
    # As square a sub-grid as the tile grid allows.
    ay = min(ny, count, max(1, round(np.sqrt(count * ny / nx))))
    ax = min(nx, count // ay)
    ay = min(ny, count // ax)
    pick_x = {xs[i] for i in _spread_indices(nx, ax)}
    pick_y = {ys[i] for i in _spread_indices(ny, ay)}
    return [t for t in tiles if t.x in pick_x and t.y in pick_y]


def _spread_indices(n: int, picks: int) -> list[int]:
    if picks == 1:
        return [(n - 1) // 2]
    return [int(i) for i in np.linspace(0, n - 1, picks).round()]
