"""Training-curve figure from the CSV log of :mod:`model_export.train`.

matplotlib is optional (Debian's python3-matplotlib reaches the venv through
the system site packages, a plain pip venv may lack it): without it no PNG is
written and training goes on.
"""

from __future__ import annotations

import csv
from pathlib import Path


def _column(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(r[key]) if r.get(key) not in (None, "") else float("nan") for r in rows]


def plot_training(
    csv_path: str | Path, png_path: str | Path, baselines: dict[str, dict[str, float]] | None = None
) -> bool:
    """Draw train loss and validation ERGAS/SAM/Q2n against samples seen.

    ``baselines`` maps a method name (e.g. "bicubic") to its validation
    metrics, drawn as horizontal reference lines. Returns False when
    matplotlib is missing or the log is empty.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # headless, and never grabs a display
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    with Path(csv_path).open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return False
    samples = _column(rows, "samples")
    panels = [
        ("train_loss", "train loss (normalised space)", None),
        ("val_ergas", "validation ERGAS", "ergas"),
        ("val_sam", "validation SAM (degrees)", "sam"),
        ("val_q2n", "validation Q2n", "q2n"),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    for ax, (key, title, metric) in zip(axes.flat, panels, strict=True):
        ax.plot(samples, _column(rows, key), marker=".", label="Ada3D")
        for n, (name, values) in enumerate((baselines or {}).items()):
            if metric and metric in values:
                ax.axhline(values[metric], color=f"C{n + 1}", linestyle="--", lw=1, label=name)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if metric:
            ax.legend(fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel("training samples")
    # Fixed margins: tight_layout costs more than the whole plot.
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.08, top=0.95, hspace=0.25, wspace=0.22)
    tmp = Path(png_path).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(png_path)
    return True
