"""One pansharpening run, from two rasters to a finished output file.

    open inputs -> measure ratio -> choose model -> open session (device)
      -> align MS on the r x PAN grid -> plan tiles
      -> statistics pass (streamed, nodata excluded)
      -> pooled context (pass 1, w = 0, on one spread tile per 16, at most 16;
         skipped for one tile)
      -> every tile (w = 1 with that context): normalise, fill gaps, run, crop the
         core, de-normalise, clip, mask nodata, write
      -> move the finished file into place

The log (see :mod:`.feedback`) opens with a short summary (model, device,
output, tiles) and closes with the time and throughput; technical details go
to the secondary, debug level.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.degrade import consistency_projection, projection_halo
from ..core.normalise import BandStats, RunningStats, denormalise, normalise
from . import Ada3DError
from .feedback import Feedback, PrintFeedback, check_cancel, detail, duration, info, warn
from .models import ModelChoice, band_order_warning, choose_model
from .raster_io import (
    AlignedInputs,
    InputPair,
    OutputWriter,
    align_pair,
    check_output,
    choose_nodata,
    driver_for_path,
    gdal_cache_limit,
    gdal_type_named,
    open_pair,
    output_data_type,
    prepare_output,
    quiet_gdal,
    row_sweep_bytes,
    to_output,
)
from .session import ModelSession, open_session
from .tile_runner import run_in_order
from .tiling import Tile, context_tile_count, round_up, spread_tiles, tile_grid

#: GDAL block cache during a run (see raster_io.gdal_cache_limit): the cap,
#: and the floor of the cache sized to the tile sweep (``sweep_cache_bytes``).
GDAL_CACHE_BYTES = 256 * 1024 * 1024
GDAL_CACHE_MIN_BYTES = 16 * 1024 * 1024
#: Head-room over the blocks one row of tiles touches.
SWEEP_CACHE_MARGIN = 1.5
#: Pixels per window of the statistics pass (bounds its memory, ~100 MB).
STATS_WINDOW_PIXELS = 2_000_000
#: Share of the progress bar given to the statistics pass.
STATS_PROGRESS = 5.0
#: Seconds between two ETA lines in the log.
ETA_INTERVAL = 10.0


@dataclass
class RunOptions:
    pan: str
    ms: str
    output: str
    pan_band: int = 1
    #: 1-based MS bands; None: all bands.
    ms_bands: Sequence[int] | None = None
    #: An .onnx file; None or "": the shipped model that fits.
    model: str | None = None
    device: str = "auto"
    #: PAN pixels; 0: from the model's metadata.
    tile_size: int = 0
    overlap: int = 0
    #: GDAL driver short name; None: from the output's extension.
    driver: str | None = None
    creation_options: Sequence[str] = ()
    #: Project each tile's result so that, degraded to the MS resolution, it
    #: matches the MS (core/degrade.consistency_projection); widens the overlap.
    consistency: bool = False


@dataclass
class RunResult:
    output: Path
    model: Path
    provider: str
    device_note: str
    tiles: int
    width: int
    height: int
    seconds: float
    #: The model's name for each output band (e.g. B, G, R, NIR; band1.. for
    #: a band-agnostic model).
    band_names: list[str] = field(default_factory=list)
    #: The output bands' descriptions (the MS bands', else the model's names).
    descriptions: list[str] = field(default_factory=list)


@dataclass
class SceneStats:
    ms: BandStats
    pan: BandStats
    #: Per MS band: does any pixel of the output window lack data?
    ms_gaps: list[bool] = field(default_factory=list)
    pan_gaps: bool = False


# --------------------------------------------------------------------------- passes


def stats_rows(inputs: AlignedInputs) -> int:
    """PAN rows per strip of the statistics pass (a multiple of the ratio)."""
    r = inputs.ratio
    return max(r, (STATS_WINDOW_PIXELS // max(inputs.grid.width, 1)) // r * r)


def scene_statistics(
    inputs: AlignedInputs,
    feedback: Feedback,
    progress: Callable[[float], None] = lambda f: None,
) -> SceneStats:
    """Mean/std of every MS band (on the aligned grid) and of the PAN over the
    output window, streamed strip by strip, gaps (NaN) excluded."""
    r, grid = inputs.ratio, inputs.grid
    rows = stats_rows(inputs)
    ms_rs, pan_rs = RunningStats(inputs.bands), RunningStats(1)
    ms_gaps = np.zeros(inputs.bands, bool)
    pan_gaps = False
    for y in range(0, grid.height, rows):
        check_cancel(feedback)
        h = min(rows, grid.height - y)
        pan = inputs.read_pan(0, y, grid.width, h)[None]
        valid = np.isfinite(pan)
        pan_gaps |= not valid.all()
        pan_rs.update(np.where(valid, pan, 0.0), valid)
        ms = inputs.read_ms(0, y // r, grid.width // r, h // r)
        valid = np.isfinite(ms)
        ms_gaps |= ~valid.all(axis=(1, 2))
        ms_rs.update(np.where(valid, ms, 0.0), valid)
        progress((y + h) / grid.height)
    inputs.check_has_data(ms_rs.count > 0)
    try:
        ms_stats, pan_stats = ms_rs.result(), pan_rs.result()
    except ValueError as exc:
        raise Ada3DError(
            "The area common to both rasters holds no valid pixels (everything is nodata) "
            "in at least one band."
        ) from exc
    return SceneStats(ms_stats, pan_stats, ms_gaps.tolist(), bool(pan_gaps))


@dataclass
class FusedTile:
    """A tile's core, de-normalised (float64, (L, h, w)), and where it holds data."""

    values: np.ndarray
    valid: np.ndarray
    context: np.ndarray | None


