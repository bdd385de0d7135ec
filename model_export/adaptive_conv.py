"""The adaptive 3D convolution of Ada3D, written so that it exports to plain ONNX.

For every feature channel c, band l and pixel (y, x) the layer applies its own
3x3x3 kernel, the per-tap product of a spectral kernel (per band, shared over
space) and a spatial kernel (per pixel, shared over bands):

    out[b,c,l,y,x] = sum_t Kspe[b,c,l,t] * Kspa[b,c,t,y,x] * Fpad[b,c,l+i,y+j,x+m]

with t = 9 i + 3 j + m (i spectral, j row, m column offset, each -1..+1) and F
zero-padded by one on L, H and W. It is depthwise: there is no sum over c.

Memory, not arithmetic, limits this layer on a CPU: the spatial kernel holds
27 C values per pixel (for the paper configuration 7 times the feature F
itself), and every elementwise op over it is a pass through main memory. So:

- The 27-tap product kernel (B, C, L, 27, H, W) is never built, nor any
  three-tap stack. The sum runs tap by tap: for each spatial offset (j, m)
  the padded feature is shifted once, and each of the three spectral taps
  takes its band neighbours l + i with a Gather on that window, is
  multiplied by its two kernels and added to a running sum (``accumulate``
  keeps only the sum and one term alive). Every temporary is feature-sized.
- The spatial kernel is never held whole either. It is the last convolution
  (h_a -> 27 C) of a small hidden map, so the kernel for one group of taps is
  that convolution with the group's output channels only. Its normalisation
  over the 27 taps needs the mean and standard deviation first: the mean is
  removed exactly by centring the convolution's weights over the taps (the
  kernel is linear in them), and the variance is accumulated group by group
  in a first pass. The second pass recomputes each group's kernel, scales it
  and uses it. The convolution runs twice; in exchange a tile needs about a
  ninth of the kernel memory, and the mean-subtraction and slicing passes
  vanish.

The shipped graphs use "strips" (``adaptive_conv3d_strips``): the layer
block by block, a few output rows at a time in one ONNX Scan, so that a
strip's temporaries stay in the CPU's cache. Each strip gathers its own rows,
computes its spatial kernel once, normalises after the sum and adds the
adaptive bias, all in cache. Inside a strip the taps go by column offset:
one convolution, one product and one matrix product cover the nine taps of
an offset, and the column shift is applied to the kernel and to the L-band
sum instead of to a 9 L-band copy of the features. PyTorch trains with
"tap_gather".

The exported graph is Conv + Slice + Gather + Mul + Add (+ MatMul and Scan for
"strips"), which onnxruntime runs without custom ops. `python -m
bench.formulations` (docs/formulations.md) measures the formulations on a 320
x 320 PAN tile of the shipped ratio-2 model: "strips" takes about a quarter
of the time of the whole-tile formulations (0.23 s against 0.86 s for
"tap_gather"). Of those, the tap-by-tap "tap_gather" runs as fast as
"gather_mul" (one Gather of all three neighbours per group, a (B, C, L, 3, H,
W) stack, then ReduceSum) with 44 % less peak memory (312 MiB above the
session's resting size against 555). "mul_einsum" (Einsum as a batched
MatMul) is slower and larger; one three-operand Einsum per group ("einsum")
is about 9 times slower: onnxruntime splits it into tiny matrix products.
"taps" (slices only) is as lean, but it has no Gather, which the export
constraint asks for.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as fn
from torch import Tensor
from torch._higher_order_ops.scan import scan

#: Number of taps of a 3x3x3 kernel.
TAPS = 27
#: LeakyReLU gain sqrt(2 / (1 + 0.01^2)) divided by 3: the scale the spec gives
#: each tap-normalised kernel.
KERNEL_GAIN = 0.471381
#: Guards the division when all 27 taps are equal.
KERNEL_EPS = 1e-10

#: Formulations of the three-tap sum (see ``adaptive_conv3d``).
FORMULATIONS = ("strips", "gather_mul", "tap_gather", "mul_einsum", "einsum", "taps")
#: What PyTorch trains with: autograd through a scan would be slow.
DEFAULT_FORMULATION = "tap_gather"
#: What the plugin's graphs are exported with (fastest on a CPU; docs/formulations.md).
EXPORT_FORMULATION = "strips"
#: Output rows per strip of the "strips" formulation: 2 to 8 rows run within a
#: few per cent of each other (docs/strip_rows.md); 4 keep a strip's nine-tap
#: temporaries small.
STRIP_ROWS = 4


def tap_normalise(v: Tensor, dim: int) -> Tensor:
    """Standardise ``v`` over its 27 taps along ``dim`` (unbiased std), times the gain."""
    mean = v.mean(dim=dim, keepdim=True)
    std = torch.std(v, dim=dim, keepdim=True, unbiased=True)
    return (v - mean) * (KERNEL_GAIN / (std + KERNEL_EPS))


def spectral_neighbours(fpad: Tensor, bands: int) -> Tensor:
    """(B, C, L+2, H', W') -> (B, C, L, 3, H', W'): band l's neighbours l-1, l, l+1.

    A Gather with a constant index rather than three slices, so that the
    exported graph reads as one indexing op.
    """
    idx = (torch.arange(bands)[:, None] + torch.arange(3)[None, :]).reshape(-1)
    nb = torch.index_select(fpad, 2, idx.to(fpad.device))
    return nb.unflatten(2, (bands, 3))


class SpatialKernel:
    """The tap-normalised spatial kernel, produced three taps at a time.

    ``hidden`` (B, h_a, H, W) is the input of the kernel's last convolution,
    ``weight`` (27 C, h_a, 3, 3) and ``bias`` (27 C) its parameters with the
    output channel layout c * 27 + t.
    """

    def __init__(self, hidden: Tensor, weight: Tensor, bias: Tensor, channels: int) -> None:
        self.hidden = hidden
        w = weight.unflatten(0, (channels, TAPS))  # (C, 27, h_a, 3, 3)
        b = bias.unflatten(0, (channels, TAPS))  # (C, 27)
        # Centred over the taps: the convolution then yields kernel - mean.
        self.weight = w - w.mean(dim=1, keepdim=True)
        self.bias = b - b.mean(dim=1, keepdim=True)
        self.channels = channels
        self._scale: Tensor | None = None

    @property
    def scale(self) -> Tensor:
        """Gain over the standard deviation over the taps: (B, C, 1, H, W)."""
        if self._scale is None:
            self._scale = self._variance_scale()
        return self._scale

    def _variance_scale(self) -> Tensor:
        # Pass 1 takes the taps in runs of three consecutive ones, pass 2 by
        # spatial offset: different weights, so that onnxruntime's
        # common-subexpression elimination cannot merge the two passes back
        # into one whole kernel held in memory.
        sumsq = accumulate(
            (v * v).sum(dim=2) for v in (self._centred(slice(3 * k, 3 * k + 3)) for k in range(9))
        )
        std = torch.sqrt(sumsq / (TAPS - 1))
        return (KERNEL_GAIN / (std + KERNEL_EPS)).unsqueeze(2)

    def _centred(self, taps: slice) -> Tensor:
        """Centred kernel for three taps: (B, C, 3, H, W)."""
        w = self.weight[:, taps].flatten(0, 1)  # (3C, h_a, 3, 3), channel c * 3 + k
        b = self.bias[:, taps].flatten()
        return fn.conv2d(self.hidden, w, b, padding=1).unflatten(1, (self.channels, 3))

    def group(self, group: int) -> Tensor:
        """Normalised kernel taps 9 i + group, i = 0, 1, 2: (B, C, 3, H, W)."""
        return self._centred(slice(group, TAPS, 9)) * self.scale

    def full(self) -> Tensor:
        """The whole normalised kernel (B, C, 27, H, W); for tests and reference."""
        out = torch.stack([self.group(g) for g in range(9)], dim=3)  # (B, C, 3, 9, H, W)
        return out.flatten(2, 3)


@dataclass
class AdaptiveBias:
    """The adaptive bias a[b, l] g[b, y, x] e[b, c], kept as its three factors."""

    band: Tensor  # a: (B, 1, L)
    space: Tensor  # g: (B, 1, H, W)
    channel: Tensor  # e: (B, C)

    def full(self) -> Tensor:
        """(B, C, L, H, W)."""
        return (
            self.band[:, :, :, None, None]
            * self.space[:, :, None]
            * self.channel[:, :, None, None, None]
        )


def adaptive_conv3d(
    f: Tensor,
    kspe: Tensor,
    kspa: SpatialKernel,
    formulation: str = DEFAULT_FORMULATION,
    bias: AdaptiveBias | None = None,
    rows: int = STRIP_ROWS,
) -> Tensor:
    """Depthwise adaptive 3x3x3 convolution of ``f``, plus ``bias`` if given
    (``rows``: the strips' height, for "strips").

    - ``f``: (B, C, L, H, W) features.
    - ``kspe``: (B, C, L, 27) normalised spectral kernel.
    - ``kspa``: the spatial kernel, produced group by group.

    ``formulation`` picks how a group's three taps are combined; all give the
    same result (tests check them against the explicit 27-tap kernel).
    """
    if formulation == "strips":
        return adaptive_conv3d_strips(f, kspe, kspa, rows, bias)
    _, _, bands, height, width = f.shape
    fpad = fn.pad(f, (1, 1, 1, 1, 1, 1))
    if formulation == "taps":
        out = _tap_by_tap(fpad, kspe, kspa, bands, height, width)
    elif formulation == "tap_gather":
        out = accumulate(_tap_gather_terms(fpad, kspe, kspa, bands, height, width))
    else:
        out = accumulate(
            _group_term(fpad, kspe, kspa, j, m, height, width, formulation)
            for j in range(3)
            for m in range(3)
        )
    return out if bias is None else out + bias.full()


def adaptive_conv3d_strips(
    f: Tensor,
    kspe: Tensor,
    kspa: SpatialKernel,
    rows: int = STRIP_ROWS,
    bias: AdaptiveBias | None = None,
) -> Tensor:
    """The "strips" formulation: the layer evaluated ``rows`` output rows at a
    time by one scan (an ONNX Scan), each strip reading a one-row halo.

    A strip's temporaries fit the CPU's cache, where a whole tile's stream
    through main memory at every op; the spatial kernel is computed once per
    strip, and its normalisation is applied to the strip's result, C L values
    per pixel, instead of to the 27 C kernel values. Rows past the bottom are
    zero, as the padding is.
    """
    batch, channels, bands, height, _ = f.shape
    count = (height + rows - 1) // rows
    extra = count * rows - height
    fpad = fn.pad(f, (1, 1, 1, 1 + extra, 1, 1))
    # Two more zero columns each side: a strip computes its kernels at
    # columns shifted by up to two (see _strip).
    hpad = fn.pad(kspa.hidden, (3, 3, 1, 1 + extra))
    # Each strip gathers its rows, halo included, from the padded features
    # seen as one table of rows (a free reshape), inside the scan: the strip
    # is then built where it is used, in cache, and no copy of the whole
    # feature volume is made to lay the strips out.
    rows_table = fpad.reshape(-1, fpad.shape[4])
    f_rows = strip_rows(batch, channels, bands + 2, fpad.shape[3], count, rows, f.device)
    neighbours = neighbour_rows(channels, bands, rows, f.device)
    # Row r of strip k is padded row k * rows + r (the hidden map is small).
    index = (
        torch.arange(count, device=f.device)[:, None] * rows
        + torch.arange(rows + 2, device=f.device)[None, :]
    ).reshape(-1)
    # The scan runs over (tile, strip) pairs, tile-major, each with a batch
    # of one: a batch axis inside the scan body fails torch's export.
    h_strips = _strips_first(torch.index_select(hpad, 2, index), 2, count)
    weight, kernel_bias = strip_kernel_weights(kspa)
    # (B K, 3, C, L, 1, 9): per column offset m, the nine taps 9 i + 3 j + m
    # in (j, i) order, as the strip's kernels and neighbours are laid out.
    spe = kspe.unflatten(3, (3, 3, 3)).permute(0, 5, 1, 2, 4, 3).flatten(4).unsqueeze(4)
    spe = _per_strip(spe, count)

    xs = [f_rows, h_strips, spe]
    if bias is not None:
        # The bias joins each strip's result in cache, not the whole volume.
        # (B K, 1, C, L, 1, 1): a e per tile; (B K, 1, 1, rows, W): the strip's g.
        band_channel = (bias.channel[:, :, None] * bias.band)[:, None, :, :, None, None]
        xs.append(_per_strip(band_channel, count))
        space = fn.pad(bias.space, (0, 0, 0, extra)).unflatten(2, (count, rows))
        xs.append(space.movedim(2, 1).flatten(0, 1).unsqueeze(1))

    def step(carry: Tensor, strip: list[Tensor]) -> tuple[Tensor, Tensor]:
        f_strip = torch.index_select(rows_table, 0, strip[0])
        out = _strip(f_strip, strip[1], weight, kernel_bias, strip[2], neighbours, bands)
        if len(strip) > 3:
            out = out + strip[3] * strip[4]
        # The carry is unused; scan wants one, and a copy, not the same tensor.
        return carry.clone(), out

    _, out = scan(step, f.new_zeros(1), xs)  # (B K, 1, C, L, rows, W)
    out = out.unflatten(0, (batch, count)).squeeze(2).permute(0, 2, 3, 1, 4, 5)
    return out.flatten(3, 4)[:, :, :, :height]


def _per_strip(x: Tensor, count: int) -> Tensor:
    """(B, ...) per tile -> (B K, ...): the same for each of its ``count`` strips."""
    return x.unsqueeze(1).expand(-1, count, *([-1] * (x.dim() - 1))).flatten(0, 1)


def strip_rows(
    batch: int, channels: int, planes: int, padded_rows: int, count: int, rows: int, device
) -> Tensor:
    """(B K, C P (R+2)): for strip k of tile b, the numbers of its rows in a
    (B, C, P, padded_rows, W') volume seen as a table of rows, in (channel,
    plane, row) order, each strip ``rows`` rows and a one-row halo."""
    b = torch.arange(batch, device=device)[:, None, None, None, None]
    k = torch.arange(count, device=device)[None, :, None, None, None]
    c = torch.arange(channels, device=device)[None, None, :, None, None]
    p = torch.arange(planes, device=device)[None, None, None, :, None]
    r = torch.arange(rows + 2, device=device)[None, None, None, None, :]
    number = ((b * channels + c) * planes + p) * padded_rows + k * rows + r
    return number.flatten(2).flatten(0, 1)


def neighbour_rows(channels: int, bands: int, rows: int, device) -> Tensor:
    """(C L 9 R,): in a strip's table of rows (``strip_rows`` order, L + 2
    planes), the row each tap (j, i) of band l reads for output row r: plane
    l + i, row r + j, in (channel, band, j, i, row) order."""
    c = torch.arange(channels, device=device)[:, None, None, None, None]
    band = torch.arange(bands, device=device)[None, :, None, None, None]
    j = torch.arange(3, device=device)[None, None, :, None, None]
    i = torch.arange(3, device=device)[None, None, None, :, None]
    r = torch.arange(rows, device=device)[None, None, None, None, :]
    return ((c * (bands + 2) + band + i) * (rows + 2) + r + j).reshape(-1)


def _strips_first(x: Tensor, axis: int, count: int) -> Tensor:
    """(B, ..., K (R+2), W') gathered rows at ``axis`` -> (B K, 1, ..., R+2, W')."""
    x = x.unflatten(axis, (count, -1)).movedim(axis, 1)
    return x.flatten(0, 1).unsqueeze(1)


def strip_kernel_weights(kspa: SpatialKernel) -> tuple[Tensor, Tensor]:
    """The centred kernel convolution split by column offset m: weights (3, 9 C,
    h_a, 3, 3) and biases (3, 9 C), output channel c * 9 + 3 j + i for tap
    9 i + 3 j + m, so that a strip computes each column offset's nine taps by
    one convolution."""
    channels = kspa.channels
    w = kspa.weight.unflatten(1, (3, 3, 3))  # (C, i, j, m, h_a, 3, 3)
    b = kspa.bias.unflatten(1, (3, 3, 3))  # (C, i, j, m)
    w = w.permute(3, 0, 2, 1, 4, 5, 6).reshape(3, channels * 9, *w.shape[4:])
    return w, b.permute(3, 0, 2, 1).reshape(3, channels * 9)


def _strip(
    f_rows: Tensor,
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor,
    spe: Tensor,
    neighbours: Tensor,
    bands: int,
) -> Tensor:
    """One strip: ``f_rows`` (C (L+2) (R+2), W+2), its padded rows in
    ``strip_rows`` order, ``hidden`` (1, h_a, R+2, W+6) and ``spe`` (3, C, L,
    1, 9) give the layer's (1, C, L, R, W) without its bias.

    The taps are taken by column offset m: one gather lays out, for every
    band and tap (j, i), the rows it reads at full padded width, and the
    column shift is moved off these 9 L-band rows onto the kernel (computed
    at columns shifted by -m) and the L-band sum; so there is one
    convolution, one product and one matrix product per column offset, over
    all nine of its taps, and no shifted copy of the features.
    """
    padded_width = f_rows.shape[-1]
    width = padded_width - 2
    channels = weight.shape[1] // 9
    rows = hidden.shape[2] - 2
    # (1, C, L, 9, R (W+2)): tap (j, i) of band l at padded column x'.
    nb = torch.index_select(f_rows, 0, neighbours)
    nb = nb.reshape(1, channels, bands, 9, rows * padded_width)
    sums: list[Tensor] = []
    squares: list[Tensor] = []
    for m in range(3):
        # Kernels for output column x' - m at every padded column x'.
        kernel = fn.conv2d(hidden[..., 2 - m : 2 - m + width + 4], weight[m], bias[m])
        kernel = kernel.reshape(1, channels, 9, rows * padded_width)
        sq = (kernel * kernel).sum(dim=2).reshape(1, channels, rows, padded_width)
        squares.append(sq[..., m : m + width])
        # The nine taps' products, summed with their spectral weights.
        term = torch.matmul(spe[m], nb * kernel.unsqueeze(2))
        sums.append(term.reshape(1, channels, bands, rows, padded_width)[..., m : m + width])
    out = accumulate(iter(sums))
    sumsq = accumulate(iter(squares))
    scale = KERNEL_GAIN / (torch.sqrt(sumsq / (TAPS - 1)) + KERNEL_EPS)
    return out * scale.unsqueeze(2)


def _group_term(
    fpad: Tensor,
    kspe: Tensor,
    kspa: SpatialKernel,
    j: int,
    m: int,
    height: int,
    width: int,
    formulation: str,
) -> Tensor:
    """Sum of the three taps 9 i + 3 j + m (i = 0, 1, 2): (B, C, L, H, W)."""
    group = 3 * j + m
    spe = kspe[..., group::9]  # (B, C, L, 3)
    spa = kspa.group(group)  # (B, C, 3, H, W)
    # Shift first, then gather the spectral neighbours: only this group's
    # three-band-wide copy is ever alive, not one for the whole layer.
    shifted = spectral_neighbours(fpad[..., j : j + height, m : m + width], kspe.shape[2])
    if formulation == "gather_mul":
        return (shifted * spa.unsqueeze(2) * spe[..., None, None]).sum(dim=3)
    if formulation == "mul_einsum":
        prod = (shifted * spa.unsqueeze(2)).flatten(4)  # (B, C, L, 3, HW)
        return torch.einsum("bcli,bclip->bclp", spe, prod).unflatten(3, (height, width))
    if formulation == "einsum":
        return torch.einsum("bcli,bcihw,bclihw->bclhw", spe, spa, shifted)
    raise ValueError(f"unknown formulation {formulation!r}")


def _tap_gather_terms(
    fpad: Tensor, kspe: Tensor, kspa: SpatialKernel, bands: int, height: int, width: int
) -> Iterator[Tensor]:
    """One (B, C, L, H, W) term per tap: the spectral neighbour l + i of every
    band is a Gather on the group's shifted window."""
    idx = torch.arange(bands, device=fpad.device)
    for j in range(3):
        for m in range(3):
            group = 3 * j + m
            spa = kspa.group(group)  # (B, C, 3, H, W)
            shifted = fpad[..., j : j + height, m : m + width]  # (B, C, L+2, H, W)
            for i in range(3):
                nb = torch.index_select(shifted, 2, idx + i)
                yield nb * spa[:, :, i : i + 1] * kspe[..., 9 * i + group, None, None]


