"""Training data for Ada3D: scene loading, Wald pairs, normalisation, patches.

Two routes lead to the same in-memory :class:`Scene` (MS on its native grid,
PAN on the exact ``native_ratio`` times finer grid, both sharing their
top-left corner):

- **GeoTIFF pairs** (the route for a user's own sensor): ``ms.tif,pan.tif``
  plus a scene group, on the command line or in a CSV manifest. Real products
  rarely have an MS grid that is an exact coarsening of the PAN grid (the
  Landsat 8 sample is half a PAN pixel off), so the MS is warped in memory
  with GDAL onto the grid whose cells are ``native_ratio x native_ratio`` PAN
  blocks, anchored at the PAN origin (block-centre geometry, DESIGN.md
  "Conventions"). The PAN is never resampled.
- **FuseBox Landsat 7 .mat files** (the shipped models): ``N_ms.mat`` and
  ``N_pan.mat``, with the one-PAN-pixel shift of that collection undone
  (``ms[1:, 1:]`` pairs with ``pan[1:-1, 1:-1]``, see ``../shared/data/README.md``).

Each scene then goes through Wald's protocol (:func:`ada3d_qgis.core.degrade.wald_pair`)
and the plugin's scene-level normalisation (:mod:`ada3d_qgis.core.normalise`):
the statistics are those of the *degraded* input MS and PAN, i.e. of what the
model sees, and the target is normalised with the input MS statistics, so that
training matches inference, which de-normalises the output with the MS stats.

Training draws random patches (flips and rot90, seeded per sample so that a
run is reproducible and resumable mid-epoch); validation always uses whole
scenes of held-out groups, never patches of training scenes.

Band-agnostic training (issue 18, ``DataConfig.random_bands``) gives every
batch a random subset of the loaded bands, in wavelength order or shuffled
(``shuffled_share``); the draw is a pure function of (seed, epoch, batch), so
resumed runs draw the same.

Band indices are 0-based everywhere (``--bands 2,1,0,3`` picks B, G, R, NIR
from the FuseBox R, G, B, NIR, SWIR1, SWIR2 order; for a GeoTIFF, index 0 is
GDAL band 1).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ada3d_qgis.core import normalise as norm
from ada3d_qgis.core.degrade import sensor_gains, wald_pair

#: Band order of the FuseBox ``cropped_im`` arrays (README of the shared data).
FUSEBOX_BAND_NAMES = ("R", "G", "B", "NIR", "SWIR1", "SWIR2")
#: B, G, R, NIR: the band order of the shipped models.
FUSEBOX_DEFAULT_BANDS = (2, 1, 0, 3)
#: First FuseBox scene number listed in ``locations_7_to_39.txt``.
FUSEBOX_FIRST_SCENE = 7
FUSEBOX_LOCATIONS = "locations_7_to_39.txt"
#: All six FuseBox bands in wavelength order: B, G, R, NIR, SWIR1, SWIR2.
FUSEBOX_ALL_BANDS = (2, 1, 0, 3, 4, 5)
#: The validation group of DESIGN.md "Interfaces" (FuseBox scenes 13-18).
DEFAULT_VAL_GROUPS = ("P091R083",)


@dataclass(frozen=True)
class SceneSpec:
    """Where one PAN/MS pair lives. ``kind`` is ``"tif"`` or ``"mat"``."""

    kind: str
    ms: str
    pan: str
    group: str
    name: str


@dataclass
class DataConfig:
    """Data sources and the degradation protocol (JSON-able, stored in checkpoints)."""

    #: Folder of the FuseBox .mat files (with ``locations_7_to_39.txt``).
    fusebox: str | None = None
    #: GeoTIFF pairs as ``"ms.tif,pan.tif[,group]"``.
    scenes: list[str] = field(default_factory=list)
    #: CSV with the columns ``ms,pan`` and optionally ``group,name``.
    manifest: str | None = None
    #: 0-based band indices into the MS files; None: B,G,R,NIR for FuseBox,
    #: every band for GeoTIFF.
    bands: list[int] | None = None
    band_names: list[str] | None = None
    #: PAN/MS pixel-size ratio of the sensor (2 for Landsat).
    native_ratio: int = 2
    #: Ratio the model is trained for (a multiple of native_ratio).
    ratio: int = 2
    val_groups: list[str] = field(default_factory=lambda: list(DEFAULT_VAL_GROUPS))
    #: Sensor name of ada3d_qgis.core.degrade.SENSOR_GAINS (MTF gains at Nyquist).
    sensor: str = "generic"
    #: Explicit gains override the sensor table.
    ms_gain: list[float] | None = None
    pan_gain: float | None = None
    #: GDAL resampling used to bring an offset MS grid onto the PAN-aligned grid.
    resampling: str = "cubic"
    #: Validation scenes larger than this many MS pixels per side are cut to
    #: their centre, so that one whole-scene forward pass fits in memory.
    val_max_size: int = 1024
    #: ``[min, max]``: each batch takes a random subset of that many of the
    #: loaded bands (band-agnostic models only); None: every band, in order.
    random_bands: list[int] | None = None
    #: Share of the random subsets whose band order is shuffled; the others
    #: keep wavelength order, the order most inputs come in.
    shuffled_share: float = 0.5


@dataclass
class Scene:
    """A PAN/MS pair on aligned grids: ``pan`` is ``native_ratio`` times finer."""

    name: str
    group: str
    ms: np.ndarray  # (bands, rows, cols) float32
    pan: np.ndarray  # (rows * native_ratio, cols * native_ratio) float32
    #: (rows, cols) boolean on the MS grid, None when every pixel is valid.
    valid: np.ndarray | None = None


@dataclass
class PreparedScene:
    """A scene after Wald degradation and normalisation (what the model sees).

    ``ms_lr`` (bands, h, w), ``pan`` (1, h r, w r) and ``target``
    (bands, h r, w r) are normalised float32; ``target_raw`` keeps the
    original digital numbers for validation metrics.
    """

    name: str
    group: str
    ratio: int
    ms_lr: np.ndarray
    pan: np.ndarray
    target: np.ndarray
    ms_stats: norm.BandStats
    pan_stats: norm.BandStats
    target_raw: np.ndarray | None = None
    #: Top-left low-resolution positions (N, 2) of patches that avoid nodata;
    #: None when every position is usable.
    positions: np.ndarray | None = None


# --------------------------------------------------------------------------- sources


def fusebox_groups(folder: str | Path) -> dict[int, str]:
    """Scene number -> path/row group, read from ``locations_7_to_39.txt``
    (line i describes scene ``7 + i``)."""
    path = Path(folder) / FUSEBOX_LOCATIONS
    groups = {}
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        groups[FUSEBOX_FIRST_SCENE + i] = line.split(",")[0].strip()
    return groups


def fusebox_specs(folder: str | Path) -> list[SceneSpec]:
    """Every FuseBox scene of ``folder`` with its group."""
    folder = Path(folder)
    specs = []
    for number, group in sorted(fusebox_groups(folder).items()):
        ms, pan = folder / f"{number}_ms.mat", folder / f"{number}_pan.mat"
        if not (ms.exists() and pan.exists()):
            raise FileNotFoundError(f"FuseBox scene {number} is missing in {folder}")
        specs.append(SceneSpec("mat", str(ms), str(pan), group, f"fusebox{number}"))
    return specs


def parse_scene_arg(text: str) -> SceneSpec:
    """``"ms.tif,pan.tif[,group]"`` -> SceneSpec (group defaults to the MS file stem,
    so that every scene is its own group)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"a scene is 'ms.tif,pan.tif[,group]', got {text!r}")
    name = Path(parts[0]).stem
    return SceneSpec("tif", parts[0], parts[1], parts[2] if len(parts) == 3 else name, name)


