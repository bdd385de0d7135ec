"""Sessions specialised to one window shape, for the CPU.

A run tiles a scene into windows of one shape, so the model's symbolic input
dimensions (batch, rows, cols, bands) are known before the first tile. Told
them through free-dimension overrides, onnxruntime plans every tensor's size
ahead and folds the shape arithmetic of the graph: on the shipped models a
window then takes markedly less memory at the same speed (docs/design.md).
Opening such a session costs a few hundredths of a
second, so they are opened per window shape on first use and a few shapes are
kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager

import numpy as np

#: Window shapes kept open at once: a run has one (the batch CLI a few).
KEEP = 2


def dimension_overrides(
    inputs: Iterable, feeds: Mapping[str, np.ndarray]
) -> dict[str, int] | None:
    """{symbolic dimension name: size} from the ``feeds`` given to a session
    whose ``inputs`` are ``session.get_inputs()`` (onnxruntime NodeArgs); None
    when a name would take two sizes (the feeds cannot run in one session)."""
    sizes: dict[str, int] = {}
    for spec in inputs:
        array = feeds.get(spec.name)
        if array is None:
            continue
        for dim, size in zip(spec.shape, array.shape):
            if isinstance(dim, str) and dim:
                if sizes.setdefault(dim, int(size)) != int(size):
                    return None
    return sizes


class ShapedSessions:
    """Sessions of one model file, each fixed to the input shapes of its first
    feeds and opened on first use by ``open_with(overrides)``.

    A session serves one run at a time: two worker threads running one
    onnxruntime session at once contend for its memory arena, which made a
    window pair 1.3 times as slow as in two sessions (docs/design.md). So
    each shape keeps a pool, and a run leases an idle session of it or opens
    one: at most as many per shape as runs are ever in flight.
    """

    def __init__(self, inputs: Iterable, open_with: Callable[[Mapping[str, int]], object]) -> None:
        self._inputs = list(inputs)
        self._open_with = open_with
        # Idle sessions per shape; None for a shape no session can be fixed to.
        self._pools: OrderedDict[tuple, list | None] = OrderedDict()
        self._lock = threading.Lock()

    @contextmanager
    def lease(self, feeds: Mapping[str, np.ndarray]) -> Iterator[object | None]:
        """A session for the shapes of ``feeds``, this run's alone until the
        block ends; None when they cannot be named or onnxruntime refuses
        them (the caller then runs its general session)."""
        key = tuple((name, feeds[name].shape) for name in sorted(feeds))
        with self._lock:
            if key in self._pools:
                self._pools.move_to_end(key)
            else:
                named = dimension_overrides(self._inputs, feeds)
                self._pools[key] = [] if named else None
                while len(self._pools) > KEEP:
                    self._pools.popitem(last=False)
            pool = self._pools[key]
            session = pool.pop() if pool else None
        if session is None and pool is not None:
            try:
                session = self._open_with(dimension_overrides(self._inputs, feeds))
            except Exception:  # the general session then runs, or says why it cannot
                with self._lock:
                    if key in self._pools:
                        self._pools[key] = None
        try:
            yield session
        finally:
            if session is not None:
                with self._lock:
                    pool = self._pools.get(key)
                    # A shape closed or dropped meanwhile takes no session back.
                    if pool is not None:
                        pool.append(session)

    def clear(self) -> None:
        """Close every session (a shape no longer run), giving back its memory."""
        with self._lock:
            self._pools.clear()

    def __len__(self) -> int:
        """Shapes held."""
        return len(self._pools)

    def sessions(self) -> int:
        """Idle sessions held, over all shapes."""
        with self._lock:
            return sum(len(pool) for pool in self._pools.values() if pool)
