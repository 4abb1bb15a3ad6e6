"""One reader for OpenStreetMap features in any file GDAL knows: GeoJSON, GeoPackage, ``.osm``, ``.osm.pbf``.

Everything goes through pyogrio's raw API (no geopandas): geometries come back as WKB
(read by shapely) and attributes as columns, turned into one ``{tag: value}`` dict per
feature. The three shapes OSM tags arrive in are merged:

- plain columns, as overpass-turbo, osmnx and QGIS export them (GeoJSON properties);
- GDAL's OSM driver keeps only common keys as columns and packs the rest (``leaf_type``,
  ``surface``, ``width``…) into an hstore string ``other_tags``: ``"k"=>"v","k2"=>"v2"``;
- a nested ``tags`` object (older osmtogeojson output), read by GDAL as a JSON string.

The answers of the Overpass client are ``.osm`` files, so fetched and local data are
read by the same code.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OSM_SUFFIXES = (".osm", ".pbf")
OSM_LAYERS = ("lines", "multilinestrings", "multipolygons")
"""GDAL OSM driver layers with geometry that can cover ground (``points`` cannot; ``other_relations`` are routes)."""

_HSTORE = re.compile(r'"((?:[^"\\]|\\.)*)"=>"((?:[^"\\]|\\.)*)"')
_UNESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class Features:
    """Geometries (shapely, in ``crs``) and their OSM tags, one dict per geometry."""

    geometries: np.ndarray
    tags: list[dict[str, str]]
    crs: str | None
    repaired: int = 0
    """Broken geometries (clipped rings, self-crossings) made valid, see :mod:`.osm_repair`."""
    skipped: int = 0
    """Broken geometries with nothing left to draw, left out."""

    def summary(self) -> str:
        """``; 3 broken features repaired, 8 skipped`` (empty when none were broken), for the progress line."""
        if not (self.repaired or self.skipped):
            return ""
        return f"; {self.repaired} broken features repaired, {self.skipped} skipped"

    def __len__(self) -> int:
        return len(self.tags)


def parse_hstore(text: str | None) -> dict[str, str]:
    """GDAL's ``other_tags`` (``"k"=>"v",…``, quotes and backslashes escaped) as a dict."""
    if not text:
        return {}
    return {_UNESCAPE.sub(r"\1", k): _UNESCAPE.sub(r"\1", v) for k, v in _HSTORE.findall(text)}


def _layers(path: Path) -> list[str]:
    """Layers that can cover ground: not points, and not tables without geometry (QGIS's ``layer_styles``)."""
    import pyogrio

    if path.suffix.lower() in OSM_SUFFIXES:
        return list(OSM_LAYERS)
    try:
        layers = pyogrio.list_layers(path)
    except Exception as exc:  # pyogrio raises its own DataSourceError and friends
        raise ValueError(f"`source` {path}: not a vector file GDAL can read ({exc})") from exc
    return [str(name) for name, kind in layers if kind is not None and "Point" not in str(kind)]


def _tags(names: list[str], columns: list[np.ndarray], n: int) -> list[dict[str, str]]:
    """Column-wise attributes -> one tag dict per feature (nulls and empty strings dropped)."""
    tags: list[dict[str, str]] = [{} for _ in range(n)]
    for name, column in zip(names, columns):
        for i, value in enumerate(column):
            if value is None or value == "" or (isinstance(value, float) and value != value):
                continue
            if name == "other_tags":
                tags[i].update(parse_hstore(str(value)))
            elif name == "tags" and isinstance(value, str) and value.startswith("{"):
                try:
                    tags[i].update({k: str(v) for k, v in json.loads(value).items() if v is not None})
                except (ValueError, AttributeError):
                    tags[i][name] = value
            else:
                tags[i].setdefault(name, str(value))
    return tags


def _bbox_in(path: Path, layer: str, bounds, bounds_crs: str | None):
    """``bounds`` in the layer's own CRS (pyogrio filters in it); a layer without a CRS is taken as ``bounds_crs``."""
    import pyogrio

    if bounds is None or bounds_crs is None or path.suffix.lower() in OSM_SUFFIXES:  # OSM data is WGS84
        return bounds
    layer_crs = pyogrio.read_info(path, layer=layer)["crs"]
    if not layer_crs or layer_crs == bounds_crs:
        return bounds
    from pyproj import Transformer

    return Transformer.from_crs(bounds_crs, layer_crs, always_xy=True).transform_bounds(*bounds, densify_pts=21)


