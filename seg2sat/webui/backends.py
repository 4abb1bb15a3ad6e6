"""Where images come from: the pipeline in this process, a remote endpoint, or the offline renderer.

A backend turns a validated :class:`Task` into images. New backends register a
factory in ``BACKENDS``; the UI, the CLI's ``--backend`` and ``/api/health`` list
whatever is there.
"""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np
from PIL import Image

from .. import masks
from .config import endpoint_token

if TYPE_CHECKING:
    from ..generation import StepCallback


class BackendError(RuntimeError):
    """A failure the user must read: missing weights, an unreachable endpoint, a refused request."""


@dataclass
class Task:
    """One validated generation request, as the worker runs it."""

    mode: str
    """"generate", "inpaint" or "outpaint"."""
    ids: np.ndarray
    prompt: str
    """The caption (address and classes), without the style preset."""
    settings: dict
    """generation.check_settings() output plus negative_prompt and style."""
    image: Image.Image | None = None
    region: np.ndarray | None = None
    at: tuple[int, int] | None = None

    @property
    def total_steps(self) -> int:
        return self.settings["steps"] * self.settings["num_images"]

    def core_kwargs(self) -> dict:
        """Keyword arguments of seg2sat.generation.generate/inpaint/outpaint."""
        s = self.settings
        return dict(seed=list(s["seeds"]), num_images=s["num_images"], steps=s["steps"],
                    guidance_scale=s["guidance_scale"], controlnet_scale=s["controlnet_scale"],
                    negative_prompt=s.get("negative_prompt"), style=s.get("style"))


@dataclass
class Output:
    images: list[Image.Image]
    seeds: list[int]
    prompt: str


class Backend(Protocol):
    name: str

    def load(self) -> None:
        """Get ready (load weights, check settings); raise with a sentence saying what is missing."""

    def run(self, task: Task, on_step: StepCallback) -> Output:
        """Make the images; call ``on_step(k, N)`` as work progresses."""


class LocalBackend:
    """The Seg2Sat pipeline in this process (seg2sat.pipelines.load_pipeline, cached)."""

    name = "local"

    def __init__(self, config: dict):
        self.model, self.controlnet, self.device = config.get("MODEL"), config.get("CONTROLNET"), config.get("DEVICE")
        self.fallback_allowed = bool(config.get("FALLBACK", True))
        self.pipe = None
        self.fallback: ProceduralBackend | None = None
        self.note = ""
        """Said on the page when the backend runs, but not as asked (the fallback)."""

    def load(self) -> None:
        """Load the pipeline; with no weights, use the offline renderer instead (unless FALLBACK is off)."""
        from ..pipelines import WeightsNotFoundError, load_pipeline

        try:
            self.pipe = load_pipeline(self.model, self.controlnet, device=self.device)
        except WeightsNotFoundError as exc:
            if not self.fallback_allowed:
                raise
            self.fallback = ProceduralBackend({})
            self.fallback.load()
            self.note = f"{exc} Using the procedural renderer instead (--no-fallback turns this off)."

    def run(self, task: Task, on_step: StepCallback) -> Output:
        from .. import generation

        if self.pipe is None and self.fallback is None:
            self.load()
        if self.fallback is not None:
            return self.fallback.run(task, on_step)
        kwargs = dict(task.core_kwargs(), pipeline=self.pipe, on_step=on_step)
        if task.mode == "generate":
            result = generation.generate(task.ids, task.prompt, **kwargs)
        elif task.mode == "inpaint":
            result = generation.inpaint(task.image, task.ids, task.region, task.prompt, **kwargs)
        else:
            result = generation.outpaint(task.image, task.ids, task.at, task.prompt, **kwargs)
        return Output(result.images, result.seeds, result.prompt)


