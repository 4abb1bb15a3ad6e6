"""A land-cover mask of a real place, from OpenStreetMap: ``place_mask("31 Rue Molière, Lyon")``.

PLACE is an address (geocoded by the dataset preparation's Nominatim client: rate
limit, user agent, SQLite cache), ``lat,lon``, or a box ``south,west,north,east`` (the
order Overpass uses). The mask sits on a metric grid (the place's UTM zone unless a CRS
is given) centred on the point, ``size`` pixels of ``resolution`` metres (FLAIR's
0.2 m by default); a box gives its own extent. The features come from Overpass (cached)
or a local file, are sorted into classes and drawing stages by :mod:`.osm_tags`, and are
burnt in with ``rasterio.features.rasterize``; lines are buffered to their width in metres
with shapely after reprojection with pyproj.

The result carries its grid, so it is written as a georeferenced class GeoTIFF (with
the colour table) next to the colour PNG the rest of Seg2Sat reads, and the training
caption ``Aerial view of <place>. <classes>.``.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..classes import get_class
from ..data.geocode import CachedGeocoder, GeocodeCache, GeocodingError, NominatimGeocoder
from ..masks import to_image
from ..prompts import caption
from .coast import coast_lines, is_coastline, sea_polygons
from .crs import metric_crs
from .files import atomic_path, write_text
from .osm_features import Features, extent, read_features, to_crs
from .osm_tags import DEFAULT_BACKGROUND, WATER, Stage, classify, line_width
from .osm_windowed import save_windowed
from .overpass import DEFAULT_OVERPASS_URL, DEFAULT_TIMEOUT, DEFAULT_USER_AGENT, OverpassClient, build_query, default_cache_dir
from .raster import Grid, write_classes

DEFAULT_SIZE = 512
DEFAULT_RESOLUTION = 0.2
"""Metres per pixel: FLAIR's aerial images, the scale the model was trained at."""
DEFAULT_NOMINATIM_URL = "https://nominatim.openstreetmap.org"
MAX_SIDE = 4096
"""Masks up to MAX_SIDE x MAX_SIDE px are made in memory (and a PNG); larger boxes are burnt window by window."""
MAX_PIXELS = 16384 * 16384
"""The largest box mask (268 Mpx: 3.3 km a side at 0.2 m), the default limit of the maps made from it."""
FETCH_MARGIN_M = 30.0
"""Features are fetched this far past the mask's edge, so a wide road just outside still shows its verge."""

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PlaceMask:
    """A place's land-cover mask: class ids on ``grid``, the caption, and the files written (if any)."""

    ids: np.ndarray | None
    """None for a mask larger than MAX_SIDE x MAX_SIDE px: it is only in its GeoTIFF (``paths["tif"]``)."""
    grid: Grid
    caption: str
    name: str | None
    lat: float
    lon: float
    features: int
    paths: dict[str, Path] = field(default_factory=dict)


def parse_size(text: str | int | tuple[int, int]) -> tuple[int, int]:
    """``512`` or ``640x480`` (width x height, pixels) -> (width, height)."""
    if isinstance(text, int):
        text = str(text)
    if isinstance(text, tuple):
        width, height = text
    else:
        parts = str(text).lower().replace("×", "x").split("x")
        try:
            width, height = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (0, 0)
        except ValueError:
            raise ValueError(f"`size`: must be W or WxH in pixels, got {text!r}") from None
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise ValueError(f"`size`: each side must be 1..{MAX_SIDE} px, got {width}x{height}")
    return width, height


