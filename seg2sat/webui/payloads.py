"""UI API bodies -> one :meth:`Request.build` call; every check is the core's (seg2sat.request, seg2sat.wire).

The translation is all that happens here: base64 images are decoded (size-checked by the
wire codec before their pixels are), ``image_id`` is looked up in the image store, and
``side`` + ``pixels`` become the outpaint position. A bad value is a 400 whose sentence
names the field as the UI API spells it (``controlnet_conditioning_scale: must be …``),
before the job waits for the device. The checks left here are the ones only this API has:
an ``image_id`` this server holds, a mask that covers the grown canvas, ``side``/``pixels``
outside outpaint, and an alias disagreeing with the public name.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np

from .. import masks
from ..classes import NUM_CLASSES
from ..request import ImageLimits, Request, RequestError, grow, json_text
from ..wire import decode_image
from .store import ImageStore

SETTING_FIELDS = ("seed", "num_images", "steps", "guidance_scale", "negative_prompt", "style", "scheduler",
                  "cache_interval")
"""Body fields passed to :meth:`Request.build` under the same name."""
SIDES = ("left", "right", "top", "bottom", "all")
"""Where outpaint grows the image (:func:`seg2sat.request.grow`)."""
MAP_STRENGTH, MAP_STRENGTH_ALIAS = "controlnet_conditioning_scale", "controlnet_scale"
"""The public name shared with the endpoint API, and the core's name, accepted as an alias."""


def body_object(body) -> dict:
    if not isinstance(body, dict):
        raise ValueError("send a JSON object (Content-Type: application/json)")
    return body


def parse_request(mode: str, body, store: ImageStore, backend: str, limits: ImageLimits) -> Request:
    """A generate / inpaint / outpaint body -> the checked request (RequestError naming the body's field).

    No ``prompt`` and no ``place`` is the training caption without a place ("Aerial view. <classes>.").
    The map is ``ids`` + ``size`` (the class ids, as the live preview sends them: the page's own requests)
    or ``mask``, a colour image snapped to the class colours (other clients, older pages).
    """
    body = body_object(body)
    names = {"image": "image_id" if "image_id" in body else "image" if "image" in body else "image_id or image"}
    try:
        map_strength, names["controlnet_scale"] = _map_strength(body)
        mask = _map(body, limits)
        image = _image(body, store, limits)
        region = body.get("region")
        if isinstance(region, str):
            region = decode_image(region, "region", limits)
        place = body.get("place")
        return Request.build(
            mode, mask=mask, prompt=body.get("prompt"), place="" if place is None else place, image=image,
            region=region, at=_position(mode, body, image, _size_of(mask)), controlnet_scale=map_strength, backend=backend,
            limits=limits, **{name: body.get(name) for name in SETTING_FIELDS})
    except RequestError as exc:
        raise exc.renamed(names) from None


def _map(body: dict, limits: ImageLimits):
    """The map sent: class ids (no colour snapping, nothing lost) or a colour image; exactly one of them."""
    if body.get("ids") is None:
        return decode_image(body.get("mask"), "mask", limits)
    if body.get("mask") is not None:
        raise RequestError("mask", "send the map once: as ids + size (class ids) or as mask (a colour image)")
    return class_ids(body, limits.max_pixels)


def _size_of(mask) -> tuple[int, int]:
    """(width, height) of a decoded image or of an ids array."""
    return (mask.shape[1], mask.shape[0]) if isinstance(mask, np.ndarray) else mask.size


def _sizes(body: dict) -> tuple[int, int]:
    value = body.get("size")
    if not isinstance(value, list) or len(value) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise RequestError("size", f"must be [width, height] in pixels, got {json_text(value)}")
    return value[0], value[1]


def class_ids(body: dict, max_pixels: int | None) -> np.ndarray:
    """``ids`` (base64 text, one byte per pixel, row by row) + ``size`` [width, height] -> a (height, width)
    array of class ids 1..19. The size is checked before the bytes are decoded; the bytes must fill it."""
    width, height = _sizes(body)
    if max_pixels is not None and width * height > max_pixels:
        raise RequestError("size", f"{width}x{height} is larger than the limit of {max_pixels:,} px")
    try:
        raw = base64.b64decode(body.get("ids") or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise RequestError("ids", "must be base64 text of the class ids, one byte per pixel") from None
    if len(raw) != width * height:
        raise RequestError("ids", f"holds {len(raw)} bytes, not {width}x{height} = {width * height}")
    ids = np.frombuffer(raw, np.uint8).reshape(height, width)
    if ids.min() < 1 or ids.max() > NUM_CLASSES:
        raise RequestError("ids", f"class ids must be 1..{NUM_CLASSES}")
    return ids


def class_counts(body: dict) -> dict[int, float]:
    """``counts`` ({class id: pixels}, as the page keeps them) -> {class id: share of the map}."""
    counts = body.get("counts")
    if not isinstance(counts, dict) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts.values()):
        raise RequestError("counts", f"must map class ids to pixel counts, got {json_text(counts)}")
    known = {str(i) for i in range(1, NUM_CLASSES + 1)}
    unknown = [k for k in counts if k not in known]
    if unknown:
        raise RequestError("counts", f"class ids must be 1..{NUM_CLASSES}, got {json_text(unknown[0])}")
    total = sum(counts.values())
    return {int(k): n / total for k, n in counts.items() if n} if total else {}


