"""Serving Seg2Sat over HTTP: the request protocol, its validation, and the local server.

One protocol everywhere: the Hugging Face Inference Endpoints handler
(``endpoint/handler.py``), the local server (``seg2sat serve``) and the web UI's
remote backend all speak ``{"inputs": PROMPT, "parameters": {...}}`` and answer
``{"images": [base64 PNG, ...], "seeds": [...], ...}`` (or the PNG itself to
``Accept: image/png``). Other clients' shapes are understood too, see
:func:`split_payload`: Hugging Face's text-to-image and image-to-image task payloads
(``huggingface_hub.InferenceClient`` works as is; their parameter names are
:data:`ALIASES` of ours) and the original Seg2Sat handler's flat payload (``prompt``,
``image``, ``steps``, ``seed`` at the top level, numbers as text), which Drawing2Map sends.

Every request is decoded and checked completely *before* any model work (and
before it queues for the device): a bad one is a :class:`RequestError`, a
``ValueError`` whose message starts with the field, e.g.
``parameters.steps: steps must be an integer between 1 and 150, got 0``. The
value checks are :mod:`seg2sat.generation`'s own, so the CLI, the UI and the
endpoint accept and refuse exactly the same things.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image

from . import generation, masks, prompts

log = logging.getLogger(__name__)

MODES = ("generate", "inpaint", "outpaint")
BACKENDS = ("diffusion", "procedural")

# Endpoint field -> generation.check_settings keyword; the rest of the parameters are handled here.
_SETTINGS = {
    "seed": "seed",
    "num_images": "num_images",
    "steps": "steps",
    "guidance_scale": "guidance_scale",
    "controlnet_conditioning_scale": "controlnet_scale",
    "negative_prompt": "negative_prompt",
    "style": "style",
}
ALIASES: dict[str, str] = {"num_inference_steps": "steps"}
"""Hugging Face task parameter names (text-to-image, image-to-image) -> ours, so ``InferenceClient`` works
as is. ``guidance_scale``, ``negative_prompt``, ``seed``, ``width``, ``height`` and
``controlnet_conditioning_scale`` are already the same in both; ``target_size`` ({"width", "height"}) and
``prompt`` (image-to-image: the mask is then ``inputs``) are the two structural ones, see :func:`split_payload`."""
PARAMETERS = (*_SETTINGS, "image", "mode", "init_image", "region", "at", "width", "height", "backend",
              *ALIASES, "prompt", "target_size")
"""Every key ``parameters`` may hold; any other is refused (a typo must not silently fall back to a default)."""

_NUMBERS = {"num_images": int, "steps": int, "width": int, "height": int,
            "guidance_scale": float, "controlnet_conditioning_scale": float}
_MAX_SEED = 2**63 - 1
"""generation refuses larger seeds (torch's manual_seed would take up to 2**64-1; see endpoint/README.md)."""
_IMAGE_B64 = ("data:image/", "iVBORw0KGgo", "/9j/", "UklGR", "R0lGOD")
"""How a base64 PNG, JPEG, WebP or GIF (or a data: URL) starts: tells an image in ``inputs`` from a prompt."""
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"RIFF", b"GIF8")
"""The same, as the first bytes of a raw image body."""


