"""Which model runs: the user's .onnx file, or the shipped one that fits.

A model fits an input when it takes exactly the selected number of MS bands and
its ratio matches the PAN/MS pixel-size ratio (:func:`.raster_io.ratio_fits`).
Every choice comes with a sentence saying why, for the log.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.metadata import ModelMetadata
from . import Ada3DError
from .raster_io import ratio_fits
from .session import import_onnxruntime, read_metadata

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "models"


@dataclass(frozen=True)
class ModelChoice:
    path: Path
    metadata: ModelMetadata
    reason: str


def _describe(meta: ModelMetadata) -> str:
    return f"{meta.bands} bands ({', '.join(meta.band_names)}) at ratio {meta.ratio}"


def check_fit(path: Path, meta: ModelMetadata, bands: int, measured_ratio: float) -> None:
    """Raise a sentence when ``meta`` cannot run on the input."""
    if meta.bands != bands:
        raise Ada3DError(
            f"The model {path.name} takes {meta.bands} multispectral bands "
            f"({', '.join(meta.band_names)}), but {bands} are selected; select "
            f"{meta.bands} bands in that order."
        )
    if not ratio_fits(measured_ratio, meta.ratio):
        raise Ada3DError(
            f"The multispectral pixels are {measured_ratio:.3g} times the panchromatic pixel "
            f"size, but the model {path.name} is made for a ratio of {meta.ratio}."
        )


def shipped_models(folder: Path = SHIPPED_DIR) -> list[tuple[Path, ModelMetadata]]:
    """Every readable Ada3D model in ``folder`` (unreadable files are skipped)."""
    # Without onnxruntime no file is readable: say that, not "no model installed".
    import_onnxruntime()
    found = []
    for path in sorted(folder.glob("*.onnx")):
        try:
            found.append((path, read_metadata(path)))
        except Ada3DError:
            continue
    return found


#: Words and phrases that name a spectral band, by the band they name.
#: Phrases are matched before single words ("red edge" is not red).
BAND_WORDS = {
    "coastal": ("coastal aerosol", "coastal", "aerosol"),
    "blue": ("blue", "b"),
    "green": ("green", "g"),
    "yellow": ("yellow",),
    "red edge": ("red edge", "rededge", "re"),
    "red": ("red", "r"),
    "swir": ("short wave infrared", "shortwave infrared", "swir", "swir1", "swir2"),
    "nir": ("near infrared", "nearinfrared", "nir", "infrared", "ir"),
    "pan": ("panchromatic", "pan"),
}


def band_kind(text: str) -> str | None:
    """The spectral band a description or band name names ("NIR (B5)": nir,
    "B": blue), or None when it names none."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    padded = f" {' '.join(words)} "
    phrases = [(k, w) for k, names in BAND_WORDS.items() for w in names if " " in w]
    for kind, phrase in phrases:
        if f" {phrase} " in padded:
            return kind
    singles = {w: k for k, names in BAND_WORDS.items() for w in names if " " not in w}
    return next((singles[w] for w in words if w in singles), None)


def _name_matches(meta: ModelMetadata, descriptions: Sequence[str]) -> int:
    """How many selected MS bands are described as the model's band of that place."""
    return sum(
        1
        for name, text in zip(meta.band_names, descriptions)
        if band_kind(name) is not None and band_kind(name) == band_kind(text)
    )


def band_order_warning(
    path: Path, meta: ModelMetadata, descriptions: Sequence[str], bands: Sequence[int]
) -> str | None:
    """A warning when the selected bands' descriptions name other spectral
    bands than the model expects at their places (e.g. NIR where it takes blue)."""
    clashes = []
    for place, (name, text, band) in enumerate(zip(meta.band_names, descriptions, bands), 1):
        expected, described = band_kind(name), band_kind(text)
        if expected and described and expected != described:
            clashes.append(f"selected band {place} (band {band}) is described {text!r} where "
                           f"the model takes {name}")
    if not clashes:
        return None
    return (
        f"Warning: the selected bands are not in the order the model {path.name} takes them "
        f"({', '.join(meta.band_names)}): {'; '.join(clashes)}. The result is likely wrong; "
        "select the bands in the model's order (SPECTRAL_BANDS)."
    )


def choose_model(
    bands: int,
    measured_ratio: float,
    explicit: str | Path | None = None,
    descriptions: Sequence[str] = (),
    folder: Path = SHIPPED_DIR,
) -> ModelChoice:
    """The model to run on ``bands`` MS bands at ``measured_ratio``, and why."""
    if explicit:
        path = Path(explicit)
        meta = read_metadata(path)
        check_fit(path, meta, bands, measured_ratio)
        return ModelChoice(path, meta, f"the model file given ({_describe(meta)})")
    candidates = shipped_models(folder)
    if not candidates:
        raise Ada3DError(
            f"No model is installed in {folder}; give a model file (MODEL) exported with "
            "python -m model_export.export."
        )
    fitting = [
        (p, m) for p, m in candidates if m.bands == bands and ratio_fits(measured_ratio, m.ratio)
    ]
    if not fitting:
        offered = "; ".join(f"{p.name}: {_describe(m)}" for p, m in candidates)
        raise Ada3DError(
            f"No installed model fits {bands} multispectral bands at a pixel-size ratio of "
            f"{measured_ratio:.3g} (installed: {offered}). Select other bands, resample the "
            "inputs, or give a model file (MODEL)."
        )
    # Prefer the model whose band names match the MS band descriptions, then by name.
    fitting.sort(key=lambda pm: (-_name_matches(pm[1], descriptions), pm[0].name))
    path, meta = fitting[0]
    why = f"the shipped model for {_describe(meta)}, which fits the input"
    if len(fitting) > 1:
        why += (
            f" ({len(fitting)} fit; this one's band names match the input best, "
            "then by file name)"
        )
    return ModelChoice(path, meta, why)
