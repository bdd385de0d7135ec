"""Tests of the "Assess Pansharpening Quality" algorithm (ada3d:assessquality)
through processing.run, on the real Landsat 8 sample: its numbers equal the
whole-array functions of ada3d_qgis.core.metrics on arrays built here (the
independent check of those functions is tests/ada3d_qgis/core/test_metrics.py),
the report is self-contained, errors are QgsProcessingException, and a
Graphical Modeler chain can use the numeric outputs."""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import (
    QgsApplication,
    QgsProcessingException,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterRasterLayer,
    QgsProcessingUtils,
)
from tiny_models import read_array as _read
from tiny_models import read_geo as _geo
from tiny_models import warp_window

from ada3d_qgis.core.degrade import wald_pair
from ada3d_qgis.core.metrics import no_reference_metrics, reference_metrics
from ada3d_qgis.engine.models import shipped_models

ALG = "ada3d:assessquality"
REL = 1e-9
REF_KEYS = {"Q2N": "Q2N", "SAM": "SAM", "ERGAS": "ERGAS", "SCC": "SCC", "PSNR": "PSNR"}
NOREF_KEYS = {"D_LAMBDA": "D_LAMBDA", "D_S": "D_S", "QNR": "QNR"}


def _run(alg: str, params: dict) -> dict:
    import processing

    return processing.run(alg, params)




def _write(path, image, gt, wkt) -> str:
    image = image.reshape(-1, *image.shape[-2:])
    ds = gdal.GetDriverByName("GTiff").Create(
        str(path), image.shape[2], image.shape[1], image.shape[0], gdal.GDT_Float32
    )
    ds.SetGeoTransform(gt)
    ds.SetProjection(wkt)
    for i, band in enumerate(image):
        b = ds.GetRasterBand(i + 1)
        b.WriteArray(band)
        del b
    ds = None
    return str(path)




def _expected(result: dict, keys: dict) -> dict:
    return {k: result[v] for k, v in keys.items()}


def _assert_close(outputs: dict, expected: dict) -> None:
    for key, value in expected.items():
        assert outputs[key] == pytest.approx(value, rel=REL), key


@pytest.fixture(scope="module")
def sample(sample, ada3d_provider):
    """The conftest's sample, once the provider is registered."""
    return sample


@pytest.fixture(scope="module")
def study(sample, ada3d_provider, tmp_path_factory):
    """A reduced-resolution study made by hand: a Wald pair of the sample (60 m
    MS, 30 m PAN sharing the MS corner) pansharpened by gdal:pansharp; the
    original MS (30 m) is its reference."""
    folder = tmp_path_factory.mktemp("study")
    ms_lr, pan_lr, target = wald_pair(sample["ms"], sample["pan"], 2, 2)
    gt = sample["ms_gt"]
    ms_path = _write(folder / "ms_lr.tif", ms_lr, (gt[0], 60.0, 0, gt[3], 0, -60.0),
                     sample["wkt"])
    pan_path = _write(folder / "pan_lr.tif", pan_lr, gt, sample["wkt"])
    fused = str(folder / "fused.tif")
    _run("gdal:pansharp", {"SPECTRAL": ms_path, "PANCHROMATIC": pan_path, "OUTPUT": fused})
    return {"ms_lr": ms_path, "pan_lr": pan_path, "fused": fused, "target": target,
            "folder": folder}


def test_registered_with_icon_help_and_outputs(ada3d_provider):
    alg = QgsApplication.processingRegistry().algorithmById(ALG)
    assert alg is not None and alg.displayName() == "Assess Pansharpening Quality"
    assert not alg.icon().isNull()
    assert "QNR" in alg.shortHelpString() and "ERGAS" in alg.shortHelpString()
    for param in alg.parameterDefinitions():
        assert param.help(), param.name()
    outputs = {o.name(): o.type() for o in alg.outputDefinitions()}
    for key in (*REF_KEYS, *NOREF_KEYS, "RATIO"):
        assert outputs[key] == "outputNumber", key
    assert outputs["OUTPUT_HTML"] == "outputHtml"


