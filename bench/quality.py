"""`make bench-quality`: Ada3D against the classical pansharpening methods.

Validation scenes only (never trained on): the FuseBox Landsat 7 group
P091R083 (scenes 13-18) and the Landsat 8 scene. Every method runs on the
same GeoTIFF files:

- reduced resolution (Wald's protocol, ada3d_qgis.core.degrade.wald_pair):
  MS degraded by the model ratio, PAN by the native ratio 2, scored against
  the original 30 m MS with SAM, ERGAS, Q2n and SCC;
- full resolution: for ratio 2 the original pair (30 m MS, 15 m PAN); for
  ratio 4 the MS degraded by 2 (60 m) with the original 15 m PAN; scored
  without reference by D_lambda, D_s and QNR.

Prints a Markdown table per ratio (means over scenes) and writes it, with the
per-scene numbers as JSON, under docs/.

``--bands N`` scores the first N of B, G, R, NIR, SWIR1, SWIR2 instead (3:
the colour bands; 6: all FuseBox bands, Landsat 8 B2-B7), written to
docs/quality_r{ratio}_{N}b.*. "Ada3D (shipped)" is the model the plugin
chooses for those bands; ``--model`` adds others (a model that is also the
default is labelled so rather than run twice).

``--bands 8`` is the closest to an 8-band sensor (WorldView-2/3: coastal,
blue, green, yellow, red, red edge, NIR1, NIR2) these public data allow: no
8-band scene is among them, so the six real bands get two more between
their neighbours, yellow = (G + R) / 2 and red edge = (R + NIR) / 2, in
wavelength order (B, G, Y, R, RE, NIR, SWIR1, SWIR2). The inserted bands add
no independent information, so this tests that a model runs and stays sound
on eight bands, not how it does on a real 8-band sensor.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal, osr

from ada3d_qgis.core import metrics
from ada3d_qgis.core.degrade import degrade, wald_pair
from bench import methods
from bench.common import default_ada3d_row, plugin_default_model
from bench.qgis_app import start_qgis

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared" / "data").resolve()
VAL_GROUP = "P091R083"
L8_BANDS = ("B2", "B3", "B4", "B5")
#: Landsat 8 OLI bands of the six-band cases: B, G, R, NIR, SWIR1, SWIR2.
L8_BANDS_6 = ("B2", "B3", "B4", "B5", "B6", "B7")

gdal.UseExceptions()


@dataclass
class Case:
    name: str
    ms: np.ndarray  # (L, h, w) float32: B, G, R, NIR (and SWIR1, SWIR2)
    pan: np.ndarray  # (2h, 2w) float32
    data_range: float


#: Where the 8-band proxy inserts its bands (into the six of B, G, R, NIR,
#: SWIR1, SWIR2): (position, the two real bands it averages).
PROXY_8_INSERTS = ((2, (1, 2)), (4, (2, 3)))


def proxy_8(ms: np.ndarray) -> np.ndarray:
    """The six bands B, G, R, NIR, SWIR1, SWIR2 -> the eight of the proxy."""
    out = list(ms)
    for position, (a, b) in PROXY_8_INSERTS:
        out.insert(position, (ms[a] + ms[b]) / 2)
    return np.stack(out).astype(ms.dtype)


def load_cases(shared: Path, bands: int = 4) -> list[Case]:
    if bands == 8:
        return [Case(c.name, proxy_8(c.ms), c.pan, c.data_range) for c in load_cases(shared, 6)]
    from model_export.data import (
        FUSEBOX_ALL_BANDS,
        FUSEBOX_DEFAULT_BANDS,
        fusebox_specs,
        load_fusebox_pair,
        load_geotiff_pair,
    )

    l7_bands = FUSEBOX_ALL_BANDS[:bands] if bands != 4 else FUSEBOX_DEFAULT_BANDS
    cases = []
    for spec in fusebox_specs(shared / "landsat7_fusebox"):
        if spec.group == VAL_GROUP:
            ms, pan = load_fusebox_pair(spec.ms, spec.pan, l7_bands)
            cases.append(Case(f"L7 {spec.name}", ms, pan, 255.0))
    l8 = shared / "landsat8"
    with tempfile.TemporaryDirectory() as tmp:
        vrt = str(Path(tmp) / "ms.vrt")
        l8_bands = L8_BANDS_6[:bands] if bands != 4 else L8_BANDS
        gdal.BuildVRT(vrt, [str(l8 / f"l8_{b}.tif") for b in l8_bands], separate=True)
        ms, pan, _, _ = load_geotiff_pair(vrt, l8 / "l8_B8.tif", 2)
    cases.append(Case("L8 LC80200392015216", ms, pan, 65535.0))
    return cases


def write_tif(path: Path, image: np.ndarray, pixel: float) -> Path:
    """Float32 GeoTIFF on a north-up UTM grid with a fixed origin, so that
    every MS/PAN pair written here shares its top-left corner."""
    image = image.reshape(-1, *image.shape[-2:])
    ds = gdal.GetDriverByName("GTiff").Create(
        str(path), image.shape[2], image.shape[1], image.shape[0], gdal.GDT_Float32
    )
    ds.SetGeoTransform((500000.0, pixel, 0.0, 4000000.0, 0.0, -pixel))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32616)
    ds.SetProjection(srs.ExportToWkt())
    for i, band in enumerate(image):
        ds.GetRasterBand(i + 1).WriteArray(band)
    ds = None
    return path


def read(path: Path) -> np.ndarray:
    arr = gdal.Open(str(path)).ReadAsArray().astype(np.float64)
    return arr.reshape(-1, *arr.shape[-2:])


def run_methods(
    ms: np.ndarray, pan: np.ndarray, ratio: int, all_methods: dict, work: Path
) -> dict[str, tuple[np.ndarray, float]]:
    """Fused image and run time (s) of every method on one MS/PAN pair."""
    ms_path = write_tif(work / "ms.tif", ms, 15.0 * ratio)
    pan_path = write_tif(work / "pan.tif", pan, 15.0)
    results = {}
    for name, method in all_methods.items():
        out = work / f"fused_{len(results)}.tif"
        start = time.perf_counter()
        method(ms_path, pan_path, out)
        elapsed = time.perf_counter() - start
        if not out.exists():  # gdal:pansharp reports a failing command only in its log
            raise RuntimeError(f"{name} wrote no output")
        fused = read(out)[:, : pan.shape[-2], : pan.shape[-1]]
        results[name] = (fused, elapsed)
    return results


def evaluate(case: Case, ratio: int, all_methods: dict, work: Path) -> dict[str, dict]:
    scores: dict[str, dict] = {name: {} for name in all_methods}
    # Reduced resolution: the original MS is the reference.
    ms_lr, pan_lr, target = wald_pair(case.ms, case.pan, native_ratio=2, model_ratio=ratio)
    for name, (fused, secs) in run_methods(ms_lr, pan_lr, ratio, all_methods, work).items():
        scores[name].update(metrics.reduced_resolution(target, fused, ratio, case.data_range))
        scores[name]["seconds_rr"] = secs
    # Full resolution: no reference; the ratio-4 pair is a 60 m MS with the 15 m PAN.
    ms_fr = case.ms if ratio == 2 else degrade(case.ms, ratio // 2, 0.3)
    pan_fr = case.pan[: ms_fr.shape[1] * ratio, : ms_fr.shape[2] * ratio]
    for name, (fused, _) in run_methods(ms_fr, pan_fr, ratio, all_methods, work).items():
        scores[name].update(metrics.full_resolution(fused, ms_fr, pan_fr, ratio))
    return scores


COLUMNS = ("SAM", "ERGAS", "Q2n", "SCC", "D_lambda", "D_s", "QNR")
BETTER = {"SAM": "lower", "ERGAS": "lower", "Q2n": "higher", "SCC": "higher",
          "D_lambda": "lower", "D_s": "lower", "QNR": "higher"}


def table(per_case: dict[str, dict[str, dict]]) -> tuple[str, dict[str, dict]]:
    method_names = list(next(iter(per_case.values())))
    means = {
        m: {c: float(np.mean([per_case[k][m][c] for k in per_case])) for c in COLUMNS}
        for m in method_names
    }
    lines = ["| Method | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for m in method_names:
        lines.append(f"| {m} | " + " | ".join(f"{means[m][c]:.4f}" for c in COLUMNS) + " |")
    return "\n".join(lines), means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratio", type=int, action="append", choices=(2, 4))
    parser.add_argument("--model", type=Path, action="append", default=[],
                        help="extra Ada3D .onnx to score (default: the shipped model per ratio)")
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--projection", action="store_true",
                        help="also score the default Ada3D model followed by methods.projected")
    parser.add_argument("--bands", type=int, choices=(3, 4, 5, 6, 8), default=4,
                        help="the first N of B, G, R, NIR, SWIR1, SWIR2 (4: the shipped models'); "
                             "8: the 8-band proxy (see above)")
    args = parser.parse_args()
    for ratio in args.ratio or (2, 4):
        if plugin_default_model(args.bands, ratio) is None and not args.model:
            parser.error(f"no shipped model takes {args.bands} bands at ratio {ratio}: "
                         "give a band-agnostic --model")
    app = start_qgis()  # noqa: F841 - keep QGIS alive for processing.run
    cases = load_cases(args.shared, args.bands)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.bands == 4 else f"_{args.bands}b"
    for ratio in args.ratio or (2, 4):
        all_methods = dict(methods.CLASSICAL)
        default = plugin_default_model(args.bands, ratio)
        if default is not None and default.resolve() not in [m.resolve() for m in args.model]:
            all_methods["Ada3D (shipped)"] = methods.ada3d()
        for model in args.model:
            chosen = default is not None and model.resolve() == default.resolve()
            label = ", default" if chosen else ""
            all_methods[f"Ada3D ({model.stem}{label})"] = methods.ada3d(model)
        # Ours: the default model (what the plugin runs on these bands), else the first given.
        ours_name = default_ada3d_row(list(all_methods))
        if args.projection:
            all_methods[f"{ours_name} + projection"] = methods.projected(all_methods[ours_name])
        per_case = {}
        for case in cases:
            with tempfile.TemporaryDirectory() as tmp:
                per_case[case.name] = evaluate(case, ratio, all_methods, Path(tmp))
            print(f"ratio {ratio}: {case.name} done", flush=True)
        l7 = {k: v for k, v in per_case.items() if k.startswith("L7")}
        l8 = {k: v for k, v in per_case.items() if k.startswith("L8")}
        text_l7, means = table(l7)
        text_l8, _ = table(l8)
        classical = [m for m in means if not m.startswith("Ada3D")]
        best_name = min(classical, key=lambda m: means[m]["ERGAS"])
        best = means[best_name]["ERGAS"]
        ours = means[ours_name]["ERGAS"]
        summary = (
            f"Ratio {ratio}, {args.bands} bands. Reduced resolution: SAM (degrees), ERGAS, "
            f"Q2n (32-px blocks), SCC; full resolution: D_lambda, D_s, QNR.\n\n"
            f"On the Landsat 7 validation group {VAL_GROUP} ({len(l7)} scenes), {ours_name}'s "
            f"ERGAS is {ours:.4f} against {best:.4f} for the best classical method ({best_name}): "
            f"{100 * (best - ours) / best:.1f} % lower.\n"
        )
        text = (
            f"### Landsat 7, validation group {VAL_GROUP} (means over {len(l7)} scenes)\n\n"
            f"{text_l7}\n\n### Landsat 8 scene (never trained on)\n\n{text_l8}\n"
        )
        print(f"\n{summary}\n{text}", flush=True)
        title = f"ratio {ratio}" + (f", {args.bands} bands" if suffix else "")
        (args.out / f"quality_r{ratio}{suffix}.md").write_text(
            f"# Quality, {title}\n\nMade by `make bench-quality` (bench/quality.py).\n\n"
            f"{summary}\n{text}"
        )
        (args.out / f"quality_r{ratio}{suffix}.json").write_text(json.dumps(per_case, indent=1))


if __name__ == "__main__":
    main()
