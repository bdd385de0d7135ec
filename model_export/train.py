"""Train Ada3D on real PAN/MS pairs: ``python -m model_export.train``.

The shipped models (Landsat 7 FuseBox scenes, bands B, G, R, NIR)::

    python -m model_export.train --fusebox ../shared/data/landsat7_fusebox \\
        --ratio 2 --channels 16 --spatial-channels 16 --layers 2 \\
        --spectral-hidden 4 --spatial-hidden 4 --res-channels 8 \\
        --out runs/r2_small --minutes 60 --resume

Your own sensor: give GeoTIFF pairs (``--scene ms.tif,pan.tif,group`` or a CSV
``--manifest`` with columns ``ms,pan,group``), ``--native-ratio`` (PAN/MS pixel
size ratio) and ``--val-groups`` naming the held-out group(s).

What happens (see model_export/data.py for the data side):

- Scenes become Wald pairs (``ada3d_qgis.core.degrade.wald_pair``) normalised
  with the plugin's scene statistics; training draws random patches, validation
  runs the network over whole held-out scenes and scores the de-normalised
  output with ``ada3d_qgis.core.metrics`` (SAM, ERGAS, Q2n), next to bilinear
  and cubic upsampling computed once for reference.
- An "epoch" is a fixed number of samples (``--epoch-samples``, 512), so that
  validation, the CSV log, the curve and checkpoints come often.
- ``OUT/last.pt`` after every epoch and whenever the run stops (``--minutes``
  budget, ``--max-steps``, SIGINT/SIGTERM), ``OUT/best.pt`` at the best
  validation ERGAS, ``OUT/log.csv``, ``OUT/curve.png``, ``OUT/baselines.json``.
- ``--resume`` continues from ``OUT/last.pt`` (model, optimizer, scheduler,
  RNG, counters, even mid-epoch) and gives the same weights as an
  uninterrupted run; without a checkpoint it starts afresh, so the same
  command can be repeated session after session.
- ``--band-agnostic --random-bands 3,6`` (issue 18) trains one network for
  any band count: each batch takes a random subset of the loaded bands; the
  validation scores all of them and, beside, the B, G, R, NIR subset (the
  shipped 4-band models' input) with its own bilinear and cubic references.
- ``torchrun --nproc_per_node N -m model_export.train ...`` trains with
  DistributedDataParallel (gloo on CPU, nccl on CUDA); ``--batch-size`` is
  per process and only rank 0 writes files.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as fn
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ada3d_qgis.core import metrics
from ada3d_qgis.core.degrade import upsample_cubic
from ada3d_qgis.core.normalise import METHOD, denormalise
from model_export.checkpoints import load_checkpoint_dict
from model_export.data import (
    DataConfig,
    PatchDataset,
    PreparedScene,
    SceneSet,
    build_scenes,
    parse_int_list,
    select_bands,
)
from model_export.model import Ada3D, Ada3DConfig
from model_export.plotting import plot_training

CSV_FIELDS = [
    "epoch",
    "step",
    "samples",
    "train_loss",
    "val_sam",
    "val_ergas",
    "val_q2n",
    "lr",
    "elapsed_s",
]
#: TrainConfig fields a resumed run may change: the budget and the machine.
SESSION_FIELDS = frozenset(
    {
        "out",
        "minutes",
        "epochs",
        "max_steps",
        "device",
        "threads",
        "workers",
        "progress",
        "resume",
        "val_every",
        # Recomputation changes memory and time, not the result.
        "grad_checkpoint",
    }
)
LAST, BEST = "last.pt", "best.pt"
#: Band subsets a band-agnostic run also validates on, by their band names.
VALIDATION_SUBSETS = (("B", "G", "R", "NIR"),)


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in every checkpoint)."""

    data: DataConfig = field(default_factory=DataConfig)
    out: str = "runs/ada3d"
    #: Ada3DConfig overrides (bands and ratio come from the data).
    model: dict[str, Any] = field(default_factory=dict)
    #: PAN patch size in pixels at the model's grid (MS patch = patch / ratio).
    patch: int = 64
    #: Per process.
    batch_size: int = 8
    lr: float = 5e-4
    #: StepLR: multiply the learning rate by lr_gamma every lr_step epochs.
    lr_step: int = 40
    lr_gamma: float = 0.5
    epoch_samples: int = 512
    #: Total epochs of the run (over all sessions).
    epochs: int = 10_000
    #: This session's time budget; stops cleanly with a checkpoint.
    minutes: float | None = None
    #: Total optimiser steps of the run (over all sessions).
    max_steps: int | None = None
    #: Weight of an ERGAS term (in digital numbers) added to the L1 loss.
    ergas_weight: float = 0.0
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    workers: int = 0
    #: Recompute adaptive layers in the backward pass (saves memory).
    grad_checkpoint: bool = False
    val_every: int = 1
    progress: bool = True
    resume: bool = False

    def model_config(self, bands: int) -> Ada3DConfig:
        return Ada3DConfig(**{**self.model, "bands": bands, "ratio": self.data.ratio})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        data = values.pop("data", {}) or {}
        data_known = {f.name for f in fields(DataConfig)}
        return cls(data=DataConfig(**{k: v for k, v in data.items() if k in data_known}), **values)


