"""model_export/band_conv: 3x3x3 convolutions as banded 2-D convolutions."""

import pytest
import torch
from torch import nn

from model_export.band_conv import band_conv3d, banded_kernel


@pytest.mark.parametrize("bands", [1, 2, 3, 6, 8])
@pytest.mark.parametrize(("cin", "cout"), [(16, 1), (4, 1), (1, 4)])
def test_banded_form_equals_the_3d_convolution(bands, cin, cout):
    torch.manual_seed(bands * 10 + cin)
    conv = nn.Conv3d(cin, cout, 3, padding=1)
    x = torch.randn(2, cin, bands, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(band_conv3d(conv, x), conv(x), rtol=0, atol=1e-5)


def test_the_kernel_reads_only_the_neighbouring_bands():
    weight = torch.ones(1, 1, 3, 3, 3)
    kernel = banded_kernel(weight, 5)[:, :, 1, 1]  # (out band, in band)
    expected = torch.tensor([[abs(i - j) <= 1 for j in range(5)] for i in range(5)]).float()
    torch.testing.assert_close(kernel, expected)


class _Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(4, 1, 3, padding=1)

    def forward(self, x):
        return band_conv3d(self.conv, x)


def test_the_torchscript_exporter_gets_the_3d_convolution():
    head = _Head()
    traced = torch.jit.trace(head, torch.randn(1, 4, 3, 6, 6))
    graph = str(traced.inlined_graph)
    # One convolution, of the 3-D weight: no kernel built in the graph.
    assert graph.count("aten::_convolution") == 1 and "aten::einsum" not in graph
    x = torch.randn(1, 4, 5, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), head.conv(x), rtol=0, atol=1e-5)
