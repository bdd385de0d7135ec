"""The "strips" formulation of the adaptive convolution (block by block in one
ONNX Scan): equal to the tap-by-tap one and to PyTorch's reference at every
strip height, at strip edges, and once exported."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch

from model_export.adaptive_conv import (
    TAPS,
    AdaptiveBias,
    SpatialKernel,
    adaptive_conv3d,
    adaptive_conv3d_strips,
    tap_normalise,
)

CHANNELS, BANDS, HIDDEN = 3, 4, 2


def layer_inputs(batch: int, height: int, width: int, seed: int = 0):
    """(f, kspe, spatial kernel) in float64 with generic values."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    f = rand(batch, CHANNELS, BANDS, height, width)
    kspe = tap_normalise(rand(batch, CHANNELS, BANDS, TAPS), 3)
    kspa = SpatialKernel(rand(batch, HIDDEN, height, width), rand(CHANNELS * TAPS, HIDDEN, 3, 3),
                         rand(CHANNELS * TAPS), CHANNELS)
    return f, kspe, kspa


@pytest.mark.parametrize("rows", [1, 2, 3, 5, 8, 40])
@pytest.mark.parametrize("height", [1, 7, 16])
def test_strips_equal_tap_by_tap_at_every_strip_height(rows, height):
    # Heights below, at and off a multiple of the strip height; two tiles
    # with their own spectral kernels, so that a mix-up of tiles shows.
    f, kspe, kspa = layer_inputs(2, height, 9)
    expected = adaptive_conv3d(f, kspe, kspa, "tap_gather")
    got = adaptive_conv3d_strips(f, kspe, kspa, rows=rows)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rows", [3, 8])
@pytest.mark.parametrize("formulation", ["strips", "tap_gather", "gather_mul"])
def test_the_adaptive_bias_joins_every_formulation_the_same_way(rows, formulation):
    # Strips add it strip by strip inside the scan (height 7: the last strip
    # is cut short), the others to the whole volume; two tiles with their own
    # factors, so that a mix-up of tiles shows.
    f, kspe, kspa = layer_inputs(2, 7, 9, seed=3)
    gen = torch.Generator().manual_seed(4)
    bias = AdaptiveBias(torch.randn(2, 1, BANDS, generator=gen, dtype=torch.float64),
                        torch.randn(2, 1, 7, 9, generator=gen, dtype=torch.float64),
                        torch.randn(2, CHANNELS, generator=gen, dtype=torch.float64))
    a, g, e = bias.band, bias.space, bias.channel
    expected = adaptive_conv3d(f, kspe, kspa, "tap_gather") + (
        a[:, :, :, None, None] * g[:, :, None] * e[..., None, None, None]
    )
    if formulation == "strips":
        got = adaptive_conv3d_strips(f, kspe, kspa, rows=rows, bias=bias)
    else:
        got = adaptive_conv3d(f, kspe, kspa, formulation, bias)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    assert (got - adaptive_conv3d(f, kspe, kspa, formulation)).abs().max() > 0.1


@pytest.mark.parametrize("row", [3, 4])
def test_a_voxel_at_a_strip_edge_reaches_both_strips(row):
    # Strips of 4 rows: rows 3 and 4 are the last of one strip and the first
    # of the next; a single non-zero voxel there must reach rows row - 1 ..
    # row + 1 through the one-row halo, as the unsplit layer does.
    f, kspe, kspa = layer_inputs(1, 12, 6, seed=1)
    impulse = torch.zeros_like(f)
    impulse[0, 1, 2, row, 3] = 1.0
    expected = adaptive_conv3d(impulse, kspe, kspa, "tap_gather")
    got = adaptive_conv3d_strips(impulse, kspe, kspa, rows=4)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    touched = got[0, 1].abs().sum(dim=(0, 2)) > 0  # per row
    assert touched.nonzero().flatten().tolist() == [row - 1, row, row + 1]


class _Layer(torch.nn.Module):
    """One adaptive convolution with fixed weights, for export."""

    def __init__(self, kspa: SpatialKernel) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(kspa.weight.flatten(0, 1).float().clone())
        self.bias = torch.nn.Parameter(kspa.bias.flatten().float().clone())

    def forward(self, f, hidden, kspe):
        # The weights are already centred; centring again changes nothing.
        return adaptive_conv3d_strips(f, kspe, SpatialKernel(hidden, self.weight, self.bias,
                                                             CHANNELS), rows=4)


def test_exported_strips_run_in_onnxruntime_as_in_pytorch(tmp_path):
    import onnxruntime as ort

    f, kspe, kspa = layer_inputs(2, 10, 9)
    layer = _Layer(kspa).eval().requires_grad_(False)
    dims = {"b": torch.export.Dim("b", min=1), "r": torch.export.Dim("r", min=2),
            "c": torch.export.Dim("c", min=2)}
    path = tmp_path / "layer.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            layer, (f.float(), kspa.hidden.float(), kspe.float()), dynamo=True,
            dynamic_shapes={"f": {0: dims["b"], 3: dims["r"], 4: dims["c"]},
                            "hidden": {0: dims["b"], 2: dims["r"], 3: dims["c"]},
                            "kspe": {0: dims["b"]}},
            opset_version=18, optimize=True, verbose=False)
    program.save(str(path))
    assert "Scan" in {n.op_type for n in onnx.load(str(path)).graph.node}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    # Another size than the export's: 13 rows are three strips and a part.
    f, kspe, kspa = layer_inputs(1, 13, 11, seed=2)
    inputs = (f.float().numpy(), kspa.hidden.float().numpy(), kspe.float().numpy())
    got = session.run(None, dict(zip(names, inputs, strict=True)))[0]
    expected = adaptive_conv3d(f.float(), kspe.float(), SpatialKernel(
        kspa.hidden.float(), layer.weight, layer.bias, CHANNELS), "tap_gather")
    assert np.abs(got - expected.numpy()).max() < 1e-4
