"""Generate, inpaint and outpaint from a land-cover mask: the API every front end calls.

Every argument is checked before any model work starts, so a bad request costs
nothing. Seeds are drawn on a CPU ``torch.Generator`` per image: the same seed gives
the same image whatever the batch size or the device's random state.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from typing import Callable, Sequence, Union

import numpy as np
import torch
from PIL import Image

from . import masks, prompts, tiling
from .pipelines import inpaint_pipeline, load_pipeline

ImageLike = Union[str, "os.PathLike[str]", Image.Image, np.ndarray]

LIMITS = {
    "num_images": (1, 8),
    "steps": (1, 150),
    "guidance_scale": (0.0, 30.0),
    "controlnet_scale": (0.0, 2.0),
}
"""Documented ranges; values outside them are refused with a ValueError naming the field."""

StepCallback = Callable[[int, int], None]


@dataclass
class Result:
    images: list[Image.Image]
    seeds: list[int]
    prompt: str
    """The prompt as the model saw it (style appended)."""
    off_palette: float = 0.0
    """Share of mask pixels that were snapped to a class colour."""
    extra: dict = field(default_factory=dict)


@dataclass
class _Request:
    """A validated request, ready for the pipeline."""

    ids: np.ndarray
    off_palette: float
    prompt: str
    negative_prompt: str | None
    seeds: list[int]
    steps: int
    guidance_scale: float
    controlnet_scale: float


def _check_range(name: str, value, cast):
    low, high = LIMITS[name]
    try:
        number = cast(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
        raise ValueError(f"{name} must be a number between {low} and {high}, got {value!r}") from None
    if isinstance(value, bool) or not low <= number <= high or (cast is int and number != float(value)):
        raise ValueError(f"{name} must be {'an integer' if cast is int else 'a number'} between {low} and {high}, got {value!r}")
    return number


def _seeds(seed: int | Sequence[int] | None, num_images: int) -> list[int]:
    if seed is None:
        return [secrets.randbelow(2**31) for _ in range(num_images)]
    if isinstance(seed, (list, tuple)):
        if len(seed) != num_images:
            raise ValueError(f"seed: got {len(seed)} seeds for {num_images} images")
        values = list(seed)
    else:
        values = [seed + i if isinstance(seed, int) else seed for i in range(num_images)]
    for s in values:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2**63:
            raise ValueError(f"seed must be a non-negative integer, got {s!r}")
    return values


def check_settings(
    *,
    seed: int | Sequence[int] | None = None,
    num_images: int = 1,
    steps: int = 20,
    guidance_scale: float = 7.5,
    controlnet_scale: float = 1.0,
    negative_prompt: str | None = None,
    style: str | None = None,
) -> dict:
    """The checks generate/inpaint/outpaint run on their settings, with no mask and no model.

    Front ends (the endpoint, the UI) call it to refuse a bad request before it waits
    in a queue for the GPU; a bad value is a ValueError naming the field. Returns the
    values as the pipeline will get them (seeds listed, numbers cast).
    """
    num_images = _check_range("num_images", num_images, int)
    if negative_prompt is not None and not isinstance(negative_prompt, str):
        raise ValueError("negative_prompt must be a string")
    prompts.style_text(style)
    return dict(seeds=_seeds(seed, num_images), num_images=num_images, steps=_check_range("steps", steps, int),
                guidance_scale=_check_range("guidance_scale", guidance_scale, float),
                controlnet_scale=_check_range("controlnet_scale", controlnet_scale, float))


def _request(mask, prompt, seed, num_images, steps, guidance_scale, controlnet_scale, negative_prompt, style) -> _Request:
    full_prompt = prompts.build_prompt(prompt, style)
    settings = check_settings(seed=seed, num_images=num_images, steps=steps, guidance_scale=guidance_scale,
                              controlnet_scale=controlnet_scale, negative_prompt=negative_prompt, style=style)
    loaded = masks.load_mask(mask)
    return _Request(
        ids=loaded.ids,
        off_palette=loaded.off_palette,
        prompt=full_prompt,
        negative_prompt=negative_prompt or None,
        seeds=settings["seeds"],
        steps=settings["steps"],
        guidance_scale=settings["guidance_scale"],
        controlnet_scale=settings["controlnet_scale"],
    )


def _run(pipe, req: _Request, on_step: StepCallback | None, **inputs) -> list[Image.Image]:
    """One pipeline call per seed.

    Batching seeds would be slightly faster on a GPU, but a batched image differs from
    the same seed alone in the last bit of a few pixels; one call per image makes a
    seed mean exactly one image. ``on_step`` sees (steps done, steps in all).
    """
    width, height = _work_size(req)
    total = req.steps * len(req.seeds)
    images = []
    for n, seed in enumerate(req.seeds):
        kwargs = {}
        if on_step is not None:

            def callback(pipe, step, timestep, tensors, done=n * req.steps):
                on_step(done + step + 1, total)
                return tensors

            kwargs["callback_on_step_end"] = callback
        out = pipe(
            prompt=req.prompt,
            negative_prompt=req.negative_prompt,
            width=width,
            height=height,
            num_inference_steps=req.steps,
            guidance_scale=req.guidance_scale,
            controlnet_conditioning_scale=req.controlnet_scale,
            generator=torch.Generator("cpu").manual_seed(seed),
            **inputs,
            **kwargs,
        )
        images.append(out.images[0])
    return images


def _work_size(req: _Request) -> tuple[int, int]:
    height, width = req.ids.shape
    return masks.model_size(width, height)


def _fit_back(images: list[Image.Image], size: tuple[int, int]) -> list[Image.Image]:
    """Results go back to the mask's own size (see the size policy in :mod:`seg2sat.masks`)."""
    return [im if im.size == size else im.resize(size, Image.LANCZOS) for im in images]


