"""Run one Processing algorithm in a fresh process (so that bench/measure.py
sees its own peak memory): ``python -m bench.run_algorithm ALG KEY=VALUE ...``."""

from __future__ import annotations

import json
import sys

from bench.qgis_app import start_qgis


def main(argv: list[str]) -> None:
    app = start_qgis()  # noqa: F841 - QGIS must outlive processing.run
    import processing

    alg, *pairs = argv
    params = dict(p.split("=", 1) for p in pairs)
    for key in ("DEVICE", "RESAMPLING", "TILE_SIZE", "OVERLAP"):
        if key in params:
            params[key] = int(params[key])
    result = processing.run(alg, params)
    print("RESULT " + json.dumps({k: str(v) for k, v in result.items()}))


if __name__ == "__main__":
    main(sys.argv[1:])
