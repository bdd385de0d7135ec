"""The batch's manifest and settings (no cluster): the algorithm's defaults,
COG options, clear sentences for a manifest that cannot be used; strips as
rows of tiles that partition the tile list."""

from __future__ import annotations

from dataclasses import fields
from itertools import pairwise

import pytest

from ada3d_qgis.batch.__main__ import main, parser, settings_from
from ada3d_qgis.batch.manifest import (
    COG_OPTIONS,
    BatchSettings,
    Scene,
    check_output_name,
    read_manifest,
)
from ada3d_qgis.engine import Ada3DError
from ada3d_qgis.engine.pipeline import RunOptions
from ada3d_qgis.engine.scene_plan import tile_rows
from ada3d_qgis.engine.tiling import tile_grid


def test_defaults_are_the_algorithms():
    opts = BatchSettings().run_options(Scene("p.tif", "m.tif", "o.tif"))
    engine = {f.name: f.default for f in fields(RunOptions) if f.name not in ("pan", "ms",
                                                                              "output")}
    for name in ("pan_band", "ms_bands", "model", "device", "tile_size", "overlap",
                 "consistency"):
        assert getattr(opts, name) == engine[name], name
    assert opts.driver == "COG" and list(opts.creation_options) == list(COG_OPTIONS)
    # The command line's defaults are the same settings.
    assert settings_from(parser().parse_args(["--manifest", "x.csv"])) == BatchSettings()


def test_command_line_options_reach_the_run_options():
    args = parser().parse_args(["--manifest", "x.csv", "--pan-band", "2", "--ms-bands", "3,2,1",
                                "--device", "cpu", "--tile-size", "128", "--overlap", "16",
                                "--options", "BLOCKSIZE=512|OVERVIEWS=NONE", "--consistency"])
    opts = settings_from(args).run_options(Scene("p.tif", "m.tif", "o.tif", "own.onnx"))
    assert (opts.pan_band, opts.ms_bands, opts.device, opts.tile_size, opts.overlap,
            opts.model, opts.consistency) == (2, [3, 2, 1], "cpu", 128, 16, "own.onnx", True)
    assert "BLOCKSIZE=512" in opts.creation_options and "OVERVIEWS=NONE" in opts.creation_options
    assert "BLOCKSIZE=256" not in opts.creation_options  # the user's value replaces the default


def test_manifest_paths_are_taken_from_its_folder(tmp_path):
    (tmp_path / "m.csv").write_text("PAN, ms ,out\n a.tif,b.tif,out/c.tif\n\n/abs/p.tif,"
                                    "/vsicurl/https://x/m.tif,d.tif\n")
    scenes = read_manifest(tmp_path / "m.csv")
    assert scenes == [
        Scene(str(tmp_path / "a.tif"), str(tmp_path / "b.tif"), str(tmp_path / "out/c.tif")),
        Scene("/abs/p.tif", "/vsicurl/https://x/m.tif", str(tmp_path / "d.tif")),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pan,ms\na.tif,b.tif\n", "it lacks out."),
        ("pan,ms,out\n", "it has no scene."),
        ("pan,ms,out\na,b,x.tif\nc,d,x.tif\n", "names the same output for several scenes"),
    ],
)
def test_unusable_manifests_are_refused_with_a_sentence(tmp_path, capsys, text, expected):
    manifest = tmp_path / "m.csv"
    manifest.write_text(text)
    with pytest.raises(Ada3DError, match=expected):
        read_manifest(manifest)
    assert main(["--manifest", str(manifest)]) == 2
    assert expected in capsys.readouterr().err


def test_missing_manifest_and_non_tiff_output(tmp_path):
    with pytest.raises(Ada3DError, match="cannot be read"):
        read_manifest(tmp_path / "none.csv")
    with pytest.raises(Ada3DError, match=r"does not end in \.tif"):
        check_output_name("out.png")
    check_output_name("OUT.TIFF")


def test_strips_are_the_rows_of_tiles():
    tiles = tile_grid(500, 300, 64, 14, 2)
    rows = tile_rows(tiles)
    assert len(rows) > 3 and rows[0][0] == 0 and rows[-1][1] == len(tiles)
    assert all(a[1] == b[0] for a, b in pairwise(rows))  # a partition, in order
    for first, stop in rows:
        assert len({t.core_y for t in tiles[first:stop]}) == 1
