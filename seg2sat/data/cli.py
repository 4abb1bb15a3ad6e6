"""``seg2sat prepare``: its options and its report; the run itself is :func:`.dataset.prepare`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .dataset import SPLIT, Summary, prepare, push_to_hub
from .flair import METADATA_NAME, PATCH_SIZE
from .geocode import DEFAULT_GRID, DEFAULT_USER_AGENT, DEFAULT_ZOOM, CachedGeocoder, GeocodeCache, NominatimGeocoder


def register(sub) -> None:
    """The ``seg2sat prepare`` sub-command."""
    p = sub.add_parser(
        "prepare", help="FLAIR GeoTIFFs -> PNG pairs with OSM captions -> a Hugging Face dataset",
        description="Convert a FLAIR #1 tree (<domain>/<zone>/img/IMG_<n>.tif + msk/MSK_<n>.tif) into image / "
        "colour-mask PNG pairs captioned 'Aerial view of <OSM place>. <classes>.', and a Hugging Face dataset in "
        "OUT (datasets.load_from_disk(OUT)['train']). Resumable: run the same command again after an "
        "interruption. Exit code 1 when some patches were skipped (listed in OUT/summary.json).")
    p.add_argument("root", type=Path, help="FLAIR folder (e.g. flair_aerial_train)")
    p.add_argument("out", type=Path, help="output folder (created; reused to resume)")
    p.add_argument("--metadata", type=Path, default=None,
                   help=f"FLAIR metadata JSON with patch centroids (default: ROOT/{METADATA_NAME} if present, "
                   "else each GeoTIFF's own georeference)")
    p.add_argument("--labels", type=Path, action="append", default=[],
                   help="another tree to look for MSK_<n>.tif masks in; repeatable (default: the sibling "
                   "flair_labels_<x> of a flair_aerial_<x> ROOT, if there)")
    p.add_argument("--workers", type=int, default=_cores(), help=f"conversion processes (default {_cores()})")
    p.add_argument("--limit", type=int, default=None, help="only the first N patches (by id)")
    p.add_argument("--size", type=int, default=PATCH_SIZE, help=f"expected patch side in px (default {PATCH_SIZE})")
    p.add_argument("--extra-bands", action="store_true", help="also keep NIR and elevation as image columns")
    p.add_argument("--no-geocode", action="store_true", help="captions without a place: 'Aerial view. <classes>.'")
    p.add_argument("--geocode-cache", type=Path, default=None,
                   help="SQLite cache of place names, reusable across runs (default OUT/geocode-cache.sqlite)")
    p.add_argument("--geocode-grid", type=float, default=DEFAULT_GRID,
                   help=f"cache cell in degrees; patches in one cell share one request (default {DEFAULT_GRID}, ~1 km)")
    p.add_argument("--zoom", type=int, default=DEFAULT_ZOOM, help=f"Nominatim zoom 0..18 (default {DEFAULT_ZOOM})")
    p.add_argument("--language", default=None, help="language of place names, e.g. fr (default: local names)")
    p.add_argument("--user-agent", default=DEFAULT_USER_AGENT,
                   help="identifies you to Nominatim (OSM policy): put your project and contact in it")
    p.add_argument("--nominatim", default="https://nominatim.openstreetmap.org", metavar="URL",
                   help="Nominatim server (default the public OSM one); a self-hosted one allows --geocode-delay < 1")
    p.add_argument("--geocode-delay", type=float, default=1.0, metavar="SECONDS",
                   help="pause between requests (default 1.0, the public server's limit)")
    p.add_argument("--push-to-hub", metavar="REPO", default=None, help="upload the dataset to this hub repo")
    p.add_argument("--private", action="store_true", help="with --push-to-hub: make the repo private")
    p.set_defaults(func=_cmd_prepare, uses_models=False)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _cmd_prepare(args) -> int:
    from urllib.parse import urlparse

    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()  # one bar (ours), not datasets' "Generating…" / "Saving…" ones
    geocoder = cache = None
    if not args.no_geocode:
        server = urlparse(args.nominatim if "://" in args.nominatim else f"https://{args.nominatim}")
        client = NominatimGeocoder(args.user_agent, zoom=args.zoom, language=args.language, min_delay=args.geocode_delay,
                                   domain=server.netloc + server.path.rstrip("/"), scheme=server.scheme)
        cache = GeocodeCache(args.geocode_cache or args.out / "geocode-cache.sqlite")
        geocoder = CachedGeocoder(client, cache, grid=args.geocode_grid)
    try:
        summary = prepare(args.root, args.out, metadata=args.metadata, labels=args.labels, geocoder=geocoder,
                          workers=args.workers, limit=args.limit, size=args.size, extra_bands=args.extra_bands)
    finally:
        if cache is not None:
            cache.close()
    _report(summary, args.out)
    if args.push_to_hub:
        print(f"pushed: {push_to_hub(args.out, args.push_to_hub, args.private)}")
    return 0 if summary.ok else 1


def _report(summary: Summary, out: Path) -> None:
    per_tile = summary.geocoder_requests / summary.converted if summary.converted else 0.0
    print(f"{summary.rows} of {summary.tiles} tiles in the dataset ({summary.converted} converted now, "
          f"{summary.already_done} already done), {summary.geocoder_requests} geocoder requests "
          f"({per_tile:.3f} per tile), {summary.seconds:.1f} s")
    print(f"dataset: {summary.dataset}  (datasets.load_from_disk(…)['{SPLIT}'], or seg2sat train's dataset folder)")
    print(f"pairs:   {out / 'pairs'}  (load_dataset('imagefolder', data_dir=…))")
    if summary.skipped:
        for problem in summary.skipped[:20]:
            print(f"skipped: {problem.file}: {problem.reason}", file=sys.stderr)
        more = len(summary.skipped) - 20
        print(f"{'… and ' + str(more) + ' more; ' if more > 0 else ''}{len(summary.skipped)} skipped in all, "
              f"listed in {out / 'summary.json'}; fix them and run the same command again", file=sys.stderr)