def generate(
    mask,
    prompt: str,
    *,
    seed: int | Sequence[int] | None = None,
    num_images: int = 1,
    steps: int = 20,
    guidance_scale: float = 7.5,
    controlnet_scale: float = 1.0,
    negative_prompt: str | None = None,
    style: str | None = None,
    pipeline=None,
    on_step: StepCallback | None = None,
    init_image=None,
    strength: float = 0.75,
) -> Result:
    """Aerial images for a land-cover mask.

    ``mask``: a colour mask (path, PIL image, RGB array; snapped to the class colours)
    or a 2-D class-id array. ``seed``: one int (images get seed, seed+1, …), a list
    with one seed per image, or None for random seeds; :attr:`Result.seeds` says which.
    ``pipeline`` defaults to :func:`load_pipeline` with its default models.
    ``init_image``: start from this picture instead of noise (image-to-image), or
    ``"procedural"`` for the offline render of the mask with each image's seed, which
    ties the result closer to the mask; ``strength`` (0..1] is how much is redrawn.
    Masks larger than the model's tile are generated in tiles (:mod:`seg2sat.tiling`).
    """
    req = _request(mask, prompt, seed, num_images, steps, guidance_scale, controlnet_scale, negative_prompt, style)
    init = _init_source(init_image, strength)
    pipe = pipeline if pipeline is not None else load_pipeline()
    control = masks.to_image(masks.resize_ids(req.ids, _work_size(req)))
    if init is not None or tiling.needs_tiling(pipe, *control.size):
        images = _run_tiled(pipe, req, on_step, control, init, strength)
    else:
        images = _run(pipe, req, on_step, image=control)
    return Result(_fit_back(images, control_size(req.ids)), req.seeds, req.prompt, req.off_palette)


def _init_source(init_image, strength):
    """Check the image-to-image inputs before any model work: None, "procedural", or a readable image."""
    if init_image is None:
        return None
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 < strength <= 1:
        raise ValueError(f"strength must be a number in (0, 1], got {strength!r}")
    if isinstance(init_image, str) and init_image == "procedural":
        return init_image
    return _load_rgb(init_image, "init_image")


def _run_tiled(pipe, req: _Request, on_step: StepCallback | None, control: Image.Image, init=None,
               strength: float = 0.75) -> list[Image.Image]:
    """Masks larger than the model's tile, one seamless image per seed (see :mod:`seg2sat.tiling`), and image-to-image.

    ``on_step`` counts tile passes (tiles x steps), over all seeds, as the progress bar does.
    """
    images = []
    for n, seed in enumerate(req.seeds):
        start = init
        if isinstance(init, str):  # "procedural": the offline render of the mask, at the model's size
            from .render import render

            start = render(masks.resize_ids(req.ids, control.size), seed=seed)

        def on_tile(done: int, total: int, n: int = n) -> None:
            if on_step is not None:
                on_step(n * total + done, total * len(req.seeds))

        images.append(tiling.generate_tiled(
            pipe, control, req.prompt, seed=seed, steps=req.steps, guidance_scale=req.guidance_scale,
            controlnet_scale=req.controlnet_scale, negative_prompt=req.negative_prompt, on_tile=on_tile,
            init_image=start, strength=strength))
    return images


def control_size(ids: np.ndarray) -> tuple[int, int]:
    return ids.shape[1], ids.shape[0]


def _load_rgb(image: ImageLike, name: str) -> Image.Image:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    elif not isinstance(image, Image.Image):
        try:
            with Image.open(image) as im:
                im.load()
                image = im
        except (OSError, SyntaxError, TypeError, AttributeError) as exc:
            raise ValueError(f"{name}: cannot read an image from {image!r} ({exc})") from exc
    return image.convert("RGB")


