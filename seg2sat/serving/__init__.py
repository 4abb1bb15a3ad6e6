"""Serving Seg2Sat over HTTP: one protocol, a thin translator over the core.

The Hugging Face Inference Endpoints handler (``endpoint/handler.py``), the local server
(``seg2sat serve``) and the web UI's remote backend all speak ``{"inputs": PROMPT,
"parameters": {...}}`` and answer ``{"images": [base64 PNG, ...], "seeds": [...], ...}``
(or the PNG itself to ``Accept: image/png``); Hugging Face's task payloads and the
original flat payload (Drawing2Map's) are understood too. Every body becomes one
:class:`~seg2sat.request.Request`, checked completely before any model work, so the CLI,
the web UI and the endpoint accept and refuse exactly the same things.

* :mod:`.protocol`: the wire shapes, the alias table, a body -> ``Request.build``.
* :mod:`.service`: :class:`Service` (parse, run, answer; the model or its fallback) and
  the device queue.
* :mod:`.server`: the Flask app (``GET /health``, ``POST /``, ``POST /predict``) and waitress.
* :mod:`.guard`: what a web page may ask of a local server (Host, Origin, JSON bodies, CORS); the
  web UI uses it too.
* :mod:`.connections`: waitress for both servers, with limits slow clients cannot exhaust.

Configuration is :class:`seg2sat.settings.Settings` (the SEG2SAT_* variables).
"""

from ..request import RequestError
from ..settings import Settings
from .protocol import ALIASES, FIELDS, PARAMETERS, Payload, parse_request, split_payload, wire_name
from .server import create_app, make_server, stop_server
from .service import NOT_REMOTE, DeviceGate, QueueFull, Service, repository_models

__all__ = ["ALIASES", "FIELDS", "NOT_REMOTE", "PARAMETERS", "DeviceGate", "Payload", "QueueFull", "RequestError",
           "Service", "Settings", "create_app", "make_server", "parse_request", "repository_models", "split_payload",
           "stop_server", "wire_name"]
