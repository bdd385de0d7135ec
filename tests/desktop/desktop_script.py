"""Run inside the real QGIS desktop by tests/desktop/test_desktop.py
(``qgis --code``): loads the sample, opens the Ada3D Pansharpen dialog and
reports, through files in ADA3D_DESKTOP_DIR, where its Run button is (the test
clicks it with xdotool) and what lands in the project."""

import json
import os
import time
from pathlib import Path

from qgis.core import QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication, QDialog, QDialogButtonBox, QTextEdit
from qgis.utils import iface, plugins

OUT = Path(os.environ["ADA3D_DESKTOP_DIR"])
STATE = {}
KEEP = {}
DEADLINE = time.monotonic() + float(os.environ.get("ADA3D_DESKTOP_TIMEOUT", "240"))


def report(**values):
    STATE.update(values)
    tmp = OUT / "state.json.tmp"
    tmp.write_text(json.dumps(STATE))
    tmp.replace(OUT / "state.json")


def start():
    import processing

    pan = QgsRasterLayer(os.environ["ADA3D_PAN"], "l8_pan")
    ms = QgsRasterLayer(os.environ["ADA3D_MS"], "l8_ms")
    QgsProject.instance().addMapLayers([pan, ms])
    iface.setActiveLayer(ms)
    dialog = processing.createAlgorithmDialog(
        "ada3d:pansharpen",
        {"PANCHROMATIC": pan.id(), "SPECTRAL": ms.id(), "DEVICE": 2,
         "OUTPUT": str(OUT / "fused.tif")},
    )
    KEEP["dialog"] = dialog
    dialog.show()
    dialog.raise_()
    QTimer.singleShot(2000, announce_button)


def announce_button():
    dialog = KEEP["dialog"]
    button = dialog.runButton()
    centre = button.mapToGlobal(button.rect().center())
    report(
        plugin_loaded="ada3d_qgis" in plugins,
        dialog_title=dialog.windowTitle(),
        run_button=[centre.x(), centre.y()],
        help_button=dialog.buttonBox().button(QDialogButtonBox.StandardButton.Help)
        is not None,
    )
    QTimer.singleShot(500, wait_for_layer)


def wait_for_layer():
    fused = [layer for layer in QgsProject.instance().mapLayers().values()
             if layer.name().endswith("pansharpened (Ada3D)")]
    if fused:
        layer = fused[0]
        renderer = layer.renderer()
        log = KEEP["dialog"].findChild(QTextEdit, "txtLog")
        report(log=log.toPlainText() if log is not None else "")
        KEEP["dialog"].close()
        # The result lands above the active layer (the MS), under the PAN: hide
        # the inputs so that the screenshot shows it.
        root = QgsProject.instance().layerTreeRoot()
        for other in QgsProject.instance().mapLayers().values():
            if other.id() != layer.id():
                root.findLayer(other.id()).setItemVisibilityChecked(False)
        iface.mapCanvas().setExtent(layer.extent())
        iface.mapCanvas().refresh()
        report(
            layer_name=layer.name(),
            layer_source=layer.source(),
            renderer=renderer.type(),
            rgb=[renderer.redBand(), renderer.greenBand(), renderer.blueBand()],
            limits=int(renderer.minMaxOrigin().limits()),
        )
        QTimer.singleShot(3000, lambda: report(rendered=True))
        QTimer.singleShot(500, wait_for_quit)
        return
    if time.monotonic() > DEADLINE:
        report(error="no fused layer in the project before the deadline")
        QTimer.singleShot(500, wait_for_quit)
        return
    QTimer.singleShot(500, wait_for_layer)


def wait_for_quit():
    if (OUT / "quit").exists() or time.monotonic() > DEADLINE + 60:
        # A raster layer alive at exit crashes QGIS 3.22: the project lets go first.
        QgsProject.instance().removeAllMapLayers()
        report(quit=True)
        os._exit(0)
    QTimer.singleShot(300, wait_for_quit)


def ada3d_menu_actions():
    """The actions of Raster > Ada3D, by text."""
    for action in iface.rasterMenu().actions():
        menu = action.menu()
        if menu is not None and action.text().replace("&", "") == "Ada3D":
            return {a.text(): a for a in menu.actions()}
    return {}


def open_from_menu(text):
    """Trigger a Raster > Ada3D entry; its modal dialog is closed once seen and
    its title recorded (the nested event loop of exec() runs the timer)."""
    seen = {}

    def close_dialog():
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, QDialog) and widget.isVisible():
                seen["title"] = widget.windowTitle()
                widget.reject()
                return
        if time.monotonic() < DEADLINE:
            QTimer.singleShot(300, close_dialog)

    QTimer.singleShot(1500, close_dialog)
    ada3d_menu_actions()[text].trigger()
    return seen.get("title", "")


def check_menu():
    actions = ada3d_menu_actions()
    report(
        menu=sorted(actions),
        menu_pansharpen=open_from_menu("Pansharpen…"),
        menu_assess=open_from_menu("Assess Pansharpening Quality…"),
        menu_dependencies=open_from_menu("Install / repair dependencies…"),
    )
    QTimer.singleShot(500, start)


QTimer.singleShot(1000, check_menu)
