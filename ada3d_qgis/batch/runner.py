"""The client side: submit every scene's tasks to a Dask cluster, follow them
with a progress bar, and collect one result per scene.

A scene's strips are submitted when its plan arrives (their number is known
only then), so the graph grows while it runs; the plan stays in the cluster
as the strips' shared input. A scene that fails stops alone: its remaining
tasks still finish or fail, and its strip folder is removed at the end.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..engine import Ada3DError
from . import tasks
from .manifest import BatchSettings, Scene

DONE, SKIPPED, FAILED = "done", "skipped", "failed"


@dataclass
class SceneResult:
    scene: Scene
    status: str = FAILED
    megapixels: float = 0.0
    #: From the start of its plan to its output in place (on the workers' clocks).
    seconds: float = 0.0
    error: str = ""
    strips: int = 0
    #: The scene's plan task (statistics and pooled context, once per scene).
    plan_seconds: float = 0.0
    #: The scene's assembly task (its single writer): seconds, and bytes
    #: read from the strips and written to the COG.
    assemble_seconds: float = 0.0
    strip_bytes: int = 0
    output_bytes: int = 0


def failure_text(exc: BaseException) -> str:
    """The engine's sentence for an Ada3DError; the type and message otherwise."""
    if isinstance(exc, Ada3DError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


#: The Dask nanny's setting that the workers must not get (see worker_environ).
MALLOC_TRIM = "MALLOC_TRIM_THRESHOLD_"


def worker_environ(environ: dict) -> dict:
    """The nanny's pre-spawn environment without glibc's trim threshold: Dask
    sets it to 64 KiB, and with onnxruntime's arena off (as the plugin runs)
    every tile then gives its temporaries back to the system and maps them
    again, which doubled a strip's time (docs/batch.md)."""
    return {k: v for k, v in environ.items() if k != MALLOC_TRIM}


def start_cluster(workers: int, threads_per_worker: int, dashboard_address: str = ":8787"):
    """A LocalCluster of ``workers`` processes (each restarted by its nanny
    if it dies), spawned with :func:`worker_environ`."""
    import dask
    from distributed import LocalCluster

    key = "distributed.nanny.pre-spawn-environ"
    with dask.config.set({key: worker_environ(dask.config.get(key, {}))}):
        return LocalCluster(
            n_workers=workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            dashboard_address=dashboard_address,
        )


#: on_task(kind, scene index, future) is called as each task completes;
#: kind is "plan", "strip", "assemble".
TaskHook = Callable[[str, int, object], None]


def run_batch(
    client,
    scenes: Sequence[Scene],
    settings: BatchSettings,
    progress: bool = True,
    on_task: TaskHook | None = None,
) -> list[SceneResult]:
    """Pansharpen ``scenes`` on ``client``'s cluster; one result per scene, in order."""
    from distributed import as_completed
    from tqdm import tqdm

    run = uuid.uuid4().hex[:8]
    results = [SceneResult(scene) for scene in scenes]
    started: dict[int, float] = {}
    folders: dict[int, str] = {}
    meta: dict[object, tuple[str, int]] = {}
    plans: dict[int, object] = {}
    futures = []
    for i, scene in enumerate(scenes):
        opts = settings.run_options(scene)
        fut = client.submit(tasks.plan_task, opts, key=f"ada3d-plan-{run}-{i}", pure=False)
        meta[fut] = ("plan", i)
        futures.append(fut)
    bar = tqdm(total=len(futures), unit="task", desc="Ada3D batch", disable=not progress)
    queue = as_completed(futures)
    for fut in queue:
        kind, i = meta.pop(fut)
        bar.update(1)
        result = results[i]
        if fut.status != "finished":
            if not result.error:
                exc = fut.exception() if fut.status == "error" else RuntimeError(fut.status)
                result.status, result.error = FAILED, failure_text(exc)
                bar.write(f"{scene_name(result.scene)}: failed: {result.error}")
            plans.pop(i, None)
            continue
        if on_task is not None:
            on_task(kind, i, fut)
        if kind == "plan":
            planned = fut.result()
            started[i] = planned.started
            result.megapixels = planned.megapixels
            if planned.error:
                result.error = planned.error
                bar.write(f"{scene_name(result.scene)}: failed: {result.error}")
                continue
            if planned.plan is None:
                result.status = SKIPPED
                bar.write(f"{scene_name(result.scene)}: already done with these parameters.")
                continue
            folders[i] = planned.folder
            result.plan_seconds = planned.finished - planned.started
            for line in planned.plan.log:
                bar.write(f"{scene_name(result.scene)}: {line}")
            plans[i] = fut
            strips = [
                client.submit(tasks.strip_task, fut, k, key=f"ada3d-strip-{run}-{i}-{k}",
                              pure=False)
                for k in range(len(planned.plan.strips))
            ]
            result.strips = len(strips)
            last = client.submit(tasks.assemble_task, fut, strips,
                                 key=f"ada3d-assemble-{run}-{i}", pure=False)
            for f in strips:
                meta[f] = ("strip", i)
            meta[last] = ("assemble", i)
            queue.update([*strips, last])
            bar.total += len(strips) + 1
            bar.refresh()
        elif kind == "assemble":
            done = fut.result()
            result.status = DONE
            result.seconds = done.finished - started[i]
            result.assemble_seconds = done.finished - done.started
            result.strip_bytes, result.output_bytes = done.strip_bytes, done.output_bytes
            plans.pop(i, None)
    bar.close()
    # Released now, so that closing the cluster does not recompute them.
    fut = None
    futures.clear()
    plans.clear()
    _discard(client, [folders[i] for i, r in enumerate(results) if r.status == FAILED
                      and i in folders])
    return results


def scene_name(scene: Scene) -> str:
    """The scene's name in the log and the report: its output file's name."""
    return Path(scene.out).name


def _discard(client, folders: list[str]) -> None:
    """Remove the strip folders of failed scenes, on a worker (the client may
    not see the cluster's storage)."""
    if not folders:
        return
    discards = [client.submit(tasks.discard_task, f, pure=False) for f in folders]
    client.gather(discards, errors="skip")


def timed_batch(client, scenes, settings, **kwargs) -> tuple[list[SceneResult], float]:
    """:func:`run_batch` and its wall time in seconds."""
    start = time.monotonic()
    results = run_batch(client, scenes, settings, **kwargs)
    return results, time.monotonic() - start