def fuse_tiles(
    model: ModelSession,
    inputs: AlignedInputs,
    tiles: Sequence[Tile],
    stats: SceneStats,
    context: np.ndarray | None,
    weight: float,
) -> list[FusedTile]:
    """Read, normalise, run (in one batch: the tiles share one window shape)
    and crop ``tiles``."""
    read = read_tiles(inputs, tiles, stats)
    return crop_tiles(inputs, tiles, read, model.run_batch(read[0], read[1], context, weight),
                      stats)


def read_tiles(inputs: AlignedInputs, tiles: Sequence[Tile], stats: SceneStats):
    """(normalised MS (N, L, h, w), normalised PAN (N, rh, rw), both float32,
    and each tile's (MS, PAN) validity masks) of ``tiles``."""
    r = inputs.ratio
    read = []
    for tile in tiles:
        ms = inputs.read_ms(*tile.ms_window(r))
        pan = inputs.read_pan(tile.x, tile.y, tile.width, tile.height)
        read.append((ms, pan, np.isfinite(ms), np.isfinite(pan)))
    # Gaps get the band mean (0 once normalised) so that they disturb their
    # neighbours as little as possible; they are masked again afterwards.
    ms_n = np.stack([np.where(v, normalise(ms, stats.ms), 0.0) for ms, _, v, _ in read])
    pan_n = np.stack([np.where(v, normalise(pan[None], stats.pan)[0], 0.0)
                      for _, pan, _, v in read])
    valid = [(ms_valid, pan_valid) for _, _, ms_valid, pan_valid in read]
    return ms_n.astype(np.float32), pan_n.astype(np.float32), valid


def crop_tiles(inputs: AlignedInputs, tiles: Sequence[Tile], read, result,
               stats: SceneStats, consistency: bool = False) -> list[FusedTile]:
    """The cores of a model ``result`` (fused, own context) for ``tiles`` as
    ``read_tiles`` read them, de-normalised, with their validity; projected
    onto the MS first when ``consistency`` (in normalised units: the
    projection commutes with the per-band normalisation)."""
    r = inputs.ratio
    fused, own = result
    out = []
    for k, (tile, (ms_valid, pan_valid)) in enumerate(zip(tiles, read[2])):
        rows, cols = tile.core_slices
        window = fused[k]
        if consistency:
            window = consistency_projection(window, read[0][k], r).astype(np.float32)
        values = denormalise(window[:, rows, cols], stats.ms)
        valid = (ms_valid.repeat(r, axis=1).repeat(r, axis=2)[:, rows, cols]
                 & pan_valid[rows, cols])
        out.append(FusedTile(values, valid, None if own is None else own[k]))
    return out


