"""`python -m bench.gpu_estimate`: how long Ada3D would take to fuse a scene on
one data-centre GPU, estimated from the ONNX graph (there is no GPU here).

Per PAN pixel, from the graph at a small probe size (the counts scale with the
pixels; the per-tile constants such as the context MLP are negligible):

- multiply-adds, counted by :func:`bench.graph_cost.count` (Conv, MatMul, Gemm,
  Einsum, and the elementwise Mul of the adaptive convolution's taps);
- bytes moved: for every node that moves data, the elements of its inputs read
  plus those of its outputs written, times the element size of each tensor
  (shapes from one onnxruntime run, :func:`bench.graph_cost.tensor_shapes`;
  element types from ONNX type inference, 4 bytes when unknown). Nodes that
  only relabel a tensor (Reshape, Squeeze, Unsqueeze, Flatten, Identity: they
  alias their input in onnxruntime) and shape-only nodes count nothing. The
  elementwise and indexing ops and the convolutions' activations are counted
  apart and summed; no operator fusion is assumed.

Time per pixel on the GPU = max(compute time, memory time) with the datasheet
rates below, each scaled by a stated achievable fraction. float32 runs every
multiply-add at the FP32 rate; float16 runs the convolutions and matrix
products at the FP16 tensor-core rate and the elementwise Mul at the FP32 rate
(the datasheet gives no float16 rate outside the tensor cores), and moves the
bytes of the float16 graph written by model_export.precision. A scene is the
plugin's own tile plan (ada3d_qgis.engine.tiling) over a square of that many
PAN pixels, pass 1 included. Host<->device copies, kernel launches and the
CPU side (GDAL reads and writes, normalisation) are printed apart, not in the
estimate.

Prints Markdown (docs/gpu.md holds a run).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import shape_inference

from bench import graph_cost

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "ada3d_qgis" / "models" / "ada3d_r2_4b_landsat.onnx"
SAMPLE_PAN = REPO / "tests" / "data" / "l8_pan.tif"
SAMPLE_MS = REPO / "tests" / "data" / "l8_ms.tif"
SCENES = (10**8, 10**9)


@dataclass(frozen=True)
class Gpu:
    name: str
    fp32_flops: float
    fp16_tensor_flops: float
    bandwidth: float  # bytes/s
    pcie: float  # bytes/s, both directions together
    memory: float  # bytes
    source: str


A100_PCIE_40GB = Gpu(
    name="NVIDIA A100 40GB PCIe",
    fp32_flops=19.5e12,
    fp16_tensor_flops=312e12,
    bandwidth=1555e9,
    pcie=64e9,
    memory=40e9,
    source="NVIDIA A100 Tensor Core GPU datasheet, A100 40GB PCIe column: FP32 19.5 TFLOPS, "
    "FP16 Tensor Core 312 TFLOPS (dense; 624 is with sparsity), GPU memory bandwidth "
    "1,555 GB/s, PCIe Gen4 64 GB/s, GPU memory 40 GB",
)

#: Assumed shares of the datasheet rates that real kernels reach (not
#: measured: there is no GPU here). Ada3D's convolutions have few channels
#: (16 in the shipped models), which keeps cuDNN far from peak; elementwise
#: kernels stream memory well but run one per operator.
COMPUTE_FRACTION = 0.3
MEMORY_FRACTION = 0.6

COMPUTE_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm", "Einsum"}
VIEW_OPS = {"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity"}
SHAPE_OPS = {"Shape", "Size", "Constant", "ConstantOfShape"}
#: Ops that copy part of their first input: they read what they write, not
#: the whole input (a shifted window of the padded feature, three of its bands).
CROP_OPS = {"Slice", "Gather"}
_ELEMENT_BYTES = {
    onnx.TensorProto.FLOAT: 4,
    onnx.TensorProto.FLOAT16: 2,
    onnx.TensorProto.DOUBLE: 8,
    onnx.TensorProto.INT64: 8,
    onnx.TensorProto.INT32: 4,
    onnx.TensorProto.BOOL: 1,
    onnx.TensorProto.UINT8: 1,
    onnx.TensorProto.INT8: 1,
}


# --------------------------------------------------------------------------- graph


@dataclass(frozen=True)
class GraphCost:
    """Per PAN pixel: multiply-adds and bytes; per tile: kernels."""

    macs_tensor: float  # Conv, MatMul, Gemm, Einsum
    macs_mul: float  # elementwise Mul (adaptive convolution taps)
    bytes_elementwise: float
    bytes_compute_io: float
    kernels: int

    @property
    def macs(self) -> float:
        return self.macs_tensor + self.macs_mul

    @property
    def bytes(self) -> float:
        return self.bytes_elementwise + self.bytes_compute_io


def probe_shapes(meta: dict, pan_px: int) -> dict[str, tuple[int, ...]]:
    r = meta["ratio"]
    ms = pan_px // r
    return {
        "ms": (1, meta["bands"], ms, ms),
        "pan": (1, 1, pan_px, pan_px),
        "context": (1, meta["context_size"]),
        "context_weight": (1, 1),
    }


def _element_sizes(model: onnx.ModelProto) -> dict[str, int]:
    inferred = shape_inference.infer_shapes(model)
    sizes = {}
    values = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    for vi in values:
        sizes[vi.name] = _ELEMENT_BYTES.get(vi.type.tensor_type.elem_type, 4)
    for init in inferred.graph.initializer:
        sizes[init.name] = _ELEMENT_BYTES.get(init.data_type, 4)
    return sizes


def _with_cast_dims(model: onnx.ModelProto, dims: dict[str, list[int]]) -> dict[str, list[int]]:
    """``dims`` of the float32 graph extended to the tensors the float16
    conversion adds, so that the float16 graph needs no run of its own. The
    converter adds only Casts, which keep the shape: before a float32-only
    node (new output) or after one (the node's output renamed, the Cast
    producing the old name)."""
    dims = dict(dims)
    casts = [(n.input[0], n.output[0]) for n in model.graph.node if n.op_type == "Cast"]
    changed = True
    while changed:
        changed = False
        for src, dst in casts:
            for a, b in ((src, dst), (dst, src)):
                if a in dims and b not in dims:
                    dims[b] = dims[a]
                    changed = True
    return dims


def traffic(model_path: Path, dims: dict[str, list[int]]) -> tuple[float, float, int]:
    """(elementwise bytes, compute-op activation bytes, kernels) of one run."""
    model = onnx.load(str(model_path))
    sizes = _element_sizes(model)
    dims = _with_cast_dims(model, dims)
    initialisers = {i.name for i in model.graph.initializer}

    def nbytes(names, skip=()) -> float:
        return sum(
            math.prod(dims[n]) * sizes.get(n, 4) for n in names if n and n not in skip
        )

    elementwise = compute_io = 0.0
    kernels = 0
    for node in model.graph.node:
        if node.op_type in VIEW_OPS or node.op_type in SHAPE_OPS:
            continue
        kernels += 1
        if node.op_type in COMPUTE_OPS:
            # Weights are a few hundred kB per tile: only activations count.
            compute_io += nbytes(node.input, initialisers) + nbytes(node.output)
        elif node.op_type in CROP_OPS:
            elementwise += 2 * nbytes(node.output)
        else:
            elementwise += nbytes(node.input) + nbytes(node.output)
    return elementwise, compute_io, kernels


def graph_costs(
    path32: Path, path16: Path | None, meta: dict, pan_px: int
) -> dict[str, GraphCost]:
    """Per-pixel costs of the float32 graph and of its float16 copy, if given
    (the same multiply-adds: the conversion adds only Casts)."""
    model32, dims = graph_cost.tensor_shapes(path32, probe_shapes(meta, pan_px))
    macs = graph_cost.count_macs(model32, dims)
    px = pan_px * pan_px
    tensor = (macs["conv"] + macs["matmul"] + macs["einsum"]) / px
    out = {}
    for name, path in (("float32", path32), ("float16", path16)):
        if path is None:
            continue
        elementwise, compute_io, kernels = traffic(path, dims)
        out[name] = GraphCost(tensor, macs["mul"] / px, elementwise / px, compute_io / px, kernels)
    return out


# --------------------------------------------------------------------------- GPU model


@dataclass(frozen=True)
class PixelTime:
    compute: float
    memory: float

    @property
    def seconds(self) -> float:
        return max(self.compute, self.memory)


def pixel_time(cost: GraphCost, gpu: Gpu, fp16: bool, fc: float, fm: float) -> PixelTime:
    """Seconds per PAN pixel (2 floating-point operations per multiply-add)."""
    tensor_rate = (gpu.fp16_tensor_flops if fp16 else gpu.fp32_flops) * fc
    compute = 2 * cost.macs_tensor / tensor_rate + 2 * cost.macs_mul / (gpu.fp32_flops * fc)
    return PixelTime(compute, cost.bytes / (gpu.bandwidth * fm))


@dataclass
class ScenePlan:
    tiles: int  # windows run, pass 1 included
    processed: int  # PAN pixels processed (tiles x window area)
    runs: int  # model runs, with the plugin's tiles per run on this GPU
    per_run: int


def scene_tiles(pixels: int, tile: int, overlap: int, ratio: int, model_tile: int,
                batch_memory: float) -> ScenePlan:
    """The plugin's plan on a square scene of ``pixels`` PAN pixels, pass 1
    included: its own tile grid (windows of at most ``tile`` px, balanced) and
    its tiles per run for a CUDA arena of ``batch_memory`` bytes."""
    from ada3d_qgis.engine.session import tiles_per_run
    from ada3d_qgis.engine.tiling import context_tile_count, round_up, tile_grid

    side = round_up(math.isqrt(pixels), ratio)
    tiles = tile_grid(side, side, tile, overlap, ratio)
    context = context_tile_count(len(tiles)) if len(tiles) > 1 else 0
    w, h = tiles[0].width, tiles[0].height
    per_run = tiles_per_run(int(batch_memory), model_tile, w, h)
    runs = math.ceil(len(tiles) / per_run) + math.ceil(context / per_run)
    n = len(tiles) + context
    return ScenePlan(n, n * w * h, runs, per_run)


def tile_memory_gib(meta: dict, tile: int) -> float:
    from model_export.export import tile_memory_mib
    from model_export.model import Ada3DConfig

    return tile_memory_mib(Ada3DConfig.from_dict(meta["config"]), tile) / 1024


def copy_bytes_per_pixel(meta: dict) -> float:
    """Host<->device bytes per processed PAN pixel: MS and PAN in, fused out
    (float32)."""
    bands, r = meta["bands"], meta["ratio"]
    return 4 * (bands / r**2 + 1) + 4 * bands


# --------------------------------------------------------------------------- models


def metadata(path: Path) -> dict:
    return {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}


def paper_model(folder: Path) -> tuple[Path, dict]:
    """The paper configuration (untrained: the counts do not depend on the
    weights), exported with the TorchScript exporter (seconds; the same
    operators as dynamo's, see model_export/export.py)."""
    import torch

    from model_export.export import default_tile_size, export_onnx
    from model_export.model import Ada3D, Ada3DConfig, receptive_field_halo

    cfg = Ada3DConfig()
    torch.manual_seed(0)
    path = folder / "ada3d_paper.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(Ada3D(cfg).eval(), path, dynamo=False)
    halo = receptive_field_halo(cfg)
    meta = {
        "model_name": "paper configuration (untrained)",
        "config": cfg.to_dict(),
        "bands": cfg.bands,
        "ratio": cfg.ratio,
        "context_size": cfg.context_size,
        "tile_size": default_tile_size(cfg, halo),
        "overlap": halo,
    }
    return path, meta


def float16_copy(src: Path, folder: Path) -> Path:
    from model_export.precision import convert

    dst = folder / (src.stem + "_fp16.onnx")
    onnx.save(convert(onnx.load(str(src))), str(dst))
    return dst


def landsat_parity(path32: Path, path16: Path, meta: dict, ms_px: int = 64) -> dict:
    """|float16 - float32| on CPU on a real Landsat 8 crop of the test sample,
    each band normalised by its own mean and standard deviation (as the plugin
    does with scene statistics), context weight 0."""
    from osgeo import gdal

    from model_export.precision import _cpu_session

    r = meta["ratio"]
    ms = gdal.Open(str(SAMPLE_MS)).ReadAsArray().astype(np.float64)[: meta["bands"]]
    pan = gdal.Open(str(SAMPLE_PAN)).ReadAsArray().astype(np.float64)
    ms = (ms - ms.mean((1, 2), keepdims=True)) / ms.std((1, 2), keepdims=True)
    pan = (pan - pan.mean()) / pan.std()
    pan_px = ms_px * r
    feed = {
        "ms": ms[None, :, :ms_px, :ms_px].astype(np.float32),
        "pan": pan[None, None, :pan_px, :pan_px].astype(np.float32),
        "context": np.zeros((1, meta["context_size"]), np.float32),
        "context_weight": np.zeros((1, 1), np.float32),
    }
    ref = _cpu_session(path32).run(None, feed)[0].astype(np.float64)
    got = _cpu_session(path16).run(None, feed)[0]
    diff = np.abs(ref - got)
    return {
        "max": float(diff.max()),
        "p99": float(np.quantile(diff, 0.99)),
        "max_abs_output": float(np.abs(ref).max()),
        "pan_px": pan_px,
    }


# --------------------------------------------------------------------------- report


def _fmt_s(seconds: float) -> str:
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.0f} s"


