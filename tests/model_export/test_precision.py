"""Tests of the float16 copy (model_export.precision) on CPU: the file, its
metadata, parity with the float32 model, and ``export --fp16``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from ada3d_qgis.core.metadata import ModelMetadata
from ada3d_qgis.engine import session as ses
from model_export import precision


@pytest.fixture(scope="module")
def half(random_model, tmp_path_factory) -> tuple[Path, float]:
    """(float16 copy of the random tiny model, its largest CPU difference)."""
    out = tmp_path_factory.mktemp("fp16") / "tiny_random_fp16.onnx"
    return precision.write_float16(random_model, out)


def _props(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_fp16_path_is_beside_the_float32_model():
    assert precision.fp16_path("/m/ada3d_r2.onnx") == Path("/m/ada3d_r2_fp16.onnx")


def test_file_passes_the_full_checker_with_float32_inputs_and_outputs(half):
    proto = onnx.load(str(half[0]))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == list(ses.INPUTS)
    assert [o.name for o in proto.graph.output] == list(ses.OUTPUTS)
    for value in [*proto.graph.input, *proto.graph.output]:
        assert value.type.tensor_type.elem_type == TensorProto.FLOAT, value.name


def test_every_float_weight_is_float16(half, random_model):
    before = list(precision.float_initialisers(onnx.load(str(random_model))))
    after = list(precision.float_initialisers(onnx.load(str(half[0]))))
    assert before and {t.data_type for t in before} == {TensorProto.FLOAT}
    assert len(after) == len(before)
    assert {t.data_type for t in after} == {TensorProto.FLOAT16}


def test_pooled_means_stay_float32(half):
    proto = onnx.load(str(half[0]))
    producer = {o: n for n in proto.graph.node for o in n.output}
    means = [n for n in proto.graph.node if n.op_type == "ReduceMean"]
    assert means
    for node in means:
        cast = producer[node.input[0]]
        assert cast.op_type == "Cast" and cast.attribute[0].i == TensorProto.FLOAT, node.name
    # ... and the rest computes in float16: most Casts go to float16.
    to = [n.attribute[0].i for n in proto.graph.node if n.op_type == "Cast"]
    assert to.count(TensorProto.FLOAT16) > 0


def test_metadata_is_kept_and_says_float16(half, random_model):
    before, after = _props(random_model), _props(half[0])
    assert after == {**before, precision.PRECISION_KEY: json.dumps("float16")}
    assert precision.precision_of(after) == "float16"
    assert precision.precision_of(before) == "float32"
    # The plugin's reader ignores the extra key.
    assert ses.read_metadata(half[0]) == ModelMetadata.from_props(before)


def test_cpu_parity_with_the_float32_model(half, random_model):
    """The float16 model runs on onnxruntime's CPU provider and stays within
    FP16_TOLERANCE of float32 (see its comment); a zero difference would mean
    nothing was computed in float16."""
    path, worst = half
    assert 0 < worst <= precision.FP16_TOLERANCE
    m32, m16 = ses.open_session(random_model, "cpu"), ses.open_session(path, "cpu")
    rng = np.random.default_rng(8)
    ms = rng.standard_normal((4, 14, 10)).astype(np.float32)
    pan = rng.standard_normal((28, 20)).astype(np.float32)
    context = rng.standard_normal(m32.metadata.context_size).astype(np.float32)
    for weight in (0.0, 1.0):
        for a, b in zip(m32.run(ms, pan, context, weight), m16.run(ms, pan, context, weight),
                        strict=True):
            assert b.dtype == np.float32
            diff = np.abs(a - b).max()
            assert 0 < diff <= precision.FP16_TOLERANCE, (weight, diff)


def test_a_failed_parity_check_leaves_nothing(random_model, tmp_path):
    out = tmp_path / "m_fp16.onnx"
    with pytest.raises(precision.PrecisionError, match="differs from the float32 one"):
        precision.write_float16(random_model, out, tolerance=0.0)
    assert list(tmp_path.iterdir()) == []


def test_a_float16_model_is_not_converted_again(half):
    with pytest.raises(precision.PrecisionError, match="already float16"):
        precision.convert(onnx.load(str(half[0])))


def test_tidy_nodes_orders_and_deduplicates():
    cast = helper.make_node("Cast", ["x"], ["y"], name="c", to=TensorProto.FLOAT16)
    nodes = [
        helper.make_node("Cast", ["z"], ["out"], name="back", to=TensorProto.FLOAT),
        helper.make_node("Add", ["y", "y"], ["z"], name="add"),
        cast,
        helper.make_node("Cast", ["x"], ["y"], name="c", to=TensorProto.FLOAT16),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(model, full_check=True)
    precision._tidy_nodes(model.graph)
    assert [n.name for n in model.graph.node] == ["c", "add", "back"]
    onnx.checker.check_model(model, full_check=True)

    clash = helper.make_node("Cast", ["x"], ["y"], name="c", to=TensorProto.DOUBLE)
    model.graph.node.append(clash)
    with pytest.raises(precision.PrecisionError, match="assigns y twice"):
        precision._tidy_nodes(model.graph)


@pytest.mark.filterwarnings("ignore:Constant folding", "ignore::DeprecationWarning")
def test_export_command_line_writes_the_float16_model(random_model, tmp_path, capsys):
    export = pytest.importorskip("model_export.export")
    checkpoint = random_model.with_suffix(".pt")  # written beside it by tiny_models
    assert checkpoint.is_file()
    out = tmp_path / "tiny.onnx"
    argv = ["--checkpoint", str(checkpoint), "--out", str(out), "--legacy", "--fp16"]
    assert export.main(argv) == 0
    half = tmp_path / "tiny_fp16.onnx"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx", "tiny_fp16.onnx"]
    assert precision.precision_of(_props(half)) == "float16"
    assert precision.precision_of(_props(out)) == "float32"
    assert f"wrote {half}" in capsys.readouterr().out