@dataclass
class DistContext:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


@dataclass
class RunState:
    """Counters that a checkpoint carries so that a resumed run continues exactly."""

    epoch: int = 0  # completed epochs
    batch: int = 0  # batches already done in epoch ``epoch`` (mid-epoch stop)
    step: int = 0
    samples: int = 0
    elapsed_s: float = 0.0
    best_ergas: float = math.inf
    loss_sum: float = 0.0  # of the current, unfinished epoch
    loss_count: int = 0
    validation: dict[str, Any] = field(default_factory=dict)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)


# --------------------------------------------------------------------------- setup


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def setup_distributed(device: torch.device) -> tuple[DistContext, torch.device]:
    """Join the torchrun process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    if world <= 1:
        return DistContext(), device
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size()), device


def make_deterministic(seed: int, device: torch.device) -> None:
    """Same seed, same weights: seeded RNGs and deterministic kernels (ops
    without a deterministic CUDA kernel warn rather than stop the run)."""
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        # Plain data, not an array: checkpoints are read with weights_only=True.
        "numpy": (kind, keys.tolist(), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------- loss, metrics


def loss_terms(pred: Tensor, batch: dict[str, Tensor], cfg: TrainConfig) -> Tensor:
    """The training loss. L1 runs in the normalised space, where every
    band weighs the same; the optional ERGAS term runs in digital numbers."""
    target = batch["target"]
    l1 = (pred - target).abs().mean()
    if not cfg.ergas_weight:
        return l1
    mean = batch["ms_mean"][:, :, None, None]
    std = batch["ms_std"][:, :, None, None]
    p, t = pred * std + mean, target * std + mean
    rmse2 = ((p - t) ** 2).mean(dim=(2, 3))
    mu2 = t.mean(dim=(2, 3)) ** 2
    ergas = 100.0 / cfg.data.ratio * torch.sqrt((rmse2 / mu2).mean(dim=1) + 1e-12)
    return l1 + cfg.ergas_weight * ergas.mean()


def scene_metrics(reference: np.ndarray, fused: np.ndarray, ratio: int) -> dict[str, float]:
    """SAM (degrees), ERGAS, Q2n (32-pixel blocks) and SCC of ``fused``
    against ``reference``, both (bands, rows, cols) in digital numbers."""
    m = metrics.reference_metrics(reference, fused, ratio)
    # The training log and the model metadata keep their lower-case names.
    names = (("sam", "SAM"), ("ergas", "ERGAS"), ("q2n", "Q2N"), ("scc", "SCC"))
    return {name: float(m[key]) for name, key in names}  # type: ignore[arg-type]


def _mean_metrics(per_scene: dict[str, dict[str, float]]) -> dict[str, float]:
    keys = next(iter(per_scene.values())).keys()
    return {k: float(np.mean([m[k] for m in per_scene.values()])) for k in keys}


def _gather(ctx: DistContext, part: dict[str, Any]) -> dict[str, Any]:
    """Union of every rank's dict."""
    if ctx.world == 1:
        return part
    parts: list[Any] = [None] * ctx.world
    dist.all_gather_object(parts, part)
    merged: dict[str, Any] = {}
    for p in parts:
        merged.update(p)
    return merged


