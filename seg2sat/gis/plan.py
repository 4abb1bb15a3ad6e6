"""Say what a GeoTIFF job will make before making it, and refuse the ones nobody meant.

``--resolution 0.2`` on a 10 m raster multiplies its pixels by 2 500: a WorldCover tile
becomes a 139 250 x 138 350 px map (18 496 windows, tens of GB), which a typo or a
misunderstanding should not start silently. :func:`plan` works out the output grid
(after the reprojection of a raster in degrees, see :func:`.raster.open_mask`), the
windows and the disk it needs; :func:`check` turns that into notes, and into an error
above ``max_pixels`` unless the user said ``--yes``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from .raster import Grid, env, grid_of, open_mask, utm_note_of

MAX_PIXELS = 16384 * 16384
"""Above this (268 Mpx, 3.3 km at 0.2 m) a map is made only with ``--yes`` or a higher ``--max-pixels``."""
NOTE_PIXELS = 4096 * 4096
"""From this size on, the size, windows and disk are printed before the work starts."""
BYTES_PER_PIXEL = 3.2
"""Measured on the README's 32768^2 procedural COG (3.3 GB): deflate RGB plus overviews."""


@dataclass(frozen=True)
class Plan:
    grid: Grid
    windows: int
    window: int
    reprojected: str | None
    """The note that a raster in degrees was reprojected to UTM, if it was."""

    @property
    def pixels(self) -> int:
        return self.grid.width * self.grid.height

    @property
    def disk_bytes(self) -> int:
        return int(self.pixels * BYTES_PER_PIXEL)

    def describe(self) -> str:
        return (f"{self.grid.width} x {self.grid.height} px ({_count(self.pixels)}px), {self.windows} windows of "
                f"{self.window} px, about {_count(self.disk_bytes)}B on disk (twice that while the COG is copied)")


def _count(value: float) -> str:
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} "


def plan(mask: str | os.PathLike, resolution: float | None = None, window: int = 1024, overlap: int = 0) -> Plan:
    """The output grid of a GeoTIFF mask job and how many ``window`` px windows (``overlap`` px apart) it takes."""
    with env(), open_mask(mask, resolution) as src:
        return plan_of(src, resolution, window, overlap)


def plan_of(src, resolution: float | None = None, window: int = 1024, overlap: int = 0) -> Plan:
    """:func:`plan` of a mask already open at ``resolution`` (:func:`.raster.open_mask`)."""
    grid = grid_of(src)
    step = window - overlap
    across = 1 if grid.width <= window else math.ceil((grid.width - overlap) / step)
    down = 1 if grid.height <= window else math.ceil((grid.height - overlap) / step)
    return Plan(grid, across * down, window, utm_note_of(src, resolution))


def check(job: Plan, *, yes: bool = False, max_pixels: int = MAX_PIXELS) -> list[str]:
    """The notes to print before the job; a ValueError (one line) when it is larger than ``max_pixels``
    and ``yes`` was not given, or when the output would be a single pixel."""
    notes = [job.reprojected] if job.reprojected else []
    if job.pixels > max_pixels and not yes:
        raise ValueError(f"the map would be {job.describe()}: more than `max_pixels` {max_pixels}; "
                         "pass `yes` to make it anyway, or choose a coarser `resolution`")
    if job.pixels == 1:
        raise ValueError("the map would be 1 x 1 px: is `resolution` in the raster's units (metres)?")
    if job.pixels >= NOTE_PIXELS:
        notes.append(f"map: {job.describe()}")
    return notes
