"""GeoTIFF in and out: masks read from land-cover rasters, results that sit where their mask sits.

A result has its mask's size (the size policy in :mod:`seg2sat.masks`), so it takes
the mask's grid unchanged: same CRS, same affine transform, and QGIS overlays the
two exactly. Results are written as Cloud-Optimized GeoTIFFs (tiled, internal
overviews), which QGIS, GDAL and web map servers read quickly at any zoom.

Mask rasters come in three kinds, told apart by their bands: three or more bands
are a colour image (snapped to the class colours like a PNG); one band holds
codes, read as FLAIR classes (``MSK_*.tif``, or the class GeoTIFFs Seg2Sat itself
writes) or, with ``classes=``, as ESA WorldCover or CORINE codes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..box import Box
from ..classes import CLASSES
from ..masks import PALETTE, from_raster
from .categories import write_categories
from .files import atomic_path, temporary_name
from .landcover import NODATA_CODES, to_flair

TIFF_SUFFIXES = (".tif", ".tiff")
GDAL_CACHE_MB = 128
"""GDAL's block cache (its default is 5 % of RAM): bounds what reading and writing big rasters holds."""


@dataclass(frozen=True)
class Grid:
    """Where a raster sits: size in pixels, CRS and the affine pixel -> CRS transform."""

    width: int
    height: int
    crs: object | None
    transform: object
    valid: np.ndarray | None = field(default=None, compare=False, repr=False)
    """Where the mask read has data (None: everywhere); results written on the grid are nodata elsewhere."""

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None


def is_tiff(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in TIFF_SUFFIXES


def env():
    """A rasterio environment with a bounded block cache; use it around every read/write of big rasters."""
    import rasterio

    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB, GDAL_NUM_THREADS="ALL_CPUS")


def open_raster(path: str | os.PathLike):
    """rasterio dataset of a mask raster; an unreadable file is a ValueError naming it."""
    import rasterio

    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioError as exc:
        raise ValueError(f"mask {path} is not a readable GeoTIFF ({exc})") from exc


def open_mask(path: str | os.PathLike, resolution: float | None = None):
    """A mask raster to read window by window; ``resolution`` (metres/px) resamples it nearest-neighbour.

    Resampling goes through a warped view (GDAL's VRT), so a 10 m WorldCover tile can be
    read at 0.2 m one window at a time without ever holding the fine grid. A raster in
    degrees (WorldCover and many downloads are EPSG:4326) is reprojected to the UTM zone
    of its centre, since a resolution in metres means nothing in degrees (see :func:`utm_note`).
    """
    src = open_raster(path)
    if resolution is None:
        return src
    if not resolution > 0:
        src.close()
        raise ValueError(f"resolution must be > 0, got {resolution}")
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    if is_geographic(src):
        return WarpedVRT(src, resampling=Resampling.nearest, **_utm_view(src, resolution))
    from affine import Affine

    t = src.transform
    scale_x, scale_y = resolution / abs(t.a), resolution / abs(t.e)
    width, height = max(1, round(src.width / scale_x)), max(1, round(src.height / scale_y))
    transform = t @ Affine.scale(src.width / width, src.height / height)
    return WarpedVRT(src, crs=src.crs, transform=transform, width=width, height=height, resampling=Resampling.nearest)


def is_geographic(src) -> bool:
    return src.crs is not None and src.crs.is_geographic


def utm_of(src):
    """The UTM zone (WGS 84) of the raster's centre, as a rasterio CRS."""
    from rasterio.warp import transform_bounds

    from .crs import metric_crs

    west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    return metric_crs((south + north) / 2, (west + east) / 2)