@dataclass(frozen=True)
class ServeConfig:
    """Limits and model choice of a handler or server; every field can be set from the environment."""

    max_pixels: int = 1024 * 1024
    """Largest image (mask, init image, region, output) in pixels: SEG2SAT_MAX_PIXELS."""
    min_side: int = 32
    """Smallest side of an image in pixels: SEG2SAT_MIN_SIDE."""
    max_body_bytes: int = 32 * 1024 * 1024
    """Largest request body the server reads: SEG2SAT_MAX_BODY_MB (in MiB)."""
    queue_size: int = 16
    """Requests that may wait for the device while one runs; more get 503: SEG2SAT_QUEUE_SIZE."""
    model: str | None = None
    """Base model hub id or folder, or a full pipeline folder: SEG2SAT_MODEL."""
    controlnet: str | None = None
    """ControlNet hub id or folder: SEG2SAT_CONTROLNET."""
    device: str | None = None
    """cuda, mps or cpu; default the best available: SEG2SAT_DEVICE."""
    backend: str = "diffusion"
    """Backend of requests that name none: SEG2SAT_BACKEND. With "procedural" no model is loaded until asked for."""

    @classmethod
    def from_env(cls, environ: dict | None = None, **overrides) -> "ServeConfig":
        """Defaults, then SEG2SAT_* environment variables, then ``overrides`` (those not None)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, var, cast in (("max_pixels", "SEG2SAT_MAX_PIXELS", int), ("min_side", "SEG2SAT_MIN_SIDE", int),
                                ("queue_size", "SEG2SAT_QUEUE_SIZE", int), ("model", "SEG2SAT_MODEL", str),
                                ("controlnet", "SEG2SAT_CONTROLNET", str), ("device", "SEG2SAT_DEVICE", str),
                                ("backend", "SEG2SAT_BACKEND", str)):
            if env.get(var):
                values[name] = _env_value(var, env[var], cast)
        if env.get("SEG2SAT_MAX_BODY_MB"):
            values["max_body_bytes"] = int(_env_value("SEG2SAT_MAX_BODY_MB", env["SEG2SAT_MAX_BODY_MB"], float) * 2**20)
        values.update({k: v for k, v in overrides.items() if v is not None})
        config = cls(**values)
        if config.max_pixels < config.min_side**2 or config.min_side < 1 or config.queue_size < 0:
            raise ValueError(f"inconsistent limits: {config}")
        if config.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {config.backend!r}")
        return config


def _env_value(var: str, text: str, cast):
    try:
        return cast(text)
    except ValueError:
        raise ValueError(f"environment variable {var} must be a {cast.__name__}, got {text!r}") from None


class RequestError(ValueError):
    """A request that cannot be served as sent; ``field`` says which part, the message (``field: why``) says why."""

    def __init__(self, field: str, detail: str):
        self.field = field
        super().__init__(detail if detail.startswith(f"{field}:") else f"{field}: {detail}")


@contextmanager
def _field(name: str, core: str | None = None) -> Iterator[None]:
    """Turn a core ValueError raised while checking ``name`` into a RequestError naming it.

    The core's messages start with its own name for the value ("steps must be …");
    that word is dropped so the message reads "parameters.steps: must be …".
    """
    try:
        yield
    except RequestError:
        raise
    except ValueError as exc:
        detail = str(exc)
        for word in filter(None, (core, name.rsplit(".", 1)[-1])):
            for sep in (": ", " "):
                if detail.startswith(word + sep):
                    detail = detail[len(word + sep):]
                    break
        raise RequestError(name, detail) from None


@dataclass
class GenerationRequest:
    """A request that passed every check: what :meth:`Service.run` needs, nothing left to verify."""

    mode: str
    prompt: str
    ids: np.ndarray
    off_palette: float
    settings: dict
    """generation.check_settings' output: seeds, num_images, steps, guidance_scale, controlnet_scale."""
    negative_prompt: str | None = None
    style: str | None = None
    backend: str = "diffusion"
    init_image: Image.Image | None = None
    region: np.ndarray | None = None
    at: tuple[int, int] | None = None
    size: tuple[int, int] = (0, 0)
    """(width, height) of the images the request will produce."""
    legacy: bool = False
    parse_s: float = 0.0

    @property
    def num_images(self) -> int:
        return self.settings["num_images"]


# --------------------------------------------------------------------------- decoding


def decode_image(value: Any, name: str, config: ServeConfig) -> Image.Image:
    """A base64 image (PNG, JPEG, …; ``data:`` URL prefix allowed), size-checked before it is decompressed.

    Raw bytes and PIL images are taken too: the Inference Endpoints toolkit hands a handler an image
    body already decoded (``{"inputs": PIL.Image}``).
    """
    if isinstance(value, Image.Image):
        _check_size(value.size, name, config)
        return value
    if isinstance(value, bytes):
        value = base64.b64encode(value).decode("ascii")
    if not isinstance(value, str) or not value.strip():
        raise RequestError(name, "must be a base64-encoded PNG image (a non-empty string)")
    text = value.strip()
    if text.startswith("data:"):
        head, sep, text = text.partition(",")
        if not sep or ";base64" not in head:
            raise RequestError(name, "a data: URL must be base64, like data:image/png;base64,iVBOR…")
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(name, "is not valid base64") from None
    try:
        image = Image.open(io.BytesIO(raw))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise RequestError(name, "the decoded bytes are not an image (PNG or JPEG expected)") from None
    _check_size(image.size, name, config)
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise RequestError(name, f"the image is truncated or corrupt ({exc})") from None
    return image


