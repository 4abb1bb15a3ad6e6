"""Where images come from: this process (the diffusion pipeline or the offline renderer), or a remote endpoint.

A backend turns a checked :class:`~seg2sat.request.Request` into a
:class:`~seg2sat.request.Result`. The names are :data:`seg2sat.request.BACKENDS`
(``local`` is still accepted for ``diffusion``, see :mod:`seg2sat.settings`).
"""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PIL import Image

from .. import masks
from ..request import Request, Result
from ..wire import encode_png

if TYPE_CHECKING:
    from ..generation import StepCallback
    from ..settings import Settings


class BackendError(RuntimeError):
    """A failure the user must read: missing weights, an unreachable endpoint, a refused request."""


class Backend(Protocol):
    name: str
    note: str
    """Said on the page when the backend runs, but not as asked (the fallback)."""

    def load(self) -> None:
        """Get ready (load weights, check settings); raise with a sentence saying what is missing."""

    def run(self, req: Request, on_step: StepCallback) -> Result:
        """Make the images; call ``on_step(k, N)`` as work progresses."""


class LocalBackend:
    """This process: the :class:`~seg2sat.engine.Engine` (the model, or the renderer standing in, and its device queue)."""

    def __init__(self, settings: Settings):
        from ..engine import Engine

        self.name, self.engine = settings.backend, Engine(settings)

    @property
    def note(self) -> str:
        return self.engine.note

    def load(self) -> None:
        if self.name == "diffusion":  # a renderer-only UI loads no model (a request may still ask for it)
            self.engine.load()

    def run(self, req: Request, on_step: StepCallback) -> Result:
        return self.engine.run(req, on_step)


class RemoteBackend:
    """An inference endpoint speaking the Seg2Sat protocol (``seg2sat serve``, endpoint/README.md).

    The token comes from the environment variable named by ENDPOINT_TOKEN_ENV (default
    ``SEG2SAT_ENDPOINT_TOKEN``, then ``HF_TOKEN``), stripped and checked once when the
    backend loads (at start), and never appears in an error: any message that would carry
    it is redacted. Endpoints report no per-step progress, so the job shows 0 of N until the answer.
    """

    name = "remote"
    note = ""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.url = settings.endpoint_url
        self._token: str | None = None
        self._loaded = False

    def load(self) -> None:
        if not self.url or not str(self.url).startswith(("http://", "https://")):
            raise BackendError("The remote backend needs an endpoint URL: set `endpoint_url` to https://… "
                               "and put its token in SEG2SAT_ENDPOINT_TOKEN.")
        if not self._loaded:
            try:
                self._token = self.settings.endpoint_token()
            except ValueError as exc:
                raise BackendError(f"The endpoint token cannot be used: {exc}.") from None
            self._loaded = True

    def redact(self, text: str) -> str:
        """``text`` with the token (and its escaped forms) replaced: what an error may say."""
        if self._token:
            for form in {self._token, repr(self._token)[1:-1], self._token.encode().hex()}:
                text = text.replace(form, "[token]")
        return text

    @staticmethod
    def payload(req: Request) -> dict:
        """The endpoint's body: ``image`` is the mask, ``init_image`` the aerial image to inpaint or outpaint."""
        params = {"image": encode_png(masks.to_image(req.ids)), "mode": req.mode, "seed": list(req.seeds),
                  "num_images": req.num_images, "steps": req.steps, "guidance_scale": req.guidance_scale,
                  "controlnet_conditioning_scale": req.controlnet_scale}
        if req.negative_prompt:
            params["negative_prompt"] = req.negative_prompt
        if req.style:
            params["style"] = req.style
        if req.image is not None:
            params["init_image"] = encode_png(req.image)
        if req.region is not None:
            params["region"] = encode_png(Image.fromarray(req.region.astype(np.uint8) * 255))
        if req.at is not None:
            params["at"] = list(req.at)
        return {"inputs": req.prompt, "parameters": params}

    def run(self, req: Request, on_step: StepCallback) -> Result:
        self.load()
        total = req.steps * req.num_images
        on_step(0, total)
        try:
            answer = self._post(self.payload(req))
        except Exception as exc:  # whatever failed, its message may quote the request: no token leaves here
            raise BackendError(self.redact(str(exc))) from None
        try:
            images = [Image.open(io.BytesIO(base64.b64decode(b))).convert("RGB") for b in answer["images"]]
        except (KeyError, TypeError, ValueError, OSError) as exc:
            raise BackendError(f"The endpoint answered without readable images ({exc}).") from exc
        on_step(total, total)
        seeds = answer.get("seeds") or req.seeds
        return Result(images, [int(s) for s in seeds], answer.get("prompt") or req.full_prompt, req.off_palette,
                      backend="remote")

    def _post(self, payload: dict) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(self.url, json.dumps(payload).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.settings.endpoint_timeout) as response:
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


FACTORIES: dict[str, Callable[[Settings], Backend]] = {
    "diffusion": LocalBackend,
    "procedural": LocalBackend,
    "remote": RemoteBackend,
}
"""Backend name (:data:`seg2sat.request.BACKENDS`) -> factory taking the shared settings."""


def make_backend(settings: Settings) -> Backend:
    return FACTORIES[settings.backend](settings)
