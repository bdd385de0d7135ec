"""python -m ada3d_qgis.batch on a 2-worker LocalCluster: three scene pairs cut
from the real Landsat 8 sample (half a PAN pixel off, as the sample is) give
the pixels, georeferencing, nodata and band descriptions that
``ada3d:pansharpen`` (processing.run) writes; finished scenes are skipped;
a killed worker is survived; a bad scene fails alone with the engine's sentence."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import processing
import pytest
from osgeo import gdal
from qgis.core import QgsProcessingException, QgsProcessingFeedback

from ada3d_qgis.batch import tasks
from ada3d_qgis.batch.__main__ import main
from ada3d_qgis.batch.manifest import BatchSettings, Scene, read_manifest
from ada3d_qgis.batch.runner import (
    DONE,
    FAILED,
    MALLOC_TRIM,
    SKIPPED,
    run_batch,
    start_cluster,
    worker_environ,
)
from ada3d_qgis.engine import Ada3DError
from ada3d_qgis.engine.pipeline import preflight

distributed = pytest.importorskip("distributed")

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tiny_models import crop  # noqa: E402

pytestmark = pytest.mark.slow

#: Tiny tiles, so that each scene has several strips (rows of tiles).
TILE, OVERLAP = 64, 14
SETTINGS = BatchSettings(device="cpu", tile_size=TILE, overlap=OVERLAP)
#: (MS column, row, size) of each crop; PAN crops are the same area at ratio 2.
#: A and B overlap; A's output (298 px) is large enough for an overview.
CROPS = {"a": (0, 0, 150), "b": (100, 60, 120), "c": (170, 170, 64)}


def _pair(folder: Path, name: str, sample_pan: Path, sample_ms: Path) -> tuple[Path, Path]:
    x, y, size = CROPS[name]
    pan = crop(sample_pan, folder / f"pan_{name}.tif", 2 * x, 2 * y, 2 * size, 2 * size)
    ms = crop(sample_ms, folder / f"ms_{name}.tif", x, y, size, size)
    return pan, ms


def _punch_nodata(ms: Path) -> None:
    """A block of MS pixels set to 0 and 0 declared nodata, so that the output has nodata."""
    ds = gdal.Open(str(ms), gdal.GA_Update)
    for b in range(1, ds.RasterCount + 1):
        band = ds.GetRasterBand(b)
        band.WriteArray(np.zeros((20, 30), np.uint16), 40, 50)
        band.SetNoDataValue(0)
        del band
    ds = None


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, sample_pan, sample_ms, random_model):
    """{name: (pan, ms, model or "")}: a and b with the context-dependent tiny
    model, c with the installed model chosen as the algorithm chooses it."""
    folder = tmp_path_factory.mktemp("batch_inputs")
    out = {}
    for name in CROPS:
        pan, ms = _pair(folder, name, sample_pan, sample_ms)
        out[name] = (pan, ms, "" if name == "c" else str(random_model))
    _punch_nodata(out["b"][1])
    return out


@pytest.fixture(scope="module")
def references(ada3d_provider, pairs, tmp_path_factory) -> dict[str, Path]:
    """What ada3d:pansharpen writes for each pair with the same parameters."""
    folder = tmp_path_factory.mktemp("batch_references")
    refs = {}
    for name, (pan, ms, model) in pairs.items():
        params = {"PANCHROMATIC": str(pan), "SPECTRAL": str(ms), "DEVICE": 2,
                  "TILE_SIZE": TILE, "OVERLAP": OVERLAP, "OUTPUT": str(folder / f"{name}.tif")}
        if model:
            params["MODEL"] = model
        refs[name] = Path(processing.run("ada3d:pansharpen", params)["OUTPUT"])
    return refs


@pytest.fixture()
def cluster():
    """A fresh 2-worker LocalCluster as the command line starts it (worker
    processes, restarted by their nannies)."""
    with start_cluster(2, 1, ":0") as lc, distributed.Client(lc) as client:
        yield client


def _trim_settings(client) -> set:
    """glibc trim thresholds the workers were started with (None: glibc's own)."""
    return set(client.run(lambda: os.environ.get(MALLOC_TRIM)).values())


def _scenes(pairs, folder: Path, names=tuple(CROPS)) -> list[Scene]:
    folder.mkdir(exist_ok=True)
    return [Scene(str(pairs[n][0]), str(pairs[n][1]), str(folder / f"{n}.tif"), pairs[n][2])
            for n in names]


def _raster(path: Path) -> dict:
    ds = gdal.Open(str(path))
    assert ds is not None, path
    bands = [ds.GetRasterBand(i + 1) for i in range(ds.RasterCount)]
    out = {
        "data": ds.ReadAsArray(),
        "gt": ds.GetGeoTransform(),
        "wkt": ds.GetProjection(),
        "nodata": [b.GetNoDataValue() for b in bands],
        "descriptions": [b.GetDescription() for b in bands],
        "types": [b.DataType for b in bands],
        "overviews": bands[0].GetOverviewCount(),
        "layout": ds.GetMetadataItem("LAYOUT", "IMAGE_STRUCTURE"),
        "marker": ds.GetMetadataItem(tasks.MARKER_KEY),
    }
    del bands
    ds = None
    return out


def _assert_same_as_algorithm(out: Path, reference: Path) -> dict:
    got, ref = _raster(out), _raster(reference)
    assert got["data"].shape == ref["data"].shape
    assert np.array_equal(got["data"], ref["data"]), f"{out.name}: pixels differ"
    for key in ("gt", "wkt", "nodata", "descriptions", "types"):
        assert got[key] == ref[key], f"{out.name}: {key} differs"
    assert got["layout"] == "COG" and got["marker"]
    return got


def test_outputs_equal_the_algorithm_and_done_scenes_are_skipped(cluster, pairs, references,
                                                                 tmp_path):
    out = tmp_path / "out"
    scenes = _scenes(pairs, out)
    results = run_batch(cluster, scenes, SETTINGS, progress=False)

    assert [r.status for r in results] == [DONE] * 3, [r.error for r in results]
    assert all(r.strips >= 3 for r in results)  # work below the scene: several strip tasks
    got = {n: _assert_same_as_algorithm(out / f"{n}.tif", references[n]) for n in CROPS}
    assert got["a"]["overviews"] >= 1
    assert got["b"]["nodata"][0] == 0 and (got["b"]["data"] == 0).any()
    # Nothing but the outputs: no strip folder, no temporary file.
    assert sorted(p.name for p in out.iterdir()) == ["a.tif", "b.tif", "c.tif"]
    # One session per model on each worker, however many strips it ran.
    loads = cluster.run(tasks.session_loads)
    assert all(count == 1 for per_worker in loads.values() for count in per_worker.values())
    assert sum(len(per_worker) for per_worker in loads.values()) <= 2 * len(loads)

    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = run_batch(cluster, scenes, SETTINGS, progress=False)
    assert [r.status for r in again] == [SKIPPED] * 3
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps

    # Other parameters are another result: that scene is made again.
    other = run_batch(cluster, scenes[2:], BatchSettings(device="cpu", tile_size=TILE,
                                                         overlap=OVERLAP + 2), progress=False)
    assert [r.status for r in other] == [DONE]
    assert (out / "c.tif").stat().st_mtime_ns != stamps["c.tif"]


def test_a_killed_worker_is_survived(cluster, pairs, references, tmp_path):
    out = tmp_path / "out"
    scenes = _scenes(pairs, out, ("a", "b"))
    before = set(cluster.scheduler_info()["workers"])
    killed: dict[str, list] = {}

    def kill_after_first_strip(kind, index, future):
        if kind != "strip" or killed:
            return
        busy = {w: keys for w, keys in cluster.processing().items() if keys}
        victim = next(iter(busy), None)
        if victim is None:
            return
        killed[victim] = list(busy[victim])
        # SIGKILL, as the kernel's out-of-memory killer would: no clean-up at all.
        pid = cluster.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, signal.SIGKILL)

    results = run_batch(cluster, scenes, SETTINGS, progress=False,
                        on_task=kill_after_first_strip)

    assert killed, "no worker had work left after the first strip"
    victim, its_tasks = next(iter(killed.items()))
    assert its_tasks  # it had tasks to run, which ran elsewhere
    after = set(cluster.scheduler_info()["workers"])
    assert victim in before and victim not in after  # it died; its nanny started another
    assert [r.status for r in results] == [DONE, DONE], [r.error for r in results]
    for name in ("a", "b"):
        _assert_same_as_algorithm(out / f"{name}.tif", references[name])
    assert sorted(p.name for p in out.iterdir()) == ["a.tif", "b.tif"]
    # The restarted worker, too, runs with glibc's own trim threshold.
    assert _trim_settings(cluster) == {None}


