"""Which pinned pip requirements a machine gets: pure rules over a table of
versions checked on the package index (no network, no QGIS).

The table below records what ``pip index versions`` and ``pip install
--dry-run --report`` showed for each package, Python version and platform
(``scripts/verify_plan.py`` repeats that check for every plan). Rules:

- NVIDIA GPU (Linux or Windows, x86_64) with driver >= 580 and compute
  capability >= 7.5 (or unknown): the newest CUDA 13 onnxruntime-gpu with
  its CUDA 13 and cuDNN 9 runtime wheels;
- NVIDIA GPU with an older driver (>= 525, the CUDA 12 minimum), or a GPU
  CUDA 13 dropped: the last CUDA 12 onnxruntime-gpu with CUDA 12 runtime
  wheels;
- no usable NVIDIA GPU, macOS, or "CPU only": the CPU ``onnxruntime``;
- Python 3.9 and 3.10 get the newest releases that still ship wheels for
  them (1.19.2 and 1.23.2; both CUDA 12 builds for the GPU).

Everything is installed with ``--no-deps``: onnxruntime's Python needs at
run time are numpy, which QGIS ships, and the listed CUDA wheels.
"""

from __future__ import annotations

from dataclasses import dataclass

OSES = ("linux", "windows", "macos")
ARCHES = ("x86_64", "arm64")

#: CPU onnxruntime: {python: {(os, arch): version}}.
_CPU_MODERN = {
    ("linux", "x86_64"): "1.32.0",
    ("linux", "arm64"): "1.32.0",
    ("windows", "x86_64"): "1.32.0",
    ("macos", "arm64"): "1.32.0",
}
CPU_ORT: dict[tuple[int, int], dict[tuple[str, str], str]] = {
    (3, 9): {key: "1.19.2" for key in [*_CPU_MODERN, ("macos", "x86_64")]},
    (3, 10): {key: "1.23.2" for key in [*_CPU_MODERN, ("macos", "x86_64")]},
    # onnxruntime dropped Intel macOS after 1.23.2, which has no 3.14 wheel.
    (3, 11): {**_CPU_MODERN, ("macos", "x86_64"): "1.23.2"},
    (3, 12): {**_CPU_MODERN, ("macos", "x86_64"): "1.23.2"},
    (3, 13): {**_CPU_MODERN, ("macos", "x86_64"): "1.23.2"},
    (3, 14): dict(_CPU_MODERN),
}
#: onnxruntime-gpu for CUDA 13 (Linux and Windows x86_64; Python >= 3.11 only).
GPU_CUDA13 = {(3, 11): "1.31.1", (3, 12): "1.31.1", (3, 13): "1.31.1", (3, 14): "1.31.1"}
#: The last onnxruntime-gpu built for CUDA 12 that ships wheels for each Python.
GPU_CUDA12 = {
    (3, 9): "1.19.2",
    (3, 10): "1.23.2",
    (3, 11): "1.26.0",
    (3, 12): "1.26.0",
    (3, 13): "1.26.0",
    (3, 14): "1.26.0",
}
#: What onnxruntime-gpu's [cuda,cudnn] extras resolve to (1.31.1: CUDA 13;
#: 1.23.2 and 1.26.0: CUDA 12), pinned to versions that exist for both
#: manylinux x86_64 and win_amd64. 1.19.2 has no extras and gets the CUDA 12 set.
CUDA_WHEELS = {
    13: (
        "nvidia-cublas==13.10.0.20",
        "nvidia-cuda-nvrtc==13.5.37",
        "nvidia-cuda-runtime==13.5.37",
        "nvidia-cudnn-cu13==9.28.1.4",
        "nvidia-cufft==12.5.0.14",
        "nvidia-curand==10.4.5.25",
        "nvidia-nvjitlink==13.5.37",
    ),
    12: (
        "nvidia-cublas-cu12==12.9.2.10",
        "nvidia-cuda-nvrtc-cu12==12.9.86",
        "nvidia-cuda-runtime-cu12==12.9.79",
        "nvidia-cudnn-cu12==9.28.0.42",
        "nvidia-cufft-cu12==11.4.1.4",
        "nvidia-curand-cu12==10.3.10.19",
        "nvidia-nvjitlink-cu12==12.9.86",
    ),
}
#: Oldest NVIDIA driver (major version) each CUDA major runs on: NVIDIA's
#: minor version compatibility table.
MIN_DRIVER = {13: 580, 12: 525}
#: CUDA 13 dropped GPUs below compute capability 7.5 (Turing).
CUDA13_MIN_COMPUTE = (7, 5)


class UnsupportedMachineError(ValueError):
    """No plan can serve this machine; the message says why, as a sentence."""


@dataclass(frozen=True)
class Machine:
    """The facts a plan depends on."""

    os: str
    python: tuple[int, int]
    arch: str = "x86_64"
    #: NVIDIA driver version ("580.65.06"), None without an NVIDIA GPU.
    nvidia_driver: str | None = None
    #: Compute capability of the first GPU, when known.
    compute_capability: tuple[int, int] | None = None
    cpu_only: bool = False


