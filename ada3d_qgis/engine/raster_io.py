"""GDAL side of the engine: inputs, MS-to-PAN-grid alignment, windowed I/O and
an output that appears only when it is complete.

Nothing here ever holds a whole raster: inputs are read window by window, the
MS is resampled lazily through a warped VRT, and the output is written window
by window to a temporary file next to the target, renamed when complete.

GDAL's Python exceptions are a process-wide switch that other QGIS code relies
on, so this module leaves it alone: it silences GDAL's error printing for the
current thread, checks return values and reports GDAL's last message.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from osgeo import gdal, gdal_array, osr

from . import Ada3DError

#: Creation options of the default output (and of the intermediate GTiff
#: written for formats that cannot be written window by window).
GTIFF_OPTIONS = ("TILED=YES", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER")

#: Two grids whose edges differ by less than this fraction of a pixel are
#: treated as aligned (GeoTIFF origins carry rounding noise).
EPS_PX = 1e-3
#: Relative difference allowed between a measured PAN/MS pixel-size ratio and a
#: whole ratio: it absorbs the small scale change of a reprojection.
RATIO_TOLERANCE = 0.05


@contextlib.contextmanager
def quiet_gdal() -> Iterator[None]:
    """Keep GDAL from printing errors (they are turned into sentences instead);
    the handler stack is per thread, so QGIS's own handler is untouched.

    Inside, failures return None as the code here expects, also when another
    plugin or script has switched on ``gdal.UseExceptions()`` (a process-wide
    setting in GDAL 3.6, and the default from GDAL 4 on).
    """
    raising = gdal.GetUseExceptions()
    if raising:
        gdal.DontUseExceptions()
    # GDAL's worker threads (GDAL_NUM_THREADS, set for speed) report errors to
    # the global handler, which prints "ERROR 1:" lines before the sentence:
    # datasets opened and warps run in here decode in this thread instead.
    threads = gdal.GetThreadLocalConfigOption("GDAL_NUM_THREADS", None)
    gdal.SetThreadLocalConfigOption("GDAL_NUM_THREADS", "1")
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    gdal.ErrorReset()
    try:
        yield
    finally:
        gdal.PopErrorHandler()
        gdal.SetThreadLocalConfigOption("GDAL_NUM_THREADS", threads)
        if raising:
            gdal.UseExceptions()


def _gdal_message(default: str = "") -> str:
    # GDAL wraps some messages over lines; a sentence for the log needs one.
    msg = " ".join((gdal.GetLastErrorMsg() or "").split())
    return msg or default


@contextlib.contextmanager
def gdal_cache_limit(max_bytes: int) -> Iterator[None]:
    """Cap GDAL's block cache during a run: its default (5 % of RAM) plus the
    network's working memory would break the peak-memory budget on a big
    machine. The previous value is restored afterwards."""
    previous = gdal.GetCacheMax()
    gdal.SetCacheMax(min(previous, max_bytes))
    try:
        yield
    finally:
        gdal.SetCacheMax(previous)


def row_sweep_bytes(ds: gdal.Dataset, bands: int, width: float, rows: float) -> int:
    """Bytes of the cache blocks of ``bands`` bands of ``ds`` that one row of
    windows ``rows`` pixels tall and ``width`` pixels wide (in pixels of
    ``ds``) touches: every block row it crosses, over that width."""
    band = ds.GetRasterBand(1)
    bx, by = band.GetBlockSize()
    size = max(gdal.GetDataTypeSize(band.DataType) // 8, 1)
    del band  # a band must not outlive its dataset (GDAL 3.6 bindings)
    cols = math.ceil(min(ds.RasterXSize, width + bx) / bx) * bx
    block_rows = min(math.ceil(rows / by) + 1, math.ceil(ds.RasterYSize / by))
    return block_rows * by * cols * size * bands


# --------------------------------------------------------------------------- grids


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid: top-left corner, pixel size (both > 0), size, CRS."""

    x0: float
    y0: float
    dx: float
    dy: float
    width: int
    height: int
    crs_wkt: str

    @property
    def geotransform(self) -> tuple[float, float, float, float, float, float]:
        return (self.x0, self.dx, 0.0, self.y0, 0.0, -self.dy)

    @property
    def x1(self) -> float:
        return self.x0 + self.width * self.dx

    @property
    def y1(self) -> float:
        """Bottom edge (y decreases downwards)."""
        return self.y0 - self.height * self.dy

    def window(self, col: int, row: int, width: int, height: int, step: int = 1) -> Grid:
        """The sub-grid starting at pixel (col, row), ``width`` x ``height``
        pixels of ``step`` times this grid's pixel size."""
        return Grid(
            self.x0 + col * self.dx,
            self.y0 - row * self.dy,
            self.dx * step,
            self.dy * step,
            width,
            height,
            self.crs_wkt,
        )


def warp_onto(
    ds: gdal.Dataset,
    bands: Sequence[int],
    grid: Grid,
    resampling: str,
    fmt: str = "VRT",
    src_nodata: str | None = None,
    dst_nodata: str | float = "nan",
    alpha: int | None = None,
) -> tuple[gdal.Dataset | None, gdal.Dataset | None]:
    """``bands`` (1-based) of ``ds`` resampled onto ``grid`` as float32 (a lazy
    VRT, or an in-memory "MEM" dataset), reprojected when the CRS differs.

    Every band is data whatever its colour interpretation, and each keeps its own
    nodata (``src_nodata``: one value per band). Band ``alpha``, if given, is the
    mask: 0 marks no data in every band, any other value data.

    Returns (result, band subset): the subset must stay alive as long as a VRT
    result. On failure the result is None and GDAL's message is in
    ``gdal.GetLastErrorMsg()``. Call inside :func:`quiet_gdal`.
    """
    band_list = [*bands, alpha] if alpha else list(bands)
    subset = gdal.Translate("", ds, format="VRT", bandList=band_list)
    if subset is None:
        return None, None
    _tag_as_data(subset)
    # The warper's default treats a pixel as nodata only where every band is.
    options = ["UNIFIED_SRC_NODATA=NO"]
    if alpha:
        # Any alpha above 0 is fully valid: a partial alpha would blend the
        # data with the nodata fill.
        options.append("SRC_ALPHA_MAX=1")
    out = gdal.Warp(
        "",
        subset,
        format=fmt,
        dstSRS=grid.crs_wkt,
        outputBounds=(grid.x0, grid.y1, grid.x1, grid.y0),
        width=grid.width,
        height=grid.height,
        resampleAlg=resampling,
        outputType=gdal.GDT_Float32,
        srcNodata=src_nodata,
        dstNodata=dst_nodata,
        srcAlpha=bool(alpha),
        dstAlpha=False,
        warpOptions=options,
    )
    return out, subset


