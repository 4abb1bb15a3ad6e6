"""Generate, inpaint and outpaint from a land-cover mask: the API every front end calls.

Each call is one :class:`~seg2sat.request.Request`, checked completely before any model
work (:meth:`Request.build`), then :func:`run`: the diffusion pipeline, or the offline
renderer for ``backend="procedural"``. Both composite inpaint and outpaint the same
way, so every pixel outside the redone part is exactly the input's. Seeds are drawn on
a CPU ``torch.Generator`` per image: the same seed gives the same image whatever the
batch size or the device's random state.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from . import img2img, masks, stepcache, tiling
from .pipelines import inpaint_pipeline, load_pipeline
from .render import render
from .request import LIMITS, NUMERIC_FIELDS, ImageLike, Request, RequestError, Result, grow

__all__ = ["LIMITS", "NUMERIC_FIELDS", "Request", "RequestError", "Result", "StepCallback", "generate", "grow",
           "inpaint", "outpaint", "run"]

StepCallback = Callable[[int, int], None]
"""``on_step(done, total)``: progress over every image of a request."""


def generate(
    mask: ImageLike,
    prompt: str | None = None,
    *,
    seed: int | Sequence[int] | None = None,
    num_images: int | None = None,
    steps: int | None = None,
    guidance_scale: float | None = None,
    controlnet_scale: float | None = None,
    negative_prompt: str | None = None,
    style: str | None = None,
    init_image: ImageLike | str | None = None,
    strength: float | None = None,
    scheduler: str | None = None,
    cache_interval: int | None = None,
    backend: str | None = None,
    pipeline=None,
    on_step: StepCallback | None = None,
) -> Result:
    """Aerial images for a land-cover mask (a :class:`Request` built already goes to :func:`run`).

    ``mask``: a colour mask (path, PIL image, RGB array; snapped to the class colours)
    or a 2-D class-id array. ``seed``: one int (images get seed, seed+1, …), a list
    with one seed per image, or None for random seeds; :attr:`Result.seeds` says which.
    Settings left at None take their defaults from :data:`seg2sat.request.NUMERIC_FIELDS`.
    ``scheduler`` picks the sampler (:data:`seg2sat.request.SCHEDULERS`); ``cache_interval``
    N > 1 runs the UNet's inner layers and the ControlNet once every N steps (:mod:`seg2sat.stepcache`).
    ``init_image``: start from this picture instead of noise (image-to-image), or
    ``"procedural"`` for the offline render of the mask with each image's seed, which
    ties the result closer to the mask; ``strength`` (0..1] is how much is redrawn.
    ``pipeline`` defaults to :func:`load_pipeline` with its default models. Masks larger
    than the model's tile are generated in tiles (:mod:`seg2sat.tiling`).
    """
    if isinstance(mask, Request):  # the old overload; a Request's own entry point is run()
        warnings.warn("generate(request) is deprecated: call seg2sat.generation.run(request, pipeline, on_step)",
                      DeprecationWarning, stacklevel=2)
        return run(mask, pipeline, on_step)
    req = Request.build("generate", mask=mask, prompt=prompt, seed=seed, num_images=num_images, steps=steps,
                        guidance_scale=guidance_scale, controlnet_scale=controlnet_scale,
                        negative_prompt=negative_prompt, style=style, init_image=init_image, strength=strength,
                        scheduler=scheduler, cache_interval=cache_interval, backend=backend)
    return run(req, pipeline, on_step)


def inpaint(
    image: ImageLike,
    mask: ImageLike,
    region: ImageLike | Sequence[int],
    prompt: str,
    *,
    seed: int | Sequence[int] | None = None,
    num_images: int | None = None,
    steps: int | None = None,
    guidance_scale: float | None = None,
    controlnet_scale: float | None = None,
    negative_prompt: str | None = None,
    style: str | None = None,
    scheduler: str | None = None,
    cache_interval: int | None = None,
    backend: str | None = None,
    pipeline=None,
    on_step: StepCallback | None = None,
) -> Result:
    """Regenerate only ``region`` (white, a boolean array or a box [x, y, w, h]) of ``image``, following ``mask``.

    Every pixel outside the region is exactly the input's: the model's output is
    composited back, so nothing outside drifts through the VAE round trip.
    """
    req = Request.build("inpaint", mask=mask, prompt=prompt, image=image, region=region, seed=seed,
                        num_images=num_images, steps=steps, guidance_scale=guidance_scale,
                        controlnet_scale=controlnet_scale, negative_prompt=negative_prompt, style=style,
                        scheduler=scheduler, cache_interval=cache_interval, backend=backend)
    return run(req, pipeline, on_step)


def outpaint(
    image: ImageLike,
    mask: ImageLike,
    at: tuple[int, int] | None,
    prompt: str,
    *,
    seed: int | Sequence[int] | None = None,
    num_images: int | None = None,
    steps: int | None = None,
    guidance_scale: float | None = None,
    controlnet_scale: float | None = None,
    negative_prompt: str | None = None,
    style: str | None = None,
    scheduler: str | None = None,
    cache_interval: int | None = None,
    backend: str | None = None,
    pipeline=None,
    on_step: StepCallback | None = None,
) -> Result:
    """Grow ``image`` to the size of ``mask``, which covers the larger canvas.

    ``image`` sits with its top-left corner at ``at`` = (x, y) in the mask (centred when
    None); those pixels stay exactly as they were, everything around them is generated.
    """
    req = Request.build("outpaint", mask=mask, prompt=prompt, image=image, at=at, seed=seed, num_images=num_images,
                        steps=steps, guidance_scale=guidance_scale, controlnet_scale=controlnet_scale,
                        negative_prompt=negative_prompt, style=style, scheduler=scheduler,
                        cache_interval=cache_interval, backend=backend)
    return run(req, pipeline, on_step)


def run(req: Request, pipeline=None, on_step: StepCallback | None = None) -> Result:
    """The images of a checked request: the pipeline (default: :func:`load_pipeline`), or the renderer.

    The request's sampler (``req.scheduler``) is put on the pipeline first and stays there
    until the next request sets its own (see :func:`seg2sat.speed.use_scheduler`).
    """
    if req.backend == "procedural":
        images = _procedural(req, on_step)
    elif req.backend != "diffusion":
        raise RequestError("backend", f"{req.backend!r} runs elsewhere (the web UI sends it to an endpoint)")
    else:
        from .speed import check_steps, use_scheduler

        pipe = pipeline if pipeline is not None else load_pipeline()
        check_steps(use_scheduler(pipe, req.scheduler), req.steps)  # per request: requests share the pipeline
        images = _generate(pipe, req, on_step) if req.mode == "generate" else _inpaint(pipe, req, on_step)
    return Result(_composite(req, images), req.seeds, req.full_prompt, req.off_palette, backend=req.backend)


# --------------------------------------------------------------------------- the renderer


def _procedural(req: Request, on_step: StepCallback | None) -> list[Image.Image]:
    """The offline renderer (no weights): one render per seed; the prompt has no effect on it."""

    images = []
    for n, seed in enumerate(req.seeds):
        images.append(render(req.ids, seed=seed))
        if on_step is not None:
            on_step(n + 1, req.num_images)
    return images


def _composite(req: Request, images: list[Image.Image]) -> list[Image.Image]:
    """Results at the mask's own size; inpaint/outpaint keep every pixel outside the redone part exactly."""
    images = [im if im.size == req.size else im.resize(req.size, Image.LANCZOS) for im in images]
    keep = req.keep
    if keep is None:
        return images
    original = np.asarray(_canvas(req))
    return [Image.fromarray(np.where(keep[..., None], original, np.asarray(im.convert("RGB")))) for im in images]


