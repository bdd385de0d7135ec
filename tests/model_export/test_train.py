"""Training loop: a tiny real-data run, exact resume, torchrun/DDP, CLI."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from osgeo import gdal

from ada3d_qgis.core import metrics
from model_export.checkpoints import load_checkpoint_dict
from model_export.data import DataConfig
from model_export.model import Ada3D, Ada3DConfig
from model_export.train import TrainConfig, config_from_args, loss_terms, train

gdal.UseExceptions()
REPO = Path(__file__).resolve().parents[2]

#: A network small enough that a few steps take well under a second.
TINY = {
    "channels": 4,
    "spatial_channels": 4,
    "layers": 1,
    "spectral_hidden": 2,
    "spatial_hidden": 2,
    "context_hidden": 2,
    "res_channels": 4,
}
TINY_ARGS = [a for k, v in TINY.items() for a in (f"--{k.replace('_', '-')}", str(v))]


@pytest.fixture(scope="module")
def halves(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The real Landsat 8 sample cut into a west and an east scene (own
    groups): the west trains, the east validates, no shared ground."""
    d = tmp_path_factory.mktemp("halves")
    data = REPO / "tests" / "data"
    for name, ms_win, pan_win in (
        ("west", [0, 0, 128, 256], [0, 0, 256, 512]),
        ("east", [128, 0, 128, 256], [256, 0, 256, 512]),
    ):
        gdal.Translate(str(d / f"{name}_ms.tif"), str(data / "l8_ms.tif"), srcWin=ms_win)
        gdal.Translate(str(d / f"{name}_pan.tif"), str(data / "l8_pan.tif"), srcWin=pan_win)
    return [f"{d}/{n}_ms.tif,{d}/{n}_pan.tif,{n}" for n in ("west", "east")]


def tiny_config(halves: list[str], out: Path, **kw) -> TrainConfig:
    base = TrainConfig(
        data=DataConfig(scenes=halves, val_groups=["east"]),
        out=str(out),
        model=dict(TINY),
        patch=32,
        batch_size=4,
        epoch_samples=16,
        epochs=2,
        lr_step=1,
        lr_gamma=0.7,
        progress=False,
        threads=1,
    )
    return replace(base, **kw)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint_dict(path)["model"]


