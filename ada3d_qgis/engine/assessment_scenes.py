"""What an assessment reads: the scored area and window readers over it.

A :class:`Scene` is the part of the fused raster that can be scored and the
readers that serve it window by window (never a whole raster in memory):

- :func:`reference_scene`: the fused raster against a ground-truth MS on the
  fused grid, offset by whole pixels at most; the common part is scored.
- :func:`no_reference_scene`: the fused raster on the PAN grid, where PAN and
  MS overlap, starting on the exact r x PAN grid of the MS aligned by
  :func:`~ada3d_qgis.engine.raster_io.align_inputs` (as the pansharpening
  itself aligns it).

Readers take GDAL's (x, y, width, height), which a
:class:`~ada3d_qgis.engine.tiling.Window` unpacks into, and return float64
(bands, rows, cols) with NaN where a band has no data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from osgeo import gdal

from . import Ada3DError
from .raster_io import (
    EPS_PX,
    AlignedInputs,
    Grid,
    align_inputs,
    band_description,
    band_nodata,
    grid_of,
    input_ratio,
    nodata_hits,
    open_raster,
    quiet_gdal,
    ratio_fits,
    same_crs,
    warp_onto,
)
from .tiling import round_up

#: GDAL block cache during an assessment or a Wald degradation.
GDAL_CACHE_BYTES = 256 * 1024 * 1024


# --------------------------------------------------------------------------- geometry


def resolution_ratio(pan_ds: gdal.Dataset, ms_ds: gdal.Dataset) -> int:
    """The whole-number PAN/MS resolution ratio read from the pixel sizes."""
    measured = input_ratio(pan_ds, ms_ds)
    ratio = round(measured)
    if ratio < 2 or not ratio_fits(measured, ratio):
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


# --------------------------------------------------------------------------- reading


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
        self.nodata = [band_nodata(ds, b) for b in self.bands]

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
                hits = nodata_hits(raw[i], value)
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
            names = [band_description(ds, i) for i in range(1, n + 1)]
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
    c0 = ac + round_up(max(0, fc - ac), ratio)
    r0 = ar + round_up(max(0, fr - ar), ratio)
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
