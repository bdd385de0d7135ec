"""Wald's protocol: the reduced-resolution degradation shared by training,
benchmarks and the plugin's "Assess Pansharpening Quality" algorithm.

Wald et al. (1997) judge a pansharpening method on inputs degraded by the
resolution ratio, so that the original MS becomes a ground truth. The
degradation has two steps:

1. **MTF-matched low-pass filter.** The sensor's modulation transfer
   function is modelled as a Gaussian whose amplitude response at the
   Nyquist frequency of the *low-resolution* grid, ``1 / (2 ratio)``
   cycles per pixel, equals the sensor's published gain (Aiazzi et al.
   2006, "MTF-tailored multiscale fusion", PE&RS 72(5)). A continuous
   Gaussian ``exp(-x^2 / (2 sigma^2))`` has the response
   ``exp(-2 pi^2 sigma^2 f^2)``, hence :func:`mtf_sigma`.
2. **Decimation at block centres.** Output pixel ``j`` stands for exactly
   the ``ratio`` input pixels ``j*ratio ... j*ratio + ratio - 1`` it covers,
   so it is sampled at their centre ``j*ratio + (ratio - 1) / 2``. For an
   even ratio that point falls between two pixels; the filter taps are
   therefore built at offsets measured from the block centre (half-integer
   offsets for even ratios) rather than filtering on the pixel grid and
   picking a pixel, which would shift the result by half a pixel. This
   matches the georeferencing rule of DESIGN.md: an MS pixel covers exactly
   ``r x r`` PAN pixels and both grids share corners.

Borders are extended by half-sample symmetric reflection (``d c b a | a b c
d``), the mirror that keeps the block-centre grid symmetric. When the size
is not a multiple of the ratio, the incomplete last block is dropped (the
origin, hence the georeferencing, is kept) but its pixels still feed the
filter of the last complete block.

Everything here is plain numpy so that it runs inside QGIS's Python.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

#: Gain at Nyquist used when nothing better is known: the usual choice for
#: MS bands in the pansharpening literature (Vivone et al. 2015 use it for
#: sensors without a measured MTF), and the project's default.
DEFAULT_MS_GAIN = 0.3
#: Same for the PAN band (Vivone et al. 2015, QuickBird PAN; the common default).
DEFAULT_PAN_GAIN = 0.15

#: Per-sensor MTF gains at Nyquist (MS bands in the order B, G, R, NIR; PAN).
#: Source: G. Vivone et al., "A Critical Comparison Among Pansharpening
#: Algorithms", IEEE TGRS 53(5), 2565-2586, 2015, the values of its
#: reduced-resolution protocol (pre-flight/on-orbit MTF measurements collected
#: by the authors). No comparable published per-band values were found for
#: Landsat 7 ETM+ or Landsat 8/9 OLI, so Landsat uses the generic defaults
#: (``"generic"``): see :func:`sensor_gains`.
SENSOR_GAINS: dict[str, dict[str, object]] = {
    "generic": {"ms": (DEFAULT_MS_GAIN,) * 4, "pan": DEFAULT_PAN_GAIN},
    "quickbird": {"ms": (0.34, 0.32, 0.30, 0.22), "pan": 0.15},
    "ikonos": {"ms": (0.26, 0.28, 0.29, 0.28), "pan": 0.17},
    "geoeye1": {"ms": (0.23, 0.23, 0.23, 0.23), "pan": 0.16},
    # WorldView-2's four classic bands (B, G, R, NIR1) of its eight.
    "worldview2": {"ms": (0.35, 0.35, 0.35, 0.35), "pan": 0.11},
}

#: The Gaussian is truncated this many standard deviations from the centre;
#: the dropped mass (< 1e-8 at 6 sigma) is far below any image's noise.
_TRUNCATE = 6.0


def sensor_gains(sensor: str, bands: int) -> tuple[list[float], float]:
    """MS gains (one per band) and the PAN gain for a sensor of
    :data:`SENSOR_GAINS`; unknown sensors and band counts other than the
    table's fall back to the generic defaults."""
    entry = SENSOR_GAINS.get(sensor.lower().replace(" ", "").replace("-", ""))
    if entry is None:
        return [DEFAULT_MS_GAIN] * bands, DEFAULT_PAN_GAIN
    ms = list(entry["ms"])  # type: ignore[call-overload]
    if len(ms) != bands:
        ms = [DEFAULT_MS_GAIN] * bands
    return ms, float(entry["pan"])  # type: ignore[arg-type]