def _tag_as_data(ds: gdal.Dataset) -> None:
    """Clear every band's colour interpretation: GDAL's warper takes a band
    tagged Alpha for a transparency mask (and drops it from the output)."""
    for i in range(1, ds.RasterCount + 1):
        band = ds.GetRasterBand(i)
        band.SetColorInterpretation(gdal.GCI_Undefined)
        del band  # a band must not outlive its dataset (GDAL 3.6 bindings)


def alpha_band(ds: gdal.Dataset, selected: Sequence[int]) -> int | None:
    """The band of ``ds`` tagged Alpha that can serve as its mask: only one not
    selected as data."""
    for i in range(1, ds.RasterCount + 1):
        band = ds.GetRasterBand(i)
        tagged = band.GetColorInterpretation() == gdal.GCI_AlphaBand
        del band  # a band must not outlive its dataset (GDAL 3.6 bindings)
        if tagged and i not in selected:
            return i
    return None


def colour_notes(ds: gdal.Dataset, selected: Sequence[int], alpha: int | None) -> list[str]:
    """Log lines on how colour interpretations are used: selected bands tagged
    Alpha are read as data; an unselected alpha band masks the others."""
    notes = []
    for b in selected:
        band = ds.GetRasterBand(b)
        tagged = band.GetColorInterpretation() == gdal.GCI_AlphaBand
        del band  # a band must not outlive its dataset (GDAL 3.6 bindings)
        if tagged:
            notes.append(
                f"Multispectral band {b} is tagged as alpha (transparency) but is selected, "
                "so it is read as data like the others."
            )
    if alpha:
        notes.append(
            f"Multispectral band {alpha} is an alpha band (not selected): where it is 0, "
            "the output has no data."
        )
    return notes


def describe_dataset(
    ds: gdal.Dataset, grid: Grid, descriptions: Sequence[str], nodata: float | None
) -> None:
    """Georeference a new dataset on ``grid`` and set its bands' nodata and
    descriptions."""
    ds.SetGeoTransform(grid.geotransform)
    ds.SetProjection(grid.crs_wkt)
    for i, text in enumerate(descriptions, start=1):
        band = ds.GetRasterBand(i)
        if nodata is not None:
            band.SetNoDataValue(nodata)
        if text:
            band.SetDescription(text)
        del band  # a band must not outlive its dataset (GDAL 3.6 bindings)


def open_raster(path: str, what: str) -> gdal.Dataset:
    """Open a raster for reading; ``what`` names it in the error message."""
    with quiet_gdal():
        ds = gdal.Open(str(path), gdal.GA_ReadOnly)
        if ds is None:
            raise Ada3DError(
                f"The {what} raster {path} cannot be opened by GDAL "
                f"({_gdal_message('unknown format or missing file')})."
            )
    return ds


def grid_of(ds: gdal.Dataset, what: str) -> Grid:
    """The grid of a north-up georeferenced dataset."""
    gt = ds.GetGeoTransform(can_return_null=True)
    wkt = ds.GetProjection()
    if gt is None or not wkt:
        raise Ada3DError(
            f"The {what} raster has no georeferencing (geotransform and CRS); "
            "georeference it first."
        )
    if gt[2] != 0 or gt[4] != 0 or gt[1] <= 0 or gt[5] >= 0:
        raise Ada3DError(
            f"The {what} raster is rotated or not north-up; warp it to a north-up grid "
            "first (Raster > Projections > Warp)."
        )
    return Grid(gt[0], gt[3], gt[1], -gt[5], ds.RasterXSize, ds.RasterYSize, wkt)


def same_crs(wkt_a: str, wkt_b: str) -> bool:
    a, b = osr.SpatialReference(), osr.SpatialReference()
    a.ImportFromWkt(wkt_a)
    b.ImportFromWkt(wkt_b)
    return bool(a.IsSame(b))


def grid_in_crs(ds: gdal.Dataset, what: str, crs_wkt: str) -> Grid:
    """The dataset's grid, or the north-up grid GDAL suggests for it in another CRS
    (same footprint, about the same pixel size)."""
    grid = grid_of(ds, what)
    if same_crs(grid.crs_wkt, crs_wkt):
        return grid
    with quiet_gdal():
        vrt = gdal.AutoCreateWarpedVRT(ds, grid.crs_wkt, crs_wkt)
        if vrt is None:
            raise Ada3DError(
                f"The {what} raster cannot be reprojected to the panchromatic raster's CRS "
                f"({_gdal_message('no transformation found')})."
            )
    return grid_of(vrt, what)


def measured_ratio(pan: Grid, ms: Grid) -> float:
    """How many PAN pixels one MS pixel spans (``ms`` in the PAN's CRS)."""
    return 0.5 * (ms.dx / pan.dx + ms.dy / pan.dy)


def output_window(pan: Grid, ms: Grid, ratio: int) -> tuple[int, int, int, int]:
    """(col, row, width, height) of the output in PAN pixels: every PAN pixel whose
    centre lies inside the MS footprint, edges included (the extent ``gdal:pansharp``
    gives), within the PAN raster."""

    def span(lo: float, hi: float, n: int) -> tuple[int, int]:
        # Pixel i's centre is at i + 0.5.
        first = max(0, math.ceil(lo - 0.5 - EPS_PX))
        last = min(n, math.floor(hi - 0.5 + EPS_PX) + 1)
        return first, last - first

    col, width = span((ms.x0 - pan.x0) / pan.dx, (ms.x1 - pan.x0) / pan.dx, pan.width)
    row, height = span((pan.y0 - ms.y0) / pan.dy, (pan.y0 - ms.y1) / pan.dy, pan.height)
    if width < ratio or height < ratio:
        raise Ada3DError(
            "The panchromatic and multispectral rasters do not overlap (not even one "
            "multispectral pixel in common); check that they cover the same area."
        )
    return col, row, width, height


def inside_span(lo: float, hi: float, start: float, step: float, n: int) -> tuple[int, int]:
    """[first, stop) of the cells ``start + (j + 0.5) * step`` (j < n) whose centre
    lies in [lo, hi]."""
    first = max(0, math.ceil((lo - start) / step - 0.5 - EPS_PX))
    stop = min(n, math.floor((hi - start) / step - 0.5 + EPS_PX) + 1)
    return first, max(first, stop)


# --------------------------------------------------------------------------- inputs


def _nodata(band: gdal.Band) -> float | None:
    value = band.GetNoDataValue()
    return None if value is None else float(value)


