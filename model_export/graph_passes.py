"""Rewrites of the exported ONNX graph that onnxruntime does not do itself.

``merge_chained_slices``: PyTorch exports ``x[..., a:b, c:d]`` as one Slice per
axis. onnxruntime runs them as written, so the first Slice materialises an
intermediate copy that only the second reads. In the adaptive convolution
that is the shifted window of the padded feature, nine times per layer: a
copy as large as the feature's padded band stack, and at the peak of a tile's
memory. One Slice over both axes gives the same tensor with a single copy.
The "strips" formulation shifts its windows inside a Scan's body: the pass
walks subgraphs too.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def merge_chained_slices(model: onnx.ModelProto) -> int:
    """Fuse every Slice whose output only Slices over other axes read into
    those readers, repeatedly (a chain of three becomes one); returns the
    number of Slices removed.

    Only Slices with explicit axes and steps given as initialisers (of the
    graph or of an enclosing one) are merged (so that the axes are known to
    be disjoint); their starts and ends may be computed at run time: they are
    joined with Concat.
    """
    total = 0
    for graph, inits in _graphs(model.graph, {}):
        while removed := _merge_once(graph, inits):
            total += removed
    return total


def _graphs(graph: onnx.GraphProto, outer: dict[str, onnx.TensorProto]):
    """``graph`` and every subgraph in it, each with the initialisers it sees."""
    inits = {**outer, **{t.name: t for t in graph.initializer}}
    yield graph, inits
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g, inits)


def _subgraph_reads(node: onnx.NodeProto) -> set[str]:
    """Names a node's subgraphs read from the enclosing scope (or produce)."""
    names: set[str] = set()
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            for inner in attr.g.node:
                names.update(inner.input)
                names |= _subgraph_reads(inner)
    return names


def _merge_once(graph: onnx.GraphProto, inits: dict[str, onnx.TensorProto]) -> int:
    """One pass of ``merge_chained_slices`` over pairs that do not overlap."""
    inits = {**inits, **{t.name: t for t in graph.initializer}}
    graph_outputs = {out.name for out in graph.output}

    def constant(name: str) -> np.ndarray | None:
        return numpy_helper.to_array(inits[name]) if name in inits else None

    def mergeable(node: onnx.NodeProto) -> bool:
        return (node.op_type == "Slice" and len(node.input) == 5
                and constant(node.input[3]) is not None and constant(node.input[4]) is not None)

    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        # A value a subgraph reads counts as read by the node that holds it.
        for name in {*node.input, *_subgraph_reads(node)}:
            readers.setdefault(name, []).append(node)

    def merges_into(first: onnx.NodeProto, node: onnx.NodeProto) -> bool:
        return (mergeable(node) and node.input[0] == first.output[0]
                and not set(constant(first.input[3]).tolist())
                & set(constant(node.input[3]).tolist()))

    removed: set[str] = set()
    replacements: dict[str, list[onnx.NodeProto]] = {}
    new_inits: list[onnx.TensorProto] = []
    for first in graph.node:
        # A Slice being rewritten in this pass waits for the next one.
        if not mergeable(first) or first.name in replacements:
            continue
        out = first.output[0]
        seconds = readers.get(out, [])
        # Every reader must be a Slice over other axes: then the intermediate
        # is never needed (PyTorch's exporter shares one row slice among the
        # three column shifts of a row).
        if not seconds or out in graph_outputs or not all(
            merges_into(first, node) and node.name not in removed for node in seconds
        ):
            continue
        for node in seconds:
            base = f"{graph.name}_{node.name}_merged"
            axes = numpy_helper.from_array(
                np.concatenate([constant(first.input[3]), constant(node.input[3])])
                .astype(np.int64), f"{base}_axes")
            steps = numpy_helper.from_array(
                np.concatenate([constant(first.input[4]), constant(node.input[4])])
                .astype(np.int64), f"{base}_steps")
            new_inits += [axes, steps]
            replacements[node.name] = [
                helper.make_node("Concat", [first.input[1], node.input[1]],
                                 [f"{base}_starts"], name=f"{base}_starts", axis=0),
                helper.make_node("Concat", [first.input[2], node.input[2]],
                                 [f"{base}_ends"], name=f"{base}_ends", axis=0),
                helper.make_node(
                    "Slice",
                    [first.input[0], f"{base}_starts", f"{base}_ends", axes.name, steps.name],
                    list(node.output), name=base),
            ]
        removed.add(first.name)
    if not removed:
        return 0
    nodes = []
    for node in graph.node:
        if node.name in removed:
            continue
        nodes.extend(replacements.get(node.name, [node]))
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(new_inits)
    return len(removed)