def fuse_in_order(
    model: ModelSession,
    inputs: AlignedInputs,
    tile_batches: Iterable[list[Tile]],
    stats: SceneStats,
    context: np.ndarray | None,
    weight: float,
    feedback: Feedback,
    workers: int | None = None,
    consistency: bool = False,
) -> Iterator[tuple[list[Tile], list[FusedTile]]]:
    """``fuse_tiles`` over ``tile_batches``, in order, with up to ``workers``
    (default ``model.workers``) model runs at once while this thread reads the
    next tiles and the caller writes the finished ones (engine/tile_runner.py)."""
    def run(read):
        return model.run_batch(read[0], read[1], context, weight)

    for batch, read, result in run_in_order(
        tile_batches, lambda b: read_tiles(inputs, b, stats), run, workers or model.workers,
        lambda: check_cancel(feedback),
    ):
        yield batch, crop_tiles(inputs, batch, read, result, stats, consistency)


def batches(tiles: Sequence[Tile], size: int) -> Iterator[list[Tile]]:
    """``tiles`` in runs of ``size`` that share one window shape, in order."""
    batch: list[Tile] = []
    for tile in tiles:
        if batch and (len(batch) == size or (tile.width, tile.height)
                      != (batch[0].width, batch[0].height)):
            yield batch
            batch = []
        batch.append(tile)
    if batch:
        yield batch


def pooled_context(
    model: ModelSession,
    inputs: AlignedInputs,
    tiles: list[Tile],
    stats: SceneStats,
    feedback: Feedback,
    done: Callable[[], None] = lambda: None,
    per_run: int = 1,
) -> np.ndarray:
    """Pass 1: the mean of the own pooled context of the spread ``tiles`` (w = 0),
    ``per_run`` tiles per model run. They are windows of the model's tile size
    (``plan_tiles``): at most :data:`FULL_WINDOWS` run at once."""
    contexts = []
    for _, fused_batch in fuse_in_order(
        model, inputs, batches(tiles, per_run), stats, None, 0.0, feedback,
        min(model.workers, FULL_WINDOWS),
    ):
        for fused in fused_batch:
            contexts.append(fused.context)
            done()
    return np.mean(np.asarray(contexts, np.float64), axis=0).astype(np.float32)


# --------------------------------------------------------------------------- the run


#: Tiles in flight that each get a whole window of the model's tile size;
#: more share that memory (windows of one shape run in shaped sessions, lean
#: enough for two within the memory budget: docs/design.md).
FULL_WINDOWS = 2


def shared_tile_size(model_tile: int, workers: int, overlap: int, ratio: int) -> int:
    """The default window when ``workers`` tiles run at once: the model's tile
    size for up to :data:`FULL_WINDOWS`, beyond that their memory (the area)
    shared, but never below four overlaps."""
    shared = int(model_tile * math.sqrt(FULL_WINDOWS / max(workers, FULL_WINDOWS)))
    return round_up(max(shared, 4 * overlap, ratio), ratio)


@dataclass
class TilePlan:
    """The tiles of a run: the grid, the spread tiles of the pooled context
    (none when one tile holds the scene, or the model has no context input)
    and tiles per model run of each."""

    tile_size: int
    overlap: int
    tiles: list[Tile]
    context_tiles: list[Tile]
    per_run: int
    context_per_run: int = 1

    @property
    def two_pass(self) -> bool:
        return bool(self.context_tiles)


