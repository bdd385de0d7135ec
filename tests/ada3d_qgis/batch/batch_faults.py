"""Faults installed in Dask worker processes by the batch tests (through
``client.run``); kept free of QGIS imports, since workers import this module."""

from __future__ import annotations

from pathlib import Path

from ada3d_qgis.batch import tasks
from ada3d_qgis.engine import Ada3DError

#: The sentence of the simulated failure.
SENTENCE = "Reading the panchromatic raster failed (simulated I/O error)."


def fail_strip(output_name: str, index: int) -> None:
    """Make strip ``index`` of the scene written to ``output_name`` fail in this process."""
    real = tasks.fuse_strip

    def failing(plan, k, model, inputs):
        if Path(plan.opts.output).name == output_name and k == index:
            raise Ada3DError(SENTENCE)
        return real(plan, k, model, inputs)

    tasks.fuse_strip = failing