def parse_coordinates(text: str) -> tuple[float, ...] | None:
    """``lat,lon`` or ``south,west,north,east`` in degrees; None when PLACE is an address."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        return None
    if len(values) not in (2, 4):
        return None
    lats, lons = values[0::2], values[1::2]
    if not all(-90 <= v <= 90 for v in lats) or not all(-180 <= v <= 180 for v in lons):
        raise ValueError(f"`place` {text!r}: latitudes must be in -90..90 and longitudes in -180..180 "
                         "(lat,lon or south,west,north,east)")
    if len(values) == 4 and not (values[0] < values[2] and values[1] < values[3]):
        raise ValueError(f"`place` {text!r}: a box is south,west,north,east with south < north and west < east")
    return values


def _project(crs, lon: float, lat: float) -> tuple[float, float]:
    from pyproj import Transformer

    return Transformer.from_crs("EPSG:4326", crs.to_wkt(), always_xy=True).transform(lon, lat)


def grid_around(lat: float, lon: float, size: tuple[int, int] = (DEFAULT_SIZE, DEFAULT_SIZE),
                resolution: float = DEFAULT_RESOLUTION, crs: str | None = None) -> Grid:
    """``size`` pixels of ``resolution`` m centred on the point; the corner snaps to whole pixels of the CRS,
    so masks of neighbouring places line up."""
    from rasterio.transform import from_origin

    _check_resolution(resolution)
    rio_crs = metric_crs(lat, lon, crs)
    x, y = _project(rio_crs, lon, lat)
    width, height = size
    left = round((x - width * resolution / 2) / resolution) * resolution
    top = round((y + height * resolution / 2) / resolution) * resolution
    return Grid(width, height, rio_crs, from_origin(left, top, resolution, resolution))


def grid_over(south: float, west: float, north: float, east: float, resolution: float = DEFAULT_RESOLUTION,
              crs: str | None = None) -> Grid:
    """The box's extent in the metric CRS, outward to whole pixels; its size follows from the resolution."""
    from pyproj import Transformer
    from rasterio.transform import from_origin

    _check_resolution(resolution)
    rio_crs = metric_crs((south + north) / 2, (west + east) / 2, crs)
    to_metric = Transformer.from_crs("EPSG:4326", rio_crs.to_wkt(), always_xy=True)
    minx, miny, maxx, maxy = to_metric.transform_bounds(west, south, east, north, densify_pts=21)
    left, top = np.floor(minx / resolution) * resolution, np.ceil(maxy / resolution) * resolution
    width = int(np.ceil((maxx - left) / resolution - 1e-9))
    height = int(np.ceil((top - miny) / resolution - 1e-9))
    if width * height > MAX_PIXELS:
        raise ValueError(f"the box is {width}x{height} px at {resolution:g} m/px, more than {MAX_PIXELS} px: "
                         "type a larger `resolution` (coarser pixels) or take a smaller box")
    return Grid(width, height, rio_crs, from_origin(float(left), float(top), resolution, resolution))


def _check_resolution(resolution: float) -> None:
    if not 0.01 <= resolution <= 1000:
        raise ValueError(f"`resolution`: must be 0.01..1000 m per pixel, got {resolution}")


def grid_bounds(grid: Grid, margin: float = 0.0) -> tuple[float, float, float, float]:
    """(minx, miny, maxx, maxy) of the grid in its CRS, grown by ``margin`` metres."""
    t = grid.transform
    left, top = t.c, t.f
    right, bottom = left + grid.width * t.a, top + grid.height * t.e
    return left - margin, min(top, bottom) - margin, right + margin, max(top, bottom) + margin


def wgs84_bounds(grid: Grid, margin: float = 0.0) -> tuple[float, float, float, float]:
    """(west, south, east, north) in degrees around the grid."""
    from pyproj import Transformer

    to_wgs84 = Transformer.from_crs(grid.crs.to_wkt(), "EPSG:4326", always_xy=True)
    return to_wgs84.transform_bounds(*grid_bounds(grid, margin), densify_pts=21)


