"""Start from a place: ``POST /api/place`` turns an address into the editor's map, its OpenStreetMap mask.

The work is :func:`seg2sat.gis.osm.place_mask`, with the OSM services of the UI's one
configuration (``SEG2SAT_UI_OVERPASS_URL``, ``…_NOMINATIM_URL``, ``…_USER_AGENT``,
``…_OSM_CACHE_DIR``). What happens here is translation: the body's fields are checked
and named as the API names them (``place: …``), the core's fields (`` `resolution` ``) are
spelled as the page says them (:func:`seg2sat.options.spell`, ``"ui"``), and a service that
cannot answer is one line and a 502, never a traceback. One lock makes the page's requests take turns and one Nominatim
client lives as long as the app, so the public servers' usage policies (one request at a
time, Nominatim at most 1/s) hold across users and clicks, not only within one request.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..classes import get_class
from ..gis import osm
from ..gis.osm import PlaceMask
from ..gis.osm_tags import DEFAULT_BACKGROUND
from ..gis.overpass import OverpassClient, OverpassError
from ..masks import to_image
from ..options import spell
from ..request import ImageLimits, RequestError, json_text
from ..wire import encode_png
from .payloads import body_object, mask_summary

MAX_PLACE_CHARS = 300
MIN_RESOLUTION, MAX_RESOLUTION = 0.01, 1000.0
"""Metres per pixel, the core's range (:func:`seg2sat.gis.osm.grid_around`)."""
PLACE_DEFAULTS = {"size": osm.DEFAULT_SIZE, "resolution": osm.DEFAULT_RESOLUTION, "low": MIN_RESOLUTION,
                  "high": MAX_RESOLUTION}
"""For ``/api/options``: the page's size and resolution start where ``seg2sat osm-mask``'s do."""


class ServiceUnavailable(Exception):
    """Nominatim or Overpass could not answer (unreachable, busy, failed): one line for the page, a 502.

    Not a ``ValueError``, so ``osm.place_mask`` passes it through instead of reading it as bad input.
    """


@dataclass(frozen=True)
class OSMSettings:
    """The OSM services and their cache, from the UI's config (keys of :data:`.config.UI_DEFAULTS`)."""

    overpass_url: str
    nominatim_url: str
    user_agent: str
    cache_dir: Path | None

    @classmethod
    def from_config(cls, config: Mapping) -> OSMSettings:
        cache = config.get("OSM_CACHE_DIR")
        return cls(str(config["OVERPASS_URL"]), str(config["NOMINATIM_URL"]), str(config["USER_AGENT"]),
                   Path(cache) if cache else None)


@dataclass(frozen=True)
class PlaceQuery:
    """A checked ``/api/place`` body."""

    place: str
    size: tuple[int, int]
    resolution: float
    background: int


def parse_place(body, limits: ImageLimits) -> PlaceQuery:
    """The body's ``place``, ``size``, ``resolution`` and ``background`` checked before any request leaves;
    a bad one is a RequestError naming the field (a 400)."""
    body = body_object(body)
    place = body.get("place")
    if not isinstance(place, str) or not place.strip():
        raise RequestError("place", "type an address, a town, lat,lon or south,west,north,east")
    place = " ".join(place.split())
    if len(place) > MAX_PLACE_CHARS:
        raise RequestError("place", f"at most {MAX_PLACE_CHARS} characters, got {len(place)}")
    resolution = _resolution(body.get("resolution", osm.DEFAULT_RESOLUTION))
    size = _size(body.get("size", osm.DEFAULT_SIZE), limits)
    background = _background(body.get("background", DEFAULT_BACKGROUND))
    _check_box(place, resolution, limits)
    return PlaceQuery(place, size, resolution, background)


