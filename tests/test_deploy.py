"""`make deploy`'s script on a throw-away QGIS profile: the plugin is unpacked
and enabled, the dependency plan of this machine is installed into the
plugin-owned folder with QGIS's own Python, plain `qgis_process.bin list`
then shows the provider, and the deployed plugin runs a model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from scripts.qgis_env import REPO, qgis_process_exe


def test_deploy_makes_the_provider_visible_to_qgis_process(tmp_path, tiny_model, small):
    subprocess.run([sys.executable, str(REPO / "scripts" / "package.py")], check=True)
    config = tmp_path / "config"
    profile = config / "profiles" / "default"
    env = dict(os.environ, QGIS_PROFILE_DIR=str(profile))
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(var, None)
    deploy = subprocess.run(["bash", str(REPO / "scripts" / "deploy.sh")], env=env,
                            capture_output=True, text=True, check=False)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    plugin = profile / "python" / "plugins" / "ada3d_qgis"
    assert (plugin / "metadata.txt").is_file() and not (plugin / "metadata.txt").is_symlink()
    assert "ada3d_qgis=true" in (profile / "QGIS" / "QGIS3.ini").read_text()
    deps = profile / "ada3d_qgis_deps" / f"py{sys.version_info.major}{sys.version_info.minor}"
    active = deps / (deps / "active.txt").read_text().strip()
    assert (active / "onnxruntime" / "__init__.py").is_file()
    # The plan for this machine, and only it: never the CPU and GPU builds together.
    plan = subprocess.run([sys.executable, "-m", "ada3d_qgis.dependencies", "plan"],
                          capture_output=True, text=True, check=True).stdout.split()
    installed = {p.name.split("-")[0].replace("_", "-") for p in active.glob("*.dist-info")}
    assert installed == {r.split("==")[0].replace("_", "-") for r in plan}

    env = dict(env, QGIS_CUSTOM_CONFIG_PATH=str(config), QT_QPA_PLATFORM="offscreen")
    listing = subprocess.run([qgis_process_exe(), "list", "--json"], env=env,
                             capture_output=True, text=True, check=False, timeout=300)
    assert listing.returncode == 0, listing.stderr
    providers = json.loads(listing.stdout)["providers"]
    assert "ada3d" in providers
    assert {"ada3d:pansharpen", "ada3d:assessquality"} <= set(providers["ada3d"]["algorithms"])

    # The deployed plugin runs a model with the onnxruntime of its own folder.
    pan, ms = small
    out = tmp_path / "fused.tif"
    run = subprocess.run(
        [qgis_process_exe(), "run", "ada3d:pansharpen", "--json", "--", f"PANCHROMATIC={pan}",
         f"SPECTRAL={ms}", f"MODEL={tiny_model}", "DEVICE=2", f"OUTPUT={out}"],
        env=env, capture_output=True, text=True, check=False, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert json.loads(run.stdout[run.stdout.index("{"):])["results"]["OUTPUT"] == str(out)
    assert out.is_file()
