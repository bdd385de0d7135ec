"""The QGIS plugin class: registers the Processing provider, adds the
Raster > Ada3D menu, and installs onnxruntime in the background on request."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsMessageLog
from qgis.PyQt.QtWidgets import QAction, QPushButton

from . import dependencies
from .dependencies import detect, folders
from .dependencies.plan import Plan, UnsupportedMachineError, plan_for
from .icons import icon
from .provider import Ada3DProvider

LOG_TAG = "Ada3D"
MENU = "Ada3D"
#: (menu entry, icon, Processing algorithm it opens).
ALGORITHM_ENTRIES = (
    ("Pansharpen…", "pansharpen", "ada3d:pansharpen"),
    ("Assess Pansharpening Quality…", "assess_quality", "ada3d:assessquality"),
)


def _plan_or_reason(machine) -> Plan | str:
    try:
        return plan_for(machine)
    except UnsupportedMachineError as exc:
        return str(exc)


class Ada3DPlugin:
    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider: Ada3DProvider | None = None
        self.actions: list[QAction] = []
        self.task = None
        # Before any algorithm runs (qgis_process calls initProcessing only);
        # folders of replaced installs go first, while nothing imports from them.
        try:
            root = dependencies.default_root()
            folders.remove_stale(root)
            dependencies.add_to_path(root)
        except OSError as exc:
            level = Qgis.MessageLevel.Warning
            QgsMessageLog.logMessage(f"dependency folder: {exc}", LOG_TAG, level)

    # qgis_process and the desktop both call this (hasProcessingProvider=yes).
    def initProcessing(self) -> None:
        if self.provider is None:
            self.provider = Ada3DProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        self.initProcessing()
        parent = self.iface.mainWindow()
        for text, icon_name, algorithm in ALGORITHM_ENTRIES:
            action = QAction(icon(icon_name), text, parent)
            action.triggered.connect(lambda _=False, alg=algorithm: self.open_algorithm(alg))
            self._add(action)
        action = QAction(icon("ada3d"), "Install / repair dependencies…", parent)
        action.triggered.connect(self.show_dependencies)
        self._add(action)
        missing = dependencies.missing_modules()
        if missing:
            self._offer_install(missing)

    def _add(self, action: QAction) -> None:
        self.iface.addPluginToRasterMenu(MENU, action)
        self.actions.append(action)

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        for action in self.actions:
            self.iface.removePluginRasterMenu(MENU, action)
        self.actions = []

    # ----------------------------------------------------------------- menu

    def open_algorithm(self, algorithm_id: str) -> None:
        import processing

        processing.execAlgorithmDialog(algorithm_id, {})

    def _offer_install(self, missing: list[str]) -> None:
        bar = self.iface.messageBar()
        widget = bar.createMessage(
            "Ada3D", f"needs {', '.join(missing)} to run its models, which is not installed."
        )
        button = QPushButton("Install…", widget)
        button.clicked.connect(self.show_dependencies)
        widget.layout().addWidget(button)
        bar.pushWidget(widget, Qgis.MessageLevel.Warning)

    def installer_state(self):
        """(state for the dialog, interpreter or None) of this QGIS."""
        from .dependencies.dialog import current_state

        root = dependencies.default_root()
        try:
            python: Path | None = detect.find_python(detect.this_python())
            python_text = str(python)
        except RuntimeError as exc:
            python, python_text = None, str(exc)
        gpu = detect.detect_gpu()
        machine = detect.this_machine(gpu=gpu or False)
        plan = _plan_or_reason(machine)
        cpu_plan = _plan_or_reason(replace(machine, cpu_only=True))
        if python is None:
            plan = cpu_plan = f"pip needs the Python interpreter of QGIS: {python_text}"
        return current_state(root, gpu, python_text, plan, cpu_plan), python

    def show_dependencies(self) -> None:
        from .dependencies.dialog import DependenciesDialog

        state, python = self.installer_state()
        dialog = DependenciesDialog(state, self.iface.mainWindow())
        dialog.exec()
        chosen = {"plan": state.plan, "cpu": state.cpu_plan}.get(dialog.choice or "")
        if isinstance(chosen, Plan) and python is not None:
            self.start_install(chosen, state.root, python)

    def start_install(self, plan: Plan, root: Path, python: Path) -> None:
        from .dependencies.install_task import InstallTask

        if self.task is not None:
            self.iface.messageBar().pushMessage(
                "Ada3D", "An installation is already running.", level=Qgis.MessageLevel.Info
            )
            return
        # The task manager holds only a C++ reference: keep the Python object alive.
        self.task = InstallTask(plan, root, python, self._install_done)
        QgsApplication.taskManager().addTask(self.task)
        self.iface.messageBar().pushMessage(
            "Ada3D",
            f"Installing {plan.onnxruntime} in the background (progress in the task manager).",
            level=Qgis.MessageLevel.Info,
            duration=10,
        )

    def _install_done(self, task) -> None:
        self.task = None
        if task.ok:
            level = Qgis.MessageLevel.Success
        else:
            level = Qgis.MessageLevel.Critical
            QgsMessageLog.logMessage(task.message, LOG_TAG, level)
        self.iface.messageBar().pushMessage(
            "Ada3D", task.message.splitlines()[0], level=level, duration=0
        )
