"""Which model runs: the user's .onnx file, or the shipped one that fits.

A model fits an input when it takes the selected number of MS bands (exactly,
or within the range of a band-agnostic model, issue 18) and its ratio matches
the PAN/MS pixel-size ratio (:func:`.raster_io.ratio_fits`). A model made for
exactly that band count is preferred to a band-agnostic one unless the latter's
validation shows it at least as good on those bands. Every choice comes with a
sentence saying why, for the log.
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
    if meta.band_agnostic:
        low, high = meta.band_range
        return (
            f"any {low} to {high} bands (band-agnostic, trained on "
            f"{', '.join(meta.band_names)}) at ratio {meta.ratio}"
        )
    return f"{meta.bands} bands ({', '.join(meta.band_names)}) at ratio {meta.ratio}"


def check_fit(path: Path, meta: ModelMetadata, bands: int, measured_ratio: float) -> None:
    """Raise a sentence when ``meta`` cannot run on the input."""
    if meta.band_agnostic and not meta.takes(bands):
        low, high = meta.band_range
        raise Ada3DError(
            f"The model {path.name} takes {low} to {high} multispectral bands, but "
            f"{bands} are selected; select {low} to {high} bands."
        )
    if not meta.band_agnostic and meta.bands != bands:
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


def shipped_models(folder: Path | None = None) -> list[tuple[Path, ModelMetadata]]:
    """Every readable Ada3D model in ``folder`` (default: the shipped ones;
    unreadable files are skipped)."""
    folder = SHIPPED_DIR if folder is None else folder
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
    folder: Path | None = None,
) -> ModelChoice:
    """The model to run on ``bands`` MS bands at ``measured_ratio``, and why
    (``folder``: where the installed models are, default the shipped ones)."""
    # Read when called, not when defined, so that tests can point it elsewhere.
    folder = SHIPPED_DIR if folder is None else folder
    if explicit:
        path = Path(explicit)
        meta = read_metadata(path)
        check_fit(path, meta, bands, measured_ratio)
        why = f"the model file given ({_describe(meta)}{_run_on(meta, bands)})"
        return ModelChoice(path, meta.for_bands(bands), why)
    candidates = shipped_models(folder)
    if not candidates:
        raise Ada3DError(
            f"No model is installed in {folder}; give a model file (MODEL) exported with "
            "python -m model_export.export."
        )
    fitting = [
        (p, m) for p, m in candidates if m.takes(bands) and ratio_fits(measured_ratio, m.ratio)
    ]
    if not fitting:
        offered = "; ".join(f"{p.name}: {_describe(m)}" for p, m in candidates)
        raise Ada3DError(
            f"No installed model fits {bands} multispectral bands at a pixel-size ratio of "
            f"{measured_ratio:.3g} (installed: {offered}). Select other bands, resample the "
            "inputs, or give a model file (MODEL)."
        )
    fixed = [(p, m) for p, m in fitting if not m.band_agnostic]
    agnostic = sorted((pm for pm in fitting if pm[1].band_agnostic), key=lambda pm: pm[0].name)
    if fixed:
        # Prefer the model whose band names match the MS band descriptions, then by name.
        fixed.sort(key=lambda pm: (-_name_matches(pm[1], descriptions), pm[0].name))
        path, meta = fixed[0]
        better = next((pm for pm in agnostic if _at_least_as_good(pm[1], meta)), None)
        if better is None:
            why = f"the shipped model for {_describe(meta)}, which fits the input"
            if len(fixed) > 1:
                why += (
                    f" ({len(fixed)} fit; this one's band names match the input best, "
                    "then by file name)"
                )
            if agnostic:
                why += (
                    f"; preferred to the band-agnostic {agnostic[0][0].name}, whose "
                    f"validation on {', '.join(meta.band_names)} is not as good"
                )
            return ModelChoice(path, meta, why)
        why = (
            f"the shipped band-agnostic model for {_describe(better[1])}"
            f"{_run_on(better[1], bands)}; preferred to {path.name}, as its validation "
            f"ERGAS on {', '.join(meta.band_names)} is at least as good"
        )
        return ModelChoice(better[0], better[1].for_bands(bands), why)
    path, meta = agnostic[0]
    why = (
        f"the shipped band-agnostic model for {_describe(meta)}{_run_on(meta, bands)}, "
        f"as no model is made for exactly {bands} bands"
    )
    return ModelChoice(path, meta.for_bands(bands), why)


def _run_on(meta: ModelMetadata, bands: int) -> str:
    """", run on the 5 selected bands" for a band-agnostic model, else nothing;
    it says so when they are more than the bands it was trained with."""
    if not meta.band_agnostic:
        return ""
    trained = len(meta.band_names)
    beyond = f", more than the {trained} it was trained with" if bands > trained else ""
    return f", run on the {bands} selected bands{beyond}"


def _at_least_as_good(agnostic: ModelMetadata, fixed: ModelMetadata) -> bool:
    """Whether the band-agnostic model's validation on the fixed model's bands
    (``validation["subsets"]["B,G,R,NIR"]``) has an ERGAS no higher than the
    fixed model's own; unknown counts as not."""
    if agnostic.ratio != fixed.ratio:
        return False
    subset = (agnostic.validation.get("subsets") or {}).get(",".join(fixed.band_names)) or {}
    mine, theirs = subset.get("ergas"), fixed.validation.get("ergas")
    numbers = (int, float)
    return isinstance(mine, numbers) and isinstance(theirs, numbers) and mine <= theirs
