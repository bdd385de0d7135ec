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
