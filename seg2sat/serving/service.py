"""The service behind every front end of the protocol: parse, run on the device (one at a time), answer.

The Inference Endpoints handler and the local server each wrap one :class:`Service`. The model
is loaded once, through :func:`seg2sat.generation.pipeline_or_fallback`: with
``Settings.fallback`` and no weights, diffusion requests are rendered by the procedural
renderer instead, and the answer says so (``"backend": "procedural"`` and a warning).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .. import generation
from ..codec import encode_png
from ..pipelines import is_controlnet_folder, is_full_pipeline
from ..request import Request, RequestError, Result
from ..settings import QueueFull, Settings
from .protocol import parse_request, wire_name

NOT_REMOTE = "serve runs the model itself; remote is a web UI backend"
"""Why the remote backend is refused here: the server is what a remote backend talks to."""


def repository_models(path: str | os.PathLike | None, settings: Settings) -> tuple[str | None, str | None]:
    """(model, controlnet) for an endpoint repository folder.

    A full pipeline folder (``model_index.json`` with a ControlNet) is the model; a ControlNet folder
    (``config.json`` of a ``ControlNetModel``) goes on the base model of the settings (default SD 2.1
    base); anything else leaves the settings, then the default hub ids.
    """
    model, controlnet = settings.model, settings.controlnet
    if path and os.path.isdir(path):
        if is_full_pipeline(path):
            model = str(path)
        elif is_controlnet_folder(path):
            controlnet = str(path)
    return model, controlnet


class Service:
    """Parses, runs and answers requests; the endpoint handler and the local server wrap one."""

    def __init__(self, settings: Settings | None = None, pipeline=None, repository: str | os.PathLike | None = None):
        self.settings = settings or Settings.from_env()
        if self.settings.backend == "remote":
            raise ValueError(f"backend remote (SEG2SAT_BACKEND, --backend): {NOT_REMOTE}; use diffusion or procedural")
        self.repository = repository
        self.note = ""
        """Why the procedural renderer stands in for the model, once it does (empty while the model serves)."""
        self._pipeline = pipeline
        self._load_lock = threading.Lock()
        self._device_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the diffusion pipeline is in memory."""
        return self._pipeline is not None

    @property
    def pipeline(self):
        """The diffusion pipeline, loaded on first use; None when the renderer stands in (see :attr:`note`).

        Without ``Settings.fallback`` missing weights raise WeightsNotFoundError (the server answers 503).
        """
        with self._load_lock:
            if self._pipeline is None and not self.note:
                model, controlnet = repository_models(self.repository, self.settings)
                self._pipeline, self.note = self.settings.pipeline(model, controlnet)
            return self._pipeline

    def parse(self, data: Any) -> Request:
        """One body as a checked request, before any model work; RequestError (a ValueError) names the field."""
        req = parse_request(data, self.settings.limits, self.settings.backend)
        if req.backend == "remote":
            raise RequestError(wire_name(req, "backend"), f"must be diffusion or procedural: {NOT_REMOTE}")
        return req

    def run(self, req: Request) -> Result:
        """Model work for a checked request: the pipeline, or the renderer when asked for or standing in."""
        pipe = None
        if req.backend == "diffusion":
            pipe = self.pipeline
            if pipe is None:
                req.backend = "procedural"
                req.extra.setdefault("warnings", []).append(self.note)
        return generation.run(req, pipe)

    def answer(self, req: Request, result: Result, timing: dict) -> dict:
        """The JSON response: images and their seeds, what the model saw, and where the time went."""
        images = [encode_png(im) for im in result.images]
        body = {"images": images, "seeds": result.seeds, "prompt": result.prompt, "mode": req.mode,
                "backend": req.backend, "width": req.size[0], "height": req.size[1],
                "off_palette": round(req.off_palette, 6), "timing": {k: round(v, 4) for k, v in timing.items()}}
        warnings = list(req.extra.get("warnings", []))
        if req.off_palette:
            warnings.append(f"{req.off_palette:.1%} of the mask pixels were off-palette and snapped to the nearest "
                            "class colour")
        if warnings:
            body["warnings"] = warnings
        if req.extra.get("legacy"):
            body["image"] = images[0]  # what the original handler's clients read
        return body

    def __call__(self, data: Any) -> dict:
        """One request, start to answer. Callers on several threads (the endpoint toolkit may
        call a handler concurrently) take turns on the device; parsing needs no turn."""
        req = self.parse(data)
        with self._device_lock:
            start = time.perf_counter()
            result = self.run(req)
        return self.answer(req, result, {"parse_s": req.extra["parse_s"], "generate_s": time.perf_counter() - start})


# --------------------------------------------------------------------------- one at a time


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
                wait = max(1, round(queued * self._average_s))
                raise QueueFull(f"the server is busy; retry in {wait} s", retry_after=wait)
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
