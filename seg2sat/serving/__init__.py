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

from importlib import import_module

_HOME = {"RequestError": "..request", "Settings": "..settings", "ALIASES": ".protocol", "FIELDS": ".protocol",
         "PARAMETERS": ".protocol", "Payload": ".protocol", "parse_request": ".protocol", "split_payload": ".protocol",
         "wire_name": ".protocol", "create_app": ".server", "make_server": ".server", "stop_server": ".server",
         "NOT_REMOTE": ".service", "DeviceGate": "..engine", "QueueFull": "..engine", "Service": ".service",
         "repository_models": ".service"}
"""Where each name lives: imported on first use, so ``seg2sat --help`` and the UI's guard never load torch."""

__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_HOME[name], __name__), name)
