"""A throw-away QGIS configuration in which ``qgis_process.bin`` loads this
checkout's plugin, without touching the user's own QGIS profile.

The profile's plugin folder links to the checkout's ``ada3d_qgis`` (enabled in
QGIS3.ini) and its plugin-owned dependency folder links to this environment's
onnxruntime: the same layout ``make deploy`` gives a real profile.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _link(link: Path, target: Path) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target, target_is_directory=target.is_dir())


def prepare_config(config: Path) -> dict[str, str]:
    """Lay out ``config`` and return the environment for ``qgis_process.bin``."""
    import onnxruntime

    profile = config / "profiles" / "default"
    plugins = profile / "python" / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    _link(plugins / "ada3d_qgis", REPO / "ada3d_qgis")
    (profile / "QGIS").mkdir(exist_ok=True)
    (profile / "QGIS" / "QGIS3.ini").write_text("[PythonPlugins]\nada3d_qgis=true\n")
    deps = profile / "ada3d_qgis_deps" / f"py{sys.version_info.major}{sys.version_info.minor}"
    deps.mkdir(parents=True, exist_ok=True)
    _link(deps / "onnxruntime", Path(onnxruntime.__file__).parent)
    env = dict(os.environ, QGIS_CUSTOM_CONFIG_PATH=str(config), QT_QPA_PLATFORM="offscreen")
    # qgis_process runs QGIS's own Python, not this virtualenv.
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(var, None)
    return env


def qgis_process_exe() -> str:
    exe = shutil.which("qgis_process.bin")
    if exe is None:
        raise RuntimeError("qgis_process.bin not found: run make setup (Debian package qgis)")
    return exe


def run_qgis_process(
    env: dict[str, str], *args: str, timeout: float = 1800
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [qgis_process_exe(), *args], env=env, capture_output=True, text=True,
        timeout=timeout, check=False,
    )
