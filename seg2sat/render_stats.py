"""Per-class colour statistics of real aerial imagery, the numbers the procedural renderer is calibrated on.

``MEASURED`` was printed by ``python -m seg2sat.render_stats DIR`` over the real FLAIR
patches in the reference folder (``IMG_*.png`` next to ``MSK_*.png``): the mean and
the spread (std) of each channel over every pixel of a class, pooled over patches.
Only the numbers are kept, never the photographs. Classes that those patches do not
contain have no measurement; ``ASSUMED`` gives them typical values for IGN 20 cm
orthophotos, and says so, so a later measurement can replace them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .classes import BY_ID, NUM_CLASSES
from .masks import load_mask

RGB = tuple[float, float, float]

# python -m seg2sat.render_stats ../shared/reference/flair-pairs  (3 patches, 786,432 px)
MEASURED: dict[int, tuple[RGB, RGB]] = {
    1: ((208.3, 178.9, 155.6), (30.7, 31.0, 29.1)),  # building: 34,472 px
    2: ((170.3, 167.4, 163.2), (47.8, 44.3, 48.0)),  # pervious surface: 22,856 px
    3: ((143.0, 146.1, 146.4), (43.4, 36.7, 31.6)),  # impervious surface: 64,332 px
    4: ((160.9, 155.6, 144.9), (26.4, 26.1, 29.0)),  # bare soil: 4,644 px
    5: ((88.2, 99.5, 89.7), (24.5, 16.2, 15.6)),  # water: 49,732 px
    6: ((92.5, 103.4, 98.2), (27.9, 25.3, 26.0)),  # coniferous: 108,944 px
    7: ((80.4, 95.0, 84.0), (30.4, 25.9, 27.5)),  # deciduous: 160,140 px
    8: ((102.4, 112.8, 96.3), (24.7, 20.9, 23.1)),  # brushwood: 117,648 px
    9: ((160.9, 153.7, 143.1), (33.1, 37.5, 47.4)),  # vineyard: 15,888 px
    10: ((135.0, 140.4, 130.6), (39.0, 29.5, 32.4)),  # herbaceous vegetation: 60,804 px
    12: ((163.2, 154.6, 142.8), (9.7, 9.2, 11.2)),  # plowed land: 146,972 px
}

ASSUMED: dict[int, tuple[RGB, RGB]] = {
    11: ((150.0, 152.0, 118.0), (18.0, 18.0, 16.0)),  # agricultural land: crops and stubble
    13: ((70.0, 165.0, 185.0), (25.0, 22.0, 20.0)),  # swimming pool
    14: ((232.0, 236.0, 242.0), (10.0, 10.0, 8.0)),  # snow
    15: ((128.0, 120.0, 102.0), (28.0, 26.0, 24.0)),  # clear cut
    16: ((82.0, 94.0, 86.0), (26.0, 25.0, 26.0)),  # mixed forest
    17: ((108.0, 116.0, 98.0), (24.0, 22.0, 22.0)),  # ligneous
    18: ((200.0, 206.0, 208.0), (24.0, 24.0, 24.0)),  # greenhouse
    19: ((118.0, 118.0, 112.0), (30.0, 30.0, 30.0)),  # other
}


def class_stats() -> dict[int, tuple[RGB, RGB]]:
    """(mean, std) per class id 1..19: measured where the reference has the class, else assumed."""
    return {i: MEASURED.get(i) or ASSUMED[i] for i in range(1, NUM_CLASSES + 1)}


def measure(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[int, tuple[RGB, RGB, int]]:
    """Pooled per-class (mean, std, pixel count) over (class ids, RGB photo) pairs."""
    sums = np.zeros((NUM_CLASSES + 1, 3))
    squares = np.zeros((NUM_CLASSES + 1, 3))
    counts = np.zeros(NUM_CLASSES + 1)
    for ids, rgb in pairs:
        flat, pixels = ids.ravel(), rgb.reshape(-1, 3).astype(np.float64)
        counts += np.bincount(flat, minlength=NUM_CLASSES + 1)
        for ch in range(3):
            sums[:, ch] += np.bincount(flat, pixels[:, ch], minlength=NUM_CLASSES + 1)
            squares[:, ch] += np.bincount(flat, pixels[:, ch] ** 2, minlength=NUM_CLASSES + 1)
    out = {}
    for i in range(1, NUM_CLASSES + 1):
        if counts[i]:
            mean = sums[i] / counts[i]
            std = np.sqrt(np.maximum(squares[i] / counts[i] - mean**2, 0))
            out[i] = (tuple(round(float(v), 1) for v in mean), tuple(round(float(v), 1) for v in std), int(counts[i]))
    return out


def read_pairs(folder: str | Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(class ids, RGB photo) for every ``IMG_<n>.png`` with a ``MSK_<n>.png`` beside it."""
    from PIL import Image


    pairs = []
    for image in sorted(Path(folder).glob("IMG_*.png")):
        mask = image.with_name("MSK_" + image.name[4:])
        if mask.is_file():
            with Image.open(image) as im:
                pairs.append((load_mask(mask).ids, np.asarray(im.convert("RGB"))))
    return pairs


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m seg2sat.render_stats REFERENCE_FOLDER", file=sys.stderr)
        return 2
    pairs = read_pairs(argv[0])
    if not pairs:
        print(f"no IMG_*.png / MSK_*.png pairs in {argv[0]}", file=sys.stderr)
        return 2
    print(f"# {len(pairs)} patches, {sum(p[0].size for p in pairs):,} px")
    for i, (mean, std, n) in measure(pairs).items():
        if i in BY_ID:
            print(f"    {i}: ({mean}, {std}),  # {BY_ID[i].name}: {n:,} px")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
