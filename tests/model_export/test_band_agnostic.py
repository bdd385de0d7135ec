"""Issue 18: the band-agnostic Ada3D configuration, its training data and its
export with a dynamic band count."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as fn
from tiny_models import ANY_BAND_RANGE

from ada3d_qgis.core.metadata import ModelMetadata
from ada3d_qgis.core.normalise import BandStats
from model_export import export
from model_export.band_agnostic import PooledSpatialInput, trained_band_range
from model_export.checkpoints import load_checkpoint_dict
from model_export.data import DataConfig, PatchDataset, PreparedScene, draw_bands, select_bands
from model_export.model import (
    Ada3D,
    Ada3DConfig,
    count_parameters,
    randomise_zero_init,
    receptive_field_halo,
)
from model_export.train import TrainConfig, config_from_args, train

SMALL = dict(
    channels=4,
    spatial_channels=5,
    layers=2,
    spectral_hidden=3,
    spatial_hidden=3,
    context_hidden=2,
    res_channels=3,
)


def agnostic(bands: int = 6, ratio: int = 2) -> Ada3DConfig:
    return Ada3DConfig(**SMALL, bands=bands, ratio=ratio, band_agnostic=True, refine_hidden=2)


def generic(cfg: Ada3DConfig) -> Ada3D:
    torch.manual_seed(0)
    return randomise_zero_init(Ada3D(cfg), std=0.1).eval()


def test_paper_configuration_is_untouched_by_the_new_fields():
    # The paper's own count (issue 3); the new fields default to the paper network.
    assert Ada3DConfig().band_agnostic is False
    assert count_parameters(Ada3D(Ada3DConfig(bands=4))) == 1_668_385
    keys = set(Ada3D(Ada3DConfig(**SMALL)).state_dict())
    assert {"upsample.weight", "g_in.weight", "refine1.weight", "refine2.weight"} <= keys


def test_parameters_do_not_depend_on_the_band_count():
    shapes = [
        {k: v.shape for k, v in Ada3D(agnostic(bands)).state_dict().items()} for bands in (3, 6, 8)
    ]
    assert shapes[0] == shapes[1] == shapes[2]
    fixed = count_parameters(Ada3D(Ada3DConfig(**SMALL, bands=3)))
    assert count_parameters(Ada3D(Ada3DConfig(**SMALL, bands=8))) != fixed


@pytest.mark.parametrize("ratio", [2, 4])
@pytest.mark.parametrize("bands", [3, 4, 5, 8])
def test_fresh_model_is_bilinear_at_any_band_count(ratio, bands):
    model = Ada3D(agnostic(6, ratio)).eval()
    gen = torch.Generator().manual_seed(bands)
    ms = torch.rand(2, bands, 6, 7, generator=gen)
    pan = torch.rand(2, 1, 6 * ratio, 7 * ratio, generator=gen)
    with torch.no_grad():
        out = model(ms, pan)
    ref = fn.interpolate(ms, scale_factor=ratio, mode="bilinear", align_corners=False)
    # Bilinear with replicate padding equals align_corners=False interpolation inside.
    assert out.shape == (2, bands, 6 * ratio, 7 * ratio)
    assert torch.allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize("bands", [3, 5])
def test_context_grows_with_the_band_count_and_fixed_context_makes_tiles_exact(bands):
    cfg = agnostic()
    model = generic(cfg).double()
    gen = torch.Generator().manual_seed(3)
    ms = torch.rand(1, bands, 16, 8, generator=gen, dtype=torch.float64)
    pan = torch.rand(1, 1, 32, 16, generator=gen, dtype=torch.float64)
    size = cfg.context_size_for(bands)
    assert size == 2 * cfg.layers * (cfg.channels * bands + cfg.spatial_channels)
    with torch.no_grad():
        zero = torch.zeros(1, 1, dtype=torch.float64)
        _, own = model.forward_with_context(ms, pan, torch.zeros(1, size).double(), zero)
        assert own.shape == (1, size)
        # With weight 1 the output ignores the input's own statistics: a crop's
        # interior then equals the whole image's (the tiling property).
        one = torch.ones(1, 1, dtype=torch.float64)
        whole, _ = model.forward_with_context(ms, pan, own, one)
        part, _ = model.forward_with_context(ms[..., :12, :], pan[..., :24, :], own, one)
    halo = receptive_field_halo(cfg)
    assert 24 - halo >= 4  # the compared rows are beyond the crop's influence
    assert torch.allclose(whole[..., :4, :], part[..., :4, :], atol=1e-10)
    assert not torch.allclose(whole[..., 20:24, :], part[..., 20:24, :], atol=1e-6)


def test_every_parameter_learns():
    model = generic(agnostic()).train()
    ms, pan = torch.rand(2, 4, 6, 6), torch.rand(2, 1, 12, 12)
    model(ms, pan).square().mean().backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not silent


def test_spatial_input_ignores_the_band_order_and_sees_every_band():
    torch.manual_seed(0)
    layer = PooledSpatialInput(5)
    x, pan = torch.rand(1, 4, 6, 6), torch.rand(1, 1, 6, 6)
    out = layer(x, pan)
    assert torch.allclose(out, layer(x[:, [2, 0, 3, 1]], pan), atol=1e-6)
    changed = x.clone()
    changed[:, 3] += 1
    assert not torch.allclose(out, layer(changed, pan), atol=1e-3)


def test_band_draws_cover_the_range_and_both_orders():
    draws = [draw_bands(np.random.default_rng(i), 6, 3, 6, 0.5) for i in range(400)]
    assert {len(d) for d in draws} == {3, 4, 5, 6}
    assert all(len(set(d.tolist())) == len(d) and d.max() < 6 for d in draws)
    ordered = sum(bool((np.diff(d) > 0).all()) for d in draws)
    assert 100 < ordered < 400  # shuffled 3-band draws are rarely sorted by chance
    with pytest.raises(ValueError, match="do not fit"):
        draw_bands(np.random.default_rng(0), 4, 3, 6, 0.5)


def _scene(bands: int = 6) -> PreparedScene:
    rng = np.random.default_rng(0)
    ms = rng.random((bands, 16, 16), dtype=np.float32)
    return PreparedScene(
        name="s",
        group="g",
        ratio=2,
        ms_lr=ms,
        pan=rng.random((1, 32, 32), dtype=np.float32),
        # Band b of the target is b everywhere: which band an item holds is readable.
        target=np.repeat(np.arange(bands, dtype=np.float32), 32 * 32).reshape(bands, 32, 32),
        ms_stats=BandStats(np.arange(bands, dtype=np.float64), np.ones(bands)),
        pan_stats=BandStats(np.zeros(1), np.ones(1)),
    )


def test_a_batch_shares_one_subset_and_ms_target_stats_agree():
    scene = _scene()
    full = PatchDataset([scene], 8, 32, seed=5)
    drawn = PatchDataset([scene], 8, 32, seed=5, random_bands=(3, 6), group=4)
    counts = set()
    for batch in range(8):
        items = [drawn[i] for i in range(4 * batch, 4 * batch + 4)]
        bands = [it["target"][:, 0, 0].long().tolist() for it in items]
        assert all(b == bands[0] for b in bands)  # one subset (and order) per batch
        counts.add(len(bands[0]))
        for i, it in zip(range(4 * batch, 4 * batch + 4), items, strict=True):
            ref = full[i]
            # The same patch as without the draw, restricted to the drawn bands.
            assert torch.equal(it["ms"], ref["ms"][bands[0]])
            assert torch.equal(it["ms_mean"], ref["ms_mean"][bands[0]])
            assert torch.equal(it["pan"], ref["pan"])
    assert len(counts) > 1
    assert drawn[3]["target"][:, 0, 0].tolist() == drawn[3]["target"][:, 0, 0].tolist()


def test_select_bands_keeps_the_pairs_together():
    scene = _scene()
    sub = select_bands(scene, [3, 1])
    assert sub.ms_lr.shape[0] == 2 and sub.target[:, 0, 0].tolist() == [3.0, 1.0]
    assert sub.ms_stats.mean.tolist() == [3.0, 1.0] and sub.pan is scene.pan


def test_command_line_builds_a_band_agnostic_run():
    args = "--band-agnostic --random-bands 3,6 --bands 2,1,0,3,4,5 --refine-hidden 2"
    cfg = config_from_args(args.split())
    assert cfg.model == {"band_agnostic": True, "refine_hidden": 2}
    assert cfg.data.random_bands == [3, 6] and cfg.data.bands == [2, 1, 0, 3, 4, 5]
    model_cfg = cfg.model_config(6)
    assert model_cfg.band_agnostic and model_cfg.bands == 6
    assert trained_band_range({"training": {"train_config": cfg.to_dict()}}, 6) == (3, 6)
    assert trained_band_range({}, 6) == (6, 6)


@pytest.mark.slow
def test_export_has_a_dynamic_band_count_and_matches_pytorch(agnostic_model, model_dir):
    """The shared fixture exports with the parity check at 3 and 6 bands; here
    onnxruntime also runs 4 and 5 bands against the checkpoint's PyTorch model."""
    proto = onnx.load(str(agnostic_model))
    assert proto.ir_version <= 10  # onnxruntime 1.19.2 reads IR 10
    assert {o.domain: o.version for o in proto.opset_import}.get("", 0) == export.OPSET
    ms_dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert ms_dims[1].dim_param and not ms_dims[1].dim_value
    props = {p.key: p.value for p in proto.metadata_props}
    meta = ModelMetadata.from_props(props)
    assert meta.band_range == ANY_BAND_RANGE and meta.band_agnostic
    model, _ = export.load_checkpoint(model_dir / "tiny_any.pt")
    assert meta.context_per_band == 2 * model.config.layers * model.config.channels
    for bands in (4, 5):
        assert export.parity_check(model, agnostic_model, sizes=(12,), bands=bands) < 1e-4


