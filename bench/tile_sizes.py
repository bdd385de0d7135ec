"""Time per kept pixel and peak memory of one tile, against the tile size.

``python -m bench.tile_sizes [--model M] [--windows 156 188 ...] [--rounds 2]``
runs the model on one random normalised window of each size (PAN pixels, the
overlap included), each in a process of its own (bench/formulations.py's
child), the sizes in turn for ``--rounds`` rounds, and reports per size: the
best time, the time per window pixel and per kept (core) pixel, a window of
side W keeping (W - 2 overlap)² pixels, and the peak resident memory above the
session's resting size. Writes docs/tile_sizes.md. Time it on an idle machine.

This is what export.py's default tile size rests on: on a CPU the time per
kept pixel hardly changes with the tile size (a smaller window wastes more on
its overlap but runs faster per pixel, its tensors staying nearer the cache),
while the memory grows with the window's area.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import DEFAULT_MODEL, REPO, best_of, measure_tile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--windows", type=int, nargs="+",
                        default=[160, 192, 224, 256, 288, 320, 352])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "tile_sizes.md")
    args = parser.parse_args()

    from ada3d_qgis.engine.session import read_metadata

    meta = read_metadata(args.model)
    windows = [w for w in args.windows if w % meta.ratio == 0 and w > 2 * meta.overlap]
    runs: dict[int, list[dict]] = {w: [] for w in windows}
    # Round robin, so that a drift of the machine's speed touches every size alike.
    for _ in range(args.rounds):
        for w in windows:
            runs[w].append(measure_tile(args.model, w, args.threads))
            print(f"{w:4d} px: {runs[w][-1]['seconds']:6.2f} s, peak "
                  f"{runs[w][-1]['peak_above_rest_mib']:5d} MiB above rest", flush=True)
    best = {w: best_of(rs) for w, rs in runs.items()}
    rows = []
    for w in windows:
        core = w - 2 * meta.overlap
        rows.append(
            f"| {w} | {core} | {best[w]['seconds']:.2f} | {1e6 * best[w]['seconds'] / w**2:.1f} "
            f"| {1e6 * best[w]['seconds'] / core**2:.1f} | {best[w]['peak_above_rest_mib']} |"
        )
    text = "\n".join([
        "# Tile size: time and memory",
        "",
        f"Made by `python -m bench.tile_sizes` ({args.model.name}, overlap {meta.overlap} px, "
        f"model default {meta.tile_size} px; {args.threads} threads, CPU, memory arena off): "
        f"one random normalised window per process, best of {args.rounds} rounds taken in "
        "turn; the kept pixels of a window are its core, (window - 2 overlap)²; peak "
        "resident memory above the session's resting size (the largest seen).",
        "",
        "| window (px) | core (px) | seconds per tile | µs per window px | µs per kept px "
        "| peak memory above rest (MiB) |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ])
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
