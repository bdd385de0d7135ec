"""Issue 18: the model choice with a band-agnostic model installed."""

from __future__ import annotations

import json
import shutil

import onnx
import pytest

from ada3d_qgis.engine import Ada3DError
from ada3d_qgis.engine.models import choose_model

pytestmark = pytest.mark.slow  # the band-agnostic fixture is a dynamo export


def _with_validation(src, dst, validation):
    proto = onnx.load(str(src))
    for p in proto.metadata_props:
        if p.key == "validation":
            p.value = json.dumps(validation)
    onnx.save(proto, str(dst))
    return dst


@pytest.fixture
def installed(tmp_path, tiny_model, agnostic_model):
    """A 4-band model (B, G, R, NIR; validation ERGAS 2.0) and a band-agnostic one."""
    _with_validation(tiny_model, tmp_path / "fixed_4b.onnx", {"ergas": 2.0})
    shutil.copy(agnostic_model, tmp_path / "any.onnx")
    return tmp_path


@pytest.mark.parametrize("bands", [3, 5, 6])
def test_band_agnostic_model_serves_the_counts_no_fixed_model_takes(installed, bands):
    choice = choose_model(bands, 2.0, folder=installed)
    assert choice.path.name == "any.onnx"
    assert "band-agnostic" in choice.reason and "3 to 6 bands" in choice.reason
    assert f"run on the {bands} selected bands" in choice.reason
    assert f"no model is made for exactly {bands} bands" in choice.reason
    meta = choice.metadata
    assert meta.bands == bands and meta.context_size == meta.context_size_for(bands)


def test_outside_its_range_nothing_fits(installed):
    with pytest.raises(Ada3DError, match="No installed model fits 7 multispectral bands"):
        choose_model(7, 2.0, folder=installed)
    with pytest.raises(Ada3DError, match=r"No installed model fits 5 .* ratio of 4"):
        choose_model(5, 4.0, folder=installed)


def test_fixed_model_is_preferred_unless_the_agnostic_one_validates_as_well(installed):
    choice = choose_model(4, 2.0, folder=installed)
    assert choice.path.name == "fixed_4b.onnx"
    assert "preferred to the band-agnostic any.onnx" in choice.reason
    better = {"ergas": 3.0, "subsets": {"B,G,R,NIR": {"ergas": 1.5}}}
    _with_validation(installed / "any.onnx", installed / "any.onnx", better)
    choice = choose_model(4, 2.0, folder=installed)
    assert choice.path.name == "any.onnx" and "at least as good" in choice.reason
    assert choice.metadata.bands == 4
    worse = {"ergas": 3.0, "subsets": {"B,G,R,NIR": {"ergas": 2.5}}}
    _with_validation(installed / "any.onnx", installed / "any.onnx", worse)
    assert choose_model(4, 2.0, folder=installed).path.name == "fixed_4b.onnx"


def test_an_explicit_band_agnostic_model_is_checked_against_its_range(agnostic_model):
    choice = choose_model(5, 2.0, explicit=agnostic_model)
    assert choice.reason.startswith("the model file given (any 3 to 6 bands")
    assert choice.metadata.bands == 5
    with pytest.raises(Ada3DError, match="takes 3 to 6 multispectral bands, but 8 are selected"):
        choose_model(8, 2.0, explicit=agnostic_model)


def test_more_bands_than_it_was_trained_with_are_named_in_the_reason(tmp_path, agnostic_model):
    proto = onnx.load(str(agnostic_model))
    names = None
    for p in proto.metadata_props:
        if p.key == "max_bands":
            p.value = "8"
        if p.key == "band_names":
            names = json.loads(p.value)
    onnx.save(proto, str(tmp_path / "any.onnx"))
    assert names is not None and len(names) == 6
    eight = choose_model(8, 2.0, folder=tmp_path)
    assert "any 3 to 8 bands" in eight.reason
    assert "run on the 8 selected bands, more than the 6 it was trained with" in eight.reason
    six = choose_model(6, 2.0, folder=tmp_path)
    assert "run on the 6 selected bands" in six.reason and "more than" not in six.reason