def mtf_sigma(ratio: float, nyquist_gain: float) -> float:
    """Standard deviation (in input pixels) of the Gaussian whose amplitude
    response at ``1 / (2 ratio)`` cycles/pixel equals ``nyquist_gain``.

    From ``exp(-2 pi^2 sigma^2 f^2) = g`` at ``f = 1 / (2 ratio)``:
    ``sigma = ratio * sqrt(-2 ln g) / pi``. The sampled taps of
    :func:`block_centre_taps` keep that gain to within 1e-3 for ratio >= 3,
    and for ratio 2 up to a gain of 0.4 (0.29998 for 0.3; a gain of 0.5
    measures 0.498, from the aliasing of a narrow sampled Gaussian).
    """
    if not 0.0 < nyquist_gain < 1.0:
        raise ValueError(f"the gain at Nyquist must lie in (0, 1), got {nyquist_gain}")
    if ratio <= 0:
        raise ValueError(f"ratio must be positive, got {ratio}")
    return ratio * math.sqrt(-2.0 * math.log(nyquist_gain)) / math.pi


def block_centre_taps(ratio: int, sigma: float) -> tuple[int, np.ndarray]:
    """Filter taps for block-centre decimation along one axis.

    Returns ``(first, weights)``: output pixel ``j`` is
    ``sum_k weights[k] * x[j*ratio + first + k]``. Tap ``k`` sits at the
    offset ``first + k - (ratio - 1) / 2`` from the block centre, so the
    taps are symmetric about the centre and sum to one.
    """
    half = math.ceil(_TRUNCATE * sigma)
    first = -half
    idx = np.arange(first, ratio + half, dtype=np.float64)
    offsets = idx - (ratio - 1) / 2.0
    w = np.exp(-0.5 * (offsets / sigma) ** 2)
    return first, w / w.sum()


def filter_halo(ratio: int, nyquist_gain: float | Sequence[float]) -> int:
    """Context (input pixels, a multiple of ``ratio``) that a window needs on
    each side so that degrading the window and dropping ``halo // ratio``
    output pixels per side reproduces the whole-image result exactly (for
    windows whose origin is a multiple of ``ratio``)."""
    gains = [nyquist_gain] if np.ndim(nyquist_gain) == 0 else list(nyquist_gain)  # type: ignore[arg-type]
    half = max(math.ceil(_TRUNCATE * mtf_sigma(ratio, float(g))) for g in gains)
    return math.ceil(half / ratio) * ratio


def _reduce_axis(x: np.ndarray, axis: int, ratio: int, sigma: float, n_out: int) -> np.ndarray:
    """Filter and decimate ``x`` along ``axis`` to ``n_out`` samples."""
    first, w = block_centre_taps(ratio, sigma)
    n = x.shape[axis]
    pad_lo = -first
    pad_hi = max(0, (n_out - 1) * ratio + first + len(w) - n)
    pad = [(0, 0)] * x.ndim
    pad[axis] = (pad_lo, pad_hi)
    xp = np.pad(x, pad, mode="symmetric")
    out_shape = list(x.shape)
    out_shape[axis] = n_out
    out = np.zeros(out_shape, np.float64)
    sl: list[slice] = [slice(None)] * x.ndim
    stop_span = (n_out - 1) * ratio + 1
    for k, wk in enumerate(w):
        # x[j*ratio + first + k] lives at padded index j*ratio + k.
        sl[axis] = slice(k, k + stop_span, ratio)
        out += wk * xp[tuple(sl)]
    return out


def _gains_per_band(nyquist_gain: float | Sequence[float], bands: int) -> list[float]:
    if np.ndim(nyquist_gain) == 0:
        return [float(nyquist_gain)] * bands  # type: ignore[arg-type]
    gains = [float(g) for g in nyquist_gain]  # type: ignore[union-attr]
    if len(gains) != bands:
        raise ValueError(f"{len(gains)} gains given for {bands} bands")
    return gains


