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
def sample_ms_512() -> Path:
    """A larger real Landsat 8 MS crop: 512 x 512, 4 bands (B, G, R, NIR), uint16."""
    return DATA / "l8_ms_512.tif"


@pytest.fixture(scope="session")
def sample_pan_1024() -> Path:
    """Its PAN: 1024 x 1024, uint16, 15 m, half a PAN pixel off the MS grid."""
    return DATA / "l8_pan_1024.tif"


@pytest.fixture(scope="session")
def sample(sample_ms, sample_pan) -> dict:
    """The sample as arrays (float64) with its geotransforms and CRS."""
    from tiny_models import read_array, read_geo

    ms_gt, wkt = read_geo(sample_ms)
    pan_gt, _ = read_geo(sample_pan)
    return {"ms": read_array(sample_ms), "pan": read_array(sample_pan), "ms_gt": ms_gt,
            "pan_gt": pan_gt, "wkt": wkt}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present (only in the development workplace)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "ada3d_tiny_models"


@pytest.fixture(scope="session")
def tiny_model(model_dir) -> Path:
    """Untrained tiny Ada3D: returns the bilinear interpolation of the MS."""
    from tiny_models import export_tiny

    return export_tiny(model_dir, "tiny_bilinear", randomise=False)


@pytest.fixture(scope="session")
def agnostic_model(model_dir) -> Path:
    """Tiny band-agnostic Ada3D (3 to 6 bands, random weights; dynamo export)."""
    from tiny_models import export_agnostic

    return export_agnostic(model_dir)


@pytest.fixture(scope="session")
def random_model(model_dir) -> Path:
    """Random head weights: a generic network whose output depends on the context."""
    from tiny_models import export_tiny

    return export_tiny(model_dir, "tiny_random", randomise=True)


@pytest.fixture(scope="session")
def small(tmp_path_factory, sample_pan, sample_ms) -> tuple[Path, Path]:
    """(pan, ms): 98 x 98 PAN and 49 x 49 MS crops of the sample (96 x 96 output)."""
    from tiny_models import small_pair

    return small_pair(tmp_path_factory.mktemp("small"), sample_pan, sample_ms)


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
    """Run ``qgis_process.bin`` (args...) with this checkout's plugin loaded,
    in a throw-away QGIS configuration (see scripts/qgis_env.py)."""
    from scripts.qgis_env import prepare_config, run_qgis_process

    env = prepare_config(tmp_path_factory.mktemp("qgis_config"))

    def run(*args: str, timeout: float = 600):
        return run_qgis_process(env, *args, timeout=timeout)

    return run