def test_workers_keep_glibcs_own_trim_threshold(cluster):
    """Dask's nannies set MALLOC_TRIM_THRESHOLD_=65536, which doubled a strip's
    time here (onnxruntime gives every tile's memory back and maps it again)."""
    import dask

    assert dask.config.get("distributed.nanny.pre-spawn-environ")[MALLOC_TRIM] == 65536
    assert worker_environ({MALLOC_TRIM: 65536, "OMP_NUM_THREADS": 1}) == {"OMP_NUM_THREADS": 1}
    assert _trim_settings(cluster) == {None}


def test_a_bad_scene_fails_alone_with_the_engines_sentence(cluster, pairs, references,
                                                            tmp_path, sample_ms):
    out = tmp_path / "out"
    good = _scenes(pairs, out, ("a",))[0]
    # PAN of crop a with the MS of crop c: the two rasters share no pixel.
    disjoint = Scene(str(pairs["a"][0]), str(pairs["c"][1]), str(out / "disjoint.tif"))
    missing = Scene(str(tmp_path / "no_such_pan.tif"), str(sample_ms), str(out / "missing.tif"))
    scenes = [disjoint, good, missing]
    results = run_batch(cluster, scenes, SETTINGS, progress=False)

    assert [r.status for r in results] == [FAILED, DONE, FAILED]
    for scene, result in zip(scenes, results, strict=True):
        if result.status == FAILED:
            with pytest.raises(Ada3DError) as engine:
                preflight(SETTINGS.run_options(scene))
            assert result.error == str(engine.value)
    # The algorithm refuses the disjoint pair with that same sentence.
    feedback = QgsProcessingFeedback()
    errors: list[str] = []
    feedback.reportError = lambda text, fatalError=False: errors.append(text)
    with pytest.raises(QgsProcessingException) as alg:
        processing.run("ada3d:pansharpen", {"PANCHROMATIC": disjoint.pan,
                                            "SPECTRAL": disjoint.ms, "DEVICE": 2,
                                            "OUTPUT": str(tmp_path / "alg.tif")},
                       feedback=feedback)
    assert results[0].error in "\n".join([str(alg.value), *errors])
    _assert_same_as_algorithm(out / "a.tif", references["a"])
    assert sorted(p.name for p in out.iterdir()) == ["a.tif"]


