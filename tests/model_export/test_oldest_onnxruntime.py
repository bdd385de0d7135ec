"""The shipped models in the oldest onnxruntime a dependency plan installs
(Python 3.9's, in .venv/ort-oldest from scripts/setup.sh): they load through
the plugin's own session code and give the current onnxruntime's output on
real Landsat 8 imagery."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from osgeo import gdal

from ada3d_qgis.dependencies.plan import oldest_onnxruntime
from ada3d_qgis.engine.session import open_session
from scripts.qgis_env import REPO

OLDEST = REPO / ".venv" / "ort-oldest"
MODELS = sorted((REPO / "ada3d_qgis" / "models").glob("*.onnx"))

CHILD = """
import sys
import numpy as np
import onnxruntime
from pathlib import Path
from ada3d_qgis.engine.session import open_session
assert onnxruntime.__version__ == sys.argv[1], onnxruntime.__version__
model = open_session(Path(sys.argv[2]), "cpu")
fused, own = model.run(np.load(sys.argv[3]), np.load(sys.argv[4]))
np.save(sys.argv[5], fused)
print(model.provider, onnxruntime.__version__)
"""


def _real_tile(ratio: int):
    """A normalised 128 x 128 PAN window of the sample and its MS window."""
    pan_ds, ms_ds = gdal.Open(str(REPO / "tests/data/l8_pan.tif")), gdal.Open(
        str(REPO / "tests/data/l8_ms.tif"))
    pan = pan_ds.ReadAsArray(128, 128, 128, 128).astype(np.float32)
    ms = ms_ds.ReadAsArray(64, 64, 64, 64).astype(np.float32)[:, :: ratio // 2, :: ratio // 2]
    ms = (ms - ms.mean(axis=(1, 2), keepdims=True)) / ms.std(axis=(1, 2), keepdims=True)
    return ms.copy(), (pan - pan.mean()) / pan.std()


@pytest.mark.skipif(not OLDEST.is_dir(), reason="scripts/setup.sh installs .venv/ort-oldest")
@pytest.mark.parametrize("model", MODELS, ids=lambda p: p.name)
def test_shipped_model_matches_in_the_oldest_planned_onnxruntime(model, tmp_path):
    current = open_session(model, "cpu")
    ms, pan = _real_tile(current.metadata.ratio)
    expected, _ = current.run(ms, pan)
    np.save(tmp_path / "ms.npy", ms)
    np.save(tmp_path / "pan.npy", pan)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(OLDEST), str(REPO)]))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, oldest_onnxruntime(), str(model), str(tmp_path / "ms.npy"),
         str(tmp_path / "pan.npy"), str(tmp_path / "out.npy")],
        env=env, capture_output=True, text=True, check=False, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["CPUExecutionProvider", oldest_onnxruntime()]
    old = np.load(tmp_path / "out.npy")
    assert old.shape == expected.shape == (4, 128, 128)
    diff = float(np.abs(old - expected).max())
    print(f"{model.name}: onnxruntime {oldest_onnxruntime()} vs current, max |diff| {diff:.2e}")
    assert diff <= 1e-5
