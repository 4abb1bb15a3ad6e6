"""``seg2sat osm-mask`` (and ``generate --place``): options only, so ``--help`` stays light; the work is
:func:`.osm.place_mask`.

:func:`add_place_options` is shared with ``seg2sat generate --place``, so both commands
take the same options with the same meaning.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli_errors import CommandError
from ..options import spell
from .osm import DEFAULT_NOMINATIM_URL, DEFAULT_RESOLUTION, DEFAULT_SIZE, place_mask
from .overpass import DEFAULT_OVERPASS_URL, DEFAULT_TIMEOUT, DEFAULT_USER_AGENT
from .plan import MAX_PIXELS, check, plan_of
from .stream import WINDOW as STREAM_WINDOW


def add_place_options(p: argparse.ArgumentParser, *, resolution: bool = True) -> None:
    """The options that say how a place becomes a mask (``resolution=False`` where the command has its own)."""

    p.add_argument("--size", default=str(DEFAULT_SIZE), metavar="W|WxH",
                   help=f"mask size in pixels around a point (default {DEFAULT_SIZE}; a box gives its own)")
    if resolution:
        p.add_argument("--resolution", type=float, default=DEFAULT_RESOLUTION, metavar="M",
                       help=f"metres per pixel (default {DEFAULT_RESOLUTION}, FLAIR's)")
    p.add_argument("--background", default="agricultural land", metavar="CLASS",
                   help="class (name or id) of land OSM leaves empty (default agricultural land; "
                   "in towns 'herbaceous vegetation' fits better)")
    p.add_argument("--crs", default=None, help="metric CRS of the mask, e.g. EPSG:2154 (default: the place's UTM zone)")
    p.add_argument("--from", dest="source", type=Path, default=None, metavar="FILE",
                   help="read OSM features from a GeoJSON / GeoPackage / .osm / .osm.pbf file instead of Overpass")
    p.add_argument("--name", default=None,
                   help="the place in the caption (default: the address as typed; for coordinates, the OSM name "
                   "Nominatim gives, none with --from)")
    p.add_argument("--overpass-url", default=DEFAULT_OVERPASS_URL, metavar="URL",
                   help=f"Overpass API server (default {DEFAULT_OVERPASS_URL}; a self-hosted one works the same)")
    p.add_argument("--nominatim-url", default=DEFAULT_NOMINATIM_URL, metavar="URL",
                   help="Nominatim server for addresses (default the public OSM one, 1 request/s)")
    p.add_argument("--user-agent", default=DEFAULT_USER_AGENT,
                   help="identifies you to Overpass and Nominatim, as their usage policies ask")
    p.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                   help="where Overpass answers and geocoded places are kept (default ~/.cache/seg2sat/osm)")
    p.add_argument("--osm-timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"how long Overpass may take (default {DEFAULT_TIMEOUT})")


def register(sub) -> None:
    """The ``seg2sat osm-mask`` sub-command (listed in seg2sat.cli.COMMANDS)."""
    p = sub.add_parser("osm-mask", help="land-cover mask of a real place from OpenStreetMap",
                       description="Geocode PLACE, fetch its OpenStreetMap features (Overpass, cached) or read them "
                       "from --from FILE, and rasterize them into FLAIR classes on a metric grid: writes "
                       "DIR/<place>.tif (class GeoTIFF with the colour table), .png (colour mask) and .txt (caption).")
    p.add_argument("place", metavar="PLACE",
                   help='an address ("31 Rue Molière, Lyon"), lat,lon ("45.7640,4.8357") or a box '
                   "south,west,north,east in degrees")
    p.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    add_place_options(p)
    p.set_defaults(func=_cmd_osm_mask, uses_models=False)


def add_map_input_arguments(p: argparse.ArgumentParser) -> None:
    """``generate``'s map input besides MASK: --place PLACE with the place options (its own --resolution
    serves both), and the GeoTIFF size guard (--max-pixels, --yes)."""
    p.add_argument("--place", default=None, metavar="PLACE",
                   help="instead of MASK: the OpenStreetMap mask of an address, lat,lon or south,west,north,east "
                   "(written to --out as with osm-mask; --resolution is its metres per pixel, default 0.2)")
    add_place_options(p, resolution=False)

    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS, metavar="N",
                   help=f"GeoTIFF masks: refuse maps of more than N pixels (default {MAX_PIXELS}, 16384^2) unless --yes")
    p.add_argument("--yes", action="store_true", help="make a GeoTIFF map even when it is larger than --max-pixels")


def place_to_mask(args) -> None:
    """``generate``: exactly one of MASK and --place; a place's mask is written to --out and becomes MASK
    (a GeoTIFF, so the images are georeferenced too), and its caption the prompt unless --prompt is given."""

    if (args.mask is None) == (args.place is None):
        raise CommandError("give MASK or --place PLACE (exactly one)")
    if args.place is None:
        if args.prompt is None:
            raise CommandError("--prompt: required with MASK (with --place, the place's caption is the prompt)")
        return
    args.resolution = args.resolution or DEFAULT_RESOLUTION
    mask = mask_from_args(args, args.out)
    for path in mask.paths.values():
        print(path)
    args.mask, args.resolution = mask.paths["tif"], None  # the GeoTIFF is already at the resolution asked for
    if args.prompt is None:
        args.prompt = mask.caption
        print(f"note: prompt: {mask.caption}", file=sys.stderr)


def check_geotiff_job(args, src) -> None:
    """Print the reprojection note and the size/windows/disk of a big map; refuse one past --max-pixels.

    ``src``: MASK, open at --resolution (:class:`.generate.MaskRaster`), before any pixel is read.
    """

    window, overlap = (STREAM_WINDOW, 0) if args.backend == "procedural" else (args.window, args.window // 8)
    for line in check(plan_of(src, args.resolution, window, overlap), yes=args.yes, max_pixels=args.max_pixels):
        print(f"note: {spell(line, 'cli')}", file=sys.stderr, flush=True)


def mask_from_args(args, out: Path):
    """``place_mask`` with the options of :func:`add_place_options`; notes go to stderr, one line each."""

    return place_mask(args.place, size=args.size, resolution=args.resolution,
                      background=args.background, crs=args.crs, source=args.source, name=args.name,
                      overpass_url=args.overpass_url, nominatim_url=args.nominatim_url, user_agent=args.user_agent,
                      cache_dir=args.cache_dir, timeout=args.osm_timeout, out=out,
                      progress=lambda line: print(line, file=sys.stderr, flush=True))


def _cmd_osm_mask(args) -> None:
    mask = mask_from_args(args, args.out)
    for path in mask.paths.values():
        print(path)
    print(mask.caption)