@dataclass
class AlignedInputs:
    """The PAN window and the MS resampled onto the exact r x PAN grid over it.

    ``output`` is the output grid (PAN pixels); ``grid`` is the same grid rounded up
    to whole r x r blocks, the one tiles and the aligned MS grid (``grid`` coarsened
    by ``ratio``, in whose pixels MS windows are addressed) live on. Reads return
    float32 with NaN wherever the input has no data; outside the PAN raster the PAN
    is NaN, and aligned MS cells whose centre falls outside the MS footprint repeat
    the nearest cell inside it.
    """

    pan_ds: gdal.Dataset
    pan_band: int
    ms_ds: gdal.Dataset  # the warped VRT, Float32, NaN nodata
    col: int
    row: int
    grid: Grid
    ratio: int
    resampling: str
    pan_nodata: float | None
    ms_nodata: list[float | None]
    ms_descriptions: list[str]
    ms_type: int
    #: The selected MS band numbers (1-based), for messages.
    ms_bands: list[int] = field(default_factory=list)
    #: Log lines about how the MS bands are read (alpha, colour interpretation).
    notes: list[str] = field(default_factory=list)
    #: The output grid: ``grid`` without its round-up to whole blocks.
    output: Grid | None = None
    #: [first, stop) of the aligned MS columns and rows inside the MS footprint.
    ms_cols: tuple[int, int] | None = None
    ms_rows: tuple[int, int] | None = None
    #: Datasets the warped VRT reads from, kept alive with it.
    _keep: list = field(default_factory=list, repr=False)

    @property
    def bands(self) -> int:
        return self.ms_ds.RasterCount

    def read_pan(self, x: int, y: int, width: int, height: int) -> np.ndarray:
        x0, y0 = self.col + x, self.row + y
        cx0, cy0 = max(x0, 0), max(y0, 0)
        cx1 = min(x0 + width, self.pan_ds.RasterXSize)
        cy1 = min(y0 + height, self.pan_ds.RasterYSize)
        out = np.full((height, width), np.nan, np.float32)
        if cx1 <= cx0 or cy1 <= cy0:
            return out
        band = self.pan_ds.GetRasterBand(self.pan_band)
        with quiet_gdal():
            data = band.ReadAsArray(cx0, cy0, cx1 - cx0, cy1 - cy0)
            if data is None:
                raise Ada3DError(
                    f"Reading the panchromatic raster failed ({_gdal_message('I/O error')})."
                )
        data = data.astype(np.float32, copy=False)
        if self.pan_nodata is not None:
            data[data == np.float32(self.pan_nodata)] = np.nan
        out[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] = data
        return out

    def read_ms(self, x: int, y: int, width: int, height: int) -> np.ndarray:
        c0, c1 = self.ms_cols or (0, self.ms_ds.RasterXSize)
        r0, r1 = self.ms_rows or (0, self.ms_ds.RasterYSize)
        cx0, cx1 = min(max(x, c0), c1 - 1), max(min(x + width, c1), c0 + 1)
        cy0, cy1 = min(max(y, r0), r1 - 1), max(min(y + height, r1), r0 + 1)
        with quiet_gdal():
            data = self.ms_ds.ReadAsArray(cx0, cy0, cx1 - cx0, cy1 - cy0)
            if data is None:
                raise Ada3DError(
                    "Reading (resampling) the multispectral raster failed "
                    f"({_gdal_message('I/O error')})."
                )
        data = data.astype(np.float32, copy=False).reshape(self.bands, cy1 - cy0, cx1 - cx0)
        if (cx0, cy0, cx1, cy1) == (x, y, x + width, y + height):
            return data
        # Cells just outside the footprint (the output's last block may reach past
        # it) take the nearest cell inside, as the model saw edges in training.
        rows = np.clip(np.arange(y, y + height), cy0, cy1 - 1) - cy0
        cols = np.clip(np.arange(x, x + width), cx0, cx1 - 1) - cx0
        return data[:, rows][:, :, cols]

    def check_has_data(self, has_data: Sequence[bool]) -> None:
        """Refuse when a selected MS band (flags in selection order) has no valid
        pixel over the output: the model would fuse an invented band."""
        empty = [i for i, ok in enumerate(has_data) if not ok]
        if not empty:
            return
        named = "; ".join(self._only_nodata(i) for i in empty)
        raise Ada3DError(
            f"The multispectral {named} where the two rasters overlap; select other bands, "
            "or check the nodata value."
        )

    def _only_nodata(self, index: int) -> str:
        """'band 3 (Red) holds only nodata (0)' for the selected band at ``index``."""
        number = self.ms_bands[index] if index < len(self.ms_bands) else index + 1
        text = f"band {number}"
        if self.ms_descriptions[index]:
            text += f" ({self.ms_descriptions[index]})"
        text += " holds only nodata"
        if self.ms_nodata[index] is not None:
            text += f" ({self.ms_nodata[index]:g})"
        return text

    def row_sweep_bytes(self, rows: int) -> int:
        """Input blocks one row of windows ``rows`` PAN pixels tall touches: the
        PAN band, the warped MS and the MS file it reads."""
        r, grid = self.ratio, self.grid
        total = row_sweep_bytes(self.pan_ds, 1, grid.width, rows)
        total += row_sweep_bytes(self.ms_ds, self.bands, grid.width / r, rows / r)
        source = self._keep[0] if self._keep else None
        if source is not None:
            gt = source.GetGeoTransform()
            # Source pixels per PAN pixel (approximate when reprojected).
            sx, sy = grid.dx / abs(gt[1]), grid.dy / abs(gt[5])
            total += row_sweep_bytes(source, self.bands, grid.width * sx, rows * sy)
        return total

    def close(self) -> None:
        self.ms_ds = None
        self.pan_ds = None
        self._keep.clear()


def _pick_resampling(ms_src: Grid, target: Grid, reprojected: bool) -> tuple[str, str]:
    """GDAL resampling for the MS and the reason, for the log."""
    offset_x = ((target.x0 - ms_src.x0) / ms_src.dx) % 1.0
    offset_y = ((ms_src.y0 - target.y0) / ms_src.dy) % 1.0
    aligned = (
        not reprojected
        and min(offset_x, 1 - offset_x) < EPS_PX
        and min(offset_y, 1 - offset_y) < EPS_PX
        and abs(ms_src.dx - target.dx) < EPS_PX * target.dx
        and abs(ms_src.dy - target.dy) < EPS_PX * target.dy
    )
    if aligned:
        return "near", "the multispectral grid already is the exact r x PAN grid (copied as is)"
    why = (
        "cubic convolution: it shifts the image by a fraction of a pixel without the blur "
        "an average would add (the scales match, so no anti-aliasing is needed)"
    )
    if reprojected:
        return "cubic", f"reprojected to the PAN's CRS with {why}"
    return "cubic", (
        f"the multispectral grid is {offset_x:.2f} x {offset_y:.2f} of its pixel off the "
        f"exact r x PAN grid; resampled with {why}"
    )