def _check_size(size: tuple[int, int], name: str, config: ServeConfig) -> None:
    width, height = size
    if min(width, height) < config.min_side:
        raise RequestError(name, f"the image is {width}x{height}; each side must be at least {config.min_side} px")
    if width * height > config.max_pixels:
        raise RequestError(name, f"the image is {width}x{height} = {width * height} px, more than the limit of "
                           f"{config.max_pixels} px (SEG2SAT_MAX_PIXELS)")


def encode_png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------- parsing


@dataclass
class Payload:
    """A request body taken apart: prompt, parameters under our names, and the name each field was sent under."""

    prompt: Any
    params: dict[str, Any]
    legacy: bool = False
    sent: dict[str, str] = field(default_factory=dict)
    """Our name -> the field as the client wrote it ("parameters.num_inference_steps", "inputs"), for errors."""

    def name(self, key: str) -> str:
        """The field to name in an error about ``key``: what the client sent, not our internal name."""
        return self.sent.get(key) or (key if self.legacy else f"parameters.{key}")


def split_payload(data: Any) -> Payload:
    """The prompt and parameters of a body in any of the shapes clients send.

    1. Ours, and Hugging Face text-to-image: ``{"inputs": PROMPT, "parameters": {"image": MASK, …}}``.
    2. Hugging Face image-to-image (``InferenceClient.image_to_image``): ``{"inputs": MASK,
       "parameters": {"prompt": PROMPT, …}}``, recognised by ``parameters.prompt`` or an image in ``inputs``.
    3. The original handler's flat body, ``{"prompt": PROMPT, "image": MASK, "steps": "20", …}``, recognised
       by no ``parameters`` and a top-level ``prompt`` or ``image``; Drawing2Map also sends ``inputs`` (= prompt).
    """
    if not isinstance(data, dict):
        raise RequestError("body", f"must be a JSON object like {{\"inputs\": PROMPT, \"parameters\": {{...}}}}, "
                           f"got {type(data).__name__}")
    if "parameters" not in data and ("prompt" in data or "image" in data):
        return _flat(data)
    unknown = sorted(set(data) - {"inputs", "parameters"})
    if unknown:
        raise RequestError("body", f"unknown field {unknown[0]!r}; send {{\"inputs\": PROMPT, \"parameters\": {{...}}}}")
    params = data.get("parameters")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise RequestError("parameters", f"must be a JSON object, got {type(params).__name__}")
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise RequestError("parameters", f"unknown parameter {unknown[0]!r}; known ones: {', '.join(PARAMETERS)}")
    params, sent = _canonical(params, "parameters.")
    prompt = data.get("inputs")
    if "prompt" in params or ("image" not in params and _is_image(prompt)):  # shape 2
        if "image" in params:
            raise RequestError(sent.get("image", "parameters.image"), "the mask is already in inputs (image-to-image "
                               "with parameters.prompt); send it once")
        params["image"], prompt = prompt, params.pop("prompt", None)
        sent.update(image="inputs", prompt="parameters.prompt")
    sent.setdefault("prompt", "inputs")
    return _text_numbers(Payload(prompt, params, False, sent), ("seed",))


def _flat(data: dict) -> Payload:
    """Shape 3: every field at the top level, numbers often as text; unknown keys are ignored, as the original
    handler did (its clients sent extras). ``inputs`` and ``prompt`` are the same field there."""
    if "prompt" in data and "inputs" in data and data["prompt"] != data["inputs"]:
        raise RequestError("prompt", f"differs from inputs ({data['prompt']!r} vs {data['inputs']!r}); "
                           "send the prompt once")
    params, sent = _canonical({k: v for k, v in data.items() if k in PARAMETERS and k != "prompt"}, "")
    sent["prompt"] = "prompt" if "prompt" in data or "inputs" not in data else "inputs"
    return _text_numbers(Payload(data.get("prompt", data.get("inputs")), params, True, sent), ("seed", *_NUMBERS))


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
            raise RequestError(f"{prefix}target_size", f'must be {{"width": W, "height": H}}, got {size!r}')
        items = [(k, v) for k, v in items if k != "target_size"] + [(f"target_size.{k}", v) for k, v in size.items()]
    for key, value in items:
        ours = ALIASES.get(key) or key.removeprefix("target_size.")
        where = prefix + key.split(".")[0]
        if out.get(ours) is not None and value is not None and out[ours] != value:
            alias, other = (where, value), (sent.get(ours, prefix + ours), out[ours])
            if alias[0] == prefix + ours:  # the message starts with the alias, whichever came first
                alias, other = other, alias
            raise RequestError(alias[0], f"{alias[1]!r} conflicts with {other[0]} = {other[1]!r}; send one of them")
        if value is not None or ours not in out:
            out[ours] = value
            if key != ours:
                sent[ours] = where
    return out, sent


