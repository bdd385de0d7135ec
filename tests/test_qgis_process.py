"""The plugin as `qgis_process` sees it, loaded from this checkout."""

import json


def test_qgis_process_lists_the_ada3d_provider(qgis_process):
    proc = qgis_process("list", "--json")
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    assert "ada3d" in listing["providers"], sorted(listing["providers"])
    assert listing["providers"]["ada3d"]["name"] == "Ada3D"
