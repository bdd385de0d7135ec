"""A float16 copy of an exported Ada3D model, for GPUs.

    python -m model_export.export --checkpoint CKPT --out MODEL.onnx --fp16

writes ``MODEL.onnx`` (float32) and then ``MODEL_fp16.onnx``: float16 weights
and arithmetic, float32 inputs and outputs (the plugin feeds and reads float32
either way), the same Ada3D metadata plus a ``precision`` key (JSON
``"float16"``). ``core/metadata.py`` has no precision field and its reader
ignores keys it does not know, so older plugins read the file unchanged.

The conversion is onnxruntime's ``convert_float_to_float16`` with
``keep_io_types=True``, then a tidy-up the converter's output needs before
onnx's checker accepts it (it appends the input Casts after their consumers
and repeats some Casts, see :func:`_tidy_nodes`), then a full
``onnx.checker`` pass. The result is run with onnxruntime's CPU provider
against the float32 model; a difference above :data:`FP16_TOLERANCE` aborts
and removes the file.

On CPU the float16 model runs: onnxruntime wraps the operators that have no
float16 CPU kernel in Casts to float32, so CPU parity checks the graph, not a
GPU's float16 rounding (which rounds in more places). It is meant for GPUs:
float16 halves the bytes every elementwise operator moves and lets cuDNN use
tensor cores for the convolutions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx

#: metadata_props key (JSON string value) naming the arithmetic of the graph.
PRECISION_KEY = "precision"
FLOAT16 = "float16"
FP16_SUFFIX = "_fp16"

#: Operators that stay float32. ReduceMean computes Ada3D's pooled statistics
#: over a whole tile (65,536 values at 256 px): a float16 running sum of that
#: many values of order one passes float16's largest finite value (65,504), and
#: whether a GPU kernel accumulates in float32 is the kernel's choice. Pinning
#: it in the graph makes the result independent of that choice; the cost is
#: a Cast before and after each ReduceMean.
KEEP_FLOAT32 = ("ReduceMean",)

#: Largest |float16 - float32| accepted on CPU, in the model's normalised space
#: (inputs have unit standard deviation over the scene, so 0.02 is 2 % of a
#: band's scene standard deviation). float16 keeps 11 significant bits (unit
#: roundoff 2**-11 = 4.9e-4); a fused value of a few standard deviations that
#: has gone through some tens of rounded sums accumulates a few times 1e-3,
#: which is what the shipped ratio-2 model shows on real Landsat inputs
#: (docs/gpu.md). 0.02 leaves room for that and still catches a broken
#: conversion, whose error is of the order of the signal itself.
FP16_TOLERANCE = 2e-2


class PrecisionError(ValueError):
    """The float16 model is invalid or disagrees with the float32 one."""


def fp16_path(path: str | Path) -> Path:
    """Where the float16 copy of ``path`` goes: ``name_fp16.onnx`` beside it."""
    path = Path(path)
    return path.with_name(path.stem + FP16_SUFFIX + path.suffix)


def precision_of(props: dict[str, str]) -> str:
    """The arithmetic of a model ("float16" or "float32") from its metadata_props."""
    raw = props.get(PRECISION_KEY)
    return json.loads(raw) if raw else "float32"


# --------------------------------------------------------------------------- graph


def _topological_order(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The nodes in an order where every input is produced before it is used.

    Each node is placed right after the producers it still waits for, so a
    node moves only when it must (a depth-first walk, iterative because
    exported graphs are thousands of nodes deep).
    """
    nodes = list(graph.node)
    available = {""} | {i.name for i in graph.input} | {i.name for i in graph.initializer}
    producer = {name: i for i, node in enumerate(nodes) for name in node.output}
    state = [0] * len(nodes)  # 0 unseen, 1 waiting for its inputs, 2 placed
    order: list[onnx.NodeProto] = []
    for first in range(len(nodes)):
        if state[first]:
            continue
        state[first] = 1
        stack = [(first, 0)]
        while stack:
            i, k = stack[-1]
            if k == len(nodes[i].input):
                stack.pop()
                state[i] = 2
                order.append(nodes[i])
                continue
            stack[-1] = (i, k + 1)
            name = nodes[i].input[k]
            j = producer.get(name)
            if j is None:
                if name not in available:
                    raise PrecisionError(f"the float16 graph uses {name}, which nothing produces")
            elif state[j] == 1:
                raise PrecisionError(f"the float16 graph has a cycle through {name}")
            elif state[j] == 0:
                state[j] = 1
                stack.append((j, 0))
    return order


