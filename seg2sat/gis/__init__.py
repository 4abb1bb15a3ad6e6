"""GIS: land-cover rasters in (GeoTIFF, other class systems), georeferenced GeoTIFFs out, maps of any size.

:func:`generate_geotiff` is the API: a GeoTIFF mask and a request in, georeferenced files out.
"""

from .generate import GeoTiffOutput, GeoTiffResult, MaskRaster, generate_geotiff

__all__ = ["GeoTiffOutput", "GeoTiffResult", "MaskRaster", "generate_geotiff"]
