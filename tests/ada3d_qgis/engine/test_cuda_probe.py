"""The CUDA probe with made-up platforms: each OS's library names, and the
CUDA libraries of nvidia-* wheels loaded before a CUDA session exists."""

from __future__ import annotations

import pytest

from ada3d_qgis.engine import session as ses


class _Driver:
    def cuInit(self, flags):
        return 0

    def cuDeviceGetCount(self, ref):
        ref._obj.value = 1
        return 0


def _fake_cdll(missing: tuple[str, ...], driver: str):
    def fake(name, *args, **kwargs):
        if str(name) == driver:
            return _Driver()
        if any(m in str(name) for m in missing):
            raise OSError(f"{name}: cannot be loaded")
        return object()

    return fake


def test_windows_probe_uses_nvcuda_and_dll_names(monkeypatch):
    monkeypatch.setattr(ses.ctypes, "CDLL", _fake_cdll(("cudnn64_9", "cublas64_"), "nvcuda.dll"))
    monkeypatch.setattr(ses, "preload_cuda_libraries", lambda system: [])
    problem = ses.cuda_problem("Windows")
    assert problem is not None
    assert "cuDNN 9 (cudnn64_9.dll)" in problem and "cuBLAS (cublas64_" in problem
    assert "driver" not in problem and ".so" not in problem


def test_windows_without_the_driver_names_nvcuda(monkeypatch):
    monkeypatch.setattr(ses.ctypes, "CDLL", _fake_cdll(("nvcuda",), "none"))
    monkeypatch.setattr(ses, "preload_cuda_libraries", lambda system: [])
    assert "nvcuda.dll cannot be loaded" in ses.cuda_problem("Windows")


def test_linux_probe_passes_when_everything_loads(monkeypatch):
    monkeypatch.setattr(ses.ctypes, "CDLL", _fake_cdll((), "libcuda.so.1"))
    monkeypatch.setattr(ses, "preload_cuda_libraries", lambda system: [])
    assert ses.cuda_problem("Linux") is None


def test_macos_has_no_cuda():
    assert "no CUDA support on Darwin" in ses.cuda_problem("Darwin")


def test_probe_preloads_wheel_libraries_before_checking(monkeypatch):
    order = []
    monkeypatch.setattr(ses.ctypes, "CDLL", _fake_cdll((), "libcuda.so.1"))
    monkeypatch.setattr(ses, "preload_cuda_libraries", lambda system: order.append("preload"))
    real_load = ses._load
    monkeypatch.setattr(ses, "_load", lambda name: order.append(name) or real_load(name))
    ses.cuda_problem("Linux")
    assert order[0] == "preload" and order[1].startswith("libcudart.so.")


def _touch(root, *names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_preload_linux_wheels_in_dependency_order(tmp_path):
    # CUDA 12 layout: one nvidia/<component>/lib per wheel.
    _touch(tmp_path, "nvidia/cublas/lib/libcublas.so.12", "nvidia/cublas/lib/libcublasLt.so.12",
           "nvidia/cuda_runtime/lib/libcudart.so.12", "nvidia/cudnn/lib/libcudnn.so.9",
           "nvidia/cudnn/lib/libcudnn_graph.so.9", "nvidia/cufft/lib/libcufft.so.11",
           "nvidia/cublas/include/cublas.h", "nvidia/nccl/lib/libnccl.so.2")
    loaded = []

    def load(path):
        name = path.rsplit("/", 1)[1]
        # libcublas needs libcublasLt, libcudnn needs libcudnn_graph.
        needs = {"libcublas.so.12": "libcublasLt.so.12", "libcudnn.so.9": "libcudnn_graph.so.9"}
        if name in needs and needs[name] not in loaded:
            raise OSError(f"{needs[name]}: cannot open shared object file")
        loaded.append(name)

    names = ses.preload_cuda_libraries("Linux", [str(tmp_path), "/nonexistent"], load)
    assert sorted(names) == sorted(loaded) == sorted([
        "libcublas.so.12", "libcublasLt.so.12", "libcudart.so.12", "libcudnn.so.9",
        "libcudnn_graph.so.9", "libcufft.so.11"])
    assert loaded.index("libcublasLt.so.12") < loaded.index("libcublas.so.12")


def test_preload_windows_wheels_adds_their_dll_folders(tmp_path):
    # CUDA 13 layout: one nvidia/cu13/bin/x86_64 for the toolkit, cuDNN apart.
    _touch(tmp_path, "nvidia/cu13/bin/x86_64/cudart64_13.dll",
           "nvidia/cu13/bin/x86_64/cublas64_13.dll", "nvidia/cudnn/bin/cudnn64_9.dll")
    folders, loaded = [], []
    names = ses.preload_cuda_libraries(
        "Windows", [str(tmp_path)], lambda p: loaded.append(p), folders.append
    )
    assert sorted(names) == ["cublas64_13.dll", "cudart64_13.dll", "cudnn64_9.dll"]
    assert sorted(folders) == sorted([str(tmp_path / "nvidia/cu13/bin/x86_64"),
                                      str(tmp_path / "nvidia/cudnn/bin")])


def test_preload_without_wheels_loads_nothing(tmp_path):
    assert ses.preload_cuda_libraries("Linux", [str(tmp_path)], pytest.fail) == []


@pytest.mark.parametrize("system", ["Linux", "Windows"])
def test_required_libraries_per_platform(system):
    names = [n for n, _ in ses.required_cuda_libraries("13", system)]
    assert len(names) == 5
    assert all(n.endswith(".dll") == (system == "Windows") for n in names)
    assert any("13" in n for n in names)
