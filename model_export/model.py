"""Ada3D pansharpening network (PyTorch), written from the paper's specification.

Inputs are the low-resolution MS (B, L, h, w), not pre-upsampled, and the PAN
(B, 1, r h, r w); the output is the fused MS (B, L, r h, r w). All activations
are LeakyReLU(0.2). See issue 3 for the full specification; the notes below
record only the choices the specification leaves open.

- Convolutions whose input is a pooled (1 x 1 spatial) tensor are written as
  Conv1d / Linear: a Conv3d with kernel (3, 1, 1) on a (C, L, 1, 1) volume is a
  Conv1d with kernel 3 on (C, L), and a 1x1 convolution on a 1x1 map is a
  Linear layer. The parameter counts are identical.
- Pooled context (DESIGN.md, "Tiling and the pooled statistics"): every
  adaptive layer k pools mean_HW(F_k) (C x L values) and mean_HW(G_k) (D
  values). ``forward_with_context`` mixes them with an external context as
  ``w * context + (1 - w) * own``; with a fixed context (w = 1) the network is a
  local operator, which makes tiled inference exact.
- A freshly built model returns bilinear interpolation of the MS: the learned
  upsampling starts as bilinear (align_corners=False) with replicate padding,
  and the last convolutions of the head and of the refine branch start at zero
  (issue 5, "start from the classical baseline").
- ``band_agnostic`` (issue 18) swaps the three band-count-specific layers for
  the shared ones of model_export/band_agnostic.py; ``bands`` is then the
  band count it was built and trained with, and any count runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as fn
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from model_export.adaptive_conv import (
    DEFAULT_FORMULATION,
    STRIP_ROWS,
    TAPS,
    AdaptiveBias,
    SpatialKernel,
    adaptive_conv3d,
    tap_normalise,
)
from model_export.band_agnostic import PooledSpatialInput, SharedBandUpsample, SpectralRefine
from model_export.band_conv import band_conv3d

NEGATIVE_SLOPE = 0.2


@dataclass
class Ada3DConfig:
    """Network shape; the defaults are the paper configuration."""

    bands: int = 4  # L
    ratio: int = 4  # r
    channels: int = 48  # C, 3-D feature channels
    spatial_channels: int = 48  # D, 2-D feature channels
    layers: int = 4  # N, blocks (each holds two adaptive layers)
    spectral_hidden: int = 12  # h_s
    spatial_hidden: int = 12  # h_a
    context_hidden: int = 3  # h_c
    res_channels: int = 24  # R
    #: Issue 18: layers shared over the bands, so that one network takes any band count.
    band_agnostic: bool = False
    #: Hidden channels of the band-agnostic refinement (unused otherwise).
    refine_hidden: int = 4

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Ada3DConfig:
        """Build from ``asdict`` output, ignoring unknown keys (newer writers)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def context_size(self) -> int:
        """Length of the pooled-context vector: 2N (C L + D)."""
        return self.context_size_for(self.bands)

    def context_size_for(self, bands: int) -> int:
        """Length of the pooled-context vector for ``bands`` input bands."""
        return 2 * self.layers * (self.channels * bands + self.spatial_channels)


def _lrelu(x: Tensor) -> Tensor:
    return fn.leaky_relu(x, NEGATIVE_SLOPE)


