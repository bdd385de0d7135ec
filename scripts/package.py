"""Build dist/ada3d_qgis.zip for QGIS's "Install from ZIP".

One top-level folder ``ada3d_qgis/`` holding the plugin package, its
``metadata.txt``, ``LICENSE``, icons and shipped models; no tests, caches or
build files.
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "ada3d_qgis"
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo", ".orig", ".rej", ".tmp"}


def plugin_files() -> list[tuple[Path, str]]:
    """(source file, name inside the zip) pairs, sorted for reproducible zips."""
    entries: list[tuple[Path, str]] = []
    for path in sorted(PACKAGE.rglob("*")):
        rel = path.relative_to(PACKAGE)
        if any(part in SKIP_DIRS for part in rel.parts) or path.suffix in SKIP_SUFFIXES:
            continue
        if path.is_file() and rel.as_posix() not in ("metadata.txt",):
            entries.append((path, f"ada3d_qgis/{rel.as_posix()}"))
    # Top-level sources of the repository that the plugin folder must carry.
    entries.append((REPO / "metadata.txt", "ada3d_qgis/metadata.txt"))
    entries.append((REPO / "LICENSE", "ada3d_qgis/LICENSE"))
    for svg in sorted((REPO / "icons").glob("*.svg")):
        entries.append((svg, f"ada3d_qgis/icons/{svg.name}"))
    return entries


#: plugins.qgis.org refuses uploads over 25 MB; stay well below it.
MAX_BYTES = 20 * 10**6


def build(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".zip.part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for src, name in plugin_files():
            # Dereferences symlinks: the zip holds real files.
            zf.write(src.resolve(), name)
    size = tmp.stat().st_size
    if size > MAX_BYTES:
        tmp.unlink()
        limit = MAX_BYTES / 1e6
        raise SystemExit(f"package: {size / 1e6:.1f} MB is over the {limit:.0f} MB allowed")
    tmp.replace(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "dist" / "ada3d_qgis.zip")
    args = parser.parse_args()
    path = build(args.out)
    print(f"built {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
