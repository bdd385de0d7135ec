"""Pansharpening quality metrics, one implementation for training validation,
the benchmarks (bench/quality.py) and the "Assess Pansharpening Quality"
algorithm.

Arrays are (bands, rows, cols); single-band arrays may be (rows, cols).
Argument order follows the literature's toolboxes: the reference comes first
(``reference, fused``) for the reduced-resolution metrics, and the fused
image first (``fused, ms, pan``) for the no-reference ones.

With a reference (reduced resolution, Wald's protocol):

- **Q2n** (Garzelli & Nencini, IEEE GRSL 6(4), 2009): each pixel's spectrum
  is a hypercomplex number (complex for 2 bands, quaternion for 4 = Q4,
  octonion for 8; Cayley-Dickson algebra, bands zero-padded to the next
  power of two). On each ``block`` x ``block`` tile, after standardising
  every band with the reference tile's mean and standard deviation (as the
  reference toolbox of Vivone et al., IEEE TGRS 53(5), 2015, does),
  ``Q = 4 |s_xy| |m_x| |m_y| / ((s_x^2 + s_y^2) (|m_x|^2 + |m_y|^2))`` with
  the hypercomplex covariance ``s_xy = E[(x - m_x)(y - m_y)*]``. Q2n is the
  mean over tiles.
- **SAM**: mean spectral angle, in degrees, over pixels whose spectra are
  both non-zero.
- **ERGAS**: ``100 / ratio * sqrt(mean_b (RMSE_b / mean_b)^2)`` with global
  per-band RMSE and the reference band mean.
- **SCC** (Zhou et al., IJRS 19(4), 1998): Pearson correlation of the
  8-neighbour Laplacian details of the fused and reference bands, per band
  and their mean; only pixels whose 3 x 3 neighbourhood is valid count.
- **PSNR**: ``10 log10(data_range^2 / MSE)`` per band and from the MSE pooled
  over bands; the data range is given by the caller.

Without a reference (full resolution, Alparone et al., PE&RS 74(2), 2008),
with the universal image quality index Q (Wang & Bovik 2002) averaged over
non-overlapping ``block`` x ``block`` tiles at each image's own scale:

- ``D_lambda = (1 / (L (L-1)) sum_{l != m} |Q(F_l, F_m) - Q(M_l, M_m)|^p)^(1/p)``
- ``D_s = (1 / L sum_l |Q(F_l, P) - Q(M_l, P_lr)|^q)^(1/q)``, where ``P_lr``
  is the PAN degraded to the MS scale (by default with
  :func:`ada3d_qgis.core.degrade.degrade` and the PAN gain 0.15)
- ``QNR = (1 - D_lambda)^alpha (1 - D_s)^beta``; p = q = alpha = beta = 1.

Streaming: :class:`ReferenceMetrics` and :class:`NoReferenceMetrics` take
windows one at a time and hold exact sums (SAM, ERGAS, PSNR, SCC) or
per-tile sums (Q2n and Q), so the result over windows equals the whole-array
result provided the windows tile the image and every window's origin is a
multiple of the tile size (``block`` for the reference metrics; ``block *
ratio`` fused pixels for the no-reference ones, so that MS tiles are whole
too). Only complete tiles count: the incomplete tiles along the right and
bottom edges (sizes not a multiple of ``block``) are left out, as are tiles
containing any invalid pixel. SCC needs each pixel's neighbours: pass a
window with a one-pixel ``halo`` (which no other metric counts) to make it
exact across window boundaries; the image's own outer ring never counts.

Invalid pixels (``valid`` False, or non-finite in any band) are left out of
every metric. Everything is plain numpy (it runs inside QGIS's Python).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .degrade import DEFAULT_PAN_GAIN, degrade

#: Tile size of Q2n and of the Q index in D_lambda/D_s (literature standard).
BLOCK = 32

Halo = int | tuple[int, int, int, int]


# --- the catalogue: keys, labels and meanings ----------------------------


@dataclass(frozen=True)
class MetricInfo:
    key: str
    label: str
    unit: str
    ideal: str
    meaning: str


#: Every metric the assessment outputs, in table order; the accumulators'
#: results and the algorithm's outputs use these keys. The first five need a
#: reference (reduced resolution), the last three do not (full resolution).
# One metric per entry reads better than one field per line.
# fmt: off
METRICS: tuple[MetricInfo, ...] = (
    MetricInfo(
        "Q2N", "Q2n", "", "1",
        "Joint spectral and spatial similarity to the reference (Q4 for 4 bands), mean over "
        "32 x 32 blocks; from -1 to 1, higher is better, above about 0.9 is very good.",
    ),
    MetricInfo(
        "SAM", "SAM", "degrees", "0",
        "Mean spectral angle between fused and reference spectra: colour fidelity, "
        "independent of brightness; lower is better, a few degrees is typical.",
    ),
    MetricInfo(
        "ERGAS", "ERGAS", "", "0",
        "Relative global error, 100 / ratio x root mean of (band RMSE / band mean)^2; "
        "lower is better, below about 3 is usually considered good.",
    ),
    MetricInfo(
        "SCC", "SCC", "", "1",
        "Correlation of the Laplacian (high-pass) details of fused and reference: spatial "
        "detail fidelity; from -1 to 1, higher is better.",
    ),
    MetricInfo(
        "PSNR", "PSNR", "dB", "+inf",
        "Peak signal-to-noise ratio from the MSE over all bands and the data range; "
        "higher is better.",
    ),
    MetricInfo(
        "D_LAMBDA", "D_lambda", "", "0",
        "Spectral distortion without reference: change of the band-to-band Q indices from "
        "the MS to the fused image; lower is better.",
    ),
    MetricInfo(
        "D_S", "D_s", "", "0",
        "Spatial distortion without reference: change of the band-to-PAN Q indices between "
        "the MS scale and the PAN scale; lower is better.",
    ),
    MetricInfo(
        "QNR", "QNR", "", "1",
        "Quality with no reference, (1 - D_lambda)(1 - D_s); higher is better, above about "
        "0.9 is good.",
    ),
)
# fmt: on
METRIC_KEYS = tuple(m.key for m in METRICS)
REFERENCE_KEYS = ("Q2N", "SAM", "ERGAS", "SCC", "PSNR")
NO_REFERENCE_KEYS = ("D_LAMBDA", "D_S", "QNR")
_LABELS = {m.key: m.label for m in METRICS}


# --- small helpers -------------------------------------------------------


def _as3d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 2:
        return x[None]
    if x.ndim != 3:
        raise ValueError(f"expected (bands, rows, cols) or (rows, cols), got shape {x.shape}")
    return x


def _valid_mask(arrays: Sequence[np.ndarray], valid: np.ndarray | None) -> np.ndarray:
    """(rows, cols) mask: ``valid`` and finite in every band of every array."""
    shape = arrays[0].shape[-2:]
    mask = np.ones(shape, bool) if valid is None else np.asarray(valid, bool).copy()
    if mask.shape != shape:
        raise ValueError(f"mask shape {mask.shape} does not match the image's {shape}")
    for a in arrays:
        if np.issubdtype(a.dtype, np.floating):
            mask &= np.isfinite(a).all(axis=0)
    return mask


def _select(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(bands, rows, cols) -> (bands, valid pixels), without a copy when
    every pixel is valid."""
    if mask.all():
        return x.reshape(x.shape[0], -1)
    return x[:, mask]


