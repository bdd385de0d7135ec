"""Streamed quality assessment of a pansharpened raster: the engine of the
"Assess Pansharpening Quality" algorithm (GDAL + numpy, no QGIS).

Two modes, both read window by window (never a whole raster in memory) and
fed to the accumulators of :mod:`ada3d_qgis.core.metrics` (the one
implementation of the metrics):

- **reference** (:func:`assess` with ``reference``): the fused raster against
  a ground-truth MS on the fused grid (whole-pixel offsets allowed; the
  common part is scored): Q2n, SAM, ERGAS, SCC, PSNR. Windows start on the
  32-pixel Q2n block grid of the scored area and carry a one-pixel halo for
  SCC, so the result equals the whole-area computation.
- **no reference** (:func:`assess` without): the fused raster on the PAN grid
  against the PAN and the MS, the MS resampled onto the exact r x PAN grid
  (:func:`~ada3d_qgis.engine.raster_io.align_inputs`, as the pansharpening
  itself does): D_lambda, D_s, QNR. Windows start on the ``32 r`` grid so
  that MS-scale blocks are whole; the PAN is degraded to the MS scale with a
  context of :func:`~ada3d_qgis.core.degrade.filter_halo` pixels, clipped to
  the scored area, which equals degrading the whole area's PAN at once.

:func:`wald_inputs` builds the reduced-resolution (Wald protocol) inputs of
a scene as GeoTIFFs: the MS degraded by the ratio, and the PAN, first put on
the exact MS / r grid (so that the degraded PAN is registered to the MS),
degraded by the ratio onto the MS grid. Pansharpening those and scoring the
result against the original MS with :func:`assess` is the reduced-resolution
protocol; the degradation is streamed too and equals
:func:`~ada3d_qgis.core.degrade.wald_pair` on the whole arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from osgeo import gdal

from ..core.degrade import DEFAULT_MS_GAIN, DEFAULT_PAN_GAIN, degrade, filter_halo
from ..core.metrics import (
    BLOCK,
    METRIC_KEYS,
    METRICS,
    NO_REFERENCE_KEYS,
    REFERENCE_KEYS,
    NoReferenceMetrics,
    ReferenceMetrics,
    sam_map,
)
from . import Ada3DError, report
from .feedback import Feedback, QuietFeedback, check_cancel, warn
from .raster_io import (
    AlignedInputs,
    Grid,
    align_inputs,
    check_output_folder,
    describe_dataset,
    gdal_cache_limit,
    grid_in_crs,
    grid_of,
    input_ratio,
    numpy_type,
    open_raster,
    quiet_gdal,
    same_crs,
    warp_onto,
)

#: Pixels per window side before rounding to the block grid (bounds memory:
#: a 512 x 512 x 4-band window pair and the metrics' temporaries are ~100 MB).
WINDOW = 512
#: Source pixels per window side of the streamed Wald degradation.
DEGRADE_WINDOW = 1024
#: GDAL block cache during a run.
GDAL_CACHE_BYTES = 256 * 1024 * 1024
#: Two grids whose edges differ by less than this fraction of a pixel are aligned.
EPS_PX = 1e-3
#: A PAN/MS pixel-size ratio this close (relative) to a whole number is that number.
RATIO_TOLERANCE = 0.02
#: Progress shares of a run with a report: overviews before, crops and HTML after.
REPORT_SHARE = (5.0, 95.0)


# --------------------------------------------------------------------------- geometry


def resolution_ratio(pan_ds: gdal.Dataset, ms_ds: gdal.Dataset) -> int:
    """The whole-number PAN/MS resolution ratio read from the pixel sizes."""
    measured = input_ratio(pan_ds, ms_ds)
    ratio = round(measured)
    if ratio < 2 or abs(measured - ratio) > RATIO_TOLERANCE * ratio:
        raise Ada3DError(
            f"The multispectral pixels are {measured:.3f} times the size of the panchromatic "
            "pixels; the assessment needs a whole-number ratio of at least 2 (for example "
            "2 for Landsat, 4 for most very-high-resolution sensors). Check that the "
            "panchromatic and multispectral inputs are not swapped."
        )
    return ratio


def grid_offset(inner: Grid, outer: Grid, inner_name: str, outer_name: str) -> tuple[int, int]:
    """(col, row) of ``inner``'s top-left pixel on ``outer``'s grid; an error
    unless both share the CRS and pixel size and are offset by whole pixels."""
    if not same_crs(inner.crs_wkt, outer.crs_wkt):
        raise Ada3DError(
            f"The {inner_name} raster is not in the same CRS as the {outer_name} raster; "
            f"warp it onto the {outer_name} raster's grid first."
        )
    if abs(inner.dx - outer.dx) > EPS_PX * outer.dx or abs(inner.dy - outer.dy) > EPS_PX * outer.dy:
        raise Ada3DError(
            f"The {inner_name} raster's pixels ({inner.dx:g} x {inner.dy:g}) are not the "
            f"{outer_name} raster's ({outer.dx:g} x {outer.dy:g}): it is not on the "
            f"{outer_name} grid."
        )
    col = (inner.x0 - outer.x0) / outer.dx
    row = (outer.y0 - inner.y0) / outer.dy
    if abs(col - round(col)) > EPS_PX or abs(row - round(row)) > EPS_PX:
        raise Ada3DError(
            f"The {inner_name} raster is shifted by a fraction of a pixel "
            f"({col - round(col):+.3f}, {row - round(row):+.3f} pixel) from the "
            f"{outer_name} grid; resample it onto that grid first."
        )
    return round(col), round(row)


def windows(width: int, height: int, size: int) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) windows of ``size`` tiling a width x height area."""
    return [
        (x, y, min(size, width - x), min(size, height - y))
        for y in range(0, height, size)
        for x in range(0, width, size)
    ]


