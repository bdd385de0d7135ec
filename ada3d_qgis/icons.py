"""Where the plugin's SVG icons live.

In the installed plugin they sit in ``ada3d_qgis/icons``; in a source checkout
they are in the top-level ``icons/`` folder beside the package.
"""

from __future__ import annotations

from pathlib import Path

from qgis.PyQt.QtGui import QIcon

_HERE = Path(__file__).resolve().parent


def icon_path(name: str) -> Path:
    for folder in (_HERE / "icons", _HERE.parent / "icons"):
        path = folder / f"{name}.svg"
        if path.is_file():
            return path
    raise FileNotFoundError(f"icon {name}.svg not found")


def icon(name: str) -> QIcon:
    return QIcon(str(icon_path(name)))