def _text_numbers(p: Payload, fields: tuple[str, ...]) -> Payload:
    """Numbers sent as text ("20"): integers through int(), so a 19-digit seed keeps every digit (float()
    would round it above 2**53; JavaScript clients send big seeds as text for that reason)."""
    for key in fields:
        value = p.params.get(key)
        if isinstance(value, str):
            cast = _NUMBERS.get(key, int)
            try:
                p.params[key] = cast(value.strip())
            except ValueError:
                kind = "an integer" if cast is int else "a number"
                raise RequestError(p.name(key), f"must be {kind}, got the text {value!r}") from None
    return p


def _is_image(value: Any) -> bool:
    return isinstance(value, (bytes, Image.Image)) or (isinstance(value, str) and value.lstrip().startswith(_IMAGE_B64))


def parse_request(data: Any, config: ServeConfig | None = None) -> GenerationRequest:
    """Decode and check one request completely; raises RequestError (a ValueError) naming the field."""
    start = time.perf_counter()
    config = config or ServeConfig()
    p = split_payload(data)
    mode = _choice(p, "mode", MODES)
    backend = _choice(p, "backend", BACKENDS, default=config.backend)
    settings = _settings(p)
    with _field(p.name("prompt"), core="prompt"):
        full_prompt = prompts.build_prompt(p.prompt, p.params.get("style"))
    if p.params.get("image") is None:
        raise RequestError(p.name("image"), "is required: the land-cover mask as a base64 PNG")
    mask_image = decode_image(p.params["image"], p.name("image"), config)
    with _field(p.name("image")):
        try:
            snapped = masks.load_mask(mask_image)
        except (OSError, TypeError) as exc:  # image modes PIL cannot convert to colours
            raise ValueError(f"cannot read colours from this {mask_image.mode} image ({exc})") from None
    req = GenerationRequest(mode=mode, prompt=full_prompt, ids=snapped.ids, off_palette=snapped.off_palette,
                            settings=settings, negative_prompt=p.params.get("negative_prompt") or None,
                            style=p.params.get("style"), backend=backend, legacy=p.legacy,
                            size=generation.control_size(snapped.ids))
    _geometry(req, p, config)
    req.parse_s = time.perf_counter() - start
    return req


def _choice(p: Payload, name: str, allowed: tuple[str, ...], default: str | None = None) -> str:
    value = p.params.get(name)
    if value is None:
        return default or allowed[0]
    if not isinstance(value, str) or value.strip().lower() not in allowed:
        raise RequestError(p.name(name), f"must be one of {', '.join(allowed)}, got {value!r}")
    return value.strip().lower()


def _settings(p: Payload) -> dict:
    """Each setting through generation.check_settings on its own, so the error names exactly that field."""
    params = p.params
    for name in _NUMBERS:
        value = params.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise RequestError(p.name(name), f"must be a JSON number, got {type(value).__name__} {value!r}")
    for name in ("negative_prompt", "style"):
        if params.get(name) is not None and not isinstance(params[name], str):
            raise RequestError(p.name(name), f"must be a string, got {type(params[name]).__name__}")
    values: dict[str, Any] = {}
    for name in ("num_images", "steps", "guidance_scale", "controlnet_conditioning_scale", "negative_prompt", "style"):
        if params.get(name) is not None:
            with _field(p.name(name), core=_SETTINGS[name]):
                generation.check_settings(**{_SETTINGS[name]: params[name]})
            values[_SETTINGS[name]] = params[name]
    seed = params.get("seed")
    if isinstance(seed, float) and seed.is_integer():
        seed = int(seed)
    if isinstance(seed, int) and not isinstance(seed, bool) and seed > _MAX_SEED:
        raise RequestError(p.name("seed"), f"must be at most 2**63-1 = {_MAX_SEED}, got {seed}")
    with _field(p.name("seed")):
        return generation.check_settings(seed=seed, **values)


