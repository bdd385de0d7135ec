"""engine/tile_runner.run_in_order and session.cpu_layout."""

from __future__ import annotations

import threading

import pytest

from ada3d_qgis.engine.session import MAX_CPU_WORKERS, cpu_layout
from ada3d_qgis.engine.tile_runner import run_in_order


def test_results_come_back_in_order_with_runs_in_parallel():
    caller = threading.get_ident()
    both_running = threading.Barrier(2, timeout=10)
    prepared_in = []
    in_flight, most = [0], [0]
    lock = threading.Lock()

    def prepare(item):
        prepared_in.append(threading.get_ident())
        return item * 10

    def run(value):
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        if value < 20:
            # The first two runs wait for each other: only parallel runs pass.
            both_running.wait()
        with lock:
            in_flight[0] -= 1
        return value + 1

    out = list(run_in_order(range(6), prepare, run, workers=2))
    assert out == [(i, 10 * i, 10 * i + 1) for i in range(6)]
    assert set(prepared_in) == {caller}
    assert most[0] == 2


def test_one_worker_runs_everything_in_the_calling_thread():
    threads = []
    out = list(run_in_order([1, 2], lambda i: i, lambda i: threads.append(
        threading.get_ident()) or i, workers=1))
    assert out == [(1, 1, 1), (2, 2, 2)]
    assert threads == [threading.get_ident()] * 2


def test_a_cancel_before_a_read_stops_the_run():
    reads = []

    def before():
        if len(reads) == 3:
            raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        for _ in run_in_order(range(10), reads.append, lambda x: x, workers=2,
                              before_each=before):
            pass
    assert len(reads) == 3


def test_a_failing_run_raises_in_the_caller():
    def run(x):
        if x == 1:
            raise ValueError("bad tile")
        return x

    with pytest.raises(ValueError, match="bad tile"):
        list(run_in_order(range(4), lambda x: x, run, workers=2))


@pytest.mark.parametrize(("cores", "layout"), [
    (1, (1, 1)), (2, (2, 1)), (3, (3, 1)), (MAX_CPU_WORKERS, (MAX_CPU_WORKERS, 1)),
    (4 * MAX_CPU_WORKERS, (MAX_CPU_WORKERS, 4)),
])
def test_cpu_layout_one_thread_per_tile_up_to_the_cap(cores, layout):
    assert cpu_layout(cores) == layout


def test_one_tile_more_is_read_while_every_worker_runs():
    release = threading.Event()
    prepared = []
    running = threading.Semaphore(0)

    def run(item):
        running.release()
        assert release.wait(10)
        return item

    def consume():
        return list(run_in_order(range(5), lambda i: prepared.append(i) or i, run, workers=2))

    worker = threading.Thread(target=lambda: out.extend(consume()))
    out: list = []
    worker.start()
    # Both runs started, and the third tile is read before either finishes.
    assert running.acquire(timeout=10) and running.acquire(timeout=10)
    for _ in range(100):
        if len(prepared) == 3:
            break
        threading.Event().wait(0.01)
    assert prepared == [0, 1, 2]
    release.set()
    worker.join(10)
    assert [o[0] for o in out] == list(range(5))
