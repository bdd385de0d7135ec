"""Tests of the ONNX metadata keys (ada3d_qgis.core.metadata)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ada3d_qgis.core.metadata import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MetadataError,
    ModelMetadata,
)


def _meta(**overrides) -> ModelMetadata:
    kwargs = dict(
        model_name="ada3d_r2_4b_test",
        config={"features": 16, "blocks": 2},
        bands=4,
        band_names=["B", "G", "R", "NIR"],
        ratio=2,
        normalisation={"method": "scene_meanstd"},
        halo=24,
        tile_size=512,
        overlap=48,
        context_size=320,
        training={"epochs": 3, "seed": 0},
        validation={"ergas": 2.9, "sam": 1.1},
        description="test model",
    )
    kwargs.update(overrides)
    return ModelMetadata(**kwargs)


def test_props_are_json_and_round_trip():
    meta = _meta()
    props = meta.to_props()
    assert all(isinstance(v, str) for v in props.values())
    assert json.loads(props["band_names"]) == ["B", "G", "R", "NIR"]
    assert json.loads(props["format"]) == FORMAT_NAME
    assert json.loads(props["format_version"]) == FORMAT_VERSION
    assert ModelMetadata.from_props(props) == meta


def test_round_trip_through_an_onnx_file(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = _meta()
    for k, v in meta.to_props().items():
        model.metadata_props.add(key=k, value=v)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    read = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map)
    assert read == meta
    assert session.run(None, {"x": np.ones(1, np.float32)})[0][0] == 1.0


def test_unknown_keys_are_ignored_and_defaults_filled():
    props = _meta().to_props()
    props["something_newer"] = json.dumps({"a": 1})
    del props["description"]
    read = ModelMetadata.from_props(props)
    assert read.description == ""
    assert read.licence == "GPL-2.0-or-later"


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p.pop("format"), "no 'format' key"),
        (lambda p: p.update(format=json.dumps("something-else")), "not 'ada3d"),
        (lambda p: p.update(format_version=json.dumps(FORMAT_VERSION + 1)), "newer"),
        (lambda p: p.update(format_version=json.dumps("1")), "version"),
        (lambda p: p.pop("halo"), "lacks the keys halo"),
        (lambda p: p.update(ratio="{not json"), "not valid JSON"),
        (lambda p: p.update(bands=json.dumps(3)), "band_names lists 4 names for 3"),
        (lambda p: p.update(ratio=json.dumps(1)), "ratio must be at least 2"),
        (lambda p: p.update(ratio=json.dumps("two")), "malformed"),
    ],
)
def test_bad_metadata_is_rejected_with_a_reason(change, message):
    props = _meta().to_props()
    change(props)
    with pytest.raises(MetadataError, match=message):
        ModelMetadata.from_props(props)


def test_constructor_validates():
    with pytest.raises(MetadataError):
        _meta(band_names=["B", "G"])
    with pytest.raises(MetadataError):
        _meta(ratio=1)
    assert issubclass(MetadataError, ValueError)
