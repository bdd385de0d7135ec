"""The batch's input: a CSV manifest of scenes, and the settings every scene shares.

Settings mirror the parameters of ``ada3d:pansharpen`` and build the same
:class:`~ada3d_qgis.engine.pipeline.RunOptions` (same defaults), with GDAL's
COG driver as the output format.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from ..engine import Ada3DError
from ..engine.pipeline import RunOptions
from ..engine.raster_io import merge_options

REQUIRED_COLUMNS = ("pan", "ms", "out")
OPTIONAL_COLUMNS = ("model",)
#: The COG driver's options unless the user's replace them key by key:
#: lossless DEFLATE with the predictor fitting the data type, BigTIFF when
#: needed, and 256 px blocks (GDAL's default is 512), so that overviews start
#: at smaller scenes and a viewer's range requests stay small.
COG_OPTIONS = ("COMPRESS=DEFLATE", "PREDICTOR=YES", "BIGTIFF=IF_SAFER", "BLOCKSIZE=256")
OUTPUT_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class Scene:
    pan: str
    ms: str
    out: str
    model: str = ""


@dataclass(frozen=True)
class BatchSettings:
    """What ``ada3d:pansharpen`` takes besides the rasters; the same defaults."""

    pan_band: int = 1
    #: 1-based MS bands; None: all bands.
    ms_bands: tuple[int, ...] | None = None
    #: An .onnx file for every scene without its own; None: the shipped model that fits.
    model: str | None = None
    device: str = "auto"
    tile_size: int = 0
    overlap: int = 0
    #: COG creation options given by the user (over :data:`COG_OPTIONS`).
    options: tuple[str, ...] = field(default_factory=tuple)
    consistency: bool = False

    def run_options(self, scene: Scene) -> RunOptions:
        return RunOptions(
            pan=scene.pan,
            ms=scene.ms,
            output=scene.out,
            pan_band=self.pan_band,
            ms_bands=list(self.ms_bands) if self.ms_bands else None,
            model=scene.model or self.model or None,
            device=self.device,
            tile_size=self.tile_size,
            overlap=self.overlap,
            driver="COG",
            creation_options=merge_options(COG_OPTIONS, self.options),
            consistency=self.consistency,
        )


def check_output_name(path: str) -> None:
    """Refuse an output that is not named as a GeoTIFF (the batch writes COGs)."""
    if Path(path).suffix.lower() not in OUTPUT_SUFFIXES:
        raise Ada3DError(
            f"The output {path} does not end in .tif; the batch writes Cloud-Optimised "
            "GeoTIFFs, so give every output a .tif name."
        )


def read_manifest(path: str | Path) -> list[Scene]:
    """Scenes of a CSV file with the columns pan, ms, out (and optionally
    model); relative paths are taken from the manifest's folder."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
            columns = [c.strip().lower() for c in (rows[0].keys() if rows else [])]
    except OSError as exc:
        raise Ada3DError(f"The manifest {path} cannot be read ({exc.strerror}).") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if not rows or missing:
        raise Ada3DError(
            f"The manifest {path} needs a header line with the columns pan, ms, out (and "
            f"optionally model) and one line per scene; "
            + (f"it lacks {', '.join(missing)}." if rows else "it has no scene.")
        )
    folder = path.resolve().parent
    scenes = []
    for row in rows:
        values = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
        if not any(values.get(c) for c in REQUIRED_COLUMNS):
            continue  # an empty line
        scenes.append(Scene(*(_resolve(folder, values.get(c, "")) for c in
                              (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS))))
    outs = [Path(s.out) for s in scenes]
    twice = sorted({str(o) for o in outs if outs.count(o) > 1})
    if twice:
        raise Ada3DError(
            f"The manifest {path} names the same output for several scenes ({', '.join(twice)}); "
            "give every scene its own output."
        )
    return scenes


def _resolve(folder: Path, value: str) -> str:
    """An absolute path for a local file name; GDAL addresses (/vsi..., URLs) as given."""
    if not value or value.startswith("/vsi") or "://" in value or Path(value).is_absolute():
        return value
    return str(folder / value)
