"""The inference engine under the "Ada3D Pansharpen" algorithm.

GDAL + numpy + onnxruntime only (no QGIS, no torch), so that it can be tested
and scripted on its own:

- :mod:`.raster_io`: open inputs, put the MS on the exact r x PAN grid, read
  windows, write the output under a temporary name and move it into place.
- :mod:`.tiling`: the tile grid with its halo on that grid.
- :mod:`.session`: the onnxruntime session, device choice and CUDA diagnosis.
- :mod:`.models`: find the shipped model that fits the input.
- :mod:`.pipeline`: one run (statistics, pooled context, tiles, feedback).
"""

from __future__ import annotations


class Ada3DError(Exception):
    """A problem the user can cause or fix; the message is a sentence a GIS
    analyst understands (the Processing algorithm shows it as is)."""


class Cancelled(Exception):  # noqa: N818 - it is an outcome, not a fault
    """The user cancelled the run; nothing was written."""
