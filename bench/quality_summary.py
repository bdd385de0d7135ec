"""One table of Ada3D against the best classical method at every ratio and
band count that ``make bench-quality`` scored: ``python -m bench.quality_summary``.

Reads the per-scene figures bench/quality.py wrote (docs/quality_r*.json),
takes the means over the Landsat 7 validation scenes and the Landsat 8 scene
apart, and prints (and writes to docs/quality_summary.md) for each table the
default Ada3D model's SAM, ERGAS and Q2n against the best classical method on
each, and its QNR against the best classical QNR.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from bench.common import default_ada3d_row

REPO = Path(__file__).resolve().parents[1]
METRICS = {"SAM": min, "ERGAS": min, "Q2n": max, "QNR": max}
FILE = re.compile(r"quality_r(?P<ratio>\d)(?:_(?P<bands>\d)b)?\.json$")


def means(per_case: dict[str, dict[str, dict]], prefix: str) -> dict[str, dict[str, float]]:
    cases = [k for k in per_case if k.startswith(prefix)]
    methods = list(per_case[cases[0]])
    return {m: {c: float(np.mean([per_case[k][m][c] for k in cases])) for c in METRICS}
            for m in methods}


def row(label: str, table: dict[str, dict[str, float]]) -> tuple[str, bool]:
    """A Markdown row and whether Ada3D beats every classical method on SAM,
    ERGAS and Q2n."""
    name = default_ada3d_row(list(table))
    classical = [m for m in table if not m.startswith("Ada3D")]
    cells, wins = [], True
    for metric, best_of in METRICS.items():
        best = best_of(classical, key=lambda m: table[m][metric])
        mine, theirs = table[name][metric], table[best][metric]
        if metric != "QNR":
            wins &= (mine < theirs) if best_of is min else (mine > theirs)
        change = 100 * (mine - theirs) / theirs
        cells.append(f"{mine:.4f} vs {theirs:.4f} ({best}, {change:+.1f} %)")
    model = name.removeprefix("Ada3D (").removesuffix(")").removesuffix(", default")
    return f"| {label} | {model} | " + " | ".join(cells) + f" | {'yes' if wins else 'no'} |", wins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=REPO / "docs")
    args = parser.parse_args()
    found = []
    for path in args.docs.glob("quality_r*.json"):
        match = FILE.search(path.name)
        if match:
            found.append((int(match["ratio"]), int(match["bands"] or 4), path))
    header = ("| ratio, bands, scenes | Ada3D model | SAM (ours vs best classical) | ERGAS | Q2n "
              "| QNR | best on SAM, ERGAS and Q2n |")
    lines = ["# Ada3D against the best classical method, every table", "",
             "Made by `python -m bench.quality_summary` from the figures `make bench-quality` "
             "wrote (docs/quality_r*.json): means over the Landsat 7 validation scenes, and "
             "the Landsat 8 scene alone. Each cell: the default Ada3D model's value against "
             "the best classical method's on that measure (which one, and the change). "
             "8 bands: a proxy made of the six real bands and two interpolated ones "
             "(bench/quality.py).", "", header, "|---" * 7 + "|"]
    for ratio, bands, path in sorted(found):
        per_case = json.loads(path.read_text())
        for prefix, scenes in (("L7", "L7 validation"), ("L8", "L8 scene")):
            text, _ = row(f"{ratio}, {bands}, {scenes}", means(per_case, prefix))
            lines.append(text)
    out = args.docs / "quality_summary.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
