"""The one rectangle type for windows, tiles and crops: ``Box(left, top, right, bottom)``.

PIL's ``crop`` order (it is a tuple, so ``image.crop(box)`` takes it as is) and
rasterio's ``Window.from_slices``-friendly edges; right and bottom are exclusive.
Tiling (latent pixels), the GIS streaming and windowed generators (raster pixels) and
the renderer all pass these, so no reader has to guess which of (top, left, …) or
(left, top, …) a 4-tuple means. No imports: anything may use it.
"""

from __future__ import annotations

from typing import NamedTuple


class Box(NamedTuple):
    """A pixel rectangle; ``right`` and ``bottom`` are one past the last column and row."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    def intersection(self, other: Box) -> Box | None:
        """The part both boxes cover, or None when they do not overlap."""
        box = Box(max(self.left, other.left), max(self.top, other.top),
                  min(self.right, other.right), min(self.bottom, other.bottom))
        return box if box.left < box.right and box.top < box.bottom else None

    def slices(self, within: Box | None = None) -> tuple[slice, slice]:
        """(rows, columns) that index this box in an array, or in an array holding only ``within``."""
        x, y = (within.left, within.top) if within is not None else (0, 0)
        return slice(self.top - y, self.bottom - y), slice(self.left - x, self.right - x)

    def scaled(self, factor: int) -> Box:
        """The same rectangle on a grid ``factor`` times finer (latent pixels -> image pixels)."""
        return Box(self.left * factor, self.top * factor, self.right * factor, self.bottom * factor)
