"""Static check that the plugin's code runs on every QGIS it claims.

QGIS 4 (Qt6, PyQt6) and QGIS 3.22 (Qt5, PyQt5, Python 3.9 on Windows) share
one source, so this flags, without importing QGIS:

- imports of PyQt5/PyQt6/sip instead of ``qgis.PyQt``;
- ``exec_()`` (gone in PyQt6; ``exec()`` works in both);
- unscoped enum access on a Qt or QGIS class (``QMessageBox.Yes``,
  ``Qgis.Warning``, ``QgsProcessingParameterNumber.Integer``): PyQt6 only
  knows ``Class.Enum.Member``;
- syntax and built-ins newer than Python 3.9 (``match``, ``zip(strict=)``,
  ``X | Y`` in ``isinstance``).

Usage: ``python scripts/check_compat.py [PATH...]`` (default: ada3d_qgis);
exit status 1 and one ``file:line: message`` per finding when any.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OLDEST_PYTHON = (3, 9)
#: Qt and QGIS class names: QMessageBox, Qt, Qgis, QgsTask, QgsProcessing...
QT_CLASS = re.compile(r"^(Qt|Qgis|Qgs[A-Z]\w*|Q[A-Z]\w*)$")
#: Attributes of such classes that are constants, not enum members.
CONSTANT = re.compile(r"^[A-Z0-9_]+$")
FORBIDDEN_MODULES = ("PyQt5", "PyQt6", "sip", "PySide2", "PySide6")


def _is_type_check(node: ast.Call) -> bool:
    return isinstance(node.func, ast.Name) and node.func.id in ("isinstance", "issubclass")


def check_source(source: str, filename: str = "<string>") -> list[str]:
    """``file:line: message`` for every finding in ``source``."""
    findings = []

    def flag(node: ast.AST, message: str) -> None:
        findings.append(f"{filename}:{getattr(node, 'lineno', 0)}: {message}")

    try:
        tree = ast.parse(source, filename, feature_version=OLDEST_PYTHON)
    except SyntaxError as exc:
        return [f"{filename}:{exc.lineno}: syntax newer than Python 3.9 ({exc.msg})"]
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    flag(node, f"import {alias.name}: import Qt through qgis.PyQt")
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in FORBIDDEN_MODULES:
                flag(node, f"from {node.module} import: import Qt through qgis.PyQt")
            if node.module == "qgis.PyQt.Qt":
                flag(node, "qgis.PyQt.Qt is Qt5-only: import from qgis.PyQt.QtCore")
        elif isinstance(node, ast.Attribute):
            if node.attr == "exec_":
                flag(node, "exec_() is Qt5-only: use exec()")
            elif (
                isinstance(node.value, ast.Name)
                and QT_CLASS.match(node.value.id)
                and node.attr[:1].isupper()
                and not CONSTANT.match(node.attr)
                and not isinstance(parents.get(node), ast.Attribute)
                and not (isinstance(parents.get(node), ast.Call) and parents[node].func is node)
            ):
                flag(
                    node,
                    f"{node.value.id}.{node.attr}: unscoped enum (Qt6 needs "
                    f"{node.value.id}.<Enum>.{node.attr}; see ada3d_qgis/compat.py)",
                )
        elif isinstance(node, ast.FunctionDef) and node.name == "exec_":
            flag(node, "def exec_: Qt6 calls exec()")
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id == "zip":
                if any(k.arg == "strict" for k in node.keywords):
                    flag(node, "zip(strict=) needs Python 3.10")
            if _is_type_check(node) and len(node.args) == 2:
                if any(isinstance(n, ast.BinOp) for n in ast.walk(node.args[1])):
                    flag(node, "X | Y in isinstance needs Python 3.10: use a tuple")
    return findings


def check_paths(paths: list[Path]) -> list[str]:
    findings = []
    for root in paths:
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        for path in files:
            if "__pycache__" in path.parts:
                continue
            name = path.relative_to(REPO) if path.is_relative_to(REPO) else path
            findings += check_source(path.read_text(encoding="utf-8"), str(name))
    return findings


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    paths = [Path(a).resolve() for a in args] or [REPO / "ada3d_qgis"]
    findings = check_paths(paths)
    for line in findings:
        print(line)
    if findings:
        print(f"check_compat: {len(findings)} finding(s)", file=sys.stderr)
        return 1
    checked = ", ".join(args or ["ada3d_qgis"])
    print(f"check_compat: no Qt5-only or post-3.9 forms in {checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