def _halo4(halo: Halo) -> tuple[int, int, int, int]:
    if isinstance(halo, int):
        return (halo, halo, halo, halo)
    if len(halo) != 4:
        raise ValueError("halo is an int or (top, bottom, left, right)")
    return tuple(int(h) for h in halo)  # type: ignore[return-value]


def _core(x: np.ndarray, halo: tuple[int, int, int, int]) -> np.ndarray:
    t, b, left, r = halo
    return x[..., t : x.shape[-2] - b, left : x.shape[-1] - r]


def _tiles(x: np.ndarray, block: int) -> np.ndarray:
    """(bands, rows, cols) -> (bands, tiles, block*block) for complete tiles."""
    nb, rows, cols = x.shape
    tr, tc = rows // block, cols // block
    x = x[:, : tr * block, : tc * block].reshape(nb, tr, block, tc, block)
    return x.transpose(0, 1, 3, 2, 4).reshape(nb, tr * tc, block * block)


def _tile_valid(mask: np.ndarray, block: int) -> np.ndarray:
    """Which complete tiles hold only valid pixels: (tiles,) bool."""
    return _tiles(mask[None], block)[0].all(axis=1)


def _check_origin(origin: tuple[int, int] | None, step: int) -> None:
    if origin is not None and (origin[0] % step or origin[1] % step):
        raise ValueError(
            f"window origin {tuple(origin)} is not a multiple of {step} pixels: "
            "tile-based metrics would not match the whole-image result"
        )


