"""The plugin's Raster > Ada3D menu, its algorithm dialogs and the installer's
outcome in the message bar, with a stand-in for QGIS's interface."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import MagicMock

import pytest

from ada3d_qgis import plugin as plugin_module
from ada3d_qgis.dependencies.detect import Gpu
from ada3d_qgis.dependencies.dialog import State, report
from ada3d_qgis.dependencies.plan import Machine, plan_for


@pytest.fixture
def plugin(qgis_app, monkeypatch, tmp_path):
    monkeypatch.setattr(plugin_module.dependencies, "default_root", lambda: tmp_path / "deps")
    # The session's provider stays registered for the other tests.
    monkeypatch.setattr(plugin_module.Ada3DPlugin, "initProcessing", lambda self: None)
    iface = MagicMock()
    iface.mainWindow.return_value = None
    return plugin_module.Ada3DPlugin(iface)


def test_menu_entries_open_the_algorithm_dialogs(plugin, monkeypatch, qgis_processing):
    import processing

    opened = []
    monkeypatch.setattr(processing, "execAlgorithmDialog", lambda alg, params: opened.append(alg))
    plugin.initGui()
    calls = plugin.iface.addPluginToRasterMenu.call_args_list
    assert [c.args[0] for c in calls] == ["Ada3D"] * 3
    texts = [c.args[1].text() for c in calls]
    assert texts == ["Pansharpen…", "Assess Pansharpening Quality…",
                     "Install / repair dependencies…"]
    plugin.actions[0].trigger()
    plugin.actions[1].trigger()
    assert opened == ["ada3d:pansharpen", "ada3d:assessquality"]
    plugin.unload()
    assert plugin.iface.removePluginRasterMenu.call_count == 3 and plugin.actions == []


def test_install_outcome_goes_to_the_message_bar(plugin):
    from qgis.core import Qgis

    ok = MagicMock(ok=True, message="Installed onnxruntime==1.32.0 (cpu) into X. Restart QGIS.")
    plugin._install_done(ok)
    args, kwargs = plugin.iface.messageBar().pushMessage.call_args
    assert args == ("Ada3D", ok.message) and kwargs["level"] == Qgis.MessageLevel.Success
    bad = MagicMock(ok=False, message="pip failed (exit status 1)\nERROR: no network")
    plugin._install_done(bad)
    args, kwargs = plugin.iface.messageBar().pushMessage.call_args
    assert args[1] == "pip failed (exit status 1)"
    assert kwargs["level"] == Qgis.MessageLevel.Critical


def test_installer_state_of_this_qgis(plugin):
    state, python = plugin.installer_state()
    assert python is not None and python.is_file()
    assert state.root == Path(plugin_module.dependencies.default_root())
    assert state.runtime is not None  # the venv's onnxruntime is loaded in the tests
    assert state.plan.flavour in ("cpu", "cuda12", "cuda13")
    assert state.cpu_plan.flavour == "cpu"


def test_report_shows_versions_providers_and_both_choices(tmp_path):
    gpu_plan = plan_for(Machine("windows", (3, 12), "x86_64", "560.94"))
    state = State(
        root=tmp_path, active=tmp_path / "env-1",
        installed={"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.26.0"},
        runtime=("1.32.0", ["CPUExecutionProvider"]),
        gpu=Gpu("560.94", "NVIDIA GeForce RTX 3060", (8, 6)), python="C:/QGIS/apps/Python312",
        plan=gpu_plan, cpu_plan=plan_for(Machine("windows", (3, 12), cpu_only=True)),
    )
    html = report(state)
    assert "onnxruntime 1.32.0 is loaded; providers: CPUExecutionProvider" in html
    assert "onnxruntime-gpu==1.26.0" in html and "onnxruntime==1.32.0" in html
    assert "Both onnxruntime and onnxruntime-gpu" in html
    assert "driver 560.94" in html
    no_python = State(tmp_path, tmp_path, {}, None, None, "?", "no Python", "no Python")
    assert "No installation is possible" in report(no_python)
    assert "does not import" in report(no_python)
