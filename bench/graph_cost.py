"""Multiply-adds of an ONNX graph, counted node by node at a given input size.

Conv/ConvTranspose, MatMul/Gemm and Einsum count their multiply-adds; an
elementwise Mul counts one multiply per output element (in Ada3D these are the
adaptive convolution's per-tap products, each summed right after). Shapes are
the real ones: a copy of the model that returns every intermediate tensor is
run once with onnxruntime on inputs of the given shapes (ONNX shape inference
leaves many of the exporter's shapes unknown).
"""

from __future__ import annotations

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
