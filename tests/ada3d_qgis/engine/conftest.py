"""Fixtures of the engine tests: tiny exported models and small real crops."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_models import export_tiny, small_pair


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "ada3d_tiny_models"


@pytest.fixture(scope="session")
def tiny_model(model_dir) -> Path:
    """Untrained: returns the bilinear interpolation of the MS."""
    return export_tiny(model_dir, "tiny_bilinear", randomise=False)


@pytest.fixture(scope="session")
def random_model(model_dir) -> Path:
    """Random head weights: a generic network whose output depends on the context."""
    return export_tiny(model_dir, "tiny_random", randomise=True)


@pytest.fixture(scope="session")
def small(tmp_path_factory, sample_pan, sample_ms) -> tuple[Path, Path]:
    """(pan, ms): 98 x 98 PAN and 49 x 49 MS crops of the sample (96 x 96 output)."""
    return small_pair(tmp_path_factory.mktemp("small"), sample_pan, sample_ms)
