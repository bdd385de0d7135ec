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
import tempfile
from pathlib import Path

from bench.common import DEFAULT_CHECKPOINT, REPO, best_of, measure_tile

#: "einsum" is left out by default: about 9 times slower (see adaptive_conv).
DEFAULT_FORMULATIONS = ("strips", "tap_gather", "gather_mul", "mul_einsum", "taps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--tile", type=int, default=320, help="PAN pixels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--formulations", nargs="+", default=list(DEFAULT_FORMULATIONS))
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "formulations.md")
    args = parser.parse_args()

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
                runs[name].append(measure_tile(path, args.tile, args.threads))
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
