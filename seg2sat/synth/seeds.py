"""Each row's seed and style, from (source item, layout, index, ``--seed``) alone.

The seed never depends on how the work was split over processes or on what ran before,
so any row can be made again alone (``seg2sat generate MASK --seed SEED --style STYLE``
gives its image) and one process or eight give the same rows. numpy's ``SeedSequence``
mixes the item's id (hashed), the layout, the index and the run's seed into independent
streams: the first word is the image's seed (63 bits, so 100 000 rows have no
collision), the second picks the style of a ``--style`` mix.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..prompts import STYLES

MAX_SEED = 2**63 - 1


def _words(text: str) -> list[int]:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


def row_draws(item_id: str, layout: str, index: int, seed: int) -> tuple[int, float]:
    """(image seed in [0, 2**63), a uniform number in [0, 1) for the style) of one row."""
    entropy = [int(seed) & 0xFFFFFFFF, int(seed) >> 32, *_words(item_id), *_words(layout), int(index)]
    state = np.random.SeedSequence(entropy).generate_state(2, np.uint64)
    return int(state[0]) >> 1, float(int(state[1]) >> 11) / float(1 << 53)


def parse_styles(text: str | None) -> list[tuple[str, float]]:
    """``photorealistic=3,pencil=1`` -> [(name, share)] with shares summing to 1; ``none`` is no style.

    A name without ``=weight`` weighs 1. None or "" -> [("", 1.0)] (no style preset).
    """
    if not text or not text.strip():
        return [("", 1.0)]
    picks: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.strip().partition("=")
        name = name.strip().lower()
        if not name:
            raise ValueError(f"`style`: an empty style name in {text!r}")
        if name not in STYLES and name != "none":
            raise ValueError(f"`style`: unknown style {name!r}; choose from {', '.join(STYLES)}, none")
        try:
            value = float(weight) if weight.strip() else 1.0
        except ValueError:
            raise ValueError(f"`style`: the weight of {name} must be a number, got {weight.strip()!r}") from None
        if not value > 0 or value == float("inf"):
            raise ValueError(f"`style`: the weight of {name} must be positive, got {weight.strip()}")
        picks["" if name == "none" else name] = picks.get("" if name == "none" else name, 0.0) + value
    total = sum(picks.values())
    return [(name, value / total) for name, value in picks.items()]


def pick_style(styles: list[tuple[str, float]], u: float) -> str:
    """The style whose share of [0, 1) holds ``u``."""
    edge = 0.0
    for name, share in styles:
        edge += share
        if u < edge:
            return name
    return styles[-1][0]