def test_with_reference_equals_the_metrics_module(study, sample, sample_ms):
    out = _run(ALG, {"FUSED": study["fused"], "PANCHROMATIC": study["pan_lr"],
                     "SPECTRAL": study["ms_lr"], "REFERENCE": str(sample_ms)})
    fused = _read(study["fused"])
    assert fused.shape == sample["ms"].shape
    expected = reference_metrics(sample["ms"], fused, 2, data_range=65535.0)
    _assert_close(out, _expected(expected, REF_KEYS))
    assert all(math.isnan(out[k]) for k in NOREF_KEYS)
    assert out["MODE"] == "reference" and out["RATIO"] == 2 and out["OUTPUT_HTML"] is None


def test_without_reference_equals_the_metrics_module(sample, sample_ms, sample_pan, tmp_path):
    fused_path = str(tmp_path / "fused_full.tif")
    _run("gdal:pansharp", {"SPECTRAL": str(sample_ms), "PANCHROMATIC": str(sample_pan),
                           "OUTPUT": fused_path})
    assert _geo(fused_path)[0] == sample["pan_gt"]  # gdal:pansharp writes on the PAN grid
    out = _run(ALG, {"FUSED": fused_path, "PANCHROMATIC": str(sample_pan),
                     "SPECTRAL": str(sample_ms)})
    # The scored area: the whole 512 x 512 PAN (every PAN pixel whose centre the
    # MS covers), the MS cubic-resampled onto the exact 2 x PAN grid there.
    gt = sample["pan_gt"]
    ms = warp_window(sample_ms, gt[0], gt[3], 30.0, 256)
    fused = _read(fused_path)
    expected = no_reference_metrics(fused, ms, sample["pan"], 2)
    _assert_close(out, _expected(expected, NOREF_KEYS))
    assert all(math.isnan(out[k]) for k in REF_KEYS)
    assert out["MODE"] == "no-reference"


def _reduced_by_hand(sample, sample_ms, sample_pan, folder, method: str, extra=None) -> dict:
    """The reduced-resolution protocol in memory: PAN onto the exact MS / 2
    grid, wald_pair, the method, reference_metrics against the MS."""
    ms_gt = sample["ms_gt"]
    pan_fine = warp_window(sample_pan, ms_gt[0], ms_gt[3], 15.0, 511)[0]
    ms_lr, pan_lr, target = wald_pair(sample["ms"], pan_fine, 2, 2)
    ms_path = _write(folder / "h_ms_lr.tif", ms_lr, (ms_gt[0], 60.0, 0, ms_gt[3], 0, -60.0),
                     sample["wkt"])
    pan_path = _write(folder / "h_pan_lr.tif", pan_lr, ms_gt, sample["wkt"])
    fused_path = str(folder / "h_fused.tif")
    params = {"SPECTRAL": ms_path, "PANCHROMATIC": pan_path, "OUTPUT": fused_path}
    _run(method, {**params, **(extra or {})})
    return reference_metrics(target, _read(fused_path), 2, data_range=65535.0)


def test_reduced_resolution_with_gdal_pansharp(sample, sample_ms, sample_pan, tmp_path):
    html = tmp_path / "reduced.html"
    out = _run(ALG, {"PANCHROMATIC": str(sample_pan), "SPECTRAL": str(sample_ms),
                     "REDUCED_RESOLUTION": True, "METHOD": 1, "OUTPUT_HTML": str(html)})
    expected = _reduced_by_hand(sample, sample_ms, sample_pan, tmp_path, "gdal:pansharp")
    _assert_close(out, _expected(expected, REF_KEYS))
    assert out["MODE"] == "reduced-resolution" and math.isnan(out["QNR"])
    text = html.read_text(encoding="utf-8")
    assert "gdal:pansharp" in text and "Reference (original MS)" in text
    # No temporary file left behind, neither next to the report nor in
    # Processing's temporary folder (the degraded inputs and the fused image).
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("h_")) == [
        "reduced.html"
    ]
    assert not list(Path(QgsProcessingUtils.tempFolder()).glob("ada3d_wald_*"))


