"""The sea, from ``natural=coastline`` ways, the way OSM renderers build it.

OpenStreetMap has no sea polygons: the sea is what lies on the *right* of the coastline
ways (they run with land on their left). Renderers cut the coastlines against the map
box and colour the pieces on the water side; this module does the same for one mask:

1. the coastline ways (whole, as fetched: their direction is the fact used) are
   clipped to the box and noded together with the box's outline;
2. the pieces of the box between them are polygonized;
3. each piece is sea when its outline runs against a coastline it shares: a polygon
   oriented counter-clockwise has its inside on the left of every edge, so an edge that
   follows a coastline's direction means land inside, one that runs against it, sea.

A piece with no coastline on its outline (the box lies wholly at sea or wholly inland
and no coastline crosses it) cannot be told this way and is left as land: a mask with
no coastline at all is drawn as before.
"""

from __future__ import annotations

import numpy as np

ON_LINE = 1e-6
"""Metres: an edge whose midpoint is this close to a coastline lies on it."""


def is_coastline(tags: dict[str, str]) -> bool:
    return tags.get("natural") == "coastline"


def coast_lines(geometries: np.ndarray) -> np.ndarray:
    """Coastline geometries as lines in their mapped direction; a closed way read as an area by GDAL
    (an island) becomes its outline, counter-clockwise: land inside, on the left."""
    import shapely

    lines = []
    for geom in geometries:
        if geom is None or geom.is_empty:
            continue
        if shapely.get_type_id(geom) in (3, 6):  # (Multi)Polygon
            oriented = shapely.orient_polygons(geom)
            lines += [shapely.LineString(p.exterior.coords) for p in shapely.get_parts(oriented)]
        else:  # ways split at nodes or joined by GDAL: merged, never reversed
            lines += list(shapely.get_parts(shapely.line_merge(geom, directed=True)))
    return np.array(lines, dtype=object)


def sea_polygons(lines: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The parts of ``box`` (minx, miny, maxx, maxy) on the water side of the coastline ``lines``."""
    import shapely

    if len(lines) == 0:
        return np.empty(0, dtype=object)
    frame = shapely.box(*box)
    clipped = shapely.clip_by_rect(lines, *box)
    clipped = clipped[~shapely.is_empty(clipped)]
    if len(clipped) == 0:
        return np.empty(0, dtype=object)
    noded = shapely.union_all(np.append(clipped, frame.boundary))
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))
    tree = shapely.STRtree(lines)
    return np.array([face for face in faces if _is_sea(face, lines, tree)], dtype=object)


def _is_sea(face, lines: np.ndarray, tree) -> bool:
    """Whether the face lies on the right of the coastline it shares its longest edge with."""
    import shapely

    face = shapely.orient_polygons(face)  # every ring has the inside on its left
    rings = [face.exterior, *face.interiors]
    edges = np.concatenate([np.stack([np.asarray(r.coords)[:-1], np.asarray(r.coords)[1:]], axis=1) for r in rings])
    mids = shapely.points(edges.mean(axis=1))
    nearest, distance = tree.query_nearest(mids, return_distance=True, all_matches=False)
    on_coast = distance <= ON_LINE
    if not on_coast.any():
        return False
    lengths = np.linalg.norm(edges[:, 1] - edges[:, 0], axis=1)
    pick = np.flatnonzero(on_coast)[np.argmax(lengths[on_coast])]
    line = lines[nearest[1][list(nearest[0]).index(pick)]]
    start, end = (line.project(shapely.Point(p)) for p in edges[pick])
    along = end - start
    if abs(along) > 2 * lengths[pick]:  # the edge straddles the start of a closed coastline
        along = -along
    return along < 0
