"""Run one Processing algorithm in a fresh process (so that bench/measure.py
sees its own peak memory): ``python -m bench.run_algorithm ALG KEY=VALUE ...``.

Prints ``RESULT {"outputs": ..., "seconds": ...}``: the seconds are those of
``processing.run`` alone, without the interpreter's and QGIS's start-up and
shutdown, which an analyst pays once per QGIS session rather than per run."""

from __future__ import annotations

import json
import sys
import time

from bench.qgis_app import start_qgis


def main(argv: list[str]) -> None:
    app = start_qgis()  # noqa: F841 - QGIS must outlive processing.run
    import processing

    alg, *pairs = argv
    params = dict(p.split("=", 1) for p in pairs)
    for key in ("DEVICE", "RESAMPLING", "TILE_SIZE", "OVERLAP"):
        if key in params:
            params[key] = int(params[key])
    start = time.perf_counter()
    result = processing.run(alg, params)
    seconds = time.perf_counter() - start
    outputs = {k: str(v) for k, v in result.items()}
    print("RESULT " + json.dumps({"outputs": outputs, "seconds": seconds}))


if __name__ == "__main__":
    main(sys.argv[1:])
