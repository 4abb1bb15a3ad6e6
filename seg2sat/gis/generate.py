"""Aerial images of a GeoTIFF mask, georeferenced, at any size: the GIS API every front end calls.

:func:`generate_geotiff` picks one of three ways from the map's size and the backend:

- **streamed**: the procedural renderer, window by window (:func:`.stream.stream_render`),
  any size, resumable;
- **windowed**: diffusion on a map with a side past ``window`` px, one overlapping window
  at a time (:func:`.windowed.diffuse_geotiff`), resumable and shared out over processes
  under ``accelerate launch``;
- **in memory**: diffusion on a smaller map, and inpaint/outpaint, as one ordinary
  generation (the tiled generator past the model's tile).

Results sit on the mask's grid (same CRS and transform) as Cloud-Optimized GeoTIFFs, with
a PNG beside each one small enough to hold. The mask is opened once: :class:`MaskRaster`
reads its grid and the class ids the request is checked on, and the generation reads
its windows from the same open raster.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..request import Request
from .files import atomic_path
from .raster import Grid, box_window, env, grid_of, open_mask, png_of, read_ids, read_valid, write_rgb
from .stream import stream_render

WINDOW = 2048
"""Diffusion: maps with a side past this many pixels are made window by window (:mod:`.windowed`)."""

SAMPLE = 512
"""Side of the corner a streamed map's request is checked on (the whole map is never read at once)."""

PNG_MAX_PIXELS = 4096 * 4096
"""Streamed maps larger than this are written as GeoTIFF only (a PNG would have to be held whole)."""


def streams(mode: str, backend: str, grid: Grid, window: int = WINDOW) -> bool:
    """Whether a map is made window by window: always with the renderer, past ``window`` px with diffusion
    (inpaint and outpaint are always made in memory)."""
    return mode == "generate" and (backend == "procedural" or max(grid.width, grid.height) > window)


class MaskRaster:
    """A GeoTIFF mask, opened once: its grid, the class ids a request is checked on, then its windows.

    ``ids`` are the whole map's when it will be made in memory, else its top-left
    :data:`SAMPLE` px corner (what :func:`streams` says for ``mode`` and ``backend``);
    ``src`` is the open raster (at ``resolution``). Use it as a context manager, or
    :meth:`close` it.
    """

    def __init__(self, path: str | os.PathLike, *, classes: str = "flair", resolution: float | None = None,
                 window: int = WINDOW, mode: str = "generate", backend: str = "diffusion"):
        self.path, self.classes, self.resolution, self.window = Path(path), classes, resolution, window
        with env():
            self.src = open_mask(path, resolution)
        self.grid = grid_of(self.src)
        self.streamed = streams(mode, backend, self.grid, window)
        self._ids: np.ndarray | None = None

    @property
    def ids(self) -> np.ndarray:
        """Class ids, read on first use (so a map's size can be checked before any pixel is read)."""
        if self._ids is None:
            if self.streamed:
                box = (0, 0, min(self.grid.width, SAMPLE), min(self.grid.height, SAMPLE))
                with env():
                    self._ids = read_ids(self.src, box_window(box), self.classes)
            else:
                self._ids, self.grid = self.whole()
        return self._ids

    def whole(self) -> tuple[np.ndarray, Grid]:
        """The whole map's class ids and its grid, which says where the raster has data."""
        with env():
            valid = read_valid(self.src, classes=self.classes)
            return read_ids(self.src, classes=self.classes), dataclasses.replace(grid_of(self.src), valid=valid)

    def close(self) -> None:
        self.src.close()

    def __enter__(self) -> MaskRaster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class GeoTiffOutput:
    """The files of one seed, in the order they were written, and the windows made."""

    seed: int
    paths: tuple[Path, ...]
    """The GeoTIFF (none for a mask without a CRS) and the PNG (none for a map too large to hold)."""
    windows: int = 1
    """Windows of the map (1 in memory)."""
    rendered: int = 1
    """Windows this process made in this run: fewer than its share when it resumed a stopped run."""
    processes: int = 1
    """Processes that shared the windows (``accelerate launch``)."""

    @property
    def tif(self) -> Path | None:
        return next((p for p in self.paths if p.suffix == ".tif"), None)

    @property
    def png(self) -> Path | None:
        return next((p for p in self.paths if p.suffix == ".png"), None)

    @property
    def resumed(self) -> int:
        """Windows found already done (counted only when one process made the whole map)."""
        return self.windows - self.rendered if self.processes == 1 else 0


@dataclass(frozen=True)
class GeoTiffResult:
    outputs: list[GeoTiffOutput]
    """One per seed; empty on the processes other than the main one under accelerate."""
    how: str
    """``streamed``, ``windowed`` or ``in memory``."""
    backend: str
    """The backend that made the images (``procedural`` when the renderer stood in for the model)."""
    grid: Grid

    @property
    def paths(self) -> list[Path]:
        """Every file written, in order."""
        return [p for o in self.outputs for p in o.paths]