@dataclass(frozen=True)
class Plan:
    requirements: tuple[str, ...]
    #: "cpu", "cuda12" or "cuda13".
    flavour: str
    #: Why this flavour, as a sentence for the user.
    reason: str

    @property
    def onnxruntime(self) -> str:
        """The onnxruntime requirement alone ("onnxruntime-gpu==1.31.1")."""
        return self.requirements[0]


def parse_version(text: str) -> tuple[int, ...]:
    """(580, 65, 6) from "580.65.06"; ValueError when not a dotted number."""
    parts = tuple(int(p) for p in text.strip().split("."))
    if not parts:
        raise ValueError(text)
    return parts


def parse_python(text: str) -> tuple[int, int]:
    parts = parse_version(text)
    if len(parts) < 2:
        raise ValueError(f"Python version {text!r} must be MAJOR.MINOR, e.g. 3.12")
    return parts[0], parts[1]


def _cpu(machine: Machine, reason: str) -> Plan:
    version = CPU_ORT.get(machine.python, {}).get((machine.os, machine.arch))
    if version is None:
        raise UnsupportedMachineError(
            f"onnxruntime publishes no wheel for Python {machine.python[0]}.{machine.python[1]} "
            f"on {machine.os} {machine.arch}, so Ada3D cannot run in this QGIS."
        )
    return Plan((f"onnxruntime=={version}",), "cpu", reason)


def plan_for(machine: Machine) -> Plan:
    """The pinned requirements for ``machine``; UnsupportedMachineError when none."""
    if machine.os not in OSES:
        raise UnsupportedMachineError(f"Ada3D supports {', '.join(OSES)}, not {machine.os}.")
    if machine.arch not in ARCHES:
        raise UnsupportedMachineError(
            f"Ada3D supports x86_64 and arm64 machines, not {machine.arch}."
        )
    if machine.python not in CPU_ORT:
        known = ", ".join(f"{a}.{b}" for a, b in CPU_ORT)
        raise UnsupportedMachineError(
            f"Ada3D supports QGIS running Python {known}; this one runs "
            f"{machine.python[0]}.{machine.python[1]}."
        )
    if machine.cpu_only:
        return _cpu(machine, "CPU only, as asked.")
    if machine.os == "macos":
        return _cpu(machine, "onnxruntime has no CUDA build for macOS: CPU.")
    if not machine.nvidia_driver:
        return _cpu(machine, "No NVIDIA GPU was found: CPU.")
    if machine.arch != "x86_64":
        return _cpu(machine, "onnxruntime-gpu is published for x86_64 only: CPU.")
    try:
        driver = parse_version(machine.nvidia_driver)
    except ValueError:
        return _cpu(machine, f"NVIDIA driver version {machine.nvidia_driver!r} is unreadable: CPU.")
    old_gpu = machine.compute_capability is not None and (
        machine.compute_capability < CUDA13_MIN_COMPUTE
    )
    cuda13 = GPU_CUDA13.get(machine.python)
    if cuda13 and not old_gpu and driver[0] >= MIN_DRIVER[13]:
        return Plan(
            (f"onnxruntime-gpu=={cuda13}", *CUDA_WHEELS[13]),
            "cuda13",
            f"NVIDIA driver {machine.nvidia_driver} runs CUDA 13.",
        )
    if driver[0] >= MIN_DRIVER[12]:
        why = (
            f"CUDA 13 dropped GPUs of compute capability {machine.compute_capability[0]}."
            f"{machine.compute_capability[1]}"
            if old_gpu
            else "onnxruntime's CUDA 13 builds need Python 3.11 or newer"
            if not cuda13
            else f"NVIDIA driver {machine.nvidia_driver} is older than 580 (CUDA 13)"
        )
        return Plan(
            (f"onnxruntime-gpu=={GPU_CUDA12[machine.python]}", *CUDA_WHEELS[12]),
            "cuda12",
            f"{why}: CUDA 12.",
        )
    return _cpu(
        machine,
        f"NVIDIA driver {machine.nvidia_driver} is older than {MIN_DRIVER[12]}, the oldest "
        "CUDA 12 runs on: CPU (update the driver to use the GPU).",
    )


def oldest_onnxruntime() -> str:
    """The oldest onnxruntime version any plan installs (models must load in it)."""
    versions = {v for row in CPU_ORT.values() for v in row.values()}
    versions |= set(GPU_CUDA12.values()) | set(GPU_CUDA13.values())
    return min(versions, key=parse_version)


def every_plan() -> dict[tuple[str, str, tuple[int, int], str], Plan]:
    """{(os, arch, python, flavour): plan} over the whole table (for checks)."""
    drivers = (None, "535.0", "580.95")
    plans = {}
    for python, row in CPU_ORT.items():
        for os_name, arch in row:
            for driver in drivers:
                plan = plan_for(Machine(os_name, python, arch, driver))
                plans[(os_name, arch, python, plan.flavour)] = plan
    return plans
