"""OSM masks of any size: a district at 0.2 m, burnt window by window into a class GeoTIFF.

Past ``MAX_SIDE`` pixels a side (819 m at FLAIR's 0.2 m) a mask is not held whole: the
drawing list (vector geometries in drawing order, small next to the raster) is made
once, and each ``WINDOW`` px window of the grid burns the geometries that touch it, in
the same order, into its part of a tiled GeoTIFF. GDAL burns a pixel by its centre, and
a window's pixels have the centres they have in the whole grid, so the file is the
whole-grid rasterization pixel for pixel; memory follows the window. The class shares
for the caption are counted on the way. The file then goes straight to the streamed
renderer or the windowed diffusion (``generate --place``), like any GeoTIFF mask.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..prompts import caption_from_shares
from .categories import write_categories
from .files import atomic_path, write_text
from .raster import Grid, box_window, class_profile, env, label_classes
from .stream import windows

WINDOW = 1024


def rasterize_to_file(drawing: tuple[np.ndarray, np.ndarray], grid: Grid, background: int, path: str | os.PathLike,
                      window: int = WINDOW) -> tuple[int, dict[int, float]]:
    """Burn ``drawing`` (:func:`seg2sat.gis.osm.drawing_list`'s geometries and classes, in drawing order) on ``grid``
    into the class GeoTIFF ``path``; (features drawn, {class id: share})."""
    import rasterio
    import shapely
    from rasterio.features import rasterize as burn
    from rasterio.windows import transform as window_transform


    geoms, classes = drawing
    tree = shapely.STRtree(geoms)
    counts = np.zeros(256, dtype=np.int64)
    with env(), atomic_path(path) as tmp, rasterio.open(tmp, "w", **class_profile(grid)) as dst:
        for box in windows(grid, window):
            area = box_window(box)
            transform = window_transform(area, grid.transform)
            hits = np.sort(tree.query(shapely.box(*rasterio.windows.bounds(area, grid.transform))))
            shape = (box.height, box.width)
            ids = (burn(zip(geoms[hits], classes[hits].tolist()), out_shape=shape, transform=transform,
                        fill=background, dtype="uint8") if len(hits) else np.full(shape, background, np.uint8))
            dst.write(ids, 1, window=area)
            counts += np.bincount(ids.ravel(), minlength=256)
        label_classes(dst)
    write_categories(path)
    total = counts.sum()
    return len(geoms), {int(c): float(counts[c] / total) for c in np.flatnonzero(counts)}


def save_windowed(drawing: tuple[np.ndarray, np.ndarray], grid: Grid, background: int, out: str | os.PathLike, stem: str,
                  name: str | None) -> tuple[dict[str, Path], int, str]:
    """``STEM.tif`` and ``STEM.txt`` in ``out`` (no PNG: it would be held whole); (paths, drawn, caption)."""

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"tif": out / f"{stem}.tif", "txt": out / f"{stem}.txt"}
    drawn, shares = rasterize_to_file(drawing, grid, background, paths["tif"])
    text = caption_from_shares(name, shares)
    write_text(paths["txt"], text + "\n")
    return paths, drawn, text