class AdaptiveConv3d(nn.Module):
    """One adaptive 3-D convolution layer (kernels and bias predicted from F and G)."""

    #: How the taps are combined (adaptive_conv.FORMULATIONS); all are equal
    #: in value, they differ in speed and exported ops.
    formulation = DEFAULT_FORMULATION
    #: Output rows per strip of the "strips" formulation.
    strip_rows = STRIP_ROWS

    def __init__(self, cfg: Ada3DConfig) -> None:
        super().__init__()
        c, d = cfg.channels, cfg.spatial_channels
        self.channels = c
        self.spe1 = nn.Conv1d(c, cfg.spectral_hidden, 3, padding=1)
        self.spe2 = nn.Conv1d(cfg.spectral_hidden, TAPS * c, 3, padding=1)
        self.spa1 = nn.Conv2d(d, cfg.spatial_hidden, 3, padding=1)
        self.spa2 = nn.Conv2d(cfg.spatial_hidden, TAPS * c, 3, padding=1)
        self.bias_band = nn.Conv1d(c, 1, 3, padding=1)  # a[b, l]
        self.bias_space = nn.Conv2d(d, 1, 3, padding=1)  # g[b, y, x]
        self.bias_chan1 = nn.Linear(c + d, cfg.context_hidden)  # e[b, c]
        self.bias_chan2 = nn.Linear(cfg.context_hidden, c)

    def forward(
        self,
        f: Tensor,
        g: Tensor,
        pooled_f: Tensor,
        pooled_g: Tensor,
        spatial: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """``f`` (B, C, L, H, W), ``g`` (B, D, H, W); ``pooled_f`` (B, C, L) and
        ``pooled_g`` (B, D) are the (possibly context-mixed) spatial means;
        ``spatial`` is this layer's ``spatial_maps(g)`` when already made."""
        kspe = self.spe2(_lrelu(self.spe1(pooled_f)))  # (B, 27C, L)
        kspe = tap_normalise(kspe.unflatten(1, (self.channels, TAPS)), dim=2)
        kspe = kspe.permute(0, 1, 3, 2)  # (B, C, L, 27)
        hidden, space = spatial if spatial is not None else spatial_maps([self], g)[0]
        # spa2 is applied inside, a group of taps at a time (memory).
        kspa = SpatialKernel(_lrelu(hidden), self.spa2.weight, self.spa2.bias, self.channels)
        e = self.bias_chan2(
            _lrelu(self.bias_chan1(torch.cat([pooled_f.mean(dim=2), pooled_g], dim=1)))
        )  # (B, C)
        bias = AdaptiveBias(self.bias_band(pooled_f), space, e)
        return adaptive_conv3d(f, kspe, kspa, self.formulation, bias, self.strip_rows)


def spatial_maps(layers: list[AdaptiveConv3d], g: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Per layer, the 2-D maps it takes from ``g``: the kernel generator's
    hidden map before its LeakyReLU, ``spa1(g)``, and the bias map
    ``bias_space(g)``; all made by one convolution, which reads ``g`` once and
    is a wider (faster) matrix product than the few-channel ones apart."""
    weight = torch.cat([w for a in layers for w in (a.spa1.weight, a.bias_space.weight)])
    bias = torch.cat([b for a in layers for b in (a.spa1.bias, a.bias_space.bias)])
    maps = fn.conv2d(g, weight, bias, padding=1)
    sizes = [n for a in layers for n in (a.spa1.out_channels, a.bias_space.out_channels)]
    parts = maps.split(sizes, dim=1)
    return [(parts[2 * i], parts[2 * i + 1]) for i in range(len(layers))]


class ResBlock2d(nn.Module):
    def __init__(self, d: int, r: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(d, r, 3, padding=1)
        self.conv2 = nn.Conv2d(r, d, 3, padding=1)

    def forward(self, g: Tensor) -> Tensor:
        return g + self.conv2(_lrelu(self.conv1(g)))


class Ada3DBlock(nn.Module):
    """G = ResBlock(G); F = F + Ada_2(LeakyReLU(Ada_1(F, G)), G)."""

    def __init__(self, cfg: Ada3DConfig) -> None:
        super().__init__()
        self.res = ResBlock2d(cfg.spatial_channels, cfg.res_channels)
        self.ada1 = AdaptiveConv3d(cfg)
        self.ada2 = AdaptiveConv3d(cfg)


def bilinear_upsampling_weight(bands: int, ratio: int) -> Tensor:
    """Weights of the L -> r^2 L 3x3 convolution that, followed by
    PixelShuffle(r), performs bilinear interpolation with align_corners=False.

    Output row r y + a samples the input at y + d with d = (a + 0.5) / r - 0.5,
    between y - 1 and y + 1; the weights are separable in rows and columns.
    """
    taps = torch.zeros(ratio, 3, dtype=torch.float64)
    for a in range(ratio):
        d = (a + 0.5) / ratio - 0.5
        if d >= 0:
            taps[a, 1], taps[a, 2] = 1 - d, d
        else:
            taps[a, 0], taps[a, 1] = -d, 1 + d
    kernel = taps[:, None, :, None] * taps[None, :, None, :]  # (a, b, ky, kx)
    weight = torch.zeros(bands * ratio * ratio, bands, 3, 3, dtype=torch.float64)
    for band in range(bands):
        # PixelShuffle reads channel band r^2 + a r + b into sub-pixel (a, b).
        weight[band * ratio * ratio : (band + 1) * ratio * ratio, band] = kernel.reshape(
            ratio * ratio, 3, 3
        )
    return weight.float()


class Ada3D(nn.Module):
    """The Ada3D network. ``forward(ms, pan)`` returns the fused image."""

    def __init__(self, config: Ada3DConfig | None = None, grad_checkpoint: bool = False) -> None:
        super().__init__()
        cfg = config or Ada3DConfig()
        self.config = cfg
        #: Recompute each adaptive layer in the backward pass (training memory).
        self.grad_checkpoint = grad_checkpoint
        lb, r = cfg.bands, cfg.ratio
        if cfg.band_agnostic:
            self.band_upsample = SharedBandUpsample(r)
            self.g_in: nn.Module = PooledSpatialInput(cfg.spatial_channels)
            self.refine = SpectralRefine(cfg.refine_hidden)
        else:
            self.upsample = nn.Conv2d(
                lb, r * r * lb, 3, padding=1, bias=False, padding_mode="replicate"
            )
            self.shuffle = nn.PixelShuffle(r)
            self.g_in = nn.Conv2d(lb + 1, cfg.spatial_channels, 3, padding=1)
            self.refine1 = nn.Conv2d(lb, lb, 3, padding=1)
            self.refine2 = nn.Conv2d(lb, lb, 3, padding=1)
        self.f_in = nn.Conv3d(1, cfg.channels, 3, padding=1)
        self.blocks = nn.ModuleList(Ada3DBlock(cfg) for _ in range(cfg.layers))
        self.head = nn.Conv3d(cfg.channels, 1, 3, padding=1)
        self.reset_to_interpolation()

    @property
    def context_size(self) -> int:
        return self.config.context_size

    @property
    def zero_start(self) -> tuple[nn.Module, nn.Module]:
        """The last convolutions of the head and of the refinement (zero at the start)."""
        return self.head, (self.refine.conv2 if self.config.band_agnostic else self.refine2)

    @torch.no_grad()
    def reset_to_interpolation(self) -> None:
        """Make the network return bilinear interpolation of the MS exactly."""
        cfg = self.config
        if cfg.band_agnostic:
            self.band_upsample.conv.weight.copy_(bilinear_upsampling_weight(1, cfg.ratio))
        else:
            self.upsample.weight.copy_(bilinear_upsampling_weight(cfg.bands, cfg.ratio))
        for conv in self.zero_start:
            conv.weight.zero_()
            conv.bias.zero_()

    def forward(self, ms: Tensor, pan: Tensor) -> Tensor:
        """Fused image from ``ms`` (B, L, h, w) and ``pan`` (B, 1, r h, r w)."""
        return self._run(ms, pan, None, None)[0]

    def forward_with_context(
        self, ms: Tensor, pan: Tensor, context: Tensor, context_weight: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Like ``forward`` but every pooled statistic is
        ``w * context + (1 - w) * own``; returns ``(fused, own_context)``.

        ``context`` is (B, context_size), ``context_weight`` (B, 1);
        ``own_context`` is this input's own pooled statistics, the same layout.
        """
        return self._run(ms, pan, context, context_weight)

    def _run(
        self, ms: Tensor, pan: Tensor, context: Tensor | None, weight: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        if self.config.band_agnostic:
            x_up = self.band_upsample(ms)
            g = _lrelu(self.g_in(x_up, pan))
        else:
            x_up = self.shuffle(self.upsample(ms))
            g = _lrelu(self.g_in(torch.cat([x_up, pan], dim=1)))
        f = _lrelu(self.f_in(x_up.unsqueeze(1)))
        own: list[Tensor] = []
        for n, block in enumerate(self.blocks):
            g = block.res(g)
            first, second = spatial_maps([block.ada1, block.ada2], g)
            h = _lrelu(self._adaptive(block.ada1, f, g, context, weight, 2 * n, own, first))
            f = f + self._adaptive(block.ada2, h, g, context, weight, 2 * n + 1, own, second)
        z = band_conv3d(self.head, f).squeeze(1)
        if self.config.band_agnostic:
            z = z + self.refine(z)
        else:
            z = z + self.refine2(_lrelu(self.refine1(z)))
        return z + x_up, torch.cat(own, dim=1)

    def _adaptive(
        self,
        ada: AdaptiveConv3d,
        f: Tensor,
        g: Tensor,
        context: Tensor | None,
        weight: Tensor | None,
        layer: int,
        own: list[Tensor],
        spatial: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """Run adaptive layer number ``layer``, appending its own pooled
        statistics to ``own`` and mixing in ``context`` if given."""
        cfg = self.config
        pooled_f = f.mean(dim=(3, 4))  # (B, C, L)
        pooled_g = g.mean(dim=(2, 3))  # (B, D)
        own += [pooled_f.flatten(1), pooled_g]
        if context is not None:
            # The input's band count, not the configuration's: band-agnostic models take any.
            cl = cfg.channels * f.shape[2]
            start = layer * (cl + cfg.spatial_channels)
            ctx_f = context[:, start : start + cl].unflatten(1, (cfg.channels, f.shape[2]))
            ctx_g = context[:, start + cl : start + cl + cfg.spatial_channels]
            pooled_f = weight[:, :, None] * ctx_f + (1 - weight[:, :, None]) * pooled_f
            pooled_g = weight * ctx_g + (1 - weight) * pooled_g
        if self.grad_checkpoint and self.training and torch.is_grad_enabled():
            return checkpoint(ada, f, g, pooled_f, pooled_g, spatial, use_reentrant=False)
        return ada(f, g, pooled_f, pooled_g, spatial)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def randomise_zero_init(model: Ada3D, seed: int = 0, std: float = 0.05) -> Ada3D:
    """Give the zero-initialised head/refine convolutions random weights.

    The interpolation start blocks every gradient behind the head at step 0;
    tests and the receptive-field measurement need a generic network instead.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in model.zero_start:
            for p in (conv.weight, conv.bias):
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model


def receptive_field_halo(config: Ada3DConfig) -> int:
    """Receptive-field radius of the network with a fixed context, in PAN
    pixels, rounded up to a multiple of the ratio.

    Measured, not derived: the gradient of one central output pixel with
    respect to both inputs is non-zero exactly on the receptive field
    (LeakyReLU never has a zero slope and the weights are generic). The
    radius depends only on the layer count, kernel sizes and ratio, so the
    measurement runs on a slim copy of the architecture (4 channels) to stay
    cheap; the channel counts do not change it.
    """
    slim = replace(
        config,
        channels=4,
        spatial_channels=4,
        spectral_hidden=2,
        spatial_hidden=2,
        context_hidden=2,
        res_channels=2,
        refine_hidden=2,
    )
    torch.manual_seed(0)
    model = randomise_zero_init(Ada3D(slim)).double().eval()
    r = config.ratio
    # Twice a generous guess of the radius (in MS pixels); doubled if too small.
    lr_size = 2 * -(-(3 * r + 6 * config.layers + 8) // r) + 2
    # Many tiny ops: one thread is several times faster than two here, far
    # more so when other processes share the cores (OpenMP spin-waiting).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        while True:
            radius = _measure_radius(model, slim, lr_size)
            if radius is not None:
                return -(-radius // r) * r
            lr_size *= 2
    finally:
        torch.set_num_threads(threads)


def _measure_radius(model: Ada3D, cfg: Ada3DConfig, lr_size: int) -> int | None:
    """Largest PAN-pixel distance from the centre output pixel to an input it
    depends on, or None if the dependency reaches the image border."""
    r, size = cfg.ratio, lr_size * cfg.ratio
    gen = torch.Generator().manual_seed(1)
    ms = torch.rand(1, cfg.bands, lr_size, lr_size, generator=gen, dtype=torch.float64)
    pan = torch.rand(1, 1, size, size, generator=gen, dtype=torch.float64)
    ms.requires_grad_(True)
    pan.requires_grad_(True)
    context = torch.rand(1, cfg.context_size, generator=gen, dtype=torch.float64)
    fused, _ = model.forward_with_context(ms, pan, context, torch.ones(1, 1, dtype=torch.float64))
    centre = size // 2
    fused[0, :, centre, centre].sum().backward()
    pan_rows, pan_cols = torch.nonzero(pan.grad[0, 0] != 0, as_tuple=True)
    ms_rows, ms_cols = torch.nonzero(ms.grad[0].abs().sum(0) != 0, as_tuple=True)
    # An MS pixel k covers PAN pixels r k .. r k + r - 1: take its farthest one.
    extent = [
        (pan_rows - centre).abs().max(),
        (pan_cols - centre).abs().max(),
        torch.maximum((r * ms_rows - centre).abs(), (r * ms_rows + r - 1 - centre).abs()).max(),
        torch.maximum((r * ms_cols - centre).abs(), (r * ms_cols + r - 1 - centre).abs()).max(),
    ]
    touches = (
        min(pan_rows.min(), pan_cols.min()) == 0
        or max(pan_rows.max(), pan_cols.max()) == size - 1
        or min(ms_rows.min(), ms_cols.min()) == 0
        or max(ms_rows.max(), ms_cols.max()) == lr_size - 1
    )
    return None if touches else int(max(extent))
