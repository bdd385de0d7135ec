"""Python packages the plugin needs beyond what QGIS ships (onnxruntime).

- :mod:`.plan`: which pinned requirements a machine gets (pure; also the
  ``python -m ada3d_qgis.dependencies plan`` command line);
- :mod:`.detect`: the facts of this machine (OS, Python, NVIDIA driver);
- :mod:`.folders`: the plugin's dependency folder in the QGIS profile;
- :mod:`.install_task`: pip in a ``QgsTask`` (never blocks QGIS);
- :mod:`.dialog`: the "Install / repair dependencies" dialog.
"""

from __future__ import annotations

from .folders import add_to_path, default_root, missing_modules

__all__ = ["add_to_path", "default_root", "missing_modules"]
