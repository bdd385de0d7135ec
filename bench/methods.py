"""The pansharpening methods the benchmarks compare, each run on files.

Every method takes an MS GeoTIFF and a PAN GeoTIFF whose grids share their
top-left corner (an MS pixel covers exactly ratio x ratio PAN pixels) and
writes a float32 fused GeoTIFF on the PAN grid. Classical baselines:

- ``EXP``: cubic upsampling of the MS (GDAL warp, cubic), no PAN at all;
- ``GDAL Brovey``: QGIS's ``gdal:pansharp`` with its defaults (equal weights);
- ``GDAL Brovey (fitted)``: the same with per-band weights fitted to the scene
  (least squares of the PAN, degraded to the MS grid, on the MS bands);
- ``OTB RCS``, ``OTB LMVM``, ``OTB Bayes``: ``otbcli_BundleToPerfectSensor``.

``projected(method)`` (issue 18 item 4, a candidate, measured here before any
option ships) follows a method by a consistency projection: the fused image
plus the cubic upsampling of what the MS and the fused image, degraded by the
MTF model, still differ by.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
from osgeo import gdal

from ada3d_qgis.core.degrade import consistency_projection, degrade

gdal.UseExceptions()

Method = Callable[[Path, Path, Path], None]


def exp_cubic(ms: Path, pan: Path, out: Path) -> None:
    ds = gdal.Open(str(pan))
    gt = ds.GetGeoTransform()
    bounds = (gt[0], gt[3] + gt[5] * ds.RasterYSize, gt[0] + gt[1] * ds.RasterXSize, gt[3])
    gdal.Warp(
        str(out), str(ms), outputBounds=bounds, width=ds.RasterXSize, height=ds.RasterYSize,
        resampleAlg="cubic", outputType=gdal.GDT_Float32, format="GTiff",
    )


def _processing_run(alg: str, params: dict) -> None:
    import processing  # QGIS's processing plugin, initialised by the caller

    processing.run(alg, params)


def gdal_brovey(ms: Path, pan: Path, out: Path, extra: str = "") -> None:
    _processing_run(
        "gdal:pansharp",
        {"SPECTRAL": str(ms), "PANCHROMATIC": str(pan), "RESAMPLING": 2,
         "OPTIONS": "", "EXTRA": extra, "OUTPUT": str(out)},
    )


def fitted_weights(ms: Path, pan: Path) -> np.ndarray:
    """Least-squares weights w with PAN (at MS scale) ~ sum_b w_b MS_b."""
    ms_a = gdal.Open(str(ms)).ReadAsArray().astype(np.float64)
    ms_a = ms_a.reshape(-1, *ms_a.shape[-2:])
    pan_a = gdal.Open(str(pan)).ReadAsArray().astype(np.float64)
    ratio = pan_a.shape[0] // ms_a.shape[1]
    pan_lr = degrade(pan_a, ratio, 0.15)
    h, w = pan_lr.shape
    a = ms_a[:, :h, :w].reshape(len(ms_a), -1).T
    weights, *_ = np.linalg.lstsq(a, pan_lr.ravel(), rcond=None)
    return weights


def gdal_brovey_fitted(ms: Path, pan: Path, out: Path) -> None:
    weights = fitted_weights(ms, pan)
    gdal_brovey(ms, pan, out, " ".join(f"-w {w:.6f}" for w in weights))


def otb(method: str) -> Method:
    def run(ms: Path, pan: Path, out: Path) -> None:
        proc = subprocess.run(
            ["otbcli_BundleToPerfectSensor", "-inp", str(pan), "-inxs", str(ms),
             "-out", str(out), "float", "-method", method],
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"OTB {method} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")

    return run


def ada3d(model: Path | None = None) -> Method:
    def run(ms: Path, pan: Path, out: Path) -> None:
        params = {"PANCHROMATIC": str(pan), "SPECTRAL": str(ms), "OUTPUT": str(out)}
        if model is not None:
            params["MODEL"] = str(model)
        _processing_run("ada3d:pansharpen", params)

    return run


def projected(method: Method) -> Method:
    def run(ms: Path, pan: Path, out: Path) -> None:
        method(ms, pan, out)
        ms_a = gdal.Open(str(ms)).ReadAsArray().astype(np.float64)
        ms_a = ms_a.reshape(-1, *ms_a.shape[-2:])
        ds = gdal.Open(str(out), gdal.GA_Update)
        fused = ds.ReadAsArray().astype(np.float64).reshape(-1, ds.RasterYSize, ds.RasterXSize)
        ratio = round(gdal.Open(str(ms)).GetGeoTransform()[1] / ds.GetGeoTransform()[1])
        fixed = consistency_projection(fused, ms_a, ratio)
        for i in range(fixed.shape[0]):
            ds.GetRasterBand(i + 1).WriteArray(fixed[i])
        ds = None

    return run


CLASSICAL: dict[str, Method] = {
    "EXP (cubic)": exp_cubic,
    "GDAL Brovey": gdal_brovey,
    "GDAL Brovey (fitted)": gdal_brovey_fitted,
    "OTB RCS": otb("rcs"),
    "OTB LMVM": otb("lmvm"),
    "OTB Bayes": otb("bayes"),
}
