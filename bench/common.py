"""What the benchmark entry scripts share: paths, the sample mosaics, the
plugin's CPU session options, random tile inputs, and the per-process
measurement of one tile (time and peak memory above the session's rest).

Entry scripts (``python -m bench.X``) import from here and from the helper
modules (graph_cost, measure, methods, qgis_app, roofline), never from each
other. ``python -m bench.common tile MODEL`` is the child process that
:func:`measure_tile` starts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from osgeo import gdal

REPO = Path(__file__).resolve().parents[1]
SAMPLE_PAN = REPO / "tests" / "data" / "l8_pan.tif"
SAMPLE_MS = REPO / "tests" / "data" / "l8_ms.tif"
DEFAULT_MODEL = REPO / "ada3d_qgis" / "models" / "ada3d_r2_4b_landsat.onnx"
DEFAULT_CHECKPOINT = REPO / "runs" / "r2" / "best.pt"


def plugin_default_model(bands: int, ratio: int) -> Path | None:
    """The shipped model the plugin chooses for ``bands`` bands at ``ratio``, if any."""
    from ada3d_qgis.engine import Ada3DError
    from ada3d_qgis.engine.models import choose_model

    try:
        return choose_model(bands, float(ratio)).path
    except Ada3DError:
        return None


def model_at_commit(revision: str, model: Path, out: Path) -> bool:
    """Write the shipped ``model`` as it was at git ``revision`` to ``out``;
    False if it did not exist there."""
    name = model.resolve().relative_to(REPO).as_posix()
    proc = subprocess.run(["git", "-C", str(REPO), "show", f"{revision}:{name}"],
                          capture_output=True, check=False)
    if proc.returncode != 0:
        return False
    out.write_bytes(proc.stdout)
    return True


def default_ada3d_row(names: list[str]) -> str:
    """Of bench.quality's method names, the default Ada3D model's row: "Ada3D
    (shipped)" or the one labelled default, else the first Ada3D row that is
    not a projection."""
    for name in names:
        if name == "Ada3D (shipped)" or name.endswith(", default)"):
            return name
    return next(m for m in names if m.startswith("Ada3D") and "projection" not in m)


# --------------------------------------------------------------------------- inputs


def mirror_tile(a: np.ndarray, reps: int) -> np.ndarray:
    """(…, h, w) -> (…, reps h, reps w), alternate copies mirrored so that the
    mosaic has no seams."""
    rows = [a if i % 2 == 0 else a[..., ::-1, :] for i in range(reps)]
    col = np.concatenate(rows, axis=-2)
    cols = [col if i % 2 == 0 else col[..., :, ::-1] for i in range(reps)]
    return np.concatenate(cols, axis=-1)


def _write_like(src_path: Path, data: np.ndarray, out: Path) -> Path:
    src = gdal.Open(str(src_path))
    data = data.reshape(-1, *data.shape[-2:])
    ds = gdal.GetDriverByName("GTiff").Create(
        str(out), data.shape[2], data.shape[1], data.shape[0],
        src.GetRasterBand(1).DataType, ["TILED=YES", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER"],
    )
    ds.SetGeoTransform(src.GetGeoTransform())
    ds.SetProjection(src.GetProjection())
    for i, band in enumerate(data):
        ds.GetRasterBand(i + 1).WriteArray(band)
        ds.GetRasterBand(i + 1).SetDescription(src.GetRasterBand(i + 1).GetDescription())
    ds = None
    return out


def mosaic(pan_size: int, folder: Path) -> tuple[Path, Path]:
    """PAN (pan_size^2) and MS (pan_size/2)^2 mosaics of the sample."""
    reps = pan_size // 512
    pan = gdal.Open(str(SAMPLE_PAN)).ReadAsArray()
    ms = gdal.Open(str(SAMPLE_MS)).ReadAsArray()
    return (
        _write_like(SAMPLE_PAN, mirror_tile(pan, reps), folder / f"pan_{pan_size}.tif"),
        _write_like(SAMPLE_MS, mirror_tile(ms, reps), folder / f"ms_{pan_size}.tif"),
    )


def cpu_session_options(threads: int):
    """onnxruntime options as the plugin's sessions have them
    (engine/session.session_options), on ``threads`` intra-op threads."""
    import onnxruntime as ort

    from ada3d_qgis.engine.session import session_options

    so = session_options(ort)
    so.intra_op_num_threads = threads
    return so


def random_tile_feeds(
    meta, tile: int, bands: int | None = None, weight: float = 0.0
) -> dict[str, np.ndarray]:
    """Random normalised inputs of one ``tile`` x ``tile`` PAN tile (a multiple
    of the ratio) for the model described by ``meta``: ``bands`` bands (default
    the model's), a zero context of ``weight`` (0: the tile's own)."""
    rng = np.random.default_rng(0)
    n = tile // meta.ratio
    bands = meta.bands if bands is None else bands
    return {"ms": rng.standard_normal((1, bands, n, n), np.float32),
            "pan": rng.standard_normal((1, 1, n * meta.ratio, n * meta.ratio), np.float32),
            "context": np.zeros((1, meta.context_size_for(bands)), np.float32),
            "context_weight": np.full((1, 1), weight, np.float32)}


# --------------------------------------------------------------------------- one tile


def memory_mib() -> dict[str, int]:
    """This process's resident (VmRSS) and peak (VmHWM) memory in MiB."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) // 1024
    return out


def run_tile(model: str, tile: int, threads: int) -> dict:
    """In this process: open ``model``, run it three times on one tile."""
    import onnxruntime as ort

    from ada3d_qgis.engine.session import read_metadata

    sess = ort.InferenceSession(model, cpu_session_options(threads),
                                providers=["CPUExecutionProvider"])
    feeds = random_tile_feeds(read_metadata(Path(model)), tile)
    resting = memory_mib()["VmRSS"]
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        sess.run(None, feeds)
        seconds.append(time.perf_counter() - start)
    return {"seconds": min(seconds), "peak_above_rest_mib": memory_mib()["VmHWM"] - resting}


def measure_tile(model: Path, tile: int, threads: int) -> dict:
    """:func:`run_tile` in a fresh process, so that its peak memory is its own."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.common", "tile", str(model),
         "--tile", str(tile), "--threads", str(threads)],
        capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def best_of(runs: list[dict]) -> dict:
    """The best time and the largest peak of several :func:`measure_tile` results."""
    return {"seconds": min(r["seconds"] for r in runs),
            "peak_above_rest_mib": max(r["peak_above_rest_mib"] for r in runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description="one tile, timed (a child of measure_tile)")
    parser.add_argument("what", choices=["tile"])
    parser.add_argument("model")
    parser.add_argument("--tile", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()
    print(json.dumps(run_tile(args.model, args.tile, args.threads)))


if __name__ == "__main__":
    main()
