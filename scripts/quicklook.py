"""Side-by-side true-colour quicklook PNGs with one shared contrast stretch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from osgeo import gdal

gdal.UseExceptions()


def read_rgb(path: Path, bands: tuple[int, int, int]) -> np.ndarray:
    ds = gdal.Open(str(path))
    return np.stack([ds.GetRasterBand(b).ReadAsArray().astype(np.float64) for b in bands])


def cubic_on_grid(ms: Path, like: Path, out: Path) -> Path:
    """The MS cubic-upsampled onto the grid of ``like`` (the EXP baseline)."""
    ds = gdal.Open(str(like))
    gt = ds.GetGeoTransform()
    bounds = (gt[0], gt[3] + gt[5] * ds.RasterYSize, gt[0] + gt[1] * ds.RasterXSize, gt[3])
    gdal.Warp(str(out), str(ms), outputBounds=bounds, width=ds.RasterXSize,
              height=ds.RasterYSize, resampleAlg="cubic", format="GTiff")
    return out


def stretch(images: list[np.ndarray], low: float = 2, high: float = 98) -> list[np.ndarray]:
    """8-bit images stretched with the percentiles of the first one, per band,
    so that differences between panels are the images', not the stretch's."""
    ref = images[0].reshape(images[0].shape[0], -1)
    lo = np.percentile(ref, low, axis=1)[:, None, None]
    hi = np.percentile(ref, high, axis=1)[:, None, None]
    return [
        (np.clip((im - lo) / np.maximum(hi - lo, 1e-9), 0, 1) * 255).astype(np.uint8)
        for im in images
    ]


def side_by_side(images: list[np.ndarray], out: Path, gap: int = 8) -> Path:
    panels = stretch(images)
    h = max(p.shape[1] for p in panels)
    w = sum(p.shape[2] for p in panels) + gap * (len(panels) - 1)
    canvas = np.full((3, h, w), 255, np.uint8)
    x = 0
    for p in panels:
        canvas[:, : p.shape[1], x : x + p.shape[2]] = p
        x += p.shape[2] + gap
    mem = gdal.GetDriverByName("MEM").Create("", w, h, 3, gdal.GDT_Byte)
    for i in range(3):
        mem.GetRasterBand(i + 1).WriteArray(canvas[i])
    gdal.GetDriverByName("PNG").CreateCopy(str(out), mem)
    aux = Path(str(out) + ".aux.xml")
    if aux.exists():
        aux.unlink()
    return out
