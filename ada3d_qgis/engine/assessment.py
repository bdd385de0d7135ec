"""Streamed quality assessment of a pansharpened raster: the engine of the
"Assess Pansharpening Quality" algorithm (GDAL + numpy, no QGIS).

Two modes, both read window by window from a scene of
:mod:`~ada3d_qgis.engine.assessment_scenes` (never a whole raster in memory)
and fed to the accumulators of :mod:`ada3d_qgis.core.metrics` (the one
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

The reduced-resolution inputs (Wald protocol) are written by
:mod:`~ada3d_qgis.engine.assessment_wald`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal

from ..core.degrade import DEFAULT_PAN_GAIN, degrade, filter_halo
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
from .assessment_scenes import (
    GDAL_CACHE_BYTES,
    MaskWindows,
    Scene,
    no_reference_scene,
    reference_scene,
    resolution_ratio,
)
from .feedback import Feedback, QuietFeedback, check_cancel, warn
from .raster_io import (
    Grid,
    band_dtype,
    check_output_folder,
    gdal_cache_limit,
    open_raster,
    quiet_gdal,
)
from .tiling import Window, windows

#: Pixels per window side before rounding to the block grid (bounds memory:
#: a 512 x 512 x 4-band window pair and the metrics' temporaries are ~100 MB).
WINDOW = 512
#: Progress shares of a run with a report: overviews before, crops and HTML after.
REPORT_SHARE = (5.0, 95.0)


def window_size(step: int, target: int = WINDOW) -> int:
    """``target`` rounded down to a multiple of ``step`` (at least ``step``)."""
    return max(step, target // step * step)


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
    for i, win in enumerate(wins):
        check_cancel(feedback)
        x, y, w, h = win
        # One pixel of context where the area has it: SCC's Laplacian needs it.
        t, left = int(y > 0), int(x > 0)
        b, r = int(y + h < g.height), int(x + w < g.width)
        box = Window(x - left, y - t, w + left + r, h + t + b)
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
    for i, win in enumerate(wins):
        check_cancel(feedback)
        x, y, w, h = win
        fus = scene.fused.read(*win)
        ms = scene.read_ms(*win.scaled(r))
        # The PAN with `halo` pixels of context (clipped to the area, whose
        # edges the degradation mirrors), so that its MS-scale version equals
        # degrading the whole area's PAN at once.
        x0, y0 = max(0, x - halo), max(0, y - halo)
        x1, y1 = min(g.width, x + w + halo), min(g.height, y + h + halo)
        pan_ctx = scene.read_pan(x0, y0, x1 - x0, y1 - y0)
        pan = pan_ctx[y - y0 : y - y0 + h, x - x0 : x - x0 + w]
        sy, sx = (y - y0) // r, (x - x0) // r
        pan_lr = degrade(pan_ctx, r, pan_gain)[sy : sy + h // r, sx : sx + w // r]
        valid = scene.mask.read(*win) if scene.mask is not None else None
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
    #: The inputs are reduced-resolution ones made by
    #: :func:`~ada3d_qgis.engine.assessment_wald.wald_inputs`
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
    dtype = band_dtype(ds)
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