def _canvas(req: Request) -> Image.Image:
    """The input image on the output canvas: outpaint pads it with its mean colour (a neutral start)."""
    if req.mode == "inpaint":
        return req.image
    mean = tuple(int(v) for v in np.asarray(req.image).reshape(-1, 3).mean(0))
    canvas = Image.new("RGB", req.size, mean)
    canvas.paste(req.image, req.at)
    return canvas


# --------------------------------------------------------------------------- diffusion


def _work_size(req: Request) -> tuple[int, int]:
    return masks.model_size(*req.size)


def _generate(pipe, req: Request, on_step: StepCallback | None) -> list[Image.Image]:
    control = masks.to_image(masks.resize_ids(req.ids, _work_size(req)))
    if req.init_image is not None or tiling.needs_tiling(pipe, *control.size):
        return _run_tiled(pipe, req, on_step, control)
    return _run(pipe, req, on_step, image=control)


def _inpaint(pipe, req: Request, on_step: StepCallback | None) -> list[Image.Image]:
    work = _work_size(req)
    region = Image.fromarray((~req.keep * 255).astype(np.uint8)).resize(work, Image.NEAREST)
    control = masks.to_image(masks.resize_ids(req.ids, work))
    return _run(inpaint_pipeline(pipe), req, on_step, image=_canvas(req).resize(work, Image.LANCZOS),
                mask_image=region, control_image=control, strength=1.0)