def plan_tiles(
    model: ModelSession, inputs: AlignedInputs, opts: RunOptions, feedback: Feedback
) -> TilePlan:
    """Tile size and overlap (user, or the metadata's shared by the tiles run at
    once; rounded to the ratio), the grid and the pooled context's tiles."""
    meta, r = model.metadata, inputs.ratio
    model_overlap = round_up(opts.overlap or meta.overlap, r)
    overlap = model_overlap
    if opts.consistency:
        overlap = round_up(overlap + projection_halo(r), r)
    tile_size = round_up(
        opts.tile_size or shared_tile_size(meta.tile_size, model.workers, overlap, r), r
    )
    if overlap < meta.halo:
        warn(
            feedback,
            f"Warning: the overlap ({overlap} px) is below the model's halo ({meta.halo} px); "
            "tile borders may show seams.",
        )
    width, height = inputs.grid.width, inputs.grid.height
    tiles = tile_grid(width, height, tile_size, overlap, r)
    per_run = model.tiles_per_run(tiles[0].width, tiles[0].height)
    if not model.has_context or len(tiles) == 1:
        # One window holds the scene: one pass with its own statistics (exact).
        return TilePlan(tile_size, overlap, tiles, [], per_run)
    # The pooled context always comes from windows of the model's tile size
    # and overlap, so that the result depends neither on the tile size nor on
    # the cores (nor, but for the projection, on the consistency option).
    model_tile = round_up(meta.tile_size, r)
    same = (tile_size, overlap) == (model_tile, model_overlap)
    grid = tiles if same else tile_grid(width, height, model_tile, model_overlap, r)
    context_tiles = spread_tiles(grid, context_tile_count(len(grid)))
    return TilePlan(tile_size, overlap, tiles, context_tiles, per_run,
                    model.tiles_per_run(grid[0].width, grid[0].height))


def release_context_shape(model: ModelSession, plan: TilePlan) -> None:
    """Close the session fixed to pass 1's windows when pass 2 runs others: its
    memory would otherwise stay held beside the new shape's."""
    first, tile = plan.context_tiles[0], plan.tiles[0]
    if model.shaped is not None and (first.width, first.height) != (tile.width, tile.height):
        model.shaped.clear()


def output_types(inputs: AlignedInputs, model: ModelSession, stats: SceneStats):
    """(GDAL type, nodata) of the output; one nodata value for all bands."""
    declared = model.metadata.output_dtype
    gdal_type = gdal_type_named(declared) if declared else inputs.ms_type
    given = next((v for v in inputs.ms_nodata if v is not None), None)
    nodata = choose_nodata(gdal_type, given, any(stats.ms_gaps) or stats.pan_gaps)
    return gdal_type, nodata


def band_descriptions(inputs: AlignedInputs, model: ModelSession) -> list[str]:
    """The MS band descriptions, or the model's band names where there are none."""
    # A band-agnostic model's trained names say nothing of the selected bands.
    names = model.metadata.for_bands(inputs.bands).band_names
    return [d or (names[i] if i < len(names) else "") for i, d in enumerate(inputs.ms_descriptions)]


def sweep_cache_bytes(
    inputs: AlignedInputs, rows: int, writer: OutputWriter | None = None
) -> int:
    """GDAL's block cache for a sweep over the scene in rows of windows
    ``rows`` PAN pixels tall: the blocks one row touches in every input (and
    in the output, if given), with head-room, within [GDAL_CACHE_MIN_BYTES,
    GDAL_CACHE_BYTES].

    Both passes go row by row. The tiles' next row re-reads the overlap and
    completes the output blocks the previous one wrote in part, so those
    blocks must survive one row; nothing older is ever needed. A fixed cache
    would instead fill with the whole scene up to its size, and glibc keeps
    the freed blocks: peak memory growing with the scene for no gain.
    """
    need = inputs.row_sweep_bytes(rows)
    if writer is not None:
        need += row_sweep_bytes(writer.ds, writer.bands, inputs.grid.width, rows)
    return int(min(max(SWEEP_CACHE_MARGIN * need, GDAL_CACHE_MIN_BYTES), GDAL_CACHE_BYTES))


def _write_tile(
    writer: OutputWriter, tile: Tile, fused: FusedTile, gdal_type: int, nodata: float | None
) -> None:
    out = []
    for b in range(fused.values.shape[0]):
        band = to_output(fused.values[b], gdal_type, nodata)
        if nodata is not None:
            band[~fused.valid[b]] = nodata
        out.append(band)
    block = np.stack(out)
    # The last row and column of tiles may reach past the output into the
    # round-up to whole r x r blocks.
    w = min(block.shape[2], writer.width - tile.core_x)
    h = min(block.shape[1], writer.height - tile.core_y)
    writer.write(tile.core_x, tile.core_y, block[:, :h, :w])


