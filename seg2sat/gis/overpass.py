"""A plain, polite Overpass API client: one request per area, cached on disk as the ``.osm`` it answered.

The public servers ask for an identifying User-Agent, few and small requests, and
patience when busy. So: a query asks only for the tags :mod:`.osm_tags` can draw,
an area already asked about is read from the cache (the key is the query itself,
which holds the bounding box), and every failure is one line naming the server and
what to do, never a traceback. The answer is requested as OSM XML so that the same
GDAL reader handles fetched and local data.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .osm_tags import overpass_filters

DEFAULT_OVERPASS_URL = "https://overpass-api.de"
DEFAULT_USER_AGENT = "seg2sat-osm-mask/0.1 (https://github.com/RubenGres/Seg2Sat)"
DEFAULT_TIMEOUT = 180
"""Seconds the server may spend on the query (Overpass' own default) and we wait for the answer."""


class OverpassError(ValueError):
    """Overpass could not answer (unreachable, busy, refused the query); the message is one line."""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/seg2sat/osm`` (``~/.cache/seg2sat/osm``): answers survive between runs and projects."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "seg2sat" / "osm"


def build_query(south: float, west: float, north: float, east: float, timeout: int = DEFAULT_TIMEOUT) -> str:
    """Overpass QL for every way and relation in the box that some tag rule draws, and the coastline
    ways the sea is built from (:mod:`.coast`), with their nodes."""
    box = ",".join(f"{v:.6f}" for v in (south, west, north, east))
    wanted = "".join(f"  way{f};\n  relation{f};\n" for f in overpass_filters()) + '  way["natural"="coastline"];\n'
    return f"[out:xml][timeout:{int(timeout)}][bbox:{box}];\n(\n{wanted});\n(._;>;);\nout body;\n"


def interpreter_url(url: str) -> str:
    """``https://host`` or ``https://host/api/interpreter`` -> the interpreter endpoint."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"https://{url}"
    return url if url.endswith("/api/interpreter") else f"{url}/api/interpreter"


class OverpassClient:
    """POSTs queries to ``{url}/api/interpreter``; ``requests`` counts the ones that reached the network."""

    def __init__(self, url: str = DEFAULT_OVERPASS_URL, user_agent: str = DEFAULT_USER_AGENT,
                 cache_dir: str | os.PathLike | None = None, timeout: float = DEFAULT_TIMEOUT):
        if not user_agent or "python-urllib" in user_agent.lower():
            raise ValueError("Overpass needs a user agent that identifies your application (`user_agent`)")
        self.url, self.user_agent, self.timeout = interpreter_url(url), user_agent, float(timeout)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.requests = 0

    def cache_path(self, query: str) -> Path:
        return self.cache_dir / f"overpass-{hashlib.sha256(query.encode()).hexdigest()[:24]}.osm"

    def fetch(self, query: str) -> tuple[Path, bool]:
        """The answer to ``query`` as an ``.osm`` file, and whether it came from the cache."""
        path = self.cache_path(query)
        if path.is_file():
            return path, True
        data = self._post(query)
        _check_answer(data, self.url)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic: a killed run never leaves half an answer in the cache
        return path, False

    def _post(self, query: str) -> bytes:
        body = urllib.parse.urlencode({"data": query}).encode()
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "User-Agent": self.user_agent, "Content-Type": "application/x-www-form-urlencoded"})
        self.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            hint = " (the server is busy: try again in a minute)" if exc.code in (429, 503, 504) else ""
            raise OverpassError(f"Overpass API {self.url} answered HTTP {exc.code} {exc.reason}{hint}") from None
        except OSError as exc:  # URLError, timeouts, refused connections
            reason = getattr(exc, "reason", exc)
            raise OverpassError(f"Overpass API {self.url} is unreachable ({reason}); "
                                "pass `overpass_url` for another server or `source` FILE to work offline") from None


def _check_answer(data: bytes, url: str) -> None:
    """Overpass reports a timed-out or too-large query inside a 200 answer, as a ``<remark>``: never cache that."""
    head = data[:4096].decode("utf-8", "replace")
    if "<osm" not in head:
        raise OverpassError(f"Overpass API {url} did not answer with OSM XML (got {head[:80]!r}…)")
    tail = data[-2048:].decode("utf-8", "replace")
    if "<remark>" in tail and "error" in tail.lower():
        remark = tail.split("<remark>", 1)[1].split("</remark>", 1)[0].strip()
        raise OverpassError(f"Overpass API {url} gave up on the query: {' '.join(remark.split())}")
