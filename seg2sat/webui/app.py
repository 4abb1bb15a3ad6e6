"""The web UI's Flask app factory: settings resolved once, the worker, the store, the blueprints and the guard."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from ..serving.guard import Policy, Refused, install, split_list
from . import api, pages, preview  # noqa: F401 - preview adds its route to the API blueprint
from .backends import make_backend
from .config import default_samples_dir, resolve
from .jobs import Worker
from .places import OSMSettings, PlaceMaker
from .store import ImageStore


def create_app(config: dict | None = None) -> Flask:
    """The UI app: defaults, then the environment, then ``config`` (see :mod:`.config`)."""
    settings, values = resolve(config)
    app = Flask(__name__)
    app.config.update(values, MAX_CONTENT_LENGTH=settings.max_body_bytes)

    store = ImageStore(int(app.config["STORE_SIZE"]), int(float(app.config["STORE_MB"]) * 2**20))
    worker = Worker(make_backend(settings), store, settings.queue_size)
    samples = app.config["SAMPLES_DIR"]
    places = PlaceMaker(OSMSettings.from_config(app.config))
    app.extensions["seg2sat_ui"] = api.UIState(worker, store, settings, Path(samples) if samples else default_samples_dir(),
                                               places)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    install(app, Policy(bound=str(app.config["HOST"]), hosts=split_list(settings.allowed_hosts)))
    app.register_error_handler(HTTPException, _http_error)
    app.after_request(_page_headers)
    worker.start(warmup=bool(app.config["WARMUP"]))
    return app


PAGE_POLICY = "frame-ancestors 'none'; connect-src 'self' data: blob:; object-src 'none'; base-uri 'none'"
"""The page's Content-Security-Policy: no framing by other sites (clickjacking: a hidden frame drawing and
generating for them), and the page itself reaches nothing but this server."""


def _page_headers(response):
    """Every answer: no framing, no content sniffing, the page's CSP."""
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
    return response


def _http_error(exc: HTTPException):
    """API callers get JSON errors (413 too large, 404, 405); the page's own URLs keep Flask's pages."""
    if not request.path.startswith("/api/"):
        return exc
    message = exc.description or exc.name
    if exc.code == 413 and not isinstance(exc, Refused):
        message = "the request is too large; send a smaller mask or image"
    return jsonify({"error": message}), exc.code