class _Progress:
    """Progress bar over the statistics pass and both tile passes, and ETA lines
    that count the written tiles (the context pass is counted apart)."""

    def __init__(self, feedback: Feedback, context_tiles: int, tiles: int) -> None:
        self.feedback = feedback
        self.context_total = context_tiles
        self.total = tiles
        self.context_done = 0
        self.done = 0
        self.start = time.monotonic()
        self.last_log = 0.0

    def stats(self, fraction: float) -> None:
        self.feedback.setProgress(STATS_PROGRESS * fraction)

    def begin_tiles(self) -> None:
        self.start = time.monotonic()

    def _bar(self) -> None:
        runs = self.context_done + self.done
        self.feedback.setProgress(
            STATS_PROGRESS
            + (100 - STATS_PROGRESS) * runs / max(self.context_total + self.total, 1)
        )

    def context_tile(self) -> None:
        self.context_done += 1
        self._bar()
        if self.context_done == self.context_total:
            detail(
                self.feedback,
                f"Pooled context computed from {self.context_total} tile(s) in "
                f"{duration(time.monotonic() - self.start)}.",
            )

    def tile(self) -> None:
        self.done += 1
        self._bar()
        now = time.monotonic()
        if self.done < self.total and (self.done == 1 or now - self.last_log >= ETA_INTERVAL):
            self.last_log = now
            runs = self.context_done + self.done
            per_run = (now - self.start) / runs
            info(
                self.feedback,
                f"Tile {self.done}/{self.total}; about "
                f"{duration(per_run * (self.total - self.done))} left.",
            )


@dataclass
class Preflight:
    """What can be known before any work: the checked inputs and the model."""

    pair: InputPair
    choice: ModelChoice


def preflight(opts: RunOptions, output: bool = False) -> Preflight:
    """Open and check both inputs, choose the model and check that the rasters
    overlap, and with ``output`` that ``opts.output`` can take the result (see
    raster_io.check_output); raises Ada3DError with the sentence for the user.
    Cheap (no pixel is read), so the algorithm dialog calls it before it starts
    a run."""
    with quiet_gdal():
        pair = open_pair(opts.pan, opts.ms, opts.pan_band, opts.ms_bands)
        choice = choose_model(len(pair.ms_bands), pair.ratio, opts.model, pair.descriptions)
        pair.check_overlap(choice.metadata.ratio)
        if output:
            check_output(
                opts.output,
                opts.driver,
                {"panchromatic": pair.pan_ds, "multispectral": pair.ms_ds},
                len(pair.ms_bands),
                output_data_type(choice.metadata.output_dtype, pair.ms_type),
                opts.creation_options,
            )
    return Preflight(pair, choice)


def run(opts: RunOptions, feedback: Feedback | None = None) -> RunResult:
    """Pansharpen ``opts.ms`` with ``opts.pan`` into ``opts.output``.

    Raises Ada3DError (a sentence for the user) or Cancelled; in both cases no
    output file is left behind.
    """
    feedback = feedback or PrintFeedback()
    start = time.monotonic()
    with quiet_gdal(), gdal_cache_limit(GDAL_CACHE_BYTES):
        checked = preflight(opts)
        pair, choice = checked.pair, checked.choice
        notes = prepare_output(opts.output, opts.driver, pair, choice.metadata.ratio,
                               choice.metadata.output_dtype, opts.creation_options)
        info(feedback, f"Model: {choice.path.name}, {choice.reason}.")
        order = band_order_warning(choice.path, choice.metadata, pair.descriptions, pair.ms_bands)
        if order:
            warn(feedback, order)
        model = open_session(choice.path, opts.device)
        info(feedback, f"Device: {model.device_note}.")
        detail(feedback, f"onnxruntime execution provider: {model.provider}.")
        inputs = align_pair(pair, choice.metadata.ratio)
        for note in [*notes, *inputs.notes]:
            info(feedback, note)
        try:
            return _run_aligned(opts, feedback, model, inputs, start)
        finally:
            inputs.close()


