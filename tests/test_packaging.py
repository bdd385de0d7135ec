"""`make package` output: what QGIS's "Install from ZIP" needs, nothing more."""

import configparser
import json
import subprocess
import sys
import zipfile

import pytest

from ada3d_qgis.dependencies.plan import CPU_ORT
from scripts.qgis_env import REPO

REQUIRED_METADATA = (
    "name qgisMinimumVersion qgisMaximumVersion description about version author email "
    "repository tracker homepage tags icon category hasProcessingProvider changelog"
).split()


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "ada3d_qgis.zip"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "package.py"), "--out", str(out)], check=True
    )
    return out


def test_zip_has_one_top_level_plugin_folder(plugin_zip):
    names = zipfile.ZipFile(plugin_zip).namelist()
    assert {n.split("/")[0] for n in names} == {"ada3d_qgis"}
    for required in ("__init__.py", "metadata.txt", "LICENSE", "provider.py", "plugin.py"):
        assert f"ada3d_qgis/{required}" in names
    icons = {n for n in names if n.startswith("ada3d_qgis/icons/") and n.endswith(".svg")}
    assert {"ada3d_qgis/icons/ada3d.svg", "ada3d_qgis/icons/pansharpen.svg"} <= icons
    shipped = sorted(p.name for p in (REPO / "ada3d_qgis" / "models").glob("*.onnx"))
    zipped = [n for n in names if n.startswith("ada3d_qgis/models/") and n.endswith(".onnx")]
    assert sorted(n.rsplit("/", 1)[1] for n in zipped) == shipped


def test_zip_carries_no_tests_caches_or_build_files(plugin_zip):
    for name in zipfile.ZipFile(plugin_zip).namelist():
        parts = name.split("/")
        assert "tests" not in parts and "__pycache__" not in parts, name
        assert not name.endswith((".pyc", ".pt", ".part")), name
        assert "model_export" not in parts and ".venv" not in parts, name


def test_metadata_complete(plugin_zip):
    text = zipfile.ZipFile(plugin_zip).read("ada3d_qgis/metadata.txt").decode()
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read_string(text)
    general = cfg["general"]
    for key in REQUIRED_METADATA:
        assert general.get(key, "").strip(), key
    # 3.22 on Windows runs Python 3.9: the dependency plan must serve it.
    assert general["qgisMinimumVersion"] == "3.22"
    assert min(CPU_ORT) == (3, 9) and ("windows", "x86_64") in CPU_ORT[(3, 9)]
    assert general["qgisMaximumVersion"] == "4.99"
    assert general["supportsQt6"] == "True"
    assert general["changelog"].strip().startswith(general["version"] + " - ")
    assert general["category"] == "Raster"
    assert general["hasProcessingProvider"] == "yes"
    assert f"ada3d_qgis/{general['icon']}" in zipfile.ZipFile(plugin_zip).namelist()
    assert "GNU GENERAL PUBLIC LICENSE" in zipfile.ZipFile(plugin_zip).read(
        "ada3d_qgis/LICENSE"
    ).decode()


def test_plugin_never_imports_torch():
    offenders = [
        str(p.relative_to(REPO))
        for p in (REPO / "ada3d_qgis").rglob("*.py")
        if any(
            line.strip().startswith(("import torch", "from torch"))
            for line in p.read_text().splitlines()
        )
    ]
    assert offenders == []


def test_zip_is_well_under_the_repository_limit(plugin_zip):
    size = plugin_zip.stat().st_size
    print(f"dist/ada3d_qgis.zip: {size / 1e6:.1f} MB")
    assert size < 20 * 10**6


@pytest.fixture(scope="module")
def unpacked(plugin_zip, tmp_path_factory):
    folder = tmp_path_factory.mktemp("unpacked")
    zipfile.ZipFile(plugin_zip).extractall(folder)
    return folder / "ada3d_qgis"


def test_bandit_finds_nothing_in_what_ships(unpacked):
    proc = subprocess.run(
        [sys.executable, "-m", "bandit", "-r", str(unpacked), "-f", "json", "-q"],
        capture_output=True, text=True, check=False,
    )
    report = json.loads(proc.stdout)
    assert report["results"] == [], [(r["filename"], r["test_id"]) for r in report["results"]]
    assert report["metrics"]["_totals"]["loc"] > 1000  # it really scanned the plugin
    assert proc.returncode == 0


def test_no_qt5_only_forms_in_what_ships(unpacked):
    from scripts.check_compat import check_paths

    assert check_paths([unpacked]) == []
