"""Facts about the machine QGIS runs on: OS, CPU architecture, the Python
interpreter behind QGIS, and the NVIDIA driver (through NVML, else
``nvidia-smi``). Each fact has a pure function that tests feed with made-up
facts, and a default that reads them from this process.
"""

from __future__ import annotations

import ctypes
import os
import platform
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .plan import Machine


def os_name(system: str | None = None) -> str:
    """"linux", "windows" or "macos" (``platform.system()`` otherwise, lower-cased)."""
    system = platform.system() if system is None else system
    return {"Linux": "linux", "Windows": "windows", "Darwin": "macos"}.get(system, system.lower())


def arch_name(machine: str | None = None) -> str:
    """"x86_64" or "arm64" (other names lower-cased as they are)."""
    machine = (platform.machine() if machine is None else machine).lower()
    if machine in ("x86_64", "amd64", "x64"):
        return "x86_64"
    if machine in ("arm64", "aarch64", "armv8"):
        return "arm64"
    return machine


# --------------------------------------------------------------------- Python


@dataclass(frozen=True)
class PythonFacts:
    """What this process knows about its interpreter."""

    os: str
    executable: str
    exec_prefix: str
    version: tuple[int, int]


def python_candidates(facts: PythonFacts) -> list[Path]:
    """Where the interpreter of a QGIS may be, best first.

    Inside QGIS ``sys.executable`` is the QGIS binary (``qgis-bin.exe``, the
    macOS bundle's ``QGIS``, ``/usr/bin/qgis``), not Python.
    """
    exe = Path(facts.executable)
    prefix = Path(facts.exec_prefix)
    major, minor = facts.version
    ver = f"{major}.{minor}"
    found: list[Path] = []
    if exe.name.lower().startswith("python"):
        found.append(exe)
    if facts.os == "windows":
        # OSGeo4W and the standalone installer: <root>\bin\qgis-bin.exe and
        # <root>\apps\Python3XX\python.exe, which is also sys.exec_prefix.
        found += [prefix / "python.exe", prefix / "python3.exe"]
        root = exe.parent.parent
        found += [root / "apps" / f"Python{major}{minor}" / "python.exe", exe.parent / "python.exe"]
        found += [exe.parent / "python3.exe"]
    elif facts.os == "macos":
        # QGIS.app/Contents/MacOS/QGIS; the bundle keeps its Python in
        # Contents/MacOS/bin or in Contents/Frameworks/Python.framework.
        found += [prefix / "bin" / f"python{ver}", prefix / "bin" / "python3"]
        found += [exe.parent / "bin" / f"python{ver}", exe.parent / "bin" / "python3"]
        frameworks = exe.parent.parent / "Frameworks" / "Python.framework" / "Versions" / ver
        found.append(frameworks / "bin" / f"python{ver}")
    else:
        found += [prefix / "bin" / f"python{ver}", prefix / "bin" / "python3"]
        found += [Path("/usr/bin") / f"python{ver}"]
    unique: list[Path] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def find_python(facts: PythonFacts, is_file: Callable[[Path], bool] = Path.is_file) -> Path:
    """The interpreter QGIS runs on; RuntimeError naming where it looked."""
    candidates = python_candidates(facts)
    for path in candidates:
        if is_file(path):
            return path
    ver = f"{facts.version[0]}.{facts.version[1]}"
    which = shutil.which(f"python{ver}") if facts.os != "windows" else None
    if which:
        return Path(which)
    looked = ", ".join(str(p) for p in candidates)
    raise RuntimeError(f"Python {ver} of this QGIS was not found (looked at {looked}).")


def this_python() -> PythonFacts:
    return PythonFacts(
        os_name(), sys.executable, sys.exec_prefix, (sys.version_info[0], sys.version_info[1])
    )


# --------------------------------------------------------------------- NVIDIA


@dataclass(frozen=True)
class Gpu:
    driver: str
    name: str = ""
    compute_capability: tuple[int, int] | None = None


