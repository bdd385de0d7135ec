"""`make gpu-check`: does CUDA really run Ada3D here, as fast and as exactly
as it should? Needs no QGIS (engine, GDAL and onnxruntime only).

For each shipped model, float32 and its float16 copy (model_export.precision,
what ``python -m model_export.export --fp16`` writes):

1. open it the way the plugin does on DEVICE=CUDA (``open_session``);
2. prove CUDA runs it: ``session.get_providers()`` and onnxruntime's profiler,
   which names the execution provider of every node it ran;
3. compare one real tile of the Landsat 8 sample with the CPU float32 output
   (float32: at most 1e-4; float16: reported);
4. run the engine end to end on a SIZE x SIZE virtual mosaic of the sample
   (the MS degraded by 2 more for the ratio-4 model) and report the time,
   tiles, tiles per model run and the GPU's peak memory (NVML).

``--dry-run`` does all of it on the CPU (no GPU needed), by default on a
512 x 512 mosaic, to check the script itself.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from osgeo import gdal

from ada3d_qgis.engine import Ada3DError
from ada3d_qgis.engine import session as ses
from ada3d_qgis.engine.pipeline import RunOptions, run
from bench.memory import tiled_vrt

REPO = Path(__file__).resolve().parents[1]
SAMPLE_PAN = REPO / "tests" / "data" / "l8_pan.tif"
SAMPLE_MS = REPO / "tests" / "data" / "l8_ms.tif"
FLOAT32_TOLERANCE = 1e-4

gdal.UseExceptions()


class Quiet:
    """Engine feedback that keeps the log and never cancels."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def setProgress(self, progress: float) -> None:
        pass

    def pushInfo(self, info: str) -> None:
        self.lines.append(info)

    def pushWarning(self, info: str) -> None:
        self.lines.append(info)

    def isCanceled(self) -> bool:
        return False


# --------------------------------------------------------------------- GPU memory


