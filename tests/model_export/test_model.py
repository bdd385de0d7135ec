"""Tests of the Ada3D network (model_export.model, model_export.adaptive_conv)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as fn

from model_export.adaptive_conv import (
    FORMULATIONS,
    KERNEL_GAIN,
    TAPS,
    SpatialKernel,
    adaptive_conv3d,
    tap_normalise,
)
from model_export.model import (
    Ada3D,
    Ada3DConfig,
    count_parameters,
    randomise_zero_init,
    receptive_field_halo,
)


def tiny(**kw) -> Ada3DConfig:
    """A cheap configuration with every component of the paper's."""
    base = dict(
        channels=4,
        spatial_channels=5,
        layers=2,
        spectral_hidden=3,
        spatial_hidden=3,
        context_hidden=2,
        res_channels=3,
    )
    return Ada3DConfig(**{**base, **kw})


def inputs(cfg: Ada3DConfig, lr: int, batch: int = 2, seed: int = 0, cols: int | None = None):
    gen = torch.Generator().manual_seed(seed)
    cols = cols or lr
    ms = torch.rand(batch, cfg.bands, lr, cols, generator=gen)
    pan = torch.rand(batch, 1, lr * cfg.ratio, cols * cfg.ratio, generator=gen)
    return ms, pan


def generic_model(cfg: Ada3DConfig, seed: int = 0) -> Ada3D:
    """Random weights everywhere, including the layers that start at zero."""
    torch.manual_seed(seed)
    return randomise_zero_init(Ada3D(cfg), seed=seed, std=0.1).eval()


@pytest.mark.parametrize(("bands", "expected"), [(8, 1_677_897), (4, 1_668_385)])
def test_paper_configuration_parameter_count(bands, expected):
    # Numbers from the paper (issue 3), not from this code.
    cfg = Ada3DConfig(bands=bands)
    assert (cfg.channels, cfg.spatial_channels, cfg.layers, cfg.ratio) == (48, 48, 4, 4)
    assert count_parameters(Ada3D(cfg)) == expected


@pytest.mark.parametrize("ratio", [2, 4])
@pytest.mark.parametrize("bands", [3, 4, 6, 8])
def test_output_shapes(ratio, bands):
    cfg = tiny(ratio=ratio, bands=bands)
    model = Ada3D(cfg).eval()
    ms, pan = inputs(cfg, lr=5, cols=7)
    with torch.no_grad():
        fused, context = model.forward_with_context(
            ms, pan, torch.zeros(2, cfg.context_size), torch.zeros(2, 1)
        )
    assert fused.shape == (2, bands, 5 * ratio, 7 * ratio)
    assert context.shape == (2, model.context_size)
    n, c, d = cfg.layers, cfg.channels, cfg.spatial_channels
    assert model.context_size == 2 * n * (c * bands + d)


def test_gradients_reach_every_parameter():
    cfg = tiny()
    model = generic_model(cfg).train()
    ms, pan = inputs(cfg, lr=6)
    loss = model(ms, pan).square().mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_gradient_checkpointing_gives_the_same_gradients():
    cfg = tiny(layers=1)
    grads = []
    for use in (False, True):
        model = generic_model(cfg).train()
        model.grad_checkpoint = use
        ms, pan = inputs(cfg, lr=6)
        model(ms, pan).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("ratio", [2, 4])
def test_fresh_model_is_bilinear_interpolation(ratio):
    cfg = tiny(ratio=ratio, bands=3)
    torch.manual_seed(3)
    model = Ada3D(cfg).eval()
    ms, pan = inputs(cfg, lr=7, cols=9)
    with torch.no_grad():
        fused = model(ms, pan)
    expected = fn.interpolate(ms, scale_factor=ratio, mode="bilinear", align_corners=False)
    assert (fused - expected).abs().max() < 1e-6


def test_forward_is_context_weight_zero_and_own_context_with_weight_one():
    cfg = tiny()
    model = generic_model(cfg)
    ms, pan = inputs(cfg, lr=6)
    foreign = torch.randn(2, cfg.context_size)
    with torch.no_grad():
        plain = model(ms, pan)
        w0, own = model.forward_with_context(ms, pan, foreign, torch.zeros(2, 1))
        w1, own1 = model.forward_with_context(ms, pan, own, torch.ones(2, 1))
        other, _ = model.forward_with_context(ms, pan, foreign, torch.ones(2, 1))
    assert torch.equal(plain, w0)
    assert (plain - w1).abs().max() < 1e-6
    assert torch.equal(own, own1)
    # The context must matter, or the tests above prove nothing.
    assert (plain - other).abs().max() > 1e-3


