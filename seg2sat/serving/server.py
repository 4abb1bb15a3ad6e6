"""The local server (``seg2sat serve``): the routes of Inference Endpoints over a :class:`Service`.

``GET /health``, ``POST /`` and ``POST /predict``, served by waitress. Flask and waitress
are imported inside the functions only: the endpoint image, which runs the handler under
Hugging Face's own server, has neither.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from ..engine import QueueFull
from ..options import spell
from ..pipelines import WeightsNotFoundError
from ..request import NUMERIC_FIELDS, RequestError
from ..settings import Settings
from ..wire import MAGIC, png_bytes
from .connections import make_waitress
from .guard import SIMPLE_TYPES, Policy, Refused, install, read_json, split_list
from .protocol import FIELDS, SHAPE, wire_name
from .service import Service

log = logging.getLogger(__name__)

WIRE_SETTINGS = {wire: core for wire, core in FIELDS.items() if core in NUMERIC_FIELDS}
"""The numeric parameters under their wire names, with their defaults and ranges in /health."""


@dataclass
class ServerState:
    """What the routes share: the service (model), the device gate and counters for /health."""

    service: Service
    handled: dict = field(default_factory=lambda: {"ok": 0, "bad_request": 0, "busy": 0, "failed": 0})
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, outcome: str) -> None:
        with self.lock:
            self.handled[outcome] += 1

    @property
    def gate(self):
        """The engine's device queue, which every request goes through."""
        return self.service.engine.gate

    def health(self) -> dict:
        """Queue, limits (the settings' and every parameter's range and default), model and counters."""
        settings = self.service.settings
        return {"status": "ok", "busy": self.gate.busy, "waiting": self.gate.waiting,
                "queue_size": self.gate.max_waiting, "handled": dict(self.handled),
                "backend": settings.backend, "model_loaded": self.service.loaded,
                "fallback": spell(self.service.note, "server") or None,
                "limits": {"max_pixels": settings.max_pixels, "min_side": settings.min_side,
                           "max_body_bytes": settings.max_body_bytes,
                           **{wire: [NUMERIC_FIELDS[core].low, NUMERIC_FIELDS[core].high]
                              for wire, core in WIRE_SETTINGS.items()}},
                "defaults": {wire: NUMERIC_FIELDS[core].default for wire, core in WIRE_SETTINGS.items()}}


def create_app(settings: Settings | None = None, service: Service | None = None):
    """Flask app factory for the local server: the routes and protocol of Inference Endpoints.

    The settings come from the SEG2SAT_* environment variables unless given (or the
    service's); pass ``service`` to share a model that is already loaded.
    """
    from flask import Flask


    if settings is None:
        settings = service.settings if service is not None else Settings.from_env()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["seg2sat"] = ServerState(service or Service(settings))
    app.register_blueprint(_blueprint())
    install(app, Policy(hosts=split_list(settings.allowed_hosts), origins=split_list(settings.allowed_origins)))
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


def _body(request):
    """The JSON body (application/json only, depth-limited), or a bare image as ``inputs``.

    InferenceClient.image_to_image with no parameters posts the bare image: it is taken as
    inputs, so the answer says what is missing (parameters.prompt) rather than "not JSON".
    A form or text/plain body is refused: those are what any web page can send cross-site.
    """

    if request.is_json:
        return read_json(request)
    raw = request.get_data(cache=True)
    if raw.startswith(MAGIC) and request.mimetype not in SIMPLE_TYPES:
        return {"inputs": raw}
    raise Refused(415, f"body: send JSON like {SHAPE} with Content-Type: application/json "
                       f"(got {request.mimetype or 'no Content-Type'})")


def _blueprint():
    from flask import Blueprint, Response, jsonify, request

    api = Blueprint("seg2sat_api", __name__)

    @api.get("/health")
    def health():
        return jsonify(_state().health())

    @api.post("/")
    @api.post("/predict")
    def predict():
        start = time.perf_counter()
        state = _state()
        try:
            data = _body(request)
        except Exception:
            state.count("bad_request")
            raise
        want_png = request.accept_mimetypes.best_match(["application/json", "image/png"]) == "image/png"
        try:
            req = state.service.parse(data)
            if want_png and req.num_images != 1:
                raise RequestError(wire_name(req, "num_images"), "Accept: image/png returns one image; ask for JSON "
                                   "to get several")
            result = state.service.run(req)
        except QueueFull as exc:
            state.count("busy")
            return _error(str(exc), 503, Retry_After=exc.retry_after)
        except WeightsNotFoundError as exc:
            state.count("failed")
            return _error(f"the model is not available: {spell(str(exc), 'server')}", 503)
        except ValueError as exc:
            state.count("bad_request")
            return _error(str(exc), 400)
        timing = {"parse_s": req.extra["parse_s"], **result.timing}
        state.count("ok")
        server_timing = ", ".join(f"{k[:-2]};dur={v * 1000:.1f}" for k, v in timing.items())
        if want_png:
            response = Response(png_bytes(result.images[0]), mimetype="image/png")
            response.headers["X-Seed"] = str(result.seeds[0])
            response.headers["X-Off-Palette"] = f"{req.off_palette:.6f}"
            response.headers["X-Backend"] = result.backend
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

    @app.errorhandler(Refused)
    def refused(exc):
        return _error(exc.description, exc.code)

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
    socket; connection limits and deadlines hold against slow clients (:mod:`.connections`).
    ``port=0`` picks a free port (``server.effective_port``). ``host`` is also a Host the
    server answers (:mod:`.guard`).
    """

    state: ServerState = app.extensions["seg2sat"]
    app.extensions["seg2sat_policy"].bind(host)
    return make_waitress(app, host, port, threads or state.gate.max_waiting + 2, state.service.settings.max_body_bytes)


def stop_server(server) -> None:
    """Stop a server from make_server that runs in another thread: requests in flight finish first."""
    server.task_dispatcher.shutdown(cancel_pending=False, timeout=30)
    server.close()
