"""Speed and peak memory of the adaptive convolution's formulations in onnxruntime.

``python -m bench.formulations [--checkpoint runs/r2/best.pt] [--tile 320]``
exports the checkpoint once per formulation (model_export.adaptive_conv.FORMULATIONS;
same weights, same values) and runs each model on a random normalised tile in a
process of its own, the formulations in turn for ``--rounds`` rounds: the best
time and the peak resident memory above the session's resting size (Linux
VmHWM - VmRSS before the first run).
Prints a table and writes it to docs/formulations.md. Time it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = REPO / "runs" / "r2" / "best.pt"
#: "einsum" is left out by default: about 9 times slower (see adaptive_conv).
DEFAULT_FORMULATIONS = ("strips", "tap_gather", "gather_mul", "mul_einsum", "taps")


def _memory_mib() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) // 1024
    return out


def run_child(model: str, tile: int, threads: int) -> dict:
    """In this process: open ``model``, run it three times on one tile."""
    import onnxruntime as ort

    from ada3d_qgis.engine.session import read_metadata
    from bench.speed import cpu_session_options, random_tile_feeds

    sess = ort.InferenceSession(model, cpu_session_options(threads),
                                providers=["CPUExecutionProvider"])
    feeds = random_tile_feeds(read_metadata(Path(model)), tile)
    resting = _memory_mib()["VmRSS"]
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        sess.run(None, feeds)
        seconds.append(time.perf_counter() - start)
    return {"seconds": min(seconds), "peak_above_rest_mib": _memory_mib()["VmHWM"] - resting}


def measure(model: Path, tile: int, threads: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.formulations", "--child", str(model),
         "--tile", str(tile), "--threads", str(threads)],
        capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def best_of(runs: list[dict]) -> dict:
    """The best time and the largest peak of several ``measure`` results."""
    return {"seconds": min(r["seconds"] for r in runs),
            "peak_above_rest_mib": max(r["peak_above_rest_mib"] for r in runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--tile", type=int, default=320, help="PAN pixels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--formulations", nargs="+", default=list(DEFAULT_FORMULATIONS))
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "formulations.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.tile, args.threads)))
        return

    from model_export.export import export_checkpoint

    runs: dict[str, list[dict]] = {name: [] for name in args.formulations}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name in args.formulations:
            paths[name] = Path(tmp) / f"{name}.onnx"
            export_checkpoint(args.checkpoint, paths[name], check=False, formulation=name)
        # Round robin, so that a drift of the machine's speed during the
        # benchmark touches every formulation alike.
        for _ in range(args.rounds):
            for name, path in paths.items():
                runs[name].append(measure(path, args.tile, args.threads))
                print(f"{name:12s} {runs[name][-1]['seconds']:6.2f} s, peak "
                      f"{runs[name][-1]['peak_above_rest_mib']:5d} MiB above rest", flush=True)
    rows = [{"formulation": name, **best_of(rs)} for name, rs in runs.items()]
    lines = [
        "# Formulations of the adaptive convolution",
        "",
        f"Made by `python -m bench.formulations` ({args.checkpoint.name} of "
        f"`{args.checkpoint.parent.name}`, one {args.tile}² PAN tile, {args.threads} "
        f"threads, CPU, memory arena off): the best of {args.rounds} processes per "
        "formulation, taken in turn, each timing three runs; the peak resident memory "
        "above the session's resting size (the largest of them).",
        "",
        "| formulation | seconds per tile | peak memory above rest (MiB) |",
        "|---|---|---|",
        *(f"| {r['formulation']} | {r['seconds']:.2f} | {r['peak_above_rest_mib']} |"
          for r in rows),
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
