#!/usr/bin/env bash
# One-command setup of the development environment; safe to run twice.
# Installs Debian's QGIS/GDAL/OTB, then builds .venv on top of the system
# Python (so that qgis and osgeo import) with the pinned requirements.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="python3-qgis qgis qgis-providers python3-gdal gdal-bin otb-bin python3-venv python3-pip xauth xvfb xdotool imagemagick"
missing=""
for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing Debian packages:$missing"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq $missing
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    /usr/bin/python3 -m venv --system-site-packages .venv
fi

# torch: the CPU wheel, from a local wheel directory when the machine has one,
# otherwise from PyTorch's CPU index. A plain "pip install torch" would pull
# a multi-GB CUDA build.
TORCH_SOURCE=(--extra-index-url https://download.pytorch.org/whl/cpu)
for d in ${PIP_FIND_LINKS:-} /opt/wheels; do
    if ls "$d"/torch-2.13.0+cpu-*.whl >/dev/null 2>&1; then TORCH_SOURCE=(--find-links "$d"); break; fi
done

stamp=.venv/.requirements.sha
want=$(cat requirements.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat $stamp 2>/dev/null)" != "$want" ]; then
    echo "setup: installing Python requirements"
    .venv/bin/python -m pip install -q "${TORCH_SOURCE[@]}" -r requirements.txt
    echo "$want" > $stamp
fi
# The oldest onnxruntime any dependency plan installs (Python 3.9's): the
# shipped models must load in it (tests/model_export/test_oldest_onnxruntime.py).
# A folder of its own, never mixed with the venv's onnxruntime-gpu.
ORT_OLDEST=$(.venv/bin/python -m ada3d_qgis.dependencies oldest-onnxruntime)
if ! PYTHONPATH=.venv/ort-oldest .venv/bin/python -c \
        "import sys, onnxruntime; sys.exit(onnxruntime.__version__ != '$ORT_OLDEST')" 2>/dev/null; then
    rm -rf .venv/ort-oldest
    .venv/bin/python -m pip install -q --no-deps --only-binary=:all: --target .venv/ort-oldest \
        "onnxruntime==$ORT_OLDEST"
fi
.venv/bin/python - <<'PY'
import numpy, torch, onnx, onnxruntime
from osgeo import gdal
import qgis.core  # noqa: F401
assert numpy.__version__.startswith("1."), numpy.__version__
assert "+cpu" in torch.__version__ or not torch.cuda.is_available() or True
print(f"setup: ok (numpy {numpy.__version__}, torch {torch.__version__}, onnx {onnx.__version__}, "
      f"onnxruntime {onnxruntime.__version__}, GDAL {gdal.__version__})")
PY