def nvml_names(system: str) -> list[str]:
    """Where NVML lives: the driver installs it in the loader's path (Linux) or
    System32 (Windows; older drivers under NVSMI)."""
    if system == "linux":
        return ["libnvidia-ml.so.1"]
    if system == "windows":
        program_files = os.environ.get("ProgramFiles", r"C:\Program Files")
        return ["nvml.dll", str(Path(program_files) / "NVIDIA Corporation" / "NVSMI" / "nvml.dll")]
    return []


def gpu_from_nvml(lib) -> Gpu | None:
    """Driver version, name and compute capability of GPU 0 through an NVML
    library object (``ctypes.CDLL``), or None when NVML finds no GPU."""
    if lib.nvmlInit_v2() != 0:
        return None
    try:
        buf = ctypes.create_string_buffer(96)
        if lib.nvmlSystemGetDriverVersion(buf, 96) != 0:
            return None
        driver = buf.value.decode(errors="replace")
        handle = ctypes.c_void_p()
        name, cc = "", None
        if lib.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(handle)) != 0:
            return None
        name_buf = ctypes.create_string_buffer(96)
        if lib.nvmlDeviceGetName(handle, name_buf, 96) == 0:
            name = name_buf.value.decode(errors="replace")
        major, minor = ctypes.c_int(), ctypes.c_int()
        status = lib.nvmlDeviceGetCudaComputeCapability(
            handle, ctypes.byref(major), ctypes.byref(minor)
        )
        if status == 0:
            cc = (major.value, minor.value)
        return Gpu(driver, name, cc)
    finally:
        lib.nvmlShutdown()


def parse_nvidia_smi(text: str) -> Gpu | None:
    """GPU 0 from ``nvidia-smi --query-gpu=driver_version,name,compute_cap
    --format=csv,noheader`` (compute_cap may be "[N/A]" on old tools)."""
    for line in text.strip().splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 2 or not fields[0][:1].isdigit():
            continue
        cc = None
        if len(fields) > 2:
            try:
                a, b = fields[2].split(".")
                cc = (int(a), int(b))
            except ValueError:
                cc = None
        return Gpu(fields[0], fields[1], cc)
    return None


def _nvidia_smi() -> Gpu | None:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    from qgis.PyQt.QtCore import QProcess

    proc = QProcess()
    proc.start(exe, ["--query-gpu=driver_version,name,compute_cap", "--format=csv,noheader"])
    if not proc.waitForFinished(10000) or proc.exitCode() != 0:
        proc.kill()
        return None
    return parse_nvidia_smi(bytes(proc.readAllStandardOutput()).decode(errors="replace"))


def detect_gpu(
    system: str | None = None,
    load: Callable[[str], object] = ctypes.CDLL,
    fallback: Callable[[], Gpu | None] = _nvidia_smi,
) -> Gpu | None:
    """The first NVIDIA GPU, or None: NVML first, ``nvidia-smi`` otherwise."""
    system = os_name() if system is None else system
    for name in nvml_names(system):
        try:
            lib = load(name)
        except OSError:
            continue
        try:
            gpu = gpu_from_nvml(lib)
        except (AttributeError, OSError):
            gpu = None
        if gpu is not None:
            return gpu
    if system == "macos":
        return None
    return fallback()


def this_machine(cpu_only: bool = False, gpu: Gpu | bool | None = True) -> Machine:
    """The plan's facts for this process (``gpu=True``: detect it)."""
    found = detect_gpu() if gpu is True else gpu or None
    return Machine(
        os=os_name(),
        python=(sys.version_info[0], sys.version_info[1]),
        arch=arch_name(),
        nvidia_driver=found.driver if found else None,
        compute_capability=found.compute_capability if found else None,
        cpu_only=cpu_only,
    )


def describe_gpu(gpu: Gpu | None) -> str:
    if gpu is None:
        return "no NVIDIA GPU found"
    cc = ""
    if gpu.compute_capability:
        cc = f", compute capability {gpu.compute_capability[0]}.{gpu.compute_capability[1]}"
    return f"{gpu.name or 'NVIDIA GPU'} (driver {gpu.driver}{cc})"
