"""Metric coordinate systems: maps are drawn in metres, whatever CRS the place or raster came in."""

from __future__ import annotations


def metric_crs(lat: float, lon: float, crs: str | None = None):
    """``crs`` (e.g. EPSG:2154) or the UTM zone of the point, as a rasterio CRS; a geographic CRS is refused."""
    from pyproj import CRS
    from pyproj.aoi import AreaOfInterest
    from pyproj.database import query_utm_crs_info
    from rasterio.crs import CRS as RioCRS

    if crs is None:
        found = query_utm_crs_info(datum_name="WGS 84", area_of_interest=AreaOfInterest(lon, lat, lon, lat))
        crs = f"{found[0].auth_name}:{found[0].code}"
    try:
        parsed = CRS.from_user_input(crs)
    except Exception as exc:  # pyproj's CRSError
        raise ValueError(f"`crs`: unknown CRS {crs!r} ({exc})") from None
    if not parsed.is_projected:
        raise ValueError(f"`crs`: {crs} is not a metric (projected) CRS; use e.g. EPSG:2154 or a UTM zone")
    return RioCRS.from_user_input(parsed.to_wkt())