def _tile_plan_text(plan: TilePlan) -> str:
    tiles = plan.tiles
    if plan.two_pass:
        first = plan.context_tiles[0]
        how = (
            f"first a pooled context from {len(plan.context_tiles)} spread window(s) of "
            f"{first.width} x {first.height} px, then every tile with that context"
        )
    elif len(tiles) == 1:
        how = "the scene fits one tile: one pass with its own pooled statistics (exact)"
    else:
        how = "this model has no pooled-context input: each tile uses its own statistics"
    if plan.per_run > 1:
        how += f"; {plan.per_run} tiles per model run"
    return (
        f"Tiling: {len(tiles)} windows of {tiles[0].width} x {tiles[0].height} px (at "
        f"most {plan.tile_size}) with {plan.overlap} px overlap; {how}."
    )


def _run_aligned(
    opts: RunOptions,
    feedback: Feedback,
    model: ModelSession,
    inputs: AlignedInputs,
    start: float,
) -> RunResult:
    grid = inputs.grid
    out_grid = inputs.output or grid
    # run() has checked the output (prepare_output) before opening the model.
    driver = opts.driver or driver_for_path(opts.output)
    plan = plan_tiles(model, inputs, opts, feedback)
    tiles, context_tiles, per_run = plan.tiles, plan.context_tiles, plan.per_run
    info(
        feedback,
        f"Output: {out_grid.width} x {out_grid.height} px of {out_grid.dx:g} x "
        f"{out_grid.dy:g} (the panchromatic grid, every pixel the multispectral raster "
        f"covers), {inputs.bands} band(s); {len(tiles)} tile(s).",
    )
    detail(
        feedback,
        f"Panchromatic window from its pixel ({inputs.col}, {inputs.row}); multispectral: "
        f"{inputs.resampling}.",
    )
    detail(feedback, _tile_plan_text(plan))
    if opts.consistency:
        info(feedback, f"Consistency with the multispectral: every tile is projected onto it "
                       f"(tiles overlap by {plan.overlap} px for it).")
    progress = _Progress(feedback, len(context_tiles), len(tiles))
    with gdal_cache_limit(sweep_cache_bytes(inputs, stats_rows(inputs))):
        stats = scene_statistics(inputs, feedback, progress.stats)
    progress.begin_tiles()
    gdal_type, nodata = output_types(inputs, model, stats)
    with OutputWriter(
        opts.output,
        driver,
        out_grid,
        gdal_type,
        nodata,
        band_descriptions(inputs, model),
        opts.creation_options,
    ) as writer, gdal_cache_limit(sweep_cache_bytes(inputs, tiles[0].height, writer)):
        context = None
        if plan.two_pass:
            context = pooled_context(
                model, inputs, context_tiles, stats, feedback, progress.context_tile,
                plan.context_per_run,
            )
            release_context_shape(model, plan)
        weight = 1.0 if context is not None else 0.0
        for batch, fused_batch in fuse_in_order(
            model, inputs, batches(tiles, per_run), stats, context, weight, feedback,
            consistency=opts.consistency,
        ):
            for tile, fused in zip(batch, fused_batch):
                _write_tile(writer, tile, fused, gdal_type, nodata)
                progress.tile()
        check_cancel(feedback)
        output = writer.commit()
    seconds = time.monotonic() - start
    megapixels = out_grid.width * out_grid.height / 1e6
    info(
        feedback,
        f"Done in {duration(seconds)} ({megapixels:.2f} megapixels, "
        f"{megapixels / max(seconds, 1e-9):.3f} megapixels per second): {output}",
    )
    return RunResult(
        output,
        model.path,
        model.provider,
        model.device_note,
        len(tiles),
        out_grid.width,
        out_grid.height,
        seconds,
        list(model.metadata.for_bands(inputs.bands).band_names),
        band_descriptions(inputs, model),
    )