def ratio_fits(measured: float, ratio: int) -> bool:
    """Whether a measured pixel-size ratio is the whole ``ratio``."""
    return abs(measured - ratio) <= RATIO_TOLERANCE * ratio


def input_ratio(pan_ds: gdal.Dataset, ms_ds: gdal.Dataset) -> float:
    """The measured PAN/MS pixel-size ratio (MS taken into the PAN's CRS)."""
    pan = grid_of(pan_ds, "panchromatic")
    return measured_ratio(pan, grid_in_crs(ms_ds, "multispectral", pan.crs_wkt))


@dataclass
class InputPair:
    """Both inputs opened and checked: bands exist, the MS band descriptions,
    the measured pixel-size ratio and the grids (MS in the PAN's CRS)."""

    pan_ds: gdal.Dataset
    pan_band: int
    ms_ds: gdal.Dataset
    ms_bands: list[int]
    descriptions: list[str]
    pan_grid: Grid
    ms_grid: Grid
    ratio: float

    @property
    def ms_type(self) -> int:
        """GDAL data type of the first selected MS band."""
        band = self.ms_ds.GetRasterBand(self.ms_bands[0])
        gdal_type = band.DataType
        del band  # a band must not outlive its dataset (GDAL 3.6 bindings)
        return gdal_type

    def check_overlap(self, ratio: int) -> None:
        """Raise a sentence when the rasters share no MS pixel at ``ratio``."""
        output_window(self.pan_grid, self.ms_grid, ratio)


def same_file(a: str, b: str) -> bool:
    """Whether two GDAL sources name the same file (or the same connection string)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return str(a) == str(b)


def open_pair(
    pan: str, ms: str, pan_band: int = 1, ms_bands: Sequence[int] | None = None
) -> InputPair:
    """Open and check the PAN and MS rasters (``ms_bands`` None: all bands)."""
    if same_file(pan, ms):
        raise Ada3DError(
            f"The panchromatic and multispectral inputs are the same raster ({Path(ms).name}); "
            "choose the panchromatic band's file as the panchromatic input and the "
            "multispectral image as the multispectral input."
        )
    return check_pair(
        open_raster(pan, "panchromatic"), pan_band, open_raster(ms, "multispectral"), ms_bands
    )


def check_pair(
    pan_ds: gdal.Dataset,
    pan_band: int,
    ms_ds: gdal.Dataset,
    ms_bands: Sequence[int] | None = None,
) -> InputPair:
    """Check two open rasters (bands exist, georeferencing) as one pair."""
    bands = list(range(1, ms_ds.RasterCount + 1)) if ms_bands is None else list(ms_bands)
    check_bands(pan_ds, [pan_band], "panchromatic")
    check_bands(ms_ds, bands, "multispectral")
    descriptions = []
    for b in bands:
        band = ms_ds.GetRasterBand(b)
        descriptions.append(band.GetDescription())
        del band  # a band must not outlive its dataset (GDAL 3.6 bindings)
    pan_grid = grid_of(pan_ds, "panchromatic")
    ms_grid = grid_in_crs(ms_ds, "multispectral", pan_grid.crs_wkt)
    return InputPair(pan_ds, pan_band, ms_ds, bands, descriptions, pan_grid, ms_grid,
                     measured_ratio(pan_grid, ms_grid))


def align_inputs(
    pan_ds: gdal.Dataset,
    pan_band: int,
    ms_ds: gdal.Dataset,
    ms_bands: Sequence[int],
    ratio: int,
) -> AlignedInputs:
    """:func:`align_pair` of the checked pair."""
    return align_pair(check_pair(pan_ds, pan_band, ms_ds, ms_bands), ratio)


def align_pair(pair: InputPair, ratio: int) -> AlignedInputs:
    """Put the selected MS bands on the exact ``ratio`` x PAN grid over every PAN
    pixel whose centre the MS covers (lazily: a warped VRT)."""
    pan_ds, pan_band, ms_ds, ms_bands = pair.pan_ds, pair.pan_band, pair.ms_ds, pair.ms_bands
    pan, ms_in_pan = pair.pan_grid, pair.ms_grid
    ms_src = grid_of(ms_ds, "multispectral")
    reprojected = not same_crs(ms_src.crs_wkt, pan.crs_wkt)
    col, row, width, height = output_window(pan, ms_in_pan, ratio)
    output = pan.window(col, row, width, height)
    blocks_x, blocks_y = -(-width // ratio), -(-height // ratio)
    grid = pan.window(col, row, blocks_x * ratio, blocks_y * ratio)
    target = pan.window(col, row, blocks_x, blocks_y, step=ratio)
    step_x, step_y = ratio * pan.dx, ratio * pan.dy
    ms_cols = inside_span(ms_in_pan.x0, ms_in_pan.x1, target.x0, step_x, blocks_x)
    ms_rows = inside_span(-ms_in_pan.y0, -ms_in_pan.y1, -target.y0, step_y, blocks_y)
    method, reason = _pick_resampling(ms_src, target, reprojected)

    nodata = [band_nodata(ms_ds, b) for b in ms_bands]

    src_nodata = None
    if any(v is not None for v in nodata):
        # A band without a nodata value gets one that cannot occur (NaN never
        # equals a number), so that each band keeps its own rule.
        src_nodata = " ".join("nan" if v is None else repr(v) for v in nodata)
    alpha = alpha_band(ms_ds, ms_bands)
    if alpha and src_nodata:
        src_nodata += " nan"  # the alpha band's own nodata: none
    with quiet_gdal():
        warped, subset = warp_onto(
            ms_ds, ms_bands, target, method, src_nodata=src_nodata, alpha=alpha
        )
        if warped is None:
            raise Ada3DError(
                "Resampling the multispectral raster onto the panchromatic grid failed "
                f"({_gdal_message()})."
            )
    return AlignedInputs(
        pan_ds=pan_ds,
        pan_band=pan_band,
        ms_ds=warped,
        col=col,
        row=row,
        grid=grid,
        ratio=ratio,
        resampling=reason,
        pan_nodata=band_nodata(pan_ds, pan_band),
        ms_nodata=nodata,
        ms_descriptions=list(pair.descriptions),
        ms_type=pair.ms_type,
        ms_bands=list(ms_bands),
        notes=colour_notes(ms_ds, ms_bands, alpha),
        output=output,
        ms_cols=ms_cols,
        ms_rows=ms_rows,
        _keep=[ms_ds, subset],
    )


def band_nodata(ds: gdal.Dataset, index: int) -> float | None:
    """Band ``index``'s nodata value, None when it has none."""
    band = ds.GetRasterBand(index)
    value = _nodata(band)
    del band  # a band must not outlive its dataset (GDAL 3.6 bindings)
    return value


