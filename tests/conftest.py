"""Shared fixtures: a real (headless) QGIS with Processing and this plugin's
provider registered, and paths to the embedded sample imagery."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def sample_ms() -> Path:
    """Real Landsat 8 MS crop: 256 x 256, 4 bands (B, G, R, NIR), uint16, 30 m."""
    return DATA / "l8_ms.tif"


@pytest.fixture(scope="session")
def sample_pan() -> Path:
    """Real Landsat 8 PAN crop: 512 x 512, uint16, 15 m, half a PAN pixel off the MS grid."""
    return DATA / "l8_pan.tif"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present (only in the development workplace)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ada3d_provider(qgis_processing):
    """The Ada3D provider registered in the QGIS Processing registry."""
    from qgis.core import QgsApplication

    from ada3d_qgis.provider import Ada3DProvider

    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("ada3d")
    if provider is None:
        provider = Ada3DProvider()
        assert registry.addProvider(provider)
    return provider


@pytest.fixture(scope="session")
def qgis_process(tmp_path_factory):
    """Run ``qgis_process.bin`` with this checkout's plugin loaded.

    A throw-away QGIS configuration folder gets a profile whose plugin folder
    links to the checkout's ``ada3d_qgis`` (enabled in QGIS3.ini) and whose
    plugin-owned dependency folder links to this environment's onnxruntime,
    which is how ``make deploy`` lays out a real profile.
    """
    import shutil
    import subprocess
    import sys

    import onnxruntime

    exe = shutil.which("qgis_process.bin")
    if exe is None:
        pytest.fail("qgis_process.bin not found (Debian package qgis missing?)")
    config = tmp_path_factory.mktemp("qgis_config")
    profile = config / "profiles" / "default"
    plugins = profile / "python" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "ada3d_qgis").symlink_to(REPO / "ada3d_qgis", target_is_directory=True)
    (profile / "QGIS").mkdir()
    (profile / "QGIS" / "QGIS3.ini").write_text("[PythonPlugins]\nada3d_qgis=true\n")
    deps = profile / "ada3d_qgis_deps" / f"py{sys.version_info.major}{sys.version_info.minor}"
    deps.mkdir(parents=True)
    (deps / "onnxruntime").symlink_to(Path(onnxruntime.__file__).parent, target_is_directory=True)
    env = dict(os.environ, QGIS_CUSTOM_CONFIG_PATH=str(config), QT_QPA_PLATFORM="offscreen")
    # qgis_process must use QGIS's own Python, not this virtualenv.
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(var, None)

    def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            [exe, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )

    return run
