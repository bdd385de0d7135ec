"""Platform facts with made-up platforms: QGIS's Python on Windows (OSGeo4W),
macOS and Linux, and the NVIDIA driver through NVML or nvidia-smi."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from ada3d_qgis.dependencies import detect
from ada3d_qgis.dependencies.detect import Gpu, PythonFacts, find_python


def _only(*existing: str):
    paths = {Path(p) for p in existing}
    return lambda path: path in paths


@pytest.mark.parametrize(
    ("facts", "present", "expected"),
    [
        # OSGeo4W / standalone installer: sys.executable is qgis-bin.exe.
        (PythonFacts("windows", "C:/OSGeo4W/bin/qgis-bin.exe", "C:/OSGeo4W/apps/Python39", (3, 9)),
         ["C:/OSGeo4W/apps/Python39/python.exe"], "C:/OSGeo4W/apps/Python39/python.exe"),
        # exec_prefix pointing elsewhere: apps\Python3XX beside bin\ is found.
        (PythonFacts("windows", "C:/QGIS 3.40/bin/qgis-bin.exe", "C:/QGIS 3.40", (3, 12)),
         ["C:/QGIS 3.40/apps/Python312/python.exe"], "C:/QGIS 3.40/apps/Python312/python.exe"),
        # macOS bundle: the binary is QGIS.app/Contents/MacOS/QGIS.
        (PythonFacts("macos", "/Applications/QGIS.app/Contents/MacOS/QGIS",
                     "/Applications/QGIS.app/Contents/Frameworks/Python.framework/Versions/3.9",
                     (3, 9)),
         ["/Applications/QGIS.app/Contents/Frameworks/Python.framework/Versions/3.9/bin/python3.9"],
         "/Applications/QGIS.app/Contents/Frameworks/Python.framework/Versions/3.9/bin/python3.9"),
        (PythonFacts("macos", "/Applications/QGIS.app/Contents/MacOS/QGIS", "/nowhere", (3, 12)),
         ["/Applications/QGIS.app/Contents/MacOS/bin/python3"],
         "/Applications/QGIS.app/Contents/MacOS/bin/python3"),
        # Linux distribution package: /usr/bin/qgis on the system Python.
        (PythonFacts("linux", "/usr/bin/qgis", "/usr", (3, 11)),
         ["/usr/bin/python3.11", "/usr/bin/python3"], "/usr/bin/python3.11"),
        # Plain Python (qgis_process, tests): sys.executable is the interpreter.
        (PythonFacts("linux", "/opt/venv/bin/python", "/opt/venv", (3, 11)),
         ["/opt/venv/bin/python"], "/opt/venv/bin/python"),
    ],
)
def test_find_python_where_sys_executable_is_qgis(facts, present, expected):
    assert find_python(facts, _only(*present)) == Path(expected)


def test_find_python_names_where_it_looked(monkeypatch):
    monkeypatch.setattr(detect.shutil, "which", lambda name: None)
    facts = PythonFacts("windows", "C:/OSGeo4W/bin/qgis-bin.exe", "C:/OSGeo4W/apps/Python39",
                        (3, 9))
    with pytest.raises(RuntimeError, match=r"Python 3\.9 .*apps/Python39/python\.exe"):
        find_python(facts, _only())


@pytest.mark.parametrize(
    ("system", "machine", "os_name", "arch"),
    [("Windows", "AMD64", "windows", "x86_64"), ("Darwin", "arm64", "macos", "arm64"),
     ("Linux", "aarch64", "linux", "arm64"), ("Linux", "x86_64", "linux", "x86_64")],
)
def test_os_and_arch_names(system, machine, os_name, arch):
    assert detect.os_name(system) == os_name
    assert detect.arch_name(machine) == arch


class FakeNvml:
    """NVML's C functions as ctypes would call them."""

    def __init__(self, driver=b"580.65.06", init=0, cc=(8, 6)):
        self.driver, self.init, self.cc, self.shut = driver, init, cc, False

    def nvmlInit_v2(self):
        return self.init

    def nvmlSystemGetDriverVersion(self, buf, size):
        buf.value = self.driver
        return 0

    def nvmlDeviceGetHandleByIndex_v2(self, index, handle):
        return 0

    def nvmlDeviceGetName(self, handle, buf, size):
        buf.value = b"NVIDIA RTX A4000"
        return 0

    def nvmlDeviceGetCudaComputeCapability(self, handle, major, minor):
        major._obj.value, minor._obj.value = self.cc
        return 0

    def nvmlShutdown(self):
        self.shut = True
        return 0


def test_nvml_gives_driver_name_and_compute_capability():
    nvml = FakeNvml()
    assert detect.gpu_from_nvml(nvml) == Gpu("580.65.06", "NVIDIA RTX A4000", (8, 6))
    assert nvml.shut


def test_nvml_without_a_gpu_gives_none():
    assert detect.gpu_from_nvml(FakeNvml(init=9)) is None


@pytest.mark.parametrize(
    ("system", "name"),
    [("linux", "libnvidia-ml.so.1"), ("windows", "nvml.dll")],
)
def test_detect_gpu_loads_each_platforms_nvml(system, name):
    loaded = []

    def load(lib):
        loaded.append(lib)
        if lib != name:
            raise OSError(lib)
        return FakeNvml(b"552.22")

    gpu = detect.detect_gpu(system, load, fallback=lambda: pytest.fail("NVML worked"))
    assert gpu.driver == "552.22" and loaded[0] == name


def test_detect_gpu_falls_back_to_nvidia_smi_then_none():
    def no_lib(name):
        raise OSError(name)

    smi = Gpu("535.183.01", "Tesla T4", (7, 5))
    assert detect.detect_gpu("linux", no_lib, fallback=lambda: smi) == smi
    assert detect.detect_gpu("windows", no_lib, fallback=lambda: None) is None
    assert detect.detect_gpu("macos", no_lib, fallback=lambda: smi) is None


def test_parse_nvidia_smi():
    assert detect.parse_nvidia_smi("550.54.14, NVIDIA GeForce RTX 3060, 8.6\n") == Gpu(
        "550.54.14", "NVIDIA GeForce RTX 3060", (8, 6)
    )
    assert detect.parse_nvidia_smi("470.1, Tesla K80, [N/A]") == Gpu("470.1", "Tesla K80", None)
    assert detect.parse_nvidia_smi("NVIDIA-SMI has failed") is None


def test_this_machine_on_this_host():
    machine = detect.this_machine(gpu=False)
    assert machine.os == "linux" and machine.nvidia_driver is None
    assert machine.python == tuple(__import__("sys").version_info[:2])
    assert ctypes.sizeof(ctypes.c_void_p) == 8 and machine.arch in ("x86_64", "arm64")