def test_reduced_resolution_with_ada3d_pansharpen(sample, sample_ms, sample_pan, tmp_path):
    if QgsApplication.processingRegistry().algorithmById("ada3d:pansharpen") is None:
        pytest.skip("ada3d:pansharpen is not registered yet (issue 4)")
    if not any(m.ratio == 2 and m.bands == 4 for _, m in shipped_models()):
        pytest.skip("no shipped Ada3D model for 4 bands at ratio 2 yet (issue 3)")
    import processing
    from processing_task import LogFeedback

    feedback = LogFeedback()
    out = processing.run(ALG, {"PANCHROMATIC": str(sample_pan), "SPECTRAL": str(sample_ms),
                               "REDUCED_RESOLUTION": True, "METHOD": 0}, feedback=feedback)
    expected = _reduced_by_hand(sample, sample_ms, sample_pan, tmp_path, "ada3d:pansharpen")
    _assert_close(out, _expected(expected, REF_KEYS))
    # The log speaks the report's names and hides the child run's internals:
    # one results dictionary (the algorithm's own, printed by QGIS), no temporary paths.
    log = "\n".join(feedback.infos)
    assert sum(line.startswith("Results:") for line in feedback.infos) == 1
    assert "ada3d_wald_" not in log and "(temporary folder)" in log
    assert "Not computed in this mode (NaN): D_lambda, D_s, QNR." in feedback.infos
    assert any(line.startswith("Scores: Q2n ") for line in feedback.infos)


def test_report_is_self_contained(study, sample_ms, tmp_path):
    html = tmp_path / "report.html"
    out = _run(ALG, {"FUSED": study["fused"], "PANCHROMATIC": study["pan_lr"],
                     "SPECTRAL": study["ms_lr"], "REFERENCE": str(sample_ms),
                     "OUTPUT_HTML": str(html)})
    assert out["OUTPUT_HTML"] == str(html) and html.is_file()
    text = html.read_text(encoding="utf-8")
    assert "href" not in text and "url(" not in text and "<script" not in text
    sources = re.findall(r'src="([^"]*)"', text)
    assert len(sources) == 11  # (MS, PAN, fused, reference, SAM) x (overview, crop) + legend
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    for key in REF_KEYS:
        assert f'id="{key}">{out[key]:.4f}<' in text
    assert 'id="QNR">n/a<' in text


def test_errors_are_processing_exceptions(study, sample, sample_ms, sample_pan, tmp_path):
    gt = sample["ms_gt"]
    shifted = _write(tmp_path / "shifted.tif", sample["ms"], (gt[0] + 15.0, 30.0, 0, gt[3], 0,
                                                              -30.0), sample["wkt"])
    two = _write(tmp_path / "two.tif", sample["ms"][:2], gt, sample["wkt"])
    base = {"FUSED": study["fused"], "PANCHROMATIC": study["pan_lr"], "SPECTRAL": study["ms_lr"]}
    cases = [
        ({"REFERENCE": shifted}, "fraction of a pixel"),
        ({"REFERENCE": two}, "reference has 2"),
        # Without a reference the fused raster (30 m) must be on the PAN grid (15 m).
        ({"PANCHROMATIC": str(sample_pan), "SPECTRAL": str(sample_ms)}, "not the panchromatic"),
        ({"FUSED": None}, "reduced-resolution"),
    ]
    for change, message in cases:
        with pytest.raises(QgsProcessingException, match=message):
            _run(ALG, {**base, **change})