def window_size(step: int, target: int = WINDOW) -> int:
    """``target`` rounded down to a multiple of ``step`` (at least ``step``)."""
    return max(step, target // step * step)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# --------------------------------------------------------------------------- reading


def _band_nodata(ds: gdal.Dataset, index: int) -> float | None:
    band = ds.GetRasterBand(index)
    value = band.GetNoDataValue()
    del band  # a band must not outlive its dataset (GDAL 3.6 bindings)
    return None if value is None else float(value)


def _band_description(ds: gdal.Dataset, index: int) -> str:
    band = ds.GetRasterBand(index)
    text = band.GetDescription() or ""
    del band
    return text


def _band_dtype(ds: gdal.Dataset) -> np.dtype:
    band = ds.GetRasterBand(1)
    code = band.DataType
    del band
    return numpy_type(code)


def _nodata_hits(raw: np.ndarray, nodata: float) -> np.ndarray | None:
    """Where ``raw`` equals the nodata value, compared in ``raw``'s own type."""
    if math.isnan(nodata):
        return np.isnan(raw) if np.issubdtype(raw.dtype, np.floating) else None
    if np.issubdtype(raw.dtype, np.integer):
        info = np.iinfo(raw.dtype)
        if not nodata.is_integer() or not info.min <= nodata <= info.max:
            return None
    return raw == raw.dtype.type(nodata)


class RasterWindows:
    """Windows of a dataset's bands as float64 (bands, rows, cols) with NaN
    where the band has no data; (x, y) are pixels of the scored area, which
    starts at pixel (``col``, ``row``) of the dataset."""

    def __init__(
        self, ds: gdal.Dataset, what: str, col: int = 0, row: int = 0, bands=None
    ) -> None:
        self.ds = ds
        self.what = what
        self.col, self.row = col, row
        self.bands = list(bands) if bands else list(range(1, ds.RasterCount + 1))
        self.nodata = [_band_nodata(ds, b) for b in self.bands]

    def read(self, x: int, y: int, width: int, height: int) -> np.ndarray:
        try:
            raw = self.ds.ReadAsArray(
                self.col + x, self.row + y, width, height, band_list=self.bands
            )
        except RuntimeError:  # only when some other code enabled GDAL exceptions
            raw = None
        if raw is None:
            raise Ada3DError(
                f"Reading the {self.what} raster failed ({gdal.GetLastErrorMsg() or 'I/O error'})."
            )
        raw = raw.reshape(len(self.bands), height, width)
        out = raw.astype(np.float64)
        for i, value in enumerate(self.nodata):
            if value is not None:
                hits = _nodata_hits(raw[i], value)
                if hits is not None:
                    out[i][hits] = np.nan
        return out


class MaskWindows:
    """A mask raster (non-zero = valid) put onto the scored area's grid
    (nearest neighbour, lazily through a warped VRT); pixels outside it or
    on its nodata are invalid."""

    def __init__(self, path: str, grid: Grid) -> None:
        ds = open_raster(path, "mask")
        grid_of(ds, "mask")  # a clear error when it has no georeferencing
        with quiet_gdal():
            vrt, sub = warp_onto(ds, [1], grid, "near", dst_nodata=0)
            if vrt is None:
                raise Ada3DError(
                    f"The mask raster cannot be put onto the assessed grid "
                    f"({gdal.GetLastErrorMsg() or 'unknown error'})."
                )
        self._keep = [ds, sub]
        self.vrt = vrt

    def read(self, x: int, y: int, width: int, height: int) -> np.ndarray:
        data = self.vrt.ReadAsArray(x, y, width, height)
        if data is None:
            raise Ada3DError(f"Reading the mask raster failed ({gdal.GetLastErrorMsg()}).")
        return np.isfinite(data) & (data != 0)


# --------------------------------------------------------------------------- scene


@dataclass
class Scene:
    """What one assessment reads: the scored area (``grid``, on the fused
    grid) and window readers over it."""

    mode: str  # "reference" or "no-reference"
    ratio: int
    grid: Grid
    fused: RasterWindows
    fused_at: tuple[int, int]  # the area's top-left pixel in the fused raster
    reference: RasterWindows | None = None
    aligned: AlignedInputs | None = None
    pan_at: tuple[int, int] = (0, 0)  # area origin in aligned-PAN pixels
    ms_at: tuple[int, int] = (0, 0)  # area origin in aligned-MS pixels
    mask: MaskWindows | None = None
    band_names: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    keep: list = field(default_factory=list)

    @property
    def bands(self) -> int:
        return len(self.fused.bands)

    def read_pan(self, x: int, y: int, width: int, height: int) -> np.ndarray:
        if self.aligned is None:
            raise RuntimeError("read_pan on an assessment scene without PAN")
        pan = self.aligned.read_pan(self.pan_at[0] + x, self.pan_at[1] + y, width, height)
        return pan.astype(np.float64)

    def read_ms(self, x: int, y: int, width: int, height: int) -> np.ndarray:
        if self.aligned is None:
            raise RuntimeError("read_ms on an assessment scene without PAN")
        ms = self.aligned.read_ms(self.ms_at[0] + x, self.ms_at[1] + y, width, height)
        return ms.astype(np.float64)

    def close(self) -> None:
        if self.aligned is not None:
            self.aligned.close()
        self.keep.clear()


def _band_names(*datasets: gdal.Dataset) -> list[str]:
    """Band descriptions of the first dataset that has them, else "Band i"."""
    n = datasets[0].RasterCount
    for ds in datasets:
        if ds.RasterCount == n:
            names = [_band_description(ds, i) for i in range(1, n + 1)]
            if all(names):
                return names
    return [f"Band {i}" for i in range(1, n + 1)]


def reference_scene(fused_ds: gdal.Dataset, ref_ds: gdal.Dataset, ratio: int) -> Scene:
    """The part of the fused raster that the reference covers."""
    fused = grid_of(fused_ds, "fused")
    ref = grid_of(ref_ds, "reference")
    if fused_ds.RasterCount != ref_ds.RasterCount:
        raise Ada3DError(
            f"The fused raster has {fused_ds.RasterCount} band(s) but the reference has "
            f"{ref_ds.RasterCount}; they must hold the same bands in the same order."
        )
    rc, rr = grid_offset(ref, fused, "reference", "fused")
    c0, r0 = max(0, rc), max(0, rr)
    c1, r1 = min(fused.width, rc + ref.width), min(fused.height, rr + ref.height)
    if c1 - c0 < 1 or r1 - r0 < 1:
        raise Ada3DError("The reference and fused rasters do not overlap.")
    grid = fused.window(c0, r0, c1 - c0, r1 - r0)
    return Scene(
        mode="reference",
        ratio=ratio,
        grid=grid,
        fused=RasterWindows(fused_ds, "fused", c0, r0),
        fused_at=(c0, r0),
        reference=RasterWindows(ref_ds, "reference", c0 - rc, r0 - rr),
        band_names=_band_names(ref_ds, fused_ds),
    )


def no_reference_scene(
    fused_ds: gdal.Dataset, pan_ds: gdal.Dataset, ms_ds: gdal.Dataset, ratio: int
) -> Scene:
    """The part of the fused raster (on the PAN grid) where PAN and MS overlap,
    starting on the exact r x PAN grid of the aligned MS."""
    bands = fused_ds.RasterCount
    if bands != ms_ds.RasterCount:
        raise Ada3DError(
            f"The fused raster has {bands} band(s) but the multispectral raster has "
            f"{ms_ds.RasterCount}; they must hold the same bands in the same order."
        )
    if bands < 2:
        raise Ada3DError(
            "D_lambda compares bands with each other: the assessment without a reference "
            "needs at least two bands."
        )
    fused = grid_of(fused_ds, "fused")
    pan = grid_of(pan_ds, "panchromatic")
    fc, fr = grid_offset(fused, pan, "fused", "panchromatic")
    aligned = align_inputs(pan_ds, 1, ms_ds, list(range(1, bands + 1)), ratio)
    ac, ar = aligned.col, aligned.row
    c0 = ac + _ceil_div(max(0, fc - ac), ratio) * ratio
    r0 = ar + _ceil_div(max(0, fr - ar), ratio) * ratio
    width = (min(ac + aligned.grid.width, fc + fused.width) - c0) // ratio * ratio
    height = (min(ar + aligned.grid.height, fr + fused.height) - r0) // ratio * ratio
    if width < ratio or height < ratio:
        aligned.close()
        raise Ada3DError(
            "The fused raster does not overlap the area the panchromatic and multispectral "
            "rasters share (not even one multispectral pixel in common)."
        )
    return Scene(
        mode="no-reference",
        ratio=ratio,
        grid=pan.window(c0, r0, width, height),
        fused=RasterWindows(fused_ds, "fused", c0 - fc, r0 - fr),
        fused_at=(c0 - fc, r0 - fr),
        aligned=aligned,
        pan_at=(c0 - ac, r0 - ar),
        ms_at=((c0 - ac) // ratio, (r0 - ar) // ratio),
        band_names=_band_names(ms_ds, fused_ds),
        notes=[f"Multispectral on the exact {ratio} x PAN grid: {aligned.resampling}."],
    )


# --------------------------------------------------------------------------- streaming


class SamCollector:
    """Per-pixel spectral angles gathered while streaming: averaged into the
    report's overview pixels and kept at full resolution inside the crop."""

    def __init__(self, layout: report.Layout) -> None:
        self.layout = layout
        n = layout.width * layout.height
        self._sum = np.zeros(n)
        self._count = np.zeros(n)
        _, _, cw, ch = layout.crop
        self.crop = np.full((ch, cw), np.nan)

    def add(self, x: int, y: int, angles: np.ndarray) -> None:
        lay, f = self.layout, self.layout.factor
        h, w = angles.shape
        rows = (y + np.arange(h)) // f
        cols = (x + np.arange(w)) // f
        keep = np.isfinite(angles) & (rows < lay.height)[:, None] & (cols < lay.width)[None, :]
        idx = (rows[:, None] * lay.width + cols[None, :])[keep]
        self._sum += np.bincount(idx, angles[keep], minlength=self._sum.size)
        self._count += np.bincount(idx, minlength=self._count.size)
        cx, cy, cw, ch = lay.crop
        x0, y0 = max(x, cx), max(y, cy)
        x1, y1 = min(x + w, cx + cw), min(y + h, cy + ch)
        if x0 < x1 and y0 < y1:
            part = angles[y0 - y : y1 - y, x0 - x : x1 - x]
            self.crop[y0 - cy : y1 - cy, x0 - cx : x1 - cx] = part

    def overview(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(self._count > 0, self._sum / self._count, np.nan)
        return mean.reshape(self.layout.height, self.layout.width)


def stream_reference(
    scene: Scene,
    feedback: Feedback,
    progress: Callable[[float], None],
    data_range: float | None,
    block: int = BLOCK,
    window: int = WINDOW,
    sam: SamCollector | None = None,
) -> dict[str, object]:
    """Reference metrics over the scene, window by window. Without a
    ``data_range`` the reference's observed max - min (valid pixels) is used."""
    if scene.reference is None:
        raise RuntimeError("reference metrics need a scene with a reference")
    g = scene.grid
    acc = ReferenceMetrics(scene.bands, scene.ratio, data_range, block)
    lo, hi = math.inf, -math.inf
    wins = windows(g.width, g.height, window_size(block, window))
    for i, (x, y, w, h) in enumerate(wins):
        check_cancel(feedback)
        # One pixel of context where the area has it: SCC's Laplacian needs it.
        t, left = int(y > 0), int(x > 0)
        b, r = int(y + h < g.height), int(x + w < g.width)
        box = (x - left, y - t, w + left + r, h + t + b)
        fus = scene.fused.read(*box)
        ref = scene.reference.read(*box)
        valid = scene.mask.read(*box) if scene.mask is not None else None
        acc.update(ref, fus, valid, halo=(t, b, left, r), origin=(y, x))
        core = (slice(None), slice(t, t + h), slice(left, left + w))
        ok = np.isfinite(ref[core]).all(axis=0) & np.isfinite(fus[core]).all(axis=0)
        if valid is not None:
            ok &= valid[core[1:]]
        if data_range is None and ok.any():
            lo = min(lo, float(ref[core][:, ok].min()))
            hi = max(hi, float(ref[core][:, ok].max()))
        if sam is not None:
            angles = sam_map(ref[core], fus[core])
            angles[~ok] = np.nan
            sam.add(x, y, angles)
        progress((i + 1) / len(wins))
    if data_range is None and hi > lo:
        acc.data_range = hi - lo
    result = acc.result()
    result["data_range"] = acc.data_range
    return result


def stream_no_reference(
    scene: Scene,
    feedback: Feedback,
    progress: Callable[[float], None],
    block: int = BLOCK,
    window: int = WINDOW,
    pan_gain: float = DEFAULT_PAN_GAIN,
    sam: SamCollector | None = None,
) -> dict[str, object]:
    """D_lambda, D_s and QNR over the scene, window by window."""
    g, r = scene.grid, scene.ratio
    acc = NoReferenceMetrics(scene.bands, r, block)
    halo = filter_halo(r, pan_gain)
    wins = windows(g.width, g.height, window_size(block * r, window))
    for i, (x, y, w, h) in enumerate(wins):
        check_cancel(feedback)
        fus = scene.fused.read(x, y, w, h)
        ms = scene.read_ms(x // r, y // r, w // r, h // r)
        # The PAN with `halo` pixels of context (clipped to the area, whose
        # edges the degradation mirrors), so that its MS-scale version equals
        # degrading the whole area's PAN at once.
        x0, y0 = max(0, x - halo), max(0, y - halo)
        x1, y1 = min(g.width, x + w + halo), min(g.height, y + h + halo)
        pan_ctx = scene.read_pan(x0, y0, x1 - x0, y1 - y0)
        pan = pan_ctx[y - y0 : y - y0 + h, x - x0 : x - x0 + w]
        sy, sx = (y - y0) // r, (x - x0) // r
        pan_lr = degrade(pan_ctx, r, pan_gain)[sy : sy + h // r, sx : sx + w // r]
        valid = scene.mask.read(x, y, w, h) if scene.mask is not None else None
        acc.update(fus, ms, pan, pan_lr, valid=valid, origin=(y, x))
        if sam is not None:
            # Against the MS pixel each fused pixel falls in.
            angles = sam_map(np.repeat(np.repeat(ms, r, axis=1), r, axis=2), fus)
            if valid is not None:
                angles[~valid] = np.nan
            sam.add(x, y, angles)
        progress((i + 1) / len(wins))
    return acc.result()


# --------------------------------------------------------------------------- the run


@dataclass
class AssessOptions:
    fused: str
    pan: str
    ms: str
    reference: str | None = None
    mask: str | None = None
    #: HTML report path; None: no report.
    report: str | None = None
    #: PSNR peak; None: the reference type's maximum for unsigned integers,
    #: else the reference's observed max - min.
    data_range: float | None = None
    pan_gain: float = DEFAULT_PAN_GAIN
    block: int = BLOCK
    window: int = WINDOW
    #: The inputs are reduced-resolution ones made by :func:`wald_inputs`
    #: (changes the report's labels only).
    reduced: bool = False
    #: More (label, value) lines for the report's run table.
    extra_facts: Sequence[tuple[str, str]] = ()
    #: (role, path) of the inputs as the user gave them; default: these options'.
    inputs: Sequence[tuple[str, str]] = ()


@dataclass
class Assessment:
    mode: str  # "reference" or "no-reference"
    ratio: int
    #: Every key of :data:`~ada3d_qgis.core.metrics.METRIC_KEYS`; NaN where the mode
    #: does not compute it.
    metrics: dict[str, float]
    #: The accumulator's full result (per band values, pixel and tile counts).
    details: dict[str, object]
    grid: Grid
    report: Path | None
    notes: list[str]


def default_data_range(ds: gdal.Dataset) -> float | None:
    """PSNR peak for a reference raster: the type's maximum for unsigned
    integers (e.g. 65535 for UInt16); None (observed range) otherwise."""
    dtype = _band_dtype(ds)
    if np.issubdtype(dtype, np.unsignedinteger):
        return float(np.iinfo(dtype).max)
    return None


def _metrics(mode: str, result: dict[str, object]) -> dict[str, float]:
    """Every output metric; NaN for those the mode does not compute."""
    out = dict.fromkeys(METRIC_KEYS, math.nan)
    keys = REFERENCE_KEYS if mode == "reference" else NO_REFERENCE_KEYS
    for key in keys:
        out[key] = float(result.get(key, math.nan))  # type: ignore[arg-type]
    return out


def assess(opts: AssessOptions, feedback: Feedback | None = None) -> Assessment:
    """Score ``opts.fused`` (see the module doc for the two modes) and write
    the HTML report if asked. Raises Ada3DError or Cancelled."""
    feedback = feedback or QuietFeedback()
    if opts.report:
        check_output_folder(opts.report)
    with quiet_gdal(), gdal_cache_limit(GDAL_CACHE_BYTES):
        fused_ds = open_raster(opts.fused, "fused")
        pan_ds = open_raster(opts.pan, "panchromatic")
        ms_ds = open_raster(opts.ms, "multispectral")
        ratio = resolution_ratio(pan_ds, ms_ds)
        if opts.reference:
            ref_ds = open_raster(opts.reference, "reference")
            scene = reference_scene(fused_ds, ref_ds, ratio)
            scene.keep.append(ref_ds)
        else:
            scene = no_reference_scene(fused_ds, pan_ds, ms_ds, ratio)
        scene.keep.extend([fused_ds, pan_ds, ms_ds])
        try:
            if opts.mask:
                scene.mask = MaskWindows(opts.mask, scene.grid)
            return _run(scene, opts, feedback)
        finally:
            scene.close()


def _describe(scene: Scene) -> str:
    g = scene.grid
    return (
        f"Scored area: {g.width} x {g.height} px of {g.dx:g} x {g.dy:g} from pixel "
        f"{scene.fused_at[0]}, {scene.fused_at[1]} of the fused raster; resolution ratio "
        f"{scene.ratio} (from the PAN and MS pixel sizes)."
    )


def _run(scene: Scene, opts: AssessOptions, feedback: Feedback) -> Assessment:
    if opts.reduced:
        mode = "scoring the reduced-resolution result against the original MS"
    else:
        mode = "with a reference" if scene.mode == "reference" else "no reference"
    feedback.pushInfo(f"Mode: {mode}. {_describe(scene)}")
    for note in scene.notes:
        feedback.pushInfo(note)
    lo, hi = REPORT_SHARE if opts.report else (0.0, 100.0)
    layout = sam = None
    panels: list[report.Panel] = []
    if opts.report:
        layout = report.plan_layout(scene.grid)
        panels = _panels(scene, opts)
        report.read_overviews(panels, layout)
        pan_panel = next(p for p in panels if not p.spectral)
        layout = report.pick_crop(layout, pan_panel.overview)  # type: ignore[arg-type]
        sam = SamCollector(layout)
        feedback.setProgress(lo)

    def progress(fraction: float) -> None:
        feedback.setProgress(lo + (hi - lo) * fraction)

    if scene.mode == "reference":
        data_range = opts.data_range
        if data_range is None:
            data_range = default_data_range(scene.reference.ds)  # type: ignore[union-attr]
        result = stream_reference(
            scene, feedback, progress, data_range, opts.block, opts.window, sam
        )
    else:
        result = stream_no_reference(
            scene, feedback, progress, opts.block, opts.window, opts.pan_gain, sam
        )
    _check_counts(scene, result, feedback, opts.block)
    metrics = _metrics(scene.mode, result)
    feedback.pushInfo(
        "Scores: "
        + ", ".join(
            f"{m.label} {report.format_value(metrics[m.key])}"
            for m in METRICS
            if math.isfinite(metrics[m.key])
        )
    )
    written = None
    if opts.report and layout is not None and sam is not None:
        report.read_crops(panels, layout)
        against = (
            "the reference's" if scene.mode == "reference" else "the MS pixel it falls in"
        )
        content = _content(scene, opts, result, metrics, panels, layout)
        content.sam = report.SamPictures(sam.overview(), sam.crop, against)
        written = report.write_report(opts.report, content)
        feedback.pushInfo(f"Report: {written}")
    feedback.setProgress(100.0)
    return Assessment(scene.mode, scene.ratio, metrics, result, scene.grid, written, scene.notes)


def _check_counts(
    scene: Scene, result: dict[str, object], feedback: Feedback, block: int
) -> None:
    """An error when nothing could be scored; a warning when Q2n could not."""
    if scene.mode == "reference":
        if not result["pixels"]:
            raise Ada3DError(
                "No pixel of the scored area is valid in both the fused and the reference "
                "raster (nodata or mask everywhere)."
            )
        if not result["q2n_tiles"]:
            msg = (
                f"No complete {block} x {block} block of valid pixels: Q2n cannot be "
                "computed (the area is too small or masked)."
            )
            warn(feedback, f"Warning: {msg}")
            scene.notes.append(msg)
    elif not result["tiles"] or not result["tiles_lr"]:
        raise Ada3DError(
            f"No complete block of {block} x {block} multispectral pixels holds only valid "
            "pixels: D_lambda, D_s and QNR cannot be computed (the area is too small, "
            "masked or nodata)."
        )


def _rgb_choice(*datasets: gdal.Dataset) -> dict[int, list[int]]:
    """True-colour bands per band count: those of the first raster that names
    its colours, for every raster with as many bands; else
    :func:`report.default_rgb`."""
    named: tuple[int, list[int]] | None = None
    for ds in datasets:
        bands = report.colour_bands(ds)
        if bands:
            named = (ds.RasterCount, bands)
            break
    choice: dict[int, list[int]] = {}
    for ds in datasets:
        n = ds.RasterCount
        choice[n] = named[1] if named and named[0] == n else report.default_rgb(n)
    return choice


def _panels(scene: Scene, opts: AssessOptions) -> list[report.Panel]:
    fused_ds = scene.fused.ds
    ms_ds = open_raster(opts.ms, "multispectral")
    ref_ds = scene.reference.ds if scene.reference is not None else None
    datasets = [d for d in (ref_ds, ms_ds, fused_ds) if d is not None]
    rgb = _rgb_choice(*datasets)
    ms_label = "MS (degraded input, upsampled)" if opts.reduced else "MS (upsampled)"
    pan_label = "PAN (degraded input)" if opts.reduced else "PAN"
    panels = [
        report.Panel(ms_label, opts.ms, rgb[ms_ds.RasterCount], True),
        report.Panel(pan_label, opts.pan, [1], False),
        report.Panel("Fused", opts.fused, rgb[fused_ds.RasterCount], True),
    ]
    if ref_ds is not None and opts.reference:
        label = "Reference (original MS)" if opts.reduced else "Reference"
        panels.append(report.Panel(label, opts.reference, rgb[ref_ds.RasterCount], True))
    ms_ds = None
    return panels


def _content(
    scene: Scene,
    opts: AssessOptions,
    result: dict[str, object],
    metrics: dict[str, float],
    panels: list[report.Panel],
    layout: report.Layout,
) -> report.ReportContent:
    g = scene.grid
    if opts.reduced:
        mode = "reduced resolution (Wald protocol): scored against the original MS"
    elif scene.mode == "reference":
        mode = "with a reference"
    else:
        mode = "full resolution, no reference"
    facts = [
        ("Mode", mode),
        ("Resolution ratio", str(scene.ratio)),
        (
            "Scored area",
            f"{g.width} x {g.height} pixels of {g.dx:g} x {g.dy:g}, from pixel "
            f"{scene.fused_at[0]}, {scene.fused_at[1]} of the fused raster",
        ),
    ]
    band_rows: dict[str, list[float]] = {}
    if scene.mode == "reference":
        facts.append(("Pixels counted", str(result["pixels"])))
        facts.append((f"Q2n blocks ({opts.block} x {opts.block})", str(result["q2n_tiles"])))
        dr = result.get("data_range")
        facts.append(("PSNR data range", "n/a" if dr is None else f"{dr:g}"))
        band_rows["RMSE"] = list(result["rmse_bands"])  # type: ignore[call-overload]
        band_rows["SCC"] = list(result["scc_bands"])  # type: ignore[call-overload]
        if "psnr_bands" in result:
            band_rows["PSNR (dB)"] = list(result["psnr_bands"])  # type: ignore[call-overload]
    else:
        facts.append((f"Q blocks ({opts.block} x {opts.block}), PAN scale", str(result["tiles"])))
        facts.append((f"Q blocks ({opts.block} x {opts.block}), MS scale", str(result["tiles_lr"])))
    facts.extend(opts.extra_facts)
    inputs = list(opts.inputs) or [
        (role, path)
        for role, path in (
            ("Fused", opts.fused),
            ("Panchromatic", opts.pan),
            ("Multispectral", opts.ms),
            ("Reference", opts.reference),
            ("Mask", opts.mask),
        )
        if path
    ]
    return report.ReportContent(
        title="Pansharpening quality assessment",
        mode=scene.mode,
        metrics=metrics,
        facts=facts,
        inputs=inputs,
        band_names=scene.band_names,
        band_rows=band_rows,
        notes=list(scene.notes),
        panels=panels,
        layout=layout,
    )


# --------------------------------------------------------------------------- Wald inputs


@dataclass
class WaldInputs:
    """Reduced-resolution inputs of a scene (GeoTIFFs) and the MS area they
    stand for (the reference: ``grid``, in MS pixels)."""

    ms_lr: Path
    pan_lr: Path
    grid: Grid
    ratio: int
    pan_resampling: str


def degrade_stream(
    read: Callable[[int, int, int, int], np.ndarray],
    source_size: tuple[int, int],
    origin: tuple[int, int],
    out_size: tuple[int, int],
    ratio: int,
    gain: float,
    write: Callable[[int, int, np.ndarray], None],
    feedback: Feedback,
    progress: Callable[[float], None] = lambda f: None,
    window: int = DEGRADE_WINDOW,
) -> None:
    """Degrade a source raster by ``ratio`` window by window.

    Output pixel (i, j) stands for the ``ratio`` x ``ratio`` source block
    starting at ``origin`` + (i, j) * ratio. Each window is read with the
    filter's full context where the source has it (the real pixels beyond
    the output's extent included) and mirrored at the source's edges, so the
    result equals degrading the whole source at once (as ``wald_pair`` does).
    """
    sw, sh = source_size
    ox0, oy0 = origin
    halo = filter_halo(ratio, gain)
    step = max(1, window // ratio)
    wins = windows(out_size[0], out_size[1], step)
    for i, (x, y, w, h) in enumerate(wins):
        check_cancel(feedback)
        # The context stays on the block grid of the origin (so blocks match).
        xa = max(ox0 + x * ratio - halo, ox0 % ratio)
        ya = max(oy0 + y * ratio - halo, oy0 % ratio)
        xb = min(ox0 + (x + w) * ratio + halo, sw)
        yb = min(oy0 + (y + h) * ratio + halo, sh)
        low = degrade(read(xa, ya, xb - xa, yb - ya), ratio, gain)
        sx, sy = (ox0 + x * ratio - xa) // ratio, (oy0 + y * ratio - ya) // ratio
        write(x, y, low[:, sy : sy + h, sx : sx + w])
        progress((i + 1) / len(wins))


class FloatGeoTiff:
    """A Float32 GeoTIFF written window by window (the temporary inputs of the
    reduced-resolution test; they live in a folder the caller removes)."""

    OPTIONS = ("TILED=YES", "BIGTIFF=IF_SAFER")

    def __init__(
        self, path: Path, grid: Grid, descriptions: Sequence[str], nodata: float | None
    ) -> None:
        with quiet_gdal():
            ds = gdal.GetDriverByName("GTiff").Create(
                str(path), grid.width, grid.height, len(descriptions), gdal.GDT_Float32,
                list(self.OPTIONS),
            )
            if ds is None:
                raise Ada3DError(
                    f"The temporary file {path} cannot be written ({gdal.GetLastErrorMsg()})."
                )
        describe_dataset(ds, grid, descriptions, nodata)
        self.ds: gdal.Dataset | None = ds
        self.path = path

    def write(self, x: int, y: int, block: np.ndarray) -> None:
        if self.ds is None:
            raise RuntimeError("write after the map raster was closed")
        data = block.astype(np.float32)
        with quiet_gdal():
            for i in range(data.shape[0]):
                band = self.ds.GetRasterBand(i + 1)
                err = band.WriteArray(data[i], x, y)
                del band
                if err != gdal.CE_None:
                    raise Ada3DError(
                        f"Writing {self.path} failed ({gdal.GetLastErrorMsg() or 'disk full?'})."
                    )

    def close(self) -> None:
        if self.ds is not None:
            self.ds.FlushCache()
            self.ds = None


def _aligned_to(src: Grid, target: Grid) -> bool:
    """Is ``src`` already ``target``'s grid (same CRS, pixel, whole-pixel offset)?"""
    try:
        grid_offset(src, target, "source", "target")
    except Ada3DError:
        return False
    return True


def _pan_on_fine_grid(pan_ds: gdal.Dataset, fine: Grid) -> tuple[gdal.Dataset, list, str]:
    """The PAN's first band on the exact MS / r grid ``fine`` (a warped VRT):
    copied when it is that grid already, else cubic convolution (it shifts
    without blurring; the MTF filter that follows dominates anyway)."""
    aligned = _aligned_to(grid_of(pan_ds, "panchromatic"), fine)
    method = "near" if aligned else "cubic"
    with quiet_gdal():
        vrt, sub = warp_onto(pan_ds, [1], fine, method)
        if vrt is None:
            raise Ada3DError(
                "Resampling the panchromatic raster onto the multispectral grid failed "
                f"({gdal.GetLastErrorMsg() or 'unknown error'})."
            )
    why = (
        "already on the exact MS / r grid (copied)"
        if aligned
        else "resampled onto the exact MS / r grid with cubic convolution"
    )
    return vrt, [sub], why


def wald_inputs(
    pan: str,
    ms: str,
    folder: str | Path,
    feedback: Feedback | None = None,
    ms_gain: float = DEFAULT_MS_GAIN,
    pan_gain: float = DEFAULT_PAN_GAIN,
    window: int = DEGRADE_WINDOW,
) -> WaldInputs:
    """Write ``ms_lr.tif`` (the MS degraded by the ratio r) and ``pan_lr.tif``
    (the PAN degraded by r onto the MS grid) into ``folder``; both share the
    top-left corner of the MS area they cover (``grid``: whole MS pixels the
    PAN covers, trimmed to a multiple of r). Float32, NaN where the inputs
    have no data (the filters spread a gap over their few-pixel reach)."""
    feedback = feedback or QuietFeedback()
    folder = Path(folder)
    with quiet_gdal(), gdal_cache_limit(GDAL_CACHE_BYTES):
        pan_ds = open_raster(pan, "panchromatic")
        ms_ds = open_raster(ms, "multispectral")
        r = resolution_ratio(pan_ds, ms_ds)
        msg = grid_of(ms_ds, "multispectral")
        pang = grid_in_crs(pan_ds, "panchromatic", msg.crs_wkt)
        fine_all = Grid(msg.x0, msg.y0, msg.dx / r, msg.dy / r, msg.width * r, msg.height * r,
                        msg.crs_wkt)
        # Whole fine pixels the PAN covers (fine pixel 0 = the MS corner).
        c0 = math.ceil((pang.x0 - msg.x0) / fine_all.dx - EPS_PX)
        c1 = math.floor((pang.x1 - msg.x0) / fine_all.dx + EPS_PX)
        r0 = math.ceil((msg.y0 - pang.y0) / fine_all.dy - EPS_PX)
        r1 = math.floor((msg.y0 - pang.y1) / fine_all.dy + EPS_PX)
        mc0, mr0 = max(0, _ceil_div(c0, r)), max(0, _ceil_div(r0, r))
        mw = (min(msg.width, c1 // r) - mc0) // r * r
        mh = (min(msg.height, r1 // r) - mr0) // r * r
        if mw < r or mh < r:
            raise Ada3DError(
                "The panchromatic and multispectral rasters do not overlap enough for a "
                f"reduced-resolution test (at least {r} x {r} multispectral pixels)."
            )
        halo = filter_halo(r, pan_gain)
        fc0, fr0 = max(c0, mc0 * r - halo), max(r0, mr0 * r - halo)
        fc1 = min(c1, (mc0 + mw) * r + halo)
        fr1 = min(r1, (mr0 + mh) * r + halo)
        fine = fine_all.window(fc0, fr0, fc1 - fc0, fr1 - fr0)
        pan_vrt, keep, why = _pan_on_fine_grid(pan_ds, fine)
        feedback.pushInfo(
            f"Reduced resolution: {mw} x {mh} multispectral pixels, ratio {r}; the PAN is {why}."
        )
        ms_read = RasterWindows(ms_ds, "multispectral")
        pan_read = RasterWindows(pan_vrt, "panchromatic")
        names = [_band_description(ms_ds, b) for b in range(1, ms_ds.RasterCount + 1)]
        ms_gaps = any(v is not None for v in ms_read.nodata)
        pan_gaps = _band_nodata(pan_ds, 1) is not None
        ms_lr = folder / "ms_lr.tif"
        pan_lr = folder / "pan_lr.tif"
        ms_out = msg.window(mc0, mr0, mw // r, mh // r, step=r)
        pan_out = msg.window(mc0, mr0, mw, mh)
        n_ms = len(windows(ms_out.width, ms_out.height, max(1, window // r)))
        n_pan = len(windows(pan_out.width, pan_out.height, max(1, window // r)))
        done = [0]

        def tick(_: float) -> None:
            done[0] += 1
            feedback.setProgress(100.0 * done[0] / (n_ms + n_pan))

        outputs = (
            (FloatGeoTiff(ms_lr, ms_out, names, math.nan if ms_gaps else None), ms_read.read,
             (msg.width, msg.height), (mc0, mr0), ms_gain),
            (FloatGeoTiff(pan_lr, pan_out, ["Panchromatic (degraded)"],
                          math.nan if pan_gaps else None), pan_read.read,
             (fine.width, fine.height), (mc0 * r - fc0, mr0 * r - fr0), pan_gain),
        )
        try:
            for out, read, size, origin, gain in outputs:
                degrade_stream(
                    read, size, origin, (out.ds.RasterXSize, out.ds.RasterYSize), r, gain,
                    out.write, feedback, tick, window,
                )
                out.close()
        finally:
            for out, *_ in outputs:
                out.close()
        keep.clear()
    return WaldInputs(ms_lr, pan_lr, msg.window(mc0, mr0, mw, mh), r, why)
