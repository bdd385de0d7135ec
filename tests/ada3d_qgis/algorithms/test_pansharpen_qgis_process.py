"""`qgis_process.bin run ada3d:pansharpen` as a subprocess, with the plugin
loaded from this checkout (see scripts/qgis_env.py), on the embedded sample."""

from __future__ import annotations

import json

import pytest
from osgeo import gdal


def test_qgis_process_runs_pansharpen(qgis_process, sample_pan, sample_ms, tiny_model, tmp_path):
    out = tmp_path / "fused.tif"
    proc = qgis_process(
        "run", "ada3d:pansharpen", "--json", "--",
        f"PANCHROMATIC={sample_pan}", f"SPECTRAL={sample_ms}", f"MODEL={tiny_model}",
        "DEVICE=0", "TILE_SIZE=256", f"OUTPUT={out}",
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = json.loads(proc.stdout[proc.stdout.index("{"):])["results"]
    assert results["OUTPUT"] == str(out)
    assert results["MODEL_USED"] == str(tiny_model)
    # Auto on a machine without a working CUDA: the CPU provider, and it says so.
    assert results["EXECUTION_PROVIDER"] == "CPUExecutionProvider"
    assert results["TILES"] > 1

    fused, pan = gdal.Open(str(out)), gdal.Open(str(sample_pan))
    assert fused.RasterCount == 4
    assert fused.GetProjection() == pan.GetProjection()
    fgt, pgt = fused.GetGeoTransform(), pan.GetGeoTransform()
    assert fgt[1] == pgt[1] and fgt[5] == pgt[5]
    # The output starts on a PAN pixel corner (the PAN grid, not the MS's).
    assert ((fgt[0] - pgt[0]) / pgt[1]) == pytest.approx(round((fgt[0] - pgt[0]) / pgt[1]))
    assert ((fgt[3] - pgt[3]) / pgt[5]) == pytest.approx(round((fgt[3] - pgt[3]) / pgt[5]))
    assert fused.GetRasterBand(3).GetDescription().startswith("Red")
    fused = pan = None
