"""The "Ada3D" Processing provider: lists the plugin's algorithms."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .icons import icon


class Ada3DProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "ada3d"

    def name(self) -> str:
        return "Ada3D"

    def longName(self) -> str:
        return "Ada3D deep-learning pansharpening"

    def icon(self) -> QIcon:
        return icon("provider")

    def loadAlgorithms(self) -> None:
        # Imported here so that a broken optional dependency in one algorithm
        # surfaces as that algorithm's error, not as a plugin that fails to load.
        from .algorithms import available_algorithms

        for alg in available_algorithms():
            self.addAlgorithm(alg)
