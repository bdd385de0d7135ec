"""How a fused raster appears on the map: loaded after the run, named after its
input and drawn in true colour with QGIS's usual cumulative-cut stretch.

Processing loads results from the layers-to-load list of the context the
algorithm ran in. The Toolbox dialog runs algorithms in a worker thread with a
thread-local copy of its context whose list replaces the dialog's at the end,
so the output must be registered from ``processAlgorithm`` (with the context
it is given), never from ``prepareAlgorithm``: :func:`register_output`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from qgis.core import (
    Qgis,
    QgsContrastEnhancement,
    QgsMultiBandColorRenderer,
    QgsProcessingContext,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterLayer,
    QgsRasterMinMaxOrigin,
    QgsRectangle,
)

#: Names a model may give its red, green and blue bands (case-insensitive).
_RGB_NAMES = (("r", "red"), ("g", "green"), ("b", "blue"))

# Processing keeps a bare pointer to a post-processor: the Python objects
# must outlive the run, so they are kept here, one per output.
_PROCESSORS: dict[str, QgsProcessingLayerPostProcessorInterface] = {}


def _cumulative_cut():
    # Qgis.RasterRangeLimit replaces QgsRasterMinMaxOrigin.Limits from QGIS 3.42.
    limits = getattr(Qgis, "RasterRangeLimit", None)
    if limits is not None:
        return limits.CumulativeCut
    return QgsRasterMinMaxOrigin.Limits.CumulativeCut


def true_colour_bands(band_names: Sequence[str]) -> tuple[int, int, int] | None:
    """1-based (red, green, blue) bands by their names, or None: a name is an
    alias ("R", "red") or starts with one as a word ("Red (B4, 0.64-0.67 um)")."""
    words = [(name.strip().lower(), re.split(r"[^a-z]+", name.strip().lower())[0])
             for name in band_names]
    found = []
    for aliases in _RGB_NAMES:
        index = next((i for i, (whole, first) in enumerate(words)
                      if whole in aliases or first in aliases[1:]), None)
        if index is None:
            return None
        found.append(index + 1)
    return found[0], found[1], found[2]


def layer_name(ms_layer_name: str) -> str:
    return f"{ms_layer_name} pansharpened (Ada3D)"


def style_true_colour(layer: QgsRasterLayer, rgb: tuple[int, int, int] | None) -> None:
    """Red, green, blue from ``rgb`` (QGIS's default bands when None) with a
    cumulative-cut stretch, as QGIS draws a multiband raster by default."""
    if rgb is not None and layer.bandCount() >= max(rgb):
        layer.setRenderer(QgsMultiBandColorRenderer(layer.dataProvider(), *rgb))
    layer.setContrastEnhancement(
        QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum,
        _cumulative_cut(),
        QgsRectangle(),
    )
    layer.triggerRepaint()


class FusedLayerStyle(QgsProcessingLayerPostProcessorInterface):
    """Names and styles the fused layer once Processing has loaded it."""

    def __init__(self, name: str, rgb: tuple[int, int, int] | None) -> None:
        super().__init__()
        self.name = name
        self.rgb = rgb

    def postProcessLayer(self, layer, context, feedback) -> None:
        if not isinstance(layer, QgsRasterLayer):
            return
        layer.setName(self.name)
        style_true_colour(layer, self.rgb)


def register_output(
    context: QgsProcessingContext,
    output: str,
    name: str,
    band_names: Sequence[str],
    descriptions: Sequence[str] = (),
) -> bool:
    """Name and style ``output`` when Processing will load it; False when it
    won't. Red, green and blue come from the model's band names, else (a
    band-agnostic model names none) from the bands' descriptions."""
    if not context.willLoadLayerOnCompletion(output):
        return False
    details = context.layerToLoadOnCompletionDetails(output)
    details.name = name
    rgb = true_colour_bands(band_names) or true_colour_bands(descriptions)
    processor = FusedLayerStyle(name, rgb)
    _PROCESSORS[output] = processor
    details.setPostProcessor(processor)
    return True
