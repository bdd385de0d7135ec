"""The layers that make Ada3D take any band count (issue 18).

The paper's network is band-specific in three places only: the learned
upsampling (an L -> r^2 L convolution), the input of the 2-D spatial features
(a convolution over the L upsampled bands and the PAN) and the final
refinement (two L -> L convolutions). Everything else (the 3-D convolutions,
the spectral kernels, the bias terms) slides along or pools over the bands.
With ``Ada3DConfig.band_agnostic`` those three become:

- upsampling: one 1 -> r^2 convolution shared by every band (bilinear at
  the start, as the paper configuration's);
- spatial input: a convolution of each (band, PAN) pair with shared weights,
  a LeakyReLU, the mean over the bands and a D -> D convolution; the mean
  makes the features independent of the band count and order, and the
  non-linearity before it keeps the pooling from collapsing into a
  convolution of the band mean;
- refinement: two 3x3x3 convolutions over (bands, rows, cols) with one
  feature channel in and out, like the head, the last one starting at zero.

No layer is told the bands' wavelengths: the bands' own correlation with the
PAN is what the network sees (training draws random band subsets and orders).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as fn
from torch import Tensor, nn

from model_export.band_conv import band_conv3d

NEGATIVE_SLOPE = 0.2


class SharedBandUpsample(nn.Module):
    """``(B, L, h, w) -> (B, L, r h, r w)`` with one learned kernel for all bands."""

    def __init__(self, ratio: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            1, ratio * ratio, 3, padding=1, bias=False, padding_mode="replicate"
        )
        self.shuffle = nn.PixelShuffle(ratio)

    def forward(self, ms: Tensor) -> Tensor:
        up = self.shuffle(self.conv(ms.flatten(0, 1).unsqueeze(1)))  # (B L, 1, r h, r w)
        return up.squeeze(1).unflatten(0, (ms.shape[0], ms.shape[1]))


class PooledSpatialInput(nn.Module):
    """``(x_up (B, L, H, W), pan (B, 1, H, W)) -> (B, D, H, W)``, the same for any L."""

    def __init__(self, spatial_channels: int) -> None:
        super().__init__()
        d = spatial_channels
        self.pair = nn.Conv2d(2, d, 3, padding=1)
        self.mix = nn.Conv2d(d, d, 3, padding=1)

    def forward(self, x_up: Tensor, pan: Tensor) -> Tensor:
        batch, bands = x_up.shape[0], x_up.shape[1]
        pairs = stack_pairs(x_up, pan)  # (B L, 2, H, W)
        per_band = fn.leaky_relu(self.pair(pairs), NEGATIVE_SLOPE)
        pooled = per_band.unflatten(0, (batch, bands)).mean(dim=1)
        return self.mix(pooled)


def stack_pairs(x_up: Tensor, pan: Tensor) -> Tensor:
    """(B, L, H, W) and (B, 1, H, W) -> (B L, 2, H, W): each band beside the PAN."""
    return torch.stack([x_up, pan.expand_as(x_up)], dim=2).flatten(0, 1)


class SpectralRefine(nn.Module):
    """``z (B, L, H, W) -> z + refine(z)`` with 3-D convolutions over (L, H, W)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(1, hidden, 3, padding=1)
        self.conv2 = nn.Conv3d(hidden, 1, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = fn.leaky_relu(self.conv1(z.unsqueeze(1)), NEGATIVE_SLOPE)
        return band_conv3d(self.conv2, h).squeeze(1)


# --------------------------------------------------------------------------- export

#: Fewest bands the exported graph's dimension allows (torch.export
#: specialises sizes 0 and 1); the metadata narrows it to what was trained.
GRAPH_MIN_BANDS = 2


def trained_band_range(ckpt: Mapping[str, Any], bands: int) -> tuple[int, int]:
    """The band counts a band-agnostic checkpoint was trained on
    (``--random-bands``), or ``(bands, bands)`` when it does not say."""
    data = ((ckpt.get("training") or {}).get("train_config") or {}).get("data") or {}
    drawn = data.get("random_bands")
    return (int(drawn[0]), int(drawn[1])) if drawn else (bands, bands)


def add_band_dims(dynamic_shapes: dict[str, dict[int, Any]], cfg: Any) -> None:
    """Make the band count of ``ms`` and the context length (2N (C L + D),
    which grows with it) dynamic in torch.export's ``dynamic_shapes``."""
    bands = torch.export.Dim("bands", min=GRAPH_MIN_BANDS)
    per_band = 2 * cfg.layers * cfg.channels
    dynamic_shapes["ms"][1] = bands
    dynamic_shapes["context"][1] = per_band * bands + 2 * cfg.layers * cfg.spatial_channels