def band_description(ds: gdal.Dataset, index: int) -> str:
    band = ds.GetRasterBand(index)
    text = band.GetDescription() or ""
    del band
    return text


def band_dtype(ds: gdal.Dataset) -> np.dtype:
    """The numpy type of the dataset's first band."""
    band = ds.GetRasterBand(1)
    code = band.DataType
    del band
    return numpy_type(code)


def nodata_hits(raw: np.ndarray, nodata: float) -> np.ndarray | None:
    """Where ``raw`` equals the nodata value, compared in ``raw``'s own type;
    None when no value of that type can equal it."""
    if math.isnan(nodata):
        return np.isnan(raw) if np.issubdtype(raw.dtype, np.floating) else None
    if np.issubdtype(raw.dtype, np.integer):
        info = np.iinfo(raw.dtype)
        if not nodata.is_integer() or not info.min <= nodata <= info.max:
            return None
    return raw == raw.dtype.type(nodata)


def check_bands(ds: gdal.Dataset, bands: Sequence[int], what: str) -> None:
    if not bands:
        raise Ada3DError(f"The {what} band selection is empty; select at least one band.")
    bad = [b for b in bands if not 1 <= b <= ds.RasterCount]
    if bad:
        raise Ada3DError(
            f"The {what} raster has {ds.RasterCount} band(s); band(s) "
            f"{', '.join(map(str, bad))} do not exist."
        )
    if ds.RasterCount and ds.GetRasterBand(1).DataType in _COMPLEX_TYPES:
        raise Ada3DError(f"The {what} raster holds complex numbers, which cannot be pansharpened.")


def band_numbers(value) -> list[int] | None:
    """Band numbers from a Processing value: numbers, or text such as "1,2,3"
    (what ``qgis_process`` passes), or a list of either. None when the value
    is none of these (an expression, a layer band list QGIS must read)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return _band_number(value, value)
    if isinstance(value, str):
        parts = [p for p in re.split(r"[,;\s]+", value.strip()) if p]
        return [n for p in parts for n in _band_number(p, value)]
    if isinstance(value, (list, tuple)):
        numbers = [band_numbers(v) for v in value]
        if any(n is None for n in numbers):
            return None
        return [b for n in numbers for b in n]
    return None


def _band_number(part, whole) -> list[int]:
    try:
        number = float(part)
    except ValueError:
        number = float("nan")
    if not number.is_integer():
        raise Ada3DError(
            f"Bands are given by their numbers, separated by commas (for example 1,2,3,4); "
            f"{whole!r} is not such a list."
        )
    return [int(number)]


_COMPLEX_TYPES = {gdal.GDT_CInt16, gdal.GDT_CInt32, gdal.GDT_CFloat32, gdal.GDT_CFloat64}


# --------------------------------------------------------------------------- data types


def numpy_type(gdal_type: int) -> np.dtype:
    return np.dtype(gdal_array.GDALTypeCodeToNumericTypeCode(gdal_type))


def gdal_type_named(name: str) -> int:
    """GDAL type for a name such as "float32", "Float32" or "uint16"."""
    code = gdal.GetDataTypeByName(name)
    if code == gdal.GDT_Unknown:
        try:
            code = gdal_array.NumericTypeCodeToGDALTypeCode(np.dtype(name.lower()))
        except TypeError:
            code = None
    if not code:
        raise Ada3DError(f"The model declares an unknown output data type {name!r}.")
    return code


def value_range(gdal_type: int) -> tuple[float, float]:
    dtype = numpy_type(gdal_type)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
    else:
        info = np.finfo(dtype)
    return float(info.min), float(info.max)


def choose_nodata(gdal_type: int, ms_nodata: float | None, needed: bool) -> float | None:
    """Output nodata (one value for all bands, as GeoTIFF has): the MS's when it fits
    the output type; else, only when some pixels have no data, the type's lowest
    value (NaN for floats)."""
    lo, hi = value_range(gdal_type)
    integer = np.issubdtype(numpy_type(gdal_type), np.integer)
    if ms_nodata is not None:
        if math.isnan(ms_nodata):
            if not integer:
                return ms_nodata
        elif lo <= ms_nodata <= hi and (not integer or ms_nodata.is_integer()):
            return ms_nodata
    if not needed:
        return None
    return lo if integer else float("nan")


def to_output(values: np.ndarray, gdal_type: int, nodata: float | None) -> np.ndarray:
    """Round/clip float values of one band to the output type; a valid value that
    would collide with the nodata value is moved one step away from it."""
    dtype = numpy_type(gdal_type)
    if not np.issubdtype(dtype, np.integer):
        return values.astype(dtype)
    lo, hi = value_range(gdal_type)
    out = np.clip(np.rint(values), lo, hi)
    if nodata is not None and not math.isnan(nodata):
        out[out == nodata] = nodata + 1 if nodata < hi else nodata - 1
    return out.astype(dtype)


# --------------------------------------------------------------------------- output


def parse_options(text: str | None) -> list[str]:
    """Creation options as Processing's GDAL algorithms take them: ``KEY=VALUE``
    pairs separated by ``|`` (spaces also accepted)."""
    if not text:
        return []
    parts = [p for chunk in text.split("|") for p in chunk.split()]
    bad = [p for p in parts if "=" not in p]
    if bad:
        raise Ada3DError(
            f"Creation options must be KEY=VALUE pairs separated by '|'; got {', '.join(bad)}."
        )
    return parts


def merge_options(defaults: Sequence[str], user: Sequence[str]) -> list[str]:
    """``defaults`` overridden key by key by ``user``."""
    keys = {u.split("=", 1)[0].upper() for u in user}
    return [d for d in defaults if d.split("=", 1)[0].upper() not in keys] + list(user)


def driver_for_path(path: str) -> str:
    """GDAL driver short name for a file extension (GTiff when unknown or none)."""
    ext = Path(path).suffix.lower().lstrip(".")
    if not ext:
        return "GTiff"
    if ext in ("tif", "tiff"):
        return "GTiff"
    for i in range(gdal.GetDriverCount()):
        drv = gdal.GetDriver(i)
        meta = drv.GetMetadata() or {}
        writable = meta.get(gdal.DCAP_CREATE) == "YES" or meta.get(gdal.DCAP_CREATECOPY) == "YES"
        if meta.get(gdal.DCAP_RASTER) == "YES" and writable:
            if ext in (meta.get(gdal.DMD_EXTENSIONS) or "").lower().split():
                return drv.ShortName
    raise Ada3DError(
        f"No GDAL raster format that can be written uses the extension .{ext}; give the "
        f"output the extension of a raster format, for example .tif ({SAFE_FORMAT})."
    )


def check_output_folder(path: str) -> Path:
    """The output's folder, or an error saying why nothing can be written there."""
    target = Path(path)
    folder = target.parent
    if not folder.is_dir():
        raise Ada3DError(f"The output folder {folder} does not exist.")
    if not os.access(folder, os.W_OK):
        raise Ada3DError(f"The output folder {folder} is not writable.")
    if target.is_dir():
        raise Ada3DError(f"The output {target} is a folder; give a file name.")
    return folder


