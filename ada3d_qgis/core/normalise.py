"""Scene-level input normalisation, shared by training and inference.

Ada3D runs in a normalised space: each band (MS bands and the PAN) is
standardised with the mean and standard deviation of the *whole scene* the
model is given, never of a tile or patch, so that every tile of a scene sees
the same mapping and a model trained on one sensor's digital numbers works on
another's. The statistics are accumulated in one streamed pass
(:class:`RunningStats`), window by window, with nodata pixels left out.

The fused output is mapped back with the MS statistics (:func:`denormalise`).
The method name below is written into the model metadata
(``normalisation``) so that a reader knows which mapping the weights expect.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METHOD = "scene_meanstd"

#: A band whose spread is below this fraction of its mean magnitude (or 1e-6
#: absolute) is treated as constant, so that division stays finite.
_MIN_STD = 1e-6


@dataclass(frozen=True)
class BandStats:
    """Per-band mean and standard deviation of a scene (1-D arrays)."""

    mean: np.ndarray
    std: np.ndarray

    def to_json(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_json(cls, d: dict) -> BandStats:
        return cls(np.asarray(d["mean"], np.float64), np.asarray(d["std"], np.float64))


class RunningStats:
    """Exact streamed mean/std per band, fed window by window.

    Sums are kept in float64 around a per-band shift (the first window's
    mean) so that large digital numbers do not lose precision.
    """

    def __init__(self, bands: int) -> None:
        self.bands = bands
        self._n = np.zeros(bands, np.float64)
        self._s = np.zeros(bands, np.float64)
        self._ss = np.zeros(bands, np.float64)
        self._shift: np.ndarray | None = None

    def update(self, block: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add a window: ``block`` is (bands, rows, cols); ``valid`` is a
        boolean (rows, cols) or (bands, rows, cols) mask of pixels to count."""
        block = np.asarray(block, np.float64).reshape(self.bands, -1)
        if valid is None:
            mask = np.ones_like(block, bool)
        else:
            mask = np.broadcast_to(
                np.asarray(valid, bool).reshape(-1, block.shape[1]), block.shape
            )
        if self._shift is None:
            n = mask.sum(axis=1)
            if not n.any():
                return
            # np.where, not a product: masked-out pixels may hold NaN nodata.
            total = np.where(mask, block, 0.0).sum(axis=1)
            self._shift = np.where(n > 0, total / np.maximum(n, 1), 0.0)
        d = np.where(mask, block - self._shift[:, None], 0.0)
        self._n += mask.sum(axis=1)
        self._s += d.sum(axis=1)
        self._ss += (d * d).sum(axis=1)

    @property
    def count(self) -> np.ndarray:
        return self._n.copy()

    def result(self) -> BandStats:
        if self._shift is None or (self._n == 0).any():
            raise ValueError("no valid pixels were seen in at least one band")
        m = self._s / self._n
        var = np.maximum(self._ss / self._n - m * m, 0.0)
        mean = self._shift + m
        std = np.maximum(np.sqrt(var), np.maximum(np.abs(mean) * _MIN_STD, _MIN_STD))
        return BandStats(mean, std)


def scene_stats(image: np.ndarray, valid: np.ndarray | None = None) -> BandStats:
    """Statistics of a whole (bands, rows, cols) array held in memory."""
    rs = RunningStats(image.shape[0])
    rs.update(image, valid)
    return rs.result()


def normalise(x: np.ndarray, stats: BandStats) -> np.ndarray:
    """Map digital numbers (bands, ...) to the model's space, as float32."""
    shape = (-1,) + (1,) * (x.ndim - 1)
    return ((x - stats.mean.reshape(shape)) / stats.std.reshape(shape)).astype(np.float32)


def denormalise(z: np.ndarray, stats: BandStats) -> np.ndarray:
    """Inverse of :func:`normalise` (float64 result; clip and cast yourself)."""
    shape = (-1,) + (1,) * (z.ndim - 1)
    return z.astype(np.float64) * stats.std.reshape(shape) + stats.mean.reshape(shape)
