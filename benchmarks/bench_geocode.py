"""Geocoder requests per image on a FLAIR-like layout, and the Lambert-93 -> WGS84 check.

Prints, for a synthetic layout shaped like FLAIR #1 (77,412 patches of 102.4 m grouped in
zones of adjacent patches), how many requests the cached geocoder makes per image for a
few cache grids (target <= 0.05 at the default grid). The zone size defaults to 85 patches:
IGN's dataset card gives 974 areas over 980 km², ~1 km² (~95 patches) each. The geocoder
is a counting fake: the figure depends on the layout and the cache only.

With the reference patches present (../shared/reference/flair-pairs, not part of the
repository), also prints how far our conversion of each patch's Lambert-93 origin lands
from the lat/lon FLAIR published for it, and the distance from our converted centroid to
the point OpenStreetMap answered with.

    python benchmarks/bench_geocode.py [--patches 77412] [--zone-size 85]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seg2sat.data.flair import to_wgs84
from seg2sat.data.geocode import DEFAULT_GRID, CachedGeocoder, GeocodeCache

PATCH_M = 512 * 0.2
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "flair-pairs"
# Lambert-93 extent of mainland France (roughly), where zones are dropped
FRANCE_X, FRANCE_Y = (150_000, 1_050_000), (6_150_000, 7_050_000)


class CountingGeocoder:
    zoom, language = 18, None

    def __init__(self) -> None:
        self.calls = 0

    def reverse(self, lat: float, lon: float) -> str:
        self.calls += 1
        return f"{lat:.3f},{lon:.3f}"


def flair_like_centres(patches: int, zone_size: float, seed: int = 0) -> np.ndarray:
    """Lambert-93 centres of ``patches`` patches in compact rectangular zones of adjacent patches."""
    rng = np.random.default_rng(seed)
    centres, left = [], patches
    while left > 0:
        n = min(left, max(4, int(rng.lognormal(np.log(zone_size), 0.6))))
        aspect = rng.uniform(1, 3)
        cols = max(1, int(round(np.sqrt(n * aspect))))
        x0, y0 = rng.uniform(*FRANCE_X), rng.uniform(*FRANCE_Y)
        k = np.arange(n)
        centres.append(np.stack([x0 + (k % cols + 0.5) * PATCH_M, y0 - (k // cols + 0.5) * PATCH_M], 1))
        left -= n
    return np.concatenate(centres)


def requests_per_image(latlon: list[tuple[float, float]], grid: float) -> float:
    fake = CountingGeocoder()
    with tempfile.TemporaryDirectory() as tmp:
        cache = GeocodeCache(Path(tmp) / "cache.sqlite")
        geocoder = CachedGeocoder(fake, cache, grid=grid)
        for lat, lon in latlon:
            geocoder.reverse(lat, lon)
        cache.close()
    return fake.calls / len(latlon)


def reference_check() -> None:
    from pyproj import Geod

    files = sorted(REFERENCE.glob("MSK_*.json"))
    if not files:
        print(f"reference patches not found in {REFERENCE}: conversion check skipped")
        return
    geod = Geod(ellps="WGS84")
    for path in files:
        meta = json.loads(path.read_text(encoding="utf-8"))
        lat, lon = to_wgs84(*meta["origin"])
        error = geod.inv(lon, lat, meta["latlong"][1], meta["latlong"][0])[2]
        clat, clon = to_wgs84(meta["patch_centroid_x"], meta["patch_centroid_y"])
        osm = geod.inv(clon, clat, float(meta["lon"]), float(meta["lat"]))[2]
        print(f"{path.stem}: origin vs FLAIR's published lat/lon {error * 1000:.3f} mm; "
              f"centroid ({clat:.6f}, {clon:.6f}) to the OSM answer's point {osm:.0f} m")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=77_412)
    parser.add_argument("--zone-size", type=float, default=85, help="mean patches per zone")
    args = parser.parse_args()
    xy = flair_like_centres(args.patches, args.zone_size)
    latlon = [to_wgs84(x, y) for x, y in xy]
    print(f"{len(latlon)} patches, zones of ~{args.zone_size:g} adjacent patches (synthetic FLAIR-like layout)")
    for grid in (0.005, DEFAULT_GRID, 0.02):
        mark = "  <- default" if grid == DEFAULT_GRID else ""
        print(f"grid {grid:g} deg: {requests_per_image(latlon, grid):.4f} geocoder requests per image{mark}")
    reference_check()


if __name__ == "__main__":
    main()