def output_data_type(declared: str, ms_type: int) -> int:
    """The output's GDAL type: the model's declared one, else the MS's."""
    return gdal_type_named(declared) if declared else ms_type


def check_output(
    path: str,
    driver: str | None,
    inputs: dict[str, gdal.Dataset],
    bands: int,
    gdal_type: int,
    options: Sequence[str] = (),
) -> str:
    """Everything about the output that can be known before any work: its
    folder, that it is none of the ``inputs`` (named by role), and that its
    format holds the result. Returns the GDAL driver's short name."""
    check_output_folder(path)
    check_not_an_input(path, inputs)
    return check_output_format(path, driver, bands, gdal_type, options)


def prepare_output(
    path: str,
    driver: str | None,
    pair: InputPair,
    ratio: int,
    declared_type: str = "",
    options: Sequence[str] = (),
) -> list[str]:
    """Check the output of a run on ``pair`` at ``ratio`` before any work (see
    :func:`check_output`, and that its folder has room for it;
    ``declared_type``: the model's output type, empty for the MS's), then
    remove what interrupted runs left in its folder. Returns log lines."""
    gdal_type = output_data_type(declared_type, pair.ms_type)
    inputs = {"panchromatic": pair.pan_ds, "multispectral": pair.ms_ds}
    bands = len(pair.ms_bands)
    driver = check_output(path, driver, inputs, bands, gdal_type, options)
    note = remove_stale_temporaries(Path(path).parent)
    _, _, width, height = output_window(pair.pan_grid, pair.ms_grid, ratio)
    # The work grid is rounded up to whole r x r blocks.
    width, height = -(-width // ratio) * ratio, -(-height // ratio) * ratio
    check_free_space(path, width, height, bands, gdal_type, driver)
    return [note] if note else []


def check_not_an_input(path: str, inputs: dict[str, gdal.Dataset]) -> None:
    """Refuse an output that would overwrite one of the ``inputs`` (or a file
    GDAL reads with it)."""
    if not Path(path).exists():
        return
    for role, ds in inputs.items():
        for name in ds.GetFileList() or [ds.GetDescription()]:
            if same_file(path, name):
                raise Ada3DError(
                    f"The output {path} is the {role} input raster (it would be overwritten); "
                    "choose another output file name."
                )


#: What to suggest when a format cannot hold the result.
SAFE_FORMAT = "GeoTIFF"
#: Side of the probe raster written to test a format (px): 256 pixels, one per
#: Byte value.
_PROBE_SIDE = 16


def check_output_format(
    path: str,
    driver: str | None,
    bands: int,
    gdal_type: int,
    options: Sequence[str] = (),
) -> str:
    """The driver that writes ``path`` (``driver``, or the one its extension
    names), or an Ada3DError naming the format and an alternative when it
    cannot hold ``bands`` bands of ``gdal_type`` with their values and
    georeferencing unchanged. A small probe raster is written with the same
    driver and ``options`` and read back, so lossy, clipping, band-dropping and
    georeferencing-losing formats are caught whatever they are."""
    name = driver or driver_for_path(path)
    drv = gdal.GetDriverByName(name)
    if drv is None or drv.GetMetadataItem(gdal.DCAP_RASTER) != "YES":
        raise Ada3DError(f"GDAL has no raster format named {name!r}; use {SAFE_FORMAT} (.tif).")
    label = _format_label(drv, path)
    if _write_mode(drv) is None:
        raise Ada3DError(f"GDAL cannot write the {label} format; use {SAFE_FORMAT} (.tif).")
    problem = _probe_format(drv, Path(path).suffix, bands, gdal_type, options)
    if problem:
        type_name = gdal.GetDataTypeName(gdal_type)
        raise Ada3DError(
            f"The {label} format cannot hold this result ({bands} band(s) of {type_name}): "
            f"{problem}; use {SAFE_FORMAT} (.tif)."
        )
    return name


def _format_label(drv: gdal.Driver, path: str) -> str:
    """"JPEG JFIF (.jpg)": the format's long name and the output's extension."""
    ext = Path(path).suffix or f".{drv.GetMetadataItem(gdal.DMD_EXTENSION) or ''}"
    if ext == "." or f"({ext.lower()})" in drv.LongName.lower():
        return drv.LongName
    return f"{drv.LongName} ({ext})"


def _write_mode(drv: gdal.Driver) -> str | None:
    """"create" (window by window), "copy" (in one go), or None."""
    if drv.GetMetadataItem(gdal.DCAP_CREATE) == "YES":
        return "create"
    if drv.GetMetadataItem(gdal.DCAP_CREATECOPY) == "YES":
        return "copy"
    return None


def _probe_values(bands: int, gdal_type: int) -> np.ndarray:
    """(bands, side, side) values spanning the type's range, different in every
    band, so that clipping, lossy coding and band reordering all show."""
    n = _PROBE_SIDE * _PROBE_SIDE
    lo, hi = value_range(gdal_type)
    if np.issubdtype(numpy_type(gdal_type), np.integer):
        ramp = np.rint(np.linspace(lo, hi, n))
    else:
        # Fractions, negatives and values beyond the integer types' range.
        ramp = np.linspace(-1.0e6, 1.0e6, n) + 0.37
    planes = [np.roll(ramp, 37 * b) for b in range(bands)]
    return np.stack(planes).reshape(bands, _PROBE_SIDE, _PROBE_SIDE).astype(numpy_type(gdal_type))


def _probe_grid() -> Grid:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32616)
    return Grid(456322.5, 3403837.5, 15.0, 15.0, _PROBE_SIDE, _PROBE_SIDE, srs.ExportToWkt())