def test_own_context_layout_starts_with_first_layer_features():
    cfg = tiny()
    model = generic_model(cfg)
    ms, pan = inputs(cfg, lr=6)
    seen = {}

    def record(module, args, out):
        seen["f"] = args[0].mean(dim=(3, 4))

    model.blocks[0].ada1.register_forward_hook(record)
    with torch.no_grad():
        _, own = model.forward_with_context(
            ms, pan, torch.zeros(2, cfg.context_size), torch.zeros(2, 1)
        )
    cl = cfg.channels * cfg.bands
    assert torch.allclose(own[:, :cl], seen["f"].flatten(1))


def _reference_adaptive_conv(f, kspe, kspa):
    """The issue's formula with the whole 27-tap kernel built explicitly."""
    _, _, bands, h, w = f.shape
    fpad = fn.pad(f, (1, 1, 1, 1, 1, 1))
    patches = torch.stack(
        [
            fpad[:, :, i : i + bands, j : j + h, m : m + w]
            for i in range(3)
            for j in range(3)
            for m in range(3)
        ],
        dim=3,
    )  # (B, C, L, 27, H, W), tap t = 9 i + 3 j + m
    kernel = kspe[..., None, None] * kspa[:, :, None]  # (B, C, L, 27, H, W)
    return (kernel * patches).sum(dim=3)


@pytest.mark.parametrize("formulation", FORMULATIONS)
def test_adaptive_conv_matches_explicit_kernel(formulation):
    gen = torch.Generator().manual_seed(0)
    b, c, bands, h, w, hidden = 2, 3, 5, 6, 7, 4

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    f = rand(b, c, bands, h, w)
    kspe = tap_normalise(rand(b, c, bands, TAPS), 3)
    hid, weight, bias = rand(b, hidden, h, w), rand(c * TAPS, hidden, 3, 3), rand(c * TAPS)
    # The spec's spatial kernel: the whole convolution, then normalised over taps.
    kspa = tap_normalise(fn.conv2d(hid, weight, bias, padding=1).unflatten(1, (c, TAPS)), 2)
    lean = SpatialKernel(hid, weight, bias, c)
    torch.testing.assert_close(lean.full(), kspa, rtol=1e-10, atol=1e-10)
    expected = _reference_adaptive_conv(f, kspe, kspa)
    got = adaptive_conv3d(f, kspe, lean, formulation)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_tap_normalise_gives_zero_mean_and_gain_std():
    v = torch.randn(3, 4, TAPS, 5, dtype=torch.float64) * 7 + 2
    n = tap_normalise(v, 2)
    assert n.mean(dim=2).abs().max() < 1e-12
    gain = torch.full((3, 4, 5), KERNEL_GAIN, dtype=torch.float64)
    torch.testing.assert_close(n.std(dim=2, unbiased=True), gain)
    # Equal taps: no division by zero.
    assert torch.equal(tap_normalise(torch.ones(1, TAPS), 1), torch.zeros(1, TAPS))


def test_halo_is_a_multiple_of_the_ratio_and_grows_with_depth():
    shallow, deep = receptive_field_halo(tiny(layers=1)), receptive_field_halo(tiny(layers=3))
    assert shallow % 4 == 0 and deep % 4 == 0
    assert 0 < shallow < deep
    assert receptive_field_halo(tiny(ratio=2)) % 2 == 0


def _tile_error(model, cfg, ms, pan, context, margin_lr):
    """Max |tile - whole| over a tile's core, the tile carrying ``margin_lr``
    MS pixels of context on each side."""
    r = cfg.ratio
    ones = torch.ones(1, 1)
    with torch.no_grad():
        whole, _ = model.forward_with_context(ms, pan, context, ones)
        y0, x0, size = 8, 9, 6  # core, MS pixels
        a, b = y0 - margin_lr, y0 + size + margin_lr
        c, d = x0 - margin_lr, x0 + size + margin_lr
        tile, _ = model.forward_with_context(
            ms[..., a:b, c:d], pan[..., a * r : b * r, c * r : d * r], context, ones
        )
    core = tile[..., margin_lr * r : (margin_lr + size) * r, margin_lr * r : (margin_lr + size) * r]
    return (core - whole[..., y0 * r : (y0 + size) * r, x0 * r : (x0 + size) * r]).abs().max()


def test_fixed_context_makes_tiles_exact_with_the_halo():
    cfg = tiny(layers=1)
    model = generic_model(cfg)
    ms, pan = inputs(cfg, lr=24, batch=1)
    with torch.no_grad():
        _, context = model.forward_with_context(
            ms, pan, torch.zeros(1, cfg.context_size), torch.zeros(1, 1)
        )
    halo = receptive_field_halo(cfg)
    assert _tile_error(model, cfg, ms, pan, context, halo // cfg.ratio) < 1e-5
    # One MS pixel less of context changes the core: the halo is not oversized.
    assert _tile_error(model, cfg, ms, pan, context, halo // cfg.ratio - 1) > 1e-5


def test_config_round_trips_through_a_dict():
    cfg = tiny(bands=6, ratio=2)
    assert Ada3DConfig.from_dict({**cfg.to_dict(), "future_field": 1}) == cfg