def _degrade_to(
    image: np.ndarray,
    ratio: int,
    nyquist_gain: float | Sequence[float],
    rows_out: int,
    cols_out: int,
) -> np.ndarray:
    """Degrade to exactly ``(rows_out, cols_out)`` low-resolution pixels,
    using real pixels beyond that extent where the image has them."""
    if ratio < 1 or int(ratio) != ratio:
        raise ValueError(f"ratio must be a positive integer, got {ratio}")
    ratio = int(ratio)
    squeeze = image.ndim == 2
    img = image[None] if squeeze else image
    if img.ndim != 3:
        raise ValueError(f"expected (bands, rows, cols) or (rows, cols), got shape {image.shape}")
    if rows_out < 1 or cols_out < 1:
        raise ValueError(
            f"an image of {img.shape[1]} x {img.shape[2]} pixels is smaller than one "
            f"{ratio} x {ratio} block"
        )
    out_dtype = np.float32 if img.dtype == np.float32 else np.float64
    gains = _gains_per_band(nyquist_gain, img.shape[0])
    out = np.empty((img.shape[0], rows_out, cols_out), out_dtype)
    if ratio == 1:
        out[:] = img[:, :rows_out, :cols_out]
        return out[0] if squeeze else out
    for g in sorted(set(gains)):
        idx = [b for b, gb in enumerate(gains) if gb == g]
        sigma = mtf_sigma(ratio, g)
        x = np.asarray(img[idx], np.float64)
        x = _reduce_axis(x, 1, ratio, sigma, rows_out)
        out[idx] = _reduce_axis(x, 2, ratio, sigma, cols_out)
    return out[0] if squeeze else out