def _load_region(region: ImageLike, size: tuple[int, int]) -> np.ndarray:
    """White (> 127 after greyscale conversion, or True) means "regenerate"."""
    if isinstance(region, np.ndarray) and region.dtype == bool:
        selected = region
    else:
        selected = np.asarray(_load_rgb(region, "region").convert("L")) > 127
    if selected.shape != (size[1], size[0]):
        raise ValueError(f"region is {selected.shape[1]}x{selected.shape[0]} but the image is {size[0]}x{size[1]}")
    if not selected.any():
        raise ValueError("region is empty: paint in white the part of the image to regenerate")
    return selected


def inpaint(
    image,
    mask,
    region,
    prompt: str,
    *,
    seed: int | Sequence[int] | None = None,
    num_images: int = 1,
    steps: int = 20,
    guidance_scale: float = 7.5,
    controlnet_scale: float = 1.0,
    negative_prompt: str | None = None,
    style: str | None = None,
    pipeline=None,
    on_step: StepCallback | None = None,
) -> Result:
    """Regenerate only ``region`` (white) of ``image``, following ``mask`` there.

    Every pixel outside the region is exactly the input's: the model's output is
    composited back, so nothing outside drifts through the VAE round trip.
    """
    req = _request(mask, prompt, seed, num_images, steps, guidance_scale, controlnet_scale, negative_prompt, style)
    source = _load_rgb(image, "image")
    size = control_size(req.ids)
    if source.size != size:
        raise ValueError(f"image is {source.size[0]}x{source.size[1]} but the mask is {size[0]}x{size[1]}; they must match")
    selected = _load_region(region, size)
    return _inpaint(req, source, selected, pipeline, on_step)


def _inpaint(req: _Request, source: Image.Image, selected: np.ndarray, pipeline, on_step) -> Result:
    pipe = inpaint_pipeline(pipeline if pipeline is not None else load_pipeline())
    work = _work_size(req)
    region_image = Image.fromarray((selected * 255).astype(np.uint8)).resize(work, Image.NEAREST)
    control = masks.to_image(masks.resize_ids(req.ids, work))
    generated = _run(pipe, req, on_step, image=source.resize(work, Image.LANCZOS), mask_image=region_image,
                     control_image=control, strength=1.0)
    keep = ~selected[..., None]
    original = np.asarray(source)
    images = [Image.fromarray(np.where(keep, original, np.asarray(im))) for im in _fit_back(generated, source.size)]
    return Result(images, req.seeds, req.prompt, req.off_palette)


def outpaint(
    image,
    mask,
    at: tuple[int, int],
    prompt: str,
    *,
    seed: int | Sequence[int] | None = None,
    num_images: int = 1,
    steps: int = 20,
    guidance_scale: float = 7.5,
    controlnet_scale: float = 1.0,
    negative_prompt: str | None = None,
    style: str | None = None,
    pipeline=None,
    on_step: StepCallback | None = None,
) -> Result:
    """Grow ``image`` to the size of ``mask``, which covers the larger canvas.

    ``image`` sits with its top-left corner at ``at`` = (x, y) in the mask; those
    pixels stay exactly as they were, everything around them is generated.
    """
    req = _request(mask, prompt, seed, num_images, steps, guidance_scale, controlnet_scale, negative_prompt, style)
    source = _load_rgb(image, "image")
    canvas_size = control_size(req.ids)
    x, y = _check_position(at, source.size, canvas_size)
    if source.size == canvas_size:
        raise ValueError("the mask must be larger than the image to outpaint (it covers the grown canvas)")
    canvas = Image.new("RGB", canvas_size, tuple(int(v) for v in np.asarray(source).reshape(-1, 3).mean(0)))
    canvas.paste(source, (x, y))
    selected = np.ones((canvas_size[1], canvas_size[0]), dtype=bool)
    selected[y : y + source.size[1], x : x + source.size[0]] = False
    return _inpaint(req, canvas, selected, pipeline, on_step)


def _check_position(at, inner: tuple[int, int], outer: tuple[int, int]) -> tuple[int, int]:
    try:
        x, y = (int(v) for v in at)
    except (TypeError, ValueError):
        raise ValueError(f"at must be two integers x,y, got {at!r}") from None
    if x < 0 or y < 0 or x + inner[0] > outer[0] or y + inner[1] > outer[1]:
        raise ValueError(
            f"an image of {inner[0]}x{inner[1]} at {x},{y} does not fit in the {outer[0]}x{outer[1]} mask"
        )
    return x, y


def grow(side: str, pixels: int, size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """For "extend by ``pixels`` on ``side``": the grown canvas size and where the image sits in it."""
    w, h = size
    if not isinstance(pixels, int) or pixels <= 0:
        raise ValueError(f"pixels must be a positive integer, got {pixels!r}")
    grown = {"left": ((w + pixels, h), (pixels, 0)), "right": ((w + pixels, h), (0, 0)),
             "top": ((w, h + pixels), (0, pixels)), "bottom": ((w, h + pixels), (0, 0))}
    if side not in grown:
        raise ValueError(f"side must be one of {', '.join(grown)}, got {side!r}")
    return grown[side]
