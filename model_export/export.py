"""Export an Ada3D checkpoint to the single .onnx file the QGIS plugin runs.

    python -m model_export.export --checkpoint CKPT --out MODEL.onnx [--name NAME]
        [--tile-size PX] [--overlap PX] [--fp16]

The graph has inputs ``ms`` (B, L, h, w), ``pan`` (B, 1, r h, r w), ``context``
(B, K) and ``context_weight`` (B, 1) and outputs ``fused`` (B, L, r h, r w) and
``context_out`` (B, K), with batch, height and width dynamic (see DESIGN.md,
"Tiling and the pooled statistics"). After writing, the file is checked with
``onnx.checker`` (full check) and run in onnxruntime against PyTorch on random
and on real Landsat inputs at two sizes, with ``context_weight`` 0 and 1; any
difference above 1e-4 aborts the export (non-zero exit) and removes the file.
The metadata (``ada3d_qgis.core.metadata``) goes into ``metadata_props``.

The graph comes from torch's dynamo exporter (torch.export + onnxscript). It
is slow: about 2 minutes for a 2-block model and 5 to 9 minutes for the paper
configuration on 2 shared cores, nearly all of it in torch.export's
decompositions. ``--legacy`` uses the TorchScript exporter instead (seconds;
the same operators, checked the same way).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from ada3d_qgis.core.metadata import INPUT_NAMES as ONNX_INPUTS
from ada3d_qgis.core.metadata import OUTPUT_NAMES as ONNX_OUTPUTS
from ada3d_qgis.core.metadata import ModelMetadata
from ada3d_qgis.core.normalise import METHOD as NORMALISATION_METHOD
from ada3d_qgis.engine.session import TILE_BUDGET_MIB
from model_export.adaptive_conv import DEFAULT_FORMULATION, EXPORT_FORMULATION, FORMULATIONS
from model_export.band_agnostic import add_band_dims, trained_band_range
from model_export.checkpoints import load_checkpoint_dict
from model_export.graph_passes import merge_chained_slices
from model_export.model import Ada3D, Ada3DConfig, AdaptiveConv3d, receptive_field_halo

log = logging.getLogger(__name__)

OPSET = 18
INPUT_NAMES = list(ONNX_INPUTS)
OUTPUT_NAMES = list(ONNX_OUTPUTS)
#: Largest onnxruntime-vs-PyTorch difference accepted (inputs in [0, 1]).
PARITY_TOLERANCE = 1e-4
#: Memory an onnxruntime session may take for one tile by default (MiB, by
#: ``tile_memory_mib``); the plugin batches CUDA tiles by the same figure.
TILE_MEMORY_BUDGET_MIB = TILE_BUDGET_MIB
#: Share of a default tile's pixels its core keeps, at least: the overlap may
#: waste no more than the other half, whatever the memory budget says.
MIN_KEPT_SHARE = 0.5
REPO = Path(__file__).resolve().parents[1]
SAMPLE_MS = REPO / "tests" / "data" / "l8_ms.tif"
SAMPLE_PAN = REPO / "tests" / "data" / "l8_pan.tif"
#: Native PAN/MS ratio of the Landsat sample.
SAMPLE_NATIVE_RATIO = 2


class ExportError(RuntimeError):
    """The exported graph is invalid or disagrees with PyTorch."""


class _ContextModel(nn.Module):
    """The graph that ships: ``forward_with_context`` as the forward pass."""

    def __init__(self, model: Ada3D) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, ms: Tensor, pan: Tensor, context: Tensor, context_weight: Tensor
    ) -> tuple[Tensor, Tensor]:
        return self.model.forward_with_context(ms, pan, context, context_weight)


def load_checkpoint(path: str | Path) -> tuple[Ada3D, dict[str, Any]]:
    """Model (eval mode, CPU) and the raw checkpoint dict written by train.py."""
    ckpt = load_checkpoint_dict(path)  # weights and plain data only: see checkpoints.py
    model = Ada3D(Ada3DConfig.from_dict(ckpt["config"]))
    state = ckpt["model"]
    # DistributedDataParallel prefixes every key with "module.".
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model.load_state_dict(state)
    return model.eval(), ckpt


def example_inputs(cfg: Ada3DConfig, lr_size: int, batch: int = 1, seed: int = 0):
    """Random inputs in [0, 1] for a (lr_size x lr_size) MS, and a random context."""
    gen = torch.Generator().manual_seed(seed)
    ms = torch.rand(batch, cfg.bands, lr_size, lr_size, generator=gen)
    pan = torch.rand(batch, 1, lr_size * cfg.ratio, lr_size * cfg.ratio, generator=gen)
    context = torch.rand(batch, cfg.context_size, generator=gen)
    return ms, pan, context, torch.zeros(batch, 1)


#: The dynamic axes of every input and output: the one table both exporters
#: read (the PAN's sizes are the ratio times the MS's).
DYNAMIC_AXES = {
    "ms": {0: "batch", 2: "rows", 3: "cols"},
    "pan": {0: "batch", 2: "pan_rows", 3: "pan_cols"},
    "context": {0: "batch"},
    "context_weight": {0: "batch"},
    "fused": {0: "batch", 2: "pan_rows", 3: "pan_cols"},
    "context_out": {0: "batch"},
}


def _dynamic_shapes(cfg: Ada3DConfig) -> dict[str, dict[int, Any]]:
    """:data:`DYNAMIC_AXES` of the inputs as torch.export dimensions."""
    rows = torch.export.Dim("rows", min=2)
    cols = torch.export.Dim("cols", min=2)
    dims = {"batch": torch.export.Dim("batch", min=1), "rows": rows, "cols": cols,
            "pan_rows": cfg.ratio * rows, "pan_cols": cfg.ratio * cols}
    return {name: {axis: dims[dim] for axis, dim in DYNAMIC_AXES[name].items()}
            for name in INPUT_NAMES}


def export_onnx(model: Ada3D, out_path: str | Path, dynamo: bool = True) -> None:
    """Write ``model`` as ONNX (single file, dynamic batch/height/width)."""
    cfg = model.config
    wrapper = _ContextModel(model).eval()
    # torch's export of a scan (the "strips" formulation) fails on parameters
    # that require gradients, and an exported graph needs none.
    wrapper.requires_grad_(False)
    args = example_inputs(cfg, 8, batch=2)
    if dynamo:
        dynamic_shapes = _dynamic_shapes(cfg)
        if cfg.band_agnostic:
            add_band_dims(dynamic_shapes, cfg)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapper,
                args,
                dynamo=True,
                input_names=INPUT_NAMES,
                output_names=OUTPUT_NAMES,
                dynamic_shapes=dynamic_shapes,
                opset_version=OPSET,
                external_data=False,
                optimize=True,
                verbose=False,
            )
        program.save(str(out_path), external_data=False)
    else:
        if cfg.band_agnostic:
            # Its trace fixes the band count of the spectral gathers.
            raise ValueError("a band-agnostic model needs the dynamo exporter (no --legacy)")
        torch.onnx.export(
            wrapper,
            args,
            str(out_path),
            dynamo=False,
            input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES,
            dynamic_axes=DYNAMIC_AXES,
            opset_version=OPSET,
        )
    proto = onnx.load(str(out_path))
    if merge_chained_slices(proto):
        onnx.save(proto, str(out_path))


def write_metadata(onnx_path: str | Path, meta: ModelMetadata) -> None:
    """Replace the file's ``metadata_props`` with ``meta`` and run the full checker."""
    proto = onnx.load(str(onnx_path))
    del proto.metadata_props[:]
    for key, value in meta.to_props().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "ada3d-qgis model_export"
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(onnx_path))


