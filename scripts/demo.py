"""`make demo`: pansharpen the embedded Landsat 8 sample through qgis_process.

Runs ``qgis_process.bin run ada3d:pansharpen`` on tests/data/l8_pan.tif and
tests/data/l8_ms.tif with the shipped model (the plugin loaded from this
checkout in a private QGIS configuration: the user's own profile is not
touched), then writes a quicklook PNG: the MS cubic-upsampled (left) and the
Ada3D result (right), true colour with the same contrast stretch.
"""

from __future__ import annotations

import json
import re
import sys
import time

from scripts.qgis_env import REPO, prepare_config, run_qgis_process
from scripts.quicklook import cubic_on_grid, read_rgb, side_by_side_png

OUT = REPO / "demo_output"
RGB = (3, 2, 1)  # the sample's bands are B, G, R, NIR


def main() -> int:
    models = sorted((REPO / "ada3d_qgis" / "models").glob("*.onnx"))
    if not models:
        print("demo: no shipped model in ada3d_qgis/models yet (make export)", file=sys.stderr)
        return 1
    OUT.mkdir(exist_ok=True)
    env = prepare_config(OUT / "qgis_config")
    fused = OUT / "l8_ada3d.tif"
    start = time.perf_counter()
    proc = run_qgis_process(
        env, "run", "ada3d:pansharpen", "--json", "--",
        f"PANCHROMATIC={REPO / 'tests/data/l8_pan.tif'}",
        f"SPECTRAL={REPO / 'tests/data/l8_ms.tif'}",
        f"OUTPUT={fused}",
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n", file=sys.stderr)
        print("demo: ada3d:pansharpen failed", file=sys.stderr)
        return 1
    result = json.loads(proc.stdout[proc.stdout.index("{"):])
    outputs = result.get("results", {})
    log = result.get("log", "") if isinstance(result.get("log"), str) else proc.stdout
    model = outputs.get("MODEL_USED") or _grep(log, r"[Mm]odel[^:\n]*:\s*(\S+\.onnx)")
    provider = outputs.get("EXECUTION_PROVIDER") or _grep(log, r"(\w+ExecutionProvider)")
    cubic = cubic_on_grid(REPO / "tests/data/l8_ms.tif", fused, OUT / "l8_cubic.tif")
    png = side_by_side_png([read_rgb(cubic, RGB), read_rgb(fused, RGB)], OUT / "l8_quicklook.png")
    print(f"output:             {fused}")
    print(f"quicklook:          {png}  (left: MS cubic-upsampled, right: Ada3D)")
    print(f"model:              {model}")
    print(f"execution provider: {provider}")
    print(f"time:               {elapsed:.1f} s (qgis_process, start-up included)")
    return 0


def _grep(text: str, pattern: str) -> str:
    match = re.search(pattern, text)
    return match.group(1) if match else "(not reported)"


if __name__ == "__main__":
    sys.exit(main())
