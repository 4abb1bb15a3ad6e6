"""The one OpenStreetMap tag -> FLAIR class table, and the order classes are drawn in.

Every fact about how OSM becomes land cover lives in ``RULES``: which tag, which
class, how wide a mapped line is on the ground, and in which drawing stage it is
painted. The rasterizer, the Overpass query and the README table all derive from it
(a test checks the README against :func:`rules_markdown`).

A feature takes the class of the *first* rule it matches, so ``building=greenhouse``
is a greenhouse and not a building, and an indoor pool tagged ``building=*`` stays a
roof. Stages are then painted in order, each stage largest area first, so a small
feature inside a larger one of the same stage (a meadow clearing in a wood) survives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from itertools import groupby

from ..classes import BY_ID

BUILDING, PERVIOUS, IMPERVIOUS, BARE_SOIL, WATER = 1, 2, 3, 4, 5
CONIFEROUS, DECIDUOUS, BRUSHWOOD, VINEYARD, HERBACEOUS = 6, 7, 8, 9, 10
AGRICULTURAL, POOL, SNOW, MIXED, LIGNEOUS, GREENHOUSE = 11, 13, 14, 16, 17, 18

DEFAULT_BACKGROUND = AGRICULTURAL
"""What OSM leaves empty: in the countryside, unmapped land is mostly fields (FLAIR's most common class
outside towns); in towns pass ``--background "herbaceous vegetation"`` (gardens and lawns) instead."""


class Stage(IntEnum):
    """Drawing stages, painted in this order: a later stage covers an earlier one."""

    LANDUSE = 0  # areas: fields, woods, meadows, parks, residential land… (largest first)
    WATER = 1  # lakes, rivers (buffered), basins
    PATHS = 2  # pervious ways: tracks, paths, railway ballast
    ROADS = 3  # impervious ways and areas: roads, squares, parking
    BUILDINGS = 4
    TOP = 5  # pools and greenhouses: inside gardens and on plots, they stay what they are


@dataclass(frozen=True)
class TagRule:
    """``key=value`` (any value but ``no`` when ``values`` is empty) -> class ``cls``, painted in ``stage``.

    ``width`` (metres across) makes mapped *lines* count: they are buffered to it
    (a ``width=*`` tag on the way wins). Rules without a width take areas only
    (polygons, and closed ways). ``when`` is an extra tag that must hold too.
    """

    key: str
    values: tuple[str, ...]
    cls: int
    stage: Stage
    width: float | None = None
    when: tuple[str, str] | None = None
    note: str = ""

    def matches(self, tags: dict[str, str]) -> bool:
        value = tags.get(self.key)
        if value is None or value == "no" or (self.values and value not in self.values):
            return False
        return self.when is None or tags.get(self.when[0]) == self.when[1]


def _roads(widths: dict[float, tuple[str, ...]], cls: int, stage: Stage, note: str = "") -> list[TagRule]:
    return [TagRule("highway", kinds, cls, stage, width, note=note) for width, kinds in widths.items()]


_FOREST_NOTE = "`leaf_type` mixed or absent"

RULES: tuple[TagRule, ...] = (
    TagRule("building", ("greenhouse",), GREENHOUSE, Stage.TOP),
    TagRule("building", (), BUILDING, Stage.BUILDINGS),
    TagRule("leisure", ("swimming_pool",), POOL, Stage.TOP, note="`location=indoor` ones are left out"),
    TagRule("amenity", ("parking",), IMPERVIOUS, Stage.ROADS),
    TagRule("area:highway", (), IMPERVIOUS, Stage.ROADS, note="the paved outline of a road or square"),
    # Typical paved width across (carriageway, shoulders and markings) of a way of each kind.
    *_roads({25: ("motorway",), 20: ("trunk",), 12: ("primary",), 10: ("secondary",), 8: ("tertiary",),
             7: ("motorway_link", "trunk_link", "primary_link", "secondary_link"),
             6: ("residential", "unclassified", "road", "tertiary_link"), 5: ("living_street", "pedestrian"),
             4: ("service", "busway"), 2: ("footway", "cycleway", "steps")}, IMPERVIOUS, Stage.ROADS,
            note="`surface=gravel`, dirt, grass… make it pervious"),
    *_roads({3: ("track",), 2: ("bridleway",), 1.5: ("path",)}, PERVIOUS, Stage.PATHS,
            note="`surface=asphalt`, paved, concrete… make it impervious"),
    TagRule("railway", ("rail", "light_rail", "narrow_gauge", "disused", "preserved"), PERVIOUS, Stage.PATHS, 4,
            note="a track's ballast bed is loose gravel"),
    TagRule("railway", ("tram",), IMPERVIOUS, Stage.ROADS, 3, note="trams run in the street"),
    TagRule("aeroway", ("runway",), IMPERVIOUS, Stage.ROADS, 45),
    TagRule("aeroway", ("taxiway",), IMPERVIOUS, Stage.ROADS, 20),
    TagRule("aeroway", ("apron",), IMPERVIOUS, Stage.ROADS),
    TagRule("waterway", ("river",), WATER, Stage.WATER, 12),
    TagRule("waterway", ("canal",), WATER, Stage.WATER, 10),
    TagRule("waterway", ("stream",), WATER, Stage.WATER, 2),
    TagRule("waterway", ("ditch", "drain"), WATER, Stage.WATER, 1),
    TagRule("waterway", ("riverbank", "dock"), WATER, Stage.WATER),
    TagRule("natural", ("water",), WATER, Stage.WATER),
    TagRule("landuse", ("reservoir", "basin"), WATER, Stage.WATER),
    *(TagRule(key, (value,), cls, Stage.LANDUSE, when=("leaf_type", leaf))
      for key, value in (("landuse", "forest"), ("natural", "wood"))
      for leaf, cls in (("needleleaved", CONIFEROUS), ("broadleaved", DECIDUOUS))),
    TagRule("landuse", ("forest",), MIXED, Stage.LANDUSE, note=_FOREST_NOTE),
    TagRule("natural", ("wood",), MIXED, Stage.LANDUSE, note=_FOREST_NOTE),
    TagRule("landuse", ("vineyard",), VINEYARD, Stage.LANDUSE),
    TagRule("landuse", ("orchard",), LIGNEOUS, Stage.LANDUSE, note="FLAIR's ligneous: orchards and other woody crops"),
    TagRule("landuse", ("farmland",), AGRICULTURAL, Stage.LANDUSE),
    TagRule("landuse", ("greenhouse_horticulture",), GREENHOUSE, Stage.LANDUSE),
    TagRule("landuse", ("meadow", "grass", "village_green", "recreation_ground"), HERBACEOUS, Stage.LANDUSE),
    TagRule("leisure", ("park", "garden"), HERBACEOUS, Stage.LANDUSE),
    TagRule("natural", ("grassland",), HERBACEOUS, Stage.LANDUSE),
    TagRule("landuse", ("residential",), HERBACEOUS, Stage.LANDUSE, note="the gardens and lawns between houses"),
    TagRule("landuse", ("industrial", "commercial", "retail"), IMPERVIOUS, Stage.LANDUSE,
            note="the yards and car parks between sheds"),
    TagRule("natural", ("scrub", "heath"), BRUSHWOOD, Stage.LANDUSE),
    TagRule("natural", ("bare_rock", "sand", "scree", "beach"), BARE_SOIL, Stage.LANDUSE),
    TagRule("landuse", ("quarry",), BARE_SOIL, Stage.LANDUSE),
    TagRule("natural", ("glacier",), SNOW, Stage.LANDUSE),
)

PERVIOUS_SURFACES = frozenset({"unpaved", "gravel", "fine_gravel", "dirt", "earth", "ground", "grass", "compacted",
                               "sand", "mud", "pebblestone", "woodchips"})
IMPERVIOUS_SURFACES = frozenset({"asphalt", "paved", "concrete", "paving_stones", "sett", "cobblestone", "concrete:plates"})
"""A way's ``surface`` tag overrides its kind's class: a gravel lane is pervious, an asphalt track is not."""

HIDDEN = {"tunnel": None, "covered": ("yes",), "location": ("underground", "indoor")}
"""Tags of what an aerial image cannot see (``None``: any value but ``no``): tunnels, culverts, indoor pools."""

_WIDTH = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*m?\s*$")
MAX_WIDTH = 200.0


def hidden(tags: dict[str, str]) -> bool:
    """True for features under ground or under a roof."""
    for key, values in HIDDEN.items():
        value = tags.get(key)
        if value is not None and value != "no" and (values is None or value in values):
            return True
    return False


def classify(tags: dict[str, str]) -> tuple[TagRule, int] | None:
    """The rule a feature falls under and its class (after the ``surface`` override), or None."""
    if hidden(tags):
        return None
    for rule in RULES:
        if rule.matches(tags):
            return rule, _surface_class(rule, tags.get("surface"))
    return None


def _surface_class(rule: TagRule, surface: str | None) -> int:
    if rule.key != "highway" or surface is None:
        return rule.cls
    if surface in PERVIOUS_SURFACES:
        return PERVIOUS
    return IMPERVIOUS if surface in IMPERVIOUS_SURFACES else rule.cls


def line_width(rule: TagRule, tags: dict[str, str]) -> float | None:
    """Metres across a mapped line: its own ``width=*`` tag when it is a sane number, else the rule's."""
    if rule.width is None:
        return None
    found = _WIDTH.match(tags.get("width", ""))
    if found and 0 < float(found.group(1)) <= MAX_WIDTH:
        return float(found.group(1))
    return float(rule.width)