def ort_session(onnx_path: str | Path, threads: int = 0):
    """A CPU session with the plugin's own options, so that what the export
    checks is what the plugin runs."""
    import onnxruntime as ort

    from ada3d_qgis.engine.session import session_options

    opts = session_options(ort)
    # The memory pattern nearly doubles peak memory here (see tile_memory_mib).
    opts.enable_mem_pattern = False
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])


def sample_inputs(cfg: Ada3DConfig, lr_size: int) -> tuple[Tensor, Tensor]:
    """Real Landsat 8 inputs at the model's ratio (Wald pair of the test sample),
    each band scaled to [0, 1], cropped to a (lr_size x lr_size) MS."""
    from osgeo import gdal

    from ada3d_qgis.core.degrade import wald_pair

    ms_ds, pan_ds = gdal.Open(str(SAMPLE_MS)), gdal.Open(str(SAMPLE_PAN))
    ms = ms_ds.ReadAsArray().astype(np.float64)
    pan = pan_ds.ReadAsArray().astype(np.float64)
    ms_lr, pan_lr, _ = wald_pair(ms, pan, native_ratio=SAMPLE_NATIVE_RATIO, model_ratio=cfg.ratio)
    pan_lr = pan_lr.reshape(1, *pan_lr.shape[-2:])
    if ms_lr.shape[0] < cfg.bands:
        # A model with more bands than the sample: repeat bands (parity only).
        ms_lr = np.concatenate([ms_lr] * -(-cfg.bands // ms_lr.shape[0]))
    ms_lr = _unit_scale(ms_lr[: cfg.bands, :lr_size, :lr_size])
    r = cfg.ratio
    pan_lr = _unit_scale(pan_lr[:, : lr_size * r, : lr_size * r])
    if ms_lr.shape[-1] < lr_size or ms_lr.shape[-2] < lr_size:
        raise ValueError(f"the sample is smaller than {lr_size} MS pixels at ratio {r}")
    return torch.from_numpy(ms_lr[None]).float(), torch.from_numpy(pan_lr[None]).float()


def _unit_scale(x: np.ndarray) -> np.ndarray:
    lo = x.min(axis=(1, 2), keepdims=True)
    hi = x.max(axis=(1, 2), keepdims=True)
    return (x - lo) / np.maximum(hi - lo, 1e-12)


def parity_check(
    model: Ada3D,
    onnx_path: str | Path,
    sizes: tuple[int, ...] = (12, 24),
    bands: int | None = None,
) -> float:
    """Largest |onnxruntime - PyTorch| over random and real inputs at ``sizes``
    (MS pixels), context weight 0 and 1, with ``bands`` bands (default: the
    model's); raises ExportError above the tolerance."""
    session = ort_session(onnx_path)
    cfg = model.config if bands is None else replace(model.config, bands=bands)
    worst = 0.0
    for size in sizes:
        ms, pan, context, _ = example_inputs(cfg, size, seed=size)
        cases = {"random": (ms, pan), "Landsat": sample_inputs(cfg, size)}
        for label, (ms, pan) in cases.items():
            for weight in (0.0, 1.0):
                w = torch.full((1, 1), weight)
                with torch.no_grad():
                    ref = model.forward_with_context(ms, pan, context, w)
                feeds = {
                    "ms": ms.numpy(),
                    "pan": pan.numpy(),
                    "context": context.numpy(),
                    "context_weight": w.numpy(),
                }
                got = session.run(OUTPUT_NAMES, feeds)
                for name, a, b in zip(OUTPUT_NAMES, ref, got, strict=True):
                    err = float(np.abs(a.numpy() - b).max())
                    worst = max(worst, err)
                    if not err <= PARITY_TOLERANCE:
                        raise ExportError(
                            f"onnxruntime and PyTorch differ by {err:.3g} on output {name} "
                            f"({label} input, {size * cfg.ratio} px, {cfg.bands} bands, "
                            f"context weight {weight}); "
                            f"the tolerance is {PARITY_TOLERANCE}"
                        )
    return worst


def tile_memory_mib(cfg: Ada3DConfig, tile_size: int) -> float:
    """Peak resident memory (MiB) of an onnxruntime CPU session running
    (tile_size x tile_size PAN) tiles: an upper estimate, linear in the tile's
    area and the feature channels, with head-room for what glibc keeps of
    freed tensors (docs/design.md, "Memory on the CPU", says how it was
    calibrated; docs/tile_sizes.md measures the shipped configuration).
    """
    per_pixel = 100 * cfg.channels * cfg.bands + 20 * cfg.spatial_channels  # bytes
    return 110 + tile_size * tile_size * per_pixel / 2**20


def default_tile_size(
    cfg: Ada3DConfig, overlap: int, budget_mib: float = TILE_MEMORY_BUDGET_MIB
) -> int:
    """The model's tile (a multiple of 32 PAN px and of the ratio, at least two
    steps): the largest whose session stays within ``budget_mib``, but never
    so small that the ``overlap`` on both sides leaves less than
    :data:`MIN_KEPT_SHARE` of its pixels. 256 px for the shipped
    configuration, 160 for the paper's (its 20 px overlap sets the floor).

    The budget is small on purpose: on a CPU the time per kept pixel falls
    only slowly with the window (``python -m bench.tile_sizes``,
    docs/tile_sizes.md: a smaller window wastes more on its overlap), while
    the memory grows with the area.
    """
    step = math.lcm(32, cfg.ratio)
    tile = 2 * step
    while tile_memory_mib(cfg, tile + step) <= budget_mib:
        tile += step
    while (tile - 2 * overlap) ** 2 < MIN_KEPT_SHARE * tile * tile:
        tile += step
    return tile


def build_metadata(
    model: Ada3D,
    ckpt: dict[str, Any],
    name: str,
    tile_size: int | None = None,
    overlap: int | None = None,
    description: str = "",
    band_range: tuple[int, int] | None = None,
) -> ModelMetadata:
    """Metadata for ``model`` from its checkpoint; tile sizes in PAN pixels.
    ``band_range`` (band-agnostic models): the band counts it declares to
    take; default: those it was trained on."""
    cfg = model.config
    r = cfg.ratio
    halo = receptive_field_halo(cfg)
    overlap = halo if overlap is None else overlap
    if overlap < halo or overlap % r:
        raise ValueError(f"overlap must be a multiple of {r} and at least the halo {halo}")
    tile_size = default_tile_size(cfg, overlap) if tile_size is None else tile_size
    if tile_size % r or tile_size <= 2 * overlap:
        raise ValueError(f"tile size must be a multiple of {r} larger than twice the overlap")
    band_names = list(ckpt.get("band_names") or [f"band{i + 1}" for i in range(cfg.bands)])
    low, high = (0, 0)
    if cfg.band_agnostic:
        low, high = band_range or trained_band_range(ckpt, cfg.bands)
    return ModelMetadata(
        model_name=name,
        config=cfg.to_dict(),
        bands=cfg.bands,
        band_names=band_names,
        ratio=r,
        normalisation={"method": NORMALISATION_METHOD},
        halo=halo,
        tile_size=tile_size,
        overlap=overlap,
        context_size=cfg.context_size,
        training=dict(ckpt.get("training") or {}),
        validation=dict(ckpt.get("validation") or {}),
        description=description or str(ckpt.get("description", "")),
        min_bands=low,
        max_bands=high,
        context_per_band=2 * cfg.layers * cfg.channels if cfg.band_agnostic else 0,
    )


def export_checkpoint(
    checkpoint_path: str | Path,
    out_path: str | Path,
    name: str | None = None,
    tile_size: int | None = None,
    overlap: int | None = None,
    description: str = "",
    check: bool = True,
    dynamo: bool = True,
    formulation: str | None = None,
    band_range: tuple[int, int] | None = None,
    strip_rows: int | None = None,
) -> ModelMetadata:
    """Export ``checkpoint_path`` to ``out_path`` with metadata, checked.

    ``check=False`` skips the onnxruntime parity run (the checker still runs).
    ``formulation`` is how the adaptive convolution is written in the graph
    (adaptive_conv.FORMULATIONS; the same values, different ops and memory);
    None: "strips", or "tap_gather" with the TorchScript exporter
    (``dynamo=False``), which cannot trace the strips' scan. ``strip_rows``
    (default adaptive_conv.STRIP_ROWS) is the height of the strips.
    On any failure the output file is removed and the exception propagates.
    """
    if formulation is None:
        formulation = EXPORT_FORMULATION if dynamo else DEFAULT_FORMULATION
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation must be one of {FORMULATIONS}, got {formulation!r}")
    if formulation == "strips" and not dynamo:
        raise ValueError("the strips formulation needs the dynamo exporter (without --legacy)")
    out_path = Path(out_path)
    model, ckpt = load_checkpoint(checkpoint_path)
    for module in model.modules():
        if isinstance(module, AdaptiveConv3d):
            module.formulation = formulation
            if strip_rows:
                module.strip_rows = strip_rows
    meta = build_metadata(
        model, ckpt, name or out_path.stem, tile_size, overlap, description, band_range
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".part")
    try:
        export_onnx(model, tmp, dynamo=dynamo)
        write_metadata(tmp, meta)
        if check:
            low, high = meta.band_range
            # A band-agnostic graph: its smallest, nominal and largest band counts.
            for bands in sorted({low, meta.bands, high}):
                worst = parity_check(model, tmp, bands=bands)
                log.info("onnxruntime vs PyTorch, %d bands: max abs difference %.3g", bands, worst)
        tmp.replace(out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model_export.export", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--checkpoint", required=True, help="checkpoint written by train.py")
    parser.add_argument("--out", required=True, help="output .onnx file")
    parser.add_argument("--name", help="model name in the metadata (default: file name)")
    parser.add_argument(
        "--tile-size",
        type=int,
        help=f"PAN px (default: the largest that keeps onnxruntime under "
        f"{TILE_MEMORY_BUDGET_MIB} MiB)",
    )
    parser.add_argument("--overlap", type=int, help="PAN px (default: the measured halo)")
    parser.add_argument("--description", default="", help="model card text")
    parser.add_argument(
        "--band-range",
        type=lambda text: tuple(int(v) for v in text.split(",")),
        metavar="MIN,MAX",
        help="band counts a band-agnostic model declares (default: those it was trained on)",
    )
    parser.add_argument(
        "--legacy", action="store_true", help="use the TorchScript exporter instead of dynamo"
    )
    parser.add_argument(
        "--formulation",
        choices=FORMULATIONS,
        default=None,
        help="how the adaptive convolution is written (same values; default strips, "
        "tap_gather with --legacy): strips is the fastest on a CPU (docs/formulations.md); "
        "gather_mul moves fewer bytes in fewer kernels (see docs/gpu.md)",
    )
    parser.add_argument(
        "--strip-rows",
        type=int,
        help="output rows per strip of the strips formulation (default: adaptive_conv.STRIP_ROWS; "
        "for speed comparisons: python -m bench.window_pair)",
    )
    parser.add_argument(
        "--fp16",
        action="store_true",
        help="also write a float16 copy for GPUs (NAME_fp16.onnx beside --out; "
        "see model_export/precision.py)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        meta = export_checkpoint(
            args.checkpoint,
            args.out,
            name=args.name,
            tile_size=args.tile_size,
            overlap=args.overlap,
            description=args.description,
            dynamo=not args.legacy,
            formulation=args.formulation,
            band_range=args.band_range,
            strip_rows=args.strip_rows,
        )
    except (ExportError, ValueError, onnx.checker.ValidationError) as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"wrote {args.out}: {meta.model_name}, {_bands_text(meta)}, ratio {meta.ratio}, "
        f"halo {meta.halo} px, tile {meta.tile_size} px, overlap {meta.overlap} px, "
        f"context {meta.context_size} values"
    )
    if args.fp16:
        from model_export.precision import write_float16

        try:
            half, worst = write_float16(args.out)
        except (ValueError, onnx.checker.ValidationError) as exc:
            print(f"float16 export failed: {exc}", file=sys.stderr)
            return 1
        print(
            f"wrote {half}: float16 weights and arithmetic, float32 inputs and outputs; "
            f"largest difference from the float32 model on CPU {worst:.3g}"
        )
    return 0


def _bands_text(meta: ModelMetadata) -> str:
    if meta.band_agnostic:
        return f"{meta.band_range[0]} to {meta.band_range[1]} bands (band-agnostic)"
    return f"{meta.bands} bands"


if __name__ == "__main__":
    sys.exit(main())