def _geometry(req: GenerationRequest, p: Payload, config: ServeConfig) -> None:
    """Mode-specific parameters: output size for generate, init image / region / position otherwise."""
    params = p.params
    misplaced = {"generate": ("init_image", "region", "at"), "inpaint": ("at", "width", "height"),
                 "outpaint": ("region", "width", "height")}[req.mode]
    for name in misplaced:
        if params.get(name) is not None:
            raise RequestError(p.name(name), f"is not used in mode {req.mode!r}")
    if req.mode == "generate":
        _output_size(req, p, config)
        return
    if params.get("init_image") is None:
        raise RequestError(p.name("init_image"), f"is required in mode {req.mode!r}: the aerial image as base64 PNG")
    req.init_image = decode_image(params["init_image"], p.name("init_image"), config).convert("RGB")
    if req.mode == "inpaint":
        if req.init_image.size != req.size:
            raise RequestError(p.name("init_image"), f"is {req.init_image.width}x{req.init_image.height} but the mask "
                               f"is {req.size[0]}x{req.size[1]}; they must match")
        req.region = _region(params.get("region"), req.size, p.name("region"), config)
    else:
        if req.init_image.size == req.size:
            raise RequestError(p.name("image"), "must be larger than init_image to outpaint: it covers the grown "
                               "canvas")
        req.at = _position(params.get("at"), req.init_image.size, req.size, p.name("at"))


def _output_size(req: GenerationRequest, p: Payload, config: ServeConfig) -> None:
    """width/height resize the mask (nearest neighbour); one alone keeps the mask's aspect ratio."""
    if p.params.get("width") is None and p.params.get("height") is None:
        return
    width, height = (_side(p.params.get(name), p.name(name), config) for name in ("width", "height"))
    w0, h0 = req.size
    width = width or max(config.min_side, round(w0 * height / h0))
    height = height or max(config.min_side, round(h0 * width / w0))
    if width * height > config.max_pixels:
        raise RequestError(p.name("width"), f"{width}x{height} = {width * height} px is more than the limit of "
                           f"{config.max_pixels} px (SEG2SAT_MAX_PIXELS)")
    req.ids = masks.resize_ids(req.ids, (width, height))
    req.size = (width, height)


def _side(value: Any, name: str, config: ServeConfig) -> int | None:
    """A whole number of pixels, at least ``min_side`` (None when not given)."""
    if value is None:
        return None
    if not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())) or value < config.min_side:
        raise RequestError(name, f"must be a whole number of pixels, at least {config.min_side}, got {value!r}")
    return int(value)


def _region(value: Any, size: tuple[int, int], name: str, config: ServeConfig) -> np.ndarray:
    """A base64 PNG (white = regenerate) of the image's size, or a box [x, y, width, height]."""
    if value is None:
        raise RequestError(name, "is required for inpaint: a base64 PNG (white = regenerate) or a box [x, y, width, height]")
    if isinstance(value, list):
        if len(value) != 4 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise RequestError(name, f"a box must be four integers [x, y, width, height], got {value!r}")
        x, y, w, h = value
        if w <= 0 or h <= 0:
            raise RequestError(name, f"the box {value} is empty: width and height must be positive")
        if x < 0 or y < 0 or x + w > size[0] or y + h > size[1]:
            raise RequestError(name, f"the box {value} does not fit in the {size[0]}x{size[1]} image")
        selected = np.zeros((size[1], size[0]), dtype=bool)
        selected[y : y + h, x : x + w] = True
        return selected
    with _field(name):
        return generation._load_region(decode_image(value, name, config), size)


