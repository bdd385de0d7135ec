"""The dependency plan: the pinned requirements each kind of machine gets,
from the command line and as a pure function."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ada3d_qgis.dependencies import plan as rules
from ada3d_qgis.dependencies.plan import Machine, UnsupportedMachineError, plan_for
from scripts.qgis_env import REPO

PY39 = Path("/root/.pyenv/versions/3.9.18/bin/python")


@pytest.mark.parametrize(
    ("machine", "flavour", "onnxruntime"),
    [
        (Machine("linux", (3, 12), "x86_64", "580.65.06"), "cuda13", "onnxruntime-gpu==1.31.1"),
        (Machine("windows", (3, 12), "x86_64", "581.57"), "cuda13", "onnxruntime-gpu==1.31.1"),
        (Machine("linux", (3, 11), "x86_64", "550.54.14"), "cuda12", "onnxruntime-gpu==1.26.0"),
        (Machine("windows", (3, 12), "x86_64", "528.33"), "cuda12", "onnxruntime-gpu==1.26.0"),
        # CUDA 13 dropped Pascal (6.1): a GTX 1080 with a new driver stays on CUDA 12.
        (Machine("linux", (3, 12), "x86_64", "580.9", (6, 1)), "cuda12", "onnxruntime-gpu==1.26.0"),
        (Machine("linux", (3, 12), "x86_64", "580.9", (7, 5)), "cuda13", "onnxruntime-gpu==1.31.1"),
        # QGIS 3.22-3.28 on Windows: Python 3.9, whose last builds are CUDA 12.
        (Machine("windows", (3, 9), "x86_64", "580.88"), "cuda12", "onnxruntime-gpu==1.19.2"),
        (Machine("windows", (3, 9), "x86_64", None), "cpu", "onnxruntime==1.19.2"),
        (Machine("linux", (3, 10), "x86_64", "535.183"), "cuda12", "onnxruntime-gpu==1.23.2"),
        (Machine("linux", (3, 12), "x86_64", "470.256.02"), "cpu", "onnxruntime==1.32.0"),
        (Machine("linux", (3, 12), "x86_64", None), "cpu", "onnxruntime==1.32.0"),
        (Machine("linux", (3, 12), "arm64", "580.1"), "cpu", "onnxruntime==1.32.0"),
        (Machine("macos", (3, 12), "arm64", None), "cpu", "onnxruntime==1.32.0"),
        (Machine("macos", (3, 11), "x86_64", None), "cpu", "onnxruntime==1.23.2"),
        (Machine("linux", (3, 12), "x86_64", "580.65.06", cpu_only=True), "cpu",
         "onnxruntime==1.32.0"),
    ],
)
def test_plan_per_machine(machine, flavour, onnxruntime):
    plan = plan_for(machine)
    assert (plan.flavour, plan.onnxruntime) == (flavour, onnxruntime)
    assert plan.reason.endswith(".")
    names = [r.split("==")[0] for r in plan.requirements]
    if flavour == "cpu":
        assert names == ["onnxruntime"]
    else:
        major = flavour[-2:]
        suffix = "-cu12" if major == "12" else ""
        for lib in ("nvidia-cuda-runtime", "nvidia-cublas", "nvidia-curand", "nvidia-cufft"):
            assert lib + suffix in names
        assert f"nvidia-cudnn-cu{major}" in names


@pytest.mark.parametrize(
    "machine",
    [
        Machine("linux", (3, 8)),
        Machine("linux", (3, 15)),
        Machine("windows", (3, 12), "arm64"),
        Machine("macos", (3, 14), "x86_64"),
        Machine("freebsd", (3, 11)),
    ],
)
def test_unsupported_machines_get_a_sentence(machine):
    with pytest.raises(UnsupportedMachineError, match=r"\w.*\.$"):
        plan_for(machine)


def test_every_plan_is_pinned_and_never_mixes_cpu_and_gpu_builds():
    plans = rules.every_plan()
    assert len(plans) > 40
    for plan in plans.values():
        assert all("==" in r for r in plan.requirements)
        names = {r.split("==")[0] for r in plan.requirements}
        assert not {"onnxruntime", "onnxruntime-gpu"} <= names
        assert len(names) == len(plan.requirements)


def test_oldest_onnxruntime_is_the_python_39_build():
    assert rules.oldest_onnxruntime() == "1.19.2"


def _cli(*args, python=sys.executable):
    return subprocess.run([str(python), "-m", "ada3d_qgis.dependencies", *args], cwd=REPO,
                          capture_output=True, text=True, check=False, timeout=120)


def test_cli_prints_the_pinned_requirements_one_per_line():
    proc = _cli("plan", "--os", "linux", "--python", "3.12", "--nvidia-driver", "580.65.06")
    assert proc.returncode == 0, proc.stderr
    expected = plan_for(Machine("linux", (3, 12), "x86_64", "580.65.06")).requirements
    assert proc.stdout.splitlines() == list(expected)
    cpu = _cli("plan", "--os", "windows", "--python", "3.9")
    assert cpu.stdout.splitlines() == ["onnxruntime==1.19.2"]


@pytest.mark.parametrize(
    "args",
    [
        ("plan", "--os", "linux", "--python", "3.8"),
        ("plan", "--os", "windows", "--python", "3.12", "--arch", "arm64"),
        ("plan", "--os", "linux"),
        ("plan", "--os", "solaris", "--python", "3.12"),
    ],
)
def test_cli_exits_2_with_a_sentence_when_unsupported(args):
    proc = _cli(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip()


def test_cli_plan_for_this_machine_matches_detection():
    from ada3d_qgis.dependencies.detect import this_machine

    proc = _cli("plan")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == list(plan_for(this_machine()).requirements)


@pytest.mark.skipif(not PY39.is_file(), reason="no Python 3.9 interpreter on this machine")
def test_cli_runs_on_python_39():
    proc = _cli("plan", "--os", "windows", "--python", "3.9", "--nvidia-driver", "552.22",
                python=PY39)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "onnxruntime-gpu==1.19.2"
