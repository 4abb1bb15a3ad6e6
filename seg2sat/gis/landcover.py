"""Other land-cover products -> FLAIR classes: ESA WorldCover and CORINE Land Cover.

GIS users often have a land-cover raster already, just not in FLAIR's classes. These
tables are the one place their codes are translated (the README's tables are
checked against them). Choices where the source is coarser than FLAIR:

- WorldCover's *tree cover* does not say leaf type: it becomes **mixed** forest.
- *Built-up* (WorldCover) and the urban fabric (CORINE 111/112/121) become
  **building**: at 10-100 m a built-up cell is mostly roofs and the model draws a
  town from it; roads inside it are not known.
- Wetlands become **herbaceous vegetation**, bare and burnt areas **bare soil**.

Anything a table does not list (unclassified) is **other**; no data (the file's nodata
value, or the product's own no-data code in ``NODATA_CODES``) is drawn as other too, and
the outputs mark those pixels as nodata.
"""

from __future__ import annotations

import numpy as np

from ..classes import OTHER
from ..masks import from_flair

SOURCES = ("flair", "worldcover", "corine")
"""Values of ``--classes``: what the numbers of a single-band mask raster mean."""

WORLDCOVER = {
    10: (16, "tree cover"),
    20: (8, "shrubland"),
    30: (10, "grassland"),
    40: (11, "cropland"),
    50: (1, "built-up"),
    60: (4, "bare / sparse vegetation"),
    70: (14, "snow and ice"),
    80: (5, "permanent water bodies"),
    90: (10, "herbaceous wetland"),
    95: (7, "mangroves"),
    100: (10, "moss and lichen"),
}
"""ESA WorldCover 2020/2021 (10 m) code -> (FLAIR class id, WorldCover's name)."""

CORINE = {
    111: (1, "continuous urban fabric"),
    112: (1, "discontinuous urban fabric"),
    121: (1, "industrial or commercial units"),
    122: (3, "road and rail networks"),
    123: (3, "port areas"),
    124: (3, "airports"),
    131: (4, "mineral extraction sites"),
    132: (4, "dump sites"),
    133: (4, "construction sites"),
    141: (10, "green urban areas"),
    142: (10, "sport and leisure facilities"),
    211: (11, "non-irrigated arable land"),
    212: (11, "permanently irrigated land"),
    213: (11, "rice fields"),
    221: (9, "vineyards"),
    222: (17, "fruit trees and berry plantations"),
    223: (17, "olive groves"),
    231: (10, "pastures"),
    241: (11, "annual crops with permanent crops"),
    242: (11, "complex cultivation patterns"),
    243: (11, "agriculture with natural vegetation"),
    244: (17, "agro-forestry areas"),
    311: (7, "broad-leaved forest"),
    312: (6, "coniferous forest"),
    313: (16, "mixed forest"),
    321: (10, "natural grasslands"),
    322: (8, "moors and heathland"),
    323: (8, "sclerophyllous vegetation"),
    324: (8, "transitional woodland-shrub"),
    331: (4, "beaches, dunes, sands"),
    332: (4, "bare rocks"),
    333: (4, "sparsely vegetated areas"),
    334: (4, "burnt areas"),
    335: (14, "glaciers and perpetual snow"),
    411: (10, "inland marshes"),
    412: (10, "peat bogs"),
    421: (10, "salt marshes"),
    422: (5, "salines"),
    423: (4, "intertidal flats"),
    511: (5, "water courses"),
    512: (5, "water bodies"),
    521: (5, "coastal lagoons"),
    522: (5, "estuaries"),
    523: (5, "sea and ocean"),
}
"""CORINE Land Cover level-3 code -> (FLAIR class id, CORINE's name).

Copernicus distributes CLC rasters with either the three-digit codes or their rank
in this list (GRID_CODE 1..44, 48 = no data); both are read (ranks are below 100,
codes above, so the two never collide)."""


def _lut(table: dict[int, tuple[int, str]], size: int) -> np.ndarray:
    lut = np.full(size, OTHER, dtype=np.uint8)
    for code, (cls, _) in table.items():
        lut[code] = cls
    return lut


NODATA_CODES = {"worldcover": (0,), "corine": (48, 999)}
"""Codes that are "no data" in the product itself, whatever the file's nodata tag says: WorldCover's 0,
CORINE's GRID_CODE 48 and its code 999. Such pixels stay nodata (transparent) in the outputs."""

_LUTS = {
    "worldcover": _lut(WORLDCOVER, 256),
    "corine": _lut(CORINE | {rank: CORINE[code] for rank, code in enumerate(sorted(CORINE), start=1)}, 1024),
}


def to_flair(raw: np.ndarray, source: str = "flair") -> np.ndarray:
    """Class ids 1..19 from a single-band land-cover array whose numbers mean ``source``'s codes."""
    if source not in SOURCES:
        raise ValueError(f"classes must be one of {', '.join(SOURCES)}, got {source!r}")
    raw = np.asarray(raw)
    if source == "flair":
        return from_flair(raw)
    lut = _LUTS[source]
    inside = (raw >= 0) & (raw < len(lut))
    ids = np.full(raw.shape, OTHER, dtype=np.uint8)
    ids[inside] = lut[raw[inside].astype(np.intp)]
    return ids