def _position(value: Any, inner: tuple[int, int], outer: tuple[int, int], name: str) -> tuple[int, int]:
    """Where init_image's top-left corner sits in the mask; centred when not given."""
    if value is None:
        if inner[0] > outer[0] or inner[1] > outer[1]:
            raise RequestError(name, f"init_image ({inner[0]}x{inner[1]}) does not fit in the {outer[0]}x{outer[1]} mask")
        return (outer[0] - inner[0]) // 2, (outer[1] - inner[1]) // 2
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise RequestError(name, f"must be two integers [x, y], got {value!r}")
    with _field(name):
        return generation._check_position(value, inner, outer)


# --------------------------------------------------------------------------- running


def load_for_repository(path: str | os.PathLike | None, config: ServeConfig):
    """The pipeline for an endpoint repository folder.

    A full pipeline folder (``model_index.json`` with a ControlNet) is loaded as is; a
    ControlNet folder (``config.json`` of a ``ControlNetModel``) goes on the base model
    from SEG2SAT_MODEL (default SD 2.1 base); anything else uses the settings, then the
    default hub ids.
    """
    from .pipelines import is_full_pipeline, load_pipeline

    model, controlnet = config.model, config.controlnet
    if path and os.path.isdir(path):
        if is_full_pipeline(path):
            model = str(path)
        elif _is_controlnet_folder(Path(path)):
            controlnet = str(path)
    return load_pipeline(model, controlnet, device=config.device)


def _is_controlnet_folder(path: Path) -> bool:
    try:
        return json.loads((path / "config.json").read_text(encoding="utf-8")).get("_class_name") == "ControlNetModel"
    except (OSError, ValueError, AttributeError):
        return False


class Service:
    """Parses, runs and answers requests; the endpoint handler and the local server wrap one."""

    def __init__(self, config: ServeConfig | None = None, pipeline=None, repository: str | os.PathLike | None = None):
        self.config = config or ServeConfig.from_env()
        self.repository = repository
        self._pipeline = pipeline
        self._load_lock = threading.Lock()
        self._device_lock = threading.Lock()

    @property
    def pipeline(self):
        """The diffusion pipeline, loaded on first use (once: load_pipeline caches it)."""
        with self._load_lock:
            if self._pipeline is None:
                self._pipeline = load_for_repository(self.repository, self.config)
            return self._pipeline

    def parse(self, data: Any) -> GenerationRequest:
        return parse_request(data, self.config)

    def run(self, req: GenerationRequest) -> generation.Result:
        """Model work for a checked request (ValueErrors left here come from the core's own checks)."""
        if req.backend == "procedural":
            return _procedural(req)
        kwargs = dict(seed=req.settings["seeds"], num_images=req.num_images, steps=req.settings["steps"],
                      guidance_scale=req.settings["guidance_scale"], controlnet_scale=req.settings["controlnet_scale"],
                      negative_prompt=req.negative_prompt, pipeline=self.pipeline)
        # req.prompt already carries the style text: pass the style once only.
        if req.mode == "generate":
            return generation.generate(req.ids, req.prompt, **kwargs)
        if req.mode == "inpaint":
            return generation.inpaint(req.init_image, req.ids, req.region, req.prompt, **kwargs)
        return generation.outpaint(req.init_image, req.ids, req.at, req.prompt, **kwargs)

    def answer(self, req: GenerationRequest, result: generation.Result, timing: dict) -> dict:
        """The JSON response: images and their seeds, what the model saw, and where the time went."""
        images = [encode_png(im) for im in result.images]
        body = {"images": images, "seeds": result.seeds, "prompt": result.prompt, "mode": req.mode,
                "backend": req.backend, "width": req.size[0], "height": req.size[1],
                "off_palette": round(req.off_palette, 6), "timing": {k: round(v, 4) for k, v in timing.items()}}
        if req.off_palette:
            body["warnings"] = [f"{req.off_palette:.1%} of the mask pixels were off-palette and snapped to the "
                                "nearest class colour"]
        if req.legacy:
            body["image"] = images[0]  # what the original handler's clients read
        return body

    def __call__(self, data: Any) -> dict:
        """One request, start to answer. Callers on several threads (the endpoint toolkit may
        call a handler concurrently) take turns on the device; parsing needs no turn."""
        req = self.parse(data)
        with self._device_lock:
            start = time.perf_counter()
            result = self.run(req)
        return self.answer(req, result, {"parse_s": req.parse_s, "generate_s": time.perf_counter() - start})


