"""model_export.graph_passes on small hand-built graphs, run in onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from model_export.graph_passes import merge_chained_slices


def _graph(readers_of_rows: list[tuple[int, int]], extra_reader: bool = False):
    """x (2, 3, 9, 10) -> rows 1..8 (ends computed at run time) -> one column
    slice per (start, stop) in ``readers_of_rows``; optionally a Relu of the
    row slice as an output too."""
    ints = lambda name, v: numpy_helper.from_array(np.array(v, np.int64), name)  # noqa: E731
    inits = [ints("r_start", [1]), ints("r_axes", [2]), ints("one", [1]),
             ints("minus_one", [-1]), ints("c_axes", [3])]
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "r_axes"], ["rows"], axis=0),
        helper.make_node("Add", ["rows", "minus_one"], ["r_end"]),
        helper.make_node("Slice", ["x", "r_start", "r_end", "r_axes", "one"], ["win"],
                         name="rows"),
    ]
    outputs = []
    for k, (a, b) in enumerate(readers_of_rows):
        inits += [ints(f"c{k}_start", [a]), ints(f"c{k}_end", [b])]
        nodes.append(helper.make_node(
            "Slice", ["win", f"c{k}_start", f"c{k}_end", "c_axes", "one"], [f"y{k}"],
            name=f"cols{k}"))
        outputs.append(helper.make_tensor_value_info(f"y{k}", TensorProto.FLOAT, list("abcd")))
    if extra_reader:
        nodes.append(helper.make_node("Relu", ["win"], ["relu"]))
        outputs.append(helper.make_tensor_value_info("relu", TensorProto.FLOAT, list("abcd")))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 9, 10])],
        outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})


def test_row_slice_read_by_column_slices_becomes_one_slice_each():
    model = _graph([(0, 8), (1, 9), (2, 10)])
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 10)).astype(np.float32)
    before = _run(model, x)
    assert merge_chained_slices(model) == 1
    onnx.checker.check_model(model)
    slices = [n for n in model.graph.node if n.op_type == "Slice"]
    assert len(slices) == 3 and all(n.input[0] == "x" for n in slices)
    after = _run(model, x)
    for got, want, (a, b) in zip(after, before, [(0, 8), (1, 9), (2, 10)], strict=True):
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got, x[:, :, 1:8, a:b])


def test_a_slice_another_op_also_reads_is_kept():
    model = _graph([(0, 8)], extra_reader=True)
    assert merge_chained_slices(model) == 0
    assert sum(n.op_type == "Slice" for n in model.graph.node) == 2


def test_a_chain_of_three_slices_becomes_one():
    ints = lambda name, v: numpy_helper.from_array(np.array(v, np.int64), name)  # noqa: E731
    inits = [ints("one", [1])]
    nodes, data = [], "x"
    for axis, (a, b) in enumerate([(1, 3), (2, 8), (0, 7)], start=1):
        inits += [ints(f"s{axis}", [a]), ints(f"e{axis}", [b]), ints(f"a{axis}", [axis])]
        nodes.append(helper.make_node(
            "Slice", [data, f"s{axis}", f"e{axis}", f"a{axis}", "one"], [f"t{axis}"],
            name=f"slice{axis}"))
        data = f"t{axis}"
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 9, 10])],
        [helper.make_tensor_value_info("t3", TensorProto.FLOAT, list("abcd"))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    x = np.random.default_rng(1).standard_normal((2, 3, 9, 10)).astype(np.float32)
    assert merge_chained_slices(model) == 2
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node].count("Slice") == 1
    np.testing.assert_array_equal(_run(model, x)[0], x[:, 1:3, 2:8, 0:7])


def _scan_model(inner: onnx.ModelProto) -> onnx.ModelProto:
    """``inner``'s graph as the body of a Scan over a leading axis of x
    (its constants stay in the outer graph, as torch's exporter puts them)."""
    body = inner.graph
    x_in = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 9, 10])
    carry = helper.make_tensor_value_info("carry", TensorProto.FLOAT, [1])
    carry_out = helper.make_tensor_value_info("carry_out", TensorProto.FLOAT, [1])
    nodes = [helper.make_node("Identity", ["carry"], ["carry_out"]), *body.node]
    scan_body = helper.make_graph(nodes, "body", [carry, x_in], [carry_out, *body.output])
    outer_outputs = [helper.make_tensor_value_info(f"s_{o.name}", TensorProto.FLOAT, list("nabcd"))
                     for o in body.output]
    scan = helper.make_node(
        "Scan", ["init", "xs"], ["final", *(o.name for o in outer_outputs)],
        body=scan_body, num_scan_inputs=1)
    graph = helper.make_graph(
        [scan], "outer",
        [helper.make_tensor_value_info("init", TensorProto.FLOAT, [1]),
         helper.make_tensor_value_info("xs", TensorProto.FLOAT, [4, 2, 3, 9, 10])],
        [helper.make_tensor_value_info("final", TensorProto.FLOAT, [1]), *outer_outputs],
        list(body.initializer))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_slices_inside_a_scan_body_are_merged_too():
    model = _scan_model(_graph([(0, 4), (2, 10)]))
    xs = np.random.default_rng(1).standard_normal((4, 2, 3, 9, 10)).astype(np.float32)
    feeds = {"init": np.zeros(1, np.float32), "xs": xs}

    def run(m):
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, feeds)

    before = run(model)
    assert merge_chained_slices(model) == 1
    body = model.graph.node[0].attribute[0].g
    assert [n.op_type for n in body.node].count("Slice") == 2
    onnx.checker.check_model(model, full_check=True)
    for a, b in zip(before, run(model), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(before[1], xs[:, :, :, 1:8, 0:4])