def generate_geotiff(path: str | os.PathLike | MaskRaster, request: Request, engine, out: str | os.PathLike, *,
                     classes: str = "flair", resolution: float | None = None, window: int = WINDOW,
                     progress: bool = False, state=None, name: str | None = None,
                     on_output: Callable[[GeoTiffOutput], None] | None = None) -> GeoTiffResult:
    """Make ``request`` on the GeoTIFF mask ``path`` into georeferenced files in the folder ``out``.

    ``request`` gives every setting but the mask, which is read from ``path`` (``classes``:
    what its codes mean; ``resolution``: CRS units per pixel to resample it to first) — or
    ``path`` is a :class:`MaskRaster` already open (its classes and resolution then hold).
    ``engine.pipeline`` is the diffusion pipeline, or None when the renderer stands in; it is
    not read for a procedural request. ``state`` is accelerate's ``PartialState`` (None: the
    current one), which shares out the windows of a windowed map. A stopped streamed or
    windowed map resumes where it stopped. Files are ``<name>-seed<seed>.tif`` (Cloud-Optimized
    GeoTIFF) and ``.png`` (whole maps up to :data:`PNG_MAX_PIXELS`), ``name`` defaulting to the
    mask's stem; ``on_output`` is called as each seed's files are done.
    """
    owned = not isinstance(path, MaskRaster)
    mask = MaskRaster(path, classes=classes, resolution=resolution, window=window, mode=request.mode,
                      backend=request.backend) if owned else path
    try:
        return _generate(mask, request, engine, Path(out), progress, state, name or mask.path.stem, on_output)
    finally:
        if owned:
            mask.close()


def _generate(mask: MaskRaster, req: Request, engine, out: Path, progress: bool, state, name: str,
              on_output) -> GeoTiffResult:
    pipe = engine.pipeline if req.backend == "diffusion" else None
    backend = "diffusion" if pipe is not None else "procedural"
    report = on_output or (lambda output: None)
    if not streams(req.mode, req.backend, mask.grid, mask.window):
        return GeoTiffResult(_in_memory(mask, dataclasses.replace(req, backend=backend), pipe, out, name, report),
                             "in memory", backend, mask.grid)
    out.mkdir(parents=True, exist_ok=True)
    if pipe is not None:
        from accelerate import PartialState

        state = state or PartialState()
        pipe.set_progress_bar_config(disable=True)  # one bar, counting windows
    outputs = []
    for seed in req.seeds:
        tif = out / f"{name}-seed{seed}.tif"
        if pipe is None:
            done = stream_render(mask.path, tif, seed=seed, classes=mask.classes, resolution=mask.resolution,
                                 progress=progress, src=mask.src)
        else:
            from .windowed import diffuse_geotiff

            done = diffuse_geotiff(mask.path, tif, dataclasses.replace(req, seeds=[seed]), pipe,
                                   classes=mask.classes, resolution=mask.resolution, window=mask.window,
                                   progress=progress, state=state, job=_weights(pipe), src=mask.src)
        if state is not None and not state.is_main_process:
            continue
        small = mask.grid.width * mask.grid.height <= PNG_MAX_PIXELS  # a PNG the rest of Seg2Sat reads
        png = png_of(done.path, done.path.with_suffix(".png")) if small else None
        output = GeoTiffOutput(seed, (done.path, png) if png else (done.path,), done.windows, done.rendered,
                               1 if state is None else state.num_processes)
        outputs.append(output)
        report(output)
    return GeoTiffResult(outputs, "streamed" if pipe is None else "windowed", backend, mask.grid)


def _in_memory(mask: MaskRaster, req: Request, pipe, out: Path, name: str, report) -> list[GeoTiffOutput]:
    """One ordinary generation of the whole map: PNGs, and GeoTIFFs on the mask's grid when it has a CRS."""
    from ..generation import run

    if mask.streamed:  # opened for a map made window by window: read it all
        ids, grid = mask.whole()
    else:
        ids = mask.ids
        grid = mask.grid  # after reading ids: it now says where the map has data
    result = run(dataclasses.replace(req, ids=ids), pipe)
    out.mkdir(parents=True, exist_ok=True)
    outputs = []
    for image, seed in zip(result.images, result.seeds):
        png = out / f"{name}-seed{seed}.png"
        with atomic_path(png) as tmp:  # whole or not at all, and never through a planted symlink
            image.save(tmp, format="PNG")
        paths = (png,)
        if grid.georeferenced and image.size == (grid.width, grid.height):
            paths += (write_rgb(png.with_suffix(".tif"), np.asarray(image), grid),)
        output = GeoTiffOutput(seed, paths)
        outputs.append(output)
        report(output)
    return outputs


def _weights(pipe) -> dict:
    """What else a windowed map's finished windows must have been made with: the same weights."""
    def source(component) -> str:
        return str(getattr(getattr(component, "config", None), "_name_or_path", None))

    return {"model": source(pipe), "controlnet": source(getattr(pipe, "controlnet", None))}