# --- the Q index (Wang-Bovik) on tiles ------------------------------------


def _q_tiles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Universal image quality index of each tile; ``a``, ``b`` are
    (..., tiles, pixels). Degenerate tiles follow Wang & Bovik's code: equal
    zero variances give the luminance term alone, all-zero tiles give 1."""
    ma, mb = a.mean(axis=-1), b.mean(axis=-1)
    da, db = a - ma[..., None], b - mb[..., None]
    va, vb = (da * da).mean(axis=-1), (db * db).mean(axis=-1)
    cov = (da * db).mean(axis=-1)
    lum = ma * ma + mb * mb
    con = va + vb
    q = np.ones_like(ma)
    only_lum = (con == 0) & (lum != 0)
    q[only_lum] = 2 * ma[only_lum] * mb[only_lum] / lum[only_lum]
    den = con * lum
    ok = den != 0
    q[ok] = 4 * cov[ok] * ma[ok] * mb[ok] / den[ok]
    return q


# --- Q2n: hypercomplex arithmetic ----------------------------------------


def _conj(x: np.ndarray) -> np.ndarray:
    """Hypercomplex conjugate along axis 0 (negate every imaginary part)."""
    out = -x
    out[0] = x[0]
    return out


def _cd_mult(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cayley-Dickson product along axis 0 (length a power of two), in the
    convention of the Q2n reference toolbox: with halves x = (a, b),
    y = (c, d), x y = (a c - d* b, a* d* + c b*)."""
    n = x.shape[0]
    if n == 1:
        return x * y
    h = n // 2
    a, b, c, d = x[:h], x[h:], y[:h], y[h:]
    first = _cd_mult(a, c) - _cd_mult(_conj(d), b)
    second = _cd_mult(_conj(a), _conj(d)) + _cd_mult(c, _conj(b))
    return np.concatenate([first, second], axis=0)


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _q2n_tiles(ref: np.ndarray, fus: np.ndarray) -> np.ndarray:
    """Q2n of each tile; ``ref``, ``fus`` are (bands, tiles, pixels) float64."""
    nb, nt, m = ref.shape
    n = _next_pow2(nb)
    if n > nb:
        pad = np.zeros((n - nb, nt, m))
        ref = np.concatenate([ref, pad])
        fus = np.concatenate([fus, pad])
    # Standardise each band with the reference tile's statistics, so the
    # index does not depend on each band's units or offset.
    mean = ref.mean(axis=-1, keepdims=True)
    std = ref.std(axis=-1, ddof=1, keepdims=True)
    std[std == 0] = np.finfo(float).eps
    x = (ref - mean) / std + 1.0
    y = (fus - mean) / std + 1.0
    mx, my = x.mean(axis=-1), y.mean(axis=-1)
    unbias = m / (m - 1)
    # Hypercomplex covariance E[x y*] - m_x m_y* (unbiased).
    cov = unbias * (_cd_mult(x, _conj(y)).mean(axis=-1) - _cd_mult(mx, _conj(my)))
    mod_mx = np.sqrt((mx * mx).sum(axis=0))
    mod_my = np.sqrt((my * my).sum(axis=0))
    lum = mod_mx**2 + mod_my**2
    var_sum = unbias * ((x * x).sum(axis=0).mean(axis=-1) + (y * y).sum(axis=0).mean(axis=-1) - lum)
    mean_bias = np.where(lum > 0, 2 * mod_mx * mod_my / np.where(lum > 0, lum, 1), 0.0)
    mod_cov = np.sqrt((cov * cov).sum(axis=0))
    safe = np.where(var_sum == 0, 1.0, var_sum)
    return np.where(var_sum == 0, mean_bias, mod_cov * mean_bias * 2 / safe)