def _utm_view(src, resolution: float) -> dict:
    """WarpedVRT options: the raster in its UTM zone at ``resolution`` m, the corner on whole pixels.

    Pixels the reprojection brings in from outside the raster are nodata (the source's
    own nodata value, else an alpha band), never a class.
    """
    import math

    from rasterio.transform import from_origin
    from rasterio.warp import transform_bounds

    crs = utm_of(src)
    left, bottom, right, top = transform_bounds(src.crs, crs, *src.bounds, densify_pts=21)
    left, top = math.floor(left / resolution) * resolution, math.ceil(top / resolution) * resolution
    width = max(1, math.ceil((right - left) / resolution - 1e-9))
    height = max(1, math.ceil((top - bottom) / resolution - 1e-9))
    view = dict(crs=crs, transform=from_origin(left, top, resolution, resolution), width=width, height=height)
    return view | ({"nodata": src.nodata} if src.nodata is not None else {"add_alpha": True})


def utm_note(path: str | os.PathLike, resolution: float | None) -> str | None:
    """The one line that says a raster in degrees was reprojected (None when it was not)."""
    if resolution is None:
        return None
    with env(), open_raster(path) as src:
        return utm_note_of(src, resolution)


def utm_note_of(src, resolution: float | None) -> str | None:
    """:func:`utm_note` of a raster already open (or of the warped view :func:`open_mask` gave)."""
    src = getattr(src, "src_dataset", src)  # the file under a WarpedVRT
    if resolution is None or not is_geographic(src):
        return None
    return (f"{Path(src.name).name} is in {src.crs.to_string()} (degrees): reprojected to its UTM zone "
            f"{utm_of(src).to_string()} for `resolution` {resolution:g} m")


def grid_of(src) -> Grid:
    return Grid(src.width, src.height, src.crs, src.transform)


def box_window(box: Box):
    """The rasterio Window of a pixel box."""
    from rasterio.windows import Window

    left, top, right, bottom = box
    return Window(left, top, right - left, bottom - top)


def read_ids(src, window=None, classes: str = "flair") -> np.ndarray:
    """Class ids 1..19 of a mask raster (or of ``window`` of it: a rasterio Window)."""
    if src.count >= 3 or classes == "flair":
        return from_raster(src.read(list(range(1, min(src.count, 3) + 1)), window=window)).ids
    return to_flair(src.read(1, window=window), classes)


def read_valid(src, window=None, classes: str = "flair") -> np.ndarray | None:
    """True where the mask raster has data; None when the raster says all its pixels do.

    No data is the file's nodata value, mask or alpha band, and for WorldCover and CORINE
    their own no-data codes (:data:`.landcover.NODATA_CODES`). Nodata pixels still get a
    class from :func:`read_ids` (the renderer and the model need one), and the outputs
    mark them as nodata so they stay transparent in QGIS. The answer depends on the
    raster, never on the window's pixels, so every window of a map agrees on having a mask.
    """
    from rasterio.enums import MaskFlags

    codes = NODATA_CODES.get(classes, ()) if src.count < 3 else ()
    valid = None if src.mask_flag_enums[0] == [MaskFlags.all_valid] else src.read_masks(1, window=window) > 0
    if codes:
        known = ~np.isin(src.read(1, window=window), codes)
        valid = known if valid is None else valid & known
    return valid


def load_ids(path: str | os.PathLike, classes: str = "flair", resolution: float | None = None
             ) -> tuple[np.ndarray, Grid]:
    """The whole mask raster as class ids, with its grid (resampled to ``resolution`` when given; its
    ``valid`` says where the raster has data, so :func:`write_rgb` keeps the nodata)."""
    with env(), open_mask(path, resolution) as src:
        return read_ids(src, classes=classes), replace(grid_of(src), valid=read_valid(src, classes=classes))


def colormap() -> dict[int, tuple[int, int, int, int]]:
    """The class colours as a GeoTIFF colour table, so QGIS shows a class raster in the legend's colours."""
    table = {0: (*(int(v) for v in PALETTE[0]), 0)}
    table.update({c.id: (*c.rgb, 255) for c in CLASSES})
    return table


