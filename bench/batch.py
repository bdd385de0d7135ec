"""``make bench-batch``: throughput of ``python -m ada3d_qgis.batch`` with 1 and
2 workers on this machine, and what limits a cluster of N machines.

Scenes: mirrored mosaics of the embedded Landsat 8 sample (``bench.common.mosaic``),
one copy per scene. Measured in one run: the engine alone on one scene
(``pipeline.run``, no Dask), the batch on a LocalCluster of each worker count
(wall time, PAN megapixels per second), per scene its plan task (statistics and
pooled context) and its assembly task (the single writer), the bytes of strips
and COG, and the scheduler's round trip per task (no-op tasks). Everything is
printed and written to ``docs/batch.md``; the projection to N machines is
arithmetic on those figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from ada3d_qgis.batch.manifest import BatchSettings, Scene
from ada3d_qgis.batch.report import table
from ada3d_qgis.batch.runner import DONE, start_cluster, timed_batch
from ada3d_qgis.engine.feedback import QuietFeedback
from ada3d_qgis.engine.pipeline import run
from bench.common import REPO, mosaic

#: No-op tasks timed for the scheduler's round trip per task.
NOOP_TASKS = 2000
#: Machine counts of the projection table.
PROJECTED = (1, 2, 8, 32, 128, 512)


def scenes_of(size: int, count: int, folder: Path) -> list[Scene]:
    pan, ms = mosaic(size, folder)
    scenes = []
    for k in range(count):
        p, m = folder / f"pan_{k}.tif", folder / f"ms_{k}.tif"
        shutil.copyfile(pan, p)
        shutil.copyfile(ms, m)
        scenes.append(Scene(str(p), str(m), str(folder / "out" / f"fused_{k}.tif")))
    return scenes


def engine_alone(scene: Scene, folder: Path, settings: BatchSettings) -> tuple[float, float]:
    """Seconds and megapixels of pipeline.run (what ada3d:pansharpen runs) on one scene."""
    opts = settings.run_options(scene)
    opts.output = str(folder / "engine_alone.tif")
    opts.driver, opts.creation_options = None, ()
    start = time.monotonic()
    result = run(opts, QuietFeedback())
    return time.monotonic() - start, result.width * result.height / 1e6


def scheduler_round_trip(client, n: int = NOOP_TASKS) -> float:
    """Seconds per task of ``n`` no-op tasks submitted at once and gathered."""
    client.gather(client.map(abs, range(64), pure=False))  # warm the connections
    start = time.monotonic()
    client.gather(client.map(abs, range(n), pure=False))
    return (time.monotonic() - start) / n


def batch_run(scenes, settings, workers: int, out: Path, echo) -> dict:
    from distributed import Client

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    with start_cluster(workers, 1, ":0") as cluster, Client(cluster) as client:
        results, wall = timed_batch(client, scenes, settings, progress=False)
        round_trip = scheduler_round_trip(client)
    echo(f"\n{workers} worker(s): {client.dashboard_link} was the dashboard.\n")
    echo(table(results, wall))
    failed = [r.error for r in results if r.status != DONE]
    if failed:
        raise SystemExit(f"bench-batch: scenes failed: {failed}")
    return {"workers": workers, "wall": wall, "results": results, "round_trip": round_trip,
            "megapixels": sum(r.megapixels for r in results)}


def projection(one: dict, engine_seconds: float, echo) -> None:
    """What N machines like this one (one worker each) would do, and where it stops."""
    results = one["results"]
    mp = one["megapixels"]
    rate = mp / one["wall"]
    strips = sum(r.strips for r in results)
    tasks = strips + 2 * len(results)
    task_rate = tasks / one["wall"]
    serial = [r.plan_seconds + r.assemble_seconds for r in results]
    scene_mp = results[0].megapixels
    written = sum(r.strip_bytes + r.output_bytes for r in results) / mp
    read = sum(r.strip_bytes for r in results) / mp
    echo(
        f"\nPer machine (1 worker): {rate:.4f} PAN megapixels/s, {task_rate:.3f} tasks/s "
        f"({strips} strips and {2 * len(results)} plan/assembly tasks in {one['wall']:.1f} s).\n"
        f"Scheduler round trip per task (no-op tasks, {NOOP_TASKS} at once): "
        f"{one['round_trip'] * 1e3:.3f} ms, i.e. at most {1 / one['round_trip']:.0f} tasks/s "
        f"through one scheduler, {1 / one['round_trip'] / task_rate:.0f} machines' worth.\n"
        f"Serial part of each scene (plan task + assembly task, on one worker): "
        f"{sum(serial) / len(serial):.1f} s of {engine_seconds:.1f} s for the engine alone on "
        f"one {scene_mp:.3f} MP scene; a single scene spread over N machines takes at least "
        f"that.\n"
        f"Bytes per PAN megapixel: {written / 1e6:.3f} MB written (strips and COG, besides "
        f"the COG driver's intermediate GeoTIFF, not measured) and {read / 1e6:.3f} MB of "
        f"strips read back by the writer."
    )
    echo("\n| machines | PAN MP/s (compute) | scheduler load | storage writes MB/s |")
    echo("|---|---|---|---|")
    for n in PROJECTED:
        load = n * task_rate * one["round_trip"]
        echo(f"| {n} | {n * rate:.3f} | {100 * load:.2f} % | {n * rate * written / 1e6:.3f} |")


def limits(runs: list[dict], echo) -> None:
    """What the figures above say limits a cluster (no new figures)."""
    one, more = runs[0], runs[-1]
    gain = one["wall"] / more["wall"]
    here = (
        f"with {more['workers']} workers on this machine the speed-up is {gain:.2f}: one "
        "worker already runs a strip's tiles on every core, so further workers on "
        "the same machine only compete for them; run one worker per machine (more only where "
        "cores would otherwise idle, e.g. beside a GPU)."
        if gain < 1.1 else
        f"with {more['workers']} workers on this machine the speed-up is {gain:.2f}."
    )
    if os.getloadavg()[1] > (os.cpu_count() or 1):
        here += (
            " Other work shared the machine meanwhile (load averages below), and more "
            "worker processes also take a larger share of a busy machine from it, so this "
            "is not the speed-up an idle machine would show."
        )
    echo(
        "\n## What limits a cluster\n\n"
        "- Compute: each machine runs its own session over whole strips (rows of tiles), so "
        "throughput grows with the machines while there are strips for all of them: many "
        "scenes, or scenes with many rows of tiles. The compute column is N times one "
        "machine's rate, machines like this one.\n"
        "- The scheduler: one task per strip and two per scene. The load column is N times "
        "the tasks per second of one machine times the round trip per task measured above "
        "(an upper bound: a no-op task's round trip includes the client's).\n"
        "- The single writer and the plan per scene: the statistics pass, the pooled context "
        "and the assembly into the COG each run on one worker. Over an archive they overlap "
        "with other scenes' strips; for a single scene they are the part no number of "
        "machines shortens (the serial part above).\n"
        "- Storage: every worker reads its inputs and writes its strips to the shared folder, "
        "and the writer reads them back and writes the COG (and the COG driver's intermediate "
        "GeoTIFF): the storage column is what the shared storage must absorb in writes.\n"
        f"- This machine: {here}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1024, help="PAN pixels per side")
    parser.add_argument("--scenes", type=int, default=3)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "batch.md")
    args = parser.parse_args()
    lines: list[str] = []
    start_load = os.getloadavg()

    def echo(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    settings = BatchSettings()
    with tempfile.TemporaryDirectory(prefix="ada3d-bench-batch-") as tmp:
        folder = Path(tmp)
        scenes = scenes_of(args.size, args.scenes, folder)
        echo(f"# Batch throughput (`make bench-batch`)\n\n{args.scenes} scenes of "
             f"{args.size} x {args.size} PAN pixels (mirrored mosaics of the Landsat 8 "
             "sample), the shipped model chosen as ada3d:pansharpen chooses it, its default "
             "tiles; each worker one process with one thread. Load average at the start: "
             f"{', '.join(f'{v:.2f}' for v in start_load)} (1, 5, 15 min; {os.cpu_count()} "
             "CPUs).")
        echo("\nIn the batch tables a scene's time runs from the start of its plan to its "
             "output in place; scenes share the workers, so their times overlap and only the "
             "last line (the whole batch's wall time) measures throughput.")
        alone, megapixels = engine_alone(scenes[0], folder, settings)
        echo(f"\nEngine alone (pipeline.run, no Dask) on one scene: {alone:.1f} s, "
             f"{megapixels / alone:.4f} PAN megapixels/s.")
        runs = [batch_run(scenes, settings, int(w), folder / "out", echo)
                for w in args.workers.split(",")]
        echo("\n| workers | wall (s) | PAN MP/s | speed-up over 1 worker |")
        echo("|---|---|---|---|")
        for r in runs:
            echo(f"| {r['workers']} | {r['wall']:.1f} | {r['megapixels'] / r['wall']:.4f} | "
                 f"{runs[0]['wall'] / r['wall']:.2f} |")
        projection(runs[0], alone, echo)
        limits(runs, echo)
    echo(f"\nLoad average of this shared machine at the end: "
         f"{', '.join(f'{v:.2f}' for v in os.getloadavg())} (1, 5, 15 min; {os.cpu_count()} "
         "CPUs): other work ran beside the benchmark when these exceed the CPU count.")
    args.out.write_text("\n".join(lines) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