def _procedural(req: GenerationRequest) -> generation.Result:
    """The offline renderer (no weights): one image per seed, composited like the diffusion modes."""
    try:
        from .render import render
    except ImportError:
        raise RequestError("parameters.backend", "the procedural renderer is not installed in this version") from None
    if req.mode == "generate":
        return generation.Result([render(req.ids, seed=s) for s in req.settings["seeds"]], req.settings["seeds"], req.prompt,
                                 req.off_palette)
    if req.mode == "inpaint":
        canvas, keep = req.init_image, ~req.region
    else:
        canvas = Image.new("RGB", req.size)
        canvas.paste(req.init_image, req.at)
        keep = np.zeros((req.size[1], req.size[0]), dtype=bool)
        keep[req.at[1] : req.at[1] + req.init_image.height, req.at[0] : req.at[0] + req.init_image.width] = True
    original = np.asarray(canvas)
    images = [Image.fromarray(np.where(keep[..., None], original, np.asarray(render(req.ids, seed=s))))
              for s in req.settings["seeds"]]
    return generation.Result(images, req.settings["seeds"], req.prompt, req.off_palette)


# --------------------------------------------------------------------------- one at a time


class QueueFull(Exception):
    """More requests are waiting than the queue holds; ``retry_after`` is a fair guess in seconds."""

    def __init__(self, retry_after: int):
        self.retry_after = retry_after
        super().__init__(f"the server is busy; retry in {retry_after} s")


class DeviceGate:
    """One generation at a time on the device, waiting requests served first come first served.

    A GPU running two diffusion loops at once runs each at half speed and may run out of
    memory; queueing keeps latency predictable. At most ``max_waiting`` requests wait:
    beyond that :class:`QueueFull` is raised at once (the server answers 503 with
    Retry-After) rather than holding connections open for minutes.
    """

    def __init__(self, max_waiting: int):
        self.max_waiting = max_waiting
        self._cond = threading.Condition()
        self._next_ticket = 0
        self._serving = 0
        self._average_s = 1.0

    @property
    def waiting(self) -> int:
        with self._cond:
            return self._next_ticket - self._serving - (1 if self.busy else 0)

    @property
    def busy(self) -> bool:
        return self._next_ticket > self._serving

    @contextmanager
    def slot(self) -> Iterator[float]:
        """Wait for the device; yields the seconds spent waiting."""
        start = time.perf_counter()
        with self._cond:
            queued = self._next_ticket - self._serving
            if queued > self.max_waiting:
                raise QueueFull(max(1, round(queued * self._average_s)))
            ticket = self._next_ticket
            self._next_ticket += 1
            while ticket != self._serving:
                self._cond.wait()
        began = time.perf_counter()
        try:
            yield began - start
        finally:
            with self._cond:
                self._average_s = 0.8 * self._average_s + 0.2 * (time.perf_counter() - began)
                self._serving += 1
                self._cond.notify_all()


# --------------------------------------------------------------------------- the local server


@dataclass
class ServerState:
    """What the routes share: the service (model), the device gate and counters for /health."""

    service: Service
    gate: DeviceGate
    handled: dict = field(default_factory=lambda: {"ok": 0, "bad_request": 0, "busy": 0, "failed": 0})
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, outcome: str) -> None:
        with self.lock:
            self.handled[outcome] += 1


def create_app(config: ServeConfig | None = None, service: Service | None = None):
    """Flask app factory for the local server: the routes and protocol of Inference Endpoints.

    ``GET /health``, ``POST /`` and ``POST /predict``. The config comes from the
    SEG2SAT_* environment variables unless given; pass ``service`` to share a model
    that is already loaded. Flask is imported here only: the endpoint image, which
    runs the handler under Hugging Face's own server, does not need it.
    """
    from flask import Flask

    if config is None:
        config = service.config if service is not None else ServeConfig.from_env()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.extensions["seg2sat"] = ServerState(service or Service(config), DeviceGate(config.queue_size))
    app.register_blueprint(_blueprint())
    _register_errors(app)
    return app


def _state() -> ServerState:
    from flask import current_app

    return current_app.extensions["seg2sat"]


def _error(message: str, status: int, **headers):
    from flask import jsonify

    response = jsonify({"error": message})
    response.status_code = status
    response.headers.update({k.replace("_", "-"): str(v) for k, v in headers.items()})
    return response


