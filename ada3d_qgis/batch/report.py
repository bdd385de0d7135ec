"""The table printed at the end of a batch: per scene its megapixels, time,
megapixels per second and what went wrong, and a line for the whole batch."""

from __future__ import annotations

from collections.abc import Sequence

from .runner import DONE, FAILED, SKIPPED, SceneResult, scene_name

HEADER = ("scene", "megapixels", "time (s)", "megapixels/s", "result")


def _rate(megapixels: float, seconds: float) -> str:
    return f"{megapixels / seconds:.4f}" if seconds > 0 else "-"


def rows(results: Sequence[SceneResult], wall_seconds: float) -> list[tuple[str, ...]]:
    """The table's rows (strings), the total last."""
    out = []
    for r in results:
        if r.status == DONE:
            out.append((scene_name(r.scene), f"{r.megapixels:.3f}", f"{r.seconds:.1f}",
                        _rate(r.megapixels, r.seconds), "done"))
        elif r.status == SKIPPED:
            out.append((scene_name(r.scene), f"{r.megapixels:.3f}", "-", "-",
                        "skipped: already done with these parameters"))
        else:
            out.append((scene_name(r.scene), "-", "-", "-", f"failed: {r.error}"))
    done = [r for r in results if r.status == DONE]
    failed = sum(r.status == FAILED for r in results)
    megapixels = sum(r.megapixels for r in done)
    out.append((
        f"all {len(results)} scenes", f"{megapixels:.3f}", f"{wall_seconds:.1f}",
        _rate(megapixels, wall_seconds),
        f"{len(done)} done, {sum(r.status == SKIPPED for r in results)} skipped, "
        f"{failed} failed",
    ))
    return out


def table(results: Sequence[SceneResult], wall_seconds: float) -> str:
    """A Markdown table (aligned for the terminal)."""
    body = rows(results, wall_seconds)
    widths = [max(len(row[c]) for row in [HEADER, *body]) for c in range(len(HEADER) - 1)]

    def line(row: Sequence[str]) -> str:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(w) for cell, w in zip(row[1:-1], widths[1:])]
        return "| " + " | ".join([*cells, row[-1]]) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|---|"
    return "\n".join([line(HEADER), rule, *map(line, body)])