def _probe_format(
    drv: gdal.Driver, suffix: str, bands: int, gdal_type: int, options: Sequence[str]
) -> str | None:
    """Why ``drv`` cannot hold the probe raster (see :func:`check_output_format`), or None."""
    values, grid = _probe_values(bands, gdal_type), _probe_grid()
    with tempfile.TemporaryDirectory(prefix="ada3d-format-") as folder, quiet_gdal():
        path = os.path.join(folder, "probe" + (suffix or ""))
        problem = _write_probe(drv, path, values, grid, gdal_type, options)
        if not problem:
            back = gdal.Open(path)
            if back is None:
                problem = f"the file written cannot be read back ({_gdal_message('unknown error')})"
            else:
                problem = _compare_probe(back, values, grid, gdal_type)
            back = None
        if problem and not _probe_folder_works(folder, values, grid, gdal_type):
            return None  # the temporary folder is at fault (full?), not the format
    # GDAL's messages name the probe file, which means nothing to the user.
    return problem and problem.replace(f"{path}: ", "").replace(path, "the file")


def _probe_folder_works(folder: str, values, grid: Grid, gdal_type: int) -> bool:
    """Whether a plain GeoTIFF probe can be written in ``folder``."""
    path = os.path.join(folder, "control.tif")
    return _write_probe(gdal.GetDriverByName("GTiff"), path, values, grid, gdal_type, ()) is None


def _write_probe(drv, path, values, grid, gdal_type, options) -> str | None:
    """Write ``values`` the way :class:`OutputWriter` would; why not, or None."""
    bands = values.shape[0]
    source = gdal.GetDriverByName("MEM").Create("", grid.width, grid.height, bands, gdal_type)
    if _write_mode(drv) == "create":
        ds = drv.Create(path, grid.width, grid.height, bands, gdal_type, list(options))
    else:
        ds = source
    if ds is None:
        return f"GDAL refuses to create it ({_gdal_message('unknown error')})"
    describe_dataset(ds, grid, [""] * bands, None)
    for i in range(bands):
        band = ds.GetRasterBand(i + 1)
        err = band.WriteArray(values[i])
        del band  # a band must not outlive its dataset (GDAL 3.6 bindings)
        if err != gdal.CE_None:
            return f"GDAL cannot write pixels into it ({_gdal_message('unknown error')})"
    if ds is source:
        ds = drv.CreateCopy(path, source, 0, list(options))
        if ds is None:
            return f"GDAL refuses to write it ({_gdal_message('unknown error')})"
    gdal.ErrorReset()
    ds = None
    if gdal.GetLastErrorType() >= gdal.CE_Failure:
        return f"GDAL fails to write it ({_gdal_message('unknown error')})"
    return None


def _compare_probe(back: gdal.Dataset, values: np.ndarray, grid: Grid, gdal_type: int):
    """Why the probe read back differs from what was written, or None."""
    bands = values.shape[0]
    if back.RasterCount != bands:
        return f"it stores {back.RasterCount} band(s), not {bands}"
    band = back.GetRasterBand(1)
    stored = band.DataType
    del band  # a band must not outlive its dataset (GDAL 3.6 bindings)
    if stored != gdal_type:
        return f"it stores {gdal.GetDataTypeName(stored)} values"
    data = back.ReadAsArray()
    if data is None or not np.array_equal(data.reshape(values.shape), values):
        return "it changes the pixel values (lossy compression or a narrower value range)"
    gt = back.GetGeoTransform(can_return_null=True)
    if gt is None or not np.allclose(gt, grid.geotransform) or not back.GetProjection():
        return "it does not keep the georeferencing"
    return None


