"""Class names QGIS can show: a GDAL raster attribute table and category names beside a class GeoTIFF.

Band metadata (``CLASS_1=building``) is invisible in QGIS's legend. GDAL keeps category
names and raster attribute tables (RAT) of a GeoTIFF in its PAM side file
``NAME.tif.aux.xml``; QGIS reads both (the paletted renderer labels classes with the
category names, the RAT shows in its attribute-table view), and so does every GDAL
tool (``gdalinfo`` lists them). rasterio cannot write either, so the XML is written
here, in the format GDAL's PAM reads and writes itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from xml.sax.saxutils import escape

from ..classes import CLASSES, NUM_CLASSES
from .files import write_text

# GDAL's GDALRATFieldType and GDALRATFieldUsage values
_INTEGER, _STRING = 0, 2
_MINMAX, _NAME, _RED, _GREEN, _BLUE, _ALPHA = 5, 2, 6, 7, 8, 9
FIELDS = (("Value", _INTEGER, _MINMAX), ("Class", _STRING, _NAME), ("Red", _INTEGER, _RED),
          ("Green", _INTEGER, _GREEN), ("Blue", _INTEGER, _BLUE), ("Alpha", _INTEGER, _ALPHA))


def aux_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".aux.xml")


def pam_xml(description: str = "FLAIR land-cover class") -> str:
    """The PAM document: category names indexed by pixel value (0 = nodata, unnamed) and a thematic RAT."""
    names = [""] * (NUM_CLASSES + 1)
    for c in CLASSES:
        names[c.id] = c.name
    categories = "".join(f"      <Category>{escape(name)}</Category>\n" for name in names)
    fields = "".join(f'      <FieldDefn index="{i}"><Name>{name}</Name><Type>{kind}</Type><Usage>{usage}</Usage>'
                     "</FieldDefn>\n" for i, (name, kind, usage) in enumerate(FIELDS))
    rows = "".join(f'      <Row index="{i}"><F>{c.id}</F><F>{escape(c.name)}</F><F>{c.rgb[0]}</F><F>{c.rgb[1]}</F>'
                   f"<F>{c.rgb[2]}</F><F>255</F></Row>\n" for i, c in enumerate(CLASSES))
    return ('<PAMDataset>\n  <PAMRasterBand band="1">\n'
            f"    <Description>{escape(description)}</Description>\n"
            f"    <CategoryNames>\n{categories}    </CategoryNames>\n"
            f'    <GDALRasterAttributeTable tableType="thematic">\n{fields}{rows}    </GDALRasterAttributeTable>\n'
            "  </PAMRasterBand>\n</PAMDataset>\n")


def write_categories(path: str | os.PathLike) -> Path:
    """``path.aux.xml`` with the class names of the class GeoTIFF ``path`` (written whole or not at all)."""
    return write_text(aux_path(path), pam_xml())