@torch.no_grad()
def validate(
    model: nn.Module, scenes: list[PreparedScene], device: torch.device, ctx: DistContext
) -> dict[str, Any]:
    """Whole-scene validation, scenes shared out over the ranks."""
    model.eval()
    mine = {}
    for s in scenes[ctx.rank :: ctx.world]:
        ms = torch.from_numpy(s.ms_lr)[None].to(device)
        pan = torch.from_numpy(s.pan)[None].to(device)
        fused = denormalise(model(ms, pan)[0].cpu().numpy(), s.ms_stats)
        mine[s.name] = scene_metrics(s.target_raw, fused, s.ratio)
    per_scene = _gather(ctx, mine)
    return {**_mean_metrics(per_scene), "scenes": per_scene}


def baseline_metrics(scenes: list[PreparedScene], ctx: DistContext) -> dict[str, dict[str, float]]:
    """Bilinear and cubic upsampling of the reduced-resolution MS, scored like
    the network (the bars a trained model must clear)."""
    mine: dict[str, dict[str, dict[str, float]]] = {}
    for s in scenes[ctx.rank :: ctx.world]:
        ms_lr = denormalise(s.ms_lr, s.ms_stats)
        bilinear = fn.interpolate(
            torch.from_numpy(ms_lr)[None],
            scale_factor=s.ratio,
            mode="bilinear",
            align_corners=False,  # block-centre geometry, as the model's upsampling
        )[0].numpy()
        mine[s.name] = {
            "bilinear": scene_metrics(s.target_raw, bilinear, s.ratio),
            "cubic": scene_metrics(s.target_raw, upsample_cubic(ms_lr, s.ratio), s.ratio),
        }
    per_scene = _gather(ctx, mine)
    return {
        method: _mean_metrics({name: m[method] for name, m in per_scene.items()})
        for method in ("bilinear", "cubic")
    }


# --------------------------------------------------------------------------- files