def _unique_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The nodes without exact repeats. The converter inserts one Cast per
    consumer of a tensor that feeds several float32-only nodes, all with the
    same name and output, which breaks single assignment; the repeats are
    identical, so one of them is enough."""
    seen: dict[str, bytes] = {}
    kept = []
    for node in graph.node:
        text = node.SerializeToString(deterministic=True)
        if all(seen.get(o) == text for o in node.output):
            continue
        clash = [o for o in node.output if o in seen]
        if clash:
            raise PrecisionError(f"the float16 graph assigns {clash[0]} twice, differently")
        seen.update(dict.fromkeys(node.output, text))
        kept.append(node)
    return kept


def _tidy_nodes(graph: onnx.GraphProto) -> None:
    """Single assignment and topological order, as onnx's checker requires."""
    unique = onnx.GraphProto()
    unique.CopyFrom(graph)
    del unique.node[:]
    unique.node.extend(_unique_nodes(graph))
    ordered = [onnx.NodeProto.FromString(n.SerializeToString()) for n in _topological_order(unique)]
    del graph.node[:]
    graph.node.extend(ordered)


def _set_props(proto: onnx.ModelProto, props: dict[str, str]) -> None:
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def float_initialisers(proto: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Initialisers (and Constant node values) of a floating-point type."""
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}
    for init in proto.graph.initializer:
        if init.data_type in floats:
            yield init
    for node in proto.graph.node:
        for attr in node.attribute:
            if node.op_type == "Constant" and attr.t.data_type in floats:
                yield attr.t


def convert(proto: onnx.ModelProto) -> onnx.ModelProto:
    """float16 weights and compute, float32 inputs/outputs, metadata kept."""
    from onnxruntime.transformers.float16 import (
        DEFAULT_OP_BLOCK_LIST,
        convert_float_to_float16,
    )

    props = {p.key: p.value for p in proto.metadata_props}
    if precision_of(props) != "float32":
        raise PrecisionError(f"the model is already {precision_of(props)}")
    half = convert_float_to_float16(
        proto,
        keep_io_types=True,
        op_block_list=[*DEFAULT_OP_BLOCK_LIST, *KEEP_FLOAT32],
    )
    _tidy_nodes(half.graph)
    _set_props(half, {**props, PRECISION_KEY: json.dumps(FLOAT16)})
    onnx.checker.check_model(half, full_check=True)
    return half


# --------------------------------------------------------------------------- parity


def _cpu_session(path: Path):
    import onnxruntime as ort

    from ada3d_qgis.engine.session import session_options

    # The plugin's options (quiet: the float16 graph's constant-folding notes).
    so = session_options(ort)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def parity_inputs(session, sizes: tuple[int, ...] = (16, 40), seed: int = 0) -> list[dict]:
    """Feeds in the model's normalised space: standard-normal MS/PAN at each MS
    size, context weight 0 and 1 (with a standard-normal context)."""
    rng = np.random.default_rng(seed)
    shapes = {i.name: i.shape for i in session.get_inputs()}
    bands = shapes["ms"][1]
    ratio = json.loads(session.get_modelmeta().custom_metadata_map["ratio"])
    k = shapes["context"][1] if "context" in shapes else 0
    feeds = []
    for size in sizes:
        for weight in (0.0, 1.0):
            feed = {
                "ms": rng.standard_normal((1, bands, size, size)).astype(np.float32),
                "pan": rng.standard_normal((1, 1, size * ratio, size * ratio)).astype(
                    np.float32
                ),
            }
            if k:
                feed["context"] = rng.standard_normal((1, k)).astype(np.float32)
                feed["context_weight"] = np.full((1, 1), weight, np.float32)
            feeds.append(feed)
    return feeds


def max_difference(path32: Path, path16: Path, feeds: list[dict] | None = None) -> float:
    """Largest |float16 - float32| over every output and feed, on CPU."""
    s32, s16 = _cpu_session(Path(path32)), _cpu_session(Path(path16))
    feeds = parity_inputs(s32) if feeds is None else feeds
    worst = 0.0
    for feed in feeds:
        for a, b in zip(s32.run(None, feed), s16.run(None, feed), strict=True):
            worst = max(worst, float(np.abs(a.astype(np.float64) - b).max()))
    return worst


def write_float16(
    src: str | Path, dst: str | Path | None = None, tolerance: float = FP16_TOLERANCE
) -> tuple[Path, float]:
    """Write the float16 copy of ``src`` (default :func:`fp16_path`), checked
    against ``src`` on CPU; returns (path, largest difference). On failure
    nothing is left behind and :class:`PrecisionError` says why."""
    src = Path(src)
    dst = fp16_path(src) if dst is None else Path(dst)
    tmp = dst.with_name(dst.name + ".part")
    try:
        half = convert(onnx.load(str(src)))
        onnx.save(half, str(tmp))
        worst = max_difference(src, tmp)
        if not worst <= tolerance:
            raise PrecisionError(
                f"the float16 model differs from the float32 one by {worst:.3g} "
                f"(tolerance {tolerance})"
            )
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst, worst
