"""How much of the matrix-multiply peak the model's graph can reach on this CPU.

Issue 7 asks for 40 % of the dense float32 matrix-multiply peak. That figure
only means something next to the graph's arithmetic intensity: Ada3D's
adaptive convolution multiplies every voxel by its own kernel, so each of its
multiply-adds reads and writes whole feature-sized tensors, once per tap. This
module measures the second roof, the rate at which onnxruntime's own Mul
streams data on the same threads (the fastest of chains on 1 to 16 MiB
tensors, so the caches count in its favour), counts the bytes every node of
the graph reads and writes (bench/graph_cost.traffic), and puts the two
together as a lower bound on the time per pixel:

    seconds >= elementwise bytes / bandwidth + dense multiply-adds / matmul peak

that is, as if every dense op ran at the matrix-multiply peak and every other
op as fast as a plain Mul on cache-sized tensors. The multiply-adds per second
at that bound, over the peak, is the share no schedule of this graph's
operators can exceed here.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bench.common import cpu_session_options
from bench.graph_cost import graph_costs

#: Elements of each operand of the bandwidth probes: 1, 4 and 16 MiB of
#: float32. The largest is a feature tensor of the shipped models' 256 px tile
#: (16 channels x 4 bands), the smaller ones stay in this machine's L2 and L3
#: caches. The roof is the fastest of them: a bound, not a forecast.
PROBE_ELEMENTS = (2**18, 2**20, 2**22)

#: Mul nodes in the probe's chain.
PROBE_MULS = 8


def _mul_chain(n: int) -> bytes:
    """x_k = x_(k-1) * b, PROBE_MULS times, then the sum of x: the
    intermediates are onnxruntime's own allocations, as a model's are (an
    output handed back to Python would be a fresh block every run)."""
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [n]) for name in "ab"]
    out = helper.make_tensor_value_info("total", TensorProto.FLOAT, [1])
    nodes = [helper.make_node("Mul", ["a" if k == 0 else f"x{k - 1}", "b"], [f"x{k}"])
             for k in range(PROBE_MULS)]
    nodes.append(helper.make_node("ReduceSum", [f"x{PROBE_MULS - 1}"], ["total"], keepdims=1))
    graph = helper.make_graph(nodes, "mul_chain", inputs, [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model.SerializeToString()


def elementwise_bandwidth(threads: int, repeats: int = 5) -> float:
    """Bytes per second onnxruntime's Mul moves (two tensors read, one
    written) in a chain of them, with the plugin's CPU options on ``threads``
    threads: the best run of the fastest of the PROBE_ELEMENTS sizes."""
    import onnxruntime as ort


    rng = np.random.default_rng(0)
    best_rate = 0.0
    for n in PROBE_ELEMENTS:
        sess = ort.InferenceSession(_mul_chain(n), cpu_session_options(threads),
                                    providers=["CPUExecutionProvider"])
        feeds = {"a": rng.standard_normal(n, np.float32),
                 # Close to 1, so that the chain stays finite.
                 "b": (1 + 1e-3 * rng.standard_normal(n)).astype(np.float32)}
        sess.run(None, feeds)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            sess.run(None, feeds)
            best = min(best, time.perf_counter() - start)
        moved = (3 * PROBE_MULS + 1) * 4 * n  # each Mul 2 in + 1 out; the sum 1 in
        best_rate = max(best_rate, moved / best)
    return best_rate


def graph_traffic(model: Path, meta, pan_px: int = 64) -> dict[str, float]:
    """Per PAN pixel: dense multiply-adds (Conv, MatMul, Gemm, Einsum),
    elementwise multiplies, and the bytes elementwise and indexing nodes read
    and write (activations; the graph as exported, before onnxruntime's
    rewrites), as bench/graph_cost counts them."""
    meta_dict = {"ratio": meta.ratio, "bands": meta.bands, "context_size": meta.context_size}
    cost = graph_costs(model, None, meta_dict, pan_px)["float32"]
    return {"dense_macs": cost.macs_tensor, "elementwise_macs": cost.macs_mul,
            "elementwise_bytes": cost.bytes_elementwise, "dense_io_bytes": cost.bytes_compute_io}


def ceiling(
    graph: dict[str, float], bandwidth: float, peak: float, target: float = 0.4
) -> dict[str, float]:
    """The lower bound on seconds per PAN pixel, the largest share of the
    matrix-multiply peak it allows (see the module's docstring), and the
    elementwise bytes per pixel a graph with these multiply-adds could move
    at most to reach ``target`` of the peak."""
    seconds = graph["elementwise_bytes"] / bandwidth + graph["dense_macs"] / peak
    macs = graph["dense_macs"] + graph["elementwise_macs"]
    budget = macs / (target * peak) - graph["dense_macs"] / peak
    return {"seconds_per_pixel": seconds, "macs_per_s": macs / seconds,
            "share_of_peak": macs / seconds / peak, "target": target,
            "elementwise_bytes_for_target": max(budget, 0.0) * bandwidth}