def drawing_list(features: Features, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Geometries in the grid's CRS (lines buffered to their width) and their classes, in drawing order.

    Order: by stage (landuse, water, paths, roads, buildings, pools and greenhouses),
    then largest area first within a stage, so what is inside something else is drawn after it.
    """
    import shapely

    picked = [(i, *found) for i, tags in enumerate(features.tags) if (found := classify(tags)) is not None]
    index = np.array([p[0] for p in picked], dtype=np.intp)
    classes = np.array([p[2] for p in picked], dtype=np.uint8)
    stages = np.array([int(p[1].stage) for p in picked], dtype=int)
    widths = np.array([line_width(p[1], features.tags[p[0]]) or np.nan for p in picked], dtype=float)
    geoms = to_crs(features.geometries[index], features.crs, grid.crs.to_wkt())
    sea = _sea(features, grid)
    geoms, classes = np.concatenate([geoms, sea]), np.concatenate([classes, np.full(len(sea), WATER, np.uint8)])
    stages, widths = np.concatenate([stages, np.full(len(sea), int(Stage.WATER))]), np.append(widths, [np.nan] * len(sea))
    if len(geoms) == 0:
        return np.empty(0, dtype=object), np.empty(0, dtype=np.uint8)
    kind = shapely.get_type_id(geoms)
    lines = np.isin(kind, (1, 2, 5))  # LineString, LinearRing, MultiLineString
    buffered = lines & ~np.isnan(widths)
    geoms[buffered] = shapely.buffer(geoms[buffered], widths[buffered] / 2, quad_segs=4)
    closed = lines & np.isnan(widths)  # a closed way of an area tag (e.g. area:highway) is that area
    geoms[closed] = shapely.build_area(geoms[closed])
    box = grid_bounds(grid, margin=2 * abs(grid.transform.a))
    keep = np.isin(shapely.get_type_id(geoms), (3, 6, 7)) & shapely.intersects(geoms, shapely.box(*box))
    geoms = shapely.clip_by_rect(geoms[keep], *box)  # huge landuse polygons: burn only what is seen
    classes, stages = classes[keep], stages[keep]
    order = np.lexsort((-shapely.area(geoms), stages))
    nonempty = ~shapely.is_empty(geoms[order])
    return geoms[order][nonempty], classes[order][nonempty]


def _sea(features: Features, grid: Grid) -> np.ndarray:
    """Sea polygons over the grid from the ``natural=coastline`` ways among the features (see :mod:`.coast`)."""

    index = np.array([i for i, tags in enumerate(features.tags) if is_coastline(tags)], dtype=np.intp)
    if len(index) == 0:
        return np.empty(0, dtype=object)
    lines = coast_lines(to_crs(features.geometries[index], features.crs, grid.crs.to_wkt()))
    return sea_polygons(lines, grid_bounds(grid, margin=2 * abs(grid.transform.a)))


def rasterize(features: Features, grid: Grid, background: int = DEFAULT_BACKGROUND) -> tuple[np.ndarray, int]:
    """Class ids (height x width, uint8) of the features on ``grid``, and how many features were drawn."""
    from rasterio.features import rasterize as burn

    geoms, classes = drawing_list(features, grid)
    shape = (grid.height, grid.width)
    if len(geoms) == 0:
        return np.full(shape, background, dtype=np.uint8), 0
    ids = burn(zip(geoms, classes.tolist()), out_shape=shape, transform=grid.transform, fill=background,
               dtype="uint8")
    return ids, len(geoms)


def open_geocoder(nominatim_url: str = DEFAULT_NOMINATIM_URL, user_agent: str = DEFAULT_USER_AGENT,
                  cache_dir: str | os.PathLike | None = None):
    """The dataset preparation's Nominatim client behind its SQLite cache (``geocode-cache.sqlite`` in ``cache_dir``).

    The public server gets its 1 request/s; a self-hosted one (any other URL) is not slowed down.
    """

    return CachedGeocoder(nominatim_client(nominatim_url, user_agent), geocode_cache(cache_dir))


def nominatim_client(nominatim_url: str = DEFAULT_NOMINATIM_URL, user_agent: str = DEFAULT_USER_AGENT,
                     retries: int = 2):
    """The bare client, so a long-lived caller (the web UI) keeps one rate limiter across requests;
    ``retries`` (5 s apart) suit a batch, not a person waiting at a page."""
    from urllib.parse import urlparse


    server = urlparse(nominatim_url if "://" in nominatim_url else f"https://{nominatim_url}")
    public = server.netloc == urlparse(DEFAULT_NOMINATIM_URL).netloc
    return NominatimGeocoder(user_agent, domain=server.netloc + server.path.rstrip("/"), scheme=server.scheme,
                             min_delay=1.0 if public else 0.0, retries=retries)


def geocode_cache(cache_dir: str | os.PathLike | None = None):
    """The geocode cache shared by every front end; SQLite connections stay in the thread that opened them."""

    return GeocodeCache(Path(cache_dir or default_cache_dir()) / "geocode-cache.sqlite")


def _point(place: str, coords: tuple[float, ...] | None, geocoder, say: Progress) -> tuple[float, float]:
    if coords is not None:
        return (coords[0], coords[1]) if len(coords) == 2 else ((coords[0] + coords[2]) / 2, (coords[1] + coords[3]) / 2)

    say(f"geocoding {place!r}")
    try:
        found = geocoder.search(place)
    except GeocodingError as exc:
        raise ValueError(str(exc).splitlines()[0]) from None
    if found is None:
        raise ValueError(f"Nominatim found no place called {place!r}; try another spelling, lat,lon or a box")
    return found


def _features(grid: Grid, source, overpass: OverpassClient, say: Progress) -> Features:
    west, south, east, north = bounds = wgs84_bounds(grid, FETCH_MARGIN_M)
    if source is not None:
        _check_overlap(source, bounds)
        say(f"reading OSM features from {source}")
        return read_features(source, bounds=bounds)
    path, cached = overpass.fetch(build_query(south, west, north, east, int(overpass.timeout)))
    say(f"OSM features of the area: {path} ({'cached' if cached else f'fetched from {overpass.url}'}, "
        f"{path.stat().st_size / 1024:.0f} KB)")
    return read_features(path, bounds=bounds)


def _check_overlap(source, bounds: tuple[float, float, float, float]) -> None:
    """A box outside the file (swapped lat/lon, another country) is an error, not an all-background mask."""

    found = extent(source)
    if found is None:
        return
    west, south, east, north = bounds
    if west > found[2] or east < found[0] or south > found[3] or north < found[1]:
        raise ValueError(f"`source` {source}: the place ({south:.5f},{west:.5f},{north:.5f},{east:.5f} as "
                         f"south,west,north,east) is outside the file, which covers {found[1]:.5f},{found[0]:.5f},"
                         f"{found[3]:.5f},{found[2]:.5f}; check the lat,lon order and the extract")


def _reverse_name(lat: float, lon: float, geocoder) -> str | None:
    """Coordinates get the OSM name of the place, the way the training captions were made."""

    try:
        return geocoder.reverse(lat, lon)
    except GeocodingError as exc:
        raise ValueError(str(exc).splitlines()[0]) from None


def place_mask(place: str, *, size: int | str | tuple[int, int] = DEFAULT_SIZE, resolution: float = DEFAULT_RESOLUTION,
               background: int | str = DEFAULT_BACKGROUND, crs: str | None = None,
               source: str | os.PathLike | None = None, name: str | None = None,
               overpass_url: str = DEFAULT_OVERPASS_URL, nominatim_url: str = DEFAULT_NOMINATIM_URL,
               user_agent: str = DEFAULT_USER_AGENT, cache_dir: str | os.PathLike | None = None,
               timeout: float = DEFAULT_TIMEOUT, geocoder=None, overpass: OverpassClient | None = None,
               out: str | os.PathLike | None = None, progress: Progress | None = None) -> PlaceMask:
    """The land-cover mask of ``place`` (an address, ``lat,lon`` or ``south,west,north,east``).

    ``source``: a GeoJSON / GeoPackage / .osm / .osm.pbf file read instead of asking
    Overpass. ``name``: the place in the caption; by default the address as typed, or
    for coordinates the OSM name Nominatim gives (not asked with ``source``: a local file
    means nothing goes to the network). ``geocoder``/``overpass``: clients to use instead
    of the default ones built from the URLs, user agent and ``cache_dir``. ``out``: a
    folder to write the GeoTIFF, PNG and caption into (see :func:`save`); a box larger than
    MAX_SIDE x MAX_SIDE px needs it, and is burnt window by window into the GeoTIFF
    (:mod:`.osm_windowed`, no PNG, ``ids`` None). Bad input and
    unreachable services are a ``ValueError`` with a one-line message.
    """

    say = progress or (lambda _line: None)
    background_id = get_class(int(background) if str(background).isdigit() else background).id
    coords = parse_coordinates(place)
    own_geocoder = geocoder is None and (coords is None or (name is None and source is None))
    if own_geocoder:
        geocoder = open_geocoder(nominatim_url, user_agent, cache_dir)
    try:
        lat, lon = _point(place, coords, geocoder, say)
        if coords is not None and len(coords) == 4:
            grid = grid_over(*coords, resolution=resolution, crs=crs)
        else:
            grid = grid_around(lat, lon, parse_size(size), resolution, crs)
        windowed = grid.width * grid.height > MAX_SIDE * MAX_SIDE
        if windowed and out is None:
            raise ValueError(f"the mask is {grid.width}x{grid.height} px, more than {MAX_SIDE}x{MAX_SIDE}: masks this "
                             "large are written window by window into a file, so give an output folder (`out`)")
        overpass = overpass or OverpassClient(overpass_url, user_agent, cache_dir, timeout)
        features = _features(grid, source, overpass, say)
        if name is None:
            name = place if coords is None else (_reverse_name(lat, lon, geocoder) if source is None else None)
    finally:
        if own_geocoder:
            geocoder.cache.close()
    if windowed:
        paths, drawn, text = save_windowed(drawing_list(features, grid), grid, background_id, out, slug(name or place), name)
        _report(drawn, features, grid, source, say)
        return PlaceMask(None, grid, text, name, lat, lon, drawn, paths)
    ids, drawn = rasterize(features, grid, background_id)
    _report(drawn, features, grid, source, say)
    result = PlaceMask(ids, grid, caption(name, ids), name, lat, lon, drawn)
    return save(result, out, slug(name or place)) if out is not None else result


def _report(drawn: int, features: Features, grid: Grid, source, say: Progress) -> None:
    """The summary line; nothing drawn from a local file is an error (wrong place or wrong file)."""
    if drawn == 0 and source is not None:
        raise ValueError(f"`source` {source}: none of its {len(features)} features near the place has a land-cover "
                         "tag, so the mask would be all background; check the place and the file")
    say(f"{drawn} of {len(features)} OSM features drawn on {grid.width}x{grid.height} px at "
        f"{abs(grid.transform.a):g} m/px in {grid.crs.to_string()}{features.summary()}")


def slug(text: str) -> str:
    """A file stem from a place: ``31 Rue Molière, Lyon`` -> ``31-rue-moliere-lyon``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^0-9a-z]+", "-", ascii_text.lower()).strip("-")[:60].strip("-") or "place"


def save(mask: PlaceMask, out: str | os.PathLike, stem: str = "place") -> PlaceMask:
    """Write ``STEM.tif`` (class GeoTIFF, colour table), ``STEM.png`` (colour mask) and ``STEM.txt`` (caption),
    each under a temporary name first (see :mod:`.files`)."""

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"tif": out / f"{stem}.tif", "png": out / f"{stem}.png", "txt": out / f"{stem}.txt"}
    write_classes(paths["tif"], mask.ids, mask.grid)
    with atomic_path(paths["png"]) as tmp:
        to_image(mask.ids).save(tmp)
    write_text(paths["txt"], mask.caption + "\n")
    return replace(mask, paths=paths)