def test_a_scene_failing_mid_run_leaves_nothing_and_the_others_finish(cluster, pairs,
                                                                      references, tmp_path):
    from batch_faults import SENTENCE, fail_strip

    cluster.run(fail_strip, "b.tif", 1)
    out = tmp_path / "out"
    results = run_batch(cluster, _scenes(pairs, out, ("a", "b")), SETTINGS, progress=False)

    assert [r.status for r in results] == [DONE, FAILED]
    assert results[1].error == SENTENCE and results[1].strips > 2
    _assert_same_as_algorithm(out / "a.tif", references["a"])
    # b's strips and temporary files are gone with it.
    assert sorted(p.name for p in out.iterdir()) == ["a.tif"]


def test_command_line_prints_dashboard_and_table(pairs, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    pan, ms, _ = pairs["c"]
    manifest = tmp_path / "scenes.csv"
    manifest.write_text(f"pan,ms,out\n{pan},{ms},out/c.tif\n{pan},{pan},out/same.tif\n")
    assert [s.out for s in read_manifest(manifest)] == [str(out / "c.tif"), str(out / "same.tif")]

    code = main(["--manifest", str(manifest), "--workers", "1", "--device", "cpu",
                 "--tile-size", str(TILE), "--overlap", str(OVERLAP), "--no-progress",
                 "--dashboard-address", ":0"])

    text = capsys.readouterr().out
    assert code == 1  # one scene failed
    assert "Dask dashboard: http://" in text
    assert "| scene" in text and "megapixels/s" in text
    assert "| c.tif" in text and " done |" in text
    assert "failed: The panchromatic and multispectral inputs are the same raster" in text
    assert "all 2 scenes" in text and "1 done, 0 skipped, 1 failed" in text
