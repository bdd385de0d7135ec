"""The self-contained HTML report of "Assess Pansharpening Quality".

One file, no external resources: the metric table and the pictures, each a PNG
embedded as base64 (written with GDAL's PNG driver through a MEM dataset, so
that nothing beyond GDAL and numpy is needed: QGIS's Python may lack
matplotlib). The pictures:

- overviews of the evaluated area: the MS resampled onto it, the PAN, the
  fused image (and the reference when there is one), MS, fused and reference
  with one shared contrast stretch so that differences between panels are the
  images', not the stretch's;
- a zoomed detail crop at the fused resolution (the most textured part of the
  PAN), where the MS is visibly upsampled and the fused image should not be;
- the per-pixel spectral angle with a colour ramp and its legend.

Pictures are read small: every overview is a GDAL warp of the source onto a
grid of at most :data:`OVERVIEW_PX` pixels a side (``average`` when shrinking,
so GDAL streams the source), never the whole raster in memory.
"""

from __future__ import annotations

import base64
import contextlib
import html
import os
import re
import secrets
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from osgeo import gdal

from ..core.metrics import METRICS, NO_REFERENCE_KEYS, REFERENCE_KEYS
from . import Ada3DError
from .raster_io import Grid, grid_in_crs, open_raster, quiet_gdal, warp_onto

#: Longest side of an overview picture, in pixels.
OVERVIEW_PX = 512
#: Side of the detail crop in fused pixels, and how much it is enlarged on screen.
CROP_PX = 128
CROP_ZOOM = 2
#: Percentiles of the contrast stretch.
STRETCH = (2.0, 98.0)
#: Grey for pixels without data.
NODATA_GREY = 200
#: Outline of the detail crop on the overviews.
CROP_OUTLINE = (255, 221, 0)

#: Viridis (perceptually uniform, colour-blind safe), sampled every tenth.
_RAMP = np.array(
    [
        (68, 1, 84),
        (72, 35, 116),
        (64, 67, 135),
        (52, 94, 141),
        (41, 120, 142),
        (32, 144, 140),
        (34, 167, 132),
        (68, 190, 112),
        (121, 209, 81),
        (189, 222, 38),
        (253, 231, 37),
    ],
    np.float64,
)


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Layout:
    """Where the pictures come from: the evaluated area (``grid``), the
    overview (``factor`` area pixels per overview pixel, ``width`` x
    ``height``) and the detail crop (x, y, w, h in area pixels)."""

    grid: Grid
    factor: int
    width: int
    height: int
    crop: tuple[int, int, int, int]

    @property
    def overview_grid(self) -> Grid:
        return self.grid.window(0, 0, self.width, self.height, step=self.factor)

    @property
    def crop_grid(self) -> Grid:
        x, y, w, h = self.crop
        return self.grid.window(x, y, w, h)


