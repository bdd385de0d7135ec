"""`make gpu-check` in its dry mode (CPU, small mosaic): every step but the GPU."""

from __future__ import annotations

import json

import pytest

from scripts import gpu_check
from scripts.qgis_env import REPO


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path, capsys):
    model = REPO / "ada3d_qgis" / "models" / "ada3d_r2_4b_landsat.onnx"
    out = tmp_path / "gpu.json"
    assert gpu_check.main(["--dry-run", "--size", "512", "--models", str(model),
                           "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["dry_run"] and report["size"] == 512
    f32, f16 = report["results"]
    assert (f32["precision"], f16["precision"]) == ("float32", "float16")
    for row in (f32, f16):
        assert row["providers"] == ["CPUExecutionProvider"]
        assert row["profile"] == {"CPUExecutionProvider": 1.0}
        assert row["tiles"] >= 4 and row["tiles_per_run"] == 1
    assert f32["max_diff"] <= 1e-4
    assert 0 < f16["max_diff"] < 0.05
    assert "DRY RUN on the CPU" in capsys.readouterr().out


def test_gpu_check_refuses_a_size_off_the_sample_grid():
    with pytest.raises(SystemExit):
        gpu_check.main(["--dry-run", "--size", "1000"])
