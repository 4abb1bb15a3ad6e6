"""Reverse geocoding for captions: coordinates -> OpenStreetMap place name, cached on disk.

Forward geocoding (an address -> its point, for ``seg2sat osm-mask``) shares the client and the cache.

Captions read ``Aerial view of <OSM display name>``. The original notebooks asked
Nominatim once per image (~4 s each, no cache, no rate limit); here neighbouring
patches share one answer: coordinates are snapped to a grid (default 0.01 degree,
about 1 km) and every cell is asked once, ever, thanks to a SQLite cache that
survives interrupted runs. The geocoder itself sits behind a one-method interface
(``Geocoder``) so tests and other services can be plugged in.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

DEFAULT_GRID = 0.01
"""Cache cell size in degrees: 0.01 deg is ~1.1 km north-south and ~0.8 km east-west in France."""

DEFAULT_ZOOM = 18
"""Nominatim's own default (building / street level), the level the released model's captions used."""

DEFAULT_USER_AGENT = "seg2sat-dataset-preparation/0.1 (https://github.com/RubenGres/Seg2Sat)"


class GeocodingError(RuntimeError):
    """The geocoding service failed (network, quota, server); the tile is retried on the next run."""


class Geocoder(Protocol):
    """Anything that names the place at a WGS84 point (``None`` where there is nothing to name)."""

    def reverse(self, lat: float, lon: float) -> str | None: ...


class _RetryNote(logging.Filter):
    """geopy's RateLimiter logs each retry with a full traceback; one line says the same (the last error is raised)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and "caught an error, retrying" in record.msg:
            error = record.exc_info[1]
            tries = f"{record.args[0] + 1} of {record.args[1]}" if isinstance(record.args, tuple) else "again"
            record.msg, record.args = f"note: Nominatim: {type(error).__name__}, retrying ({tries})", None
            record.exc_info = record.exc_text = None
        return True


def _one_line_retries() -> None:
    """Install :class:`_RetryNote` on geopy's logger, once."""
    logger = logging.getLogger("geopy")
    if not any(isinstance(f, _RetryNote) for f in logger.filters):
        logger.addFilter(_RetryNote())


class NominatimGeocoder:
    """OpenStreetMap's Nominatim through geopy, at most one request per ``min_delay`` seconds.

    The OSM usage policy asks for an identifying user agent and <= 1 request/s; geopy's
    ``RateLimiter`` enforces the delay and retries transient errors. Failures raise
    ``GeocodingError`` instead of returning ``None``, so they are never cached as "no place".
    ``domain``/``scheme`` point it at a self-hosted Nominatim, where faster rates are fine.
    """

    def __init__(self, user_agent: str = DEFAULT_USER_AGENT, zoom: int = DEFAULT_ZOOM,
                 language: str | None = None, min_delay: float = 1.0, domain: str = "nominatim.openstreetmap.org",
                 scheme: str = "https", retries: int = 2):
        from geopy.extra.rate_limiter import RateLimiter
        from geopy.geocoders import Nominatim

        if not user_agent or "geopy" in user_agent.lower():
            raise ValueError("Nominatim needs a user agent that identifies your application (OSM usage policy)")
        if not 0 <= int(zoom) <= 18:
            raise ValueError(f"Nominatim zoom must be 0..18, got {zoom}")
        if min_delay < 1.0 and domain == "nominatim.openstreetmap.org":
            raise ValueError("the public Nominatim server allows at most 1 request per second (min_delay >= 1)")
        self.zoom, self.language = int(zoom), language
        client = Nominatim(user_agent=user_agent, domain=domain, scheme=scheme, timeout=10)
        self._reverse = RateLimiter(client.reverse, min_delay_seconds=min_delay, max_retries=retries,
                                    error_wait_seconds=5.0, swallow_exceptions=False)
        self._search = RateLimiter(client.geocode, min_delay_seconds=min_delay, max_retries=retries,
                                   error_wait_seconds=5.0, swallow_exceptions=False)
        _one_line_retries()

    def reverse(self, lat: float, lon: float) -> str | None:
        from geopy.exc import GeopyError

        try:
            found = self._reverse((lat, lon), zoom=self.zoom, language=self.language or False, exactly_one=True)
        except GeopyError as exc:
            raise GeocodingError(f"Nominatim failed at ({lat:.5f}, {lon:.5f}): {exc}") from exc
        return found.address if found is not None else None

    def search(self, address: str) -> tuple[float, float] | None:
        """Forward geocoding: the (lat, lon) of an address (``None`` when Nominatim knows no such place)."""
        from geopy.exc import GeopyError

        try:
            found = self._search(address, exactly_one=True, language=self.language or False)
        except GeopyError as exc:
            raise GeocodingError(f"Nominatim failed on {address!r}: {exc}") from exc
        return (float(found.latitude), float(found.longitude)) if found is not None else None