def report_model(
    label: str,
    path: Path,
    meta: dict,
    folder: Path,
    args: argparse.Namespace,
    gpu: Gpu,
    trained: bool = True,
) -> None:
    half = float16_copy(path, folder)
    probe = args.probe
    costs = graph_costs(path, half, meta, probe)
    c32 = costs["float32"]
    print(f"\n## {label}\n")
    print(f"`{path.name}`: {json.dumps(meta['config'])}; counted on a {probe} x {probe} PAN "
          f"probe.\n")
    print("| per PAN pixel | float32 graph | float16 graph |")
    print("|---|---|---|")
    rows = [
        ("multiply-adds: Conv/MatMul/Gemm/Einsum", "macs_tensor", 1e3, "k"),
        ("multiply-adds: elementwise Mul (taps)", "macs_mul", 1e3, "k"),
        ("bytes: elementwise and indexing ops", "bytes_elementwise", 1e3, "kB"),
        ("bytes: Conv/MatMul activations", "bytes_compute_io", 1e3, "kB"),
    ]
    for name, attr, scale, unit in rows:
        a, b = (getattr(costs[k], attr) / scale for k in ("float32", "float16"))
        print(f"| {name} | {a:.1f} {unit} | {b:.1f} {unit} |")
    print(f"| kernels per tile (nodes that move data) | {c32.kernels} | "
          f"{costs['float16'].kernels} |")
    balance = gpu.fp32_flops * args.compute_fraction / 2 / (gpu.bandwidth * args.memory_fraction)
    print(f"\nArithmetic intensity of the float32 graph: {c32.macs / c32.bytes:.2f} multiply-adds "
          f"per byte; below {balance:.2f} (the FP32 balance point at the assumed fractions) "
          f"the memory term dominates.\n")

    times = {
        k: pixel_time(c, gpu, k == "float16", args.compute_fraction, args.memory_fraction)
        for k, c in costs.items()
    }
    print("| precision | compute ns/px | memory ns/px | estimate ns/px (max) | bound by |")
    print("|---|---|---|---|---|")
    for k, t in times.items():
        bound = "compute" if t.compute >= t.memory else "memory"
        print(f"| {k} | {t.compute * 1e9:.2f} | {t.memory * 1e9:.2f} | {t.seconds * 1e9:.2f} "
              f"| {bound} |")

    tiles = [meta["tile_size"], args.gpu_tile]
    overlap = meta["overlap"]
    from ada3d_qgis.engine.session import GPU_MEM_FRACTION, TILE_BUDGET_MIB

    arena = GPU_MEM_FRACTION * gpu.memory
    print("\n| scene (PAN px) | tile (px) | tile memory | tiles | tiles per run | float32 "
          "| float16 | host<->device copies | launches |")
    print("|---|---|---|---|---|---|---|---|---|")
    copy_px = copy_bytes_per_pixel(meta)
    for pixels in SCENES:
        for tile in tiles:
            plan = scene_tiles(pixels, tile, overlap, meta["ratio"], meta["tile_size"], arena)
            est = {k: plan.processed * t.seconds for k, t in times.items()}
            copies = plan.processed * copy_px / (gpu.pcie / 2)
            print(f"| {pixels:.0e} | {tile} | {tile_memory_gib(meta, tile):.1f} GiB | "
                  f"{plan.tiles} | {plan.per_run} | {_fmt_s(est['float32'])} | "
                  f"{_fmt_s(est['float16'])} | {_fmt_s(copies)} | "
                  f"{plan.runs * c32.kernels:.3g} |")
    print(f"\nWindows of at most `tile` PAN px with {overlap} px overlap, shrunk as far as "
          f"their number allows, as the plugin plans them (the model's tile is "
          f"{meta['tile_size']} px, used unless TILE_SIZE is set); processed pixels = tiles x "
          f"window area, which includes the overlaps and pass 1. Tile memory: float32 session "
          f"memory by model_export.export.tile_memory_mib, calibrated on onnxruntime's CPU "
          f"provider (an indication for the GPU arena, not a GPU measurement). "
          f"Copies: {copy_px:.0f} bytes per "
          f"processed pixel at {gpu.pcie / 2e9:.0f} GB/s each way, on the compute stream "
          f"(do_copy_in_default_stream), so they add to the estimate. Tiles per run: what "
          f"the plugin batches into one model run on this GPU (engine/session.py "
          f"tiles_per_run: an arena of {GPU_MEM_FRACTION:.0%} of {gpu.memory / 1e9:.0f} GB, "
          f"a window of the model's tile size counted at its {TILE_BUDGET_MIB} MiB budget, "
          f"other windows by area). Launches: kernels per run x runs; each microsecond of "
          f"launch latency per kernel adds launches x 1 us.")
    if args.parity and trained:
        par = landsat_parity(path, half, meta)
        print(f"\nfloat16 vs float32 on CPU, real Landsat 8 crop ({par['pan_px']} x "
              f"{par['pan_px']} PAN px, normalised): max |difference| {par['max']:.2g}, 99th "
              f"percentile {par['p99']:.2g}, largest |output| {par['max_abs_output']:.3g} "
              f"(normalised units: scene standard deviations).")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--no-paper", action="store_true",
                        help="skip the paper configuration (exported on the fly)")
    parser.add_argument("--compute-fraction", type=float, default=COMPUTE_FRACTION)
    parser.add_argument("--memory-fraction", type=float, default=MEMORY_FRACTION)
    parser.add_argument("--gpu-tile", type=int, default=1024,
                        help="a GPU-sized tile (PAN px) to show beside the model's own")
    parser.add_argument("--probe", type=int, default=64,
                        help="PAN px of the counting probe (a multiple of the ratio)")
    parser.add_argument("--no-parity", dest="parity", action="store_false",
                        help="skip the float16 CPU parity line")
    args = parser.parse_args(argv)
    gpu = A100_PCIE_40GB

    print(f"# GPU estimate: {gpu.name}\n")
    print(f"- GPU figures: {gpu.source}.")
    print(f"- Assumed achievable fractions (not measured): compute "
          f"{args.compute_fraction:.0%} of the FP32 / FP16 tensor-core rate, memory "
          f"{args.memory_fraction:.0%} of the bandwidth.")
    print("- 1 multiply-add = 2 floating-point operations; ns/px = nanoseconds per PAN pixel "
          "processed.")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        report_model("Shipped ratio-2 model", args.model, metadata(args.model), folder, args, gpu)
        if not args.no_paper:
            path, meta = paper_model(folder)
            report_model("Paper configuration", path, meta, folder, args, gpu, trained=False)


if __name__ == "__main__":
    main()