class GpuMemory:
    """Peak used memory of GPU 0 (NVML), sampled every 0.1 s in a thread."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._nvml = self._handle = None
        for name in ("libnvidia-ml.so.1", "nvml.dll"):
            try:
                self._nvml = ctypes.CDLL(name)
                break
            except OSError:
                continue
        if self._nvml is not None and self._nvml.nvmlInit_v2() == 0:
            handle = ctypes.c_void_p()
            if self._nvml.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(handle)) == 0:
                self._handle = handle

    @property
    def available(self) -> bool:
        return self._handle is not None

    def used(self) -> int:
        info = (ctypes.c_ulonglong * 3)()  # total, free, used
        if self._nvml.nvmlDeviceGetMemoryInfo(self._handle, ctypes.byref(info)) != 0:
            return 0
        return int(info[2])

    def __enter__(self) -> GpuMemory:
        if self.available:
            self.peak = self.used()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, self.used())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.available:
            self._thread.join()


# --------------------------------------------------------------------- steps


def float16_copy(model: Path, folder: Path) -> Path:
    """The float16 model of ``model``, written as ``export --fp16`` does."""
    from model_export.precision import write_float16

    path, worst = write_float16(model, folder / f"{model.stem}_fp16.onnx")
    print(f"  float16 copy {path.name}: largest difference on CPU at export {worst:.3g}")
    return path


def real_tile(ratio: int) -> tuple[np.ndarray, np.ndarray]:
    """A normalised 256 x 256 PAN window of the sample and its MS window."""
    pan = gdal.Open(str(SAMPLE_PAN)).ReadAsArray(128, 128, 256, 256).astype(np.float32)
    ms = gdal.Open(str(SAMPLE_MS)).ReadAsArray(64, 64, 128, 128).astype(np.float32)
    ms = ms[:, :: ratio // 2, :: ratio // 2]
    ms = (ms - ms.mean(axis=(1, 2), keepdims=True)) / ms.std(axis=(1, 2), keepdims=True)
    return np.ascontiguousarray(ms), (pan - pan.mean()) / pan.std()


def provider_share(path: Path, device: str, ms: np.ndarray, pan: np.ndarray) -> dict[str, float]:
    """Share of node time per execution provider in one profiled run."""
    ort = ses.import_onnxruntime()
    so = ses.session_options(ort)
    so.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        so.profile_file_prefix = str(Path(tmp) / "profile")
        limit = ses.gpu_mem_limit()[0] if device == "cuda" else None
        sess = ort.InferenceSession(str(path), so, providers=ses.providers_for(device, limit))
        model = ses.ModelSession(path, sess, ses.metadata_of(sess, path), device)
        model.run(ms, pan)
        events = json.loads(Path(sess.end_profiling()).read_text())
    time_by: dict[str, float] = {}
    for event in events:
        provider = event.get("args", {}).get("provider")
        if event.get("cat") == "Node" and provider:
            time_by[provider] = time_by.get(provider, 0.0) + float(event.get("dur", 0))
    total = sum(time_by.values()) or 1.0
    return {k: v / total for k, v in sorted(time_by.items())}


def mosaic(folder: Path, size: int, ratio: int) -> tuple[Path, Path]:
    """PAN of ``size`` x ``size`` px repeating the sample, and its MS at ``ratio``."""
    reps = size // gdal.Open(str(SAMPLE_PAN)).RasterXSize
    pan = tiled_vrt(SAMPLE_PAN, folder / f"pan_{size}.vrt", reps)
    ms = tiled_vrt(SAMPLE_MS, folder / f"ms_{size}.vrt", reps)
    if ratio == 4:
        width = gdal.Open(str(ms)).RasterXSize // 2
        gdal.Translate(str(folder / f"ms4_{size}.vrt"), str(ms), format="VRT", width=width,
                       height=width, resampleAlg="average")
        ms = folder / f"ms4_{size}.vrt"
    return pan, ms


def check_model(path: Path, device: str, reference: np.ndarray | None, size: int,
                folder: Path, precision: str) -> dict:
    print(f"{path.name} ({precision}) on {device.upper()}:")
    model = ses.open_session(path, device)
    providers = model.session.get_providers()
    print(f"  session providers: {providers}; {model.device_note}")
    if device == "cuda" and providers[0] != ses.CUDA_EP:
        raise Ada3DError(f"CUDA did not take the session: {providers}")
    ms, pan = real_tile(model.metadata.ratio)
    share = provider_share(path, device, ms, pan)
    print("  profiled node time by provider: "
          + ", ".join(f"{k} {v:.1%}" for k, v in share.items()))
    fused, _ = model.run(ms, pan)
    worst = None if reference is None else float(np.abs(fused - reference).max())
    if worst is not None:
        print(f"  max |{precision} {device} - float32 CPU| on a real 256 px tile: {worst:.3g}")
    tiles_per_run = model.tiles_per_run(model.metadata.tile_size, model.metadata.tile_size)
    del model
    pan_vrt, ms_vrt = mosaic(folder, size, ratio_of(path))
    out = folder / f"{path.stem}_{size}.tif"
    with GpuMemory() as gpu:
        start = time.perf_counter()
        result = run(RunOptions(pan=str(pan_vrt), ms=str(ms_vrt), output=str(out),
                                model=str(path), device=device), Quiet())
        seconds = time.perf_counter() - start
    out.unlink(missing_ok=True)
    memory = (f"GPU peak {gpu.peak / 2**20:.0f} MiB used" if gpu.available
              else "GPU memory n/a (no NVML)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  engine end to end on {size}x{size} PAN: {seconds:.1f} s, {result.tiles} tiles, "
          f"{tiles_per_run} per model run, provider {result.provider}; {memory}; "
          f"process peak RSS {rss:.0f} MiB")
    return {"model": path.name, "precision": precision, "device": device,
            "providers": providers, "profile": share, "max_diff": worst, "seconds": seconds,
            "tiles": result.tiles, "tiles_per_run": tiles_per_run, "provider": result.provider,
            "gpu_peak_mib": gpu.peak / 2**20 if gpu.available else None}


def ratio_of(path: Path) -> int:
    return ses.read_metadata(path).ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="everything on the CPU")
    parser.add_argument("--size", type=int, help="PAN mosaic edge, a multiple of 512 "
                        "(default 4096; 512 with --dry-run)")
    parser.add_argument("--models", nargs="*", type=Path,
                        default=sorted((REPO / "ada3d_qgis" / "models").glob("*.onnx")))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    size = args.size or (512 if args.dry_run else 4096)
    if size % 512:
        parser.error("--size must be a multiple of 512 (the sample's PAN edge)")
    device = "cpu" if args.dry_run else "cuda"
    ort = ses.import_onnxruntime()
    print(f"onnxruntime {ort.__version__}, providers {ort.get_available_providers()}; "
          f"{'DRY RUN on the CPU, no GPU used' if args.dry_run else 'CUDA'}")
    if not args.dry_run:
        problem = ses.cuda_problem()
        if problem:
            print(f"gpu-check: CUDA cannot run here: {problem}", file=sys.stderr)
            return 1
    start = time.perf_counter()
    results = []
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for path in args.models:
            ms, pan = real_tile(ratio_of(path))
            reference, _ = ses.open_session(path, "cpu").run(ms, pan)
            row = check_model(path, device, reference, size, folder, "float32")
            failed |= row["max_diff"] > FLOAT32_TOLERANCE
            results.append(row)
            results.append(check_model(float16_copy(path, folder), device, reference, size,
                                       folder, "float16"))
    total = time.perf_counter() - start
    print(f"gpu-check: {len(results)} sessions in {total:.0f} s; float32 parity "
          f"{'FAILED' if failed else 'within'} {FLOAT32_TOLERANCE:g}")
    if args.json:
        args.json.write_text(json.dumps({"dry_run": args.dry_run, "size": size,
                                         "seconds": total, "results": results}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
