"""One Processing algorithm per module; :func:`available_algorithms` lists them."""

from __future__ import annotations

import importlib

# (module, class) of each algorithm, in Toolbox order.
_ALGORITHMS = (
    ("pansharpen", "PansharpenAlgorithm"),
    ("assess_quality", "AssessQualityAlgorithm"),
)


def available_algorithms() -> list:
    """Instances of every algorithm whose module exists in this build."""
    algs = []
    for module, cls in _ALGORITHMS:
        try:
            mod = importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{module}":
                raise
            continue
        algs.append(getattr(mod, cls)())
    return algs