@pytest.fixture(scope="module")
def full_run(halves: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("full") / "run"
    train(tiny_config(halves, out))
    return out


def test_smoke_run_writes_checkpoints_log_and_curve(full_run: Path) -> None:
    names = {p.name for p in full_run.iterdir()}
    assert {"last.pt", "best.pt", "log.csv", "baselines.json"} <= names
    try:
        import matplotlib  # noqa: F401

        assert (full_run / "curve.png").stat().st_size > 1000
    except ImportError:
        assert "curve.png" not in names
    ckpt = load_checkpoint_dict(full_run / "last.pt")
    # The checkpoint contract of DESIGN.md "Interfaces".
    for key in ("config", "model", "band_names", "training", "validation", "epoch"):
        assert key in ckpt
    for key in ("optimizer", "scheduler", "rng"):
        assert key in ckpt
    for key in ("data", "protocol", "epochs", "samples", "seed"):
        assert key in ckpt["training"]
    assert ckpt["epoch"] == 2 and ckpt["training"]["samples"] == 32
    cfg = Ada3DConfig.from_dict(ckpt["config"])
    assert (cfg.channels, cfg.layers, cfg.bands, cfg.ratio) == (4, 1, 4, 2)
    Ada3D(cfg).load_state_dict(ckpt["model"])  # export.py rebuilds it this way
    rows = _rows(full_run / "log.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert [int(r["step"]) for r in rows] == [4, 8]
    assert all(np.isfinite(float(r["train_loss"])) for r in rows)


def test_training_improves_on_the_interpolation_start(full_run: Path) -> None:
    # The untrained network is bilinear interpolation, so the bilinear
    # reference is where training starts; a few steps must already beat it.
    ckpt = load_checkpoint_dict(full_run / "best.pt")
    val, bilinear = ckpt["validation"], ckpt["validation"]["baselines"]["bilinear"]
    assert val["ergas"] < bilinear["ergas"]
    assert val["sam"] < bilinear["sam"]
    assert set(val["scenes"]) == {"east_ms"}  # whole held-out scene only


def test_untrained_model_scores_like_bilinear(halves: list[str], tmp_path: Path) -> None:
    # Zero learning rate: the validation metrics must equal the bilinear
    # reference computed independently (torch interpolate), which checks the
    # de-normalisation and the geometry of the validation path.
    cfg = tiny_config(halves, tmp_path / "run", lr=0.0, epochs=1, epoch_samples=4)
    result = train(cfg)
    bilinear = result["baselines"]["bilinear"]
    for key in ("sam", "ergas", "q2n"):
        assert result["validation"][key] == pytest.approx(bilinear[key], rel=1e-4)


def test_resume_continues_exactly(halves: list[str], full_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = train(tiny_config(halves, out, max_steps=6))  # stops mid-epoch 2
    assert (first["step"], first["epoch"], first["stop_reason"]) == (6, 1, "max_steps")
    second = train(tiny_config(halves, out, resume=True))
    assert (second["step"], second["epoch"]) == (8, 2)
    a, b = _weights(full_run / "last.pt"), _weights(out / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = [{k: v for k, v in r.items() if k != "elapsed_s"} for r in _rows(out / "log.csv")]
    ref = [{k: v for k, v in r.items() if k != "elapsed_s"} for r in _rows(full_run / "log.csv")]
    assert strip == ref


def test_resume_refuses_a_changed_configuration(halves: list[str], full_run: Path) -> None:
    with pytest.raises(ValueError, match="patch"):
        train(tiny_config(halves, full_run, patch=16, resume=True))
    with pytest.raises(FileExistsError):
        train(tiny_config(halves, full_run))


def test_ergas_loss_term_matches_the_metric() -> None:
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(2, 4, 16, 16, generator=gen)
    pred = target + 0.1 * torch.randn(2, 4, 16, 16, generator=gen)
    mean = torch.tensor([[900.0, 1000, 1100, 2000]] * 2)
    std = torch.tensor([[50.0, 60, 70, 200]] * 2)
    batch = {"target": target, "ms_mean": mean, "ms_std": std}
    cfg = TrainConfig(ergas_weight=1.0)
    l1 = loss_terms(pred, batch, replace(cfg, ergas_weight=0.0))
    assert float(l1) == pytest.approx(float((pred - target).abs().mean()))
    ergas_term = float(loss_terms(pred, batch, cfg) - l1)
    dn = lambda x, i: (x[i] * std[i, :, None, None] + mean[i, :, None, None]).numpy()  # noqa: E731
    expected = np.mean([metrics.ergas(dn(target, i), dn(pred, i), 2) for i in range(2)])
    assert ergas_term == pytest.approx(expected, rel=1e-4)


def test_cli_resume_takes_the_saved_configuration(full_run: Path) -> None:
    cfg = config_from_args(["--out", str(full_run), "--resume", "--minutes", "5"])
    assert cfg.model == TINY and cfg.patch == 32 and cfg.minutes == 5
    assert cfg.data.val_groups == ["east"]
    fresh = config_from_args(["--fusebox", "fb", "--ratio", "4", "--bands", "2,1,0,3", *TINY_ARGS])
    assert fresh.data.fusebox == "fb" and fresh.data.ratio == 4
    assert fresh.data.bands == [2, 1, 0, 3] and fresh.model == TINY
    assert fresh.model_config(4).channels == 4 and fresh.model_config(4).ratio == 4


@pytest.mark.slow
def test_torchrun_two_cpu_processes(halves: list[str], full_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "model_export.train", "--out", str(out), "--val-groups", "east",
        "--patch", "32", "--batch-size", "2", "--epoch-samples", "16", "--epochs", "2",
        "--lr-step", "1", "--lr-gamma", "0.7", "--no-progress", *TINY_ARGS,
    ]  # fmt: skip
    for scene in halves:
        cmd += ["--scene", scene]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in proc.stdout
    # Only rank 0 writes: one set of files and one log row per epoch.
    assert {p.name for p in out.iterdir()} <= {
        "last.pt", "best.pt", "log.csv", "curve.png", "baselines.json"
    }  # fmt: skip
    assert [int(r["step"]) for r in _rows(out / "log.csv")] == [4, 8]
    # Two processes with 2 patches each see the same 4 patches per step as
    # one process with batch 4, and DDP averages their gradients.
    a, b = _weights(full_run / "last.pt"), _weights(out / "last.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)
