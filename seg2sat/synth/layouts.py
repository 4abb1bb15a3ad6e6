"""``--augment``: label-preserving layouts of a mask, each a new mask the model draws its own images for.

A flipped or rotated land-cover map is still a plausible map, and an aerial photograph
has no up: the model makes a new image for each layout, which follows it exactly, so
the (image, mask) pair stays aligned. ``""`` is the mask as it is.
"""

from __future__ import annotations

import numpy as np

LAYOUTS = {
    "flip": lambda a: a[:, ::-1],
    "vflip": lambda a: a[::-1, :],
    "rot90": lambda a: np.rot90(a, 1),
    "rot180": lambda a: np.rot90(a, 2),
    "rot270": lambda a: np.rot90(a, 3),
    "transpose": lambda a: a.T,
}
"""Name -> the transform of an (H, W) array (the dihedral group of the square, less the identity)."""


def parse_augment(text: str | None) -> list[str]:
    """``flip,rot90`` -> ["", "flip", "rot90"]: the mask as it is first, then each layout once."""
    names = [""]
    for part in (text or "").split(","):
        name = part.strip().lower()
        if not name:
            continue
        if name not in LAYOUTS:
            raise ValueError(f"`augment`: unknown layout {name!r}; choose from {', '.join(LAYOUTS)}")
        if name not in names:
            names.append(name)
    return names


def apply(layout: str, ids: np.ndarray) -> np.ndarray:
    """The mask in ``layout`` (a contiguous copy; ``""`` returns it unchanged)."""
    return ids if not layout else np.ascontiguousarray(LAYOUTS[layout](ids))
