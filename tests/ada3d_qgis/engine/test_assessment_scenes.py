"""Tests of the assessment's scene handling (ada3d_qgis.engine.assessment_scenes):
grids offset by whole pixels only."""

from __future__ import annotations

import pytest
from osgeo import osr

from ada3d_qgis.engine import Ada3DError
from ada3d_qgis.engine import assessment_scenes as S
from ada3d_qgis.engine.raster_io import Grid


def test_grid_offset_accepts_whole_pixels_only():
    base = Grid(1000.0, 2000.0, 10.0, 10.0, 50, 50, _utm())
    assert S.grid_offset(base.window(3, 4, 10, 10), base, "a", "b") == (3, 4)
    shifted = Grid(1005.0, 2000.0, 10.0, 10.0, 50, 50, _utm())
    with pytest.raises(Ada3DError, match="fraction of a pixel"):
        S.grid_offset(shifted, base, "reference", "fused")
    coarse = Grid(1000.0, 2000.0, 20.0, 20.0, 50, 50, _utm())
    with pytest.raises(Ada3DError, match="pixels"):
        S.grid_offset(coarse, base, "reference", "fused")
    other = Grid(1000.0, 2000.0, 10.0, 10.0, 50, 50, _utm(32617))
    with pytest.raises(Ada3DError, match="CRS"):
        S.grid_offset(other, base, "reference", "fused")


def _utm(epsg: int = 32616) -> str:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    return srs.ExportToWkt()
