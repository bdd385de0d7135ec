"""Tiny Ada3D models and small crops of the real sample, used by the
fixtures of tests/conftest.py and by the engine and algorithm tests.

The models are exported from checkpoints of a small Ada3DConfig with
``model_export.export.export_checkpoint`` (tests may import torch; the plugin
never does). The TorchScript exporter is used because it takes seconds where
the dynamo exporter takes most of a minute; the graph interface (inputs,
outputs, metadata) is the same. Files are cached in pytest's base temporary
folder so that one session exports each model once.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

#: Small enough to run in a fraction of a second per tile.
TINY = dict(
    bands=4,
    ratio=2,
    channels=4,
    spatial_channels=4,
    layers=1,
    spectral_hidden=2,
    spatial_hidden=2,
    context_hidden=2,
    res_channels=2,
)
BAND_NAMES = ["B", "G", "R", "NIR"]


def export_tiny(folder: Path, name: str, randomise: bool, **overrides) -> Path:
    """Export (once) a tiny model: untrained (``randomise`` False: it returns the
    bilinear interpolation of the MS exactly) or with random weights in its
    zero-initialised head (a generic network whose output depends on the context)."""
    def build(model_mod, torch):
        cfg = model_mod.Ada3DConfig(**{**TINY, **overrides})
        torch.manual_seed(0)
        model = model_mod.Ada3D(cfg)
        if randomise:
            model_mod.randomise_zero_init(model, seed=1, std=0.3)
        return model, (BAND_NAMES * cfg.bands)[: cfg.bands], {}

    # The TorchScript exporter, without the parity check (fast).
    return _export_fixture(folder, name, build, check=False, dynamo=False)


def _export_fixture(folder: Path, name: str, build, **export_kw) -> Path:
    """Export (once) ``folder/name.onnx`` from the model, band names and extra
    training facts ``build(model_module, torch)`` returns."""
    out = folder / f"{name}.onnx"
    if out.exists():
        return out
    torch = pytest.importorskip("torch")
    model_mod = pytest.importorskip("model_export.model")
    export_mod = pytest.importorskip("model_export.export")
    folder.mkdir(parents=True, exist_ok=True)
    model, band_names, training = build(model_mod, torch)
    ckpt = folder / f"{name}.pt"
    torch.save(
        {
            "config": asdict(model.config),
            "model": model.state_dict(),
            "band_names": band_names,
            "training": {"data": "none (test fixture)", **training},
            "validation": {},
        },
        ckpt,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' deprecation notes
        export_mod.export_checkpoint(ckpt, out, name=name, **export_kw)
    return out


#: The band-agnostic tiny model's trained bands and the counts it declares.
ANY_BAND_NAMES = ["B", "G", "R", "NIR", "SWIR1", "SWIR2"]
ANY_BAND_RANGE = (3, 6)


def export_agnostic(folder: Path, name: str = "tiny_any") -> Path:
    """Export (once) a tiny band-agnostic model (issue 18) with random weights
    in its zero-initialised layers, through the dynamo exporter with its
    parity check at 3 and 6 bands (the TorchScript exporter cannot make the
    band count dynamic)."""
    def build(model_mod, torch):
        cfg = model_mod.Ada3DConfig(
            **{**TINY, "bands": 6, "band_agnostic": True, "refine_hidden": 2}
        )
        torch.manual_seed(0)
        model = model_mod.randomise_zero_init(model_mod.Ada3D(cfg), seed=1, std=0.1)
        data = {"random_bands": list(ANY_BAND_RANGE)}
        return model, ANY_BAND_NAMES, {"train_config": {"data": data}}

    return _export_fixture(folder, name, build)


def crop(src: Path, dst: Path, x: int, y: int, width: int, height: int, **translate) -> Path:
    """A window of a real raster, keeping its georeferencing (pixel-exact)."""
    ds = gdal.Translate(str(dst), str(src), srcWin=[x, y, width, height], **translate)
    assert ds is not None, gdal.GetLastErrorMsg()
    ds = None
    return dst


def shifted_copy(src: Path, dst: Path, dx: float) -> Path:
    """A copy of ``src`` moved ``dx`` CRS units east (a raster elsewhere)."""
    ds = gdal.Translate(str(dst), str(src))
    gt = list(ds.GetGeoTransform())
    gt[0] += dx
    ds.SetGeoTransform(gt)
    ds = None
    return dst


def small_pair(folder: Path, sample_pan: Path, sample_ms: Path, ms_size: int = 49):
    """(pan, ms) crops from the top-left of the sample, with its real half-PAN-pixel
    offset: ``ms_size`` MS pixels and ``2 ms_size`` PAN pixels; the common area is
    then ``2 ms_size - 2`` PAN pixels wide."""
    folder.mkdir(parents=True, exist_ok=True)
    pan = crop(sample_pan, folder / f"pan_{ms_size}.tif", 0, 0, 2 * ms_size, 2 * ms_size)
    ms = crop(sample_ms, folder / f"ms_{ms_size}.tif", 0, 0, ms_size, ms_size)
    return pan, ms


def bilinear_up(ms, ratio: int):
    """Bilinear interpolation of (L, h, w) by ``ratio`` as an untrained model returns
    it: output pixel i samples input coordinate (i + 0.5) / r - 0.5 (pixel centres,
    "align_corners=False"), the edge pixel repeated beyond the border."""
    import numpy as np

    def axis_weights(n):
        pos = (np.arange(n * ratio) + 0.5) / ratio - 0.5
        lo = np.floor(pos).astype(int)
        frac = pos - lo
        return np.clip(lo, 0, n - 1), np.clip(lo + 1, 0, n - 1), frac

    r0, r1, fr = axis_weights(ms.shape[1])
    c0, c1, fc = axis_weights(ms.shape[2])
    ms = np.asarray(ms, np.float64)
    rows = ms[:, r0] * (1 - fr)[None, :, None] + ms[:, r1] * fr[None, :, None]
    return rows[:, :, c0] * (1 - fc) + rows[:, :, c1] * fc


def read_array(path) -> np.ndarray:
    """A whole raster as float64 (bands, rows, cols) or (rows, cols)."""
    ds = gdal.Open(str(path))
    arr = ds.ReadAsArray().astype(np.float64)
    ds = None
    return arr


def read_geo(path) -> tuple[tuple, str]:
    """(geotransform, CRS WKT) of a raster."""
    ds = gdal.Open(str(path))
    out = ds.GetGeoTransform(), ds.GetProjection()
    ds = None
    return out


def warp_window(path, x0, y0, pixel, width, height=None, method="cubic") -> np.ndarray:
    """``path`` resampled onto a north-up window (top-left x0, y0; square
    ``pixel``; ``width`` x ``height``) as float64 (bands, rows, cols), NaN
    outside it."""
    height = width if height is None else height
    ds = gdal.Warp(
        "", str(path), format="MEM", outputBounds=(x0, y0 - height * pixel, x0 + width * pixel, y0),
        width=width, height=height, resampleAlg=method, outputType=gdal.GDT_Float32,
        dstNodata="nan",
    )
    arr = ds.ReadAsArray().astype(np.float64)
    ds = None
    return arr.reshape(-1, height, width)
