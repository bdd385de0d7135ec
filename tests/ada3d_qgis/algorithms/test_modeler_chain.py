"""ada3d:pansharpen inside a Graphical Modeler chain:
gdal:cliprasterbyextent -> ada3d:pansharpen -> native:rasterlayerstatistics,
run through processing.run, saved as tests/data/pansharpen_chain.model3, and
that committed file run through qgis_process.bin."""

from __future__ import annotations

import json
import os

import numpy as np
import processing
import pytest
from osgeo import gdal
from processing_task import destination, run_like_the_dialog
from qgis.core import (
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterRasterLayer,
    QgsProject,
)
from qgis.PyQt.QtCore import QPointF

from scripts.qgis_env import REPO

MODEL3 = REPO / "tests" / "data" / "pansharpen_chain.model3"
FUSED = "sharpen:fused"  # the model's destination parameters: childId:outputName
REPORT = "stats:report"
# A sub-extent of the sample (EPSG:32616), a little larger than 100 x 100 MS pixels.
EXTENT = "465000,468000,3393000,3396000 [EPSG:32616]"
#: Where the Graphical Modeler draws each component: inputs in a column on the
#: left, then the steps left to right, each output to the right of its step.
LAYOUT = {
    "pan": (120, 80), "ms": (120, 200), "extent": (120, 320), "onnx": (120, 440),
    "clip": (400, 260), "sharpen": (680, 140), "stats": (960, 260),
    "fused": (960, 60), "report": (1240, 260),
}


def _source(name):
    return QgsProcessingModelChildParameterSource.fromModelParameter(name)


def build_chain() -> QgsProcessingModelAlgorithm:
    model = QgsProcessingModelAlgorithm("Clip, pansharpen, statistics", "Ada3D tests")
    for param in (
        QgsProcessingParameterRasterLayer("pan", "Panchromatic"),
        QgsProcessingParameterRasterLayer("ms", "Multispectral"),
        QgsProcessingParameterExtent("extent", "Area to pansharpen"),
        QgsProcessingParameterFile("onnx", "Ada3D model", extension="onnx", optional=True),
    ):
        component = QgsProcessingModelParameter(param.name())
        component.setPosition(QPointF(*LAYOUT[param.name()]))
        model.addModelParameter(param, component)

    clip = QgsProcessingModelChildAlgorithm("gdal:cliprasterbyextent")
    clip.setChildId("clip")
    clip.setPosition(QPointF(*LAYOUT["clip"]))
    clip.addParameterSources("INPUT", [_source("ms")])
    clip.addParameterSources("PROJWIN", [_source("extent")])
    model.addChildAlgorithm(clip)

    sharpen = QgsProcessingModelChildAlgorithm("ada3d:pansharpen")
    sharpen.setChildId("sharpen")
    sharpen.setPosition(QPointF(*LAYOUT["sharpen"]))
    sharpen.addParameterSources("PANCHROMATIC", [_source("pan")])
    sharpen.addParameterSources(
        "SPECTRAL", [QgsProcessingModelChildParameterSource.fromChildOutput("clip", "OUTPUT")]
    )
    sharpen.addParameterSources("MODEL", [_source("onnx")])
    cpu = QgsProcessingModelChildParameterSource.fromStaticValue(2)
    sharpen.addParameterSources("DEVICE", [cpu])
    out = QgsProcessingModelOutput("fused", "Pansharpened")
    out.setChildId("sharpen")
    out.setChildOutputName("OUTPUT")
    out.setPosition(QPointF(*LAYOUT["fused"]))
    sharpen.setModelOutputs({"fused": out})
    sharpen.setDependencies([])
    model.addChildAlgorithm(sharpen)

    stats = QgsProcessingModelChildAlgorithm("native:rasterlayerstatistics")
    stats.setChildId("stats")
    stats.setPosition(QPointF(*LAYOUT["stats"]))
    stats.addParameterSources(
        "INPUT", [QgsProcessingModelChildParameterSource.fromChildOutput("sharpen", "OUTPUT")]
    )
    stats.addParameterSources("BAND", [QgsProcessingModelChildParameterSource.fromStaticValue(1)])
    report = QgsProcessingModelOutput("report", "Statistics of band 1")
    report.setChildId("stats")
    report.setChildOutputName("OUTPUT_HTML_FILE")
    report.setPosition(QPointF(*LAYOUT["report"]))
    stats.setModelOutputs({"report": report})
    model.addChildAlgorithm(stats)
    model.updateDestinationParameters()
    return model


def _params(sample_pan, sample_ms, model_file, out):
    return {"pan": str(sample_pan), "ms": str(sample_ms), "extent": EXTENT,
            "onnx": str(model_file), FUSED: str(out), REPORT: str(out.with_suffix(".html"))}


