"""scripts/check_compat.py: the Qt6 and Python 3.9 forms check of `make lint`."""

from __future__ import annotations

import pytest

from scripts.check_compat import check_source, main


@pytest.mark.parametrize(
    ("source", "finding"),
    [
        ("from PyQt5.QtCore import QProcess\n", "import Qt through qgis.PyQt"),
        ("import PyQt6\n", "import Qt through qgis.PyQt"),
        ("from qgis.PyQt.Qt import Qt\n", "Qt5-only"),
        ("dialog.exec_()\n", "exec_() is Qt5-only"),
        ("level = Qgis.Warning\n", "Qgis.Warning: unscoped enum"),
        ("if answer == QMessageBox.Yes: pass\n", "QMessageBox.Yes: unscoped enum"),
        ("t = QgsProcessingParameterNumber.Integer\n", "unscoped enum"),
        ("f = p.flags() | QgsProcessingParameterDefinition.FlagAdvanced\n", "unscoped enum"),
        ("align = Qt.AlignLeft\n", "Qt.AlignLeft: unscoped enum"),
        ("for a, b in zip(x, y, strict=True): pass\n", "zip(strict=) needs Python 3.10"),
        ("ok = isinstance(v, list | tuple)\n", "use a tuple"),
        ("match x:\n    case 1:\n        pass\n", "syntax newer than Python 3.9"),
    ],
)
def test_flags_qt5_only_and_post_39_forms(source, finding):
    findings = check_source(source, "f.py")
    assert len(findings) == 1 and finding in findings[0], findings


@pytest.mark.parametrize(
    "source",
    [
        "level = Qgis.MessageLevel.Warning\n",
        "b = QMessageBox.StandardButton.Yes\n",
        "v = Qgis.QGIS_VERSION_INT\n",
        "QgsApplication.processingRegistry()\n",
        "r = QMessageBox.question(None, 'a', 'b')\n",
        "dialog.exec()\n",
        "from qgis.PyQt.QtCore import QProcess\n",
        "ok = isinstance(v, (list, tuple))\n",
        "x: int | None = None\n",
    ],
)
def test_accepts_forms_that_run_on_qt5_and_qt6(source):
    assert check_source(source, "f.py") == []


def test_main_fails_on_a_finding(tmp_path, capsys):
    (tmp_path / "bad.py").write_text("from PyQt5 import QtCore\n")
    assert main([str(tmp_path)]) == 1
    assert "bad.py:1:" in capsys.readouterr().out
    (tmp_path / "bad.py").write_text("from qgis.PyQt import QtCore\n")
    assert main([str(tmp_path)]) == 0
