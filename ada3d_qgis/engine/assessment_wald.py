"""The reduced-resolution (Wald protocol) inputs of a scene, as GeoTIFFs.

:func:`wald_inputs` writes the MS degraded by the ratio, and the PAN, first
put on the exact MS / r grid (so that the degraded PAN is registered to the
MS), degraded by the ratio onto the MS grid. Pansharpening those and scoring
the result against the original MS with
:func:`~ada3d_qgis.engine.assessment.assess` is the reduced-resolution
protocol. The degradation (:func:`degrade_stream`) is streamed window by
window and equals :func:`~ada3d_qgis.core.degrade.wald_pair` on the whole
arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal

from ..core.degrade import DEFAULT_MS_GAIN, DEFAULT_PAN_GAIN, degrade, filter_halo
from . import Ada3DError
from .assessment_scenes import (
    GDAL_CACHE_BYTES,
    RasterWindows,
    grid_offset,
    resolution_ratio,
)
from .feedback import Feedback, QuietFeedback, check_cancel
from .raster_io import (
    EPS_PX,
    Grid,
    OutputWriter,
    band_description,
    band_nodata,
    gdal_cache_limit,
    grid_in_crs,
    grid_of,
    open_raster,
    quiet_gdal,
    warp_onto,
)
from .tiling import round_up, windows

#: Source pixels per window side of the streamed Wald degradation.
DEGRADE_WINDOW = 1024
#: Creation options of the inputs: the method reads them once before they are
#: removed, so compressing them would cost time for nothing.
WORKING_OPTIONS = ("TILED=YES", "BIGTIFF=IF_SAFER")


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


def _working_file(
    path: Path, grid: Grid, descriptions: Sequence[str], gaps: bool
) -> OutputWriter:
    """A Float32 GeoTIFF written window by window (NaN for no data when the
    source has gaps), renamed into place when complete."""
    nodata = math.nan if gaps else None
    return OutputWriter(
        str(path), "GTiff", grid, gdal.GDT_Float32, nodata, descriptions, WORKING_OPTIONS,
        gtiff_defaults=False,
    )


def _float32_writer(out: OutputWriter) -> Callable[[int, int, np.ndarray], None]:
    # numpy rounds to float32 here so that the values do not depend on GDAL's conversion.
    def write(x: int, y: int, block: np.ndarray) -> None:
        out.write(x, y, block.astype(np.float32))

    return write


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
        mc0, mr0 = max(0, round_up(c0, r) // r), max(0, round_up(r0, r) // r)
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
        names = [band_description(ms_ds, b) for b in range(1, ms_ds.RasterCount + 1)]
        ms_gaps = any(v is not None for v in ms_read.nodata)
        pan_gaps = band_nodata(pan_ds, 1) is not None
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

        writes = (
            (ms_lr, ms_out, names, ms_gaps, ms_read.read, (msg.width, msg.height),
             (mc0, mr0), ms_gain),
            (pan_lr, pan_out, ["Panchromatic (degraded)"], pan_gaps, pan_read.read,
             (fine.width, fine.height), (mc0 * r - fc0, mr0 * r - fr0), pan_gain),
        )
        for path, grid, descriptions, gaps, read, size, origin, gain in writes:
            with _working_file(path, grid, descriptions, gaps) as out:
                degrade_stream(
                    read, size, origin, (grid.width, grid.height), r, gain,
                    _float32_writer(out), feedback, tick, window,
                )
                out.commit()
        keep.clear()
    return WaldInputs(ms_lr, pan_lr, msg.window(mc0, mr0, mw, mh), r, why)
