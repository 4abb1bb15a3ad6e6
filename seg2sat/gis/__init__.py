"""GIS: land-cover rasters in (GeoTIFF, other class systems), georeferenced GeoTIFFs out, maps of any size."""
