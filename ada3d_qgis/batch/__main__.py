"""``python -m ada3d_qgis.batch --manifest scenes.csv``: see README.md,
"Batch processing on Dask"."""

from __future__ import annotations

import argparse
import sys

from ..engine import Ada3DError
from ..engine.raster_io import band_numbers, parse_options
from ..engine.session import DEVICES
from .manifest import BatchSettings, read_manifest


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ada3d_qgis.batch",
        description="Pansharpen the scenes of a manifest with Ada3D on a Dask cluster; "
        "each output is a Cloud-Optimised GeoTIFF equal to what ada3d:pansharpen writes.",
    )
    p.add_argument("--manifest", required=True,
                   help="CSV with the columns pan, ms, out and optionally model")
    cluster = p.add_argument_group("cluster (a LocalCluster unless --scheduler is given)")
    cluster.add_argument("--scheduler", help="address of a running scheduler, tcp://HOST:8786")
    cluster.add_argument("--workers", type=int, default=1,
                         help="worker processes of the LocalCluster (default 1: one "
                         "onnxruntime session already uses every core)")
    cluster.add_argument("--threads-per-worker", type=int, default=1,
                         help="tasks each worker runs at once (default 1)")
    cluster.add_argument("--dashboard-address", default=":8787",
                         help="where the LocalCluster serves Dask's dashboard")
    alg = p.add_argument_group("ada3d:pansharpen's parameters (same defaults)")
    alg.add_argument("--pan-band", type=int, default=1, help="PAN_BAND (default 1)")
    alg.add_argument("--ms-bands", default="",
                     help="SPECTRAL_BANDS, e.g. 1,2,3,4 (default: all bands)")
    alg.add_argument("--model", default="",
                     help="MODEL for scenes without one in the manifest (default: the "
                     "installed model that fits)")
    alg.add_argument("--device", choices=DEVICES, default="auto", help="DEVICE (default auto)")
    alg.add_argument("--tile-size", type=int, default=0,
                     help="TILE_SIZE in PAN pixels (default 0: the model's)")
    alg.add_argument("--overlap", type=int, default=0,
                     help="OVERLAP in PAN pixels (default 0: the model's)")
    alg.add_argument("--consistency", action="store_true",
                     help="CONSISTENCY: project the result onto the MS (default off)")
    alg.add_argument("--options", default="",
                     help="COG creation options, KEY=VALUE separated by '|'")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def settings_from(args: argparse.Namespace) -> BatchSettings:
    bands = band_numbers(args.ms_bands) if args.ms_bands.strip() else None
    return BatchSettings(
        pan_band=args.pan_band,
        ms_bands=tuple(bands) if bands else None,
        model=args.model or None,
        device=args.device,
        tile_size=args.tile_size,
        overlap=args.overlap,
        options=tuple(parse_options(args.options)),
        consistency=args.consistency,
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        scenes = read_manifest(args.manifest)
        settings = settings_from(args)
    except Ada3DError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        from .report import table
        from .runner import start_cluster, timed_batch
    except ImportError as exc:
        print(f"The batch needs dask[distributed] ({exc}); install the development "
              "requirements: pip install -r requirements.txt.", file=sys.stderr)
        return 2
    from distributed import Client

    cluster = None
    if not args.scheduler:
        cluster = start_cluster(args.workers, args.threads_per_worker, args.dashboard_address)
    try:
        with Client(args.scheduler or cluster) as client:
            workers = len(client.scheduler_info().get("workers", {}))
            print(f"Dask dashboard: {client.dashboard_link} ({workers} worker(s)); "
                  f"{len(scenes)} scene(s).", flush=True)
            results, seconds = timed_batch(client, scenes, settings,
                                           progress=not args.no_progress)
    finally:
        if cluster is not None:
            cluster.close()
    print(table(results, seconds), flush=True)
    return 1 if any(r.status == "failed" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