def _resolution(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RequestError("resolution", f"must be a number of metres per pixel, got {json_text(value)}")
    try:
        resolution = float(value)
    except ValueError:
        raise RequestError("resolution", f"must be a number of metres per pixel, got {json_text(value)}") from None
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise RequestError("resolution", f"must be {MIN_RESOLUTION:g}..{MAX_RESOLUTION:g} metres per pixel, "
                                         f"got {json_text(value)}")
    return resolution


def _size(value, limits: ImageLimits) -> tuple[int, int]:
    """``512``, ``"512"`` or ``"640x480"``, within the server's image limits."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise RequestError("size", f"must be W or WxH in pixels, got {json_text(value)}")
    try:
        size = osm.parse_size(value)
    except ValueError as exc:
        detail = str(exc).removeprefix("`size`: ")
        if detail.startswith("must be W or WxH"):  # the core quotes the text as Python does, the API as JSON
            detail = f"must be W or WxH in pixels, got {json_text(value)}"
        raise RequestError("size", detail) from None
    limits.check(size, "size")
    return size


def _background(value) -> int:
    try:
        return get_class(value).id
    except ValueError as exc:
        raise RequestError("background", str(exc)) from None


def _check_box(place: str, resolution: float, limits: ImageLimits) -> None:
    """A box gives its own size: refuse one larger than the server takes before asking Overpass for it."""
    try:
        coords = osm.parse_coordinates(place)
        if coords is None or len(coords) != 4:
            return
        grid = osm.grid_over(*coords, resolution=resolution)
    except ValueError as exc:
        raise RequestError("place", _page_words(str(exc))) from None
    pixels = grid.width * grid.height
    if limits.max_pixels is not None and pixels > limits.max_pixels:
        raise RequestError("place", f"the box is {grid.width}x{grid.height} = {pixels:,} px at {resolution:g} m/px, "
                                    f"more than this server's limit of {limits.max_pixels:,} px; {COARSER} or take a "
                                    "smaller box")


COARSER = spell("type a larger `resolution` (coarser pixels)", "ui")
""""Raise the resolution" reads both ways in m/px: say which way the number goes, as the core does."""


def _page_words(message: str) -> str:
    """The core's sentence in the page's words: no `` `place` '…':`` head (the error already says ``place:``),
    each field as the page labels it."""
    return spell(re.sub(r"^`place` .*?: ", "", message), "ui")


_NOMINATIM_WHY = {"GeocoderUnavailable": "is unreachable", "GeocoderTimedOut": "did not answer in time",
                  "GeocoderQuotaExceeded": "is busy", "GeocoderRateLimited": "is busy"}
"""geopy's failures in a few words: its own messages are whole urllib3 reprs."""


ELSEWHERE = "to use another server, start the UI with its address (ui/README, Options)"
"""How to point the UI at another service, in the page's words: no option or variable names."""


def _overpass_words(message: str) -> str:
    """Overpass' one line in plain words: unreachable is said as such (no errno, no urllib reason); other
    failures keep their line, their advice for the command line (`` `overpass_url` ``, `` `source` ``) swapped
    for the page's."""
    host = re.search(r"Overpass API (\S+)", message)
    where = f" (Overpass, at {host.group(1)})" if host else ""
    if " is unreachable" in message:
        return (f"The map service{where} could not be reached: check the internet connection and try again; "
                f"{ELSEWHERE}.")
    if "; pass `" not in message:
        return _page_words(message)
    return message.split("; pass `")[0] + f"; try again later, or {ELSEWHERE}"


class _PageGeocoder:
    """The shared Nominatim client behind the on-disk cache; its failures are ServiceUnavailable, not bad input."""

    def __init__(self, client, url: str, cache_dir: Path | None):
        from ..data.geocode import CachedGeocoder

        self.url = url
        self.cached = CachedGeocoder(client, osm.geocode_cache(cache_dir))

    def _ask(self, method: str, *args):
        from ..data.geocode import GeocodingError

        try:
            return getattr(self.cached, method)(*args)
        except GeocodingError as exc:
            cause = exc.__cause__ or exc
            why = _NOMINATIM_WHY.get(type(cause).__name__) or f"failed ({str(cause).splitlines()[0][:160]})"
            if why == "is unreachable":
                raise ServiceUnavailable(f"The address search (Nominatim, at {self.url}) could not be reached: check "
                                         f"the internet connection and try again, or type lat,lon; {ELSEWHERE}.") from None
            raise ServiceUnavailable(f"the geocoder (Nominatim {self.url}) {why}; try again in a minute, "
                                     "or type lat,lon") from None

    def search(self, address: str) -> tuple[float, float] | None:
        return self._ask("search", address)

    def reverse(self, lat: float, lon: float) -> str | None:
        return self._ask("reverse", lat, lon)

    def close(self) -> None:
        self.cached.cache.close()


class PlaceMaker:
    """Makes place masks for the page, one at a time, with the configured services."""

    def __init__(self, settings: OSMSettings):
        self.settings = settings
        self._lock = threading.Lock()
        # Built now so a bad user agent or URL stops the app at start, not a user's first click.
        self._nominatim = osm.nominatim_client(settings.nominatim_url, settings.user_agent, retries=0)
        OverpassClient(settings.overpass_url, settings.user_agent, settings.cache_dir)

    def make(self, query: PlaceQuery) -> PlaceMask:
        s = self.settings
        with self._lock:
            geocoder = _PageGeocoder(self._nominatim, s.nominatim_url, s.cache_dir)
            try:
                return osm.place_mask(query.place, size=query.size, resolution=query.resolution,
                                  background=query.background, overpass_url=s.overpass_url,
                                  user_agent=s.user_agent, cache_dir=s.cache_dir, geocoder=geocoder)
            except OverpassError as exc:
                raise ServiceUnavailable(_overpass_words(str(exc))) from None
            except ValueError as exc:
                raise RequestError("place", _page_words(str(exc))) from None
            finally:
                geocoder.close()


def place_answer(mask: PlaceMask) -> dict:
    """What the page loads (the ids, as for samples) plus the colour PNG, the name for the caption and the grid."""
    grid = mask.grid
    return {**mask_summary(mask.ids, 0.0), "place": mask.name or "", "caption": mask.caption,
            "image": "data:image/png;base64," + encode_png(to_image(mask.ids)), "features": mask.features,
            "lat": mask.lat, "lon": mask.lon, "crs": grid.crs.to_string(), "resolution": abs(grid.transform.a),
            "bounds": list(osm.grid_bounds(grid)), "wgs84_bounds": list(osm.wgs84_bounds(grid))}
