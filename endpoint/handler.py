"""Hugging Face Inference Endpoints handler for Seg2Sat (a "custom handler" endpoint).

The endpoint's toolkit (github.com/huggingface/huggingface-inference-toolkit) imports
this file from the repository it serves, builds one ``EndpointHandler(path=REPOSITORY_FOLDER)``
at start-up and calls it once per request with the decoded JSON body. All the protocol
work lives in :mod:`seg2sat.serving`, shared with ``seg2sat serve`` and the web UI, so
this stays a thin shell. Its configuration is :class:`seg2sat.settings.Settings`: the same
SEG2SAT_* variables as ``seg2sat serve`` (model, device, backend, fallback, limits).

How the toolkit answers, and what that asks of this handler:

* It serializes whatever the handler returns by the request's ``Accept`` header, which
  the handler never sees: ``application/json`` (or none, or ``*/*``) through orjson,
  ``image/png``, ``image/jpeg``… by ``isinstance(answer, PIL.Image.Image)`` and
  ``answer.save(buffer, format=…)``. So the handler returns an :class:`ImageAnswer`:
  a ``dict`` (the JSON answer, orjson writes dict subclasses as plain objects) that is
  also a ``PIL.Image.Image`` whose ``save`` writes the answer's image. JSON clients get
  ``{"images": [...], "seeds": [...], ...}``, ``Accept: image/png`` clients (Drawing2Map)
  get the PNG itself, whatever the payload's shape.
* Any exception the handler raises becomes HTTP 400 ``{"error": message}``. Every bad
  request raises ``ValueError`` (``seg2sat.request.RequestError``) while it is parsed,
  before any model work.

``seg2sat`` is imported from a ``seg2sat/`` folder beside this file when there is one
(the repository built by ``endpoint/build_repository.py``), else from the installed package.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import sys
from typing import Any

from PIL import Image

_HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.isdir(os.path.join(_HERE, "seg2sat")) and _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from seg2sat.options import spell  # noqa: E402
from seg2sat.serving import Service  # noqa: E402
from seg2sat.settings import Settings  # noqa: E402

log = logging.getLogger(__name__)


class ImageAnswer(dict, Image.Image):
    """The JSON answer (this dict) that the toolkit can also write as an image file.

    Only :meth:`save` and :attr:`image` are meaningful on the image side: ``save`` writes
    the answer's one image (the PNG bytes already in ``images[0]`` as they are, other
    formats re-encoded) and refuses an answer with several images, which only JSON can carry.
    """

    def __init__(self, body: dict[str, Any]):
        dict.__init__(self, body)
        Image.Image.__init__(self)

    def png(self) -> bytes:
        images = self.get("images") or []
        if len(images) != 1:
            raise ValueError(f"parameters.num_images: an image answer (Accept: image/…) holds one image, this one has "
                             f"{len(images)}; ask for JSON (Accept: application/json) to get several")
        return base64.b64decode(images[0])

    @property
    def image(self) -> Image.Image:
        """The answer's image, decoded."""
        with Image.open(io.BytesIO(self.png())) as image:
            return image.convert("RGB")

    def save(self, fp, format: str | None = None, **params) -> None:
        if format is None and isinstance(fp, (str, os.PathLike)):
            format = Image.registered_extensions().get(os.path.splitext(os.fspath(fp))[1].lower())  # as PIL does
        fmt = (format or "PNG").upper()
        if fmt == "PNG" and not params:
            if isinstance(fp, (str, os.PathLike)):
                with open(fp, "wb") as out:
                    out.write(self.png())
            else:
                fp.write(self.png())
            return
        image = self.image
        if fmt in ("JPEG", "JPG", "BMP") or image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        image.save(fp, format="JPEG" if fmt == "JPG" else fmt, **params)


class EndpointHandler:
    """Loads the pipeline once; each call serves one request or raises ValueError naming the bad field."""

    def __init__(self, path: str = ""):
        # A full pipeline folder or a ControlNet folder at `path` wins; else SEG2SAT_MODEL /
        # SEG2SAT_CONTROLNET; else the default hub ids. Device: CUDA when present, else CPU;
        # dtype bf16/fp16 on GPUs (seg2sat.pipelines.pick_dtype), on any diffusers version.
        # Without weights (and SEG2SAT_FALLBACK not false) the procedural renderer answers, saying so.
        self.service = Service(Settings.from_env(), repository=path or None)
        if self.service.settings.backend == "diffusion":
            self.service.pipeline  # noqa: B018 - load at start-up, not on the first request
            if self.service.note:
                log.warning("%s", spell(self.service.note, "server"))

    def __call__(self, data: dict[str, Any]) -> ImageAnswer:
        return ImageAnswer(self.service(data))