def read_manifest(path: str | Path) -> list[SceneSpec]:
    """Scenes of a CSV manifest with a header ``ms,pan[,group][,name]``;
    relative paths are relative to the manifest's folder."""
    path = Path(path)
    specs = []
    with path.open(newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            if not row.get("ms") or not row.get("pan"):
                raise ValueError(f"{path}: row {i + 2} needs 'ms' and 'pan' columns")
            ms, pan = (str((path.parent / row[k]).resolve()) for k in ("ms", "pan"))
            name = row.get("name") or Path(ms).stem
            specs.append(SceneSpec("tif", ms, pan, row.get("group") or name, name))
    return specs


def collect_specs(cfg: DataConfig) -> list[SceneSpec]:
    specs: list[SceneSpec] = []
    if cfg.fusebox:
        specs += fusebox_specs(cfg.fusebox)
    specs += [parse_scene_arg(s) for s in cfg.scenes]
    if cfg.manifest:
        specs += read_manifest(cfg.manifest)
    if not specs:
        raise ValueError("no training data: give --fusebox, --scene or --manifest")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError("scene names must be unique (give a 'name' column in the manifest)")
    return specs


def split_specs(
    specs: Sequence[SceneSpec], val_groups: Sequence[str]
) -> tuple[list[SceneSpec], list[SceneSpec]]:
    """Whole groups go to validation, so that no validation scene shares
    ground with a training scene."""
    val = [s for s in specs if s.group in set(val_groups)]
    train = [s for s in specs if s.group not in set(val_groups)]
    return train, val


# --------------------------------------------------------------------------- loading


def load_fusebox_pair(
    ms_path: str | Path, pan_path: str | Path, bands: Sequence[int] = FUSEBOX_DEFAULT_BANDS
) -> tuple[np.ndarray, np.ndarray]:
    """FuseBox .mat pair with the documented one-PAN-pixel fix applied.

    Returns ``ms`` (len(bands), 399, 399) and ``pan`` (798, 798), float32.
    """
    from scipy.io import loadmat  # only the .mat route needs scipy

    ms = loadmat(str(ms_path))["cropped_im"]
    pan = loadmat(str(pan_path))["cropped_gray"]
    # The PAN crop sits one PAN pixel off: MS row i covers PAN rows 2i-1, 2i.
    ms = ms[1:, 1:, list(bands)]
    pan = pan[1:-1, 1:-1]
    return np.ascontiguousarray(ms.transpose(2, 0, 1), np.float32), pan.astype(np.float32)


def load_geotiff_pair(
    ms_path: str | Path,
    pan_path: str | Path,
    native_ratio: int,
    bands: Sequence[int] | None = None,
    resampling: str = "cubic",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict]:
    """A GeoTIFF PAN/MS pair aligned exactly as the plugin aligns it
    (:func:`ada3d_qgis.engine.raster_io.align_inputs`), so that training sees
    what inference serves: the MS on the grid of ``native_ratio`` x PAN blocks
    over every PAN pixel whose centre the MS covers, nodata band by band.

    Returns ``ms`` (bands, rows, cols), ``pan`` (rows * r, cols * r) (float32,
    r = ``native_ratio``; whole blocks inside the PAN only), a validity mask on
    the MS grid (None when every pixel holds data) and ``info`` (geotransform
    of the aligned MS, band descriptions, whether the MS was resampled).
    """
    from ada3d_qgis.engine import Ada3DError
    from ada3d_qgis.engine import raster_io as rio

    if resampling != "cubic":
        raise ValueError(
            f"resampling {resampling!r}: training aligns the MS as the plugin does (cubic)"
        )
    ms_bands = None if bands is None else [b + 1 for b in bands]
    r = native_ratio
    try:
        with rio.quiet_gdal():
            pair = rio.open_pair(str(pan_path), str(ms_path), 1, ms_bands)
            inputs = rio.align_pair(pair, r)
            try:
                out = inputs.output
                cols, rows = out.width // r, out.height // r
                ms = inputs.read_ms(0, 0, cols, rows)
                pan = inputs.read_pan(0, 0, cols * r, rows * r)
            finally:
                inputs.close()
    except Ada3DError as exc:
        raise ValueError(str(exc)) from exc
    valid = np.isfinite(ms).all(axis=0) & np.isfinite(pan).reshape(rows, r, cols, r).all(
        axis=(1, 3)
    )
    info = {
        "geotransform": out.window(0, 0, cols, rows, step=r).geotransform,
        "descriptions": list(pair.descriptions),
        "warped": not inputs.resampling.startswith("the multispectral grid already"),
    }
    return ms, pan, None if valid.all() else valid, info


def load_scene(spec: SceneSpec, cfg: DataConfig) -> tuple[Scene, list[str]]:
    """Load one scene and the names of its selected bands."""
    if spec.kind == "mat":
        bands = list(FUSEBOX_DEFAULT_BANDS) if cfg.bands is None else cfg.bands
        ms, pan = load_fusebox_pair(spec.ms, spec.pan, bands)
        if cfg.native_ratio != 2:
            raise ValueError("FuseBox scenes have a native ratio of 2")
        names = [FUSEBOX_BAND_NAMES[b] for b in bands]
        return Scene(spec.name, spec.group, ms, pan), names
    ms, pan, valid, info = load_geotiff_pair(
        spec.ms, spec.pan, cfg.native_ratio, cfg.bands, cfg.resampling
    )
    names = [d or f"band{i + 1}" for i, d in enumerate(info["descriptions"])]
    return Scene(spec.name, spec.group, ms, pan, valid), names


# --------------------------------------------------------------------------- Wald + normalise


def gains(cfg: DataConfig, bands: int) -> tuple[list[float], float]:
    """MS gains (one per band) and PAN gain of the protocol."""
    ms_g, pan_g = sensor_gains(cfg.sensor, bands)
    if cfg.ms_gain is not None:
        ms_g = list(cfg.ms_gain) * (bands if len(cfg.ms_gain) == 1 else 1)
    if len(ms_g) != bands:
        raise ValueError(f"{len(ms_g)} MS gains for {bands} bands")
    return ms_g, cfg.pan_gain if cfg.pan_gain is not None else pan_g


def _fill_invalid(img: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """Replace nodata by the band mean so that the MTF filters do not smear a
    fill value of 0 into real pixels (those patches are excluded anyway)."""
    out = img.copy()
    for b in range(out.shape[0]):
        out[b][invalid] = out[b][~invalid].mean()
    return out


def _patch_positions(valid: np.ndarray, ratio: int, patch: int, margin: int) -> np.ndarray:
    """Low-resolution top-left corners (i, j) whose target window, widened by
    ``margin`` target pixels, holds no invalid pixel (summed-area table)."""
    bad = (~valid).astype(np.int64)
    sat = np.pad(bad.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, w = valid.shape
    i = np.arange(0, h - patch + 1, ratio)
    j = np.arange(0, w - patch + 1, ratio)
    ii, jj = np.meshgrid(i, j, indexing="ij")
    y0, x0 = np.maximum(ii - margin, 0), np.maximum(jj - margin, 0)
    y1, x1 = np.minimum(ii + patch + margin, h), np.minimum(jj + patch + margin, w)
    count = sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]
    ok = count == 0
    return np.stack([ii[ok] // ratio, jj[ok] // ratio], axis=1)


def prepare_scene(
    scene: Scene, cfg: DataConfig, patch: int | None = None, keep_raw: bool = False
) -> PreparedScene:
    """Wald pair + scene normalisation. ``patch`` (PAN pixels) is needed only
    for scenes with nodata, to list the patch positions that avoid it."""
    ms, pan = scene.ms, scene.pan
    ms_g, pan_g = gains(cfg, ms.shape[0])
    invalid = None if scene.valid is None else ~scene.valid
    if invalid is not None:
        ms = _fill_invalid(ms, invalid)
        pan_invalid = np.repeat(np.repeat(invalid, cfg.native_ratio, 0), cfg.native_ratio, 1)
        pan = _fill_invalid(pan[None], pan_invalid)[0]
    ms_lr, pan_lr, target = wald_pair(ms, pan, cfg.native_ratio, cfg.ratio, ms_g, pan_g)
    h, w = target.shape[1:]
    r = cfg.ratio
    positions = None
    lr_valid = hr_valid = None
    if invalid is not None:
        # Filters reach about 1.5 r input pixels; 2 r is a safe margin.
        hr_valid = scene.valid[:h, :w]
        lr_valid = hr_valid.reshape(h // r, r, w // r, r).all(axis=(1, 3))
        if patch is None:
            raise ValueError(f"scene {scene.name} has nodata: its patch size must be known")
        positions = _patch_positions(hr_valid, r, patch, 2 * r)
        if len(positions) == 0:
            raise ValueError(f"scene {scene.name} holds no {patch}-pixel patch free of nodata")
    ms_stats = norm.scene_stats(ms_lr, lr_valid)
    pan_stats = norm.scene_stats(pan_lr[None], hr_valid)
    return PreparedScene(
        name=scene.name,
        group=scene.group,
        ratio=r,
        ms_lr=norm.normalise(ms_lr, ms_stats),
        pan=norm.normalise(pan_lr[None], pan_stats),
        target=norm.normalise(target, ms_stats),
        ms_stats=ms_stats,
        pan_stats=pan_stats,
        target_raw=np.asarray(target, np.float32) if keep_raw else None,
        positions=positions,
    )


def centre_crop(scene: Scene, size: int, native_ratio: int) -> Scene:
    """The central ``size`` x ``size`` MS pixels (and their PAN) of a larger scene."""
    rows, cols = scene.ms.shape[1:]
    if rows <= size and cols <= size:
        return scene
    r0, c0 = max(0, (rows - size) // 2), max(0, (cols - size) // 2)
    r1, c1 = min(rows, r0 + size), min(cols, c0 + size)
    n = native_ratio
    return Scene(
        scene.name,
        scene.group,
        np.ascontiguousarray(scene.ms[:, r0:r1, c0:c1]),
        np.ascontiguousarray(scene.pan[r0 * n : r1 * n, c0 * n : c1 * n]),
        None if scene.valid is None else scene.valid[r0:r1, c0:c1],
    )


@dataclass
class SceneSet:
    train: list[PreparedScene]
    val: list[PreparedScene]
    band_names: list[str]
    #: JSON-able description for the checkpoint's ``training["data"]``.
    description: dict


def build_scenes(cfg: DataConfig, patch: int) -> SceneSet:
    """Load, split by group, degrade and normalise every scene of ``cfg``."""
    if cfg.ratio % cfg.native_ratio:
        raise ValueError(f"ratio {cfg.ratio} is not a multiple of native ratio {cfg.native_ratio}")
    if patch % cfg.ratio:
        raise ValueError(f"patch size {patch} is not a multiple of the ratio {cfg.ratio}")
    train_specs, val_specs = split_specs(collect_specs(cfg), cfg.val_groups)
    if not train_specs:
        raise ValueError(f"every scene is in a validation group ({', '.join(cfg.val_groups)})")
    names: list[str] | None = None
    out: dict[str, list[PreparedScene]] = {"train": [], "val": []}
    for part, specs in (("train", train_specs), ("val", val_specs)):
        for spec in specs:
            scene, scene_names = load_scene(spec, cfg)
            if names is None:
                names = scene_names
            elif len(scene_names) != len(names):
                raise ValueError(
                    f"scene {spec.name} has {len(scene_names)} bands, not {len(names)}"
                )
            if part == "val":
                if scene.valid is not None:
                    raise ValueError(
                        f"validation scene {spec.name} contains nodata; crop it to valid pixels"
                    )
                scene = centre_crop(scene, cfg.val_max_size, cfg.native_ratio)
            out[part].append(prepare_scene(scene, cfg, patch, keep_raw=part == "val"))
    assert names is not None
    band_names = list(cfg.band_names) if cfg.band_names else names
    if len(band_names) != len(names):
        raise ValueError(f"{len(band_names)} band names for {len(names)} bands")
    ms_g, pan_g = gains(cfg, len(names))
    description = {
        "train_scenes": [f"{s.name} ({s.group})" for s in train_specs],
        "val_scenes": [f"{s.name} ({s.group})" for s in val_specs],
        "val_groups": list(cfg.val_groups),
        "sources": [s for s in (cfg.fusebox, cfg.manifest) if s] + list(cfg.scenes),
        "ms_gain": ms_g,
        "pan_gain": pan_g,
    }
    return SceneSet(out["train"], out["val"], band_names, description)


# --------------------------------------------------------------------------- patches


def draw_bands(
    rng: np.random.Generator, loaded: int, smallest: int, largest: int, shuffled_share: float
) -> np.ndarray:
    """Indices of a random subset of ``smallest`` .. ``largest`` of the ``loaded``
    bands, in their loaded order or, with probability ``shuffled_share``, shuffled."""
    if not 1 <= smallest <= largest <= loaded:
        raise ValueError(f"random bands {smallest}..{largest} do not fit {loaded} loaded bands")
    count = int(rng.integers(smallest, largest + 1))
    subset = np.sort(rng.choice(loaded, count, replace=False))
    if rng.random() < shuffled_share:
        subset = rng.permutation(subset)
    return subset


def select_bands(scene: PreparedScene, bands: Sequence[int]) -> PreparedScene:
    """``scene`` restricted to ``bands`` (indices, in that order)."""
    idx = list(bands)
    return PreparedScene(
        name=scene.name,
        group=scene.group,
        ratio=scene.ratio,
        ms_lr=scene.ms_lr[idx],
        pan=scene.pan,
        target=scene.target[idx],
        ms_stats=norm.BandStats(scene.ms_stats.mean[idx], scene.ms_stats.std[idx]),
        pan_stats=scene.pan_stats,
        target_raw=None if scene.target_raw is None else scene.target_raw[idx],
        positions=scene.positions,
    )


def augment(arrays: Sequence[np.ndarray], k: int, flip: bool) -> list[np.ndarray]:
    """The same dihedral transform (optional left-right flip, then ``k``
    quarter turns) on the last two axes of every array. A block-centre
    grid maps onto itself under these, so MS/PAN pairing is kept."""
    out = []
    for a in arrays:
        if flip:
            a = a[..., ::-1]
        out.append(np.ascontiguousarray(np.rot90(a, k, axes=(-2, -1))))
    return out


class PatchDataset(Dataset):
    """``samples`` random patches per epoch; sample ``index`` of ``epoch`` is a
    pure function of (seed, epoch, index), so that any process, any order and
    a resumed run draw the same patches.

    Items are dicts of float32 tensors: ``ms`` (bands, p/r, p/r), ``pan``
    (1, p, p), ``target`` (bands, p, p), and the MS stats ``ms_mean``,
    ``ms_std`` (bands,) for losses in digital numbers.

    With ``random_bands`` ``(min, max)`` the items of one group of ``group``
    consecutive indices (one batch on every process: batch size times
    processes) share one random band subset (:func:`draw_bands`).
    """

    def __init__(
        self,
        scenes: Sequence[PreparedScene],
        patch: int,
        samples: int,
        seed: int,
        random_bands: Sequence[int] | None = None,
        group: int = 1,
        shuffled_share: float = 0.5,
    ) -> None:
        if not scenes:
            raise ValueError("no training scenes")
        self.scenes = list(scenes)
        self.patch, self.samples, self.seed = patch, samples, seed
        self.random_bands = None if random_bands is None else tuple(random_bands)
        self.group, self.shuffled_share = group, shuffled_share
        if self.random_bands is not None:
            # Fails early on a range the scenes cannot serve.
            draw_bands(np.random.default_rng(0), self.scenes[0].ms_lr.shape[0],
                       *self.random_bands, shuffled_share)
        self.epoch = 0
        self.ratio = self.scenes[0].ratio
        if patch % self.ratio:
            raise ValueError(f"patch size {patch} is not a multiple of the ratio {self.ratio}")
        counts = np.array([self._count(s) for s in self.scenes], np.float64)
        if (counts <= 0).any():
            small = [s.name for s, c in zip(self.scenes, counts, strict=True) if c <= 0]
            raise ValueError(f"scenes smaller than one {patch}-pixel patch: {', '.join(small)}")
        # Every patch position of the collection is equally likely.
        self.weights = counts / counts.sum()

    def _count(self, s: PreparedScene) -> int:
        if s.positions is not None:
            return len(s.positions)
        p = self.patch // self.ratio
        return max(0, s.ms_lr.shape[1] - p + 1) * max(0, s.ms_lr.shape[2] - p + 1)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        s = self.scenes[int(rng.choice(len(self.scenes), p=self.weights))]
        p, r = self.patch // self.ratio, self.ratio
        if s.positions is not None:
            i, j = (int(v) for v in s.positions[rng.integers(len(s.positions))])
        else:
            i = int(rng.integers(s.ms_lr.shape[1] - p + 1))
            j = int(rng.integers(s.ms_lr.shape[2] - p + 1))
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        ms, pan, target = augment(
            [
                s.ms_lr[:, i : i + p, j : j + p],
                s.pan[:, i * r : (i + p) * r, j * r : (j + p) * r],
                s.target[:, i * r : (i + p) * r, j * r : (j + p) * r],
            ],
            k,
            flip,
        )
        mean, std = s.ms_stats.mean, s.ms_stats.std
        if self.random_bands is not None:
            # One draw per batch: the tensors of a batch need one band count.
            band_rng = np.random.default_rng([self.seed, self.epoch, index // self.group, 1])
            idx = draw_bands(band_rng, ms.shape[0], *self.random_bands, self.shuffled_share)
            ms, target, mean, std = ms[idx], target[idx], mean[idx], std[idx]
        return {
            "ms": torch.from_numpy(np.ascontiguousarray(ms)),
            "pan": torch.from_numpy(pan),
            "target": torch.from_numpy(np.ascontiguousarray(target)),
            "ms_mean": torch.from_numpy(mean.astype(np.float32)),
            "ms_std": torch.from_numpy(std.astype(np.float32)),
        }


def parse_int_list(text: str) -> list[int]:
    return [int(v) for v in re.split(r"[,\s]+", text.strip()) if v]