def accumulate(terms: Iterable[Tensor]) -> Tensor:
    """Sum of ``terms`` (a generator), adding each term only after the next
    one has been built.

    The sum is the same; what changes is the node order of the exported graph.
    onnxruntime's default schedule walks the graph depth-first from the
    output, entering the later-created input of an Add first. With the
    obvious ``out = out + term`` it builds every term before the first Add,
    holding all of them in memory at once (nine feature-sized tensors per
    layer); with this order it finishes the running sum first, so only the
    running sum and one term are alive.
    """
    out: Tensor | None = None
    pending: Tensor | None = None
    for term in terms:
        if pending is not None:
            out = pending if out is None else out + pending
        pending = term
    if pending is None:
        raise ValueError("nothing to sum")
    return pending if out is None else out + pending


def _tap_by_tap(
    fpad: Tensor, kspe: Tensor, kspa: SpatialKernel, bands: int, height: int, width: int
) -> Tensor:
    """27 slices, multiplies and adds (no Gather/Einsum): the leanest in
    memory, but it does not meet the export constraint; kept to compare."""

    def terms() -> Iterator[Tensor]:
        for j in range(3):
            for m in range(3):
                spa = kspa.group(3 * j + m)
                for i in range(3):
                    t = 9 * i + 3 * j + m
                    yield (
                        kspe[..., t, None, None]
                        * spa[:, :, i : i + 1]
                        * fpad[:, :, i : i + bands, j : j + height, m : m + width]
                    )

    return accumulate(terms())
