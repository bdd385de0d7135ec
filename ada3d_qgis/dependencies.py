"""Python packages the plugin needs beyond what QGIS ships (onnxruntime).

QGIS runs its own Python, which does not see a development virtualenv, and on
Debian its system Python refuses a plain ``pip install``. So the plugin keeps
its dependencies in a folder of its own inside the user's QGIS profile,
installs them there with ``pip install --target`` (from the plugin's menu, on
first use, or by ``make deploy``), and puts that folder on ``sys.path``.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

#: Pinned so that what a user installs is what the tests ran. --no-deps keeps
#: pip away from QGIS's own numpy; these are onnxruntime's other run-time needs.
REQUIREMENTS = ("onnxruntime-gpu==1.31.1", "flatbuffers", "protobuf>=4.25.8")
#: Modules that must import for the plugin to work.
MODULES = ("onnxruntime",)


def default_deps_dir() -> Path:
    """``<QGIS profile>/ada3d_qgis_deps/py3XX`` (compiled wheels are per Python version)."""
    from qgis.core import QgsApplication

    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    return Path(QgsApplication.qgisSettingsDirPath()) / "ada3d_qgis_deps" / tag


def add_to_path(deps_dir: Path | None = None) -> Path:
    """Put the dependency folder first on ``sys.path`` (idempotent)."""
    folder = deps_dir or default_deps_dir()
    if folder.is_dir() and str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
        importlib.invalidate_caches()
    return folder


def missing_modules() -> list[str]:
    missing = []
    for name in MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def python_executable() -> str:
    """The Python interpreter behind this QGIS (``sys.executable`` is the QGIS
    binary itself when running inside QGIS)."""
    candidates = []
    if Path(sys.executable).name.lower().startswith("python"):
        candidates.append(sys.executable)
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    prefix = Path(sys.exec_prefix)
    candidates += [
        str(prefix / "bin" / f"python{ver}"),
        str(prefix / "bin" / "python3"),
        str(prefix / "python.exe"),
        str(prefix / "python3.exe"),
        shutil.which(f"python{ver}") or "",
        shutil.which("python3") or "",
    ]
    for exe in candidates:
        if exe and Path(exe).is_file():
            return exe
    raise RuntimeError("could not find the Python interpreter QGIS runs on")


def install_command(deps_dir: Path) -> list[str]:
    return [
        python_executable(), "-m", "pip", "install", "--disable-pip-version-check",
        "--upgrade", "--no-deps", "--target", str(deps_dir), *REQUIREMENTS,
    ]


def install(deps_dir: Path | None = None) -> Path:
    """Install the dependencies into ``deps_dir``; raises RuntimeError with
    pip's own output when it fails (no network, no pip, ...)."""
    folder = deps_dir or default_deps_dir()
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(install_command(folder), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"pip could not install {', '.join(REQUIREMENTS)}:\n{tail}")
    add_to_path(folder)
    return folder


def main() -> int:
    """``python -m ada3d_qgis.dependencies DEPS_DIR``: used by ``make deploy``."""
    if len(sys.argv) != 2:
        print("usage: python -m ada3d_qgis.dependencies DEPS_DIR", file=sys.stderr)
        return 2
    folder = install(Path(sys.argv[1]))
    print(f"installed {', '.join(REQUIREMENTS)} into {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
