"""Issue 18: the optional band-range keys of band-agnostic models."""

from __future__ import annotations

import pytest

from ada3d_qgis.core.metadata import MetadataError, ModelMetadata

NAMES = ["B", "G", "R", "NIR", "SWIR1", "SWIR2"]


def _meta(**overrides) -> ModelMetadata:
    kwargs = dict(
        model_name="any",
        config={},
        bands=6,
        band_names=NAMES,
        ratio=2,
        normalisation={"method": "scene_meanstd"},
        halo=16,
        tile_size=256,
        overlap=16,
        context_size=2 * 2 * (16 * 6 + 16),
        min_bands=3,
        max_bands=6,
        context_per_band=2 * 2 * 16,
    )
    kwargs.update(overrides)
    return ModelMetadata(**kwargs)


def test_a_file_without_the_keys_takes_exactly_its_bands():
    props = _meta().to_props()
    for key in ("min_bands", "max_bands", "context_per_band"):
        del props[key]
    old = ModelMetadata.from_props(props)
    assert not old.band_agnostic and old.band_range == (6, 6)
    assert old.takes(6) and not old.takes(5)
    assert old.for_bands(6) is old and old.context_size_for(6) == old.context_size


def test_band_range_round_trips_and_resolves_per_band_count():
    meta = ModelMetadata.from_props(_meta().to_props())
    assert meta.band_agnostic and meta.band_range == (3, 6)
    assert [n for n in range(1, 9) if meta.takes(n)] == [3, 4, 5, 6]
    five = meta.for_bands(5)
    assert five.bands == 5 and five.context_size == 2 * 2 * (16 * 5 + 16)
    # Any bands in any order: no names to match or to warn about.
    assert five.band_names == ["band1", "band2", "band3", "band4", "band5"]
    assert meta.for_bands(6).band_names != NAMES
    with pytest.raises(MetadataError, match="3 to 6 bands, not 8"):
        meta.for_bands(8)


def test_a_range_that_excludes_its_own_bands_is_refused():
    props = _meta(min_bands=3, max_bands=6).to_props()
    props["max_bands"] = "5"
    with pytest.raises(MetadataError, match="band range 3 to 5"):
        ModelMetadata.from_props(props)