def write_classes(path: str | os.PathLike, ids: np.ndarray, grid: Grid) -> Path:
    """A single-band uint8 GeoTIFF of class ids with the FLAIR colour table and class names
    (band metadata, and GDAL category names and a raster attribute table in ``path.aux.xml``).

    Read back by :func:`load_ids` (and so by every generating command) as FLAIR classes.
    """
    import rasterio

    path = Path(path)
    with env(), atomic_path(path) as tmp, rasterio.open(tmp, "w", **class_profile(grid)) as dst:
        dst.write(np.asarray(ids, dtype=np.uint8), 1)
        label_classes(dst)
    write_categories(path)  # the names QGIS's legend shows, in GDAL's side file
    return path


def class_profile(grid: Grid) -> dict:
    """Profile of a class-id GeoTIFF on ``grid`` (0 = nodata; tiled, so it can be written window by window)."""
    return dict(driver="GTiff", width=grid.width, height=grid.height, count=1, dtype="uint8", nodata=0,
                crs=grid.crs, transform=grid.transform, compress="deflate", tiled=True, blockxsize=256,
                blockysize=256, BIGTIFF="IF_SAFER")


def label_classes(dst) -> None:
    """The colour table, ``CLASS_n`` names and band description of an open class GeoTIFF."""
    dst.write_colormap(1, colormap())
    dst.update_tags(1, **{f"CLASS_{c.id}": c.name for c in CLASSES})
    dst.set_band_description(1, "FLAIR land-cover class")


def rgb_profile(grid: Grid) -> dict:
    """Profile of a tiled, compressed RGB GeoTIFF on ``grid`` (the streamed renderer writes into it)."""
    return dict(driver="GTiff", width=grid.width, height=grid.height, count=3, dtype="uint8", crs=grid.crs,
                transform=grid.transform, compress="deflate", tiled=True, blockxsize=512, blockysize=512,
                photometric="RGB", BIGTIFF="IF_SAFER")


def to_cog(src_path: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Copy a GeoTIFF to a Cloud-Optimized GeoTIFF with overviews (GDAL streams it: memory stays bounded).

    The copy is made under a temporary name: a kill during it never leaves a black COG under ``path``.
    """
    from rasterio.shutil import copy

    path = Path(path)
    with env(), atomic_path(path) as tmp:
        copy(str(src_path), str(tmp), driver="COG", compress="DEFLATE", overview_resampling="AVERAGE",
             BIGTIFF="IF_SAFER")
    return path


def write_rgb(path: str | os.PathLike, rgb: np.ndarray, grid: Grid) -> Path:
    """An (H, W, 3) image as a Cloud-Optimized GeoTIFF on ``grid`` (nodata outside ``grid.valid``)."""
    import rasterio

    path = Path(path)
    tmp = temporary_name(path.with_name(path.name + ".rgb.tif"))
    with env(), rasterio.open(tmp, "w", **rgb_profile(grid)) as dst:
        dst.write(np.moveaxis(np.asarray(rgb, dtype=np.uint8), -1, 0))
        if grid.valid is not None and grid.valid.shape == np.shape(rgb)[:2]:
            dst.write_mask(grid.valid.astype(np.uint8) * 255)
    try:
        return to_cog(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def png_of(cog: str | os.PathLike, png: str | os.PathLike) -> Path:
    """The PNG beside a (small enough to hold) result COG: transparent where the COG is nodata, written whole
    or not at all. Front ends use it instead of re-saving the COG with PIL, which drops the mask band."""
    import rasterio
    from PIL import Image
    from rasterio.enums import MaskFlags

    with env(), rasterio.open(cog) as src:
        rgb = np.moveaxis(src.read([1, 2, 3]), 0, -1)
        alpha = src.read_masks(1) if src.mask_flag_enums[0] != [MaskFlags.all_valid] else None
    image = Image.fromarray(rgb) if alpha is None else Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA")
    with atomic_path(png) as tmp:
        image.save(tmp)
    return Path(png)
