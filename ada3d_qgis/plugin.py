"""The QGIS plugin class: registers the Processing provider and makes sure
onnxruntime can be imported (offering to install it on first use)."""

from __future__ import annotations

from qgis.core import Qgis, QgsApplication, QgsMessageLog
from qgis.PyQt.QtWidgets import QAction, QMessageBox, QPushButton

from . import dependencies
from .icons import icon
from .provider import Ada3DProvider

LOG_TAG = "Ada3D"


class Ada3DPlugin:
    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider: Ada3DProvider | None = None
        self.action: QAction | None = None
        # Before any algorithm runs: qgis_process calls initProcessing only.
        dependencies.add_to_path()

    # qgis_process and the desktop both call this (hasProcessingProvider=yes).
    def initProcessing(self) -> None:
        if self.provider is None:
            self.provider = Ada3DProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        self.initProcessing()
        self.action = QAction(icon("ada3d"), "Install Ada3D dependencies…", self.iface.mainWindow())
        self.action.triggered.connect(self.install_dependencies)
        self.iface.addPluginToRasterMenu("Ada3D", self.action)
        missing = dependencies.missing_modules()
        if missing:
            self._offer_install(missing)

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        if self.action is not None:
            self.iface.removePluginRasterMenu("Ada3D", self.action)
            self.action = None

    def _offer_install(self, missing: list[str]) -> None:
        bar = self.iface.messageBar()
        widget = bar.createMessage(
            "Ada3D", f"needs {', '.join(missing)} to run its models, which is not installed."
        )
        button = QPushButton("Install now", widget)
        button.clicked.connect(self.install_dependencies)
        widget.layout().addWidget(button)
        bar.pushWidget(widget, Qgis.Warning)

    def install_dependencies(self) -> None:
        folder = dependencies.default_deps_dir()
        answer = QMessageBox.question(
            self.iface.mainWindow(),
            "Ada3D",
            "Install onnxruntime (about 300 MB download) into\n"
            f"{folder}\nwith pip? QGIS stays busy until it finishes.",
        )
        if answer != QMessageBox.Yes:
            return
        try:
            dependencies.install(folder)
        except RuntimeError as exc:
            QgsMessageLog.logMessage(str(exc), LOG_TAG, Qgis.Critical)
            QMessageBox.critical(self.iface.mainWindow(), "Ada3D", str(exc))
            return
        self.iface.messageBar().pushSuccess("Ada3D", f"onnxruntime installed into {folder}")
