"""Are two versions of the shipped models equal through the plugin's engine?

    python -m bench.equality (--reference DIR | --commit REV [--commit REV ...])
                             [--out docs/equality.md]

For each shipped model (ada3d_qgis/models/*.onnx) and the file of the same
name in DIR, or as it was at the first of the given git revisions that had
it (e.g. the export an issue was filed against), runs the plugin's
engine (``pipeline.run``, what ``ada3d:pansharpen`` calls) on the embedded
Landsat 8 sample with each, and prints the largest difference of the outputs
in normalised units (divided by the MS band's standard deviation, the scale
the model works in). The sample is written as Float32 so that the output is
not rounded; the ratio-4 model gets the sample's MS averaged over 2 x 2
blocks (60 m against the 15 m PAN).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from osgeo import gdal

from ada3d_qgis.engine.pipeline import RunOptions, run
from ada3d_qgis.engine.session import read_metadata
from bench.common import model_at_commit

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "ada3d_qgis" / "models"
SAMPLE_PAN = REPO / "tests" / "data" / "l8_pan.tif"
SAMPLE_MS = REPO / "tests" / "data" / "l8_ms.tif"
#: The largest difference the issue accepts (normalised units).
TOLERANCE = 1e-4

gdal.UseExceptions()


def float_copy(src: Path, out: Path, block: int = 1) -> Path:
    """``src`` as Float32, optionally averaged over ``block`` x ``block`` pixels."""
    ds = gdal.Open(str(src))
    data = ds.ReadAsArray().astype(np.float64).reshape(ds.RasterCount, ds.RasterYSize, -1)
    if block > 1:
        h, w = data.shape[1] // block * block, data.shape[2] // block * block
        data = data[:, :h, :w].reshape(len(data), h // block, block, w // block, block)
        data = data.mean(axis=(2, 4))
    gt = list(ds.GetGeoTransform())
    gt[1] *= block
    gt[5] *= block
    dst = gdal.GetDriverByName("GTiff").Create(str(out), data.shape[2], data.shape[1],
                                               len(data), gdal.GDT_Float32)
    dst.SetGeoTransform(gt)
    dst.SetProjection(ds.GetProjection())
    for i, band in enumerate(data):
        dst.GetRasterBand(i + 1).WriteArray(band)
        dst.GetRasterBand(i + 1).SetDescription(ds.GetRasterBand(i + 1).GetDescription())
    dst = None
    return out


def fused(model: Path, pan: Path, ms: Path, out: Path) -> np.ndarray:
    run(RunOptions(pan=str(pan), ms=str(ms), output=str(out), model=str(model), device="cpu"))
    return gdal.Open(str(out)).ReadAsArray().astype(np.float64)


def compare(model: Path, reference: Path, work: Path) -> dict:
    ratio = read_metadata(model).ratio
    pan = float_copy(SAMPLE_PAN, work / "pan.tif")
    ms = float_copy(SAMPLE_MS, work / f"ms_r{ratio}.tif", block=ratio // 2)
    scale = gdal.Open(str(ms)).ReadAsArray().astype(np.float64).std(axis=(1, 2))
    new = fused(model, pan, ms, work / "new.tif")
    old = fused(reference, pan, ms, work / "old.tif")
    diff = np.abs(new - old) / scale[:, None, None]
    return {"model": model.name, "ratio": ratio, "shape": "x".join(map(str, new.shape)),
            "max_normalised": float(diff.max()), "mean_normalised": float(diff.mean())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--reference", type=Path,
                        help="folder with the models to compare against, same file names")
    source.add_argument("--commit", action="append",
                        help="git revision whose shipped models to compare against; repeated, "
                        "each model is compared with the first revision that has it")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "equality.md")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        since = {}
        if args.commit:
            args.reference = Path(folder)
            for model in sorted(MODELS.glob("*.onnx")):
                since[model.name] = next((rev for rev in args.commit if model_at_commit(
                    rev, model, args.reference / model.name)), "")
        for model in sorted(MODELS.glob("*.onnx")):
            reference = args.reference / model.name
            if not reference.is_file():
                continue
            with tempfile.TemporaryDirectory() as tmp:
                rows.append({**compare(model, reference, Path(tmp)),
                             "against": since.get(model.name) or str(args.reference)})
            print(rows[-1], flush=True)
    given = (" ".join(f"--commit {rev}" for rev in args.commit) if args.commit
             else f"--reference {args.reference}")
    lines = [
        "# Shipped models against their previous export",
        "",
        f"Made by `python -m bench.equality {given}`: the plugin's "
        "engine (`pipeline.run`, which `ada3d:pansharpen` calls) on the embedded Landsat 8 "
        "sample (Float32; the ratio-4 model gets the MS averaged over 2 x 2 blocks) with "
        "each model file; differences in normalised units (over the MS band's standard "
        f"deviation). The issue accepts at most {TOLERANCE:g}.",
        "",
        "| model | against | ratio | output (bands x rows x cols) | largest difference | "
        "mean difference |",
        "|---|---|---|---|---|---|",
        *(f"| {r['model']} | {r['against']} | {r['ratio']} | {r['shape']} | "
          f"{r['max_normalised']:.2e} | {r['mean_normalised']:.2e} |" for r in rows),
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if rows and all(r["max_normalised"] <= TOLERANCE for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
