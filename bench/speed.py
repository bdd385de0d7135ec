"""`make bench-speed`: how fast and how lean Ada3D inference is, beside the
classical methods and the machine's own matrix-multiply peak.

On mirrored mosaics of the embedded Landsat 8 sample (real imagery) at PAN
sizes 512^2 ... 4096^2, in one run:

- ``ada3d:pansharpen`` end to end through QGIS Processing, each run in its own
  process: wall time, PAN megapixels per second, peak RSS;
- ``gdal:pansharp`` and OTB ``bayes`` (otbcli_BundleToPerfectSensor) on the
  same files, the same way;
- the model alone on the tiles the plugin feeds it: onnxruntime against
  PyTorch eager (same weights, same tiles), as a speed-up ratio;
- the model's multiply-adds per PAN pixel, counted from the ONNX graph, the
  multiply-adds per second achieved, and that as a share of a dense float32
  matrix multiply measured in the same run on the same cores.

Writes docs/speed.md, docs/speed.json and docs/speed.png.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from osgeo import gdal

from ada3d_qgis.engine.session import cpu_layout
from bench import graph_cost, roofline
from bench.common import (
    DEFAULT_CHECKPOINT,
    DEFAULT_MODEL,
    REPO,
    SAMPLE_MS,
    SAMPLE_PAN,
    cpu_session_options,
    mirror_tile,
    mosaic,
    plugin_default_model,
    random_tile_feeds,
)
from bench.measure import measure

gdal.UseExceptions()


# --------------------------------------------------------------------------- measurements


def matmul_peak(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """Multiply-adds per second of a dense float32 matrix multiply (best of
    ``repeats``), with torch on ``threads`` threads: the practical peak."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.rand(n, n), torch.rand(n, n)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return n**3 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def end_to_end(alg: str, params: dict[str, str]) -> dict:
    cmd = [sys.executable, "-m", "bench.run_algorithm", alg]
    cmd += [f"{k}={v}" for k, v in params.items()]
    m = measure(cmd, env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    return {"seconds": m.seconds, "peak_rss_mib": m.peak_rss_mib,
            "algorithm_seconds": algorithm_seconds(m.output)}


def algorithm_seconds(output: str) -> float:
    """The time of ``processing.run`` alone, from bench.run_algorithm's RESULT line."""
    for line in output.splitlines():
        if line.startswith("RESULT "):
            return float(json.loads(line[len("RESULT "):])["seconds"])
    raise RuntimeError(f"no RESULT line in the output:\n{output[-2000:]}")


def otb_bayes(pan: Path, ms: Path, out: Path) -> dict:
    m = measure(["otbcli_BundleToPerfectSensor", "-inp", str(pan), "-inxs", str(ms),
                 "-out", str(out), "uint16", "-method", "bayes"])
    return {"seconds": m.seconds, "peak_rss_mib": m.peak_rss_mib}


def model_only(model: Path, checkpoint: Path, tile: int, tiles: int, threads: int) -> dict:
    """onnxruntime vs PyTorch eager on the same normalised tiles (PAN tile^2)."""
    import onnxruntime as ort
    import torch

    from model_export.model import Ada3D, Ada3DConfig

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = Ada3DConfig.from_dict(ckpt["config"])
    net = Ada3D(cfg).eval()
    net.load_state_dict(ckpt["model"])
    rng = np.random.default_rng(0)
    pan = gdal.Open(str(SAMPLE_PAN)).ReadAsArray().astype(np.float32)
    ms = gdal.Open(str(SAMPLE_MS)).ReadAsArray().astype(np.float32)
    pan = (pan - pan.mean()) / pan.std()
    ms = (ms - ms.mean(axis=(1, 2), keepdims=True)) / ms.std(axis=(1, 2), keepdims=True)
    pan, ms = mirror_tile(pan, 2), mirror_tile(ms, 2)
    r, t = cfg.ratio, tile // cfg.ratio
    batches = []
    for _ in range(tiles):
        y, x = rng.integers(0, ms.shape[1] - t), rng.integers(0, ms.shape[2] - t)
        batches.append((ms[None, :, y : y + t, x : x + t].copy(),
                        pan[None, None, r * y : r * (y + t), r * x : r * (x + t)].copy()))
    ctx = np.zeros((1, cfg.context_size), np.float32)
    w0 = np.zeros((1, 1), np.float32)

    sess = ort.InferenceSession(str(model), cpu_session_options(threads),
                                providers=["CPUExecutionProvider"])
    feeds = [{"ms": a, "pan": b, "context": ctx, "context_weight": w0} for a, b in batches]
    sess.run(None, feeds[0])
    ort_s = min(_timed(lambda: [sess.run(None, f) for f in feeds]) for _ in range(2))

    torch.set_num_threads(threads)
    with torch.inference_mode():
        tb = [(torch.from_numpy(a), torch.from_numpy(b)) for a, b in batches]
        net(*tb[0])
        torch_s = min(_timed(lambda: [net(a, b) for a, b in tb]) for _ in range(2))
    return {"tile": tile, "tiles": tiles, "onnxruntime_s": ort_s, "torch_s": torch_s,
            "speedup": torch_s / ort_s, "parameters": sum(p.numel() for p in net.parameters())}


#: onnxruntime op types grouped by what limits them on a CPU.
OP_GROUPS = {
    "dense (Conv, MatMul, Gemm)": ("Conv", "FusedConv", "MatMul", "FusedMatMul", "Gemm",
                                   "FusedGemm", "Einsum"),
    "layout (NCHWc reorders, Transpose)": ("ReorderInput", "ReorderOutput", "Transpose"),
}


def op_profile(model: Path, tile: int, threads: int) -> dict[str, float]:
    """Share of one tile's kernel time per op group (onnxruntime's profiler),
    on random normalised inputs of the tile size (the time does not depend on
    the values)."""
    import onnxruntime as ort

    from ada3d_qgis.engine.session import read_metadata

    so = cpu_session_options(threads)
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(tempfile.gettempdir()) / "ada3d_profile")
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    feeds = random_tile_feeds(read_metadata(model), tile)
    sess.run(None, feeds)
    sess.run(None, feeds)
    trace = Path(sess.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    second_run = kernels[len(kernels) // 2:]
    per_op: dict[str, float] = {}
    for e in second_run:
        per_op[e["args"]["op_name"]] = per_op.get(e["args"]["op_name"], 0.0) + e["dur"]
    total = sum(per_op.values())
    shares = {group: sum(per_op.get(op, 0.0) for op in ops) / total
              for group, ops in OP_GROUPS.items()}
    grouped = {op for ops in OP_GROUPS.values() for op in ops}
    shares["elementwise and indexing (Mul, Add, Gather, Slice, ReduceSum, ...)"] = (
        sum(v for op, v in per_op.items() if op not in grouped) / total)
    shares["top ops"] = {op: round(v / total, 4)
                         for op, v in sorted(per_op.items(), key=lambda kv: -kv[1])[:8]}
    return shares


def median_row(method: str, size: int, results: list[dict]) -> dict:
    """The table row of ``method`` at ``size`` from its repeated runs: the run
    of median wall time, with the spread of all of them."""
    ordered = sorted(results, key=lambda r: r["seconds"])
    middle = ordered[(len(ordered) - 1) // 2]
    return {"method": method, "pan_size": size, "pan_pixels": size * size, **middle,
            "pan_mpix_per_s": size * size / 1e6 / middle["seconds"],
            "runs_seconds": [r["seconds"] for r in results]}


def scaling(rows: list[dict], method: str, small: int, large: int) -> dict | None:
    """Time per pixel and peak RSS of ``large`` relative to ``small`` (PAN sizes)."""
    by_size = {r["pan_size"]: r for r in rows if r["method"] == method}
    if small not in by_size or large not in by_size:
        return None
    a, b = by_size[small], by_size[large]
    per_pixel = [r["seconds"] / r["pan_pixels"] for r in (a, b)]
    out = {"from": small, "to": large, "time_per_pixel_ratio": per_pixel[1] / per_pixel[0],
           "peak_rss_ratio": b["peak_rss_mib"] / a["peak_rss_mib"]}
    if "algorithm_seconds" in a and "algorithm_seconds" in b:
        own = [r["algorithm_seconds"] / r["pan_pixels"] for r in (a, b)]
        out["algorithm_time_per_pixel_ratio"] = own[1] / own[0]
    return out


ADA3D = "Ada3D (ada3d:pansharpen)"
OTB = "OTB bayes"


def run_methods(pan: Path, ms: Path, size: int, work: Path, model: Path,
                default: Path | None = None):
    """(method, measurement) of each method on one mosaic, one after the other;
    ``default``: the model the plugin chooses for these bands, when not ``model``."""
    yield ADA3D, end_to_end("ada3d:pansharpen", {
        "PANCHROMATIC": pan, "SPECTRAL": ms, "MODEL": model, "DEVICE": "2",
        "OUTPUT": work / f"ada3d_{size}.tif"})
    if default is not None:
        yield f"Ada3D, default model ({default.stem})", end_to_end("ada3d:pansharpen", {
            "PANCHROMATIC": pan, "SPECTRAL": ms, "DEVICE": "2",
            "OUTPUT": work / f"ada3d_default_{size}.tif"})
    yield "gdal:pansharp", end_to_end("gdal:pansharp", {
        "SPECTRAL": ms, "PANCHROMATIC": pan, "RESAMPLING": "2",
        "OUTPUT": work / f"gdal_{size}.tif"})
    yield OTB, otb_bayes(pan, ms, work / f"otb_{size}.tif")


# --------------------------------------------------------------------------- report


def plot(rows: list[dict], out: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for method in sorted({r["method"] for r in rows}):
        pts = sorted((r["pan_pixels"], r["seconds"], r["peak_rss_mib"])
                     for r in rows if r["method"] == method)
        px = [p[0] / 1e6 for p in pts]
        ax1.plot(px, [p[1] for p in pts], "o-", label=method)
        ax2.plot(px, [p[2] for p in pts], "o-", label=method)
    ax1.set(xlabel="PAN megapixels", ylabel="wall time (s)", xscale="log", yscale="log")
    ax2.set(xlabel="PAN megapixels", ylabel="peak RSS (MiB)", xscale="log")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--model-tiles", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3,
                        help="end-to-end runs of every method per size (the median is kept)")
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument("--from-json", type=Path,
                        help="only rewrite speed.md and the plot from a speed.json")
    args = parser.parse_args()
    if args.from_json:
        write_report(json.loads(args.from_json.read_text()), args.out)
        return

    meta = _metadata(args.model)
    peak = matmul_peak(args.threads)
    print(f"float32 matrix multiply: {peak / 1e9:.1f} GMAC/s on {args.threads} threads",
          flush=True)
    ratio = meta.ratio
    cost = graph_cost.count(args.model, {
        "ms": (1, meta.bands, 64, 64), "pan": (1, 1, 64 * ratio, 64 * ratio),
        "context": (1, meta.context_size), "context_weight": (1, 1)})
    macs_per_px = cost["total"] / (64 * ratio) ** 2
    print(f"model: {args.model.name}, {macs_per_px / 1e3:.1f} k multiply-adds per PAN pixel "
          f"(graph count: {cost})", flush=True)
    tile = meta.tile_size  # the window the plugin runs (its overlap included)
    mo = model_only(args.model, args.checkpoint, tile, args.model_tiles, args.threads)
    mo["macs_per_s"] = macs_per_px * tile**2 * mo["tiles"] / mo["onnxruntime_s"]
    mo["share_of_peak"] = mo["macs_per_s"] / peak
    print(f"model only, {mo['tiles']} tiles of {tile}^2 PAN px: onnxruntime "
          f"{mo['onnxruntime_s']:.2f} s, PyTorch eager {mo['torch_s']:.2f} s "
          f"(x{mo['speedup']:.2f}); {mo['macs_per_s'] / 1e9:.2f} GMAC/s = "
          f"{100 * mo['share_of_peak']:.1f} % of the matrix-multiply peak", flush=True)

    bandwidth = roofline.elementwise_bandwidth(args.threads)
    graph = roofline.graph_traffic(args.model, meta)
    roof = {"elementwise_bandwidth": bandwidth, **graph,
            **roofline.ceiling(graph, bandwidth, peak)}
    print(f"onnxruntime Mul chain: {bandwidth / 1e9:.1f} GB/s; the graph's elementwise ops "
          f"move {graph['elementwise_bytes'] / 1e3:.1f} kB per PAN pixel: at most "
          f"{100 * roof['share_of_peak']:.1f} % of the matrix-multiply peak", flush=True)

    profile = op_profile(args.model, tile, args.threads)
    print("share of one tile's kernel time: " + ", ".join(
        f"{k} {100 * v:.1f} %" for k, v in profile.items() if k != "top ops"), flush=True)
    print(f"largest op types: {profile['top ops']}", flush=True)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        default = plugin_default_model(meta.bands, meta.ratio)
        default = None if default is None or default.resolve() == args.model.resolve() else default
        for size in args.sizes:
            pan, ms = mosaic(size, work)
            runs: dict[str, list[dict]] = {}
            # Rounds of every method in turn, so that each sees the same
            # machine; the median round of each is reported.
            for _ in range(args.repeats):
                for method, result in run_methods(pan, ms, size, work, args.model, default):
                    runs.setdefault(method, []).append(result)
                    print(f"{method:26s} {size:5d}^2: {result['seconds']:8.1f} s, "
                          f"peak RSS {result['peak_rss_mib']:7.0f} MiB", flush=True)
            for method, results in runs.items():
                rows.append(median_row(method, size, results))
            for f in work.glob(f"*_{size}.tif"):
                f.unlink()

    report = {"threads": args.threads, "matmul_macs_per_s": peak, "model": args.model.name,
              "macs_per_pan_pixel": macs_per_px, "graph_cost_64": cost, "model_only": mo,
              "op_profile": profile, "roofline": roof, "end_to_end": rows,
              "tile_size": meta.tile_size, "overlap": meta.overlap, "ratio": meta.ratio,
              "cpu_workers": cpu_layout()[0], "repeats": args.repeats}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed.json").write_text(json.dumps(report, indent=1, default=str))
    write_report(report, args.out)




def windows(report: dict, size: int) -> str:
    """The plugin's tile plan for a mosaic of ``size``^2 PAN pixels (the whole
    PAN: the MS covers every PAN pixel's centre), its windows shared by the
    tiles a CPU session runs at once."""
    from ada3d_qgis.engine.pipeline import shared_tile_size
    from ada3d_qgis.engine.tiling import context_tile_count, tile_grid

    r, overlap = report["ratio"], report["overlap"]
    tile = shared_tile_size(report["tile_size"], report.get("cpu_workers", 1), overlap, r)
    tiles = tile_grid(size, size, tile, overlap, r)
    return (f"{len(tiles)} + {context_tile_count(len(tiles))} of "
            f"{tiles[0].width}² px")


def write_report(report: dict, out: Path) -> None:
    """docs/speed.md (and the plot) from the measurements in ``report``."""
    if "tile_size" not in report:  # written before the tile plan was recorded
        meta = _metadata(DEFAULT_MODEL.parent / report["model"])
        report = {**report, "tile_size": meta.tile_size, "overlap": meta.overlap,
                  "ratio": meta.ratio}
    rows, mo, profile = report["end_to_end"], report["model_only"], report["op_profile"]
    counted = not _has_subgraphs(report)
    peak, tile = report["matmul_macs_per_s"], mo["tile"]
    sizes = sorted({r["pan_size"] for r in rows})
    lines = ["| method | PAN size | wall time (s) | in the algorithm (s) | PAN MPix/s | "
             "peak RSS (MiB) | x OTB Bayes (wall) | Ada3D tiles (written + pass 1) |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['pan_size']}² | {r['seconds']:.1f} | "
              f"{_seconds(r.get('algorithm_seconds'))} | "
              f"{r['pan_mpix_per_s']:.3f} | {r['peak_rss_mib']:.0f} | "
              f"{_otb_ratio(rows, r)} | "
              f"{windows(report, r['pan_size']) if r['method'] == ADA3D else ''} |"
              for r in rows]
    text = (
        f"# Inference speed\n\nMade by `make bench-speed` (bench/speed.py) on "
        f"{report['threads']} threads; inputs are mirrored mosaics of the embedded Landsat 8 "
        f"sample. Every end-to-end run is its own process: the wall time includes the "
        f"interpreter's and QGIS's start-up and shutdown; the time in the algorithm is that "
        f"of `processing.run` alone (OTB runs outside QGIS). PAN MPix/s is from the wall "
        f"time. {_repeats_sentence(report)}\n\n"
        f"- Dense float32 matrix multiply (torch, 2048²): {peak / 1e9:.1f} GMAC/s.\n"
        + (f"- Model `{report['model']}`: {report['macs_per_pan_pixel'] / 1e3:.1f} k "
           f"multiply-adds per PAN pixel (counted from the graph).\n" if counted else
           f"- Model `{report['model']}`: its adaptive layers run inside Scan bodies, which "
           f"bench/graph_cost.py does not enter: no multiply-add count.\n")
        + f"- Model alone, {mo['tiles']} tiles of {tile}² PAN pixels, one session on "
        f"{report['threads']} threads: onnxruntime "
        f"{mo['onnxruntime_s']:.2f} s, PyTorch eager {mo['torch_s']:.2f} s: onnxruntime is "
        f"{mo['speedup']:.2f}x as fast"
        + (f"; it achieves {mo['macs_per_s'] / 1e9:.2f} GMAC/s, "
           f"{100 * mo['share_of_peak']:.1f} % of the matrix-multiply peak" if counted else "")
        + ".\n\n"
        + "\n".join(lines) + "\n"
    )
    text += (
        f"\nWhere one {tile}² tile's time goes (onnxruntime profiler, kernel time): "
        + "; ".join(f"{k} {100 * v:.1f} %" for k, v in profile.items() if k != "top ops")
        + ". Largest op types: "
        + ", ".join(f"{op} {100 * v:.1f} %" for op, v in profile["top ops"].items()) + ".\n"
    )
    if "roofline" in report and counted:
        text += roofline_paragraph(report["roofline"], mo)
    pairs = [(a, b) for a, b in itertools.pairwise(sizes) if a >= 1024]
    if 1024 in sizes and sizes[-1] > 2048:
        pairs.append((1024, sizes[-1]))
    for a, b in pairs:
        scale = scaling(rows, ADA3D, a, b)
        if scale:
            own = scale.get("algorithm_time_per_pixel_ratio")
            text += (f"\nAda3D from {a}² to {b}² PAN: time per pixel "
                     f"x{scale['time_per_pixel_ratio']:.3f}"
                     + (f" (in the algorithm x{own:.3f})" if own is not None else "")
                     + f", peak RSS x{scale['peak_rss_ratio']:.3f}.")
    text += "\n"
    if plot(rows, out / "speed.png"):
        text += "\n![time and peak RSS against PAN pixels](speed.png)\n"
    (out / "speed.md").write_text(text)
    print("\n" + text)


def roofline_paragraph(roof: dict, mo: dict) -> str:
    """What the graph's memory traffic allows (bench/roofline.py)."""
    achieved = roof["elementwise_bytes"] * mo["tile"] ** 2 * mo["tiles"] / mo["onnxruntime_s"]
    return (
        f"\nCeiling (bench/roofline.py): onnxruntime's Mul streams "
        f"{roof['elementwise_bandwidth'] / 1e9:.1f} GB/s here at best (chains of Muls on 1, "
        f"4 and 16 MiB tensors, the caches included). The graph's elementwise and "
        f"indexing ops read and write "
        f"{roof['elementwise_bytes'] / 1e3:.1f} kB per PAN pixel for "
        f"{roof['dense_macs'] / 1e3:.1f} k dense multiply-adds (Conv, MatMul). Even with "
        f"every dense op at the matrix-multiply peak and every other op at that rate, "
        f"a pixel takes {1e6 * roof['seconds_per_pixel']:.2f} µs: at most "
        f"{roof['macs_per_s'] / 1e9:.2f} GMAC/s, {100 * roof['share_of_peak']:.1f} % of "
        f"the peak. For {100 * roof['target']:.0f} % these multiply-adds would have to come "
        f"with at most {roof['elementwise_bytes_for_target'] / 1e3:.1f} kB of elementwise "
        f"traffic per pixel. The model itself runs its elementwise ops at an effective "
        f"{achieved / 1e9:.1f} GB/s or more (graph bytes "
        f"over the whole time: tensors of a tile partly stay in the cache).\n"
    )


def _has_subgraphs(report: dict) -> bool:
    """Whether the measured model has Scan/Loop nodes (graph_cost cannot count them)."""
    import onnx

    if report.get("graph_cost_64", {}).get("subgraph_nodes"):
        return True
    path = DEFAULT_MODEL.parent / report["model"]
    return path.is_file() and any(
        n.op_type in ("Scan", "Loop") for n in onnx.load(str(path)).graph.node)


def _otb_ratio(rows: list[dict], row: dict) -> str:
    """``row``'s wall time over OTB Bayes's on the same mosaic in the same run."""
    otb = [r for r in rows if r["method"] == OTB and r["pan_size"] == row["pan_size"]]
    if row["method"] == OTB or not otb:
        return ""
    return f"{row['seconds'] / otb[0]['seconds']:.1f}"


def _repeats_sentence(report: dict) -> str:
    """How the rows were chosen, when every method ran several times."""
    repeats = report.get("repeats", 1)
    if repeats <= 1:
        return ""
    return (f"Every method ran {repeats} times per size, in rounds of all methods in turn; "
            f"each row is its run of median wall time (the others: speed.json).")


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _metadata(model: Path):
    from ada3d_qgis.engine.session import read_metadata

    return read_metadata(model)


if __name__ == "__main__":
    main()
