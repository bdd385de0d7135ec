"""The "Assess Pansharpening Quality" Processing algorithm (ada3d:assessquality).

Thin: parameters, help and the translation of the engine's outcomes; the
computation is :mod:`ada3d_qgis.engine.assessment`, the metrics
:mod:`ada3d_qgis.core.metrics`, the report :mod:`ada3d_qgis.engine.report`.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingUtils,
)
from qgis.PyQt.QtGui import QIcon

from ..core.metrics import METRICS, NO_REFERENCE_KEYS, REFERENCE_KEYS
from ..engine import Ada3DError, Cancelled
from ..engine.assessment import AssessOptions, assess
from ..engine.assessment_wald import wald_inputs
from ..icons import icon
from .help import guide_url

#: Pansharpening algorithms the reduced-resolution mode can run: (id, label).
METHODS = (
    ("ada3d:pansharpen", "Ada3D Pansharpen (ada3d:pansharpen)"),
    ("gdal:pansharp", "GDAL Pansharpening (gdal:pansharp)"),
)
#: Progress-bar spans of the reduced-resolution phases: degradation, method, scoring.
PHASES = ((0.0, 10.0), (10.0, 70.0), (70.0, 100.0))


def _metric_help() -> str:
    return "".join(
        f"<li><b>{m.label}</b> ({'ideal ' + m.ideal}{', ' + m.unit if m.unit else ''}): "
        f"{m.meaning}</li>"
        for m in METRICS
    )


class _Span:
    """The parent feedback seen by one phase of a run: progress 0-100 mapped
    onto [lo, hi] of the parent's bar; messages and cancel pass through.
    (Plain Python: QgsProcessingMultiStepFeedback handed to a GDAL child
    algorithm crashed QGIS's event loop afterwards.)"""

    def __init__(self, parent: QgsProcessingFeedback, lo: float, hi: float) -> None:
        self.parent, self.lo, self.hi = parent, lo, hi

    def setProgress(self, progress: float) -> None:
        self.parent.setProgress(self.lo + (self.hi - self.lo) * progress / 100.0)

    def pushInfo(self, info: str) -> None:
        self.parent.pushInfo(info)

    def pushWarning(self, warning: str) -> None:
        self.parent.pushWarning(warning)

    def isCanceled(self) -> bool:
        return self.parent.isCanceled()


class _ChildFeedback(QgsProcessingFeedback):
    """Feedback of the child pansharpening run: its log goes to the parent's
    (without its raw results dictionary, and with its temporary folder named
    as such), its progress onto [lo, hi] of the parent's bar, and a cancel of
    the parent cancels it."""

    def __init__(
        self, parent: QgsProcessingFeedback, lo: float, hi: float, temporary: str = ""
    ) -> None:
        super().__init__()
        self._parent = parent
        self._temporary = temporary
        self._span = _Span(parent, lo, hi)
        self.progressChanged.connect(self._span.setProgress)
        parent.canceled.connect(self.cancel)
        if parent.isCanceled():
            self.cancel()

    def _clean(self, text: str) -> str:
        if self._temporary:
            text = text.replace(self._temporary, "(temporary folder)")
        return text

    def pushInfo(self, info: str) -> None:
        # The child's results dictionary lists temporary files the user never sees.
        if info.startswith("Results:"):
            return
        self._parent.pushInfo(self._clean(info))

    def pushWarning(self, warning: str) -> None:
        self._parent.pushWarning(self._clean(warning))

    def reportError(self, error: str, fatalError: bool = False) -> None:
        self._parent.reportError(error, fatalError)

    def pushCommandInfo(self, info: str) -> None:
        self._parent.pushCommandInfo(info)

    def pushConsoleInfo(self, info: str) -> None:
        self._parent.pushConsoleInfo(info)

    def pushDebugInfo(self, info: str) -> None:
        self._parent.pushDebugInfo(info)


class AssessQualityAlgorithm(QgsProcessingAlgorithm):
    FUSED = "FUSED"
    PANCHROMATIC = "PANCHROMATIC"
    SPECTRAL = "SPECTRAL"
    REFERENCE = "REFERENCE"
    MASK = "MASK"
    REDUCED_RESOLUTION = "REDUCED_RESOLUTION"
    METHOD = "METHOD"
    OUTPUT_HTML = "OUTPUT_HTML"
    MODE = "MODE"
    RATIO = "RATIO"

    def name(self) -> str:
        return "assessquality"

    def displayName(self) -> str:
        return "Assess Pansharpening Quality"

    def icon(self) -> QIcon:
        return icon("assess_quality")

    def tags(self) -> list[str]:
        return ["pansharpening", "quality", "QNR", "Q4", "Q2n", "SAM", "ERGAS", "Wald"]

    def createInstance(self) -> AssessQualityAlgorithm:
        return AssessQualityAlgorithm()

    def helpUrl(self) -> str:
        return guide_url("assess-pansharpening-quality")

    def shortHelpString(self) -> str:
        return (
            "<p>Scores a pansharpened (fused) raster, so that you can tell whether it can be "
            "trusted and compare methods on your own scene. Writes an HTML report (table, "
            "quicklooks of MS, PAN and fused image with one contrast stretch, a zoomed "
            "detail, a spectral-angle map) and outputs every score as a number that a "
            "Graphical Modeler chain can use.</p>"
            "<p><b>Three ways to run it</b></p><ul>"
            "<li><b>No reference</b> (full resolution): the fused raster, on the PAN grid, "
            "is judged against the PAN and the original MS. Gives D_lambda, D_s and QNR; "
            "the other scores are NaN.</li>"
            "<li><b>With a reference</b>: a ground-truth MS on the fused grid (for a study "
            "you degraded yourself). Gives Q2n, SAM, ERGAS, SCC and PSNR; D_lambda, D_s "
            "and QNR are NaN.</li>"
            "<li><b>Reduced resolution</b> (Wald's protocol, one click): no fused raster "
            "needed. The MS and the PAN are degraded by the resolution ratio, the chosen "
            "method pansharpens them, and the result is scored against the original MS as "
            "reference (same scores as with a reference).</li></ul>"
            f"<p><b>The scores</b></p><ul>{_metric_help()}</ul>"
            "<p>The ratio is read from the PAN and MS pixel sizes. Nodata of every input and "
            "the optional mask are left out of every score; Q2n and the Q indices of "
            "D_lambda and D_s use complete 32 x 32 blocks. Large rasters are read window by "
            "window. The metrics are those of the project's training benchmarks "
            "(ada3d_qgis.core.metrics).</p>"
        )

    def initAlgorithm(self, config=None) -> None:
        fused = QgsProcessingParameterRasterLayer(
            self.FUSED, "Fused (pansharpened) raster", optional=True
        )
        fused.setHelp(
            "The pansharpened image to score. Without a reference it must be on the "
            "panchromatic grid (same CRS and pixel size, whole-pixel offset). Not needed "
            "in reduced-resolution mode."
        )
        pan = QgsProcessingParameterRasterLayer(self.PANCHROMATIC, "Panchromatic raster")
        pan.setHelp(
            "The panchromatic raster the fused image was made from (its first band is "
            "used). With a reference: the PAN of that study; its pixel size and the MS's "
            "give the resolution ratio."
        )
        spectral = QgsProcessingParameterRasterLayer(
            self.SPECTRAL, "Multispectral raster (original MS)"
        )
        spectral.setHelp(
            "The multispectral raster the fused image was made from, with the same bands "
            "in the same order. It is resampled onto the exact ratio x PAN grid when its "
            "grid is offset (as in Landsat products)."
        )
        reference = QgsProcessingParameterRasterLayer(
            self.REFERENCE, "Reference (ground-truth MS on the fused grid)", optional=True
        )
        reference.setHelp(
            "Optional ground truth: an MS with the fused raster's bands, CRS and pixel size, "
            "offset by whole pixels at most (only the common part is scored). Switches to "
            "the scores with a reference (Q2n, SAM, ERGAS, SCC, PSNR). Ignored in "
            "reduced-resolution mode, where the original MS is the reference."
        )
        mask = QgsProcessingParameterRasterLayer(
            self.MASK, "Mask (non-zero = valid)", optional=True
        )
        mask.setHelp(
            "Optional raster whose non-zero pixels are scored (e.g. a cloud-free mask); "
            "zero, its nodata and anything outside it are left out. Any grid: it is put "
            "onto the scored grid by nearest neighbour."
        )
        reduced = QgsProcessingParameterBoolean(
            self.REDUCED_RESOLUTION, "Reduced-resolution test (Wald protocol)", False
        )
        reduced.setHelp(
            "Validate a method on your own scene: degrade MS and PAN by the ratio "
            "(MTF-matched filters), pansharpen them with the chosen method and score the "
            "result against the original MS. The fused raster is not needed."
        )
        method = QgsProcessingParameterEnum(
            self.METHOD,
            "Method for the reduced-resolution test",
            options=[label for _, label in METHODS],
            defaultValue=0,
        )
        method.setHelp(
            "The pansharpening algorithm run on the degraded inputs in reduced-resolution "
            "mode (with its default settings)."
        )
        html = QgsProcessingParameterFileDestination(
            self.OUTPUT_HTML,
            "Quality report",
            "HTML files (*.html)",
            optional=True,
            createByDefault=True,
        )
        html.setHelp(
            "The self-contained HTML report (pictures embedded; opens in the Results "
            "Viewer or any browser). Optional: skip it when only the numbers are needed "
            "(e.g. in a model)."
        )
        for param in (fused, pan, spectral, reference, mask, reduced, method, html):
            self.addParameter(param)
        for m in METRICS:
            applies = (
                "with a reference or in reduced-resolution mode"
                if m.key in REFERENCE_KEYS
                else "without a reference"
            )
            self.addOutput(
                QgsProcessingOutputNumber(m.key, f"{m.label} (NaN unless computed {applies})")
            )
        self.addOutput(
            QgsProcessingOutputString(
                self.MODE, "Mode (no-reference, reference or reduced-resolution)"
            )
        )
        self.addOutput(QgsProcessingOutputNumber(self.RATIO, "Resolution ratio"))

    # ---------------------------------------------------------------- checks

    def checkParameterValues(self, parameters, context: QgsProcessingContext):
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        reduced = self.parameterAsBool(parameters, self.REDUCED_RESOLUTION, context)
        if not reduced and self.parameterAsRasterLayer(parameters, self.FUSED, context) is None:
            return False, (
                "Give a fused raster to score, or tick the reduced-resolution test to make "
                "one from the panchromatic and multispectral rasters."
            )
        return True, ""

    def _path(self, parameters, name: str, context, what: str) -> str | None:
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None:
            return None
        if layer.providerType() != "gdal":
            raise QgsProcessingException(
                f"The {what} layer is not a file GDAL can read ({layer.providerType()} "
                "layer); export it to a GeoTIFF first."
            )
        return layer.source()

    # ---------------------------------------------------------------- run

    def processAlgorithm(
        self, parameters, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict:
        reduced = self.parameterAsBool(parameters, self.REDUCED_RESOLUTION, context)
        fused = self._path(parameters, self.FUSED, context, "fused")
        pan = self._path(parameters, self.PANCHROMATIC, context, "panchromatic")
        ms = self._path(parameters, self.SPECTRAL, context, "multispectral")
        reference = self._path(parameters, self.REFERENCE, context, "reference")
        mask = self._path(parameters, self.MASK, context, "mask")
        html = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context) or None
        if pan is None or ms is None:
            raise QgsProcessingException("The panchromatic and multispectral rasters are needed.")
        try:
            if reduced:
                if reference:
                    feedback.pushWarning(
                        "The reference is ignored in reduced-resolution mode: the original "
                        "multispectral raster is the reference."
                    )
                method = METHODS[self.parameterAsEnum(parameters, self.METHOD, context)][0]
                result = self._reduced(pan, ms, mask, html, method, context, feedback)
                mode = "reduced-resolution"
            else:
                if fused is None:
                    raise QgsProcessingException(
                        "Give a fused raster to score, or tick the reduced-resolution test."
                    )
                opts = AssessOptions(
                    fused=fused, pan=pan, ms=ms, reference=reference, mask=mask, report=html
                )
                result = assess(opts, feedback)
                mode = result.mode
        except Cancelled:
            feedback.pushInfo("Cancelled; nothing was written.")
            return {}
        except Ada3DError as exc:
            raise QgsProcessingException(str(exc)) from exc
        outputs: dict = {key: result.metrics[key] for key in result.metrics}
        outputs.update({self.OUTPUT_HTML: html, self.MODE: mode, self.RATIO: result.ratio})
        unused = REFERENCE_KEYS if result.mode != "reference" else NO_REFERENCE_KEYS
        labels = {m.key: m.label for m in METRICS}
        feedback.pushInfo(
            f"Not computed in this mode (NaN): {', '.join(labels[k] for k in unused)}."
        )
        return outputs

    def _reduced(self, pan, ms, mask, html, method, context, feedback):
        """Wald inputs -> the chosen method as a child algorithm -> score
        against the original MS. Temporary files are removed afterwards."""
        if QgsApplication.processingRegistry().algorithmById(method) is None:
            raise QgsProcessingException(
                f"The pansharpening algorithm {method} is not available in this QGIS "
                "(its provider is not installed or not enabled); choose another method."
            )
        folder = Path(tempfile.mkdtemp(prefix="ada3d_wald_", dir=QgsProcessingUtils.tempFolder()))
        try:
            wald = wald_inputs(pan, ms, folder, _Span(feedback, *PHASES[0]))
            if feedback.isCanceled():
                raise Cancelled("cancelled by the user")
            child = _ChildFeedback(feedback, *PHASES[1], temporary=str(folder))
            fused = self._run_method(method, wald.ms_lr, wald.pan_lr, folder, context, child)
            opts = AssessOptions(
                fused=fused,
                pan=str(wald.pan_lr),
                ms=str(wald.ms_lr),
                reference=ms,
                mask=mask,
                report=html,
                reduced=True,
                extra_facts=[
                    ("Method", method),
                    ("Degraded inputs", f"MS and PAN degraded by {wald.ratio} (Wald protocol); "
                     f"the PAN is {wald.pan_resampling}"),
                ],
                inputs=[("Panchromatic", pan), ("Multispectral (reference)", ms)]
                + ([("Mask", mask)] if mask else []),
            )
            return assess(opts, _Span(feedback, *PHASES[2]))
        finally:
            _release_layers(context, folder)
            shutil.rmtree(folder, ignore_errors=True)

    @staticmethod
    def _run_method(method, ms_lr, pan_lr, folder, context, feedback) -> str:
        import processing  # QGIS's Processing plugin (not importable at module load in tests)

        out = str(folder / "fused.tif")
        params = {"SPECTRAL": str(ms_lr), "PANCHROMATIC": str(pan_lr), "OUTPUT": out}
        try:
            result = processing.run(
                method, params, context=context, feedback=feedback, is_child_algorithm=True
            )
        except QgsProcessingException as exc:
            raise QgsProcessingException(
                f"{method} failed on the reduced-resolution inputs: {exc}"
            ) from exc
        if feedback.isCanceled():
            raise Cancelled("cancelled by the user")
        path = result.get("OUTPUT") if result else None
        if not path or not Path(str(path)).is_file():
            raise QgsProcessingException(f"{method} wrote no output on the reduced inputs.")
        return str(path)


def _release_layers(context: QgsProcessingContext, folder: Path) -> None:
    """Drop the layers the child algorithm loaded from ``folder`` (they keep
    the files open and would write .aux.xml files into a removed folder)."""
    store = context.temporaryLayerStore()
    for layer_id, layer in list(store.mapLayers().items()):
        if layer.source().startswith(str(folder)):
            store.removeMapLayer(layer_id)
