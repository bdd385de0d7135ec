"""ada3d:pansharpen run as the Toolbox dialog runs it (a QgsProcessingAlgRunnerTask
in a worker thread, then Processing's result handling), on the real sample:
the fused layer lands in the project, named after the MS, in true colour."""

from __future__ import annotations

import pytest
from processing_task import destination, run_like_the_dialog
from qgis.core import (
    QgsMultiBandColorRenderer,
    QgsProject,
    QgsRasterLayer,
    QgsRasterMinMaxOrigin,
)

from ada3d_qgis.algorithms.result_layer import true_colour_bands

ALG = "ada3d:pansharpen"


@pytest.fixture()
def project_layers(sample_pan, sample_ms):
    """The sample loaded as an analyst has it: two layers of the project."""
    project = QgsProject.instance()
    pan = QgsRasterLayer(str(sample_pan), "l8_pan")
    ms = QgsRasterLayer(str(sample_ms), "l8_ms")
    assert pan.isValid() and ms.isValid()
    project.addMapLayers([pan, ms])
    yield pan, ms
    # A raster layer alive at exit crashes QGIS 3.22: the project owns them all.
    project.removeAllMapLayers()


def _fused_layers():
    return [lyr for lyr in QgsProject.instance().mapLayers().values()
            if lyr.name().endswith("pansharpened (Ada3D)")]


def _check_true_colour(layer: QgsRasterLayer) -> None:
    renderer = layer.renderer()
    assert isinstance(renderer, QgsMultiBandColorRenderer)
    # The shipped models' bands are B, G, R, NIR: red is band 3, blue band 1.
    assert (renderer.redBand(), renderer.greenBand(), renderer.blueBand()) == (3, 2, 1)
    origin = renderer.minMaxOrigin()
    assert origin.limits() == QgsRasterMinMaxOrigin.Limits.CumulativeCut
    enhancement = renderer.redContrastEnhancement()
    assert enhancement is not None
    # A 2-98 % cut stretches well inside the data's full range.
    stats = layer.dataProvider().bandStatistics(3)
    assert stats.minimumValue < enhancement.minimumValue() < enhancement.maximumValue()
    assert enhancement.maximumValue() < stats.maximumValue


def test_a_dialog_run_loads_the_styled_result(ada3d_provider, project_layers, tmp_path):
    pan, ms = project_layers
    out = tmp_path / "fused.tif"
    ok, results, feedback, _ = run_like_the_dialog(
        ALG, {"PANCHROMATIC": pan.id(), "SPECTRAL": ms.id(), "DEVICE": 2,
              "OUTPUT": destination(str(out))},
    )
    assert ok, feedback.errors
    assert results["OUTPUT"] == str(out) and out.is_file()
    (layer,) = _fused_layers()
    assert layer.name() == "l8_ms pansharpened (Ada3D)"
    assert layer.source() == str(out)
    assert (layer.width(), layer.height()) == (512, 512)
    _check_true_colour(layer)
    assert not feedback.errors  # "The following layers were not correctly generated" is one


def test_a_temporary_output_loads_too(ada3d_provider, project_layers):
    pan, ms = project_layers
    ok, results, feedback, _ = run_like_the_dialog(
        ALG, {"PANCHROMATIC": pan.id(), "SPECTRAL": ms.id(), "DEVICE": 2,
              "OUTPUT": destination("TEMPORARY_OUTPUT")},
    )
    assert ok, feedback.errors
    (layer,) = _fused_layers()
    assert layer.source() == results["OUTPUT"]
    _check_true_colour(layer)


def test_the_same_layer_twice_is_refused_before_the_run(ada3d_provider, project_layers,
                                                        tmp_path):
    _, ms = project_layers
    ok, results, _, _ = run_like_the_dialog(
        ALG, {"PANCHROMATIC": ms.id(), "SPECTRAL": ms.id(),
              "OUTPUT": destination(str(tmp_path / "x.tif"))},
    )
    assert not ok and "same layer (l8_ms)" in results["message"]
    assert list(tmp_path.iterdir()) == [] and not _fused_layers()


