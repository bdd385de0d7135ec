"""A headless QGIS with Processing and the Ada3D provider, for the benchmarks."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


#: Processing keeps only a C++ pointer to a provider: the Python object must
#: stay alive or its algorithms lose their ids.
_PROVIDER = None


def start_qgis():
    """Initialise QGIS once; returns the QgsApplication (keep a reference)."""
    from qgis.core import QgsApplication

    app = QgsApplication.instance()
    if app is None:
        app = QgsApplication([], False)
        app.initQgis()
    plugins = os.path.join(app.pkgDataPath(), "python", "plugins")
    if plugins not in sys.path:
        sys.path.append(plugins)
    from processing.core.Processing import Processing

    Processing.initialize()
    from ada3d_qgis.provider import Ada3DProvider

    global _PROVIDER
    registry = QgsApplication.processingRegistry()
    if registry.providerById("ada3d") is None:
        _PROVIDER = Ada3DProvider()
        registry.addProvider(_PROVIDER)
    return app
