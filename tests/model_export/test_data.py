"""Training data: FuseBox loading and split, GeoTIFF alignment, Wald pairs,
normalisation and patch augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from ada3d_qgis.core.normalise import denormalise, scene_stats
from model_export import data as D

gdal.UseExceptions()

#: Scene groups as listed in the brief of issue 5 (scenes 7-39), written out
#: independently of locations_7_to_39.txt, which the loader parses.
EXPECTED_GROUPS = {
    **dict.fromkeys(range(7, 13), "P090R083"),
    **dict.fromkeys(range(13, 19), "P091R083"),
    **dict.fromkeys(range(19, 25), "P092R086"),
    **dict.fromkeys(range(25, 32), "P093R085"),
    **dict.fromkeys(range(32, 40), "P093R086"),
}


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _block_mean(pan: np.ndarray, r: int) -> np.ndarray:
    h, w = pan.shape[0] // r, pan.shape[1] // r
    return pan[: h * r, : w * r].reshape(h, r, w, r).mean(axis=(1, 3))


# --------------------------------------------------------------------------- FuseBox


@pytest.fixture(scope="module")
def fusebox(shared_data: Path) -> Path:
    return shared_data / "landsat7_fusebox"


def test_fusebox_groups_match_the_locations_file(fusebox: Path) -> None:
    assert D.fusebox_groups(fusebox) == EXPECTED_GROUPS


def test_fusebox_split_is_by_whole_groups(fusebox: Path) -> None:
    specs = D.fusebox_specs(fusebox)
    train, val = D.split_specs(specs, D.DEFAULT_VAL_GROUPS)
    assert sorted(s.name for s in val) == [f"fusebox{n}" for n in range(13, 19)]
    assert {s.group for s in train}.isdisjoint({s.group for s in val})
    assert {s.name for s in train}.isdisjoint({s.name for s in val})
    assert len(train) + len(val) == 33


@pytest.mark.parametrize("scene", [7, 13])
def test_fusebox_one_pixel_fix(fusebox: Path, scene: int) -> None:
    from scipy.io import loadmat

    ms, pan = D.load_fusebox_pair(fusebox / f"{scene}_ms.mat", fusebox / f"{scene}_pan.mat")
    assert ms.shape == (4, 399, 399) and pan.shape == (798, 798)
    assert ms.dtype == np.float32 and pan.dtype == np.float32
    raw_ms = loadmat(fusebox / f"{scene}_ms.mat")["cropped_im"].astype(np.float32)
    raw_pan = loadmat(fusebox / f"{scene}_pan.mat")["cropped_gray"].astype(np.float32)
    # The README's pairing: ms[1:, 1:] with pan[1:-1, 1:-1], bands B, G, R, NIR.
    np.testing.assert_array_equal(pan, raw_pan[1:-1, 1:-1])
    np.testing.assert_array_equal(ms, raw_ms[1:, 1:, [2, 1, 0, 3]].transpose(2, 0, 1))
    # The fix must improve the PAN/MS agreement over the raw pairing (the
    # ETM+ PAN spans 520-900 nm: compare it with G, R and NIR).
    fixed = _corr(ms[1:].mean(0), _block_mean(pan, 2))
    unfixed = _corr(raw_ms[..., [1, 0, 3]].mean(-1), _block_mean(raw_pan, 2))
    assert fixed > unfixed + 0.01


def test_fusebox_band_order_is_b_g_r_nir(fusebox: Path) -> None:
    # Independent physical check: in Landsat DN the contrast of the visible
    # bands grows from blue (haze, low gain) to red on every FuseBox scene.
    for scene in (7, 19, 30):
        ms, _ = D.load_fusebox_pair(fusebox / f"{scene}_ms.mat", fusebox / f"{scene}_pan.mat")
        std = ms.reshape(4, -1).std(axis=1)
        assert std[0] < std[1] < std[2], (scene, std)


def test_fusebox_scene_set_ratio4(fusebox: Path, tmp_path: Path) -> None:
    # A one-scene copy of the layout (scene 7) to stay fast.
    lines = (fusebox / D.FUSEBOX_LOCATIONS).read_text().splitlines()
    (tmp_path / D.FUSEBOX_LOCATIONS).write_text(f"{lines[0]}\n")
    with pytest.raises(FileNotFoundError):
        D.fusebox_specs(tmp_path)
    for kind in ("ms", "pan"):
        (tmp_path / f"7_{kind}.mat").symlink_to(fusebox / f"7_{kind}.mat")
    cfg = D.DataConfig(fusebox=str(tmp_path), ratio=4, val_groups=["none"])
    scenes = D.build_scenes(cfg, patch=64)
    s = scenes.train[0]
    # 399 MS pixels -> 396 (multiple of 4): inputs at 120 m and 30 m, target at 30 m.
    assert s.ms_lr.shape == (4, 99, 99)
    assert s.pan.shape == (1, 396, 396) and s.target.shape == (4, 396, 396)
    assert scenes.band_names == ["B", "G", "R", "NIR"]
    assert scenes.description["train_scenes"] == ["fusebox7 (P090R083)"]


# --------------------------------------------------------------------------- GeoTIFF


def test_geotiff_route_aligns_the_offset_ms(sample_ms: Path, sample_pan: Path) -> None:
    ms, pan, valid, info = D.load_geotiff_pair(sample_ms, sample_pan, native_ratio=2)
    assert ms.shape == (4, 256, 256) and pan.shape == (512, 512)
    assert valid is None and info["warped"]
    pan_gt = gdal.Open(str(sample_pan)).GetGeoTransform()
    # The aligned MS grid shares the PAN origin, with 2 x 2 PAN pixels per cell.
    assert info["geotransform"][0] == pan_gt[0] and info["geotransform"][3] == pan_gt[3]
    assert info["geotransform"][1] == 2 * pan_gt[1] and info["geotransform"][5] == 2 * pan_gt[5]
    # The warp moves the MS by a quarter MS pixel onto the PAN blocks: the
    # PAN block means then match the visible bands better than the raw grid.
    # (Only slightly on this real scene, whose PAN/MS registration has its own
    # residual error; the exact check is the next test.)
    raw = gdal.Open(str(sample_ms)).ReadAsArray().astype(np.float32)
    pan_blocks = _block_mean(pan, 2)[2:-2, 2:-2]
    aligned = _corr(ms[:3].mean(0)[2:-2, 2:-2], pan_blocks)
    unaligned = _corr(raw[:3].mean(0)[2:-2, 2:-2], pan_blocks)
    assert aligned > unaligned


def test_geotiff_route_undoes_a_half_pan_pixel_offset(sample_pan: Path, tmp_path: Path) -> None:
    """An MS made from the (smoothed) real PAN on a grid half a PAN pixel off
    (area averages, as a sensor integrates) comes back onto the PAN blocks.

    The PAN is smoothed first so that what is measured is the geometry, not
    the detail a 2x coarser grid cannot carry."""
    ds = gdal.Open(str(sample_pan))
    gt, wkt = ds.GetGeoTransform(), ds.GetProjection()
    pan_path = tmp_path / "smooth_pan.tif"
    _write(pan_path, _smooth(ds.ReadAsArray().astype(np.float64), sigma=3.0), gt, wkt)
    ds = None
    pan = gdal.Open(str(pan_path)).ReadAsArray().astype(np.float64)
    # MS pixel i covers PAN rows 2i + 0.5 .. 2i + 2.5: weights 1/4, 1/2, 1/4.
    w = np.array([0.25, 0.5, 0.25])
    n = (pan.shape[0] - 1) // 2
    rows = sum(w[k] * pan[k : k + 2 * n : 2] for k in range(3))
    offset_ms = sum(w[k] * rows[:, k : k + 2 * n : 2] for k in range(3))
    ms_path = tmp_path / "offset_ms.tif"
    _write(ms_path, offset_ms, (gt[0] + gt[1] / 2, 2 * gt[1], 0, gt[3] + gt[5] / 2, 0, 2 * gt[5]),
           wkt)
    ms, pan_out, _, info = D.load_geotiff_pair(ms_path, pan_path, native_ratio=2)
    assert info["warped"]
    truth = _block_mean(pan_out, 2)[3:-3, 3:-3]
    err_aligned = np.sqrt(np.mean((ms[0][3:-3, 3:-3] - truth) ** 2))
    raw = offset_ms[: ms.shape[1], : ms.shape[2]][3:-3, 3:-3]
    err_raw = np.sqrt(np.mean((raw - truth) ** 2))
    # What remains is cubic interpolation error: a fifth of the offset at most.
    assert err_aligned < 0.2 * err_raw, (err_aligned, err_raw)


def _smooth(img: np.ndarray, sigma: float) -> np.ndarray:
    taps = np.arange(-int(4 * sigma), int(4 * sigma) + 1)
    k = np.exp(-0.5 * (taps / sigma) ** 2)
    k /= k.sum()
    pad = np.pad(img, len(taps) // 2, mode="reflect")
    rows = np.apply_along_axis(np.convolve, 0, pad, k, mode="valid")
    return np.apply_along_axis(np.convolve, 1, rows, k, mode="valid")


def _write(path: Path, arr: np.ndarray, gt: tuple, wkt: str, nodata: float | None = None) -> None:
    arr = arr[None] if arr.ndim == 2 else arr
    ds = gdal.GetDriverByName("GTiff").Create(
        str(path), arr.shape[2], arr.shape[1], arr.shape[0], gdal.GDT_Float32
    )
    ds.SetGeoTransform(gt)
    ds.SetProjection(wkt)
    for b in range(arr.shape[0]):
        band = ds.GetRasterBand(b + 1)
        band.WriteArray(arr[b])
        if nodata is not None:
            band.SetNoDataValue(nodata)
    ds = None


def test_geotiff_aligned_input_is_read_unchanged(
    sample_ms: Path, sample_pan: Path, tmp_path: Path
) -> None:
    ms, pan, _, info = D.load_geotiff_pair(sample_ms, sample_pan, 2)
    wkt = gdal.Open(str(sample_pan)).GetProjection()
    _write(tmp_path / "ms.tif", ms, info["geotransform"], wkt)
    again, pan2, _, info2 = D.load_geotiff_pair(tmp_path / "ms.tif", sample_pan, 2, bands=[3, 0])
    assert not info2["warped"]
    np.testing.assert_array_equal(again, ms[[3, 0]])
    np.testing.assert_array_equal(pan2, pan)


def test_nodata_is_kept_out_of_patches_and_stats(
    sample_ms: Path, sample_pan: Path, tmp_path: Path
) -> None:
    ms, _, _, info = D.load_geotiff_pair(sample_ms, sample_pan, 2)
    ms = ms.copy()
    ms[:, 100:140, 30:90] = 0.0  # a nodata hole
    wkt = gdal.Open(str(sample_pan)).GetProjection()
    _write(tmp_path / "ms.tif", ms, info["geotransform"], wkt, nodata=0.0)
    spec = D.parse_scene_arg(f"{tmp_path / 'ms.tif'},{sample_pan},g")
    cfg = D.DataConfig(scenes=[], native_ratio=2, ratio=2)
    scene, _ = D.load_scene(spec, cfg)
    assert scene.valid is not None and not scene.valid[100:140, 30:90].any()
    assert scene.valid.sum() == 256 * 256 - 40 * 60
    prepared = D.prepare_scene(scene, cfg, patch=32)
    p = 32 // 2
    for i, j in prepared.positions:
        # Patch footprint on the 30 m grid (= target grid) avoids the hole.
        rows, cols = range(2 * i, 2 * (i + p)), range(2 * j, 2 * (j + p))
        assert rows.stop <= 100 or rows.start >= 140 or cols.stop <= 30 or cols.start >= 90
    # The statistics count valid pixels only: close to those of the intact
    # scene, whereas the hole's zeros would inflate the spread.
    intact = D.prepare_scene(
        D.load_scene(D.parse_scene_arg(f"{sample_ms},{sample_pan}"), cfg)[0], cfg
    )
    np.testing.assert_allclose(prepared.ms_stats.mean, intact.ms_stats.mean, rtol=0.02)
    np.testing.assert_allclose(prepared.ms_stats.std, intact.ms_stats.std, rtol=0.1)
    assert (scene_stats(ms).std > 1.5 * prepared.ms_stats.std).all()


def test_manifest_and_scene_arguments(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    manifest = tmp_path / "sub" / "scenes.csv"
    manifest.write_text("ms,pan,group\na_ms.tif,a_pan.tif,north\nb_ms.tif,b_pan.tif,\n")
    specs = D.read_manifest(manifest)
    assert specs[0].ms == str((tmp_path / "sub" / "a_ms.tif").resolve())
    assert [s.group for s in specs] == ["north", "b_ms"]
    spec = D.parse_scene_arg("x/m.tif,x/p.tif")
    assert (spec.ms, spec.pan, spec.group) == ("x/m.tif", "x/p.tif", "m")
    with pytest.raises(ValueError):
        D.parse_scene_arg("only_one.tif")


# --------------------------------------------------------------------------- Wald + normalise


def test_prepared_scene_normalisation(sample_ms: Path, sample_pan: Path) -> None:
    spec = D.parse_scene_arg(f"{sample_ms},{sample_pan}")
    cfg = D.DataConfig(ratio=4)
    scene, _ = D.load_scene(spec, cfg)
    s = D.prepare_scene(scene, cfg, keep_raw=True)
    # Ratio 4 from a ratio-2 sensor: MS degraded by 4, PAN by 2.
    assert s.ms_lr.shape == (4, 64, 64) and s.pan.shape == (1, 256, 256)
    assert s.target.shape == (4, 256, 256)
    # Inputs are standardised with their own scene statistics ...
    np.testing.assert_allclose(s.ms_lr.mean(axis=(1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(s.ms_lr.std(axis=(1, 2)), 1, atol=1e-4)
    np.testing.assert_allclose(s.pan.std(), 1, atol=1e-4)
    # ... and the target with the *input* MS statistics, as inference
    # de-normalises: mapping it back gives the original MS exactly.
    np.testing.assert_allclose(denormalise(s.target, s.ms_stats), s.target_raw, rtol=1e-5)
    np.testing.assert_allclose(s.target_raw, scene.ms, rtol=0)
    # (not with the target's own statistics: the 30 m MS has more contrast)
    assert (scene_stats(s.target_raw).std > s.ms_stats.std).all()


# --------------------------------------------------------------------------- patches


def _coded_scene(ratio: int, h: int = 12, w: int = 10) -> D.PreparedScene:
    """Every low-resolution pixel carries a unique code; PAN and target pixels
    carry the code of the MS pixel they belong to, so pairing is checkable."""
    code = np.arange(h * w, dtype=np.float32).reshape(h, w)
    up = np.repeat(np.repeat(code, ratio, 0), ratio, 1)
    ms_lr = np.stack([code + 10_000 * b for b in range(3)])
    target = np.stack([up + 10_000 * b for b in range(3)])
    stats = scene_stats(ms_lr)
    return D.PreparedScene("coded", "g", ratio, ms_lr, up[None], target, stats, stats)


@pytest.mark.parametrize("ratio", [2, 4])
def test_patches_keep_ms_pan_pairing_under_augmentation(ratio: int) -> None:
    scene = _coded_scene(ratio)
    ds = D.PatchDataset([scene], patch=4 * ratio, samples=64, seed=3)
    w = scene.ms_lr.shape[2]
    transforms = set()
    for i in range(len(ds)):
        item = {k: v.numpy() for k, v in ds[i].items()}
        ms, pan, target = item["ms"], item["pan"], item["target"]
        assert ms.shape == (3, 4, 4) and pan.shape == (1, 4 * ratio, 4 * ratio)
        assert target.shape == (3, 4 * ratio, 4 * ratio)
        up = np.repeat(np.repeat(ms, ratio, 1), ratio, 2)
        np.testing.assert_array_equal(pan[0], up[0])
        np.testing.assert_array_equal(target, up)
        # Which dihedral transform was drawn: undo each candidate until the
        # MS patch is a plain crop (codes step by 1 along rows, w down columns).
        for k in range(4):
            for flip in (False, True):
                back = np.rot90(ms[0], -k)
                back = back[:, ::-1] if flip else back
                if (np.diff(back, axis=1) == 1).all() and (np.diff(back, axis=0) == w).all():
                    transforms.add((k, flip))
    assert len(transforms) == 8


def test_patches_are_seeded_per_sample_and_epoch() -> None:
    scene = _coded_scene(2)
    a = D.PatchDataset([scene], patch=8, samples=16, seed=1)
    b = D.PatchDataset([scene], patch=8, samples=16, seed=1)
    for i in (0, 5, 15):
        assert np.array_equal(a[i]["ms"].numpy(), b[i]["ms"].numpy())
    draws = {a[i]["ms"].numpy().tobytes() for i in range(16)}
    b.set_epoch(1)
    draws_next = {b[i]["ms"].numpy().tobytes() for i in range(16)}
    assert len(draws) > 8 and draws != draws_next


def test_large_validation_scenes_are_cut_to_their_centre(sample_ms: Path, sample_pan: Path) -> None:
    scene, _ = D.load_scene(D.parse_scene_arg(f"{sample_ms},{sample_pan}"), D.DataConfig())
    cut = D.centre_crop(scene, 100, 2)
    assert cut.ms.shape == (4, 100, 100) and cut.pan.shape == (200, 200)
    np.testing.assert_array_equal(cut.ms, scene.ms[:, 78:178, 78:178])
    np.testing.assert_array_equal(cut.pan, scene.pan[156:356, 156:356])
    assert D.centre_crop(scene, 300, 2) is scene


def test_training_reads_what_the_plugin_serves(sample_ms, sample_pan):
    """One alignment: the training pair is the plugin's aligned MS and PAN."""
    from ada3d_qgis.engine import raster_io as rio

    ms, pan, valid, _ = D.load_geotiff_pair(sample_ms, sample_pan, 2, bands=[2, 1, 0, 3])
    pair = rio.open_pair(str(sample_pan), str(sample_ms), 1, [3, 2, 1, 4])
    inputs = rio.align_inputs(pair.pan_ds, 1, pair.ms_ds, pair.ms_bands, 2)
    try:
        h, w = ms.shape[1:]
        assert np.array_equal(ms, inputs.read_ms(0, 0, w, h))
        assert np.array_equal(pan, inputs.read_pan(0, 0, 2 * w, 2 * h))
    finally:
        inputs.close()
    assert valid is None and ms.shape == (4, 256, 256)  # the whole sample