def read_features(path: str | os.PathLike, bounds: tuple[float, float, float, float] | None = None,
                  bounds_crs: str | None = "EPSG:4326") -> Features:
    """Every feature of every non-point layer of ``path`` (within ``bounds`` = minx, miny, maxx, maxy
    in ``bounds_crs`` when given), in the CRS of the file's first layer."""
    import shapely

    from .osm_repair import decode

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"`source` {path}: file not found")
    geometries, tags, crs, repaired, skipped = [], [], None, 0, 0
    for layer in _layers(path):
        meta, wkb, columns = _read_layer(path, layer, bounds, bounds_crs)
        layer_crs = meta["crs"] or "EPSG:4326"  # GeoJSON without a crs member is WGS84 by definition
        crs = crs or layer_crs
        decoded = decode(wkb)
        geoms, repaired, skipped = decoded.geometries, repaired + decoded.repaired, skipped + decoded.skipped
        if layer_crs != crs:
            geoms = to_crs(geoms, layer_crs, crs)
        geometries.append(geoms)
        tags += _tags(list(meta["fields"]), list(columns), len(geoms))
    found = np.concatenate(geometries) if geometries else np.empty(0, dtype=object)
    keep = ~shapely.is_missing(found)
    return Features(found[keep], [t for t, k in zip(tags, keep) if k], crs, repaired, skipped)


GDAL_NOISE = ("Non closed ring", "organizePolygons")
"""GDAL warnings about the broken rings of clipped extracts: one per feature, and :mod:`.osm_repair` handles them."""


@contextmanager
def quiet_gdal() -> Iterator[None]:
    """GDAL's per-feature warnings about broken rings (:data:`GDAL_NOISE`) silenced, nothing else."""
    with warnings.catch_warnings():
        for text in GDAL_NOISE:
            warnings.filterwarnings("ignore", message=f".*{text}", category=RuntimeWarning)
        yield


def _read_layer(path: Path, layer: str, bounds, bounds_crs: str | None):
    """(meta, wkb, columns) of one layer, without GDAL's per-feature ring warnings on stderr."""
    import pyogrio.raw

    try:
        bbox = _bbox_in(path, layer, bounds, bounds_crs)
        with quiet_gdal():
            meta, _, wkb, columns = pyogrio.raw.read(path, layer=layer, bbox=bbox)
    except Exception as exc:
        raise ValueError(f"`source` {path}: layer {layer!r} is unreadable ({exc})") from exc
    return meta, wkb, columns


def to_crs(geometries: np.ndarray, src: str | None, dst) -> np.ndarray:
    """Geometries reprojected with pyproj (x = longitude / easting, always)."""
    import shapely
    from pyproj import Transformer

    if src is None or len(geometries) == 0:
        return geometries
    transformer = Transformer.from_crs(src, dst, always_xy=True)
    return shapely.transform(geometries, lambda x, y: transformer.transform(x, y), interleaved=False)


def extent(path: str | os.PathLike) -> tuple[float, float, float, float] | None:
    """(west, south, east, north) in degrees around every layer read, or None when GDAL cannot tell cheaply.

    A box that misses it is a mistake (swapped lat/lon, the wrong country's extract) that
    would otherwise give an all-background mask.
    """
    import pyogrio

    path = Path(path)
    if not path.is_file():
        return None  # read_features says so
    boxes = []
    for layer in _layers(path):
        try:
            with quiet_gdal():  # the total bounds of an OSM file are found by reading it
                info = pyogrio.read_info(path, layer=layer, force_total_bounds=True)
        except Exception:  # the read itself reports unreadable layers
            return None
        bounds = info.get("total_bounds")
        if bounds is None or not np.all(np.isfinite(bounds)) or bounds[0] > bounds[2]:
            continue
        layer_crs = info.get("crs") or "EPSG:4326"
        if layer_crs != "EPSG:4326":
            from pyproj import Transformer

            bounds = Transformer.from_crs(layer_crs, "EPSG:4326", always_xy=True).transform_bounds(*bounds)
        boxes.append(bounds)
    if not boxes:
        return None
    b = np.array(boxes, dtype=float)
    return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())
