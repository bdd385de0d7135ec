"""The real QGIS desktop under Xvfb: the plugin loads, the Ada3D Pansharpen
dialog opens on the sample, a real mouse click (xdotool) on Run pansharpens,
and the fused layer appears in the project, styled true colour. A screenshot
of the screen is kept in the test's temporary folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from scripts.qgis_env import prepare_config

HERE = Path(__file__).resolve().parent
SCREEN = "1600x1000x24"


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: make setup installs it (Debian packages xvfb, xdotool)"
    return path


def _free_display() -> int:
    for number in range(91, 140):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(
            f"/tmp/.X{number}-lock"
        ).exists():
            return number
    raise RuntimeError("no free X display number")


def _state(folder: Path) -> dict:
    try:
        return json.loads((folder / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _wait_for(folder: Path, key: str, timeout: float, procs) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = _state(folder)
        if key in state or "error" in state:
            return state
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"{proc.args[0]} ended early ({proc.returncode})")
        time.sleep(0.5)
    raise AssertionError(f"the desktop did not report {key!r} within {timeout} s: {state}")


@pytest.fixture()
def desktop(tmp_path, sample_pan, sample_ms):
    """An X server and the QGIS desktop running tests/desktop/desktop_script.py."""
    display = f":{_free_display()}"
    xvfb = subprocess.Popen([_tool("Xvfb"), display, "-screen", "0", SCREEN, "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [xvfb]
    try:
        time.sleep(1.0)
        env = prepare_config(tmp_path / "qgis_config")
        env.update(DISPLAY=display, ADA3D_DESKTOP_DIR=str(tmp_path), ADA3D_PAN=str(sample_pan),
                   ADA3D_MS=str(sample_ms))
        env.pop("QT_QPA_PLATFORM", None)  # the real xcb window system this time
        log = open(tmp_path / "qgis.log", "w")
        qgis = subprocess.Popen(
            [_tool("qgis"), "--nologo", "--noversioncheck", "--code",
             str(HERE / "desktop_script.py")],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        procs.append(qgis)
        yield tmp_path, env, procs
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                with_group = proc is not xvfb
                if with_group:
                    os.killpg(proc.pid, signal.SIGTERM)
                else:
                    proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()


@pytest.mark.slow
def test_pansharpen_dialog_in_the_desktop_puts_the_styled_layer_on_the_map(desktop):
    folder, env, procs = desktop
    state = _wait_for(folder, "run_button", 180, procs)
    assert "error" not in state, state
    assert state["plugin_loaded"] and state["help_button"]
    assert "Ada3D Pansharpen" in state["dialog_title"]
    # Raster > Ada3D opens both algorithm dialogs and the dependency installer.
    assert state["menu"] == sorted(["Pansharpen…", "Assess Pansharpening Quality…",
                                    "Install / repair dependencies…"])
    assert "Ada3D Pansharpen" in state["menu_pansharpen"]
    assert "Assess Pansharpening Quality" in state["menu_assess"]
    assert "dependencies" in state["menu_dependencies"].lower()
    x, y = state["run_button"]
    subprocess.run([_tool("xdotool"), "mousemove", str(x), str(y), "click", "1"],
                   env=env, check=True, timeout=30)
    state = _wait_for(folder, "rendered", 300, procs)
    assert "error" not in state, state
    assert state["layer_name"] == "l8_ms pansharpened (Ada3D)"
    assert state["layer_source"] == str(folder / "fused.tif")
    assert state["renderer"] == "multibandcolor" and state["rgb"] == [3, 2, 1]
    assert state["limits"] == 3  # QgsRasterMinMaxOrigin.CumulativeCut
    # The log an analyst reads: the summary lines, no layers "not correctly generated".
    # The model the plugin chooses for four bands at ratio 2, whichever ships as that.
    from ada3d_qgis.engine.models import choose_model

    assert f"Model: {choose_model(4, 2.0).path.name}" in state["log"]
    assert "Done in " in state["log"] and "not correctly generated" not in state["log"]
    shot = folder / "desktop.png"
    subprocess.run([_tool("import"), "-window", "root", str(shot)], env=env, check=True,
                   timeout=60)
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
    (folder / "quit").touch()
    _wait_for(folder, "quit", 60, procs)
