"""Several tiles' model runs at once, while the calling thread reads and writes.

onnxruntime releases the GIL during a run, so model runs in worker threads
proceed in parallel; GDAL datasets are not safe to share between threads, so
every read and every write stays in the calling thread. Results come back in
input order, and at most ``workers`` runs are in flight (their memory is
bounded by that), with one tile more read ahead: a worker that finishes
starts on it at once instead of waiting for the calling thread's I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Prepared = TypeVar("Prepared")
Result = TypeVar("Result")


def run_in_order(
    items: Iterable[Item],
    prepare: Callable[[Item], Prepared],
    run: Callable[[Prepared], Result],
    workers: int,
    before_each: Callable[[], None] = lambda: None,
) -> Iterator[tuple[Item, Prepared, Result]]:
    """``(item, prepare(item), run(prepare(item)))`` for every item, in order.

    ``prepare`` and ``before_each`` (e.g. a cancel check) run in the calling
    thread, ``run`` in up to ``workers`` threads (none for one worker: then
    everything runs in the calling thread, as a plain loop would).
    """
    if workers <= 1:
        for item in items:
            before_each()
            prepared = prepare(item)
            yield item, prepared, run(prepared)
        return
    pending: deque[tuple[Item, Prepared, Future]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ada3d-tile") as pool:
        try:
            for item in items:
                before_each()
                prepared = prepare(item)
                pending.append((item, prepared, pool.submit(run, prepared)))
                if len(pending) > workers:
                    done_item, done_prepared, future = pending.popleft()
                    yield done_item, done_prepared, future.result()
            while pending:
                done_item, done_prepared, future = pending.popleft()
                yield done_item, done_prepared, future.result()
        finally:
            # On an error or a cancel, runs not started yet are dropped.
            for _, _, future in pending:
                future.cancel()
