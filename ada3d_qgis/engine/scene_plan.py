"""A run of :mod:`.pipeline` cut in two, for work spread over many processes.

:func:`plan_scene` is what ``pipeline.run`` does once per scene (statistics
pass, pooled context, output type); it returns a :class:`ScenePlan` of plain,
picklable data. :func:`fuse_strip` is what ``pipeline.run`` does for one row of
tiles, given that plan and an open session and inputs of the process it runs
in, and returns the output rows of that strip. Both call the pipeline's own
functions (``scene_statistics``, ``pooled_context``, ``fuse_tiles``,
``_write_tile``...), so a scene fused strip by strip holds exactly the pixels
``pipeline.run`` writes. GDAL datasets and onnxruntime sessions never travel:
each process opens its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .feedback import Feedback, QuietFeedback
from .models import band_order_warning
from .pipeline import (
    Preflight,
    RunOptions,
    SceneStats,
    _write_tile,
    band_descriptions,
    batches,
    fuse_in_order,
    output_types,
    plan_tiles,
    pooled_context,
    release_context_shape,
    scene_statistics,
)
from .raster_io import AlignedInputs, Grid, align_pair, numpy_type
from .session import ModelSession
from .tiling import Tile


@dataclass
class ScenePlan:
    """Everything a strip needs besides a session and the opened inputs."""

    opts: RunOptions
    model: str
    ratio: int
    #: The output grid (PAN pixels, without the round-up to whole blocks).
    grid: Grid
    tiles: list[Tile]
    #: [first, stop) indices into ``tiles`` of each row of tiles, top to bottom.
    strips: list[tuple[int, int]]
    stats: SceneStats
    context: np.ndarray | None
    weight: float
    gdal_type: int
    nodata: float | None
    descriptions: list[str]
    #: The log of the planning, as pipeline.run would have printed it.
    log: list[str] = field(default_factory=list)

    @property
    def megapixels(self) -> float:
        return self.grid.width * self.grid.height / 1e6

    def strip_rows(self, index: int) -> tuple[int, int]:
        """(first output row, number of rows) of strip ``index``."""
        tile = self.tiles[self.strips[index][0]]
        return tile.core_y, min(tile.core_height, self.grid.height - tile.core_y)


def open_inputs(checked: Preflight) -> AlignedInputs:
    """The aligned inputs of a checked pair, as ``pipeline.run`` opens them."""
    pair, meta = checked.pair, checked.choice.metadata
    return align_pair(pair, meta.ratio)


def tile_rows(tiles: list[Tile]) -> list[tuple[int, int]]:
    """[first, stop) of each run of tiles that share one row of cores."""
    rows: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(tiles) + 1):
        if i == len(tiles) or tiles[i].core_y != tiles[start].core_y:
            rows.append((start, i))
            start = i
    return rows


def plan_scene(
    opts: RunOptions,
    checked: Preflight,
    model: ModelSession,
    inputs: AlignedInputs,
    feedback: Feedback | None = None,
) -> ScenePlan:
    """Statistics, pooled context and output type of a scene (see ``pipeline._run_aligned``)."""
    feedback = feedback or QuietFeedback()
    choice = checked.choice
    log = [f"Model: {choice.path.name}, {choice.reason}.", f"Device: {model.device_note}."]
    order = band_order_warning(choice.path, choice.metadata, checked.pair.descriptions,
                               checked.pair.ms_bands)
    if order:
        log.append(order)
    log.extend(inputs.notes)
    plan = plan_tiles(model, inputs, opts, feedback)
    tiles = plan.tiles
    stats = scene_statistics(inputs, feedback)
    gdal_type, nodata = output_types(inputs, model, stats)
    context = None
    if plan.two_pass:
        context = pooled_context(model, inputs, plan.context_tiles, stats, feedback,
                                 per_run=plan.context_per_run)
        release_context_shape(model, plan)
    return ScenePlan(
        opts=opts,
        model=str(choice.path),
        ratio=inputs.ratio,
        grid=inputs.output or inputs.grid,
        tiles=list(tiles),
        strips=tile_rows(list(tiles)),
        stats=stats,
        context=context,
        weight=1.0 if context is not None else 0.0,
        gdal_type=gdal_type,
        nodata=nodata,
        descriptions=band_descriptions(inputs, model),
        log=log + list(getattr(feedback, "lines", [])),
    )


class _StripSink:
    """Takes ``_write_tile``'s windows of the output into one strip's array."""

    def __init__(self, plan: ScenePlan, index: int) -> None:
        self.width, self.height = plan.grid.width, plan.grid.height
        self.y0, rows = plan.strip_rows(index)
        self.bands = len(plan.descriptions)
        self.block = np.zeros((self.bands, rows, self.width), numpy_type(plan.gdal_type))

    def write(self, x: int, y: int, block: np.ndarray) -> None:
        y -= self.y0
        self.block[:, y : y + block.shape[1], x : x + block.shape[2]] = block


def fuse_strip(
    plan: ScenePlan, index: int, model: ModelSession, inputs: AlignedInputs
) -> tuple[int, np.ndarray]:
    """(first output row, (bands, rows, width) array in the output type) of
    strip ``index``: its tiles with the scene's context, as pipeline.run writes them."""
    first, stop = plan.strips[index]
    tiles = plan.tiles[first:stop]
    sink = _StripSink(plan, index)
    runs = batches(tiles, model.tiles_per_run(tiles[0].width, tiles[0].height))
    # As pipeline.run does: up to model.workers tiles at once on a CPU.
    for batch, fused in fuse_in_order(model, inputs, runs, plan.stats, plan.context,
                                      plan.weight, QuietFeedback(),
                                      consistency=plan.opts.consistency):
        for tile, result in zip(batch, fused):
            _write_tile(sink, tile, result, plan.gdal_type, plan.nodata)  # type: ignore[arg-type]
    return sink.y0, sink.block
