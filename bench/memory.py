"""`make bench-memory`: peak memory of ``ada3d:pansharpen`` on a very large
scene, without waiting for the whole scene.

A virtual mosaic (GDAL VRT, nothing written to disk) repeats the embedded
Landsat 8 sample into a PAN of SIZE x SIZE pixels (default 20480, more than the
20000 x 20000 of issue 4) with its MS at half the size, on the real grid with
the real half-pixel offset. The algorithm runs through QGIS Processing in its
own process: the statistics pass over the whole scene, pass 1 (pooled context)
on its spread tiles, then written tiles until ``--tiles`` model runs (pass 1's
included) are done, then it is cancelled as a user would. Every later tile
repeats the same work on the same tile size, so the peak resident memory of
the process (Linux ``ru_maxrss``, measured by bench/measure.py) is the window's
working memory plus GDAL's block cache. pipeline.py sizes that cache to the
blocks one row of tiles touches (at this width the 256 MiB cap); the default
``--tiles`` (16 for pass 1, then two rows of 90 windows of 256 px and a few
more) runs long enough for the cache to fill and turn over.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

from osgeo import gdal

from bench.measure import measure

REPO = Path(__file__).resolve().parents[1]
SAMPLE_PAN = REPO / "tests" / "data" / "l8_pan.tif"
SAMPLE_MS = REPO / "tests" / "data" / "l8_ms.tif"

gdal.UseExceptions()

#: The pipeline's progress line: "Tile k/n; about ... left." (pass 1 counted).
TILE_LINE = re.compile(r"Tile (\d+)/\d+")


def tiled_vrt(src: Path, out: Path, reps: int) -> Path:
    """``src`` repeated ``reps`` x ``reps`` times side by side, as a VRT."""
    ds = gdal.Open(str(src))
    x0, dx, _, y0, _, dy = ds.GetGeoTransform()
    w, h = ds.RasterXSize, ds.RasterYSize
    sources = [(j * w, i * h) for i in range(reps) for j in range(reps)]  # pixel offsets
    vrt = gdal.GetDriverByName("VRT").Create(str(out), w * reps, h * reps, 0)
    vrt.SetGeoTransform((x0, dx, 0.0, y0, 0.0, dy))
    vrt.SetProjection(ds.GetProjection())
    for b in range(1, ds.RasterCount + 1):
        band = ds.GetRasterBand(b)
        vrt.AddBand(band.DataType)
        out_band = vrt.GetRasterBand(b)
        out_band.SetDescription(band.GetDescription())
        xml = "".join(
            f"<SimpleSource><SourceFilename relativeToVRT='0'>{src}</SourceFilename>"
            f"<SourceBand>{b}</SourceBand>"
            f"<SrcRect xOff='0' yOff='0' xSize='{w}' ySize='{h}'/>"
            f"<DstRect xOff='{x}' yOff='{y}' xSize='{w}' ySize='{h}'/></SimpleSource>"
            for x, y in sources
        )
        out_band.SetMetadataItem("source_0", xml, "new_vrt_sources")
    vrt = None
    return out


def run_until(params: dict[str, str], tiles: int) -> None:
    """In the measured process: run the algorithm, cancel once the log reports
    ``tiles`` model runs done (its "Tile k/n" count includes pass 1)."""
    from bench.qgis_app import start_qgis

    app = start_qgis()  # noqa: F841 - QGIS must outlive processing.run
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    class Feedback(QgsProcessingFeedback):
        def __init__(self) -> None:
            super().__init__()
            self.log: list[str] = []

        def pushInfo(self, info: str) -> None:
            self.log.append(info)
            print(info, flush=True)
            # "Tile k/n; about ... left." comes every few seconds, not every
            # tile: cancel at the first one that reports k >= tiles.
            match = TILE_LINE.match(info)
            if match and int(match.group(1)) >= tiles:
                self.cancel()

    fb = Feedback()
    try:
        processing.run("ada3d:pansharpen", {**params, "DEVICE": 2}, feedback=fb)
        print("FINISHED (the whole scene ran)")
    except QgsProcessingException as exc:
        print(f"CANCELLED: {exc}")
    left = Path(params["OUTPUT"])
    print(f"output left behind: {left.exists()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20480, help="PAN size (multiple of 512)")
    parser.add_argument("--tiles", type=int, default=300,
                        help="model runs (pass 1 included) before cancelling")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "memory.json")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_until(dict(p.split("=", 1) for p in args.child), args.tiles)
        return
    reps = args.size // 512
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pan = tiled_vrt(SAMPLE_PAN, work / "pan.vrt", reps)
        ms = tiled_vrt(SAMPLE_MS, work / "ms.vrt", reps)
        out = work / "fused.tif"
        cmd = [sys.executable, "-m", "bench.memory", "--tiles", str(args.tiles), "--child",
               f"PANCHROMATIC={pan}", f"SPECTRAL={ms}", f"OUTPUT={out}"]
        m = measure(cmd, env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    log = m.output.strip().splitlines()
    done = [int(x.group(1)) for line in log if (x := TILE_LINE.match(line))]
    report = {"pan_size": reps * 512, "tile_runs": max(done, default=0),
              "seconds": m.seconds, "peak_rss_mib": m.peak_rss_mib,
              "log": [line for line in log if not line.startswith("Tile ")][-12:]}
    print("\n".join(report["log"]))
    print(f"PAN {reps * 512}^2: peak RSS {m.peak_rss_mib:.0f} MiB after {report['tile_runs']} "
          f"tile runs of the model, pass 1 included ({m.seconds:.0f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
