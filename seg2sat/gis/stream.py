"""Maps of any size with the offline renderer: read, render and write window by window.

A 40 000 x 40 000 px mask (8 km at FLAIR's 0.2 m) is 1.6 GB of class ids and 4.8 GB
of colour: it is never held whole. The mask raster is read one window (plus the
renderer's ``HALO``) at a time, each window is rendered and written into a tiled
GeoTIFF, and the finished file is copied to a Cloud-Optimized GeoTIFF with
overviews. The renderer's windows are bit-identical to a whole render, so there
are no seams, and memory depends on the window, not the map.

A killed run resumes: the partial GeoTIFF is closed (flushed) after every window
and only then is the window written to a journal next to it; the next run with the
same mask (same content: :func:`.files.fingerprint`), seed and window size skips the
windows in the journal. Nodata pixels of the mask are nodata in the output too (an
internal mask band, transparent in QGIS).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..box import Box
from ..render import HALO, render_window
from .files import fingerprint
from .raster import Grid, box_window, env, grid_of, open_mask, read_ids, read_valid, rgb_profile, to_cog

WINDOW = 1024
"""Side of the square windows (a multiple of the output's 512 px blocks, so no block is written twice)."""


@dataclass(frozen=True)
class Streamed:
    path: Path
    grid: Grid
    windows: int
    rendered: int
    """Windows rendered by this run (fewer than ``windows`` when it resumed a killed one)."""


def windows(grid: Grid, size: int = WINDOW) -> Iterator[Box]:
    """Every ``size`` x ``size`` window of the grid (smaller at the right and bottom edges), row by row."""
    for top in range(0, grid.height, size):
        for left in range(0, grid.width, size):
            yield Box(left, top, min(left + size, grid.width), min(top + size, grid.height))


def render_box(src, box: Box, seed: int, classes: str) -> np.ndarray:
    """(h, w, 3) render of ``box`` of the mask raster: reads the box and its halo only."""
    left, top, right, bottom = box
    x0, y0 = max(left - HALO, 0), max(top - HALO, 0)
    x1, y1 = min(right + HALO, src.width), min(bottom + HALO, src.height)
    ext = read_ids(src, box_window(Box(x0, y0, x1, y1)), classes)
    return render_window(ext, Box(left - x0, top - y0, right - x0, bottom - y0), seed, origin=(x0, y0))


class _Journal:
    """Which windows of a partial output are on disk, for which job (written atomically)."""

    def __init__(self, path: Path, job: dict):
        self.path, self.job = path, job
        self.done: set[int] = set()

    def load(self) -> bool:
        """True when a journal of the same job exists: its windows count as done."""
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return False
        if saved.get("job") != self.job:
            return False
        self.done = set(saved.get("done", []))
        return True

    def add(self, index: int) -> None:
        self.done.add(index)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"job": self.job, "done": sorted(self.done)}))
        os.replace(tmp, self.path)


def stream_render(mask: str | os.PathLike, out: str | os.PathLike, *, seed: int = 0, classes: str = "flair",
                  resolution: float | None = None, window: int = WINDOW, progress: bool = False,
                  on_window: Callable[[int, int], None] | None = None, src=None) -> Streamed:
    """Render the mask raster ``mask`` into the Cloud-Optimized GeoTIFF ``out`` (same grid), window by window.

    ``resolution`` (CRS units per pixel) resamples the mask nearest-neighbour onto a
    finer or coarser grid first. ``on_window(done, total)`` is called after each window.
    ``src``: ``mask`` already open (at ``resolution``), read instead of opening it again.
    """
    import rasterio
    from tqdm.auto import tqdm

    out = Path(out)
    partial = out.with_name(out.name + ".partial.tif")
    with env(), (open_mask(mask, resolution) if src is None else nullcontext(src)) as src:
        grid = grid_of(src)
        boxes = list(windows(grid, window))
        job = {"mask": str(Path(mask).resolve()), "input": fingerprint(mask), "seed": int(seed), "classes": classes,
               "resolution": resolution, "window": window, "size": [grid.width, grid.height]}
        journal = _Journal(out.with_name(out.name + ".journal.json"), job)
        if not (journal.load() and partial.is_file()):
            journal.done = set()
            with rasterio.open(partial, "w", **rgb_profile(grid)):
                pass
        rendered = 0
        bar = tqdm(total=len(boxes), initial=len(journal.done), desc="rendering", unit="window", disable=not progress,
                   dynamic_ncols=True)
        with bar:
            for index, box in enumerate(boxes):
                if index in journal.done:
                    continue
                rgb, valid = render_box(src, box, seed, classes), read_valid(src, box_window(box), classes)
                with rasterio.open(partial, "r+") as dst:  # closed after each window: on disk before the journal says so
                    dst.write(np.moveaxis(rgb, -1, 0), window=box_window(box))
                    if valid is not None:
                        dst.write_mask(valid.astype(np.uint8) * 255, window=box_window(box))
                journal.add(index)
                rendered += 1
                bar.update()
                if on_window:
                    on_window(len(journal.done), len(boxes))
    to_cog(partial, out)
    partial.unlink()
    journal.path.unlink()
    return Streamed(out, grid, len(boxes), rendered)
