"""How the engine talks to whoever runs it: log lines, progress and cancel.

The feedback object is duck-typed on QgsProcessingFeedback (``setProgress``,
``pushInfo``, ``isCanceled``, optionally ``pushWarning`` and ``pushDebugInfo``)
so that the engine runs without QGIS too. The log has two levels: a short
summary an analyst reads (:func:`info`, :func:`warn`) and technical details
(:func:`detail`), which Processing shows greyed out as debug information.
"""

from __future__ import annotations

from typing import Protocol

from . import Cancelled


class Feedback(Protocol):
    def setProgress(self, progress: float) -> None: ...
    def pushInfo(self, info: str) -> None: ...
    def isCanceled(self) -> bool: ...


class PrintFeedback:
    """Feedback for scripts: prints the log (details indented), never cancels."""

    def __init__(self, details: bool = True) -> None:
        self.details = details

    def setProgress(self, progress: float) -> None:
        pass

    def pushInfo(self, info: str) -> None:
        print(info, flush=True)

    def pushWarning(self, warning: str) -> None:
        print(warning, flush=True)

    def pushDebugInfo(self, info: str) -> None:
        if self.details:
            print(f"  {info}", flush=True)

    def isCanceled(self) -> bool:
        return False


class QuietFeedback(PrintFeedback):
    """Feedback that keeps the log to itself (for child runs and tests)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def pushInfo(self, info: str) -> None:
        self.lines.append(info)

    def pushWarning(self, warning: str) -> None:
        self.lines.append(warning)

    def pushDebugInfo(self, info: str) -> None:
        self.lines.append(info)


def info(feedback: Feedback, text: str) -> None:
    feedback.pushInfo(text)


def warn(feedback: Feedback, text: str) -> None:
    push = getattr(feedback, "pushWarning", None) or feedback.pushInfo
    push(text)


def detail(feedback: Feedback, text: str) -> None:
    """A technical line: library names, grids, tile plans (secondary in the log)."""
    push = getattr(feedback, "pushDebugInfo", None) or feedback.pushInfo
    push(text)


def check_cancel(feedback: Feedback) -> None:
    if feedback.isCanceled():
        raise Cancelled("cancelled by the user")


def duration(seconds: float) -> str:
    """``12 s``, ``3 min 05 s``, ``2 h 07 min``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
