#!/usr/bin/env bash
# Install dist/ada3d_qgis.zip into a QGIS profile, enable it, and install the
# plugin's Python dependencies (onnxruntime) into its own folder of that
# profile, the same route the plugin offers from inside QGIS.
#   QGIS_PROFILE_DIR  profile folder (default: ~/.local/share/QGIS/QGIS3/profiles/default)
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${QGIS_PROFILE_DIR:-$HOME/.local/share/QGIS/QGIS3/profiles/default}
PLUGINS="$PROFILE/python/plugins"
ZIP=dist/ada3d_qgis.zip
[ -f "$ZIP" ] || { echo "deploy: $ZIP missing (run make package)" >&2; exit 1; }

mkdir -p "$PLUGINS"
rm -rf "$PLUGINS/ada3d_qgis"
/usr/bin/python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$ZIP" "$PLUGINS"

# Enable the plugin: [PythonPlugins] ada3d_qgis=true in the profile's QGIS3.ini.
/usr/bin/python3 - "$PROFILE/QGIS/QGIS3.ini" <<'PY'
import configparser, sys
from pathlib import Path
ini = Path(sys.argv[1])
ini.parent.mkdir(parents=True, exist_ok=True)
cfg = configparser.RawConfigParser()
cfg.optionxform = str  # QGIS keys are case-sensitive
if ini.exists():
    cfg.read(ini)
if not cfg.has_section("PythonPlugins"):
    cfg.add_section("PythonPlugins")
cfg.set("PythonPlugins", "ada3d_qgis", "true")
with ini.open("w") as fh:
    cfg.write(fh, space_around_delimiters=False)
PY

# Dependencies, with QGIS's own Python (not .venv), into the plugin-owned
# folder: the plan the plugin's installer would pick on this machine, in a
# fresh env-* folder made active only once pip succeeded (folders.py).
PYTAG=$(/usr/bin/python3 -c 'import sys; print(f"py{sys.version_info.major}{sys.version_info.minor}")')
DEPS="$PROFILE/ada3d_qgis_deps/$PYTAG"
deps_py() { PYTHONPATH="$PLUGINS" /usr/bin/python3 -c "import sys; from pathlib import Path; from ada3d_qgis.dependencies import folders; $1" "$DEPS"; }
ACTIVE=$(deps_py 'print(folders.active_dir(Path(sys.argv[1])))')
if ! PYTHONPATH="$ACTIVE" /usr/bin/python3 -c "import onnxruntime" 2>/dev/null; then
    REQS=$(PYTHONPATH="$PLUGINS" /usr/bin/python3 -m ada3d_qgis.dependencies plan --why) \
        || { echo "deploy: no dependency plan for this machine" >&2; exit 1; }
    ENV=$(deps_py 'print(folders.new_env_dir(Path(sys.argv[1])))')
    # shellcheck disable=SC2086  # one requirement per word
    /usr/bin/python3 -m pip install --disable-pip-version-check --no-input --no-deps \
        --only-binary=:all: --target "$ENV" $REQS 2>&1 | grep -v "is ignored" || true
    PYTHONPATH="$ENV" /usr/bin/python3 -c "import onnxruntime" \
        || { echo "deploy: onnxruntime did not install into $ENV" >&2; rm -rf "$ENV"; exit 1; }
    deps_py "folders.activate(Path(sys.argv[1]), Path('$ENV'))"
    ACTIVE=$ENV
fi
echo "deploy: ada3d_qgis installed and enabled in $PROFILE (dependencies in $ACTIVE)"
