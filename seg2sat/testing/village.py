"""A small synthetic village, for the OSM rasterizer's tests and benchmark: its features and what they should be.

Each feature carries its OSM tags *and*, independently of :mod:`seg2sat.gis.osm_tags`, the class
and the footprint it should cover (a road is a plain rectangle of its documented
width), with an explicit painting layer. :func:`expected_ids` paints those footprints
by pixel-centre tests (``shapely.contains_xy``), so the rasterizer is checked against
geometry worked out by hand, not against itself.

Coordinates are metres east/north of the village centre, a point of UTM zone 31N in
Lyon; edges sit on whole metres so pixel centres (at 0.2 m) never fall on one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

CRS = "EPSG:32631"
CENTRE = (642000.0, 5069900.0)
"""Easting, northing of the village centre (UTM 31N, central Lyon)."""
ROAD_WIDTH = 6.0
"""``highway=residential``: the width :mod:`seg2sat.gis.osm_tags` documents for it."""


@dataclass(frozen=True)
class VillageFeature:
    name: str
    tags: dict[str, str]
    geometry: object  # shapely geometry, local metres
    expected: int  # the FLAIR class it should be
    footprint: object  # the polygon that class should cover, local metres
    layer: int  # painting order of the expectation: higher covers lower


def _box(x0: float, y0: float, x1: float, y1: float):
    import shapely

    return shapely.box(x0, y0, x1, y1)


def _line(v: float | None = None, u: float | None = None, reach: float = 70.0):
    """A straight line across the whole map: horizontal at v, or vertical at u."""
    import shapely

    return shapely.LineString([(-reach, v), (reach, v)] if v is not None else [(u, -reach), (u, reach)])


def _strip(width: float, v: float | None = None, u: float | None = None, reach: float = 70.0):
    """The rectangle a line of that width covers (its ends lie far off the map)."""
    half = width / 2
    return _box(-reach, v - half, reach, v + half) if v is not None else _box(u - half, -reach, u + half, reach)


def features() -> list[VillageFeature]:
    """The village: fields (background), a meadow with a pond and a broadleaved copse, a needle-leaved wood with
    a park clearing, a garden with a pool and a house, a vineyard with a greenhouse, a car park, a road, a track
    and a river."""
    f = VillageFeature
    area = [
        f("meadow", {"landuse": "meadow"}, _box(-62, 10, 0, 62), 10, _box(-62, 10, 0, 62), 1),
        f("copse", {"landuse": "forest", "leaf_type": "broadleaved"}, _box(-10, 40, 0, 62), 7, _box(-10, 40, 0, 62), 2),
        f("wood", {"natural": "wood", "leaf_type": "needleleaved"}, _box(5, 15, 62, 62), 6, _box(5, 15, 62, 62), 1),
        f("clearing", {"leisure": "park"}, _box(30, 30, 40, 40), 10, _box(30, 30, 40, 40), 2),
        f("garden", {"leisure": "garden"}, _box(-45, -38, -10, -12), 10, _box(-45, -38, -10, -12), 1),
        f("vineyard", {"landuse": "vineyard"}, _box(0, -38, 50, -12), 9, _box(0, -38, 50, -12), 1),
        f("pond", {"natural": "water"}, _box(-40, 20, -25, 35), 5, _box(-40, 20, -25, 35), 3),
        f("parking", {"amenity": "parking"}, _box(25, -8, 45, 0), 3, _box(25, -8, 45, 0), 6),
        f("house", {"building": "house"}, _box(-22, -34, -14, -24), 1, _box(-22, -34, -14, -24), 7),
        f("pool", {"leisure": "swimming_pool"}, _box(-38, -32, -30, -26), 13, _box(-38, -32, -30, -26), 8),
        f("greenhouse", {"building": "greenhouse"}, _box(5, -30, 15, -20), 18, _box(5, -30, 15, -20), 8),
    ]
    lines = [
        f("river", {"waterway": "river"}, _line(v=-46), 5, _strip(12, v=-46), 3),
        f("track", {"highway": "track"}, _line(u=20.5), 2, _strip(3, u=20.5), 4),
        f("road", {"highway": "residential", "name": "Rue du Village"}, _line(v=5), 3, _strip(ROAD_WIDTH, v=5), 5),
    ]
    return area + lines


def centre_latlon() -> tuple[float, float]:
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(*CENTRE)
    return lat, lon


def place() -> str:
    """The village centre as a ``lat,lon`` PLACE."""
    lat, lon = centre_latlon()
    return f"{lat:.10f},{lon:.10f}"


def _wgs84(geometry):
    from pyproj import Transformer
    from shapely.affinity import translate
    from shapely.ops import transform

    to_wgs84 = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    return transform(to_wgs84.transform, translate(geometry, *CENTRE))


def write_geojson(path: str | os.PathLike, items: list[VillageFeature] | None = None) -> Path:
    """The village as GeoJSON in WGS84, tags as properties (as overpass-turbo exports them)."""
    import shapely

    items = features() if items is None else items
    collection = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"@id": f"way/{i + 1}", **item.tags},
         "geometry": json.loads(shapely.to_geojson(_wgs84(item.geometry)))} for i, item in enumerate(items)]}
    path = Path(path)
    path.write_text(json.dumps(collection), encoding="utf-8")
    return path


def write_osm(path: str | os.PathLike, items: list[VillageFeature] | None = None) -> Path:
    """The village as OSM XML (closed ways for areas), the format Overpass answers in."""
    import shapely

    items = features() if items is None else items
    nodes, ways = [], []
    for i, item in enumerate(items):
        geom = _wgs84(item.geometry)
        coords = shapely.get_coordinates(geom.exterior if geom.geom_type == "Polygon" else geom)
        refs = []
        for lon, lat in coords[:-1] if geom.geom_type == "Polygon" else coords:
            nodes.append(f'  <node id="{len(nodes) + 1}" lat="{lat:.10f}" lon="{lon:.10f}"/>')
            refs.append(len(nodes))
        refs += refs[:1] if geom.geom_type == "Polygon" else []
        tags = "".join(f"<tag k={quoteattr(k)} v={quoteattr(v)}/>" for k, v in item.tags.items())
        ways.append(f'  <way id="{i + 1}">{"".join(f"<nd ref={chr(34)}{r}{chr(34)}/>" for r in refs)}{tags}</way>')
    path = Path(path)
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<osm version="0.6" generator="seg2sat village">\n'
                    + "\n".join(nodes + ways) + "\n</osm>\n", encoding="utf-8")
    return path


def expected_ids(grid, background: int = 11, items: list[VillageFeature] | None = None) -> np.ndarray:
    """What each pixel of ``grid`` should be: footprints painted by layer, tested at pixel centres."""
    import shapely

    items = features() if items is None else items
    t = grid.transform
    cols, rows = np.meshgrid(np.arange(grid.width) + 0.5, np.arange(grid.height) + 0.5)
    x = t.c + cols * t.a + rows * t.b - CENTRE[0]
    y = t.f + cols * t.d + rows * t.e - CENTRE[1]
    ids = np.full((grid.height, grid.width), background, dtype=np.uint8)
    for item in sorted(items, key=lambda it: it.layer):
        ids[shapely.contains_xy(item.footprint, x, y)] = item.expected
    return ids