def test_disjoint_rasters_and_no_fitting_model_are_refused_before_the_run(
    ada3d_provider, project_layers, sample_ms, tmp_path
):
    from tiny_models import shifted_copy

    pan, ms = project_layers
    far = shifted_copy(sample_ms, tmp_path / "far.tif", 50_000)
    far_layer = QgsRasterLayer(str(far), "far")
    QgsProject.instance().addMapLayer(far_layer)
    ok, results, _, _ = run_like_the_dialog(
        ALG, {"PANCHROMATIC": pan.id(), "SPECTRAL": far_layer.id(),
              "OUTPUT": destination(str(tmp_path / "x.tif"))},
    )
    assert not ok and "do not overlap" in results["message"]
    ok, results, _, _ = run_like_the_dialog(
        ALG, {"PANCHROMATIC": pan.id(), "SPECTRAL": ms.id(), "SPECTRAL_BANDS": [1, 2],
              "OUTPUT": destination(str(tmp_path / "y.tif"))},
    )
    assert not ok and "No installed model fits 2 multispectral bands" in results["message"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["far.tif"]


def test_true_colour_bands_by_name():
    assert true_colour_bands(["B", "G", "R", "NIR"]) == (3, 2, 1)
    assert true_colour_bands(["nir", "Red", "green", "blue"]) == (2, 3, 4)
    assert true_colour_bands(["coastal", "nir"]) is None
    # Descriptions (a band-agnostic model names no bands): the leading word counts.
    assert true_colour_bands(["Blue (B2, 0.45-0.51 um)", "Green (B3)", "Red (B4)"]) == (3, 2, 1)
    assert true_colour_bands(["band1", "band2", "band3"]) is None
    assert true_colour_bands(["Bluish", "Greenland", "Redwood"]) is None
    assert true_colour_bands(["B2", "B3", "B4"]) is None


def test_a_batch_dialog_run_loads_every_result(ada3d_provider, project_layers, tmp_path):
    """As the batch dialog runs each row: a fresh context, alg.run on the main
    thread, then Processing's result handling."""
    from processing.gui.Postprocessing import handleAlgorithmResults
    from processing.tools import dataobjects
    from processing_task import LogFeedback
    from qgis.core import QgsApplication

    pan, ms = project_layers
    alg = QgsApplication.processingRegistry().algorithmById(ALG)
    for name in ("row1.tif", "row2.tif"):
        params = {"PANCHROMATIC": pan.id(), "SPECTRAL": ms.id(), "DEVICE": 2,
                  "OUTPUT": destination(str(tmp_path / name))}
        params = alg.preprocessParameters(params)
        context = dataobjects.createContext(LogFeedback())
        _, ok = alg.run(params, context, LogFeedback())
        assert ok
        assert handleAlgorithmResults(alg, context, LogFeedback(), False, params)
    sources = sorted(lyr.source() for lyr in _fused_layers())
    assert sources == [str(tmp_path / "row1.tif"), str(tmp_path / "row2.tif")]
    for layer in _fused_layers():
        _check_true_colour(layer)


def test_an_output_that_cannot_take_the_result_is_refused_before_the_run(
    ada3d_provider, project_layers, sample_pan, tmp_path
):
    pan, ms = project_layers
    jpg = tmp_path / "fused.jpg"
    ok, results, _, _ = run_like_the_dialog(
        ALG, {"PANCHROMATIC": pan.id(), "SPECTRAL": ms.id(), "OUTPUT": destination(str(jpg))},
    )
    assert not ok and "JPEG" in results["message"] and "GeoTIFF" in results["message"]
    before = sample_pan.read_bytes()
    ok, results, _, _ = run_like_the_dialog(
        ALG, {"PANCHROMATIC": pan.id(), "SPECTRAL": ms.id(),
              "OUTPUT": destination(str(sample_pan))},
    )
    assert not ok and "is the panchromatic input" in results["message"]
    assert sample_pan.read_bytes() == before and not jpg.exists() and not _fused_layers()
