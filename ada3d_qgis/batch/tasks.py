"""What the Dask workers run, as plain functions of picklable arguments.

Per scene: :func:`plan_task` (checks, the statistics pass and the pooled
context, once), then one :func:`strip_task` per row of tiles, then
:func:`assemble_task`, which writes the Cloud-Optimised GeoTIFF. Strips are
written by whichever worker fuses them to a file of their own (under a
temporary name, renamed when complete) in a hidden folder next to the output,
so that a strip run twice (its worker died) writes the same file again and no
two processes ever write into one raster. The assembly, one task per scene,
copies them into the engine's :class:`~ada3d_qgis.engine.raster_io.OutputWriter`
(a temporary file, converted to COG and renamed when complete), then removes
the folder.

Each worker process keeps one onnxruntime session per (model, device), loaded
once, and each of its threads the opened inputs of its last scenes (GDAL
datasets are not shared between threads). This module does not import dask.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

from osgeo import gdal

from ..engine import Ada3DError
from ..engine.pipeline import Preflight, RunOptions, preflight
from ..engine.raster_io import (
    AlignedInputs,
    OutputWriter,
    prepare_output,
    quiet_gdal,
    remove_stale_temporaries,
)
from ..engine.scene_plan import ScenePlan, fuse_strip, open_inputs, plan_scene
from ..engine.session import ModelSession, open_session
from .manifest import check_output_name

#: The output's metadata item that holds the run's parameters (see :func:`marker`).
MARKER_KEY = "ADA3D_BATCH"
#: Version of the marker's content; a change makes every output be redone.
MARKER_SCHEMA = 1
#: Scenes whose opened inputs each worker thread keeps (a strip's next task is
#: most often of the same scene; more would hold file handles for nothing).
OPEN_SCENES = 2

_SESSIONS: dict[tuple[str, str], ModelSession] = {}
_SESSION_LOADS: Counter = Counter()
_SESSION_LOCK = threading.Lock()
_THREAD = threading.local()


# --------------------------------------------------------------------------- worker caches


def model_session(path: str, device: str) -> ModelSession:
    """This process's session of ``path`` on ``device``, opened on first use
    (onnxruntime sessions may run from several threads at once)."""
    key = (str(Path(path).resolve()), device)
    with _SESSION_LOCK:
        session = _SESSIONS.get(key)
        if session is None:
            session = open_session(Path(path), device)
            _SESSIONS[key] = session
            _SESSION_LOADS[f"{Path(path).name}:{device}"] += 1
    return session


def session_loads() -> dict[str, int]:
    """Sessions this process has loaded, per model and device (for tests and logs)."""
    with _SESSION_LOCK:
        return dict(_SESSION_LOADS)


def scene_inputs(opts: RunOptions) -> tuple[Preflight, AlignedInputs]:
    """The checked pair and aligned inputs of ``opts`` for this thread."""
    cache = getattr(_THREAD, "scenes", None)
    if cache is None:
        cache = _THREAD.scenes = OrderedDict()
    bands = tuple(opts.ms_bands) if opts.ms_bands else None
    key = (opts.pan, opts.ms, opts.pan_band, bands, opts.model or "")
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    checked = preflight(opts)
    with quiet_gdal():
        opened = (checked, open_inputs(checked))
    cache[key] = opened
    while len(cache) > OPEN_SCENES:
        _, (_, old) = cache.popitem(last=False)
        old.close()
    return opened


# --------------------------------------------------------------------------- done or not


def _file_id(path: str | Path) -> list:
    """A file's absolute name, size and modification time (the name alone
    for what is not a local file, such as a /vsicurl/ address)."""
    try:
        st = os.stat(path)
    except OSError:
        return [str(path)]
    return [str(Path(path).resolve()), st.st_size, st.st_mtime_ns]


def marker(opts: RunOptions, checked: Preflight) -> str:
    """The parameters an output was made with, as stored in its metadata:
    the inputs (and their size and date), the bands, the model file, the
    device, the tiling and the creation options."""
    pair = checked.pair
    return json.dumps(
        {
            "schema": MARKER_SCHEMA,
            "pan": _file_id(opts.pan),
            "ms": _file_id(opts.ms),
            "pan_band": pair.pan_band,
            "ms_bands": list(pair.ms_bands),
            "model": _file_id(checked.choice.path),
            "device": opts.device,
            "tile_size": opts.tile_size,
            "overlap": opts.overlap,
            "options": list(opts.creation_options),
            "consistency": opts.consistency,
        },
        sort_keys=True,
    )


def finished(path: str | Path, expected: str) -> bool:
    """Whether ``path`` is a complete COG made with the parameters ``expected``
    (outputs appear under their name only once complete)."""
    if not Path(path).is_file():
        return False
    with quiet_gdal():
        ds = gdal.Open(str(path))
        if ds is None:
            return False
        done = (ds.GetMetadataItem(MARKER_KEY) == expected
                and ds.GetMetadataItem("LAYOUT", "IMAGE_STRUCTURE") == "COG")
        ds = None
    return done


def work_dir(output: str | Path, expected: str) -> Path:
    """The hidden folder of a scene's strips, next to its output; named after
    the parameters, so a re-run with others never reuses its strips."""
    target = Path(output)
    digest = hashlib.sha256(expected.encode()).hexdigest()[:12]
    return target.parent / f".{target.stem}.ada3d-strips-{digest}"


# --------------------------------------------------------------------------- tasks


@dataclass
class Planned:
    """What :func:`plan_task` returns: a plan, or a scene already done."""

    output: str
    started: float
    #: None: the output is already complete with these parameters.
    plan: ScenePlan | None
    marker: str
    folder: str
    megapixels: float
    #: The sentence of a scene refused before any work (its inputs, its model).
    error: str = ""
    #: When the plan was complete (this worker's clock).
    finished: float = 0.0


def plan_task(opts: RunOptions) -> Planned:
    """Check a scene, skip it when done, else plan it (statistics and
    pooled context, on this worker's session). A scene the engine refuses
    comes back with the engine's sentence rather than as a failed task: an
    expected outcome, not a fault for the cluster's log."""
    started = time.time()
    try:
        return _plan(opts, started)
    except Ada3DError as exc:
        return Planned(opts.output, started, None, "", "", 0.0, str(exc))


def _plan(opts: RunOptions, started: float) -> Planned:
    check_output_name(opts.output)
    checked = preflight(opts)
    pair, meta = checked.pair, checked.choice.metadata
    expected = marker(opts, checked)
    folder = work_dir(opts.output, expected)
    if finished(opts.output, expected):
        with quiet_gdal():
            ds = gdal.Open(opts.output)
            megapixels = ds.RasterXSize * ds.RasterYSize / 1e6
            ds = None
        return Planned(opts.output, started, None, expected, str(folder), megapixels)
    with quiet_gdal():
        notes = prepare_output(opts.output, opts.driver, pair, meta.ratio, meta.output_dtype,
                               opts.creation_options)
    opts = replace(opts, model=str(checked.choice.path))
    model = model_session(opts.model, opts.device)
    _, inputs = scene_inputs(opts)
    with quiet_gdal():
        plan = plan_scene(opts, checked, model, inputs)
    plan.log.extend(notes)
    folder.mkdir(exist_ok=True)
    return Planned(opts.output, started, plan, expected, str(folder), plan.megapixels,
                   finished=time.time())


def strip_path(planned: Planned, index: int) -> Path:
    return Path(planned.folder) / f"strip_{index:05d}.tif"


def strip_task(planned: Planned, index: int) -> tuple[str, int]:
    """Fuse row ``index`` of the scene's tiles into its strip file (kept when
    a run before this one already wrote it). Returns (file, first row)."""
    plan = planned.plan
    if plan is None:
        raise RuntimeError("strip_task on a scene that needs no work")
    y0, rows = plan.strip_rows(index)
    path = strip_path(planned, index)
    if path.is_file():
        return str(path), y0
    model = model_session(plan.model, plan.opts.device)
    _, inputs = scene_inputs(plan.opts)
    with quiet_gdal():
        y0, block = fuse_strip(plan, index, model, inputs)
    grid = plan.grid.window(0, y0, plan.grid.width, rows)
    with OutputWriter(str(path), "GTiff", grid, plan.gdal_type, plan.nodata,
                      plan.descriptions) as writer:
        writer.write(0, 0, block)
        writer.commit()
    return str(path), y0


@dataclass
class Assembled:
    """What :func:`assemble_task` returns: when it ran (this worker's clock)
    and the bytes of the strips it read and of the COG it wrote."""

    started: float
    finished: float
    strip_bytes: int
    output_bytes: int


def assemble_task(planned: Planned, strips: list[tuple[str, int]]) -> Assembled:
    """Copy the strips into the output COG (temporary name, overviews,
    renamed when complete), then remove the strips."""
    started = time.time()
    plan = planned.plan
    if plan is None:
        raise RuntimeError("assemble_task on a scene that needs no work")
    opts = plan.opts
    strip_bytes = sum(os.path.getsize(path) for path, _ in strips)
    with OutputWriter(opts.output, opts.driver or "COG", plan.grid, plan.gdal_type,
                      plan.nodata, plan.descriptions, opts.creation_options) as writer:
        bands = len(plan.descriptions)
        for path, y0 in strips:
            with quiet_gdal():
                ds = gdal.Open(path)
                if ds is None:
                    raise RuntimeError(f"the strip {path} cannot be read")
                block = ds.ReadAsArray()
                ds = None
            writer.write(0, y0, block.reshape(bands, -1, plan.grid.width))
        if writer.ds is None:
            raise RuntimeError("the output writer closed before the strips were written")
        writer.ds.SetMetadataItem(MARKER_KEY, planned.marker)
        output = writer.commit()
    discard_task(planned.folder)
    return Assembled(started, time.time(), strip_bytes, output.stat().st_size)


def discard_task(folder: str) -> None:
    """Remove a scene's strip folder, and temporary outputs that dead worker
    processes left next to it."""
    path = Path(folder)
    shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(OSError):
        remove_stale_temporaries(path.parent)
