"""Multiply-adds and bytes moved of an ONNX graph, counted node by node at a
given input size.

Conv/ConvTranspose, MatMul/Gemm and Einsum count their multiply-adds; an
elementwise Mul counts one multiply per output element (in Ada3D these are the
adaptive convolution's per-tap products, each summed right after). Shapes are
the real ones: a copy of the model that returns every intermediate tensor is
run once with onnxruntime on inputs of the given shapes (ONNX shape inference
leaves many of the exporter's shapes unknown).

Bytes (:func:`traffic`, :func:`graph_costs`): for every node that moves data,
the elements of its inputs read plus those of its outputs written, times the
element size of each tensor (from ONNX type inference, 4 bytes when unknown).
Nodes that only relabel a tensor (Reshape, Squeeze, Unsqueeze, Flatten,
Identity: onnxruntime aliases them) and shape-only nodes count nothing; the
elementwise and indexing ops and the convolutions' activations are counted
apart; no operator fusion is assumed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from math import prod
from pathlib import Path

import onnx
from onnx import shape_inference


def _fix_inputs(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> None:
    for inp in model.graph.input:
        if inp.name not in shapes:
            continue
        for dim, value in zip(inp.type.tensor_type.shape.dim, shapes[inp.name], strict=True):
            dim.Clear()
            dim.dim_value = value


def _einsum_macs(equation: str, operand_shapes: list[list[int]]) -> int:
    lhs = equation.replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for letters, shape in zip(lhs, operand_shapes, strict=True):
        sizes.update(zip(letters, shape, strict=False))
    return prod(sizes.values()) * max(len(lhs) - 1, 1)


def _run_shapes(model: onnx.ModelProto, input_shapes: dict[str, tuple[int, ...]]) -> dict:
    """Shapes of every node output, from one onnxruntime run."""
    import numpy as np
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    for node in probe.graph.node:
        for name in node.output:
            if name and name not in known:
                probe.graph.output.append(onnx.ValueInfoProto(name=name))
                known.add(name)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feeds = {i.name: np.zeros(input_shapes[i.name], np.float32) for i in sess.get_inputs()}
    names = [o.name for o in sess.get_outputs()]
    return {n: list(v.shape) for n, v in zip(names, sess.run(names, feeds), strict=True)}


def tensor_shapes(
    model_path: Path, input_shapes: dict[str, tuple[int, ...]]
) -> tuple[onnx.ModelProto, dict[str, list[int]]]:
    """The model (inputs fixed to ``input_shapes``) and the shape of every
    tensor in it: inputs, initialisers and every node output of one run."""
    model = onnx.load(str(model_path))
    _fix_inputs(model, input_shapes)
    model = shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, list[int]] = {}
    for vi in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else 0 for d in dims]
    shapes.update(_run_shapes(model, input_shapes))
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    return model, shapes


def count(model_path: Path, input_shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
    """{"conv": ..., "matmul": ..., "einsum": ..., "mul": ..., "total": ...}."""
    return count_macs(*tensor_shapes(model_path, input_shapes))


def count_macs(model: onnx.ModelProto, shapes: dict[str, list[int]]) -> dict[str, int]:
    """``count`` on shapes already known (``tensor_shapes``)."""
    totals = {"conv": 0, "matmul": 0, "einsum": 0, "mul": 0, "unknown_nodes": 0,
              "subgraph_nodes": 0}
    for node in model.graph.node:
        out = shapes.get(node.output[0])  # [] is a scalar: one element
        if any(a.type == onnx.AttributeProto.GRAPH for a in node.attribute):
            # A Scan's or Loop's body is not counted: the total is partial.
            totals["subgraph_nodes"] += 1
            continue
        if node.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm", "Einsum", "Mul") and (
            out is None or 0 in out
        ):
            totals["unknown_nodes"] += 1
            continue
        if node.op_type in ("Conv", "ConvTranspose"):
            weight = shapes[node.input[1]]
            totals["conv"] += prod(out) * prod(weight[1:])
        elif node.op_type in ("MatMul", "Gemm"):
            a = shapes[node.input[0]]
            totals["matmul"] += prod(out) * a[-1]
        elif node.op_type == "Einsum":
            eq = next(a.s.decode() for a in node.attribute if a.name == "equation")
            totals["einsum"] += _einsum_macs(eq, [shapes[i] for i in node.input])
        elif node.op_type == "Mul":
            totals["mul"] += prod(out)
    totals["total"] = totals["conv"] + totals["matmul"] + totals["einsum"] + totals["mul"]
    return totals


# --------------------------------------------------------------------------- bytes

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
    model32, dims = tensor_shapes(path32, probe_shapes(meta, pan_px))
    macs = count_macs(model32, dims)
    px = pan_px * pan_px
    tensor = (macs["conv"] + macs["matmul"] + macs["einsum"]) / px
    out = {}
    for name, path in (("float32", path32), ("float16", path16)):
        if path is None:
            continue
        elementwise, compute_io, kernels = traffic(path, dims)
        out[name] = GraphCost(tensor, macs["mul"] / px, elementwise / px, compute_io / px, kernels)
    return out