def test_nodata_is_read_band_by_band(tmp_path, sample_ms, sample_pan):
    """Each band's own nodata value marks its gaps (band 1: 0, band 4: 65535)."""
    gaps = {1: (0, (slice(10, 20), slice(10, 20))),
            4: (65535, (slice(100, 110), slice(50, 60)))}
    tif = tmp_path / "ms_gaps.tif"
    ds = gdal.Translate(str(tif), str(sample_ms))
    for b, (value, block) in gaps.items():
        band = ds.GetRasterBand(b)
        data = band.ReadAsArray()
        data[block] = value
        band.WriteArray(data)
        del band
    ds = None
    # GeoTIFF holds one nodata value for all bands; a VRT holds one per band.
    path = tmp_path / "ms_nd.vrt"
    ds = gdal.Translate(str(path), str(tif), format="VRT")
    for b, (value, _) in gaps.items():
        ds.GetRasterBand(b).SetNoDataValue(value)
    ds = None
    _, _, valid, _ = D.load_geotiff_pair(path, sample_pan, 2)
    assert valid is not None
    # The aligned grid starts on the MS grid's first cell (a quarter-cell shift):
    # each gap, widened by the cubic kernel, is invalid, and nothing far from it.
    assert not valid[11:19, 11:19].any() and not valid[101:109, 51:59].any()
    expected = np.ones_like(valid)
    expected[7:23, 7:23] = expected[97:113, 47:63] = False
    assert valid[expected].all()
