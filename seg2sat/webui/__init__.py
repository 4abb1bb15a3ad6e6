"""Drawing2Map: the Seg2Sat web UI (Flask app factory, JSON API, one page with a canvas editor).

``create_app(config)`` builds the app from :data:`config.DEFAULTS`, then ``SEG2SAT_*``
environment variables, then ``config``. The page and its JavaScript are plain files
in ``templates/`` and ``static/``: nothing to build.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from .config import DEFAULTS, ENV_PREFIX, default_samples_dir


def create_app(config: dict | None = None) -> Flask:
    from . import api, pages
    from .backends import make_backend
    from .jobs import Worker
    from .store import ImageStore

    app = Flask(__name__)
    app.config.update(DEFAULTS)
    app.config.from_prefixed_env(ENV_PREFIX)
    app.config.update(config or {})
    app.config["MAX_CONTENT_LENGTH"] = int(float(app.config["MAX_UPLOAD_MB"]) * 1024 * 1024)

    backend = make_backend(app.config)
    store = ImageStore(int(app.config["STORE_SIZE"]))
    worker = Worker(backend, store, _device_key(app.config), int(app.config["QUEUE_SIZE"]))
    samples = app.config["SAMPLES_DIR"]
    app.extensions["seg2sat_ui"] = api.UIState(worker, store, backend.name, Path(samples) if samples else default_samples_dir())
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_error_handler(HTTPException, _http_error)
    worker.start(warmup=bool(app.config["WARMUP"]))
    return app


def _device_key(config) -> str:
    """Jobs that share a device share a lock: the local backend's device, or the remote URL."""
    if str(config["BACKEND"]).lower() == "local":
        from ..pipelines import pick_device

        return config["DEVICE"] or pick_device()
    return f"{config['BACKEND']}:{config.get('ENDPOINT_URL')}"


def _http_error(exc: HTTPException):
    """API callers get JSON errors (413 too large, 404, 405); the page's own URLs keep Flask's pages."""
    if not request.path.startswith("/api/"):
        return exc
    message = exc.description or exc.name
    if exc.code == 413:
        message = "the request is too large; send a smaller mask or image"
    return jsonify({"error": message}), exc.code


__all__ = ["create_app"]
