"""The protocol's translator over the engine: a body -> a checked Request -> :class:`~seg2sat.engine.Engine` -> JSON.

The Inference Endpoints handler and the local server each wrap one :class:`Service`. Loading,
the fallback to the renderer (the answer then says ``"backend": "procedural"`` with the
reason in ``warnings``) and the device queue are the engine's.
"""

from __future__ import annotations

import os
from typing import Any

from ..engine import Engine
from ..options import spell
from ..pipelines import is_controlnet_folder, is_full_pipeline
from ..request import Request, RequestError, Result
from ..settings import Settings
from ..wire import encode_png
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
    """Parses, runs and answers requests over an :class:`~seg2sat.engine.Engine`; the endpoint handler and the
    local server wrap one."""

    def __init__(self, settings: Settings | None = None, pipeline=None, repository: str | os.PathLike | None = None,
                 engine: Engine | None = None):
        self.settings = settings or (engine.settings if engine else Settings.from_env())
        if self.settings.backend == "remote":
            raise ValueError(f"`backend` remote: {NOT_REMOTE}; use diffusion or procedural")
        self.repository = repository
        model, controlnet = repository_models(repository, self.settings)
        self.engine = engine or Engine(self.settings, pipeline=pipeline, model=model, controlnet=controlnet)

    @property
    def loaded(self) -> bool:
        """Whether the diffusion pipeline is in memory."""
        return self.engine.loaded

    @property
    def note(self) -> str:
        """Why the procedural renderer stands in for the model, once it does (empty while the model serves)."""
        return self.engine.note

    @property
    def pipeline(self):
        """The diffusion pipeline, loaded on first use; None when the renderer stands in (see :attr:`note`).

        Without ``Settings.fallback`` missing weights raise WeightsNotFoundError (the server answers 503).
        """
        return self.engine.pipeline

    def parse(self, data: Any) -> Request:
        """One body as a checked request, before any model work; RequestError (a ValueError) names the field."""
        req = parse_request(data, self.settings.limits, self.settings.backend)
        if req.backend == "remote":
            raise RequestError(wire_name(req, "backend"), f"must be diffusion or procedural: {NOT_REMOTE}")
        return req

    def run(self, req: Request) -> Result:
        """Model work for a checked request, after its turn on the device (QueueFull when too many wait)."""
        return self.engine.run(req)

    def answer(self, req: Request, result: Result, timing: dict) -> dict:
        """The JSON response: images and their seeds, what the model saw, and where the time went."""
        images = [encode_png(im) for im in result.images]
        body = {"images": images, "seeds": result.seeds, "prompt": result.prompt, "mode": req.mode,
                "backend": result.backend, "width": req.size[0], "height": req.size[1],
                "off_palette": round(req.off_palette, 6), "timing": {k: round(v, 4) for k, v in timing.items()}}
        warnings = [spell(text, "server") for text in result.warnings]
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
        result = self.run(req)
        return self.answer(req, result, {"parse_s": req.extra["parse_s"], **result.timing})