def test_legacy_export_refuses_a_band_agnostic_model(tmp_path):
    cfg = agnostic()
    ckpt = tmp_path / "any.pt"
    torch.save({"config": asdict(cfg), "model": Ada3D(cfg).state_dict(), "training": {}}, ckpt)
    with pytest.raises(ValueError, match="dynamo"):
        export.export_checkpoint(ckpt, tmp_path / "any.onnx", dynamo=False, check=False)
    assert not list(tmp_path.glob("*.onnx*"))


@pytest.fixture(scope="module")
def five_band_halves(tmp_path_factory) -> list[str]:
    """West (training) and east (validation) halves of the Landsat 8 sample with
    a fifth band (a NIR-red mixture, standing in for SWIR1)."""
    from osgeo import gdal

    folder = tmp_path_factory.mktemp("five")
    data = Path(__file__).resolve().parents[1] / "data"
    ms = gdal.Open(str(data / "l8_ms.tif"))
    arr = ms.ReadAsArray().astype(np.float64)
    stack = np.concatenate([arr, (0.5 * arr[3] + 0.5 * arr[2])[None]]).astype(np.uint16)
    scenes = []
    for name, x in (("west", 0), ("east", 128)):
        path = folder / f"{name}_ms.tif"
        ds = gdal.GetDriverByName("GTiff").Create(str(path), 128, 256, 5, gdal.GDT_UInt16)
        gt = list(ms.GetGeoTransform())
        gt[0] += x * gt[1]
        ds.SetGeoTransform(gt)
        ds.SetProjection(ms.GetProjection())
        for b in range(5):
            ds.GetRasterBand(b + 1).WriteArray(stack[b, :, x : x + 128])
        ds = None
        pan = folder / f"{name}_pan.tif"
        gdal.Translate(str(pan), str(data / "l8_pan.tif"), srcWin=[2 * x, 0, 256, 512])
        scenes.append(f"{path},{pan},{name}")
    return scenes


