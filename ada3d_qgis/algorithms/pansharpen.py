"""The "Ada3D Pansharpen" Processing algorithm (``ada3d:pansharpen``).

A thin shell over :mod:`ada3d_qgis.engine.pipeline`: it refuses what can be
known before a run (``checkParameterValues``: the engine's preflight), turns
Processing parameters into :class:`~ada3d_qgis.engine.pipeline.RunOptions` (in
``prepareAlgorithm``, on the main thread, where layers may be touched), runs the
engine (in ``processAlgorithm``, possibly on a worker thread, where the output is
also resolved and registered for loading: see :mod:`.result_layer`) and turns
the engine's errors into ``QgsProcessingException``.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtCore import QCoreApplication

from ..compat import (
    FILE_BEHAVIOR_FILE,
    NUMBER_INTEGER,
    PARAMETER_FLAG_ADVANCED,
    PROPERTY_STATIC,
)
from ..engine import Ada3DError, Cancelled
from ..engine.raster_io import band_numbers, parse_options, quiet_gdal
from ..engine.session import DEVICES
from ..icons import icon
from .help import guide_url, paragraphs
from .result_layer import layer_name, register_output

DEVICE_LABELS = ("Auto (CUDA when it really runs, else CPU)", "CUDA", "CPU")

SHORT_HELP = """<p>Pansharpens a multispectral raster with a panchromatic raster using
Ada3D, a deep network with adaptive 3-D convolutions, run by onnxruntime.</p>
<p>The output lies on the panchromatic grid (its CRS and pixel size) and covers
every panchromatic pixel whose centre lies on the multispectral raster's footprint
(edges included, as GDAL's Pansharpening), with one band per selected
multispectral band, their descriptions and data type, and their nodata. The
multispectral raster is first resampled (cubic) onto the exact grid of r x r
panchromatic pixels, and reprojected when its CRS differs.</p>
<p>The model is chosen from the installed ones by the number of selected bands and
the pixel-size ratio (the log says which and why), or given as an .onnx file. Large
rasters are processed tile by tile with a scene-wide context, so memory stays
bounded and tiles join without seams.</p>
<p>Cancel at any time: nothing is written until the result is complete. The
result is added to the map in true colour (the model's red, green and blue
bands) with a cumulative-cut stretch.</p>"""


@lru_cache(maxsize=4)
def _shipped_default(key: str) -> str:
    """The shipped models' ``key`` (tile_size, overlap) for the help: "256 px",
    "14 px at ratio 2, 16 px at ratio 4" or "256 px, 224 px for the
    band-agnostic models"; empty when they cannot be read."""
    try:
        from ..engine.models import shipped_models

        rows = [(meta.ratio, meta.band_agnostic, getattr(meta, key))
                for _, meta in shipped_models()]
    except Exception:  # a missing onnxruntime must not break the dialog
        return ""
    return _describe_values(rows)


def _describe_values(rows: list) -> str:
    """(ratio, band-agnostic, value) rows in as few words as they allow."""
    values = sorted({v for *_, v in rows})
    if len(values) <= 1:
        return f"{values[0]} px" if values else ""
    for index, say in ((0, lambda k: f"at ratio {k}"),
                       (1, lambda k: "for the band-agnostic models" if k else "")):
        groups: dict = {}
        for row in rows:
            groups.setdefault(row[index], set()).add(row[2])
        if all(len(v) == 1 for v in groups.values()):
            parts = [f"{next(iter(v))} px {say(k)}".strip() for k, v in sorted(groups.items())]
            return ", ".join(parts)
    return f"{values[0]} to {values[-1]} px"


def _default_label(label: str, key: str) -> str:
    value = _shipped_default(key)
    return f"{label} (0 = the model's{', ' + value if value else ''})"


def _tr(text: str) -> str:
    return QCoreApplication.translate("PansharpenAlgorithm", text)


class PansharpenAlgorithm(QgsProcessingAlgorithm):
    PANCHROMATIC = "PANCHROMATIC"
    PAN_BAND = "PAN_BAND"
    SPECTRAL = "SPECTRAL"
    SPECTRAL_BANDS = "SPECTRAL_BANDS"
    MODEL = "MODEL"
    DEVICE = "DEVICE"
    TILE_SIZE = "TILE_SIZE"
    OVERLAP = "OVERLAP"
    OPTIONS = "OPTIONS"
    CONSISTENCY = "CONSISTENCY"
    OUTPUT = "OUTPUT"
    MODEL_USED = "MODEL_USED"
    EXECUTION_PROVIDER = "EXECUTION_PROVIDER"
    TILES = "TILES"

    def __init__(self) -> None:
        super().__init__()
        self._opts = None
        self._layer_name = ""

    # ----------------------------------------------------------------- identity

    def name(self) -> str:
        return "pansharpen"

    def displayName(self) -> str:
        return _tr("Ada3D Pansharpen")

    def group(self) -> str:
        return ""

    def groupId(self) -> str:
        return ""

    def icon(self):
        return icon("pansharpen")

    def tags(self) -> list[str]:
        return ["pansharpening", "fusion", "deep learning", "onnx", "ada3d", "landsat"]

    def shortHelpString(self) -> str:
        return paragraphs(_tr(SHORT_HELP))

    def helpUrl(self) -> str:
        return guide_url("ada3d-pansharpen")

    def createInstance(self) -> PansharpenAlgorithm:
        return PansharpenAlgorithm()

    # ----------------------------------------------------------------- parameters

    def initAlgorithm(self, config=None) -> None:
        self._add(
            QgsProcessingParameterRasterLayer(self.PANCHROMATIC, _tr("Panchromatic raster")),
            "The high-resolution panchromatic image. The output takes its grid: CRS, pixel "
            "size and alignment.",
        )
        self._add(
            # Optional although it has a default: QGIS 3.22 checks a missing band
            # value without applying the default, which would make PAN_BAND
            # mandatory on the qgis_process command line.
            QgsProcessingParameterBand(
                self.PAN_BAND, _tr("Panchromatic band"), 1, self.PANCHROMATIC, optional=True
            ),
            "Band of the panchromatic raster to use (default 1).",
        )
        self._add(
            QgsProcessingParameterRasterLayer(self.SPECTRAL, _tr("Multispectral raster")),
            "The low-resolution multispectral image. It must cover the panchromatic area at "
            "a pixel size the model is made for (for Landsat, twice the panchromatic one).",
        )
        self._add(
            QgsProcessingParameterBand(
                self.SPECTRAL_BANDS,
                _tr("Multispectral bands"),
                None,
                self.SPECTRAL,
                optional=True,
                allowMultiple=True,
            ),
            "Bands to pansharpen: 3 to 8 in any order for the shipped band-agnostic "
            "models; blue, green, red, near infrared in that order for the 4-band ones. "
            "Empty: all bands.",
        )
        self._add(
            QgsProcessingParameterFile(
                self.MODEL,
                _tr("Model (.onnx)"),
                FILE_BEHAVIOR_FILE,
                "onnx",
                optional=True,
                fileFilter="ONNX models (*.onnx)",
            ),
            "An Ada3D model exported with python -m model_export.export. Empty: the "
            "installed model that fits the number of bands and the pixel-size ratio.",
        )
        self._add(
            QgsProcessingParameterEnum(
                self.DEVICE, _tr("Device"), [_tr(t) for t in DEVICE_LABELS], defaultValue=0
            ),
            "Where the network runs. Auto uses an NVIDIA GPU only when onnxruntime really "
            "runs there and says so in the log; CUDA fails with the reason when it cannot.",
        )
        self._add(
            QgsProcessingParameterNumber(
                self.TILE_SIZE,
                _default_label(_tr("Tile size, panchromatic pixels"), "tile_size"),
                NUMBER_INTEGER,
                0,
                minValue=0,
            ),
            "Edge of the square tiles the image is processed in. Memory grows with the "
            "tile's area. A CPU runs one tile per core at once (up to 4) and a GPU "
            "several; 0 takes the model's recommendation (256 px for the shipped models), "
            "shared by the tiles run at once beyond two (on four cores, windows of about "
            "182 px).",
            advanced=True,
        )
        self._add(
            QgsProcessingParameterNumber(
                self.OVERLAP,
                _default_label(_tr("Tile overlap, panchromatic pixels"), "overlap"),
                NUMBER_INTEGER,
                0,
                minValue=0,
            ),
            "Context each tile reads beyond the part it keeps. Below the model's halo, tile "
            "borders may show; 0 takes the model's recommendation.",
            advanced=True,
        )
        self._add(
            QgsProcessingParameterBoolean(
                self.CONSISTENCY, _tr("Make the result consistent with the multispectral"),
                False,
            ),
            "Corrects each tile so that the result, blurred and reduced to the "
            "multispectral pixel size, matches the multispectral image. On the validation "
            "scenes this improved every reduced-resolution score and mostly QNR (README, "
            "Full resolution). Tiles then need a wider overlap, which costs time.",
            advanced=True,
        )
        options = QgsProcessingParameterString(
            self.OPTIONS, _tr("Additional creation options"), "", optional=True
        )
        options.setMetadata(
            {
                "widget_wrapper": {
                    "class": "processing.algs.gdal.ui.RasterOptionsWidget."
                    "RasterOptionsWidgetWrapper"
                }
            }
        )
        self._add(
            options,
            "GDAL creation options of the output format, KEY=VALUE separated by '|'. For "
            "GeoTIFF they override the default TILED=YES, COMPRESS=DEFLATE, BIGTIFF=IF_SAFER.",
            advanced=True,
        )
        self._add(
            QgsProcessingParameterRasterDestination(self.OUTPUT, _tr("Pansharpened")),
            "The pansharpened raster, in any format GDAL writes (by extension; GeoTIFF by "
            "default). It appears only once complete.",
        )
        self.addOutput(QgsProcessingOutputString(self.MODEL_USED, _tr("Model file used")))
        self.addOutput(
            QgsProcessingOutputString(
                self.EXECUTION_PROVIDER, _tr("onnxruntime execution provider used")
            )
        )
        self.addOutput(QgsProcessingOutputNumber(self.TILES, _tr("Number of tiles")))

    def _add(self, param: QgsProcessingParameterDefinition, help_text: str, advanced=False):
        param.setHelp(_tr(help_text))
        if advanced:
            param.setFlags(param.flags() | PARAMETER_FLAG_ADVANCED)
        self.addParameter(param)

    # ----------------------------------------------------------------- running

    def checkParameterValues(self, parameters, context):
        """Refuse before the dialog starts a run what can be known without one:
        the same layer twice, no overlap, no model for the bands and ratio, a
        missing onnxruntime, an output file that cannot take the result (the
        engine's preflight; no pixel is read)."""
        with quiet_gdal():  # see _raster_path
            ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        pan = self._raster_layer(parameters, self.PANCHROMATIC, context)
        ms = self._raster_layer(parameters, self.SPECTRAL, context)
        if pan is not None and ms is not None and (
            pan.id() == ms.id() or pan.source() == ms.source()
        ):
            return False, _tr(
                f"The panchromatic and multispectral inputs are the same layer "
                f"({ms.name()}); choose the panchromatic layer as 'Panchromatic raster' "
                "(both inputs start as the layer selected in the Layers panel)."
            )
        from ..engine.pipeline import preflight

        try:
            opts = replace(self._options(parameters, context),
                           output=self._named_output(parameters))
            preflight(opts, output=bool(opts.output))
        except (Ada3DError, QgsProcessingException) as exc:
            return False, str(exc)
        return True, ""

    def _named_output(self, parameters) -> str:
        """The output file the user named, or "" for a temporary output (its name
        is made, and registered for loading, only when the run starts)."""
        value = parameters.get(self.OUTPUT)
        sink = getattr(value, "sink", None)
        if sink is not None:
            static = sink.propertyType() == PROPERTY_STATIC
            value = sink.staticValue() if static else ""
        text = str(value or "")
        return "" if text in ("", QgsProcessing.TEMPORARY_OUTPUT) else text

    def prepareAlgorithm(self, parameters, context, feedback) -> bool:
        self._opts = self._options(parameters, context)
        ms = self.parameterAsRasterLayer(parameters, self.SPECTRAL, context)
        self._layer_name = layer_name(ms.name() if ms is not None else Path(self._opts.ms).stem)
        return True

    def _options(self, parameters, context):
        """RunOptions from the parameters, without the output: the output is
        resolved where the layer to load is registered (processAlgorithm)."""
        from ..engine.pipeline import RunOptions

        pan = self._raster_path(parameters, self.PANCHROMATIC, context, "panchromatic")
        ms = self._raster_path(parameters, self.SPECTRAL, context, "multispectral")
        try:
            # qgis_process passes "1,2,3" as text, which parameterAsInts reads as 0.
            bands = band_numbers(parameters.get(self.SPECTRAL_BANDS))
        except Ada3DError as exc:
            raise QgsProcessingException(str(exc)) from exc
        if bands is None:
            bands = self.parameterAsInts(parameters, self.SPECTRAL_BANDS, context)
        if not bands and _explicitly_empty(parameters.get(self.SPECTRAL_BANDS)):
            raise QgsProcessingException(
                _tr("The multispectral band selection is empty; select at least one band.")
            )
        try:
            options = parse_options(self.parameterAsString(parameters, self.OPTIONS, context))
        except Ada3DError as exc:
            raise QgsProcessingException(str(exc)) from exc
        return RunOptions(
            pan=pan,
            ms=ms,
            output="",
            pan_band=self.parameterAsInt(parameters, self.PAN_BAND, context) or 1,
            ms_bands=bands or None,
            model=self.parameterAsFile(parameters, self.MODEL, context) or None,
            device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
            tile_size=self.parameterAsInt(parameters, self.TILE_SIZE, context),
            overlap=self.parameterAsInt(parameters, self.OVERLAP, context),
            creation_options=options,
            consistency=self.parameterAsBool(parameters, self.CONSISTENCY, context),
        )

    def processAlgorithm(self, parameters, context, feedback):
        from ..engine.pipeline import run

        # Resolved here, with the context this thread runs in, so that the
        # layer to load survives a run in the dialog's worker thread.
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        opts = replace(self._opts, output=output)
        try:
            result = run(opts, feedback)
        except Cancelled as exc:
            raise QgsProcessingException(
                _tr("Cancelled by the user; no output was written.")
            ) from exc
        except Ada3DError as exc:
            raise QgsProcessingException(str(exc)) from exc
        register_output(context, output, self._layer_name, result.band_names,
                        result.descriptions)
        return {
            self.OUTPUT: str(result.output),
            self.MODEL_USED: str(result.model),
            self.EXECUTION_PROVIDER: result.provider,
            self.TILES: result.tiles,
        }

    def _raster_layer(self, parameters, name: str, context):
        # QGIS reads a sample of a raster it loads (for its default style):
        # GDAL's errors on a damaged file would print before the plugin's sentence.
        with quiet_gdal():
            return self.parameterAsRasterLayer(parameters, name, context)

    def _raster_path(self, parameters, name: str, context, what: str) -> str:
        layer = self._raster_layer(parameters, name, context)
        if layer is None:
            raise QgsProcessingException(self.invalidRasterError(parameters, name))
        if layer.providerType() != "gdal":
            raise QgsProcessingException(
                _tr(
                    f"The {what} layer comes from the {layer.providerType()} provider; "
                    "save it as a raster file (GeoTIFF) first."
                )
            )
        # QGIS appends its own "|option:..." suffixes; the rest is what GDAL opens
        # (a file path or a GDAL connection string such as GPKG:file:table).
        return layer.source().split("|")[0]


def _explicitly_empty(value) -> bool:
    """An empty list or string given on purpose (None means "not set": all bands)."""
    return isinstance(value, (list, tuple, str)) and len(value) == 0
