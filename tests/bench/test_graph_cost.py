"""The multiply-add counter of bench/speed.py on a graph whose cost is known."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bench import graph_cost


def test_counts_conv_and_mul(tmp_path):
    weight = numpy_helper.from_array(np.ones((3, 2, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
            helper.make_node("Mul", ["y", "y"], ["z"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, "h", "w"])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [weight],
    )
    path = tmp_path / "g.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what onnxruntime reads, whatever this onnx writes by default
    onnx.save(model, path)
    cost = graph_cost.count(path, {"x": (1, 2, 8, 10)})
    # Conv: every output value (3 x 8 x 10) takes 2 x 3 x 3 multiply-adds.
    assert cost["conv"] == 3 * 8 * 10 * 2 * 9
    assert cost["mul"] == 3 * 8 * 10
    assert cost["unknown_nodes"] == 0
    assert cost["total"] == cost["conv"] + cost["mul"]