def _check_fused(path, sample_ms):
    ds = gdal.Open(str(path))
    gt = ds.GetGeoTransform()
    assert ds.RasterCount == 4
    assert gt[1] == pytest.approx(15.0) and gt[5] == pytest.approx(-15.0)
    # The clip limits the output to about 3 km x 3 km, not the whole sample.
    assert 190 <= ds.RasterXSize <= 210 and 190 <= ds.RasterYSize <= 210
    ms = gdal.Open(str(sample_ms))
    assert ds.GetRasterBand(1).DataType == ms.GetRasterBand(1).DataType
    data = ds.GetRasterBand(1).ReadAsArray()
    ds = ms = None
    return data


def test_chain_runs_in_processing(ada3d_provider, sample_pan, sample_ms, tiny_model, tmp_path):
    chain = build_chain()
    assert [chain.childAlgorithm(c).algorithmId() for c in ("clip", "sharpen", "stats")] == [
        "gdal:cliprasterbyextent", "ada3d:pansharpen", "native:rasterlayerstatistics"]
    out = tmp_path / "fused.tif"
    result = processing.run(chain, _params(sample_pan, sample_ms, tiny_model, out))
    data = _check_fused(result[FUSED], sample_ms)
    # The statistics step ran on the pansharpened raster: its report gives band 1's mean.
    html = open(result[REPORT]).read()
    mean = float(html.split("Mean value:")[1].split("<")[0])
    assert mean == pytest.approx(float(data.mean()), rel=1e-6)


def test_committed_model3_matches_the_builder(ada3d_provider, tmp_path):
    """tests/data/pansharpen_chain.model3 is what build_chain() saves (set
    ADA3D_WRITE_MODEL3=1 to rewrite it from the builder)."""
    if os.environ.get("ADA3D_WRITE_MODEL3"):
        assert build_chain().toFile(str(MODEL3))
    committed = QgsProcessingModelAlgorithm()
    assert committed.fromFile(str(MODEL3)), f"{MODEL3} is missing or unreadable"
    assert sorted(committed.childAlgorithms()) == ["clip", "sharpen", "stats"]
    built = build_chain()  # kept alive: its parameter objects belong to it
    for child_id in ("clip", "sharpen", "stats"):
        assert (committed.childAlgorithm(child_id).algorithmId()
                == built.childAlgorithm(child_id).algorithmId())
    assert {p.name() for p in committed.parameterDefinitions()} == {
        p.name() for p in built.parameterDefinitions()}


def test_committed_model3_reads_left_to_right(ada3d_provider):
    """In the Graphical Modeler the chain reads left to right: inputs first,
    each step right of what it reads, no two components on one spot."""
    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(MODEL3))
    pos = {name: model.parameterComponent(name).position()
           for name in ("pan", "ms", "extent", "onnx")}
    for child_id in ("clip", "sharpen", "stats"):
        child = model.childAlgorithm(child_id)
        pos[child_id] = child.position()
        for name, output in child.modelOutputs().items():
            pos[name] = output.position()
    assert {k: (p.x(), p.y()) for k, p in pos.items()} == LAYOUT
    x = {k: p.x() for k, p in pos.items()}
    assert max(x[i] for i in ("pan", "ms", "extent", "onnx")) < x["clip"] < x["sharpen"]
    assert x["sharpen"] < x["stats"] < x["report"] and x["sharpen"] < x["fused"]
    assert len({(p.x(), p.y()) for p in pos.values()}) == len(pos)


def test_model_run_from_the_modeler_dialog_loads_the_result(
    ada3d_provider, sample_pan, sample_ms, tiny_model, tmp_path
):
    """The model run as its dialog runs it (a task, then Processing's result
    handling): the pansharpened output is added to the project."""
    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(MODEL3))
    out = tmp_path / "fused_dialog.tif"
    params = _params(sample_pan, sample_ms, tiny_model, out)
    params[FUSED] = destination(str(out))
    try:
        ok, results, feedback, _ = run_like_the_dialog(model, params)
        assert ok, feedback.errors
        loaded = [lyr.source() for lyr in QgsProject.instance().mapLayers().values()]
        assert str(out) in loaded and results[FUSED] == str(out)
    finally:
        QgsProject.instance().removeAllMapLayers()


def test_model3_runs_through_qgis_process(
    qgis_process, sample_pan, sample_ms, tiny_model, tmp_path
):
    out = tmp_path / "fused_qp.tif"
    proc = qgis_process(
        "run", str(MODEL3), "--json", "--",
        f"pan={sample_pan}", f"ms={sample_ms}", f"extent={EXTENT}", f"onnx={tiny_model}",
        f"{FUSED}={out}", f"{REPORT}={tmp_path / 'report.html'}",
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert result["results"][FUSED] == str(out)
    data = _check_fused(out, sample_ms)
    assert np.isfinite(data).all()

