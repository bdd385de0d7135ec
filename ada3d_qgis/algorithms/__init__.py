"""One Processing algorithm per module; :func:`available_algorithms` lists them
in Toolbox order."""

from __future__ import annotations

from .assess_quality import AssessQualityAlgorithm
from .pansharpen import PansharpenAlgorithm


def available_algorithms() -> list:
    """A new instance of every algorithm of the provider."""
    return [PansharpenAlgorithm(), AssessQualityAlgorithm()]
