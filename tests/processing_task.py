"""Run a Processing algorithm the way the Toolbox dialog does: parameters as
the dialog builds them, a QgsProcessingAlgRunnerTask on QGIS's task manager
(a worker thread), then Processing's own result handling (which loads the
layers into the project)."""

from __future__ import annotations

import time

from qgis.core import (
    QgsApplication,
    QgsProcessingAlgRunnerTask,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProject,
)
from qgis.PyQt.QtCore import QCoreApplication


class LogFeedback(QgsProcessingFeedback):
    """Keeps what the dialog's log panel would show."""

    def __init__(self) -> None:
        super().__init__()
        self.infos: list[str] = []
        self.details: list[str] = []
        self.errors: list[str] = []

    def pushInfo(self, info):
        self.infos.append(info)

    def pushDebugInfo(self, info):
        self.details.append(info)

    def reportError(self, error, fatalError=False):
        self.errors.append(error)


def destination(value: str) -> QgsProcessingOutputLayerDefinition:
    """An output with "Open output file after running algorithm" ticked."""
    return QgsProcessingOutputLayerDefinition(value, QgsProject.instance())


def run_like_the_dialog(alg_id, parameters: dict, timeout: float = 300.0):
    """(ok, results, feedback, context) after the task and the result handling."""
    from processing.gui.Postprocessing import handleAlgorithmResults
    from processing.tools import dataobjects

    registry = QgsApplication.processingRegistry()
    alg = alg_id if not isinstance(alg_id, str) else registry.createAlgorithmById(alg_id)
    context = dataobjects.createContext()
    feedback = LogFeedback()
    ok, message = alg.checkParameterValues(parameters, context)
    if not ok:
        return False, {"message": message}, feedback, context
    task = QgsProcessingAlgRunnerTask(alg, parameters, context, feedback)
    done: dict = {}
    task.executed.connect(lambda successful, results: done.update(ok=successful, res=results))
    QgsApplication.taskManager().addTask(task)
    deadline = time.monotonic() + timeout
    while "ok" not in done:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{alg.id()} did not finish within {timeout} s")
        QCoreApplication.processEvents()
        time.sleep(0.02)
    if done["ok"]:
        handleAlgorithmResults(alg, context, feedback, showResults=False, parameters=parameters)
    return done["ok"], done["res"], feedback, context
