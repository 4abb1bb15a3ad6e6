"""Turning JSON request bodies into validated tasks: every bad field is a ValueError naming it.

All checks happen here, before a job is queued, so a bad request is answered
with a 400 at once instead of failing after it waited for the GPU.
"""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
from PIL import Image

from .. import masks, prompts
from ..generation import check_settings, grow
from .backends import Task
from .store import ImageStore

MAX_PLACE = 300


def body_object(body) -> dict:
    if not isinstance(body, dict):
        raise ValueError("send a JSON object (Content-Type: application/json)")
    return body


def decode_image(value, name: str, max_pixels: int) -> Image.Image:
    """A base64 PNG/JPEG (a bare string or a data: URL) -> a loaded PIL image, size-checked before decoding."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a base64-encoded PNG or JPEG image")
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{name} is not valid base64") from None
    return open_image(data, name, max_pixels)


def open_image(data: bytes, name: str, max_pixels: int) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        if image.format not in ("PNG", "JPEG", "WEBP", "GIF", "BMP"):
            raise ValueError(f"{name} must be a PNG or JPEG image, not {image.format}")
        _check_pixels(image.size, name, max_pixels)
        image.load()
    except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{name} is not a readable PNG or JPEG image ({exc})") from None
    return image


def _check_pixels(size: tuple[int, int], name: str, max_pixels: int) -> None:
    if size[0] < 1 or size[1] < 1 or size[0] * size[1] > max_pixels:
        raise ValueError(f"{name} is {size[0]}x{size[1]}; the largest this server accepts is {max_pixels:,} pixels")


def mask_summary(ids: np.ndarray, off_palette: float) -> dict:
    """What the editor needs to load a mask: its ids (base64 bytes, row by row) and its make-up."""
    return {"width": int(ids.shape[1]), "height": int(ids.shape[0]),
            "ids": base64.b64encode(np.ascontiguousarray(ids, dtype=np.uint8).tobytes()).decode("ascii"),
            "off_palette": off_palette,
            "shares": [{"id": k, "share": v} for k, v in masks.class_shares(ids).items()]}


def _settings(body: dict) -> dict:
    style = body.get("style") or None
    settings = check_settings(seed=body.get("seed"), num_images=body.get("num_images", 1), steps=body.get("steps", 20),
                              guidance_scale=body.get("guidance_scale", 7.5),
                              controlnet_scale=body.get("controlnet_scale", 1.0),
                              negative_prompt=body.get("negative_prompt") or None, style=style)
    settings.update(negative_prompt=body.get("negative_prompt") or None, style=style)
    return settings


def _prompt(body: dict, ids: np.ndarray, style: str | None) -> str:
    """An explicit ``prompt`` wins; otherwise the training caption for ``place`` and the mask's classes."""
    place, prompt = body.get("place"), body.get("prompt")
    if place is not None and not isinstance(place, str):
        raise ValueError("place must be a string, e.g. '31 Rue Molière, France'")
    if place and len(place) > MAX_PLACE:
        raise ValueError(f"place is longer than {MAX_PLACE} characters")
    if prompt is not None and not isinstance(prompt, str):
        raise ValueError("prompt must be a string")
    text = prompt.strip() if prompt and prompt.strip() else prompts.caption(place, ids)
    prompts.build_prompt(text, style)  # the checks the model call would make
    return text


def _source_image(body: dict, store: ImageStore, max_pixels: int) -> Image.Image:
    if body.get("image_id") is not None:
        image = store.image(body["image_id"])
        if image is None:
            raise ValueError("image_id names no image held by this server (it may have expired); generate it again")
        return image
    if body.get("image") is None:
        raise ValueError("send image_id (a result of this server) or image (base64 PNG) to start from")
    return decode_image(body["image"], "image", max_pixels).convert("RGB")


def _region(value, size: tuple[int, int], max_pixels: int) -> np.ndarray:
    region = np.asarray(decode_image(value, "region", max_pixels).convert("L")) > 127
    if region.shape != (size[1], size[0]):
        raise ValueError(f"region is {region.shape[1]}x{region.shape[0]} but the image is {size[0]}x{size[1]}")
    if not region.any():
        raise ValueError("region is empty: paint the part of the image to regenerate")
    return region


def parse_task(mode: str, body, store: ImageStore, max_pixels: int) -> tuple[Task, float]:
    """A generate / inpaint / outpaint body -> (task, share of off-palette mask pixels)."""
    body = body_object(body)
    if "mask" not in body:
        raise ValueError("mask is missing: send the land-cover mask as a base64 PNG")
    loaded = masks.snap(decode_image(body["mask"], "mask", max_pixels))
    settings = _settings(body)
    task = Task(mode, loaded.ids, _prompt(body, loaded.ids, settings["style"]), settings)
    mask_size = (loaded.ids.shape[1], loaded.ids.shape[0])
    if mode == "inpaint":
        task.image = _source_image(body, store, max_pixels)
        if task.image.size != mask_size:
            raise ValueError(f"the image is {task.image.width}x{task.image.height} but the mask is {mask_size[0]}x{mask_size[1]}")
        task.region = _region(body.get("region"), mask_size, max_pixels)
    elif mode == "outpaint":
        task.image = _source_image(body, store, max_pixels)
        pixels = body.get("pixels")
        if isinstance(pixels, bool) or not isinstance(pixels, int):
            raise ValueError(f"pixels must be a positive integer, got {pixels!r}")
        size, task.at = grow(body.get("side"), pixels, task.image.size)
        if size != mask_size:
            raise ValueError(f"extending the {task.image.width}x{task.image.height} image by {pixels} px on the "
                             f"{body.get('side')} needs a {size[0]}x{size[1]} mask, got {mask_size[0]}x{mask_size[1]}")
        _check_pixels(size, "the grown image", max_pixels)
    return task, loaded.off_palette