def degrade(
    image: np.ndarray, ratio: int, nyquist_gain: float | Sequence[float] = DEFAULT_MS_GAIN
) -> np.ndarray:
    """Low-pass with the Gaussian MTF model and decimate at block centres.

    ``image`` is (bands, rows, cols) or (rows, cols); ``nyquist_gain`` is one
    gain or one per band. The result has ``rows // ratio`` x ``cols //
    ratio`` pixels, float32 for float32 input and float64 otherwise.
    """
    rows, cols = image.shape[-2:]
    return _degrade_to(image, ratio, nyquist_gain, rows // ratio, cols // ratio)


def wald_pair(
    ms: np.ndarray,
    pan: np.ndarray,
    native_ratio: int,
    model_ratio: int,
    ms_gain: float | Sequence[float] = DEFAULT_MS_GAIN,
    pan_gain: float = DEFAULT_PAN_GAIN,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reduced-resolution training/assessment triple.

    ``ms`` (bands, h, w) and ``pan`` (H, W) or (1, H, W) share their top-left
    corner with ``H ~ native_ratio * h``. The MS is degraded by
    ``model_ratio`` and the PAN by ``native_ratio``, so the inputs sit at
    ``model_ratio`` and the target is the original MS:

    - ``ms_lr``: (bands, h' / model_ratio, w' / model_ratio)
    - ``pan_lr``: (h', w') (or (1, h', w') like ``pan``), on the MS grid
    - ``target``: the original MS cropped to (bands, h', w')

    where ``h'``, ``w'`` are the largest multiples of ``model_ratio`` that
    both images cover. ``model_ratio`` must be a multiple of ``native_ratio``
    (the PAN can only be brought to the MS grid, not beyond it).
    """
    if model_ratio % native_ratio:
        raise ValueError(
            f"model ratio {model_ratio} is not a multiple of the native ratio {native_ratio}"
        )
    if ms.ndim != 3:
        raise ValueError(f"ms must be (bands, rows, cols), got shape {ms.shape}")
    h = min(ms.shape[1], pan.shape[-2] // native_ratio) // model_ratio * model_ratio
    w = min(ms.shape[2], pan.shape[-1] // native_ratio) // model_ratio * model_ratio
    if h == 0 or w == 0:
        raise ValueError(
            f"MS {ms.shape[1:]} and PAN {pan.shape[-2:]} are too small for one "
            f"{model_ratio} x {model_ratio} block"
        )
    ms_lr = _degrade_to(ms, model_ratio, ms_gain, h // model_ratio, w // model_ratio)
    pan_lr = _degrade_to(pan, native_ratio, pan_gain, h, w)
    target = ms[:, :h, :w]
    return ms_lr, pan_lr, target


def cubic_phase_weights(ratio: int, a: float = -0.5) -> tuple[np.ndarray, np.ndarray]:
    """Keys cubic-convolution weights for upsampling by ``ratio`` on the
    block-centre grid.

    High-resolution pixel ``i = j*ratio + p`` lies at low-resolution
    coordinate ``j + (p - (ratio - 1) / 2) / ratio`` (centre to centre). It is
    ``sum_k weights[p, k] * x[j + offsets[p] + k]`` for ``k = 0..3``. Returns
    ``(offsets (ratio,), weights (ratio, 4))``; each weight row sums to one.
    """
    t = (np.arange(ratio) - (ratio - 1) / 2.0) / ratio
    base = np.floor(t).astype(int) - 1
    d = t[:, None] - (base[:, None] + np.arange(4)[None, :])
    ad = np.abs(d)
    w = np.where(
        ad <= 1,
        (a + 2) * ad**3 - (a + 3) * ad**2 + 1,
        np.where(ad < 2, a * ad**3 - 5 * a * ad**2 + 8 * a * ad - 4 * a, 0.0),
    )
    return base, w


def _upsample_axis(x: np.ndarray, axis: int, ratio: int) -> np.ndarray:
    base, w = cubic_phase_weights(ratio)
    n = x.shape[axis]
    lo = int(-base.min())
    hi = int(max(0, base.max() + 3))
    pad = [(0, 0)] * x.ndim
    pad[axis] = (lo, hi)
    xp = np.pad(x, pad, mode="symmetric")
    out_shape = list(x.shape)
    out_shape[axis] = n * ratio
    out = np.zeros(out_shape, np.float64)
    src: list[slice] = [slice(None)] * x.ndim
    dst: list[slice] = [slice(None)] * x.ndim
    for p in range(ratio):
        dst[axis] = slice(p, None, ratio)
        acc = 0.0
        for k in range(4):
            start = lo + int(base[p]) + k
            src[axis] = slice(start, start + n)
            acc = acc + w[p, k] * xp[tuple(src)]
        out[tuple(dst)] = acc
    return out


def upsample_cubic(image: np.ndarray, ratio: int) -> np.ndarray:
    """Cubic (Keys, a = -0.5) interpolation by ``ratio`` on the block-centre
    grid: the classical "EXP" baseline and the inverse geometry of
    :func:`degrade`. (bands, rows, cols) or (rows, cols) in; float64 (float32
    for float32 input) of ``ratio`` times the size out."""
    squeeze = image.ndim == 2
    x = np.asarray(image[None] if squeeze else image, np.float64)
    out = _upsample_axis(_upsample_axis(x, 1, ratio), 2, ratio)
    if image.dtype == np.float32:
        out = out.astype(np.float32)
    return out[0] if squeeze else out


#: Steps of :func:`consistency_projection` (the second takes up most of what
#: the first leaves).
PROJECTION_STEPS = 2


def consistency_projection(
    fused: np.ndarray, ms: np.ndarray, ratio: int, steps: int = PROJECTION_STEPS
) -> np.ndarray:
    """``fused`` (L, H, W) moved towards degrade(fused) == ``ms`` (L, H/r, W/r):
    each step adds the cubic upsampling of the remaining low-resolution
    difference (float64)."""
    out = np.array(fused, np.float64)
    rows, cols = ms.shape[-2] * ratio, ms.shape[-1] * ratio
    for _ in range(steps):
        residual = ms - degrade(out[:, :rows, :cols], ratio, DEFAULT_MS_GAIN)
        out[:, :rows, :cols] += upsample_cubic(residual, ratio)
    return out


@lru_cache(maxsize=8)
def projection_halo(ratio: int, steps: int = PROJECTION_STEPS) -> int:
    """PAN pixels around a pixel that :func:`consistency_projection` reads
    (measured with an impulse, as the model's halo is): a tile must keep that
    much more overlap for its core to come out as the whole image's."""
    size = 16 * ratio * (steps + 1)
    centre = size // 2
    fused = np.zeros((1, size, size))
    fused[0, centre, centre] = 1.0
    ms = np.zeros((1, size // ratio, size // ratio))
    change = np.abs(consistency_projection(fused, ms, ratio, steps) - fused)[0]
    change[centre, centre] = 0.0
    change += np.abs(consistency_projection(np.zeros_like(fused), _impulse(ms, centre // ratio),
                                            ratio, steps))[0]
    ys, xs = np.nonzero(change > 1e-12)
    return int(max(np.abs(ys - centre).max(), np.abs(xs - centre).max()))


def _impulse(ms: np.ndarray, at: int) -> np.ndarray:
    out = np.zeros_like(ms)
    out[0, at, at] = 1.0
    return out
