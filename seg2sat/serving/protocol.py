"""The endpoint's wire shapes, translated into one :meth:`Request.build` call.

Every shape clients send comes down to the same request (see :func:`split_payload`):

1. ours, and Hugging Face text-to-image: ``{"inputs": PROMPT, "parameters": {"image": MASK, …}}``;
2. Hugging Face image-to-image (``InferenceClient.image_to_image``): ``{"inputs": MASK,
   "parameters": {"prompt": PROMPT, …}}``;
3. the original handler's flat body, which Drawing2Map sends: ``{"prompt": PROMPT, "image": MASK,
   "steps": "20", "seed": "42"}`` (numbers as text; Drawing2Map adds ``inputs`` = the prompt).

This module only maps names: wire fields to :meth:`Request.build`'s keywords (:data:`FIELDS`),
Hugging Face's names to ours (:data:`ALIASES`), base64 to images (:mod:`seg2sat.wire`).
Every value is checked by the core, and its :class:`RequestError` is renamed to the field as
the client sent it (``parameters.num_inference_steps: must be …``). The checks left here are
the ones only the wire has: the body's shape, unknown fields, an alias disagreeing with our
name, and the JSON type of numbers (text is read as a number in the flat shape only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..request import NUMERIC_FIELDS, ImageLimits, Request, RequestError, json_kind, json_text, parse_int
from ..wire import decode_image, looks_like_image

FIELDS: dict[str, str] = {
    "image": "mask", "init_image": "image", "region": "region", "at": "at", "mode": "mode", "backend": "backend",
    "seed": "seed", "num_images": "num_images", "steps": "steps", "guidance_scale": "guidance_scale",
    "controlnet_conditioning_scale": "controlnet_scale", "negative_prompt": "negative_prompt", "style": "style",
    "width": "width", "height": "height", "scheduler": "scheduler", "cache_interval": "cache_interval",
}
"""Our wire name of each parameter -> its :meth:`Request.build` keyword. On the wire ``image`` is the
land-cover mask and ``init_image`` the aerial image that inpaint and outpaint work on."""
ALIASES: dict[str, str] = {"num_inference_steps": "steps", "controlnet_scale": "controlnet_conditioning_scale"}
"""Other names accepted for our parameters (Hugging Face's task names, the core's name). Two more
are structural: ``target_size`` ({"width": W, "height": H}) and, for image-to-image,
``prompt`` (the mask is then in ``inputs``)."""
PARAMETERS = (*FIELDS, *ALIASES, "target_size", "prompt")
"""Every key ``parameters`` may hold; any other is refused (a typo must not silently fall back to a default)."""
TEXT_NUMBERS = {**{wire: NUMERIC_FIELDS[core].cast for wire, core in FIELDS.items() if core in NUMERIC_FIELDS},
                "width": int, "height": int}
"""The flat shape sends numbers as text; these are read as numbers (the seed is read exactly by the core)."""
SHAPE = '{"inputs": PROMPT, "parameters": {...}}'


@dataclass
class Payload:
    """A body taken apart: prompt, parameters under our wire names, and the name each field was sent under."""

    prompt: Any
    params: dict[str, Any]
    legacy: bool = False
    sent: dict[str, str] = field(default_factory=dict)
    """Our name -> the field as the client wrote it ("parameters.num_inference_steps", "inputs"), for errors."""

    def name(self, key: str) -> str:
        """The field to name in an error about ``key``: what the client sent, not our internal name."""
        return self.sent.get(key) or (key if self.legacy else f"parameters.{key}")

    def names(self) -> dict[str, str]:
        """Request.build keyword -> wire name, for :meth:`RequestError.renamed`."""
        return {**{core: self.name(wire) for wire, core in FIELDS.items()}, "prompt": self.name("prompt")}


def split_payload(data: Any) -> Payload:
    """The prompt and parameters of a body in any of the three shapes (see the module's docstring)."""
    if not isinstance(data, dict):
        raise RequestError("body", f"must be a JSON object like {SHAPE}, got {json_kind(data)}")
    if "parameters" not in data and ("prompt" in data or "image" in data):
        return _flat(data)
    unknown = sorted(set(data) - {"inputs", "parameters"})
    if unknown:
        raise RequestError("body", f"unknown field {json_text(unknown[0])}; send {SHAPE}")
    params = data.get("parameters")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise RequestError("parameters", f"must be a JSON object, got {json_kind(params)}")
    unknown = sorted(set(params) - set(PARAMETERS), key=str)
    if unknown:
        raise RequestError("parameters", f"unknown parameter {json_text(unknown[0])}; known ones: {', '.join(PARAMETERS)}")
    params, sent = _canonical(params, "parameters.")
    prompt = data.get("inputs")
    if "prompt" in params or ("image" not in params and looks_like_image(prompt)):  # shape 2
        if "image" in params:
            raise RequestError(sent.get("image", "parameters.image"), "the mask is already in inputs (image-to-image "
                               "with parameters.prompt); send it once")
        params["image"], prompt = prompt, params.pop("prompt", None)
        sent.update(image="inputs", prompt="parameters.prompt")
    sent.setdefault("prompt", "inputs")
    return Payload(prompt, params, False, sent)


def _flat(data: dict) -> Payload:
    """Shape 3: every field at the top level, numbers often as text; unknown keys are ignored, as the original
    handler did (its clients sent extras). ``inputs`` and ``prompt`` are the same field there."""
    if "prompt" in data and "inputs" in data and data["prompt"] != data["inputs"]:
        raise RequestError("prompt", f"differs from inputs ({json_text(data['prompt'])} vs {json_text(data['inputs'])}); "
                           "send the prompt once")
    params, sent = _canonical({k: v for k, v in data.items() if k in PARAMETERS and k != "prompt"}, "")
    sent["prompt"] = "prompt" if "prompt" in data or "inputs" not in data else "inputs"
    p = Payload(data.get("prompt", data.get("inputs")), params, True, sent)
    for key, cast in TEXT_NUMBERS.items():
        value = p.params.get(key)
        if isinstance(value, str):
            p.params[key] = parse_int(p.name(key), value) if cast is int else _parse_float(p.name(key), value)
    return p


def _parse_float(name: str, text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise RequestError(name, f"must be a number, got the text {json_text(text)}") from None


def _canonical(params: dict, prefix: str) -> tuple[dict, dict[str, str]]:
    """Parameters under our names (ALIASES, target_size) and, for errors, the field each came from.

    An alias and our name may both be sent if they agree; different values are refused, naming both,
    rather than one silently winning.
    """
    out: dict[str, Any] = {}
    sent: dict[str, str] = {}
    items = list(params.items())
    if "target_size" in params:
        size = params["target_size"]
        if not isinstance(size, dict) or not size or not set(size) <= {"width", "height"}:
            raise RequestError(f"{prefix}target_size", f'must be {{"width": W, "height": H}}, got {json_text(size)}')
        items = [(k, v) for k, v in items if k != "target_size"] + [(f"target_size.{k}", v) for k, v in size.items()]
    for key, value in items:
        ours = ALIASES.get(key) or key.removeprefix("target_size.")
        where = prefix + key.split(".")[0]
        if out.get(ours) is not None and value is not None and out[ours] != value:
            alias, other = (where, value), (sent.get(ours, prefix + ours), out[ours])
            if alias[0] == prefix + ours:  # the message starts with the alias, whichever came first
                alias, other = other, alias
            raise RequestError(alias[0], f"{json_text(alias[1])} conflicts with {other[0]} = {json_text(other[1])}; "
                               "send one of them")
        if value is not None or ours not in out:
            out[ours] = value
            if key != ours:
                sent[ours] = where
    return out, sent


def parse_request(data: Any, limits: ImageLimits | None = None, default_backend: str | None = None) -> Request:
    """One body as a checked :class:`Request`; a bad one raises :class:`RequestError` naming the field as sent.

    ``limits`` bound every image (the server's settings); ``default_backend`` serves requests that name
    none. ``req.extra`` carries what only the wire needs: ``legacy`` (the flat shape, whose clients
    read ``image`` in the answer), ``names`` (core field -> wire name) and ``parse_s``.
    """
    start = time.perf_counter()
    p = split_payload(data)
    params = p.params
    if params.get("image") is None:
        raise RequestError(p.name("image"), "is required: the land-cover mask as a base64 PNG")
    mask = decode_image(params["image"], p.name("image"), limits)
    image = params.get("init_image")
    if image is not None:
        image = decode_image(image, p.name("init_image"), limits)
    region = params.get("region")
    if region is not None and not isinstance(region, list):  # a list is a box [x, y, width, height]
        region = decode_image(region, p.name("region"), limits)
    backend = params.get("backend")
    names = p.names()
    try:
        req = Request.build(
            params.get("mode"), mask=mask, prompt=p.prompt, image=image, region=region, at=params.get("at"),
            backend=default_backend if backend is None else backend, limits=limits,
            **{FIELDS[k]: params.get(k) for k in ("seed", "num_images", "steps", "guidance_scale",
                                                   "controlnet_conditioning_scale", "negative_prompt", "style",
                                                   "width", "height", "scheduler", "cache_interval")})
    except RequestError as exc:
        raise exc.renamed(names) from None
    req.extra.update(legacy=p.legacy, names=names, parse_s=time.perf_counter() - start)
    return req


def wire_name(req: Request, core: str) -> str:
    """The field a client sent for the core's ``core`` (``steps`` -> ``parameters.num_inference_steps``)."""
    return req.extra.get("names", {}).get(core, core)
