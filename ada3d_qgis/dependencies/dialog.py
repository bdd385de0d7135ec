"""The "Install / repair dependencies" dialog: what is installed and what this
machine would get, with buttons for the detected plan and for CPU only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qgis.PyQt.QtWidgets import QDialog, QDialogButtonBox, QLabel, QTextBrowser, QVBoxLayout

from . import folders
from .detect import Gpu, describe_gpu
from .plan import Plan


@dataclass
class State:
    """Everything the dialog shows."""

    root: Path
    active: Path
    installed: dict[str, str]
    #: (version, providers) of the onnxruntime this QGIS imported, or None.
    runtime: tuple[str, list[str]] | None
    gpu: Gpu | None
    python: str
    #: The detected plan, or the sentence why there is none.
    plan: Plan | str
    cpu_plan: Plan | str


def report(state: State) -> str:
    """The dialog's text (HTML), built only from ``state``."""
    rows = []
    if state.runtime is None:
        rows.append("<b>onnxruntime does not import in this QGIS.</b>")
    else:
        version, providers = state.runtime
        rows.append(f"onnxruntime {version} is loaded; providers: {', '.join(providers)}.")
    if state.installed:
        listed = ", ".join(f"{name} {ver}" for name, ver in sorted(state.installed.items()))
        rows.append(f"Installed in {state.active}: {listed}.")
    else:
        rows.append(f"Nothing is installed in {state.root} yet.")
    if {"onnxruntime", "onnxruntime-gpu"} <= set(state.installed):
        rows.append("<b>Both onnxruntime and onnxruntime-gpu are installed there: repair.</b>")
    rows.append(f"This machine: {describe_gpu(state.gpu)}; Python: {state.python}.")
    if isinstance(state.plan, Plan):
        rows.append(
            f"<b>Install / repair</b> installs {', '.join(state.plan.requirements)} "
            f"({state.plan.reason})"
        )
    else:
        rows.append(f"<b>No installation is possible:</b> {state.plan}")
    if isinstance(state.cpu_plan, Plan):
        rows.append(f"<b>CPU only</b> installs {state.cpu_plan.onnxruntime}.")
    rows.append("pip runs in the background (see the task manager); restart QGIS afterwards.")
    return "".join(f"<p>{row}</p>" for row in rows)


def current_state(root: Path, gpu: Gpu | None, python: str, plan, cpu_plan) -> State:
    active = folders.active_dir(root)
    return State(
        root=root,
        active=active,
        installed=folders.installed_distributions(active),
        runtime=folders.onnxruntime_state(),
        gpu=gpu,
        python=python,
        plan=plan,
        cpu_plan=cpu_plan,
    )


class DependenciesDialog(QDialog):
    """``choice`` is "plan", "cpu" or None (closed) after ``exec()``."""

    def __init__(self, state: State, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Ada3D dependencies")
        self.choice: str | None = None
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("onnxruntime, which runs Ada3D's models:"))
        text = QTextBrowser(self)
        text.setHtml(report(state))
        layout.addWidget(text)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        if isinstance(state.plan, Plan):
            install = buttons.addButton("Install / repair", QDialogButtonBox.ButtonRole.AcceptRole)
            install.clicked.connect(lambda: self._choose("plan"))
        if isinstance(state.cpu_plan, Plan):
            cpu = buttons.addButton("CPU only", QDialogButtonBox.ButtonRole.AcceptRole)
            cpu.clicked.connect(lambda: self._choose("cpu"))
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(640, 360)

    def _choose(self, choice: str) -> None:
        self.choice = choice
        self.accept()