def output_bytes(width: int, height: int, bands: int, gdal_type: int) -> int:
    """Size of the uncompressed output: an upper bound of what it takes on disk."""
    return width * height * bands * max(gdal.GetDataTypeSize(gdal_type) // 8, 1)


def free_bytes(folder: str | Path) -> int:
    """Free space of the file system holding ``folder``."""
    return shutil.disk_usage(folder).free


#: Below this much free space after a failed write, the disk is taken as full
#: (a GeoTIFF writes one compressed block of at most a few hundred KiB at a time).
DISK_FULL_BYTES = 2**20


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def check_free_space(
    path: str, width: int, height: int, bands: int, gdal_type: int, driver: str
) -> None:
    """Refuse a run whose output cannot fit the free space of its folder
    (a format written in one go needs room for its intermediate GeoTIFF too)."""
    size = output_bytes(width, height, bands, gdal_type)
    drv = gdal.GetDriverByName(driver)
    need = size if drv is None or _write_mode(drv) == "create" else 2 * size
    folder = Path(path).parent
    free = free_bytes(folder)
    if free < need:
        raise Ada3DError(
            f"The output needs up to {_mib(need)} ({bands} band(s) of {width} x {height} "
            f"pixels, {gdal.GetDataTypeSize(gdal_type) // 8} byte(s) each, before "
            f"compression: an upper bound), but only {_mib(free)} are free in {folder}; free "
            "some space or choose another folder."
        )


# --------------------------------------------------------------------------- temporaries


#: Temporary outputs are named ".<name>.ada3d-tmp-<pid>-<host>-<token>...":
#: the process id and host tag let a later run recognise a dead run's leftovers.
_TEMP_NAME = re.compile(r"^\..*\.ada3d-tmp-(\d+)-([0-9a-f]{8})-[0-9a-f]{8}")


def _host_tag() -> str:
    """Eight hex digits naming this computer, so that a run never takes another
    computer's live temporary file in a shared folder for a dead one."""
    return hashlib.blake2s(socket.gethostname().encode(), digest_size=4).hexdigest()


def temporary_prefix(target: Path) -> str:
    """The hidden name stem of a new temporary output for ``target``."""
    return f".{target.stem}.ada3d-tmp-{os.getpid()}-{_host_tag()}-{secrets.token_hex(4)}"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs on this computer (True when unsure)."""
    if os.name == "nt":
        return _windows_process_alive(pid)
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists but belongs to someone else, or cannot be asked
    return True


def _windows_process_alive(pid: int) -> bool:
    # os.kill(pid, 0) would terminate the process on Windows.
    import ctypes

    kernel32 = ctypes.windll.kernel32
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return kernel32.GetLastError() == 5  # ERROR_ACCESS_DENIED: it exists
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def remove_stale_temporaries(folder: str | Path) -> str | None:
    """Remove the temporary outputs in ``folder`` left by runs of this
    computer whose process no longer exists (killed, crashed); a log line
    saying what was removed, or None."""
    host, removed, size = _host_tag(), [], 0
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            match = _TEMP_NAME.match(entry.name)
            if not match or match.group(2) != host or process_alive(int(match.group(1))):
                continue
            with contextlib.suppress(OSError):
                bytes_ = entry.stat().st_size
                os.remove(entry.path)
                removed.append(entry.name)
                size += bytes_
    if not removed:
        return None
    return (
        f"Removed {len(removed)} temporary file(s) left in {folder} by an interrupted run "
        f"({_mib(size)}): {', '.join(sorted(removed))}."
    )


class OutputWriter:
    """Writes the output window by window to a hidden temporary file next to the
    target; :meth:`commit` moves it into place, :meth:`abort` removes every trace.

    Formats GDAL can only write in one go (CreateCopy, e.g. PNG) are written as a
    temporary GTiff first and converted at commit. ``gtiff_defaults=False``
    writes a GTiff with exactly ``options`` (the uncompressed working files of
    the reduced-resolution test, which are read once and then removed).
    """

    def __init__(
        self,
        path: str,
        driver: str,
        grid: Grid,
        gdal_type: int,
        nodata: float | None,
        descriptions: Sequence[str],
        options: Sequence[str] = (),
        *,
        gtiff_defaults: bool = True,
    ) -> None:
        self.target = Path(path)
        self.driver = gdal.GetDriverByName(driver)
        if self.driver is None:
            raise Ada3DError(f"GDAL has no raster format named {driver!r}.")
        folder = check_output_folder(path)
        self._prefix = temporary_prefix(self.target)
        self.temp = folder / f"{self._prefix}{self.target.suffix}"
        self.user_options = list(options)
        self.direct = self.driver.GetMetadataItem(gdal.DCAP_CREATE) == "YES"
        if not self.direct and self.driver.GetMetadataItem(gdal.DCAP_CREATECOPY) != "YES":
            raise Ada3DError(f"GDAL cannot write the {driver} format.")
        self.bands = len(descriptions)
        self.width, self.height = grid.width, grid.height
        self.size = output_bytes(grid.width, grid.height, self.bands, gdal_type)
        if self.direct:
            write_driver, write_path = self.driver, self.temp
            write_options = self.user_options
            if driver == "GTiff" and gtiff_defaults:
                write_options = merge_options(self._gtiff_defaults(gdal_type), self.user_options)
        else:
            write_driver = gdal.GetDriverByName("GTiff")
            write_path = folder / f"{self._prefix}.stage.tif"
            write_options = self._gtiff_defaults(gdal_type)
        self._write_path = write_path
        with quiet_gdal():
            ds = write_driver.Create(
                str(write_path), grid.width, grid.height, self.bands, gdal_type, write_options
            )
            if ds is None:
                error = self._failure(
                    _gdal_message("the format refused the options or the folder")
                )
                self._cleanup()
                raise error
        describe_dataset(ds, grid, descriptions, nodata)
        self.ds: gdal.Dataset | None = ds

    @staticmethod
    def _gtiff_defaults(gdal_type: int) -> list[str]:
        integer = np.issubdtype(numpy_type(gdal_type), np.integer)
        # Horizontal differencing shrinks smooth imagery; floats need predictor 3.
        return [*GTIFF_OPTIONS, f"PREDICTOR={2 if integer else 3}"]

    def write(self, x: int, y: int, block: np.ndarray) -> None:
        """Write a (bands, rows, cols) block with its top-left pixel at (x, y)."""
        if self.ds is None:
            raise RuntimeError("write after the output raster was committed")
        with quiet_gdal():
            for i in range(self.bands):
                band = self.ds.GetRasterBand(i + 1)
                err = band.WriteArray(block[i], x, y)
                del band
                if err != gdal.CE_None:
                    raise self._failure(_gdal_message("I/O error"))

    def _failure(self, message: str, what: str = "Writing the output") -> Ada3DError:
        """The error of a failed write; a full disk is named as the cause (GDAL's
        own message says only that a write failed). Call before removing the
        temporary file, which is what fills the disk."""
        folder = self.target.parent
        try:
            free = free_bytes(folder)
        except OSError:
            free = DISK_FULL_BYTES
        if free < DISK_FULL_BYTES:
            return Ada3DError(
                f"The disk holding {folder} is full ({_mib(free)} free), so the output could "
                f"not be written; it needs up to {_mib(self.size)} (before compression). Free "
                "some space or choose another folder."
            )
        return Ada3DError(f"{what} {self.target} failed ({message}).")

    def flush(self) -> None:
        if self.ds is not None:
            self.ds.FlushCache()

    def commit(self) -> Path:
        """Close, convert if needed, and move the finished file to the target."""
        if self.ds is None:
            raise RuntimeError("the output raster was already committed")
        with quiet_gdal():
            self.ds.FlushCache()
            self.ds = None
            if gdal.GetLastErrorType() >= gdal.CE_Failure:
                error = self._failure(_gdal_message("I/O error"))
                self.abort()
                raise error
            if not self.direct:
                self._convert()
            self._move_into_place()
        return self.target

    def _convert(self) -> None:
        src = gdal.Open(str(self._write_path))
        dst = self.driver.CreateCopy(str(self.temp), src, 0, self.user_options)
        src = None
        if dst is None:
            error = self._failure(_gdal_message("I/O error"), "Converting the output to "
                                  f"{self.driver.ShortName}")
            self.abort()
            raise error
        dst = None
        gdal.GetDriverByName("GTiff").Delete(str(self._write_path))

    def _move_into_place(self) -> None:
        ds = gdal.Open(str(self.temp))
        files = list(ds.GetFileList() or []) if ds is not None else [str(self.temp)]
        ds = None
        target = str(self.target)
        if files == [str(self.temp)]:
            with contextlib.suppress(FileNotFoundError):
                os.remove(target + ".aux.xml")  # statistics of a previous output
            os.replace(self.temp, target)
            return
        if self.target.exists():
            old = gdal.IdentifyDriver(target)
            if old is None or old.Delete(target) != gdal.CE_None:
                os.remove(target)
        if self.driver.Rename(target, str(self.temp)) != gdal.CE_None:
            self.abort()
            raise Ada3DError(f"Moving the output into place failed ({_gdal_message()}).")

    def abort(self) -> None:
        """Drop the temporary files (safe to call more than once)."""
        self.ds = None
        self._cleanup()

    def _cleanup(self) -> None:
        folder = self.target.parent
        with contextlib.suppress(OSError):
            for entry in os.scandir(folder):
                if entry.name.startswith(self._prefix):
                    with contextlib.suppress(OSError):
                        os.remove(entry.path)

    def __enter__(self) -> OutputWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or self.ds is not None:
            self.abort()