def _b64_png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class RemoteBackend:
    """An inference endpoint speaking the Seg2Sat protocol (seg2sat.serving, endpoint/README.md).

    The token comes from the environment variable named by ``ENDPOINT_TOKEN_ENV``
    (default ``SEG2SAT_ENDPOINT_TOKEN``, then ``HF_TOKEN``), read at each call.
    Endpoints report no per-step progress, so the job shows 0 of N until the answer.
    """

    name = "remote"

    def __init__(self, config: dict):
        self.config = config
        self.url = config.get("ENDPOINT_URL")
        self.timeout = float(config.get("ENDPOINT_TIMEOUT") or 600)

    def load(self) -> None:
        if not self.url or not str(self.url).startswith(("http://", "https://")):
            raise BackendError("The remote backend needs an endpoint URL: pass --endpoint-url "
                               "https://… (or set SEG2SAT_ENDPOINT_URL) and put its token in SEG2SAT_ENDPOINT_TOKEN.")

    def payload(self, task: Task) -> dict:
        s = task.settings
        params = {"image": _b64_png(masks.to_image(task.ids)), "seed": list(s["seeds"]), "num_images": s["num_images"],
                  "steps": s["steps"], "guidance_scale": s["guidance_scale"],
                  "controlnet_conditioning_scale": s["controlnet_scale"], "mode": task.mode}
        for key in ("negative_prompt", "style"):
            if s.get(key):
                params[key] = s[key]
        if task.image is not None:
            params["init_image"] = _b64_png(task.image)
        if task.region is not None:
            params["region"] = _b64_png(Image.fromarray((task.region * 255).astype(np.uint8)))
        if task.at is not None:
            params["at"] = list(task.at)
        return {"inputs": task.prompt, "parameters": params}

    def run(self, task: Task, on_step: StepCallback) -> Output:
        self.load()
        on_step(0, task.total_steps)
        answer = self._post(self.payload(task))
        try:
            images = [Image.open(io.BytesIO(base64.b64decode(b))).convert("RGB") for b in answer["images"]]
        except (KeyError, TypeError, ValueError, OSError) as exc:
            raise BackendError(f"The endpoint answered without readable images ({exc}).") from exc
        on_step(task.total_steps, task.total_steps)
        seeds = answer.get("seeds") or task.settings["seeds"]
        return Output(images, [int(s) for s in seeds], answer.get("prompt") or task.prompt)

    def _post(self, payload: dict) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        token = endpoint_token(self.config)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.url, json.dumps(payload).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise BackendError(f"The endpoint refused the request (HTTP {exc.code}): {_error_text(exc)}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise BackendError(f"Cannot reach the endpoint {self.url}: {getattr(exc, 'reason', exc)}") from exc
        except json.JSONDecodeError as exc:
            raise BackendError(f"The endpoint {self.url} did not answer JSON.") from exc


def _error_text(exc: urllib.error.HTTPError) -> str:
    body = exc.read().decode("utf-8", "replace")
    try:
        return str(json.loads(body).get("error") or body)
    except (ValueError, AttributeError):
        return body[:300] or exc.reason


class ProceduralBackend:
    """The offline renderer (seg2sat.render): no weights, instant, for demos and layout checks."""

    name = "procedural"

    def __init__(self, config: dict):
        self.render = None

    def load(self) -> None:
        try:
            from ..render import render
        except ImportError as exc:
            raise BackendError("The procedural backend needs seg2sat.render, which this installation "
                               "does not have; use --backend local or remote.") from exc
        self.render = render

    def run(self, task: Task, on_step: StepCallback) -> Output:
        if self.render is None:
            self.load()
        seeds, images = task.settings["seeds"], []
        for n, seed in enumerate(seeds):
            rendered = np.asarray(self.render(task.ids, seed=seed).convert("RGB"))
            images.append(Image.fromarray(_keep_outside(rendered, task)))
            on_step(n + 1, len(seeds))
        return Output(images, list(seeds), task.prompt)


def _keep_outside(rendered: np.ndarray, task: Task) -> np.ndarray:
    """Inpaint and outpaint keep every pixel outside the redone part, as the model backends do."""
    if task.mode == "inpaint":
        return np.where(task.region[..., None], rendered, np.asarray(task.image))
    if task.mode == "outpaint":
        out = rendered.copy()
        x, y = task.at
        w, h = task.image.size
        out[y : y + h, x : x + w] = np.asarray(task.image)
        return out
    return rendered


BACKENDS: dict[str, Callable[[dict], Backend]] = {
    "local": LocalBackend,
    "remote": RemoteBackend,
    "procedural": ProceduralBackend,
}
"""Backend name -> factory taking the app config."""


def make_backend(config: dict) -> Backend:
    name = str(config.get("BACKEND") or "local").lower()
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    return BACKENDS[name](config)