def _blueprint():
    from flask import Blueprint, Response, jsonify, request

    from .pipelines import WeightsNotFoundError

    api = Blueprint("seg2sat_api", __name__)

    @api.get("/health")
    def health():
        state = _state()
        service = state.service
        return jsonify({"status": "ok", "busy": state.gate.busy, "waiting": state.gate.waiting,
                        "queue_size": state.gate.max_waiting, "handled": dict(state.handled),
                        "model_loaded": service._pipeline is not None,
                        "limits": {"max_pixels": service.config.max_pixels, "min_side": service.config.min_side,
                                   "max_body_bytes": service.config.max_body_bytes,
                                   **{k: list(v) for k, v in generation.LIMITS.items()}}})

    @api.post("/")
    @api.post("/predict")
    def predict():
        start = time.perf_counter()
        state = _state()
        data = request.get_json(force=True, silent=True)
        if data is None and request.get_data().startswith(_IMAGE_MAGIC):
            # InferenceClient.image_to_image with no parameters posts the bare image: take it as inputs,
            # so the answer says what is missing (parameters.prompt) rather than "not JSON".
            data = {"inputs": request.get_data()}
        if data is None:
            state.count("bad_request")
            return _error("body: must be JSON, like {\"inputs\": PROMPT, \"parameters\": {\"image\": BASE64_PNG}}", 400)
        want_png = request.accept_mimetypes.best_match(["application/json", "image/png"]) == "image/png"
        try:
            req = state.service.parse(data)
            if want_png and req.num_images != 1:
                raise RequestError("parameters.num_images", "Accept: image/png returns one image; ask for JSON to get several")
            with state.gate.slot() as waited:
                began = time.perf_counter()
                result = state.service.run(req)
        except QueueFull as exc:
            state.count("busy")
            return _error(str(exc), 503, Retry_After=exc.retry_after)
        except WeightsNotFoundError as exc:
            state.count("failed")
            return _error(f"the model is not available: {exc}", 503)
        except ValueError as exc:
            state.count("bad_request")
            return _error(str(exc), 400)
        timing = {"parse_s": req.parse_s, "queue_s": waited, "generate_s": time.perf_counter() - began}
        state.count("ok")
        server_timing = ", ".join(f"{k[:-2]};dur={v * 1000:.1f}" for k, v in timing.items())
        if want_png:
            response = Response(png_bytes(result.images[0]), mimetype="image/png")
            response.headers["X-Seed"] = str(result.seeds[0])
            response.headers["X-Off-Palette"] = f"{req.off_palette:.6f}"
        else:
            timing["total_s"] = time.perf_counter() - start
            response = jsonify(state.service.answer(req, result, timing))
        response.headers["Server-Timing"] = server_timing
        return response

    return api


def _register_errors(app) -> None:
    """Every error answers JSON ``{"error": message}``; an unexpected one is logged and the server goes on."""
    from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc):
        limit = app.config["MAX_CONTENT_LENGTH"]
        return _error(f"body: the request is larger than the limit of {limit} bytes (SEG2SAT_MAX_BODY_MB)", 413)

    @app.errorhandler(HTTPException)
    def http_error(exc):
        return _error(f"{exc.name}: {exc.description}", exc.code or 500)

    @app.errorhandler(Exception)
    def failure(exc):
        log.exception("request failed")
        app.extensions["seg2sat"].count("failed")
        return _error(f"internal error ({type(exc).__name__}); the server keeps running", 500)


def make_server(app, host: str = "127.0.0.1", port: int = 8080, threads: int | None = None):
    """A waitress server for the app (a production WSGI server; Flask's own is for debugging).

    Enough threads for the running request, every queued one and a health check, so
    requests wait in the device queue (and get 503 when it is full) rather than in the
    socket. ``port=0`` picks a free port (``server.effective_port``).
    """
    from waitress import create_server

    state: ServerState = app.extensions["seg2sat"]
    return create_server(app, host=host, port=port, threads=threads or state.gate.max_waiting + 2,
                         max_request_body_size=state.service.config.max_body_bytes, ident="seg2sat")


def stop_server(server) -> None:
    """Stop a server from make_server that runs in another thread: requests in flight finish first."""
    server.task_dispatcher.shutdown(cancel_pending=False, timeout=30)
    server.close()
