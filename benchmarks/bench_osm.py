"""OpenStreetMap -> land-cover mask: time for a 512 px area from a local file, and the rasterizer's accuracy.

Prints, for the synthetic village of ``seg2sat.testing.village`` (14 features) and a denser
synthetic town (a street grid with a few hundred houses and a 2,000-vertex landuse
polygon, about what Overpass answers for a town centre), the seconds ``place_mask``
takes from a GeoJSON and from an ``.osm`` file (target <= 1 s; median of warm runs,
and the first run of the process, imports included). Then the share of the village's
pixels that get the class worked out by hand from its geometry (pixel-centre tests with
shapely, independent of the tag table and of rasterio; target >= 99 %).

    python benchmarks/bench_osm.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seg2sat.testing import village


def town() -> list[village.VillageFeature]:
    """Houses every 14 m between streets every 42 m, over the fetched area (the 102 m mask and 30 m around)."""
    import shapely

    items = [village.VillageFeature("town", {"landuse": "residential"}, shapely.Point(0, 0).buffer(90, quad_segs=500),
                                    10, None, 0)]
    for k in range(-2, 3):
        for kind, line in (("h", shapely.LineString([(-80, 42 * k), (80, 42 * k)])),
                           ("v", shapely.LineString([(42 * k, -80), (42 * k, 80)]))):
            items.append(village.VillageFeature(f"street{kind}{k}", {"highway": "residential"}, line, 3, None, 0))
    for i in range(-7, 7):
        for j in range(-7, 7):
            x, y = 14 * i + 3, 14 * j + 3
            if min(abs(x - 42 * round(x / 42)), abs(y - 42 * round(y / 42))) > 5:
                items.append(village.VillageFeature(f"house{i},{j}", {"building": "house"},
                                                    shapely.box(x, y, x + 8, y + 10), 1, None, 0))
    return items


def timed(place: str, source: Path, runs: int) -> tuple[float, float]:
    """(median of warm runs, first run) in seconds."""
    from seg2sat.gis.osm import place_mask

    times = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        place_mask(place, source=source)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]), times[0]


def accuracy(source: Path, resolution: float) -> float:
    from seg2sat.gis.osm import place_mask

    size = int(round(102.4 / resolution))
    mask = place_mask(village.place(), source=source, size=size, resolution=resolution)
    return float((mask.ids == village.expected_ids(mask.grid)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = {"village": village.features(), "town": town()}
        print(f"OSM -> 512x512 mask at 0.2 m/px from a local file (median of {args.runs} warm runs; target <= 1 s):")
        for name, items in files.items():
            for suffix, write in ((".geojson", village.write_geojson), (".osm", village.write_osm)):
                path = write(tmp / f"{name}{suffix}", items)
                warm, first = timed(village.place(), path, args.runs)
                print(f"  {name:8s} {suffix:9s} {len(items):4d} features  {warm:.3f} s  (first run of the process "
                      f"{first:.3f} s)")
        print("accuracy on the synthetic village (pixels with the hand-worked class; target >= 99 %):")
        for suffix, write in ((".geojson", village.write_geojson), (".osm", village.write_osm)):
            path = write(tmp / f"village{suffix}")
            for resolution in (0.2, 0.3):
                print(f"  {suffix:9s} {resolution} m/px  {accuracy(path, resolution):.4%}")


if __name__ == "__main__":
    main()
