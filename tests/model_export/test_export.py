"""Tests of the ONNX export (model_export.export): one tiny checkpoint is
exported once through the command-line entry point and inspected."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from tiny_models import BAND_NAMES, TINY

from ada3d_qgis.core.metadata import ModelMetadata
from ada3d_qgis.core.normalise import METHOD
from model_export import export
from model_export.adaptive_conv import STRIP_ROWS
from model_export.model import Ada3D, Ada3DConfig, randomise_zero_init, receptive_field_halo

pytestmark = pytest.mark.slow  # one dynamo export (~30-45 s on 2 shared cores)

CONFIG = Ada3DConfig(**TINY)
TRAINING = {"data": "unit test", "protocol": "none", "epochs": 0, "samples": 0, "seed": 7}
VALIDATION = {"ergas": 9.5, "sam": 3.25}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Ada3D]:
    """(onnx path, the PyTorch model it came from), exported by ``main``."""
    tmp = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    # Generic weights: the interpolation start would hide most of the graph.
    model = randomise_zero_init(Ada3D(CONFIG), std=0.1).eval()
    ckpt = tmp / "tiny.pt"
    torch.save(
        {
            "config": asdict(CONFIG),
            "model": model.state_dict(),
            "band_names": BAND_NAMES,
            "training": TRAINING,
            "validation": VALIDATION,
            "epoch": 0,
        },
        ckpt,
    )
    out = tmp / "tiny.onnx"
    assert export.main(["--checkpoint", str(ckpt), "--out", str(out), "--name", "tiny"]) == 0
    return out, model


def test_file_is_a_valid_self_contained_onnx_model(exported):
    path, _ = exported
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    opset = {o.domain: o.version for o in proto.opset_import}
    assert opset.get("", opset.get("ai.onnx", 0)) >= 17
    assert not list(path.parent.glob("*.data")) and not list(path.parent.glob("*.part"))
    for init in proto.graph.initializer:
        assert init.data_location != onnx.TensorProto.EXTERNAL, init.name
    assert [i.name for i in proto.graph.input] == export.INPUT_NAMES
    assert [o.name for o in proto.graph.output] == export.OUTPUT_NAMES
    ms_dims = proto.graph.input[0].type.tensor_type.shape.dim
    # Batch, rows and columns symbolic; bands fixed.
    assert [bool(d.dim_param) for d in ms_dims] == [True, False, True, True]
    assert ms_dims[1].dim_value == CONFIG.bands


def _graphs(graph):
    """``graph`` and every subgraph of its nodes (a Scan's body), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _graphs(sub)


def test_graph_uses_gather_or_einsum_and_no_forbidden_ops(exported):
    proto = onnx.load(str(exported[0]))
    nodes = [n for g in _graphs(proto.graph) for n in g.node]
    ops = {(n.domain, n.op_type) for n in nodes}
    assert all(domain in ("", "ai.onnx") for domain, _ in ops), ops
    types = {t for _, t in ops}
    assert types & {"Gather", "GatherElements", "Einsum"}
    assert not types & {"Unfold", "Im2Col", "Col2Im", "Loop"}
    # The only loop is the strips formulation's Scan over row strips, and the
    # adaptive convolution it runs gathers its taps.
    scans = [n for n in proto.graph.node if n.op_type == "Scan"]
    assert scans
    for scan in scans:
        body = [n.op_type for g in _graphs(scan.attribute[0].g) for n in g.node]
        assert "Gather" in body


def test_onnxruntime_matches_pytorch_at_a_new_size_and_batch(exported):
    path, model = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(5)
    ms = torch.rand(2, 4, 11, 17, generator=gen)
    pan = torch.rand(2, 1, 22, 34, generator=gen)
    context = torch.rand(2, CONFIG.context_size, generator=gen)
    weight = torch.tensor([[0.0], [1.0]])
    with torch.no_grad():
        fused, own = model.forward_with_context(ms, pan, context, weight)
    got = session.run(
        None,
        {
            "ms": ms.numpy(),
            "pan": pan.numpy(),
            "context": context.numpy(),
            "context_weight": weight.numpy(),
        },
    )
    assert got[0].shape == (2, 4, 22, 34)
    assert np.abs(got[0] - fused.numpy()).max() < 1e-4
    assert np.abs(got[1] - own.numpy()).max() < 1e-4


def test_metadata_round_trips_through_the_file(exported):
    path, _ = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map)
    from_onnx = ModelMetadata.from_props(
        {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    )
    assert meta == from_onnx
    assert meta.model_name == "tiny"
    assert meta.config == asdict(CONFIG)
    assert Ada3DConfig.from_dict(meta.config) == CONFIG
    assert (meta.bands, meta.band_names, meta.ratio) == (4, BAND_NAMES, 2)
    assert meta.normalisation == {"method": METHOD}
    assert meta.training == TRAINING and meta.validation == VALIDATION
    assert meta.halo == receptive_field_halo(CONFIG)
    assert meta.overlap >= meta.halo and meta.overlap % meta.ratio == 0
    assert meta.tile_size % meta.ratio == 0 and meta.tile_size > 2 * meta.overlap
    assert meta.context_size == CONFIG.context_size
    assert meta.licence == "GPL-2.0-or-later"


def test_parity_failure_is_loud(exported, monkeypatch):
    path, model = exported
    monkeypatch.setattr(export, "PARITY_TOLERANCE", -1.0)
    with pytest.raises(export.ExportError, match="differ"):
        export.parity_check(model, path, sizes=(4,))


def test_command_line_reports_failure_with_non_zero_exit(monkeypatch, tmp_path, capsys):
    def fail(*args, **kwargs):
        raise export.ExportError("onnxruntime and PyTorch differ by 1")

    monkeypatch.setattr(export, "export_checkpoint", fail)
    code = export.main(["--checkpoint", "x.pt", "--out", str(tmp_path / "m.onnx")])
    assert code != 0
    assert "differ" in capsys.readouterr().err


def test_bad_overlap_is_rejected(exported):
    _, model = exported
    halo = receptive_field_halo(CONFIG)
    with pytest.raises(ValueError, match="halo"):
        export.build_metadata(model, {"band_names": BAND_NAMES}, "x", overlap=halo - 2)


@pytest.mark.parametrize(
    "cfg",
    [Ada3DConfig(), Ada3DConfig(bands=8), Ada3DConfig(ratio=2), CONFIG, Ada3DConfig(ratio=3)],
)
def test_default_tile_size_fits_the_memory_budget(cfg):
    overlap = receptive_field_halo(cfg)
    tile = export.default_tile_size(cfg, overlap)
    step = 32 * cfg.ratio // np.gcd(32, cfg.ratio)
    assert tile % 32 == 0 and tile % cfg.ratio == 0
    kept = (tile - 2 * overlap) ** 2 / tile**2
    assert kept >= export.MIN_KEPT_SHARE
    if export.tile_memory_mib(cfg, tile) > export.TILE_MEMORY_BUDGET_MIB:
        # Over the budget only where the overlap's floor demands it.
        assert (tile - step - 2 * overlap) ** 2 < export.MIN_KEPT_SHARE * (tile - step) ** 2
    else:
        assert export.tile_memory_mib(cfg, tile + step) > export.TILE_MEMORY_BUDGET_MIB


def test_default_tile_size_of_the_shipped_configuration_is_256():
    """docs/tile_sizes.md: the same time per kept pixel as larger tiles, less memory."""
    cfg = Ada3DConfig(channels=16, spatial_channels=16, layers=2, spectral_hidden=4,
                      spatial_hidden=4, res_channels=8)
    for ratio, overlap in ((2, 14), (4, 16)):
        assert export.default_tile_size(replace(cfg, ratio=ratio), overlap) == 256


def _slice_chains(path):
    """(Slices over two axes at once, Slices that only other Slices read) in
    every graph of ``path`` (the main one, the Scan bodies) on its own."""
    merged, chained = 0, []
    for graph in _graphs(onnx.load(str(path)).graph):
        producer = {out: n for n in graph.node for out in n.output}
        readers: dict[str, list] = {}
        for n in graph.node:
            for name in n.input:
                readers.setdefault(name, []).append(n.op_type)
        slices = [n for n in graph.node if n.op_type == "Slice"]
        merged += sum(len(n.input) == 5 and producer.get(n.input[1]) is not None
                      for n in slices)
        chained += [n.name for n in slices if readers.get(n.output[0]) and
                    set(readers[n.output[0]]) == {"Slice"}]
    return merged, chained


def test_no_slice_copies_a_window_only_another_slice_reads(exported, tmp_path):
    # The shifted windows of the tap-by-tap adaptive convolution are one Slice
    # over rows and columns (model_export.graph_passes), not a row copy then a
    # column copy; the strips graph shifts no feature window at all.
    assert _slice_chains(exported[0])[1] == []
    path = tmp_path / "tap_gather.onnx"
    ckpt = exported[0].with_name("tiny.pt")
    assert export.main(["--checkpoint", str(ckpt), "--out", str(path),
                        "--formulation", "tap_gather"]) == 0
    merged, chained = _slice_chains(path)
    assert merged > 0 and chained == []


def test_formulation_option_exports_the_same_model_with_other_ops(exported, tmp_path):
    ckpt = exported[0].with_name("tiny.pt")
    paths = [tmp_path / "tap_gather.onnx", tmp_path / "gather_mul.onnx"]
    # The export's own parity check against PyTorch runs on these files too.
    for path in paths:
        assert export.main(["--checkpoint", str(ckpt), "--out", str(path),
                            "--formulation", path.stem]) == 0
    gathers = [sum(n.op_type == "Gather" for n in onnx.load(str(p)).graph.node)
               for p in paths]
    # Tap by tap: one Gather per tap; gather_mul: one per three taps.
    assert gathers[0] > gathers[1] > 0
    with pytest.raises(ValueError, match="formulation must be one of"):
        export.export_checkpoint(ckpt, tmp_path / "x.onnx", formulation="fused")


def test_strip_rows_option_changes_the_strips_not_the_outputs(exported, tmp_path):
    ckpt = exported[0].with_name("tiny.pt")
    path = tmp_path / "rows3.onnx"
    # The export's own parity check against PyTorch runs on this file too.
    assert export.main(["--checkpoint", str(ckpt), "--out", str(path), "--strip-rows", "3"]) == 0

    def neighbour_rows(p):
        # The strips' row index: channels x bands x 9 taps x rows per strip.
        sizes = []
        for graph in _graphs(onnx.load(str(p)).graph):
            sizes += [int(np.prod(t.dims)) for t in graph.initializer
                      if t.data_type == onnx.TensorProto.INT64 and len(t.dims) == 1]
        return max(sizes)

    assert neighbour_rows(path) * STRIP_ROWS == neighbour_rows(exported[0]) * 3
    rng = np.random.default_rng(0)
    feeds = {"ms": rng.standard_normal((1, CONFIG.bands, 10, 11), np.float32),
             "pan": rng.standard_normal((1, 1, 10 * CONFIG.ratio, 11 * CONFIG.ratio), np.float32),
             "context": np.zeros((1, CONFIG.context_size), np.float32),
             "context_weight": np.zeros((1, 1), np.float32)}
    outs = [ort.InferenceSession(str(p)).run(None, feeds)[0] for p in (path, exported[0])]
    np.testing.assert_allclose(outs[0], outs[1], rtol=0, atol=1e-5)
