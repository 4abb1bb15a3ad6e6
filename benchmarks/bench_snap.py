"""Throughput of seg2sat.masks.snap on a 2048x2048 anti-aliased mask, on one core.

The mask is drawn at 4x with hard-edged shapes in class colours, then downscaled
with a box filter: every shape edge becomes a band of blended, off-palette colours,
as a canvas brush or an image editor makes them. Prints megapixels per second
(target >= 100). Run: python benchmarks/bench_snap.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from seg2sat import masks
from seg2sat.classes import CLASSES

SIDE = 2048
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def antialiased_mask(side: int = SIDE, shapes: int = 400, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    big = Image.new("RGB", (side * 4, side * 4), CLASSES[9].rgb)
    draw = ImageDraw.Draw(big)
    for i in range(shapes):
        x, y = rng.integers(0, side * 4, 2)
        w, h = rng.integers(40, 1200, 2)
        colour = CLASSES[int(rng.integers(0, len(CLASSES)))].rgb
        if i % 3 == 0:
            draw.ellipse([x, y, x + w, y + h], fill=colour)
        elif i % 3 == 1:
            draw.rectangle([x, y, x + w, y + h], fill=colour)
        else:
            draw.line([(x, y), (x + w, y + h)], fill=colour, width=int(rng.integers(8, 60)))
    return big.resize((side, side), Image.BOX)


def best_time(fn, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    image = antialiased_mask()
    result = masks.snap(image)
    seconds = best_time(lambda: masks.snap(image))
    mpx = SIDE * SIDE / 1e6
    print(f"anti-aliased {SIDE}x{SIDE} mask: {result.off_palette:.1%} off-palette pixels")
    print(f"snap: {seconds * 1000:.1f} ms, {mpx / seconds:.0f} Mpx/s (target >= 100)")
    clean = masks.to_image(result.ids)
    seconds = best_time(lambda: masks.snap(clean))
    print(f"snap of a clean (already on-palette) {SIDE}x{SIDE} mask: {mpx / seconds:.0f} Mpx/s")
    jpeg_figures()
    handdrawn = REFERENCE / "handdrawn.png"
    if handdrawn.is_file():
        drawn = masks.snap(Image.open(handdrawn))
        print(f"reference hand-drawn mask: {drawn.off_palette:.1%} off-palette, classes {list(masks.class_shares(drawn.ids))}")



def jpeg_figures() -> None:
    """The town sample, upscaled to 2048 px (nearest) and saved as JPEG at quality 70, as a user's import would be."""
    import io

    town = Image.open(Path(__file__).resolve().parents[1] / "examples" / "masks" / "town.png").convert("RGB")
    truth = masks.snap(town.resize((SIDE, SIDE), Image.NEAREST)).ids
    buffer = io.BytesIO()
    masks.to_image(truth).save(buffer, "JPEG", quality=70)
    jpeg = Image.open(buffer)
    jpeg.load()
    result = masks.snap(jpeg)
    seconds = best_time(lambda: masks.snap(jpeg), repeat=3)
    extra = sorted(set(masks.class_shares(result.ids)) - set(masks.class_shares(truth)))
    print(f"JPEG q70 {SIDE}x{SIDE}: {result.off_palette:.0%} off-palette, snap {seconds * 1000:.0f} ms, "
          f"{(result.ids != truth).mean():.2%} pixels off their painted class, classes added: {extra or 'none'}")


if __name__ == "__main__":
    main()