def overpass_filters() -> list[str]:
    """Overpass QL tag filters asking for every key/value some rule uses, and nothing else."""
    values: dict[str, set[str] | None] = {}
    for rule in RULES:
        if not rule.values or values.get(rule.key, set()) is None:
            values[rule.key] = None
        else:
            values.setdefault(rule.key, set()).update(rule.values)
    filters = []
    for key, wanted in values.items():
        filters.append(f'["{key}"]' if wanted is None else f'["{key}"~"^({"|".join(sorted(wanted))})$"]')
    return filters


def rules_markdown() -> str:
    """The README's tag table, generated so it cannot drift from ``RULES`` (consecutive alike rules share a row)."""
    rows = ["| key | values (width of a mapped line) | class | drawn in |", "|---|---|---|---|"]
    for (key, cls, stage, note, when), group in groupby(RULES, key=lambda r: (r.key, r.cls, r.stage, r.note, r.when)):
        values = ", ".join(_values(rule) for rule in group)
        if when:
            values += f" with `{when[0]}={when[1]}`"
        name = BY_ID[cls].name + (f" ({note})" if note else "")
        rows.append(f"| `{key}` | {values} | {name} | {stage.name.lower()} |")
    return "\n".join(rows)


def _values(rule: TagRule) -> str:
    values = "/".join(rule.values) if rule.values else "any"
    return f"{values} {rule.width:g} m" if rule.width else values
