import ctypes

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from tiny_models import bilinear_up

from ada3d_qgis.core.metadata import FORMAT_NAME
from ada3d_qgis.engine import Ada3DError
from ada3d_qgis.engine import session as ses


def _identity_onnx(path, props=None):
    node = helper.make_node("Identity", ["ms"], ["fused"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("ms", TensorProto.FLOAT, [1, 4, 2, 2])],
        [helper.make_tensor_value_info("fused", TensorProto.FLOAT, [1, 4, 2, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    for k, v in (props or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(path))
    return path


def test_metadata_of_an_exported_model(tiny_model):
    meta = ses.read_metadata(tiny_model)
    assert meta.format == FORMAT_NAME
    assert (meta.bands, meta.ratio) == (4, 2)
    assert meta.halo > 0 and meta.overlap >= meta.halo and meta.context_size > 0


def test_cpu_session_runs_a_tile(tiny_model):
    model = ses.open_session(tiny_model, "cpu")
    assert model.provider == "CPUExecutionProvider" and model.device_note == "CPU as requested"
    assert model.has_context
    rng = np.random.default_rng(0)
    ms = rng.standard_normal((4, 10, 12)).astype(np.float32)
    pan = rng.standard_normal((20, 24)).astype(np.float32)
    fused, own = model.run(ms, pan)
    assert fused.shape == (4, 20, 24) and own.shape == (model.metadata.context_size,)
    # The untrained model returns the bilinear interpolation of the MS.
    assert np.abs(fused - bilinear_up(ms, 2)).max() < 1e-4


def test_missing_file(tmp_path):
    with pytest.raises(Ada3DError, match="does not exist"):
        ses.read_metadata(tmp_path / "nope.onnx")


def test_corrupt_file(tmp_path, tiny_model):
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(tiny_model.read_bytes()[:5000])
    with pytest.raises(Ada3DError, match="not a readable ONNX model"):
        ses.read_metadata(bad)
    text = tmp_path / "text.onnx"
    text.write_text("hello")
    with pytest.raises(Ada3DError, match="not a readable ONNX model"):
        ses.open_session(text, "cpu")


def test_onnx_that_is_not_ada3d(tmp_path):
    path = _identity_onnx(tmp_path / "identity.onnx")
    with pytest.raises(Ada3DError, match=r"not a usable Ada3D model.*no Ada3D metadata"):
        ses.read_metadata(path)
    other = _identity_onnx(tmp_path / "other.onnx", {"format": '"something-else"'})
    with pytest.raises(Ada3DError, match="format"):
        ses.read_metadata(other)


def test_metadata_missing_keys(tmp_path, tiny_model):
    proto = onnx.load(str(tiny_model))
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in ("halo", "ratio")]
    del proto.metadata_props[:]
    for k, v in kept:
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    path = tmp_path / "nohalo.onnx"
    onnx.save(proto, str(path))
    with pytest.raises(Ada3DError, match="lacks the keys halo, ratio"):
        ses.read_metadata(path)


def test_required_cuda_libraries_follow_the_onnxruntime_build():
    from onnxruntime.capi import build_and_package_info as info

    major = info.cuda_version.split(".")[0]
    names = [n for n, _ in ses.required_cuda_libraries(major)]
    assert f"libcudart.so.{major}" in names and f"libcublas.so.{major}" in names
    assert "libcudnn.so.9" in names


def test_cuda_problem_names_each_missing_library(monkeypatch):
    real = ctypes.CDLL

    def fake(name, *args, **kwargs):
        if "cudnn" in str(name) or "cublas" in str(name):
            raise OSError(f"{name}: cannot open shared object file")
        if str(name) == "libcuda.so.1":
            return _FakeDriver()
        return real(name, *args, **kwargs) if "cuda" not in str(name) else object()

    class _FakeDriver:
        def cuInit(self, flags):
            return 0

        def cuDeviceGetCount(self, ref):
            ref._obj.value = 1
            return 0

    monkeypatch.setattr(ses.ctypes, "CDLL", fake)
    problem = ses.cuda_problem()
    assert problem is not None
    assert "cuDNN 9 (libcudnn.so.9)" in problem and "libcublas.so." in problem
    assert "driver" not in problem and "libcudart" not in problem


def test_cuda_device_fails_with_the_reason_when_cuda_cannot_run(tiny_model):
    problem = ses.cuda_problem()
    if problem is None:
        pytest.skip("CUDA really works on this machine")
    with pytest.raises(Ada3DError, match="DEVICE is CUDA, but CUDA cannot run here") as info:
        ses.open_session(tiny_model, "cuda")
    assert problem in str(info.value)
    auto = ses.open_session(tiny_model, "auto")
    assert auto.provider == "CPUExecutionProvider"
    assert auto.device_note.startswith("CPU, because CUDA cannot run here")


# --------------------------------------------------------------------------- CUDA options


def test_cuda_providers_carry_the_documented_options():
    limit = 3 * 2**30
    assert ses.providers_for("cuda", limit) == [
        (
            "CUDAExecutionProvider",
            {
                "device_id": 0,
                "cudnn_conv_algo_search": "EXHAUSTIVE",
                "arena_extend_strategy": "kSameAsRequested",
                "gpu_mem_limit": limit,
                "cudnn_conv_use_max_workspace": 1,
                "do_copy_in_default_stream": True,
            },
        ),
        "CPUExecutionProvider",
    ]
    assert ses.providers_for("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="cpu' or 'cuda"):
        ses.providers_for("auto")


def test_cuda_options_reach_onnxruntime_as_text_its_parser_accepts():
    """onnxruntime's Python layer turns every option value into text; the CUDA
    provider parses enums by name, integers by digits and booleans from
    "0"/"1"/"True"/"False"/"true"/"false"."""
    import onnxruntime as ort
    from onnxruntime.capi.onnxruntime_inference_collection import (
        check_and_normalize_provider_args,
    )

    names, options = check_and_normalize_provider_args(
        ses.providers_for("cuda", 5 * 2**30), None, ort.get_available_providers()
    )
    assert names == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert options[0] == {
        "device_id": "0",
        "cudnn_conv_algo_search": "EXHAUSTIVE",
        "arena_extend_strategy": "kSameAsRequested",
        "gpu_mem_limit": str(5 * 2**30),
        "cudnn_conv_use_max_workspace": "1",
        "do_copy_in_default_stream": "True",
    }


class _FakeDriver:
    """libcuda.so.1 with one GPU of ``total`` bytes."""

    def __init__(self, total: int):
        self.total = total

    def cuInit(self, flags):
        return 0

    def cuDeviceGet(self, ref, ordinal):
        ref._obj.value = ordinal
        return 0

    def cuDeviceTotalMem_v2(self, ref, device):
        ref._obj.value = self.total
        return 0


def test_gpu_mem_limit_from_the_environment(monkeypatch):
    monkeypatch.setenv(ses.GPU_MEM_LIMIT_ENV, "6000")
    limit, source = ses.gpu_mem_limit()
    assert limit == 6000 * 2**20 and ses.GPU_MEM_LIMIT_ENV in source
    for bad in ("lots", "-1", "0", "1.5"):
        monkeypatch.setenv(ses.GPU_MEM_LIMIT_ENV, bad)
        with pytest.raises(Ada3DError, match="whole number of MiB"):
            ses.gpu_mem_limit()


def test_gpu_mem_limit_is_a_share_of_the_device_memory(monkeypatch):
    monkeypatch.delenv(ses.GPU_MEM_LIMIT_ENV, raising=False)
    total = 40 * 2**30
    monkeypatch.setattr(ses.ctypes, "CDLL", lambda name, *a, **k: _FakeDriver(total))
    assert ses.device_total_memory() == total
    limit, source = ses.gpu_mem_limit()
    assert limit == int(total * ses.GPU_MEM_FRACTION)
    assert "40960 MiB" in source


def test_gpu_mem_limit_default_without_a_driver(monkeypatch):
    monkeypatch.delenv(ses.GPU_MEM_LIMIT_ENV, raising=False)

    def missing(name, *args, **kwargs):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ses.ctypes, "CDLL", missing)
    assert ses.device_total_memory() is None
    assert ses.gpu_mem_limit()[0] == ses.DEFAULT_GPU_MEM_LIMIT_MIB * 2**20


def test_a_cuda_provider_that_does_not_start_falls_back_on_auto(tiny_model, monkeypatch):
    """The whole CUDA branch with the options above: onnxruntime is asked for
    CUDA; where it cannot start it, ``get_providers()`` decides."""
    if ses.cuda_problem() is None:
        pytest.skip("CUDA really works on this machine")
    monkeypatch.setattr(ses, "cuda_problem", lambda: None)
    monkeypatch.setenv(ses.GPU_MEM_LIMIT_ENV, "512")
    auto = ses.open_session(tiny_model, "auto")
    assert auto.provider == "CPUExecutionProvider" and auto.io_device is None
    assert "could not start its CUDA provider" in auto.device_note
    with pytest.raises(Ada3DError, match=r"DEVICE is CUDA.*could not start its CUDA provider"):
        ses.open_session(tiny_model, "cuda")


# --------------------------------------------------------------------------- IO binding


def _random_feeds(model: ses.ModelSession, seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    k = model.metadata.context_size
    return {
        "ms": rng.standard_normal((1, 4, 9, 13)).astype(np.float32),
        "pan": rng.standard_normal((1, 1, 18, 26)).astype(np.float32),
        "context": rng.standard_normal((1, k)).astype(np.float32),
        "context_weight": np.full((1, 1), 0.5, np.float32),
    }


def test_bound_run_equals_the_plain_run(random_model):
    model = ses.open_session(random_model, "cpu")
    feeds = _random_feeds(model)
    plain = model.session.run(list(ses.OUTPUTS), feeds)
    bound = ses.run_bound(model.session, feeds, list(ses.OUTPUTS), "cpu")
    assert [b.shape for b in bound] == [(1, 4, 18, 26), (1, model.metadata.context_size)]
    for a, b in zip(plain, bound, strict=True):
        assert b.dtype == np.float32 and np.abs(a).max() > 0.1
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)
    # Outputs in the order asked for, not the graph's.
    reversed_ = ses.run_bound(model.session, feeds, list(ses.OUTPUTS)[::-1], "cpu")
    np.testing.assert_allclose(reversed_[0], plain[1], rtol=0, atol=1e-6)


def test_model_session_runs_tiles_through_the_binding(random_model, monkeypatch):
    model = ses.open_session(random_model, "cpu")
    rng = np.random.default_rng(4)
    ms = rng.standard_normal((4, 10, 12)).astype(np.float32)
    pan = rng.standard_normal((20, 24)).astype(np.float32)
    context = rng.standard_normal(model.metadata.context_size).astype(np.float32)
    plain = model.run(ms, pan, context, 1.0)
    model.io_device = "cpu"
    calls = []
    real = ses.run_bound
    monkeypatch.setattr(ses, "run_bound", lambda *a: calls.append(a[3]) or real(*a))
    bound = model.run(ms, pan, context, 1.0)
    assert calls == ["cpu"]
    for a, b in zip(plain, bound, strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)


def test_a_cuda_session_binds_tiles_on_the_gpu(tiny_model, monkeypatch):
    """Wiring only (no GPU here): when CUDA starts, the session binds on "cuda"
    and the log names the arena limit."""
    import onnxruntime as ort

    cpu = ort.InferenceSession(str(tiny_model), providers=["CPUExecutionProvider"])
    seen = {}

    def fake_open_cuda(ort_module, path, limit):
        seen["limit"] = limit
        return cpu, ""

    monkeypatch.setattr(ses, "cuda_problem", lambda: None)
    monkeypatch.setattr(ses, "_open_cuda", fake_open_cuda)
    monkeypatch.setenv(ses.GPU_MEM_LIMIT_ENV, "2048")
    model = ses.open_session(tiny_model, "cuda")
    assert model.io_device == "cuda" and seen["limit"] == 2048 * 2**20
    assert model.device_note == f"CUDA, memory arena limit 2048 MiB from {ses.GPU_MEM_LIMIT_ENV}"
    # Tiles of the metadata's size take at most TILE_BUDGET_MIB each: three fit.
    tile = model.metadata.tile_size
    assert model.tiles_per_run(tile, tile) == 2048 // ses.TILE_BUDGET_MIB == 3


def test_tiles_per_run_scale_with_the_window_within_bounds(tiny_model):
    model = ses.open_session(tiny_model, "cpu")
    tile = model.metadata.tile_size
    assert model.tiles_per_run(tile, tile) == 1  # CPU: one tile per run
    model.batch_memory = 4 * ses.TILE_BUDGET_MIB * 2**20
    assert model.tiles_per_run(tile, tile) == 4
    assert model.tiles_per_run(tile // 2, tile // 2) == ses.MAX_TILES_PER_RUN
    assert model.tiles_per_run(2 * tile, 2 * tile) == 1
    assert model.tiles_per_run(4 * tile, 4 * tile) == 1  # never none


def test_a_batch_of_tiles_equals_each_tile_alone(random_model):
    model = ses.open_session(random_model, "cpu")
    rng = np.random.default_rng(5)
    ms = rng.standard_normal((3, 4, 10, 12)).astype(np.float32)
    pan = rng.standard_normal((3, 20, 24)).astype(np.float32)
    context = rng.standard_normal(model.metadata.context_size).astype(np.float32)
    for weight in (0.0, 1.0):
        fused, own = model.run_batch(ms, pan, context, weight)
        assert fused.shape == (3, 4, 20, 24) and own.shape == (3, model.metadata.context_size)
        for k in range(3):
            alone, alone_own = model.run(ms[k], pan[k], context, weight)
            np.testing.assert_allclose(fused[k], alone, rtol=0, atol=1e-5)
            np.testing.assert_allclose(own[k], alone_own, rtol=0, atol=1e-5)
        # The tiles differ, so a mix-up between them would show.
        assert np.abs(fused[0] - fused[1]).max() > 0.1


def test_the_plugin_session_keeps_the_arena_on_and_skips_the_layout_passes(tiny_model):
    import onnxruntime as ort

    so = ses.open_session(tiny_model, "cpu").session.get_session_options()
    assert so.enable_cpu_mem_arena is True
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED


def test_skipping_the_layout_passes_leaves_the_shipped_models_output_unchanged(sample_pan,
                                                                               sample_ms):
    """The extended level runs the convolutions in plain NCHW instead of the
    blocked layout: the same results, to float32 rounding, on real imagery."""
    import onnxruntime as ort
    from osgeo import gdal

    from ada3d_qgis.engine.models import SHIPPED_DIR

    path = SHIPPED_DIR / "ada3d_r2_4b_landsat.onnx"
    model = ses.open_session(path, "cpu")
    pan = gdal.Open(str(sample_pan)).ReadAsArray()[:128, :128].astype(np.float32)
    ms = gdal.Open(str(sample_ms)).ReadAsArray()[:, :64, :64].astype(np.float32)
    pan = (pan - pan.mean()) / pan.std()
    ms = (ms - ms.mean(axis=(1, 2), keepdims=True)) / ms.std(axis=(1, 2), keepdims=True)
    fused, _ = model.run(ms, pan)

    so = ses.session_options(ort)
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    full = ort.InferenceSession(str(path), so, providers=[ses.CPU_EP])
    feeds = {"ms": ms[None], "pan": pan[None, None],
             "context": np.zeros((1, model.metadata.context_size), np.float32),
             "context_weight": np.zeros((1, 1), np.float32)}
    reference = full.run(["fused"], feeds)[0][0]
    assert fused.std() > 0.1
    np.testing.assert_allclose(fused, reference, atol=1e-4)