def _atomic_save(obj: Any, path: Path) -> None:
    """A kill during the write must not destroy the previous checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def make_checkpoint(
    model: nn.Module,
    model_cfg: Ada3DConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: RunState,
    cfg: TrainConfig,
    scenes: SceneSet,
) -> dict[str, Any]:
    """The checkpoint dict of DESIGN.md "Interfaces" plus the resume state."""
    d = cfg.data
    training = {
        "data": scenes.description,
        "protocol": {
            "name": "wald",
            "native_ratio": d.native_ratio,
            "ratio": d.ratio,
            "sensor": d.sensor,
            "ms_gain": scenes.description["ms_gain"],
            "pan_gain": scenes.description["pan_gain"],
            "decimation": "block-centre",
            "normalisation": METHOD,
        },
        "loss": "l1" + (f" + {cfg.ergas_weight} ergas" if cfg.ergas_weight else ""),
        "optimizer": f"adam lr {cfg.lr}, x{cfg.lr_gamma} every {cfg.lr_step} epochs",
        "patch": cfg.patch,
        "batch_size": cfg.batch_size,
        "epoch_samples": cfg.epoch_samples,
        "epochs": state.epoch,
        "steps": state.step,
        "samples": state.samples,
        "elapsed_s": round(state.elapsed_s, 1),
        "seed": cfg.seed,
        "train_config": cfg.to_dict(),
    }
    return {
        "config": model_cfg.to_dict(),
        "model": model.state_dict(),
        "band_names": scenes.band_names,
        "training": training,
        "validation": {**state.validation, "baselines": state.baselines},
        "epoch": state.epoch,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
        "state": asdict(state),
    }


def _append_csv(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def _check_resume_config(saved: TrainConfig, cfg: TrainConfig) -> None:
    a, b = saved.to_dict(), cfg.to_dict()
    diff = sorted(k for k in a if k not in SESSION_FIELDS and a[k] != b[k])
    if diff:
        raise ValueError(
            f"cannot resume with a different {', '.join(diff)} than the checkpoint's; "
            "use a new --out directory"
        )


# --------------------------------------------------------------------------- training


class _StopFlag:
    """Set by SIGINT/SIGTERM so that the run stops at the next step with a checkpoint."""

    def __init__(self) -> None:
        self.set = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.set:  # a second signal: the user does not want to wait
            raise KeyboardInterrupt
        self.set = True

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) training; returns the final counters, validation
    metrics, the stop reason and this session's training throughput."""
    session_start = time.monotonic()
    device = resolve_device(cfg.device)
    # Before any CUDA work: cuBLAS reads its workspace setting at start-up.
    make_deterministic(cfg.seed, device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ctx, device = setup_distributed(device)
    try:
        with _StopFlag() as stop_flag:
            return Trainer(cfg, ctx, device, session_start, stop_flag).run()
    finally:
        if ctx.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


class Trainer:
    """One training session: set up (or restore) everything, then run epochs
    until the run is complete or this session's budget is spent."""

    def __init__(
        self,
        cfg: TrainConfig,
        ctx: DistContext,
        device: torch.device,
        session_start: float,
        stop_flag: _StopFlag,
    ) -> None:
        self.cfg, self.ctx, self.device = cfg, ctx, device
        self.session_start, self.stop_flag = session_start, stop_flag
        self.out = Path(cfg.out)
        ckpt = self._load_checkpoint()
        if ctx.main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.scenes = build_scenes(cfg.data, cfg.patch)
        self.model_cfg = cfg.model_config(len(self.scenes.band_names))
        if cfg.data.random_bands and not self.model_cfg.band_agnostic:
            raise ValueError("--random-bands needs a band-agnostic model (--band-agnostic)")
        self.subsets = validation_subsets(self.scenes) if cfg.data.random_bands else {}
        torch.manual_seed(cfg.seed)
        self.model = Ada3D(self.model_cfg, grad_checkpoint=cfg.grad_checkpoint).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, cfg.lr_step, cfg.lr_gamma)
        self.state = RunState()
        if ckpt is not None:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            set_rng_state(ckpt["rng"])
            self.state = RunState(**ckpt["state"])
            self.say(
                f"resumed from {self.out / LAST}: epoch {self.state.epoch}, step {self.state.step}"
            )
        self.net: nn.Module = self.model
        if ctx.world > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.dataset = PatchDataset(
            self.scenes.train,
            cfg.patch,
            cfg.epoch_samples,
            cfg.seed,
            random_bands=cfg.data.random_bands,
            group=cfg.batch_size * ctx.world,
            shuffled_share=cfg.data.shuffled_share,
        )
        self.steps_per_epoch = cfg.epoch_samples // (cfg.batch_size * ctx.world)
        if self.steps_per_epoch < 1:
            raise ValueError("--epoch-samples is smaller than one batch on every process")
        self.elapsed_before = self.state.elapsed_s
        self.session_samples, self.train_time = 0, 0.0

    def say(self, msg: str) -> None:
        if self.ctx.main:
            tqdm.write(msg)

    def _load_checkpoint(self) -> dict[str, Any] | None:
        path = self.out / LAST
        if not path.exists():
            return None
        if not self.cfg.resume:
            raise FileExistsError(f"{path} exists: pass --resume or another --out")
        ckpt = load_checkpoint_dict(path)
        _check_resume_config(TrainConfig.from_dict(ckpt["training"]["train_config"]), self.cfg)
        return ckpt

    def run(self) -> dict[str, Any]:
        cfg, state = self.cfg, self.state
        n_params = sum(p.numel() for p in self.model.parameters())
        self.say(
            f"{len(self.scenes.train)} training / {len(self.scenes.val)} validation scenes, "
            f"bands {','.join(self.scenes.band_names)}, ratio {cfg.data.ratio}, "
            f"{n_params} parameters, {self.ctx.world} process(es) on {self.device}"
        )
        if self.scenes.val and not state.baselines:
            state.baselines = baseline_metrics(self.scenes.val, self.ctx)
            if self.ctx.main:
                (self.out / "baselines.json").write_text(json.dumps(state.baselines, indent=2))
        for name, m in state.baselines.items():
            self.say(f"reference {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()))
        # Cheap (no network): recomputed every session rather than stored.
        self.subset_baselines = {
            label: baseline_metrics(scenes, self.ctx) for label, scenes in self.subsets.items()
        }
        for label, refs in self.subset_baselines.items():
            for name, m in refs.items():
                self.say(
                    f"reference {name} [{label}]: "
                    + ", ".join(f"{k} {v:.4f}" for k, v in m.items())
                )
        reason = "epochs"
        while state.epoch < cfg.epochs:
            if cfg.max_steps is not None and state.step >= cfg.max_steps:
                reason = "max_steps"
                break
            stop = self._train_epoch()
            if state.batch >= self.steps_per_epoch:
                self._finish_epoch()
            else:
                self._save(LAST)
            if stop:
                reason = stop
                break
        rate = self.session_samples / self.train_time if self.train_time else 0.0
        self.say(
            f"stopped ({reason}) at epoch {state.epoch}, step {state.step}: this session "
            f"trained {self.session_samples} samples in {self.train_time:.1f} s "
            f"({rate:.3f} samples/s)"
        )
        return {
            "epoch": state.epoch,
            "step": state.step,
            "samples": state.samples,
            "validation": state.validation,
            "baselines": state.baselines,
            "stop_reason": reason,
            "samples_per_s": rate,
        }

    def _loader(self) -> DataLoader:
        """This rank's remaining batches of the current epoch."""
        cfg, state = self.cfg, self.state
        self.dataset.set_epoch(state.epoch)
        sampler = DistributedSampler(
            self.dataset,
            num_replicas=self.ctx.world,
            rank=self.ctx.rank,
            shuffle=False,  # the samples themselves are random
            drop_last=True,
        )
        indices = list(sampler)[: self.steps_per_epoch * cfg.batch_size]
        indices = indices[state.batch * cfg.batch_size :]
        return DataLoader(
            self.dataset, batch_size=cfg.batch_size, sampler=indices, num_workers=cfg.workers
        )

    def _train_epoch(self) -> str | None:
        """Train to the end of the epoch or until a stop; returns the stop reason."""
        cfg, state, ctx = self.cfg, self.state, self.ctx
        bar = tqdm(
            total=self.steps_per_epoch,
            initial=state.batch,
            desc=f"epoch {state.epoch + 1}",
            disable=not (cfg.progress and ctx.main),
            leave=False,
            dynamic_ncols=True,
        )
        self.net.train()
        t0 = time.monotonic()
        stop = None
        for batch in self._loader():
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            loss = loss_terms(self.net(batch["ms"], batch["pan"]), batch, cfg)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            state.step += 1
            state.batch += 1
            state.samples += cfg.batch_size * ctx.world
            self.session_samples += cfg.batch_size * ctx.world
            loss_mean, stop = self._sync(float(loss.detach()))
            state.loss_sum += loss_mean
            state.loss_count += 1
            bar.update(1)
            rate = self.session_samples / max(self.train_time + time.monotonic() - t0, 1e-9)
            bar.set_postfix(
                loss=f"{state.loss_sum / state.loss_count:.4f}", samples_s=f"{rate:.2f}"
            )
            if stop:
                break
        bar.close()
        self.train_time += time.monotonic() - t0
        state.elapsed_s = self.elapsed_before + time.monotonic() - self.session_start
        return stop

    def _sync(self, loss: float) -> tuple[float, str | None]:
        """Mean loss over the ranks and the stop decision, in one collective,
        so that every rank stops at the same step."""
        cfg, state = self.cfg, self.state
        budget = cfg.minutes is not None and (
            time.monotonic() - self.session_start > cfg.minutes * 60
        )
        steps = cfg.max_steps is not None and state.step >= cfg.max_steps
        flags = torch.tensor(
            [loss, float(budget), float(steps), float(self.stop_flag.set)], dtype=torch.float64
        )
        if self.ctx.world > 1:
            dist.all_reduce(flags)
        reason = next(
            (
                name
                for name, f in zip(("minutes", "max_steps", "signal"), flags[1:], strict=True)
                if f > 0
            ),
            None,
        )
        return float(flags[0]) / self.ctx.world, reason

    def _finish_epoch(self) -> None:
        """Validate, log, step the schedule and write checkpoints after a full epoch."""
        cfg, state, scenes = self.cfg, self.state, self.scenes
        lr = self.optimizer.param_groups[0]["lr"]
        train_loss = state.loss_sum / max(state.loss_count, 1)
        state.epoch += 1
        state.batch, state.loss_sum, state.loss_count = 0, 0.0, 0
        self.scheduler.step()
        val: dict[str, Any] = {}
        if scenes.val and (state.epoch % cfg.val_every == 0 or state.epoch == cfg.epochs):
            val = validate(self.model, scenes.val, self.device, self.ctx)
            subsets = {
                label: {
                    **validate(self.model, sub, self.device, self.ctx),
                    "baselines": self.subset_baselines.get(label, {}),
                }
                for label, sub in self.subsets.items()
            }
            if subsets:
                val["subsets"] = subsets
            state.validation = {**val, "epoch": state.epoch}
        state.elapsed_s = self.elapsed_before + time.monotonic() - self.session_start
        is_best = bool(val) and val["ergas"] < state.best_ergas
        if is_best:
            state.best_ergas = val["ergas"]
        if not self.ctx.main:
            return
        _append_csv(self.out / "log.csv", _csv_row(state, train_loss, val, lr))
        msg = f"epoch {state.epoch}: step {state.step}, train loss {train_loss:.5f}"
        if val:
            msg += f", val SAM {val['sam']:.4f} ERGAS {val['ergas']:.4f} Q2n {val['q2n']:.4f}"
            for label, sub in val.get("subsets", {}).items():
                msg += (
                    f"; [{label}] SAM {sub['sam']:.4f} ERGAS {sub['ergas']:.4f} "
                    f"Q2n {sub['q2n']:.4f}"
                )
        self.say(msg)
        self._save(LAST, BEST if is_best or not scenes.val else None)
        if not plot_training(self.out / "log.csv", self.out / "curve.png", state.baselines):
            if state.epoch == 1:
                self.say("matplotlib is not importable: no curve.png (log.csv has the numbers)")

    def _save(self, *names: str | None) -> None:
        if not self.ctx.main:
            return
        ckpt = make_checkpoint(
            self.model,
            self.model_cfg,
            self.optimizer,
            self.scheduler,
            self.state,
            self.cfg,
            self.scenes,
        )
        for name in names:
            if name:
                _atomic_save(ckpt, self.out / name)


def validation_subsets(scenes: SceneSet) -> dict[str, list[PreparedScene]]:
    """The validation scenes restricted to each of :data:`VALIDATION_SUBSETS`
    whose bands the data hold, by label ("B,G,R,NIR")."""
    out = {}
    for names in VALIDATION_SUBSETS:
        if set(names) <= set(scenes.band_names) and len(names) < len(scenes.band_names):
            idx = [scenes.band_names.index(n) for n in names]
            out[",".join(names)] = [select_bands(s, idx) for s in scenes.val]
    return out


def _csv_row(state: RunState, train_loss: float, val: dict[str, Any], lr: float) -> dict[str, Any]:
    def fmt(key: str) -> str:
        return f"{val[key]:.5f}" if val else ""

    return {
        "epoch": state.epoch,
        "step": state.step,
        "samples": state.samples,
        "train_loss": f"{train_loss:.6f}",
        "val_sam": fmt("sam"),
        "val_ergas": fmt("ergas"),
        "val_q2n": fmt("q2n"),
        "lr": f"{lr:.3g}",
        "elapsed_s": f"{state.elapsed_s:.1f}",
    }


# --------------------------------------------------------------------------- CLI


def _split_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _float_list(text: str) -> list[float]:
    return [float(v) for v in _split_list(text)]


#: Ada3DConfig fields that the data decide (not command-line options).
_DATA_MODEL_FIELDS = ("bands", "ratio")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m model_export.train",
        description="Train Ada3D pansharpening on PAN/MS pairs (Wald protocol).",
        argument_default=argparse.SUPPRESS,
    )
    d = p.add_argument_group("data")
    d.add_argument("--fusebox", metavar="DIR", help="folder of the FuseBox Landsat 7 .mat files")
    d.add_argument(
        "--scene",
        dest="scenes",
        action="append",
        metavar="MS,PAN[,GROUP]",
        help="a GeoTIFF pair (repeatable); GROUP defaults to the MS file name",
    )
    d.add_argument("--manifest", metavar="CSV", help="CSV with columns ms,pan[,group][,name]")
    d.add_argument(
        "--bands",
        type=parse_int_list,
        help="0-based MS band indices (default: 2,1,0,3 = B,G,R,NIR for FuseBox, "
        "every band for GeoTIFF)",
    )
    d.add_argument("--band-names", type=_split_list, help="names written into the model")
    d.add_argument("--native-ratio", type=int, help="PAN/MS pixel-size ratio of the sensor (2)")
    d.add_argument("--ratio", type=int, help="ratio the model is trained for (2)")
    d.add_argument(
        "--val-groups", type=_split_list, help="scene groups held out for validation (P091R083)"
    )
    d.add_argument("--sensor", help="MTF gains from ada3d_qgis.core.degrade.SENSOR_GAINS")
    d.add_argument("--ms-gain", type=_float_list, help="MS MTF gain(s) at Nyquist")
    d.add_argument("--pan-gain", type=float, help="PAN MTF gain at Nyquist")
    d.add_argument("--resampling", help="GDAL resampling for offset MS grids (cubic)")
    d.add_argument(
        "--random-bands",
        type=parse_int_list,
        metavar="MIN,MAX",
        help="each batch takes a random subset of MIN to MAX of the bands "
        "(band-agnostic models; issue 18)",
    )
    d.add_argument(
        "--shuffled-share",
        type=float,
        help="share of the random subsets given in shuffled band order (0.5)",
    )
    d.add_argument(
        "--val-max-size",
        type=int,
        help="validation scenes are cut to their central N x N MS pixels (1024)",
    )
    m = p.add_argument_group("model (Ada3DConfig overrides; default: paper configuration)")
    m.add_argument(
        "--band-agnostic",
        dest="model.band_agnostic",
        action="store_true",
        help="layers shared over the bands: one network for any band count",
    )
    for f in fields(Ada3DConfig):
        if f.name not in _DATA_MODEL_FIELDS and not isinstance(f.default, bool):
            m.add_argument(
                f"--{f.name.replace('_', '-')}",
                dest=f"model.{f.name}",
                type=type(f.default),
                metavar="N",
                help=f"Ada3DConfig.{f.name} ({f.default})",
            )
    t = p.add_argument_group("training")
    t.add_argument("--out", help="output folder (runs/ada3d)")
    t.add_argument("--patch", type=int, help="PAN patch size (64)")
    t.add_argument("--batch-size", type=int, help="patches per step and process (8)")
    t.add_argument("--lr", type=float, help="Adam learning rate (5e-4)")
    t.add_argument("--lr-step", type=int, help="epochs between learning-rate decays (40)")
    t.add_argument("--lr-gamma", type=float, help="learning-rate decay factor (0.5)")
    t.add_argument("--epoch-samples", type=int, help="samples per epoch (512)")
    t.add_argument("--epochs", type=int, help="total epochs of the run")
    t.add_argument("--minutes", type=float, help="stop this session after N minutes")
    t.add_argument("--max-steps", type=int, help="stop at this total optimiser step")
    t.add_argument("--ergas-weight", type=float, help="weight of an ERGAS loss term (0)")
    t.add_argument("--seed", type=int, help="random seed (0)")
    t.add_argument("--device", help="auto, cpu, cuda or cuda:N (auto)")
    t.add_argument("--threads", type=int, help="torch CPU threads (torch's default)")
    t.add_argument("--workers", type=int, help="DataLoader worker processes (0)")
    t.add_argument("--grad-checkpoint", action="store_true", help="recompute to save memory")
    t.add_argument("--val-every", type=int, help="validate every N epochs (1)")
    t.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/last.pt if it exists (else start afresh)",
    )
    return p


def config_from_args(argv: list[str] | None = None) -> TrainConfig:
    """TrainConfig from the command line. With --resume and a checkpoint, the
    checkpoint's configuration is the base and only the options given
    override it (so the same command can be repeated every session)."""
    given = vars(build_parser().parse_args(argv))
    data_names = {f.name for f in fields(DataConfig)}
    base = TrainConfig()
    out = Path(given.get("out", base.out))
    if given.get("resume") and (out / LAST).exists():
        ckpt = load_checkpoint_dict(out / LAST)
        base = TrainConfig.from_dict(ckpt["training"]["train_config"])
    values = base.to_dict()
    for key, value in given.items():
        if key.startswith("model."):
            values["model"][key.removeprefix("model.")] = value
        elif key in data_names:
            values["data"][key] = value
        else:
            values[key] = value
    return TrainConfig.from_dict(values)


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = config_from_args(argv)
        train(cfg)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
