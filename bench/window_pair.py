"""Time one model window the way the engine runs it on two cores:

    python -m bench.window_pair [MODEL ...] [--commit REV] [--tile 224] [--bands 4] [--out FILE]
    python -m bench.window_pair --checkpoint CKPT --strip-rows 2,4,8 [...]

For each model (default: the shipped ratio-2 models), on random normalised
inputs of one ``tile`` x ``tile`` PAN window with ``bands`` bands and a fixed
context (pass 2): one window alone on one thread, then two windows at once in
two threads, each thread with its own session (what the engine does), then
two windows at once sharing one session. Sessions are fixed to the window's
shape, as the engine's are. With ``--commit``, each model as it was at that
git revision runs too, just before it (same machine, same run). Prints
milliseconds per window (the best of a few rounds) and writes the table to
``--out`` if given. With ``--checkpoint`` and ``--strip-rows``, the checkpoint
is exported once per strip height (model_export.export, without its parity
run) and those graphs are timed instead.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.common import REPO, cpu_session_options, model_at_commit, random_tile_feeds

ROUNDS = 3
RUNS_PER_ROUND = 4


def _shaped_session(model: Path, feeds: dict[str, np.ndarray]):
    """A session fixed to the shapes of ``feeds`` on one thread, as the
    engine's CPU sessions are (engine/shaped_sessions.dimension_overrides)."""
    import onnxruntime as ort

    from ada3d_qgis.engine.shaped_sessions import dimension_overrides

    general = ort.InferenceSession(str(model), cpu_session_options(1),
                                   providers=["CPUExecutionProvider"])
    so = cpu_session_options(1)
    for name, size in dimension_overrides(general.get_inputs(), feeds).items():
        so.add_free_dimension_override_by_name(name, size)
    return ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])


def _pair_ms(sessions, feeds) -> float:
    """Best milliseconds per window with two threads running windows at once."""
    def work(session):
        for _ in range(RUNS_PER_ROUND):
            session.run(None, feeds)

    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter()
        threads = [threading.Thread(target=work, args=(s,)) for s in sessions]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        best = min(best, (time.perf_counter() - start) / (2 * RUNS_PER_ROUND))
    return 1000 * best


def measure(model: Path, tile: int, bands: int) -> dict[str, float]:
    """{"alone", "two sessions", "one session"}: milliseconds per window."""
    from ada3d_qgis.engine.session import read_metadata

    # A fixed context (weight 1), as in pass 2.
    feeds = random_tile_feeds(read_metadata(model), tile, bands, weight=1.0)
    first, second = _shaped_session(model, feeds), _shaped_session(model, feeds)
    for s in (first, second):
        s.run(None, feeds)
    alone = float("inf")
    for _ in range(ROUNDS * RUNS_PER_ROUND):
        start = time.perf_counter()
        first.run(None, feeds)
        alone = min(alone, time.perf_counter() - start)
    return {"alone": 1000 * alone,
            "two sessions": _pair_ms([first, second], feeds),
            "one session": _pair_ms([first, first], feeds)}


def _strip_height_exports(checkpoint: Path, heights: str, folder: Path) -> list[tuple[str, Path]]:
    """(label, path) of ``checkpoint`` exported with each strip height."""
    from model_export.export import export_checkpoint

    runs = []
    for rows in (int(v) for v in heights.split(",") if v):
        path = folder / f"rows{rows}.onnx"
        export_checkpoint(checkpoint, path, check=False, strip_rows=rows)
        runs.append((f"{checkpoint}, strips of {rows} rows", path))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--tile", type=int, default=224)
    parser.add_argument("--bands", type=int, default=4)
    parser.add_argument("--commit", help="also time each model as it was at this git revision")
    parser.add_argument("--checkpoint", type=Path, help="export this checkpoint to time it")
    parser.add_argument("--strip-rows", default="4",
                        help="comma-separated strip heights to export --checkpoint with")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    shipped = sorted((REPO / "ada3d_qgis" / "models").glob("ada3d_r2_*.onnx"))
    models = [m.resolve() for m in args.models] or shipped
    given = f" --commit {args.commit}" if args.commit else ""
    if args.checkpoint:
        given = f" --checkpoint {args.checkpoint} --strip-rows {args.strip_rows}"
    lines = [f"Milliseconds per {args.tile}² PAN window, {args.bands} bands, one thread per "
             f"window (`python -m bench.window_pair{given}`).", "",
             "| model | alone | two at once, a session each | two at once, one session |",
             "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as folder:
        runs = []
        if args.checkpoint:
            runs = _strip_height_exports(args.checkpoint, args.strip_rows, Path(folder))
        for model in [] if args.checkpoint else models:
            label = model.relative_to(REPO) if model.is_relative_to(REPO) else model
            old = Path(folder) / model.name
            if args.commit and model_at_commit(args.commit, model, old):
                runs.append((f"{label} at {args.commit}", old))
            runs.append((str(label), model))
        for label, model in runs:
            t = measure(model, args.tile, args.bands)
            lines.append(f"| {label} | {t['alone']:.0f} | {t['two sessions']:.0f} | "
                         f"{t['one session']:.0f} |")
            print(lines[-1], flush=True)
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
