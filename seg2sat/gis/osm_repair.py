"""Broken geometries from real OpenStreetMap extracts: repaired where possible, counted where not.

An extract cut from a bigger one (Geofabrik, BBBike, ``osmium extract``) keeps ways
whose nodes lie partly outside it. GDAL's OSM driver then builds rings of one or two
points (a clipped closed way becomes ``[a, a]``), unclosed rings, and self-crossing
multipolygons; GEOS refuses to even read the first kind. One such feature must not
end the run, so every geometry is decoded here: invalid WKB is salvaged ring by ring
(rings with fewer than 3 distinct points dropped, open rings closed), invalid shapes
go through ``shapely.make_valid``, and what has no area left is skipped. The caller
reports how many were repaired and skipped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

_POLYGON, _MULTIPOLYGON = 3, 6


@dataclass(frozen=True)
class Decoded:
    """Geometries (None where skipped) and how many were repaired or skipped."""

    geometries: np.ndarray
    repaired: int
    skipped: int


def decode(wkb: np.ndarray | None) -> Decoded:
    """WKB from pyogrio -> shapely geometries; GEOS errors on individual features never escape."""
    import shapely

    if wkb is None or len(wkb) == 0:
        return Decoded(np.empty(0, dtype=object), 0, 0)
    geoms = shapely.from_wkb(wkb, on_invalid="ignore")
    given = np.array([b is not None for b in wkb], dtype=bool)
    unreadable = shapely.is_missing(geoms) & given
    for i in np.flatnonzero(unreadable):
        geoms[i] = salvage(bytes(wkb[i]))
    invalid = ~shapely.is_missing(geoms) & ~shapely.is_valid(geoms)
    fixed = shapely.make_valid(geoms[invalid], method="structure", keep_collapsed=False)
    geoms[invalid] = np.where(shapely.is_empty(fixed), None, fixed)
    lost = given & (shapely.is_missing(geoms) | shapely.is_empty(geoms))
    geoms[lost] = None
    repaired = int(((invalid | unreadable) & ~lost).sum())
    return Decoded(geoms, repaired, int(lost.sum()))


def salvage(wkb: bytes):
    """A (multi)polygon GEOS cannot read, rebuilt from its usable rings; None when nothing is left."""
    import shapely

    try:
        polygons = _read_polygons(wkb)
    except (struct.error, ValueError):
        return None
    kept = [shapely.Polygon(rings[0], rings[1:]) for rings in polygons if rings]
    return shapely.MultiPolygon(kept) if kept else None


def _read_polygons(wkb: bytes) -> list[list[np.ndarray]]:
    """Rings of each polygon of a 2D (Multi)Polygon WKB; a polygon whose shell is unusable is empty."""
    order, kind = _header(wkb, 0)
    if kind == _POLYGON:
        rings, _ = _read_rings(wkb, 5, order)
        return [rings]
    if kind != _MULTIPOLYGON:
        raise ValueError(f"not a polygon (WKB type {kind})")
    (count,), offset, polygons = struct.unpack_from(order + "I", wkb, 5), 9, []
    for _ in range(count):
        part_order, part_kind = _header(wkb, offset)
        if part_kind != _POLYGON:
            raise ValueError(f"not a polygon (WKB type {part_kind})")
        rings, offset = _read_rings(wkb, offset + 5, part_order)
        polygons.append(rings)
    return polygons


def _header(wkb: bytes, offset: int) -> tuple[str, int]:
    order = "<" if wkb[offset] == 1 else ">"
    (kind,) = struct.unpack_from(order + "I", wkb, offset + 1)
    return order, kind


def _read_rings(wkb: bytes, offset: int, order: str) -> tuple[list[np.ndarray], int]:
    """Usable rings (closed, >= 3 distinct points) from ``offset``; [] when the shell is not usable."""
    (count,), offset = struct.unpack_from(order + "I", wkb, offset), offset + 4
    rings = []
    for index in range(count):
        (points,), offset = struct.unpack_from(order + "I", wkb, offset), offset + 4
        xy = np.frombuffer(wkb, dtype=order + "f8", count=2 * points, offset=offset).reshape(-1, 2)
        offset += 16 * points
        usable = len(np.unique(xy, axis=0)) >= 3
        if index == 0 and not usable:
            rings = None
        elif rings is not None and usable:
            rings.append(xy if (xy[0] == xy[-1]).all() else np.vstack([xy, xy[:1]]))
    return rings or [], offset