def _agnostic_run(scenes: list[str], out: Path, **kw) -> TrainConfig:
    return TrainConfig(
        data=DataConfig(
            scenes=scenes,
            val_groups=["east"],
            band_names=["B", "G", "R", "NIR", "SWIR1"],
            random_bands=[3, 5],
        ),
        out=str(out),
        model={**SMALL, "layers": 1, "band_agnostic": True, "refine_hidden": 2},
        patch=32,
        batch_size=4,
        epoch_samples=16,
        epochs=2,
        progress=False,
        threads=1,
        **kw,
    )


def test_training_resumes_exactly_across_gradient_checkpointing(five_band_halves, tmp_path):
    whole = train(_agnostic_run(five_band_halves, tmp_path / "whole"))
    assert whole["epoch"] == 2
    out = tmp_path / "split"
    first = train(_agnostic_run(five_band_halves, out, max_steps=6, grad_checkpoint=True))
    assert first["stop_reason"] == "max_steps"
    train(_agnostic_run(five_band_halves, out, resume=True))
    a = load_checkpoint_dict(tmp_path / "whole" / "last.pt")
    b = load_checkpoint_dict(out / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    # The B, G, R, NIR subset is validated beside all five bands, with its references.
    subset = b["validation"]["subsets"]["B,G,R,NIR"]
    assert set(subset["baselines"]) == {"bilinear", "cubic"}
    assert subset["ergas"] != b["validation"]["ergas"]
    with pytest.raises(ValueError, match="cannot resume with a different patch"):
        train(replace(_agnostic_run(five_band_halves, out, resume=True), patch=16))


def test_random_bands_need_a_band_agnostic_model(five_band_halves, tmp_path):
    cfg = _agnostic_run(five_band_halves, tmp_path / "run")
    cfg.model["band_agnostic"] = False
    with pytest.raises(ValueError, match="--band-agnostic"):
        train(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("bands", [3, 5])
def test_band_agnostic_graph_runs_in_the_oldest_planned_onnxruntime(
    agnostic_model, tmp_path, bands
):
    """The dynamic band dimension needs nothing newer than the shipped models do."""
    import os
    import subprocess
    import sys

    from test_oldest_onnxruntime import CHILD, OLDEST, REPO

    from ada3d_qgis.dependencies.plan import oldest_onnxruntime
    from ada3d_qgis.engine.session import open_session

    if not OLDEST.is_dir():
        pytest.skip("scripts/setup.sh installs .venv/ort-oldest")
    rng = np.random.default_rng(bands)
    ms = rng.standard_normal((bands, 24, 24)).astype(np.float32)
    pan = rng.standard_normal((48, 48)).astype(np.float32)
    expected, _ = open_session(agnostic_model, "cpu").run(ms, pan)
    np.save(tmp_path / "ms.npy", ms)
    np.save(tmp_path / "pan.npy", pan)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(OLDEST), str(REPO)]))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, oldest_onnxruntime(), str(agnostic_model),
         str(tmp_path / "ms.npy"), str(tmp_path / "pan.npy"), str(tmp_path / "out.npy")],
        env=env, capture_output=True, text=True, check=False, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    old = np.load(tmp_path / "out.npy")
    assert old.shape == expected.shape == (bands, 48, 48)
    assert float(np.abs(old - expected).max()) <= 1e-5