def _map_strength(body: dict) -> tuple[object, str]:
    """Its value and the name it came under; the alias may be sent too if it agrees (as on the endpoint)."""
    ours, alias = body.get(MAP_STRENGTH), body.get(MAP_STRENGTH_ALIAS)
    if ours is not None and alias is not None and ours != alias:
        raise RequestError(MAP_STRENGTH_ALIAS, f"{json_text(alias)} conflicts with {MAP_STRENGTH} = {json_text(ours)}; "
                                              "send one of them")
    return (alias, MAP_STRENGTH_ALIAS) if ours is None and alias is not None else (ours, MAP_STRENGTH)


def _image(body: dict, store: ImageStore, limits: ImageLimits):
    """The image to start from: a result held by this server (``image_id``), or one sent (``image``)."""
    if body.get("image_id") is not None:
        image = store.image(body["image_id"])
        if image is None:
            raise RequestError("image_id", "names no image held by this server (it may have expired); generate it again")
        return image
    return None if body.get("image") is None else decode_image(body["image"], "image", limits)


def _position(mode: str, body: dict, image, mask_size: tuple[int, int]) -> tuple[int, int] | None:
    """Outpaint: "extend by ``pixels`` on ``side``" -> where the image sits; the mask must cover the grown canvas."""
    if mode != "outpaint":
        for name in ("side", "pixels"):
            if body.get(name) is not None:
                raise RequestError(name, f"is not used in mode {mode!r}")
        return None
    if image is None:
        return None  # Request.build says the image is required
    side, pixels = body.get("side"), body.get("pixels")
    if not isinstance(side, str):  # any JSON value may arrive; grow() looks strings up
        raise RequestError("side", f"must be one of {', '.join(SIDES)}, got {json_text(side)}")
    size, at = grow(side, pixels, image.size)
    if size != mask_size:
        raise RequestError("mask", f"extending the {image.width}x{image.height} image by {pixels} px on the {side} "
                                   f"needs a {size[0]}x{size[1]} mask, got {mask_size[0]}x{mask_size[1]}")
    return at


def mask_summary(ids: np.ndarray, off_palette: float) -> dict:
    """What the editor needs to load a mask: its ids (base64 bytes, row by row) and its make-up."""
    return {"width": int(ids.shape[1]), "height": int(ids.shape[0]),
            "ids": base64.b64encode(np.ascontiguousarray(ids, dtype=np.uint8).tobytes()).decode("ascii"),
            "off_palette": off_palette,
            "shares": [{"id": k, "share": v} for k, v in masks.class_shares(ids).items()]}


IMPORT_MAX_PIXELS = 8192 * 8192
"""The largest file an import reads (~200 MB of pixels while it is snapped). Anything between the server's
limit and this is offered to the user scaled down, rather than refused; larger ones are refused."""


def fitted(size: tuple[int, int], limits: ImageLimits) -> tuple[int, int]:
    """The nearest size inside ``limits`` with the same aspect ratio (the page's ``fitted``, same rounding)."""
    width, height = size
    up = max(1.0, limits.min_side / min(width, height))
    most = limits.max_pixels or width * height * up * up
    down = min(1.0, (most / (width * height * up * up)) ** 0.5)

    def side(n: int) -> int:
        return max(limits.min_side, int(n * up * down + 1e-6) if down < 1 else round(n * up))  # 2100 * 2048/2100

    return side(width), side(height)


def import_summary(image, limits: ImageLimits) -> dict:
    """An imported picture snapped to class ids; one outside the size rule is scaled to fit by nearest
    neighbour *after* snapping (every pixel keeps its class), and ``source`` says the file's own size so
    the page can ask before loading it."""
    from PIL import Image

    loaded = masks.snap(image)
    height, width = loaded.ids.shape
    try:
        limits.check((width, height), "file")
    except RequestError:
        size = fitted((width, height), limits)
        ids = np.asarray(Image.fromarray(loaded.ids).resize(size, Image.NEAREST))
        return dict(mask_summary(ids, loaded.off_palette), source=[width, height])
    return mask_summary(loaded.ids, loaded.off_palette)
