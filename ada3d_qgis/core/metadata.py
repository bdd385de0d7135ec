"""The metadata an Ada3D .onnx file carries, and its reader and writer.

The exporter (model_export.export) writes these keys into the ONNX
``metadata_props``; the plugin reads them back to choose a model, normalise
the scene and plan tiles. Every value is stored as JSON text, so that a reader
in any language gets typed values back. One module holds the key list so that
both sides cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any

#: Bumped whenever a key changes meaning; readers reject newer versions.
FORMAT_VERSION = 1

#: Value of the ``format`` key: tells an Ada3D model from any other .onnx file.
FORMAT_NAME = "ada3d-pansharpening"

#: The graph's inputs and outputs, in order: what the exporter writes and the
#: plugin feeds and reads (context and context_weight are optional inputs).
INPUT_NAMES = ("ms", "pan", "context", "context_weight")
OUTPUT_NAMES = ("fused", "context_out")


class MetadataError(ValueError):
    """The .onnx file is not an Ada3D model this plugin can run."""


@dataclass
class ModelMetadata:
    """Everything the plugin needs to know about an exported model.

    Sizes are in PAN pixels unless the name says otherwise.
    """

    model_name: str
    #: The Ada3DConfig fields the model was built with (JSON-able dict).
    config: dict[str, Any]
    bands: int
    band_names: list[str]
    ratio: int
    #: See ada3d_qgis.core.normalise: {"method": ..., ...}.
    normalisation: dict[str, Any]
    #: Receptive-field radius of the network in PAN pixels: a tile must carry
    #: at least this many pixels of context on each side to be exact.
    halo: int
    tile_size: int
    overlap: int
    #: Length of the pooled-context vector (inputs ``context``/output
    #: ``context_out``), see DESIGN.md "Tiling and the pooled statistics".
    context_size: int
    training: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    licence: str = "GPL-2.0-or-later"
    description: str = ""
    #: Data type of the fused output when it must differ from the MS type
    #: (empty: the MS data type).
    output_dtype: str = ""
    #: Band-agnostic models (issue 18): the band counts the graph takes, from
    #: ``min_bands`` to ``max_bands``; 0 (and files without the keys): exactly
    #: ``bands``, which is then the count the model was trained with.
    min_bands: int = 0
    max_bands: int = 0
    #: How much ``context_size`` grows per band of a band-agnostic model.
    context_per_band: int = 0
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if len(self.band_names) != self.bands:
            raise MetadataError(
                f"band_names lists {len(self.band_names)} names for {self.bands} bands"
            )
        if self.ratio < 2:
            raise MetadataError(f"ratio must be at least 2, got {self.ratio}")
        low, high = self.band_range
        if not 1 <= low <= self.bands <= high:
            raise MetadataError(
                f"the band range {low} to {high} does not hold its {self.bands} bands"
            )

    @property
    def band_range(self) -> tuple[int, int]:
        """Smallest and largest band count the model takes."""
        return self.min_bands or self.bands, self.max_bands or self.bands

    @property
    def band_agnostic(self) -> bool:
        """Whether the model takes more than one band count."""
        low, high = self.band_range
        return low < high

    def takes(self, bands: int) -> bool:
        """Whether the model runs on ``bands`` MS bands."""
        low, high = self.band_range
        return low <= bands <= high

    def context_size_for(self, bands: int) -> int:
        """Length of the pooled-context vector when the input has ``bands`` bands."""
        return self.context_size + (bands - self.bands) * self.context_per_band

    def for_bands(self, bands: int) -> ModelMetadata:
        """The metadata of this model run on ``bands`` bands: a band-agnostic
        model knows nothing of their names (any bands, any order)."""
        if not self.band_agnostic:
            return self
        if not self.takes(bands):
            low, high = self.band_range
            raise MetadataError(f"it takes {low} to {high} bands, not {bands}")
        return replace(
            self,
            bands=bands,
            band_names=[f"band{i + 1}" for i in range(bands)],
            context_size=self.context_size_for(bands),
        )

    def to_props(self) -> dict[str, str]:
        """Return the key/value pairs for ONNX ``metadata_props``."""
        return {k: json.dumps(v) for k, v in asdict(self).items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str]) -> ModelMetadata:
        """Parse ``metadata_props`` (as returned by onnxruntime's
        ``custom_metadata_map`` or onnx's ``metadata_props``)."""
        if "format" not in props:
            raise MetadataError("it carries no Ada3D metadata (no 'format' key)")
        try:
            values = {k: json.loads(v) for k, v in props.items()}
        except json.JSONDecodeError as exc:
            raise MetadataError(f"its metadata is not valid JSON ({exc})") from exc
        if values["format"] != FORMAT_NAME:
            raise MetadataError(f"its format is {values['format']!r}, not {FORMAT_NAME!r}")
        version = values.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise MetadataError(
                f"its metadata format version {version!r} is newer than this plugin "
                f"understands ({FORMAT_VERSION}); update the plugin"
            )
        known = {f.name for f in fields(cls)}
        required = {
            f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
        }
        missing = sorted(k for k in required if k not in values)
        if missing:
            raise MetadataError(f"its metadata lacks the keys {', '.join(missing)}")
        try:
            return cls(**{k: v for k, v in values.items() if k in known})
        except TypeError as exc:
            raise MetadataError(f"its metadata is malformed ({exc})") from exc
