"""The adaptive 3D convolution of Ada3D, written so that it exports to plain ONNX.

For every feature channel c, band l and pixel (y, x) the layer applies its own
3x3x3 kernel, the per-tap product of a spectral kernel (per band, shared over
space) and a spatial kernel (per pixel, shared over bands):

    out[b,c,l,y,x] = sum_t Kspe[b,c,l,t] * Kspa[b,c,t,y,x] * Fpad[b,c,l+i,y+j,x+m]

with t = 9 i + 3 j + m (i spectral, j row, m column offset, each -1..+1) and F
zero-padded by one on L, H and W. It is depthwise: there is no sum over c.

The 27-tap product kernel (B, C, L, 27, H, W) is never built. The sum runs over
the nine spatial offsets (j, m); for each, the three spectral neighbours of
every band come from one Gather of the padded feature (built once per layer)
and a single Einsum multiplies the spectral taps, the spatial taps and the
neighbours and sums over the spectral offset. The exported graph is therefore
Gather + Slice + Einsum + Add, which onnxruntime runs without custom ops.

The spatial kernel is the big tensor (27 C values per pixel). It is normalised
over its taps lazily: only its mean and scale (C values per pixel) are kept,
and each group of three taps is normalised when it is used, so that inference
holds the raw kernel once rather than twice.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Number of taps of a 3x3x3 kernel.
TAPS = 27
#: LeakyReLU gain sqrt(2 / (1 + 0.01^2)) divided by 3: the scale the spec gives
#: each tap-normalised kernel.
KERNEL_GAIN = 0.471381
#: Guards the division when all 27 taps are equal.
KERNEL_EPS = 1e-10

#: Formulations of the tap sum (see ``adaptive_conv3d``); "einsum" ships.
FORMULATIONS = ("gather_mul", "mul_einsum", "einsum", "taps")
DEFAULT_FORMULATION = "gather_mul"


def tap_normalise(v: Tensor, dim: int) -> Tensor:
    """Standardise ``v`` over its 27 taps along ``dim`` (unbiased std), times the gain."""
    mean, scale = tap_moments(v, dim)
    return (v - mean) * scale


def tap_moments(v: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Mean and multiplier such that ``(v - mean) * scale`` is the normalised kernel."""
    mean = v.mean(dim=dim, keepdim=True)
    std = torch.std(v, dim=dim, keepdim=True, unbiased=True)
    return mean, KERNEL_GAIN / (std + KERNEL_EPS)


def spectral_neighbours(fpad: Tensor, bands: int) -> Tensor:
    """(B, C, L+2, H', W') -> (B, C, L, 3, H', W'): band l's neighbours l-1, l, l+1.

    A Gather with a constant index rather than three slices, so that the
    exported graph reads as one indexing op.
    """
    idx = (torch.arange(bands)[:, None] + torch.arange(3)[None, :]).reshape(-1)
    idx = idx.to(fpad.device)
    nb = torch.index_select(fpad, 2, idx)
    return nb.unflatten(2, (bands, 3))


def adaptive_conv3d(
    f: Tensor,
    kspe: Tensor,
    kspa_raw: Tensor,
    formulation: str = DEFAULT_FORMULATION,
) -> Tensor:
    """Depthwise adaptive 3x3x3 convolution of ``f`` without its bias.

    - ``f``: (B, C, L, H, W) features.
    - ``kspe``: (B, C, L, 27) normalised spectral kernel.
    - ``kspa_raw``: (B, C, 27, H, W) spatial kernel *before* tap normalisation
      (normalised here, three taps at a time).
    """
    _, _, bands, height, width = f.shape
    mean, scale = tap_moments(kspa_raw, dim=2)
    fpad = torch.nn.functional.pad(f, (1, 1, 1, 1, 1, 1))
    if formulation == "taps":
        return _tap_by_tap(fpad, kspe, kspa_raw, mean, scale, bands, height, width)
    nb = spectral_neighbours(fpad, bands)
    out = None
    for j in range(3):
        for m in range(3):
            # Taps with spatial offset (j, m) are 3j + m + 9i for i = 0, 1, 2.
            group = slice(3 * j + m, TAPS, 9)
            spe = kspe[..., group]  # (B, C, L, 3)
            spa = (kspa_raw[:, :, group] - mean) * scale  # (B, C, 3, H, W)
            shifted = nb[..., j : j + height, m : m + width]  # (B, C, L, 3, H, W)
            if formulation == "einsum":
                term = torch.einsum("bcli,bcihw,bclihw->bclhw", spe, spa, shifted)
            elif formulation == "mul_einsum":
                prod = (shifted * spa.unsqueeze(2)).flatten(4)  # (B, C, L, 3, HW)
                term = torch.einsum("bcli,bclip->bclp", spe, prod).unflatten(3, (height, width))
            elif formulation == "gather_mul":
                term = (shifted * spa.unsqueeze(2) * spe[..., None, None]).sum(dim=3)
            else:
                raise ValueError(f"unknown formulation {formulation!r}")
            out = term if out is None else out + term
    return out


def _tap_by_tap(
    fpad: Tensor,
    kspe: Tensor,
    kspa_raw: Tensor,
    mean: Tensor,
    scale: Tensor,
    bands: int,
    height: int,
    width: int,
) -> Tensor:
    """Reference formulation: 27 slices, multiplies and adds (no Gather/Einsum).

    Kept to check the shipped one against and to compare their speed; it
    does not meet the export constraint.
    """
    out = None
    for i in range(3):
        for j in range(3):
            for m in range(3):
                t = 9 * i + 3 * j + m
                spa = (kspa_raw[:, :, t : t + 1] - mean) * scale  # (B, C, 1, H, W)
                spe = kspe[..., t, None, None]  # (B, C, L, 1, 1)
                term = spe * spa * fpad[:, :, i : i + bands, j : j + height, m : m + width]
                out = term if out is None else out + term
    return out