def _run(pipe, req: Request, on_step: StepCallback | None, **inputs) -> list[Image.Image]:
    """One pipeline call per seed.

    Batching seeds would be slightly faster on a GPU, but a batched image differs from
    the same seed alone in the last bit of a few pixels; one call per image makes a
    seed mean exactly one image. ``on_step`` sees (steps done, steps in all).
    ``req.cache_interval`` > 1: a step cache per image, told of each step by the step callback.
    """
    width, height = _work_size(req)
    total = req.steps * req.num_images
    images = []
    for n, seed in enumerate(req.seeds):
        with stepcache.step_cache(pipe, req.cache_interval) as cache:
            kwargs = {}
            if on_step is not None or cache.active:

                def callback(pipe, step, timestep, tensors, done=n * req.steps, cache=cache):
                    cache.next_step()
                    if on_step is not None:
                        on_step(done + step + 1, total)
                    return tensors

                kwargs["callback_on_step_end"] = callback
            out = pipe(prompt=req.full_prompt, negative_prompt=req.negative_prompt, width=width, height=height,
                       num_inference_steps=req.steps, guidance_scale=req.guidance_scale,
                       controlnet_conditioning_scale=req.controlnet_scale,
                       generator=torch.Generator("cpu").manual_seed(seed), **inputs, **kwargs)
        images.append(out.images[0])
    return images


def _run_tiled(pipe, req: Request, on_step: StepCallback | None, control: Image.Image) -> list[Image.Image]:
    """Masks larger than the model's tile, one seamless image per seed (:mod:`seg2sat.tiling`), and image-to-image
    at any size (:mod:`seg2sat.img2img`).

    ``on_step`` counts tile passes (tiles x steps), over all seeds, as the progress bar does.
    ``req.cache_interval`` > 1: a step cache per image, with one slot per tile.
    """
    images = []
    for n, seed in enumerate(req.seeds):
        start = req.init_image
        if isinstance(start, str):  # "procedural": the offline render of the mask, at the model's size
            from .render import render

            start = render(masks.resize_ids(req.ids, control.size), seed=seed)

        def on_tile(done: int, total: int, n: int = n) -> None:
            if on_step is not None:
                on_step(n * total + done, total * req.num_images)

        with stepcache.step_cache(pipe, req.cache_interval) as cache:
            common = dict(seed=seed, steps=req.steps, guidance_scale=req.guidance_scale,
                          controlnet_scale=req.controlnet_scale, negative_prompt=req.negative_prompt, on_tile=on_tile,
                          cache=cache if cache.active else None)
            if start is None:
                images.append(tiling.generate_tiled(pipe, control, req.full_prompt, **common))
            else:
                images.append(img2img.generate_from_image(pipe, control, start, req.full_prompt,
                                                          strength=req.strength, **common))
    return images