# --- SAM ------------------------------------------------------------------


def sam_map(reference: np.ndarray, fused: np.ndarray) -> np.ndarray:
    """Per-pixel spectral angle in degrees; NaN where either spectrum is zero
    or not finite."""
    ref = _as3d(reference).astype(np.float64)
    fus = _as3d(fused).astype(np.float64)
    dot = (ref * fus).sum(axis=0)
    norms = np.sqrt((ref * ref).sum(axis=0) * (fus * fus).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.clip(dot / norms, -1.0, 1.0)
    ang = np.degrees(np.arccos(cos))
    ang[~(norms > 0)] = np.nan
    return ang


# --- SCC ------------------------------------------------------------------


def _laplacian(x: np.ndarray) -> np.ndarray:
    """8-neighbour Laplacian ([-1 -1 -1; -1 8 -1; -1 -1 -1]) of the interior
    pixels: (bands, rows, cols) -> (bands, rows - 2, cols - 2)."""
    # Separable 3 x 3 box sum: rows first, then columns.
    rows3 = x[..., :-2, :] + x[..., 1:-1, :] + x[..., 2:, :]
    box = rows3[..., :-2] + rows3[..., 1:-1] + rows3[..., 2:]
    return 9 * x[..., 1:-1, 1:-1] - box


def _interior_valid(mask: np.ndarray) -> np.ndarray:
    """Interior pixels whose whole 3 x 3 neighbourhood is valid."""
    if mask.all():
        return np.ones((mask.shape[0] - 2, mask.shape[1] - 2), bool)
    rows, cols = mask.shape
    out = np.ones((rows - 2, cols - 2), bool)
    for dr in range(3):
        for dc in range(3):
            out &= mask[dr : dr + rows - 2, dc : dc + cols - 2]
    return out


# --- accumulators ---------------------------------------------------------


class ReferenceMetrics:
    """Q2n, SAM, ERGAS, SCC and PSNR accumulated window by window.

    ``ratio`` is the resolution ratio of the protocol (ERGAS uses 100/ratio);
    ``data_range`` enables PSNR (e.g. 65535 for uint16, or the reference's
    max - min); ``block`` is the Q2n tile size.
    """

    def __init__(
        self, bands: int, ratio: float, data_range: float | None = None, block: int = BLOCK
    ) -> None:
        self.bands = bands
        self.ratio = ratio
        self.data_range = data_range
        self.block = block
        self._n = 0
        self._sq_err = np.zeros(bands)
        self._ref_sum = np.zeros(bands)
        self._angle_sum = 0.0
        self._angle_n = 0
        self._q2n_sum = 0.0
        self._q2n_n = 0
        # SCC sums per band: n, sx, sy, sxx, syy, sxy.
        self._scc = np.zeros((6, bands))

    def update(
        self,
        reference: np.ndarray,
        fused: np.ndarray,
        valid: np.ndarray | None = None,
        halo: Halo = 0,
        origin: tuple[int, int] | None = None,
    ) -> None:
        """Add one window. ``halo`` pixels around the window's core feed
        only the SCC details; ``origin`` (row, col of the core in the image),
        if given, is checked against the Q2n tile grid."""
        ref = _as3d(reference)
        fus = _as3d(fused)
        if ref.shape != fus.shape or ref.shape[0] != self.bands:
            raise ValueError(
                f"reference {ref.shape} and fused {fus.shape} must both have "
                f"{self.bands} bands and the same size"
            )
        _check_origin(origin, self.block)
        h4 = _halo4(halo)
        mask_full = _valid_mask([ref, fus], valid)
        ref = ref.astype(np.float64)
        fus = fus.astype(np.float64)
        self._update_scc(ref, fus, mask_full, h4)
        ref, fus, mask = _core(ref, h4), _core(fus, h4), _core(mask_full, h4)
        self._update_pixels(ref, fus, mask)
        self._update_q2n(ref, fus, mask)

    def _update_pixels(self, ref: np.ndarray, fus: np.ndarray, mask: np.ndarray) -> None:
        r = _select(ref, mask)
        f = _select(fus, mask)
        self._n += r.shape[1]
        self._sq_err += ((r - f) ** 2).sum(axis=1)
        self._ref_sum += r.sum(axis=1)
        dot = (r * f).sum(axis=0)
        norms = np.sqrt((r * r).sum(axis=0) * (f * f).sum(axis=0))
        ok = norms > 0
        cos = np.clip(dot[ok] / norms[ok], -1.0, 1.0)
        self._angle_sum += float(np.degrees(np.arccos(cos)).sum())
        self._angle_n += int(ok.sum())

    def _update_q2n(self, ref: np.ndarray, fus: np.ndarray, mask: np.ndarray) -> None:
        keep = _tile_valid(mask, self.block)
        if not keep.any():
            return
        q = _q2n_tiles(_tiles(ref, self.block)[:, keep], _tiles(fus, self.block)[:, keep])
        self._q2n_sum += float(q.sum())
        self._q2n_n += int(q.size)

    def _update_scc(
        self, ref: np.ndarray, fus: np.ndarray, mask: np.ndarray, h4: tuple[int, int, int, int]
    ) -> None:
        if ref.shape[1] < 3 or ref.shape[2] < 3:
            return
        ok = _interior_valid(mask)
        # Interior coordinates start one pixel in; count only the core.
        t, b, left, r = h4
        core = np.zeros_like(ok)
        core[
            max(t - 1, 0) : ok.shape[0] - max(b - 1, 0),
            max(left - 1, 0) : ok.shape[1] - max(r - 1, 0),
        ] = True
        ok &= core
        x = _select(_laplacian(ref), ok)
        y = _select(_laplacian(fus), ok)
        self._scc += np.stack(
            [
                np.full(self.bands, x.shape[1], np.float64),
                x.sum(axis=1),
                y.sum(axis=1),
                (x * x).sum(axis=1),
                (y * y).sum(axis=1),
                (x * y).sum(axis=1),
            ]
        )

    def result(self) -> dict[str, object]:
        """Metrics so far: ``Q2N``, ``SAM`` (degrees), ``ERGAS``, ``SCC``,
        ``scc_bands``, ``rmse_bands``, ``PSNR``, ``psnr_bands`` (PSNR only
        with a data range), ``pixels``, ``q2n_tiles``; NaN where nothing
        counted."""
        nan = float("nan")
        out: dict[str, object] = {"pixels": self._n, "q2n_tiles": self._q2n_n}
        out["Q2N"] = self._q2n_sum / self._q2n_n if self._q2n_n else nan
        out["SAM"] = self._angle_sum / self._angle_n if self._angle_n else nan
        if self._n:
            mse = self._sq_err / self._n
            mean = self._ref_sum / self._n
            with np.errstate(divide="ignore", invalid="ignore"):
                out["ERGAS"] = float(100.0 / self.ratio * np.sqrt(np.mean(mse / mean**2)))
            out["rmse_bands"] = np.sqrt(mse).tolist()
            if self.data_range is not None:
                with np.errstate(divide="ignore"):
                    out["psnr_bands"] = (10 * np.log10(self.data_range**2 / mse)).tolist()
                    out["PSNR"] = float(10 * np.log10(self.data_range**2 / mse.mean()))
        else:
            out["ERGAS"] = nan
            out["rmse_bands"] = [nan] * self.bands
        n, sx, sy, sxx, syy, sxy = self._scc
        with np.errstate(divide="ignore", invalid="ignore"):
            cov = sxy - sx * sy / n
            den = np.sqrt((sxx - sx * sx / n) * (syy - sy * sy / n))
            scc = np.where(den > 0, cov / np.where(den > 0, den, 1), np.nan)
        scc = np.where(n > 0, scc, np.nan)
        out["scc_bands"] = scc.tolist()
        out["SCC"] = float(np.mean(scc))
        return out


class NoReferenceMetrics:
    """D_lambda, D_s and QNR accumulated window by window.

    Windows: ``fused`` (bands, h, w) and ``pan`` (h, w) at the PAN scale,
    ``ms`` (bands, h / ratio, w / ratio) and ``pan_lr`` (the PAN degraded
    to the MS scale, same size as ``ms``) covering the same ground. Q is
    averaged over ``block`` x ``block`` tiles at each scale; window origins
    must be multiples of ``block * ratio`` fused pixels.
    """

    def __init__(
        self,
        bands: int,
        ratio: int,
        block: int = BLOCK,
        p: float = 1.0,
        q: float = 1.0,
        alpha: float = 1.0,
        beta: float = 1.0,
    ) -> None:
        if bands < 2:
            raise ValueError("D_lambda needs at least two bands")
        self.bands = bands
        self.ratio = ratio
        self.block = block
        self.p, self.q, self.alpha, self.beta = p, q, alpha, beta
        self._pairs = np.array(
            [(i, j) for i in range(bands) for j in range(i + 1, bands)], dtype=int
        ).T
        npairs = self._pairs.shape[1]
        self._qf_pairs = np.zeros(npairs)
        self._qm_pairs = np.zeros(npairs)
        self._qf_pan = np.zeros(bands)
        self._qm_pan = np.zeros(bands)
        self._nf = 0
        self._nm = 0

    def update(
        self,
        fused: np.ndarray,
        ms: np.ndarray,
        pan: np.ndarray,
        pan_lr: np.ndarray,
        valid: np.ndarray | None = None,
        valid_lr: np.ndarray | None = None,
        origin: tuple[int, int] | None = None,
    ) -> None:
        """Add one window (see the class doc). ``valid`` is the PAN-scale
        mask; ``valid_lr`` the MS-scale one (by default: an MS pixel is
        valid when all the PAN-scale pixels it covers are)."""
        fus, msa = _as3d(fused), _as3d(ms)
        pan3, panlr3 = _as3d(pan), _as3d(pan_lr)
        r = self.ratio
        if fus.shape[0] != self.bands or msa.shape[0] != self.bands:
            raise ValueError(f"fused {fus.shape} and ms {msa.shape} must have {self.bands} bands")
        if pan3.shape[1:] != fus.shape[1:] or panlr3.shape[1:] != msa.shape[1:]:
            raise ValueError(
                f"pan {pan3.shape[1:]} must match fused {fus.shape[1:]} and pan_lr "
                f"{panlr3.shape[1:]} must match ms {msa.shape[1:]}"
            )
        if msa.shape[1] != fus.shape[1] // r or msa.shape[2] != fus.shape[2] // r:
            raise ValueError(
                f"ms {msa.shape[1:]} is not the fused size {fus.shape[1:]} divided by {r}"
            )
        _check_origin(origin, self.block * r)
        mask = _valid_mask([fus, pan3], valid)
        if valid_lr is None:
            h, w = msa.shape[1] * r, msa.shape[2] * r
            valid_lr = mask[:h, :w].reshape(h // r, r, w // r, r).all(axis=(1, 3))
        mask_lr = _valid_mask([msa, panlr3], valid_lr)
        qp, qpan, n = self._scale(fus, pan3, mask)
        self._qf_pairs += qp
        self._qf_pan += qpan
        self._nf += n
        qp, qpan, n = self._scale(msa, panlr3, mask_lr)
        self._qm_pairs += qp
        self._qm_pan += qpan
        self._nm += n

    def _scale(
        self, img: np.ndarray, pan: np.ndarray, mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Sums over the valid tiles of Q between band pairs and with PAN."""
        keep = _tile_valid(mask, self.block)
        n = int(keep.sum())
        if n == 0:
            return np.zeros(self._pairs.shape[1]), np.zeros(self.bands), 0
        t = _tiles(img.astype(np.float64), self.block)[:, keep]
        tp = _tiles(pan.astype(np.float64), self.block)[:, keep]
        i, j = self._pairs
        q_pairs = _q_tiles(t[i], t[j]).sum(axis=-1)
        q_pan = _q_tiles(t, np.broadcast_to(tp, t.shape)).sum(axis=-1)
        return q_pairs, q_pan, n

    def result(self) -> dict[str, object]:
        """``D_LAMBDA``, ``D_S``, ``QNR`` and the tile counts at each scale."""
        out: dict[str, object] = {"tiles": self._nf, "tiles_lr": self._nm}
        if not self._nf or not self._nm:
            out.update(D_LAMBDA=float("nan"), D_S=float("nan"), QNR=float("nan"))
            return out
        diff_l = np.abs(self._qf_pairs / self._nf - self._qm_pairs / self._nm)
        # Each unordered pair stands for both (l, m) and (m, l).
        d_lambda = float(np.mean(diff_l**self.p) ** (1.0 / self.p))
        diff_s = np.abs(self._qf_pan / self._nf - self._qm_pan / self._nm)
        d_s = float(np.mean(diff_s**self.q) ** (1.0 / self.q))
        out["D_LAMBDA"] = d_lambda
        out["D_S"] = d_s
        out["QNR"] = float((1 - d_lambda) ** self.alpha * (1 - d_s) ** self.beta)
        return out


# --- whole-array functions ------------------------------------------------


def reference_metrics(
    reference: np.ndarray,
    fused: np.ndarray,
    ratio: float,
    data_range: float | None = None,
    valid: np.ndarray | None = None,
    block: int = BLOCK,
) -> dict[str, object]:
    """Every reduced-resolution metric of an in-memory pair (see
    :meth:`ReferenceMetrics.result` for the keys)."""
    ref = _as3d(reference)
    acc = ReferenceMetrics(ref.shape[0], ratio, data_range, block)
    acc.update(ref, fused, valid)
    return acc.result()


def q2n(
    reference: np.ndarray, fused: np.ndarray, block: int = BLOCK, valid: np.ndarray | None = None
) -> float:
    """Q2n (Q4 for four bands) averaged over complete ``block`` tiles."""
    ref = _as3d(reference)
    acc = ReferenceMetrics(ref.shape[0], 1.0, None, block)
    mask = _valid_mask([ref, _as3d(fused)], valid)
    acc._update_q2n(ref.astype(np.float64), _as3d(fused).astype(np.float64), mask)
    return float(acc.result()["Q2N"])  # type: ignore[arg-type]


def sam(reference: np.ndarray, fused: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean spectral angle in degrees."""
    return float(reference_metrics(reference, fused, 1.0, valid=valid)["SAM"])  # type: ignore[arg-type]


def ergas(
    reference: np.ndarray, fused: np.ndarray, ratio: float, valid: np.ndarray | None = None
) -> float:
    """ERGAS with the factor 100 / ratio (ratio = 4 for a 1:4 protocol)."""
    return float(reference_metrics(reference, fused, ratio, valid=valid)["ERGAS"])  # type: ignore[arg-type]


def scc(reference: np.ndarray, fused: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Spatial correlation coefficient, mean over bands."""
    return float(reference_metrics(reference, fused, 1.0, valid=valid)["SCC"])  # type: ignore[arg-type]


def psnr(
    reference: np.ndarray, fused: np.ndarray, data_range: float, valid: np.ndarray | None = None
) -> float:
    """PSNR in dB from the MSE pooled over bands (per band: see
    :func:`reference_metrics`)."""
    res = reference_metrics(reference, fused, 1.0, data_range=data_range, valid=valid)
    return float(res["PSNR"])  # type: ignore[arg-type]


def q_index(a: np.ndarray, b: np.ndarray, block: int = BLOCK) -> float:
    """Universal image quality index of two single-band images, averaged over
    complete ``block`` tiles."""
    ta = _tiles(np.asarray(a, np.float64)[None], block)[0]
    tb = _tiles(np.asarray(b, np.float64)[None], block)[0]
    return float(_q_tiles(ta, tb).mean())


def no_reference_metrics(
    fused: np.ndarray,
    ms: np.ndarray,
    pan: np.ndarray,
    ratio: int,
    pan_lr: np.ndarray | None = None,
    pan_gain: float = DEFAULT_PAN_GAIN,
    valid: np.ndarray | None = None,
    block: int = BLOCK,
) -> dict[str, object]:
    """D_lambda, D_s and QNR of an in-memory fused image. The PAN is
    degraded to the MS scale with :func:`degrade` unless ``pan_lr`` is
    given; ``fused``/``pan`` are cropped to ``ratio`` times the MS size."""
    fus, msa = _as3d(fused), _as3d(ms)
    pan2 = np.asarray(pan)
    if pan2.ndim == 3:
        pan2 = pan2[0]
    h, w = msa.shape[1] * ratio, msa.shape[2] * ratio
    if fus.shape[1] < h or fus.shape[2] < w or pan2.shape[0] < h or pan2.shape[1] < w:
        raise ValueError(
            f"fused {fus.shape[1:]} and pan {pan2.shape} must cover {ratio} x the MS "
            f"size {msa.shape[1:]}"
        )
    if pan_lr is None:
        pan_lr = degrade(pan2.astype(np.float64), ratio, pan_gain)
    pan_lr = np.asarray(pan_lr)
    if pan_lr.ndim == 3:
        pan_lr = pan_lr[0]
    pan_lr = pan_lr[: msa.shape[1], : msa.shape[2]]
    acc = NoReferenceMetrics(msa.shape[0], ratio, block)
    mask = None if valid is None else np.asarray(valid, bool)[:h, :w]
    acc.update(fus[:, :h, :w], msa, pan2[:h, :w], pan_lr, valid=mask)
    return acc.result()


def d_lambda(fused: np.ndarray, ms: np.ndarray, ratio: int, block: int = BLOCK) -> float:
    """Spectral distortion D_lambda (p = 1)."""
    # D_lambda needs no PAN: feed the first band as a stand-in (unused).
    fus, msa = _as3d(fused), _as3d(ms)
    res = no_reference_metrics(fus, msa, fus[0], ratio, pan_lr=msa[0], block=block)
    return float(res["D_LAMBDA"])  # type: ignore[arg-type]


def d_s(
    fused: np.ndarray,
    ms: np.ndarray,
    pan: np.ndarray,
    ratio: int,
    pan_lr: np.ndarray | None = None,
    block: int = BLOCK,
) -> float:
    """Spatial distortion D_s (q = 1)."""
    return float(no_reference_metrics(fused, ms, pan, ratio, pan_lr, block=block)["D_S"])  # type: ignore[arg-type]


def qnr(
    fused: np.ndarray,
    ms: np.ndarray,
    pan: np.ndarray,
    ratio: int,
    pan_lr: np.ndarray | None = None,
    block: int = BLOCK,
) -> float:
    """Quality with no reference, (1 - D_lambda)(1 - D_s)."""
    return float(no_reference_metrics(fused, ms, pan, ratio, pan_lr, block=block)["QNR"])  # type: ignore[arg-type]


def reduced_resolution(
    reference: np.ndarray,
    fused: np.ndarray,
    ratio: float,
    data_range: float | None = None,
    valid: np.ndarray | None = None,
) -> dict[str, float]:
    """Table-ready reduced-resolution scores: ``SAM``, ``ERGAS``, ``Q2n``,
    ``SCC`` and, with a data range, ``PSNR``."""
    res = reference_metrics(reference, fused, ratio, data_range, valid)
    keys = ("SAM", "ERGAS", "Q2N", "SCC", "PSNR")
    return {_LABELS[k]: float(res[k]) for k in keys if k in res}  # type: ignore[arg-type]


def full_resolution(
    fused: np.ndarray,
    ms: np.ndarray,
    pan: np.ndarray,
    ratio: int,
    pan_lr: np.ndarray | None = None,
    valid: np.ndarray | None = None,
) -> dict[str, float]:
    """Table-ready full-resolution scores: ``D_lambda``, ``D_s``, ``QNR``."""
    res = no_reference_metrics(fused, ms, pan, ratio, pan_lr=pan_lr, valid=valid)
    return {_LABELS[k]: res[k] for k in NO_REFERENCE_KEYS}  # type: ignore[misc]