@dataclass(frozen=True)
class Cell:
    """One grid cell: its integer indices and the point the geocoder is asked about (its centre).

    Asking at the centre, not at the first patch seen, makes the answer a function of the
    cell alone: the result does not depend on the order tiles were processed in.
    """

    row: int
    col: int
    lat: float
    lon: float


def cell_of(lat: float, lon: float, grid: float = DEFAULT_GRID) -> Cell:
    if not grid > 0:
        raise ValueError(f"geocode grid must be > 0 degrees, got {grid}")
    row, col = math.floor(lat / grid), math.floor(lon / grid)
    return Cell(row, col, round((row + 0.5) * grid, 9), round((col + 0.5) * grid, 9))


class GeocodeCache:
    """Place names on disk (SQLite), keyed on the grid cell plus what changes the answer.

    SQLite commits are atomic, so a run killed at any moment keeps every answer it had
    already paid a request for. ``None`` (nothing there, e.g. open sea) is cached too.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path)
            # WAL + NORMAL: a killed process loses nothing committed; only a power cut may drop
            # the last answers (they are asked again), and no fsync per answer is paid.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS places (key TEXT PRIMARY KEY, place TEXT, created REAL)")
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"geocode cache {self.path} is not a readable SQLite file ({exc})") from exc

    def get(self, key: str) -> tuple[bool, str | None]:
        row = self._db.execute("SELECT place FROM places WHERE key = ?", (key,)).fetchone()
        return (row is not None, row[0] if row else None)

    def put(self, key: str, place: str | None) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO places VALUES (?, ?, ?)", (key, place, time.time()))

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM places").fetchone()[0]

    def close(self) -> None:
        self._db.close()


class CachedGeocoder:
    """A ``Geocoder`` behind the grid and the on-disk cache; counts the requests it really made."""

    def __init__(self, geocoder: Geocoder, cache: GeocodeCache, grid: float = DEFAULT_GRID, tag: str = ""):
        cell_of(0.0, 0.0, grid)  # validates the grid
        self.geocoder, self.cache, self.grid = geocoder, cache, grid
        self.tag = tag or f"zoom={getattr(geocoder, 'zoom', '')};lang={getattr(geocoder, 'language', '') or ''}"
        self.requests = 0

    def key(self, lat: float, lon: float) -> str:
        cell = cell_of(lat, lon, self.grid)
        return f"{self.tag};grid={self.grid};{cell.row},{cell.col}"

    def reverse(self, lat: float, lon: float) -> str | None:
        key = self.key(lat, lon)
        hit, place = self.cache.get(key)
        if hit:
            return place
        cell = cell_of(lat, lon, self.grid)
        place = self.geocoder.reverse(cell.lat, cell.lon)
        self.requests += 1
        self.cache.put(key, place)
        return place

    def search(self, address: str) -> tuple[float, float] | None:
        """The wrapped geocoder's ``search``, asked once per address ever (answers kept in the same cache)."""
        key = f"search;{' '.join(address.split()).lower()}"
        hit, found = self.cache.get(key)
        if not hit:
            point = self.geocoder.search(address)  # type: ignore[attr-defined]
            self.requests += 1
            found = f"{point[0]!r},{point[1]!r}" if point is not None else None
            self.cache.put(key, found)
        if found is None:
            return None
        lat, lon = found.split(",")
        return float(lat), float(lon)
