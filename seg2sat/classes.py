"""The FLAIR #1 land-cover classes: the single source of ids, names and colours.

Everything that needs a class fact (mask colours and snapping, captions, the UI palette, the
README legend) derives it from ``CLASSES``; nothing else keeps its own copy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LandCoverClass:
    id: int
    name: str
    colour: str  # "#rrggbb"

    @property
    def rgb(self) -> tuple[int, int, int]:
        return tuple(int(self.colour[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


CLASSES: tuple[LandCoverClass, ...] = tuple(
    LandCoverClass(i, name, colour)
    for i, (name, colour) in enumerate(
        [
            ("building", "#db0e9a"),
            ("pervious surface", "#938e7b"),
            ("impervious surface", "#f80c00"),
            ("bare soil", "#a97101"),
            ("water", "#1553ae"),
            ("coniferous", "#194a26"),
            ("deciduous", "#46e483"),
            ("brushwood", "#f3a60d"),
            ("vineyard", "#660082"),
            ("herbaceous vegetation", "#55ff00"),
            ("agricultural land", "#fff30d"),
            ("plowed land", "#e4df7c"),
            ("swimming pool", "#3de6eb"),
            ("snow", "#ffffff"),
            ("clear cut", "#8ab3a0"),
            ("mixed", "#6b714f"),
            ("ligneous", "#c5dc42"),
            ("greenhouse", "#9999ff"),
            ("other", "#000000"),
        ],
        start=1,
    )
)

NUM_CLASSES = len(CLASSES)
OTHER = 19
"""Raw FLAIR values outside 1..19 (0 = no data, >19 = unused codes) are read as this class."""

BY_ID = {c.id: c for c in CLASSES}
BY_NAME = {c.name: c for c in CLASSES}


def get_class(key: int | str) -> LandCoverClass:
    """Look a class up by id or by name, with an error that lists what exists."""
    found = BY_ID.get(key) if isinstance(key, int) else BY_NAME.get(str(key).strip().lower())
    if found is None:
        names = ", ".join(f"{c.id}={c.name}" for c in CLASSES)
        raise ValueError(f"unknown land-cover class {key!r}; known classes: {names}")
    return found


def legend_markdown() -> str:
    """The README legend table, generated so it cannot drift from ``CLASSES``."""
    rows = ["| id | class | colour |", "|---|---|---|"]
    rows += [f"| {c.id} | {c.name} | `{c.colour}` |" for c in CLASSES]
    return "\n".join(rows)