def plan_layout(grid: Grid, max_side: int = OVERVIEW_PX, crop: int = CROP_PX) -> Layout:
    """Overview of at most ``max_side`` pixels a side (whole area pixels per
    overview pixel; a last partial row/column is left out of the picture) and
    a centred crop (moved by :func:`pick_crop`)."""
    factor = max(1, -(-max(grid.width, grid.height) // max_side))
    width, height = max(1, grid.width // factor), max(1, grid.height // factor)
    cw, ch = min(crop, grid.width), min(crop, grid.height)
    centre = ((grid.width - cw) // 2, (grid.height - ch) // 2, cw, ch)
    return Layout(grid, factor, width, height, centre)


def pick_crop(layout: Layout, detail: np.ndarray) -> Layout:
    """Move the crop to the most textured place: the highest standard
    deviation of ``detail`` (an overview, e.g. the PAN) over crop-sized
    windows, which is where pansharpening has something to show."""
    img = detail[0] if detail.ndim == 3 else detail
    _, _, cw, ch = layout.crop
    f = layout.factor
    bw, bh = max(1, cw // f), max(1, ch // f)
    best, best_xy = -1.0, None
    for oy in range(0, max(1, img.shape[0] - bh + 1), max(1, bh // 2)):
        for ox in range(0, max(1, img.shape[1] - bw + 1), max(1, bw // 2)):
            win = img[oy : oy + bh, ox : ox + bw]
            if not np.isfinite(win).all():
                continue
            spread = float(win.std())
            if spread > best:
                best, best_xy = spread, (ox * f, oy * f)
    if best_xy is None:
        return layout
    x = min(best_xy[0], layout.grid.width - cw)
    y = min(best_xy[1], layout.grid.height - ch)
    return replace(layout, crop=(x, y, cw, ch))


# --------------------------------------------------------------------------- reading


_COLOUR = {gdal.GCI_RedBand: "red", gdal.GCI_GreenBand: "green", gdal.GCI_BlueBand: "blue"}


def _band_colour(ds: gdal.Dataset, index: int) -> str | None:
    band = ds.GetRasterBand(index)
    interp, text = band.GetColorInterpretation(), band.GetDescription() or ""
    del band  # a band must not outlive its dataset (GDAL 3.6 bindings)
    if interp in _COLOUR:
        return _COLOUR[interp]
    found = re.findall(r"\b(red|green|blue)\b", text.lower())
    return found[0] if len(found) == 1 else None


def colour_bands(ds: gdal.Dataset) -> list[int] | None:
    """1-based (red, green, blue) bands named by colour interpretation or
    description, or None when the raster does not say."""
    names = {}
    for i in range(1, ds.RasterCount + 1):
        colour = _band_colour(ds, i)
        if colour and colour not in names:
            names[colour] = i
    if len(names) == 3:
        return [names["red"], names["green"], names["blue"]]
    return None


def default_rgb(bands: int) -> list[int]:
    """True-colour bands when the raster does not say: the project's B, G, R,
    NIR order for 4 or more bands, R, G, B for 3, the first band otherwise."""
    if bands >= 4:
        return [3, 2, 1]
    if bands == 3:
        return [1, 2, 3]
    return [1]


def warp_to(path: str, bands: list[int], target: Grid, what: str) -> np.ndarray:
    """``bands`` of a raster resampled onto ``target``: float64 (bands, rows,
    cols), NaN where there is no data. Averages when shrinking (GDAL streams
    the source, using overviews when it has them), cubic when enlarging."""
    ds = open_raster(path, what)
    src = grid_in_crs(ds, what, target.crs_wkt)
    scale = 0.5 * (target.dx / src.dx + target.dy / src.dy)
    method = "average" if scale > 1.01 else "cubic" if scale < 0.99 else "near"
    with quiet_gdal():
        out, _ = warp_onto(ds, bands, target, method, fmt="MEM")
        if out is None:
            raise Ada3DError(
                f"Reading the {what} raster for the report failed ({gdal.GetLastErrorMsg()})."
            )
        data = out.ReadAsArray().astype(np.float64)
    out = ds = None
    return data.reshape(len(bands), target.height, target.width)


@dataclass
class Panel:
    """One picture column: an overview and a detail crop of the same raster."""

    label: str
    path: str
    bands: list[int]
    spectral: bool  # shares the spectral contrast stretch (else: stretched alone)
    overview: np.ndarray | None = None
    crop: np.ndarray | None = None


def read_overviews(panels: list[Panel], layout: Layout) -> None:
    for p in panels:
        p.overview = warp_to(p.path, p.bands, layout.overview_grid, p.label.lower())


def read_crops(panels: list[Panel], layout: Layout) -> None:
    for p in panels:
        p.crop = warp_to(p.path, p.bands, layout.crop_grid, p.label.lower())


# --------------------------------------------------------------------------- rendering


def stretch(
    images: list[np.ndarray], low: float = STRETCH[0], high: float = STRETCH[1]
) -> list[np.ndarray]:
    """8-bit (bands, rows, cols) images stretched with the percentiles of the
    first one, per band, so that differences between panels are the images',
    not the stretch's. Pixels without data (NaN) come out grey."""
    ref = images[0].reshape(images[0].shape[0], -1)
    with np.errstate(all="ignore"):
        lo = np.nanpercentile(ref, low, axis=1)[:, None, None]
        hi = np.nanpercentile(ref, high, axis=1)[:, None, None]
    lo, hi = np.nan_to_num(lo), np.nan_to_num(hi)
    out = []
    for im in images:
        with np.errstate(invalid="ignore"):
            scaled = np.clip((im - lo) / np.maximum(hi - lo, 1e-9), 0, 1) * 255
        missing = ~np.isfinite(im).all(axis=0)
        byte = np.nan_to_num(scaled).round().astype(np.uint8)
        byte[:, missing] = NODATA_GREY
        out.append(byte)
    return out


def as_rgb(image: np.ndarray) -> np.ndarray:
    """(1 or 3, rows, cols) -> (3, rows, cols)."""
    return np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image


def side_by_side(images: list[np.ndarray], gap: int = 8) -> np.ndarray:
    """8-bit images placed left to right on a white canvas, (3, rows, cols)."""
    rgb = [as_rgb(p) for p in images]
    h = max(p.shape[1] for p in rgb)
    w = sum(p.shape[2] for p in rgb) + gap * (len(rgb) - 1)
    canvas = np.full((3, h, w), 255, np.uint8)
    x = 0
    for p in rgb:
        canvas[:, : p.shape[1], x : x + p.shape[2]] = p
        x += p.shape[2] + gap
    return canvas


def outline(image: np.ndarray, box: tuple[int, int, int, int], colour=CROP_OUTLINE) -> np.ndarray:
    """A copy of an 8-bit RGB image with a one-pixel rectangle (x, y, w, h)."""
    out = as_rgb(image).copy()
    x, y, w, h = box
    x1, y1 = min(x + w, out.shape[2]) - 1, min(y + h, out.shape[1]) - 1
    for c, v in enumerate(colour):
        out[c, y, x : x1 + 1] = v
        out[c, y1, x : x1 + 1] = v
        out[c, y : y1 + 1, x] = v
        out[c, y : y1 + 1, x1] = v
    return out


def colourise(values: np.ndarray, vmax: float, vmin: float = 0.0) -> np.ndarray:
    """(rows, cols) values -> (3, rows, cols) 8-bit viridis, ``vmin`` dark
    purple to ``vmax`` yellow (clipped); NaN grey."""
    with np.errstate(invalid="ignore"):
        t = np.clip((values - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    t = np.nan_to_num(t) * (len(_RAMP) - 1)
    stops = np.arange(len(_RAMP))
    rgb = np.stack([np.interp(t, stops, _RAMP[:, c]) for c in range(3)])
    out = rgb.round().astype(np.uint8)
    out[:, ~np.isfinite(values)] = NODATA_GREY
    return out


def legend_bar(width: int = 256, height: int = 14) -> np.ndarray:
    """The colour ramp from left (0) to right (1), (3, height, width)."""
    return colourise(np.tile(np.linspace(0, 1, width), (height, 1)), 1.0)


def png_bytes(image: np.ndarray) -> bytes:
    """PNG of an 8-bit (bands, rows, cols) or (rows, cols) image."""
    img = image[None] if image.ndim == 2 else image
    if img.dtype != np.uint8:
        raise ValueError(f"expected 8-bit pixels, got {img.dtype}")
    name = f"/vsimem/ada3d_{secrets.token_hex(6)}.png"
    with quiet_gdal():
        mem = gdal.GetDriverByName("MEM").Create("", img.shape[2], img.shape[1], img.shape[0])
        for i in range(img.shape[0]):
            band = mem.GetRasterBand(i + 1)
            band.WriteArray(img[i])
            del band
        png = gdal.GetDriverByName("PNG").CreateCopy(name, mem)
        ok = png is not None
        png = mem = None
        try:
            if not ok:
                raise Ada3DError(f"Encoding a report picture failed ({gdal.GetLastErrorMsg()}).")
            return _read_vsimem(name)
        finally:
            # Unlink raises for a missing file when another plugin or script has
            # turned on gdal.UseExceptions() (a process-wide switch).
            for path in (name, name + ".aux.xml"):
                if gdal.VSIStatL(path) is not None:
                    gdal.Unlink(path)


def _read_vsimem(name: str) -> bytes:
    f = gdal.VSIFOpenL(name, "rb")
    try:
        gdal.VSIFSeekL(f, 0, os.SEEK_END)
        size = gdal.VSIFTellL(f)
        gdal.VSIFSeekL(f, 0, os.SEEK_SET)
        return bytes(gdal.VSIFReadL(1, size, f))
    finally:
        gdal.VSIFCloseL(f)


def write_png(image: np.ndarray, path: str | Path) -> Path:
    """An 8-bit image as a PNG file (no .aux.xml beside it)."""
    target = Path(path)
    target.write_bytes(png_bytes(image))
    return target


def data_uri(image: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


# --------------------------------------------------------------------------- HTML


@dataclass
class SamPictures:
    """Per-pixel spectral angles (degrees): the overview (each pixel the mean
    of the area pixels it covers) and the crop at full resolution."""

    overview: np.ndarray
    crop: np.ndarray
    against: str  # what the fused spectra are compared with


@dataclass
class ReportContent:
    title: str
    mode: str  # "reference" or "no-reference"
    metrics: dict[str, float]
    facts: list[tuple[str, str]]
    inputs: list[tuple[str, str]]
    band_names: list[str] = field(default_factory=list)
    band_rows: dict[str, list[float]] = field(default_factory=dict)  # column -> per band
    notes: list[str] = field(default_factory=list)
    panels: list[Panel] = field(default_factory=list)
    sam: SamPictures | None = None
    layout: Layout | None = None


def format_value(value: float) -> str:
    if value is None or not np.isfinite(value):
        return "n/a" if value is None or np.isnan(value) else ("+inf" if value > 0 else "-inf")
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"


_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #eee; } td.num { text-align: right; font-family: monospace; }
tr.na td { color: #999; }
.row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
figure { margin: 0; } figcaption { font-size: 0.85em; max-width: 520px; }
img.crop { image-rendering: pixelated; image-rendering: crisp-edges; }
.legend { display: flex; justify-content: space-between; width: 256px; font-size: 0.8em; }
p.note { font-size: 0.9em; color: #444; }
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _metric_table(content: ReportContent) -> str:
    applies = REFERENCE_KEYS if content.mode == "reference" else NO_REFERENCE_KEYS
    rows = []
    for m in METRICS:
        value = content.metrics.get(m.key, float("nan"))
        cls = "" if m.key in applies else ' class="na"'
        rows.append(
            f"<tr{cls}><td>{_esc(m.label)}</td><td class=\"num\" id=\"{m.key}\">"
            f"{_esc(format_value(value))}</td><td>{_esc(m.unit)}</td>"
            f"<td class=\"num\">{_esc(m.ideal)}</td><td>{_esc(m.meaning)}</td></tr>"
        )
    head = "<tr><th>Metric</th><th>Value</th><th>Unit</th><th>Ideal</th><th>Meaning</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _band_table(content: ReportContent) -> str:
    if not content.band_rows:
        return ""
    cols = list(content.band_rows)
    head = "<tr><th>Band</th>" + "".join(f"<th>{_esc(c)}</th>" for c in cols) + "</tr>"
    rows = []
    for i, name in enumerate(content.band_names):
        cells = "".join(
            f'<td class="num">{_esc(format_value(content.band_rows[c][i]))}</td>' for c in cols
        )
        rows.append(f"<tr><td>{_esc(name)}</td>{cells}</tr>")
    return f"<h2>Per band</h2><table>{head}{''.join(rows)}</table>"


def _pairs_table(pairs: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in pairs)
    return f"<table>{rows}</table>"


def _figure(image: np.ndarray, caption: str, css: str = "", scale: int = 1) -> str:
    h, w = image.shape[-2:]
    cls = f' class="{css}"' if css else ""
    return (
        f'<figure><img{cls} src="{data_uri(image)}" width="{w * scale}" height="{h * scale}" '
        f'alt="{_esc(caption)}"><figcaption>{_esc(caption)}</figcaption></figure>'
    )


def _sam_scale(sam: SamPictures) -> float:
    finite = sam.overview[np.isfinite(sam.overview)]
    if finite.size == 0:
        return 1.0
    return max(float(np.percentile(finite, 99)), 1e-3)


def _pictures(content: ReportContent) -> str:
    layout = content.layout
    if layout is None or not content.panels:
        return ""
    spectral = [p for p in content.panels if p.spectral]
    alone = [p for p in content.panels if not p.spectral]
    stretched: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if spectral:
        imgs = stretch([p.overview for p in spectral] + [p.crop for p in spectral])
        n = len(spectral)
        for i, p in enumerate(spectral):
            stretched[id(p)] = (imgs[i], imgs[n + i])
    for p in alone:
        over, crop = stretch([p.overview, p.crop])
        stretched[id(p)] = (over, crop)
    x, y, w, h = layout.crop
    f = layout.factor
    box = (x // f, y // f, max(1, w // f), max(1, h // f))
    over_figs, crop_figs = [], []
    for p in content.panels:
        over, crop = stretched[id(p)]
        over_figs.append(_figure(outline(over, box), p.label))
        crop_figs.append(_figure(as_rgb(crop), p.label, "crop", CROP_ZOOM))
    sam_html = ""
    if content.sam is not None:
        vmax = _sam_scale(content.sam)
        over_figs.append(
            _figure(outline(colourise(content.sam.overview, vmax), box), "Spectral angle")
        )
        crop_figs.append(
            _figure(colourise(content.sam.crop, vmax), "Spectral angle", "crop", CROP_ZOOM)
        )
        sam_html = (
            "<h2>Spectral-angle legend</h2>"
            f'<img src="{data_uri(legend_bar())}" width="256" height="14" alt="colour ramp">'
            f'<div class="legend"><span>0&deg;</span><span>{vmax / 2:.2f}&deg;</span>'
            f"<span>&ge; {vmax:.2f}&deg;</span></div>"
            f'<p class="note">Angle between each fused pixel\'s spectrum and '
            f"{_esc(content.sam.against)}, in degrees (0 = same colour). Overview pixels are the "
            f"mean over the {f} x {f} evaluated pixels they cover; the crop is per pixel. "
            "Grey: no data.</p>"
        )
    stretch_note = (
        f"Contrast: the {STRETCH[0]:g}-{STRETCH[1]:g} % percentiles of the first multispectral "
        "picture, per band, applied to every multispectral picture (overview and crop alike); "
        "the PAN is stretched on its own."
    )
    return (
        f"<h2>Overview</h2><div class=\"row\">{''.join(over_figs)}</div>"
        f'<p class="note">{_esc(stretch_note)} {layout.factor} evaluated pixel(s) per '
        f"picture pixel; the yellow box is the detail crop.</p>"
        f"<h2>Detail ({w} x {h} pixels, shown x{CROP_ZOOM})</h2>"
        f"<div class=\"row\">{''.join(crop_figs)}</div>{sam_html}"
    )


def render_html(content: ReportContent) -> str:
    """The whole report as one HTML string (every picture embedded)."""
    notes = "".join(f'<p class="note">{_esc(n)}</p>' for n in content.notes)
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(content.title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_esc(content.title)}</h1><p>Written {when}.</p>"
        f"<h2>Scores</h2>{_metric_table(content)}"
        "<p class=\"note\">Greyed rows do not apply in this mode (n/a).</p>"
        f"{_band_table(content)}<h2>Run</h2>{_pairs_table(content.facts)}"
        f"<h2>Inputs</h2>{_pairs_table(content.inputs)}{notes}"
        f"{_pictures(content)}</body></html>"
    )


def write_report(path: str | Path, content: ReportContent) -> Path:
    """Write the report to ``path`` (through a temporary name, so that a
    failure leaves no half-written file)."""
    target = Path(path)
    if not target.parent.is_dir():
        raise Ada3DError(f"The report's folder {target.parent} does not exist.")
    text = render_html(content)
    temp = target.parent / f".{target.name}.ada3d-tmp-{secrets.token_hex(4)}"
    try:
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise Ada3DError(f"The report {target} cannot be written ({exc.strerror}).") from exc
    return target
