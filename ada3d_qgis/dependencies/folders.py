"""The plugin's own dependency folder inside the QGIS profile.

QGIS runs its own Python, which sees no virtualenv, and Debian's refuses a
plain ``pip install``; so onnxruntime goes into
``<profile>/ada3d_qgis_deps/py3XX`` (compiled wheels are per Python version).
Each install goes into a fresh ``env-*`` folder inside it and becomes active
only once pip succeeded (``active.txt`` names it): a failed or cancelled
install leaves the working one alone, the CPU and GPU builds of onnxruntime
never share a folder, and on Windows the DLLs a running QGIS holds open are
never overwritten (the old folder is removed at the next start).
"""

from __future__ import annotations

import importlib
import shutil
import sys
import time
from pathlib import Path

ACTIVE_FILE = "active.txt"
ENV_PREFIX = "env-"
#: Modules that must import for the plugin to work.
MODULES = ("onnxruntime",)


def python_tag() -> str:
    return f"py{sys.version_info[0]}{sys.version_info[1]}"


def default_root() -> Path:
    """``<QGIS profile>/ada3d_qgis_deps/py3XX``."""
    from qgis.core import QgsApplication

    return Path(QgsApplication.qgisSettingsDirPath()) / "ada3d_qgis_deps" / python_tag()


def active_dir(root: Path) -> Path:
    """The folder to import from: the one ``active.txt`` names, else ``root``
    itself (where ``make deploy`` installs)."""
    marker = root / ACTIVE_FILE
    if marker.is_file():
        env = root / marker.read_text(encoding="utf-8").strip()
        if env.name.startswith(ENV_PREFIX) and env.is_dir():
            return env
    return root


def new_env_dir(root: Path) -> Path:
    """A new, empty ``env-*`` folder for the next install."""
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        env = root / f"{ENV_PREFIX}{stamp}{'-' + str(n) if n else ''}"
        if not env.exists():
            env.mkdir()
            return env
    raise RuntimeError(f"could not create a new folder in {root}")


def activate(root: Path, env: Path) -> None:
    """Make ``env`` the folder the next QGIS start imports from."""
    tmp = root / (ACTIVE_FILE + ".part")
    tmp.write_text(env.name + "\n", encoding="utf-8")
    tmp.replace(root / ACTIVE_FILE)


def stale_envs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    active = active_dir(root)
    return sorted(
        p for p in root.iterdir() if p.is_dir() and p.name.startswith(ENV_PREFIX) and p != active
    )


def remove_stale(root: Path) -> None:
    """Delete folders of earlier installs (before anything imports from them)."""
    for env in stale_envs(root):
        shutil.rmtree(env, ignore_errors=True)


def add_to_path(root: Path | None = None) -> Path:
    """Put the active dependency folder first on ``sys.path`` (idempotent)."""
    folder = active_dir(root or default_root())
    if folder.is_dir() and str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
        importlib.invalidate_caches()
    return folder


def missing_modules() -> list[str]:
    missing = []
    for name in MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def installed_distributions(folder: Path) -> dict[str, str]:
    """{name: version} of the packages pip installed into ``folder``."""
    found = {}
    if not folder.is_dir():
        return found
    for meta in sorted(folder.glob("*.dist-info/METADATA")):
        name = version = ""
        for line in meta.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("Name:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("Version:"):
                version = line.split(":", 1)[1].strip()
            elif not line.strip():
                break
        if name:
            found[name] = version
    return found


def onnxruntime_state() -> tuple[str, list[str]] | None:
    """(version, available execution providers) of the onnxruntime this QGIS
    imports, or None when it does not import."""
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__, list(onnxruntime.get_available_providers())
