"""Side-by-side true-colour quicklook PNGs with one shared contrast stretch
(the stretch and layout are the HTML report's, ada3d_qgis/engine/report.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from osgeo import gdal

from ada3d_qgis.engine.report import side_by_side, stretch, write_png

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


def side_by_side_png(images: list[np.ndarray], out: Path) -> Path:
    """Panels left to right, one contrast stretch (the first panel's percentiles)."""
    return write_png(side_by_side(stretch(images)), out)
