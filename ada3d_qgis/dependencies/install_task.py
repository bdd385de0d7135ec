"""pip in a background ``QgsTask``: QGIS stays usable, the task manager shows
progress, and the user can cancel.

pip runs through ``QProcess`` with the Python QGIS runs on, into a fresh
folder (:func:`.folders.new_env_dir`) that becomes active only when pip
succeeds; its output lines drive the progress bar.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qgis.core import QgsTask
from qgis.PyQt.QtCore import QProcess

from . import folders
from .plan import Plan

#: pip's output lines kept for the error message.
TAIL_LINES = 15


def pip_arguments(target: Path, requirements: Sequence[str]) -> list[str]:
    """Arguments after the interpreter: everything pinned, nothing else
    touched (``--no-deps`` keeps pip away from QGIS's own numpy)."""
    return [
        "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
        "--progress-bar", "off", "--no-deps", "--only-binary=:all:",
        "--target", str(target), *requirements,
    ]


class PipProgress:
    """Percent done from pip's output lines: collecting the N requirements
    takes most of the time (downloads), then unpacking them."""

    def __init__(self, count: int) -> None:
        self.count = max(1, count)
        self.collected = 0
        self.percent = 0.0

    def feed(self, line: str) -> float:
        text = line.strip()
        if text.startswith("Collecting "):
            self.collected += 1
            self.percent = max(self.percent, 80.0 * (self.collected - 0.5) / self.count)
        elif text.startswith(("Downloading ", "Using cached ")):
            self.percent = max(self.percent, 80.0 * self.collected / self.count)
        elif text.startswith("Installing collected packages"):
            self.percent = max(self.percent, 85.0)
        elif text.startswith("Successfully installed"):
            self.percent = 100.0
        return self.percent


@dataclass
class PipResult:
    exit_code: int
    cancelled: bool = False
    lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.cancelled

    def tail(self) -> str:
        return "\n".join(self.lines[-TAIL_LINES:])


def run_process(
    program: str,
    arguments: Sequence[str],
    on_line: Callable[[str], None],
    cancelled: Callable[[], bool],
    poll_ms: int = 200,
) -> PipResult:
    """Run ``program`` to its end (or until ``cancelled()``), handing each
    output line (stdout and stderr merged) to ``on_line``. Blocking: call it
    from a task's worker thread."""
    proc = QProcess()
    proc.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
    proc.start(program, list(arguments))
    if not proc.waitForStarted(30000):
        return PipResult(-1, lines=[f"could not start {program}: {proc.errorString()}"])
    result = PipResult(0)
    pending = b""

    def drain() -> None:
        nonlocal pending
        pending += bytes(proc.readAllStandardOutput())
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            line = raw.decode(errors="replace").rstrip("\r")
            result.lines.append(line)
            on_line(line)

    while proc.state() != QProcess.ProcessState.NotRunning:
        if cancelled():
            proc.kill()
            proc.waitForFinished(10000)
            result.cancelled = True
            break
        proc.waitForReadyRead(poll_ms)
        drain()
    drain()
    if pending:
        result.lines.append(pending.decode(errors="replace"))
    if not result.cancelled:
        crashed = proc.exitStatus() != QProcess.ExitStatus.NormalExit
        result.exit_code = -1 if crashed else proc.exitCode()
    return result


class InstallTask(QgsTask):
    """Install ``plan`` with ``python`` into a new folder under ``root``;
    ``on_done(task)`` runs on the main thread when it ends (see ``ok``,
    ``message``)."""

    def __init__(
        self,
        plan: Plan,
        root: Path,
        python: Path,
        on_done: Callable[[InstallTask], None] | None = None,
    ) -> None:
        super().__init__("Ada3D: installing " + plan.onnxruntime, QgsTask.Flag.CanCancel)
        self.plan = plan
        self.root = root
        self.python = python
        self.on_done = on_done
        self.env: Path | None = None
        self.ok = False
        self.message = ""

    def run(self) -> bool:
        try:
            self.env = folders.new_env_dir(self.root)
        except OSError as exc:
            self.message = f"Could not create a folder in {self.root}: {exc}"
            return False
        progress = PipProgress(len(self.plan.requirements))
        result = run_process(
            str(self.python),
            pip_arguments(self.env, self.plan.requirements),
            lambda line: self.setProgress(progress.feed(line)),
            self.isCanceled,
        )
        if not result.ok:
            shutil.rmtree(self.env, ignore_errors=True)
            self.message = (
                "Installation cancelled; the previous installation is unchanged."
                if result.cancelled
                else f"pip failed (exit status {result.exit_code}); the previous installation "
                f"is unchanged:\n{result.tail()}"
            )
            return False
        folders.activate(self.root, self.env)
        self.message = (
            f"Installed {', '.join(self.plan.requirements[:1])} ({self.plan.flavour}) into "
            f"{self.env}. Restart QGIS to use it."
        )
        self.ok = True
        return True

    def finished(self, result: bool) -> None:
        if self.on_done is not None:
            self.on_done(self)
