"""bench/roofline.py: the traffic count, the bandwidth probe and the ceiling."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from ada3d_qgis.engine.session import read_metadata
from bench import roofline
from bench.graph_cost import traffic


def test_a_slice_counts_what_it_copies_not_its_whole_input(tmp_path):
    starts, ends, axes = (helper.make_tensor(n, TensorProto.INT64, [1], [v])
                          for n, v in (("s", 2), ("e", 6), ("a", 1)))
    graph = helper.make_graph(
        [helper.make_node("Slice", ["x", "s", "e", "a"], ["y"]),
         helper.make_node("Mul", ["y", "y"], ["z"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])], [starts, ends, axes])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    elementwise, compute, kernels = traffic(path, {"x": [1, 10], "y": [1, 4], "z": [1, 4],
                                                   "s": [1], "e": [1], "a": [1]})
    # Slice: 4 floats read, 4 written; Mul: 8 read, 4 written.
    assert elementwise == 4 * (4 + 4) + 4 * (8 + 4)
    assert compute == 0 and kernels == 2


def test_the_ceiling_adds_the_two_roofs():
    graph = {"dense_macs": 100e3, "elementwise_macs": 20e3, "elementwise_bytes": 300e3,
             "dense_io_bytes": 0.0}
    roof = roofline.ceiling(graph, bandwidth=15e9, peak=100e9, target=0.4)
    assert roof["seconds_per_pixel"] == pytest.approx(300e3 / 15e9 + 100e3 / 100e9)
    assert roof["share_of_peak"] == pytest.approx(120e3 / roof["seconds_per_pixel"] / 100e9)
    # 40 % of the peak leaves 120e3 / 40e9 - 100e3 / 100e9 = 2 µs for 30 kB at 15 GB/s.
    assert roof["elementwise_bytes_for_target"] == pytest.approx(30e3)
    # The ceiling rises when the traffic falls.
    lean = roofline.ceiling({**graph, "elementwise_bytes": 30e3}, 15e9, 100e9)
    assert lean["share_of_peak"] == pytest.approx(0.4)


def test_graph_traffic_of_an_exported_ada3d(tiny_model):
    graph = roofline.graph_traffic(tiny_model, read_metadata(tiny_model), pan_px=32)
    assert graph["dense_macs"] > 0 and graph["elementwise_macs"] > 0
    # The adaptive convolution: every tap reads and writes feature-sized tensors,
    # so each elementwise multiply comes with several bytes moved.
    assert graph["elementwise_bytes"] > 4 * graph["elementwise_macs"]


def test_the_bandwidth_probe_measures_something_plausible(monkeypatch):
    monkeypatch.setattr(roofline, "PROBE_ELEMENTS", (2**16, 2**18))
    bandwidth = roofline.elementwise_bandwidth(threads=1, repeats=2)
    assert 1e8 < bandwidth < 1e12 and np.isfinite(bandwidth)
