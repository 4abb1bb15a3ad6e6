"""One generation request, built and checked once: what every front end turns its input into.

The CLI, the endpoint protocol and the web UI API only translate their wire format
(flags, JSON fields) into :meth:`Request.build`; the settings' defaults and limits live
in :data:`NUMERIC_FIELDS`, nowhere else. A bad value is a :class:`RequestError` naming the
field in the core's words (``steps: must be an integer between 1 and 150, got 0``); a
front end renames the field to its own spelling (``--steps``, ``parameters.steps``) and
keeps the rest of the sentence, so every front end refuses the same things the same way.

No torch here: building a request costs no model import, so front ends can refuse a bad
request before it waits for the device.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
from PIL import Image

from . import masks, prompts

MODES = ("generate", "inpaint", "outpaint")
BACKENDS = ("diffusion", "procedural", "remote")
"""diffusion: the model in this process; procedural: the offline renderer; remote: an endpoint (the web UI's)."""
BACKEND_ALIASES = {"local": "diffusion"}
"""Older names, still accepted: the web UI called the in-process model "local"."""
MAX_SEED = 2**63 - 1
SCHEDULERS = ("unipc", "dpm++", "euler-a", "ddim", "lcm", "tcd")
"""Samplers a request may ask for (seg2sat.speed maps them to diffusers' classes); the first is the default.
lcm and tcd are the few-step samplers of LCM / TCD LoRAs (load one with --lora)."""

ImageLike = Union[str, "os.PathLike[str]", Image.Image, np.ndarray]


@dataclass(frozen=True)
class NumericField:
    """A numeric field of a request (steps, guidance…): its default, its range and what people call it.

    Per-request values, not server configuration (that is :class:`seg2sat.settings.Settings`)."""

    default: int | float
    low: int | float
    high: int | float
    cast: type
    label: str
    """The web UI's name for it."""
    help: str


NUMERIC_FIELDS: dict[str, NumericField] = {
    "num_images": NumericField(1, 1, 8, int, "Images", "number of images, one per seed"),
    "steps": NumericField(20, 1, 150, int, "Steps", "denoising steps"),
    "guidance_scale": NumericField(7.5, 0.0, 30.0, float, "Prompt strength", "classifier-free guidance scale"),
    "controlnet_scale": NumericField(1.0, 0.0, 2.0, float, "Map strength", "how strongly the mask steers the image"),
    "strength": NumericField(0.75, 0.01, 1.0, float, "Redraw", "with an init image: how much of it is redrawn"),
    "cache_interval": NumericField(
        1, 1, 10, int, "Step cache",
        "run the UNet's inner layers and the ControlNet every N steps, reusing them in between (1 = off)"),
}
"""The one place for defaults and limits; the CLI's flags, both HTTP APIs and the page read them."""

LIMITS = {name: (s.low, s.high) for name, s in NUMERIC_FIELDS.items()}
"""Documented ranges, ``{name: (low, high)}``."""
FAST = {"cache_interval": 3}
"""The web UI's "Fast" toggle: step caching at interval 3 (see README, Fast generation, for what it costs)."""


class RequestError(ValueError):
    """A request that cannot be run as given: ``field`` names the part, ``detail`` says why."""

    def __init__(self, field: str, detail: str):
        self.field, self.detail = field, detail
        super().__init__(f"{field}: {detail}")

    def renamed(self, names: dict[str, str] | None = None, prefix: str = "") -> RequestError:
        """The same error under a front end's spelling of the field (``--steps``, ``parameters.steps``)."""
        return RequestError((names or {}).get(self.field) or f"{prefix}{self.field}", self.detail)


def json_text(value: Any, limit: int = 60) -> str:
    """A value as the client wrote it, in JSON's words: ``true``, ``null``, ``"text"``, ``[1, 2]``; an object or
    a long array by its kind. Error messages quote values this way: the clients speak JSON, not Python."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)) and not all(v is None or isinstance(v, (bool, int, float)) for v in value):
        return f"an array of {len(value)} item{'s' * (len(value) != 1)}"
    try:
        text = json.dumps(list(value) if isinstance(value, tuple) else value)
    except (TypeError, ValueError):
        return f"a {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 5] + "…" + text[-4:]


def json_kind(value: Any) -> str:
    """The JSON type of a value, for "must be an object, got text": an object, an array, text, a number…"""
    if value is None or isinstance(value, bool):
        return json_text(value)
    kinds = ((dict, "an object"), ((list, tuple), "an array"), (str, "text"), ((int, float), "a number"))
    return next((kind for types, kind in kinds if isinstance(value, types)), f"a {type(value).__name__}")


@dataclass(frozen=True)
class ImageLimits:
    """Size limits of the images a front end accepts (servers set them; the Python API has none)."""

    max_pixels: int | None = None
    min_side: int = 1

    def check(self, size: tuple[int, int], name: str) -> None:
        width, height = size
        if min(width, height) < self.min_side:
            raise RequestError(name, f"the image is {width}x{height}; each side must be at least {self.min_side} px")
        if self.max_pixels is not None and width * height > self.max_pixels:
            raise RequestError(name, f"the image is {width}x{height} = {width * height:,} px, more than the limit "
                                     f"of {self.max_pixels:,} px")


@dataclass
class Result:
    """Images and the seed of each; ``prompt`` is the text the model saw (style appended)."""

    images: list[Image.Image]
    seeds: list[int]
    prompt: str
    off_palette: float = 0.0
    """Share of mask pixels that were snapped to a class colour."""
    backend: str = "diffusion"
    """The backend that made the images (``procedural`` when the renderer stood in for the model)."""
    warnings: list[str] = field(default_factory=list)
    """What the user should read with the images (why the renderer stood in)."""
    timing: dict[str, float] = field(default_factory=dict)
    """Seconds spent waiting for the device (``queue_s``) and generating (``generate_s``)."""


@dataclass
class Request:
    """A checked request: every field valid, nothing left to verify before the model runs."""

    ids: np.ndarray
    """Class ids of the mask, already at the output size."""
    prompt: str
    """The caption (address and classes) without the style preset."""
    seeds: list[int]
    mode: str = "generate"
    style: str | None = None
    negative_prompt: str | None = None
    steps: int = int(NUMERIC_FIELDS["steps"].default)
    guidance_scale: float = float(NUMERIC_FIELDS["guidance_scale"].default)
    controlnet_scale: float = float(NUMERIC_FIELDS["controlnet_scale"].default)
    image: Image.Image | None = None
    """inpaint: the image to redo part of; outpaint: the image to grow (RGB)."""
    region: np.ndarray | None = None
    """inpaint: True where the image is regenerated."""
    at: tuple[int, int] | None = None
    """outpaint: where the image's top-left corner sits in the mask."""
    init_image: Image.Image | str | None = None
    """generate: start from this image (or "procedural", the offline render) instead of noise."""
    strength: float = float(NUMERIC_FIELDS["strength"].default)
    scheduler: str = SCHEDULERS[0]
    cache_interval: int = int(NUMERIC_FIELDS["cache_interval"].default)
    backend: str = "diffusion"
    off_palette: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    """Front-end data that rides along (the web UI's place name); never read by the core."""

    @property
    def full_prompt(self) -> str:
        """What the model reads: the prompt with the style preset's text appended."""
        return prompts.build_prompt(self.prompt, self.style)

    @property
    def num_images(self) -> int:
        return len(self.seeds)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the images this request produces."""
        return self.ids.shape[1], self.ids.shape[0]

    @property
    def keep(self) -> np.ndarray | None:
        """inpaint/outpaint: True where the output keeps the input image's pixels exactly."""
        if self.mode == "inpaint":
            return ~self.region
        if self.mode == "outpaint":
            keep = np.zeros(self.ids.shape, dtype=bool)
            x, y = self.at
            keep[y : y + self.image.height, x : x + self.image.width] = True
            return keep
        return None

    @classmethod
    def build(
        cls,
        mode: str = "generate",
        *,
        mask: ImageLike,
        prompt: str | None = None,
        place: str | None = None,
        seed: int | str | Sequence[int] | None = None,
        num_images: int | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
        controlnet_scale: float | None = None,
        negative_prompt: str | None = None,
        style: str | None = None,
        image: ImageLike | None = None,
        region: ImageLike | Sequence[int] | None = None,
        at: Sequence[int] | None = None,
        width: int | None = None,
        height: int | None = None,
        init_image: ImageLike | str | None = None,
        strength: float | None = None,
        scheduler: str | None = None,
        cache_interval: int | None = None,
        backend: str | None = None,
        limits: ImageLimits | None = None,
    ) -> Request:
        """Check everything and build the request; ``None`` means the default.

        ``mask``: a colour mask (path, PIL image, RGB array: snapped to the class colours) or a
        2-D class-id array. ``prompt``: the text, or None with ``place`` for the training
        caption of that place and the mask's classes. ``seed``: one (images get seed, seed+1,
        …), a list with one per image, or None for random seeds. ``region``: an image (white =
        redo), a boolean array, or a box ``[x, y, width, height]``. ``at``: where ``image``
        sits in the grown mask (centred when None). ``width``/``height`` resize the mask
        (nearest neighbour; one alone keeps the aspect ratio).
        """
        limits = limits or ImageLimits()
        mode = _choice("mode", mode, MODES)
        backend = _choice("backend", BACKEND_ALIASES.get(backend, backend) if isinstance(backend, str) else backend,
                          BACKENDS)
        numbers = {name: _number(name, value) for name, value in (
            ("num_images", num_images), ("steps", steps), ("guidance_scale", guidance_scale),
            ("controlnet_scale", controlnet_scale), ("strength", strength), ("cache_interval", cache_interval))}
        seeds = _seeds(seed, int(numbers["num_images"]))
        negative_prompt = _text("negative_prompt", negative_prompt)
        style = _text("style", style)
        with _as_field("style"):
            prompts.style_text(style)
        loaded = _mask(mask, limits)
        ids = _resized(loaded.ids, width, height, limits)
        text = _prompt(prompt, place, ids, style)
        req = cls(ids=ids, prompt=text, seeds=seeds, mode=mode, style=style, negative_prompt=negative_prompt or None,
                  steps=numbers["steps"], guidance_scale=numbers["guidance_scale"],
                  controlnet_scale=numbers["controlnet_scale"], strength=numbers["strength"],
                  scheduler=_choice("scheduler", scheduler, SCHEDULERS), cache_interval=numbers["cache_interval"],
                  backend=backend,
                  off_palette=loaded.off_palette)
        _geometry(req, image, region, at, init_image, width, height, limits)
        return req


# --------------------------------------------------------------------------- field checks


@contextmanager
def _as_field(name: str) -> Iterator[None]:
    """Turn the core's own ValueError raised inside into a RequestError naming ``name``.

    Those messages often start with the value's name ("prompt must be …"): that word is
    dropped, so the sentence reads "prompt: must be …" like every other.
    """
    try:
        yield
    except RequestError:
        raise
    except ValueError as exc:
        detail = str(exc)
        for lead in (f"{name}: ", f"{name} "):
            if detail.startswith(lead):
                detail = detail[len(lead):]
                break
        raise RequestError(name, detail) from None


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value is None:
        return allowed[0]
    if not isinstance(value, str) or value.strip().lower() not in allowed:
        raise RequestError(name, f"must be one of {', '.join(allowed)}, got {json_text(value)}")
    return value.strip().lower()


def _number(name: str, value: Any) -> int | float:
    """A setting within its range; integers must be whole (2.0 is 2, 2.5 is refused)."""
    setting = NUMERIC_FIELDS[name]
    if value is None:
        return setting.cast(setting.default)
    kind = "an integer" if setting.cast is int else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(name, f"must be {kind} between {setting.low} and {setting.high}, got {json_text(value)}")
    if setting.cast is int and not float(value).is_integer():
        raise RequestError(name, f"must be {kind} between {setting.low} and {setting.high}, got {json_text(value)}")
    if not setting.low <= value <= setting.high:  # also refuses NaN
        raise RequestError(name, f"must be {kind} between {setting.low} and {setting.high}, got {json_text(value)}")
    return setting.cast(value)


def parse_int(name: str, text: str) -> int:
    """An integer sent as text ("20", a 19-digit seed): int(), never float(), so no digit is lost."""
    try:
        return int(text.strip())
    except ValueError:
        raise RequestError(name, f"must be an integer, got the text {json_text(text)}") from None


def _seeds(seed: Any, num_images: int) -> list[int]:
    """One seed per image. Text is read exactly (``"9223372036854775000"``): JavaScript sends big seeds so."""
    if seed is None:
        return [secrets.randbelow(2**31) for _ in range(num_images)]
    if isinstance(seed, str):
        seed = parse_int("seed", seed)
    if isinstance(seed, float) and seed.is_integer():
        seed = int(seed)
    if isinstance(seed, (list, tuple)):
        if len(seed) != num_images:
            raise RequestError("seed", f"got {len(seed)} seeds for {num_images} images")
        values = list(seed)
    elif isinstance(seed, int) and not isinstance(seed, bool):
        values = [seed + i for i in range(num_images)]
    else:
        values = [seed]
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise RequestError("seed", f"must be a non-negative integer, got {json_text(value)}")
        if value > MAX_SEED:
            raise RequestError("seed", f"must be at most 2**63-1 = {MAX_SEED}, got {value}")
    return values


def _text(name: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise RequestError(name, f"must be a string, got {json_kind(value)}")
    return value.strip() or None if value is not None else None


def _prompt(prompt: Any, place: Any, ids: np.ndarray, style: str | None) -> str:
    """An explicit prompt wins; otherwise the training caption for ``place`` ("" = no place) and the mask's classes."""
    given = place is not None
    place = _text("place", place)
    prompt = _text("prompt", prompt)
    text = prompt if prompt else prompts.caption(place, ids) if given else None
    if text is None:
        raise RequestError("prompt", "is required, e.g. 'Aerial view of 31 Rue Molière, France'")
    with _as_field("prompt"):
        prompts.build_prompt(text, style)
    return text


# --------------------------------------------------------------------------- images


def read_image(value: ImageLike, name: str, limits: ImageLimits | None = None) -> Image.Image:
    """A PIL image from a path, an array or an image, size-checked before its pixels are decoded."""
    limits = limits or ImageLimits()
    if isinstance(value, np.ndarray):
        value = Image.fromarray(value)
    if isinstance(value, Image.Image):
        limits.check(value.size, name)
        return value
    try:
        image = Image.open(value)
    except (OSError, SyntaxError, TypeError, AttributeError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(value, (str, os.PathLike)):
            raise RequestError(name, f"cannot read an image from {value} ({exc})") from None
        raise RequestError(name, "is not an image that can be read (PNG or JPEG expected)") from None
    limits.check(image.size, name)
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise RequestError(name, f"the image is truncated or corrupt ({exc})") from None
    return image


def _mask(mask: ImageLike, limits: ImageLimits) -> masks.SnapResult:
    """Snapped class ids; decoded images are size-checked first, files (FLAIR GeoTIFFs too) by :func:`masks.load_mask`."""
    if isinstance(mask, Image.Image) or (isinstance(mask, np.ndarray) and mask.ndim == 3):
        mask = read_image(mask, "mask", limits)
    with _as_field("mask"):
        try:
            loaded = masks.load_mask(mask)
        except (OSError, TypeError) as exc:  # image modes PIL cannot convert to colours
            raise ValueError(f"cannot read colours from this image ({exc})") from None
    limits.check((loaded.ids.shape[1], loaded.ids.shape[0]), "mask")
    return loaded


def _resized(ids: np.ndarray, width: Any, height: Any, limits: ImageLimits) -> np.ndarray:
    """``width``/``height`` resize the mask nearest-neighbour; one alone keeps the aspect ratio."""
    if width is None and height is None:
        return ids
    for name, value in (("width", width), ("height", height)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not float(value).is_integer() or value < limits.min_side):
            raise RequestError(name, f"must be a whole number of pixels, at least {limits.min_side}, got {json_text(value)}")
        most, rule = ((limits.max_pixels // limits.min_side, "the pixel limit allows") if limits.max_pixels
                      else (2**31 - 1, "an image can have"))  # with a pixel limit: the other side is >= min_side
        if value is not None and value > most:
            raise RequestError(name, f"is {value:g} px, more than the {most:,} px a side {rule}")
    h0, w0 = ids.shape
    w = int(width) if width is not None else max(limits.min_side, round(w0 * height / h0))
    h = int(height) if height is not None else max(limits.min_side, round(h0 * width / w0))
    limits.check((w, h), "width" if width is not None else "height")
    return masks.resize_ids(ids, (w, h))


def _region(value: Any, size: tuple[int, int], limits: ImageLimits) -> np.ndarray:
    """White (> 127 in grey) or True means "regenerate"; a box is ``[x, y, width, height]``."""
    if value is None:
        raise RequestError("region", "is required for inpaint: an image (white = regenerate) or a box "
                                     "[x, y, width, height]")
    if isinstance(value, (list, tuple)):
        if len(value) != 4 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise RequestError("region", f"a box must be four integers [x, y, width, height], got {json_text(list(value))}")
        x, y, w, h = value
        if w <= 0 or h <= 0:
            raise RequestError("region", f"the box {list(value)} is empty: width and height must be positive")
        if x < 0 or y < 0 or x + w > size[0] or y + h > size[1]:
            raise RequestError("region", f"the box {list(value)} does not fit in the {size[0]}x{size[1]} image")
        selected = np.zeros((size[1], size[0]), dtype=bool)
        selected[y : y + h, x : x + w] = True
        return selected
    if isinstance(value, np.ndarray) and value.dtype == bool:
        selected = value
    else:
        selected = np.asarray(read_image(value, "region", limits).convert("L")) > 127
    if selected.shape != (size[1], size[0]):
        raise RequestError("region", f"is {selected.shape[1]}x{selected.shape[0]} but the image is {size[0]}x{size[1]}")
    if not selected.any():
        raise RequestError("region", "is empty: paint in white the part of the image to regenerate")
    return selected


def _position(at: Any, inner: tuple[int, int], outer: tuple[int, int]) -> tuple[int, int]:
    """Where the image's top-left corner sits in the grown mask; centred when not given."""
    if inner == outer:
        raise RequestError("mask", f"must be larger than the {inner[0]}x{inner[1]} image to outpaint: it covers "
                                   "the grown canvas")
    if at is None:
        x, y = (outer[0] - inner[0]) // 2, (outer[1] - inner[1]) // 2
    else:
        if (not isinstance(at, (list, tuple)) or len(at) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in at)):
            raise RequestError("at", f"must be two integers x,y, got {json_text(at)}")
        x, y = at
    if x < 0 or y < 0 or x + inner[0] > outer[0] or y + inner[1] > outer[1]:
        raise RequestError("at", f"an image of {inner[0]}x{inner[1]} at {x},{y} does not fit in the "
                                 f"{outer[0]}x{outer[1]} mask")
    return x, y


def _geometry(req: Request, image, region, at, init_image, width, height, limits: ImageLimits) -> None:
    """Mode-specific inputs: what each mode needs, and nothing it would silently ignore."""
    misplaced = {"generate": {"image": image, "region": region, "at": at},
                 "inpaint": {"at": at, "init_image": init_image, "width": width, "height": height},
                 "outpaint": {"region": region, "init_image": init_image, "width": width, "height": height}}
    for name, value in misplaced[req.mode].items():
        if value is not None:
            raise RequestError(name, f"is not used in mode {req.mode!r}")
    if req.mode == "generate":
        if isinstance(init_image, str) and init_image == "procedural":
            req.init_image = init_image
        elif init_image is not None:
            req.init_image = read_image(init_image, "init_image", limits).convert("RGB")
        return
    if image is None:
        raise RequestError("image", f"is required in mode {req.mode!r}: the aerial image to "
                                    f"{'redo part of' if req.mode == 'inpaint' else 'grow'}")
    req.image = read_image(image, "image", limits).convert("RGB")
    if req.mode == "inpaint":
        if req.image.size != req.size:
            raise RequestError("image", f"is {req.image.width}x{req.image.height} but the mask is "
                                        f"{req.size[0]}x{req.size[1]}; they must match")
        req.region = _region(region, req.size, limits)
    else:
        req.at = _position(at, req.image.size, req.size)


def grow(side: str, pixels: int, size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """For "extend by ``pixels`` on ``side``": the grown canvas size and where the image sits in it."""
    w, h = size
    if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels <= 0:
        raise RequestError("pixels", f"must be a positive integer, got {json_text(pixels)}")
    grown = {"left": ((w + pixels, h), (pixels, 0)), "right": ((w + pixels, h), (0, 0)),
             "top": ((w, h + pixels), (0, pixels)), "bottom": ((w, h + pixels), (0, 0)),
             "all": ((w + 2 * pixels, h + 2 * pixels), (pixels, pixels))}
    if not isinstance(side, str) or side not in grown:  # any JSON value may arrive here
        raise RequestError("side", f"must be one of {', '.join(grown)}, got {json_text(side)}")
    return grown[side]