def test_modeler_chain_uses_a_numeric_output(study, sample, sample_ms, tmp_path):
    """gdal:pansharp -> ada3d:assessquality -> a constant raster whose value is
    the chain's Q2n, built as a model in code and run through processing.run."""
    model = QgsProcessingModelAlgorithm("assess chain", "tests")
    for name in ("ms_lr", "pan_lr", "reference"):
        model.addModelParameter(QgsProcessingParameterRasterLayer(name, name),
                                QgsProcessingModelParameter(name))
    src = QgsProcessingModelChildParameterSource

    sharpen = QgsProcessingModelChildAlgorithm("gdal:pansharp")
    sharpen.setChildId("sharpen")
    sharpen.addParameterSources("SPECTRAL", [src.fromModelParameter("ms_lr")])
    sharpen.addParameterSources("PANCHROMATIC", [src.fromModelParameter("pan_lr")])
    sharpen.addParameterSources("RESAMPLING", [src.fromStaticValue(2)])
    sharpen.addParameterSources("OPTIONS", [src.fromStaticValue("")])
    model.addChildAlgorithm(sharpen)

    assess = QgsProcessingModelChildAlgorithm(ALG)
    assess.setChildId("assess")
    assess.addParameterSources("FUSED", [src.fromChildOutput("sharpen", "OUTPUT")])
    assess.addParameterSources("PANCHROMATIC", [src.fromModelParameter("pan_lr")])
    assess.addParameterSources("SPECTRAL", [src.fromModelParameter("ms_lr")])
    assess.addParameterSources("REFERENCE", [src.fromModelParameter("reference")])
    assess.addParameterSources("REDUCED_RESOLUTION", [src.fromStaticValue(False)])
    assess.addParameterSources("METHOD", [src.fromStaticValue(1)])
    model.addChildAlgorithm(assess)

    const = QgsProcessingModelChildAlgorithm("native:createconstantrasterlayer")
    const.setChildId("q2n_raster")
    extent = f"{sample['ms_gt'][0]},{sample['ms_gt'][0] + 300},{sample['ms_gt'][3] - 300}," \
             f"{sample['ms_gt'][3]} [EPSG:32616]"
    const.addParameterSources("EXTENT", [src.fromStaticValue(extent)])
    const.addParameterSources("TARGET_CRS", [src.fromStaticValue("EPSG:32616")])
    const.addParameterSources("PIXEL_SIZE", [src.fromStaticValue(100.0)])
    const.addParameterSources("NUMBER", [src.fromChildOutput("assess", "Q2N")])
    const.addParameterSources("OUTPUT_TYPE", [src.fromStaticValue(6)])  # Float64
    output = QgsProcessingModelOutput("q2n", "Q2n as a raster")
    output.setChildOutputName("OUTPUT")
    const.setModelOutputs({"q2n": output})
    model.addChildAlgorithm(const)
    model.updateDestinationParameters()

    dest = str(tmp_path / "q2n.tif")
    results = _run(model, {"ms_lr": study["ms_lr"], "pan_lr": study["pan_lr"],
                           "reference": str(sample_ms), "q2n_raster:q2n": dest})
    value = _read(results["q2n_raster:q2n"])
    direct = reference_metrics(sample["ms"], _read(study["fused"]), 2, 65535.0)["Q2N"]
    assert np.allclose(value, direct, rtol=1e-12, atol=0)
    assert 0.5 < direct < 1.0
    del model



def test_cancel_leaves_no_report(study, sample_ms, tmp_path):
    import processing
    from qgis.core import QgsProcessingFeedback

    feedback = QgsProcessingFeedback()
    feedback.cancel()
    html = tmp_path / "cancelled.html"
    out = processing.run(ALG, {"FUSED": study["fused"], "PANCHROMATIC": study["pan_lr"],
                               "SPECTRAL": study["ms_lr"], "REFERENCE": str(sample_ms),
                               "OUTPUT_HTML": str(html)}, feedback=feedback)
    assert "Q2N" not in out and not html.exists()
