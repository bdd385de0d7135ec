"""A 3x3x3 convolution over (bands, rows, cols) written as a 2-D convolution.

The bands are stacked into the channels, (B, C, L, H, W) -> (B, C L, H, W),
and the kernel becomes banded: output band l takes input bands l - 1, l,
l + 1 only. onnxruntime's Conv3d with a single output channel (the head, the
last refinement) runs far below its matrix-multiply rate, while the 2-D form
is one matrix product; it does L / 3 times the multiply-adds, a fair trade
for the one-output layers it is used on (docs/design.md). The kernel is built
in the graph from the band count, so band-agnostic models keep any L.
"""

from __future__ import annotations

import torch
import torch.nn.functional as fn
from torch import Tensor, nn


def banded_kernel(weight: Tensor, bands: int) -> Tensor:
    """(Cout, Cin, 3, 3, 3) -> (Cout L, Cin L, 3, 3), channels c * L + l."""
    cout, cin = weight.shape[:2]
    band = torch.arange(bands, device=weight.device)
    # one_hot[l, p, i]: input band p is tap i of output band l.
    offset = band[None, :] - band[:, None] + 1
    one_hot = (offset[:, :, None] == torch.arange(3, device=weight.device)).to(weight.dtype)
    kernel = torch.einsum("lpi,oaijm->olapjm", one_hot, weight)
    return kernel.reshape(cout * bands, cin * bands, 3, 3)


def band_conv3d(conv: nn.Conv3d, x: Tensor) -> Tensor:
    """``conv`` (3x3x3, padding 1) applied to ``x`` (B, Cin, L, H, W)."""
    if torch.jit.is_tracing():
        # The TorchScript exporter (``export --legacy``) cannot export a
        # convolution whose kernel is computed in the graph.
        return conv(x)
    bands = x.shape[2]
    bias = conv.bias
    if bias is not None:
        # Repeated per band by a broadcast, which exports with a dynamic L.
        bias = (bias[:, None] + x.new_zeros(bands)).reshape(-1)
    out = fn.conv2d(x.flatten(1, 2), banded_kernel(conv.weight, bands), bias, padding=1)
    return out.unflatten(1, (conv.out_channels, bands))
