"""Sessions specialised to one window shape, for the CPU.

A run tiles a scene into windows of one shape, so the model's symbolic input
dimensions (batch, rows, cols, bands) are known before the first tile. Told
them through free-dimension overrides, onnxruntime plans every tensor's size
ahead and folds the shape arithmetic of the graph: on the shipped models a
window then takes markedly less memory at the same speed (docs/design.md).
Opening such a session costs a few hundredths of a
second, so one is opened per window shape on first use and a few are kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

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
    feeds, opened on first use by ``open_with(overrides)`` and shared by the
    worker threads (onnxruntime runs one session in several threads at once)."""

    def __init__(self, inputs: Iterable, open_with: Callable[[Mapping[str, int]], object]) -> None:
        self._inputs = list(inputs)
        self._open_with = open_with
        self._sessions: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()

    def for_feeds(self, feeds: Mapping[str, np.ndarray]):
        """The session for the shapes of ``feeds``, or None when they cannot be
        named (the caller then runs its general session)."""
        key = tuple((name, feeds[name].shape) for name in sorted(feeds))
        with self._lock:
            if key in self._sessions:
                self._sessions.move_to_end(key)
                return self._sessions[key]
            overrides = dimension_overrides(self._inputs, feeds)
            if not overrides:
                return None
            try:
                session = self._open_with(overrides)
            except Exception:  # the general session then runs, or says why it cannot
                session = None
            self._sessions[key] = session
            while len(self._sessions) > KEEP:
                self._sessions.popitem(last=False)
            return session

    def clear(self) -> None:
        """Close every session (a shape no longer run), giving back its memory."""
        with self._lock:
            self._sessions.clear()

    def __len__(self) -> int:
        return len(self._sessions)
