"""Diffusion maps of any size: window by window, shared out over processes, resumable.

The in-memory tiled generator (:mod:`seg2sat.tiling`) makes one seamless image but
holds the whole map's latent and image. Past ``WINDOW`` pixels a side, a GeoTIFF map
is cut into overlapping windows instead; each window is one ordinary (tiled)
generation from its part of the mask, saved as a PNG part as soon as it is done.
Under ``accelerate launch`` every process takes every n-th window, so several GPUs
(or nodes sharing a folder) fill one map; a killed run keeps its finished parts and
the next run only makes the missing ones. The main process then blends the parts
into the output GeoTIFF, block by block, with the same linear cross-fade the tiled
generator uses, so memory follows the window and never the map.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from contextlib import nullcontext
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from ..box import Box
from ..request import MAX_SEED, Request
from ..tiling import blend_weights, windows
from .files import fingerprint, write_text
from .raster import box_window, env, grid_of, open_mask, read_ids, read_valid, rgb_profile, to_cog
from .stream import Streamed

WINDOW = 2048
"""Side of a diffusion window in pixels: maps larger than this are made window by window."""

BLOCK = 512
"""Side of the output blocks the parts are blended into."""


def window_seed(seed: int, index: int) -> int:
    """The seed of window ``index``: different windows get different noise, the same run always the same."""
    return (seed * 1_000_003 + index) % (MAX_SEED + 1)


def _boxes(grid, window: int, overlap: int) -> list[Box]:
    """Each window, in pixels (the tiled generator's placement)."""
    return windows(grid.height, grid.width, window, overlap)


class _Parts:
    """The finished windows of one output, as PNG files in a folder beside it, for one job only."""

    def __init__(self, out: Path, job: dict):
        self.dir, self.job = out.with_name(out.name + ".parts"), job

    def reset_if_stale(self) -> None:
        """Main process: keep the parts only if they were made for exactly this job."""
        marker = self.dir / "job.json"
        try:
            same = json.loads(marker.read_text()) == self.job
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir.mkdir(parents=True)
            write_text(marker, json.dumps(self.job))

    def path(self, index: int) -> Path:
        return self.dir / f"{index:06d}.png"

    def save(self, index: int, image: Image.Image) -> None:
        tmp = self.dir / f".{index:06d}.{os.getpid()}.png"
        image.save(tmp)
        os.replace(tmp, self.path(index))  # a part exists whole or not at all


def diffuse_geotiff(mask: str | os.PathLike, out: str | os.PathLike, req: Request, pipe, *, classes: str = "flair",
                    resolution: float | None = None, window: int = WINDOW, overlap: int | None = None,
                    job: dict | None = None, progress: bool = False,
                    on_window: Callable[[int, int], None] | None = None, state=None, src=None) -> Streamed:
    """Generate the map of the mask raster ``mask`` for ``req.seeds[0]`` into the COG ``out``, window by window.

    ``req`` gives every setting but the mask (read here, one window at a time).
    ``state`` is accelerate's ``PartialState`` (default: the current one), which says
    which windows are this process's. ``job`` adds what else must match for finished
    parts to be reused (the model, for instance). ``src``: ``mask`` already open (at
    ``resolution``), read instead of opening it again.
    """
    from accelerate import PartialState
    from tqdm.auto import tqdm

    state = state or PartialState()
    overlap = window // 8 if overlap is None else overlap
    out, seed = Path(out), req.seeds[0]
    given = src
    source = (lambda: open_mask(mask, resolution)) if given is None else (lambda: nullcontext(given))
    with env(), source() as src:
        grid = grid_of(src)
        boxes = _boxes(grid, window, overlap)
        parts = _Parts(out, {"mask": str(Path(mask).resolve()), "input": fingerprint(mask), "classes": classes,
                             "resolution": resolution, "window": window, "overlap": overlap, "seed": seed,
                             "prompt": req.full_prompt, "negative": req.negative_prompt, "steps": req.steps,
                             "guidance": req.guidance_scale,
                             "controlnet_scale": req.controlnet_scale, "scheduler": req.scheduler,
                             "cache_interval": req.cache_interval, **(job or {})})
        if state.is_main_process:
            parts.reset_if_stale()
        state.wait_for_everyone()
        mine = [i for i in range(len(boxes)) if i % state.num_processes == state.process_index]
        todo = [i for i in mine if not parts.path(i).is_file()]
        with tqdm(total=len(mine), initial=len(mine) - len(todo), desc="windows", unit="window",
                  disable=not (progress and state.is_main_process), dynamic_ncols=True) as bar:
            for n, index in enumerate(todo, start=1):
                ids = read_ids(src, box_window(boxes[index]), classes)
                one = dataclasses.replace(req, ids=ids, seeds=[window_seed(seed, index)])
                parts.save(index, _generate(one, pipe))
                bar.update()
                if on_window:
                    on_window(n, len(todo))
    state.wait_for_everyone()
    if state.is_main_process:
        _assemble(parts, boxes, grid, out, overlap, source, classes)
        shutil.rmtree(parts.dir)
    state.wait_for_everyone()
    return Streamed(out, grid, len(boxes), len(todo))


def _generate(req: Request, pipe) -> Image.Image:
    from ..generation import run

    return run(req, pipe).images[0]


def _assemble(parts: _Parts, boxes, grid, out: Path, overlap: int, open_source: Callable, classes: str) -> None:
    """Blend the parts into ``out``, one output block at a time (each block reads the few parts over it);
    the mask's nodata pixels are nodata in ``out`` too."""
    import rasterio

    @lru_cache(maxsize=8)
    def part(index: int) -> tuple[np.ndarray, np.ndarray]:
        box = boxes[index]
        with Image.open(parts.path(index)) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
        return rgb, blend_weights(box.height, box.width, overlap)[..., None]

    partial = out.with_name(out.name + ".partial.tif")
    with env(), open_source() as src, rasterio.open(partial, "w", **rgb_profile(grid)) as dst:
        for top in range(0, grid.height, BLOCK):
            for left in range(0, grid.width, BLOCK):
                block = Box(left, top, min(left + BLOCK, grid.width), min(top + BLOCK, grid.height))
                total = np.zeros((block.height, block.width, 3), np.float32)
                weight = np.zeros((block.height, block.width, 1), np.float32)
                for index, box in enumerate(boxes):
                    common = box.intersection(block)
                    if common is None:
                        continue
                    rgb, w = part(index)
                    sy, sx = common.slices(box)
                    ty, tx = common.slices(block)
                    total[ty, tx] += rgb[sy, sx] * w[sy, sx]
                    weight[ty, tx] += w[sy, sx]
                pixels = np.clip(total / weight + 0.5, 0, 255).astype(np.uint8)
                dst.write(np.moveaxis(pixels, -1, 0), window=box_window(block))
                if (valid := read_valid(src, box_window(block), classes)) is not None:
                    dst.write_mask(valid.astype(np.uint8) * 255, window=box_window(block))
    to_cog(partial, out)
    partial.unlink()
