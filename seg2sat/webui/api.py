"""The JSON API the page talks to (``/api/…``); every refusal is a 4xx with ``{"error": sentence}``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, request

from .. import masks
from ..classes import CLASSES
from ..prompts import MIN_SHARE, STYLES, build_prompt, caption_from_shares
from ..render import HALO
from ..request import BACKENDS, FAST, NUMERIC_FIELDS, ImageLimits
from ..serving.guard import read_json
from ..settings import Settings
from ..wire import decode_image
from .backends import BackendError
from .jobs import QueueFull, Worker
from .payloads import IMPORT_MAX_PIXELS, body_object, class_counts, import_summary, mask_summary, parse_request
from .places import PLACE_DEFAULTS, PlaceMaker, ServiceUnavailable, parse_place, place_answer
from .store import ImageStore

bp = Blueprint("api", __name__, url_prefix="/api")

_SAMPLE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass
class UIState:
    """What the blueprint needs, kept on ``app.extensions["seg2sat_ui"]``."""

    worker: Worker
    store: ImageStore
    settings: Settings
    samples_dir: Path | None
    places: PlaceMaker


def _state() -> UIState:
    return current_app.extensions["seg2sat_ui"]


def error(message: str, status: int = 400):
    return jsonify({"error": message}), status


@bp.errorhandler(ValueError)
def _bad_value(exc: ValueError):
    return error(str(exc), 400)


@bp.get("/health")
def health():
    worker = _state().worker
    return jsonify({"status": worker.state, "message": worker.message, "backend": _state().settings.backend,
                    "backends": list(BACKENDS), "queued": worker.waiting(), "queue_size": worker.queue_size})


@bp.get("/classes")
def classes():
    return jsonify([{"id": c.id, "name": c.name, "colour": c.colour} for c in CLASSES])


@bp.get("/options")
def options():
    """The core's settings (default, range, label), style presets and image limits: the page hard-codes none."""
    limits = _state().settings.limits
    return jsonify({"settings": {name: {"default": s.default, "low": s.low, "high": s.high, "label": s.label,
                                        "integer": s.cast is int} for name, s in NUMERIC_FIELDS.items()},
                    "styles": [{"name": k, "text": v} for k, v in STYLES.items()],
                    "max_pixels": limits.max_pixels, "min_side": limits.min_side, "fast": FAST,
                    "min_share": MIN_SHARE, "halo": HALO, "place": PLACE_DEFAULTS})


def _samples() -> dict[str, Path]:
    folder = _state().samples_dir
    if folder is None or not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir())
            if p.suffix.lower() in (".png", ".jpg", ".jpeg") and _SAMPLE_NAME.match(p.stem)}


@bp.get("/samples")
def samples():
    return jsonify([{"name": name} for name in _samples()])


@bp.get("/samples/<name>")
def sample(name: str):
    path = _samples().get(name)
    if path is None:
        return error(f"no sample mask named {name!r}", 404)
    loaded = masks.load_mask(path)
    return jsonify(dict(mask_summary(loaded.ids, loaded.off_palette), name=name))


@bp.post("/masks/import")
def import_mask():
    """An uploaded PNG/JPEG (form field ``file`` or JSON ``image``) snapped to class colours; one outside the
    size rule comes back scaled to fit, with ``source`` (its own size), for the page to offer."""
    limits = _state().settings.limits
    reading = ImageLimits(max(IMPORT_MAX_PIXELS, limits.max_pixels or 0), 1)  # big files are offered a resize
    if request.mimetype == "multipart/form-data":  # the guard has checked it comes from our page
        if "file" not in request.files:
            return error("file: send the image as the form field 'file'")
        image = decode_image(request.files["file"].read(), "file", reading)
    else:
        image = decode_image(body_object(read_json(request)).get("image"), "image", reading)
    return jsonify(import_summary(image, limits))


@bp.post("/place")
def place():
    """``{"place": "31 Rue Molière, Lyon", "size": 512, "resolution": 0.2}`` -> the place's OSM mask, loaded like
    a sample, with the name the caption uses and the grid it lies on. Answered when the map is made (seconds:
    geocoding and Overpass), so the page shows its own busy state meanwhile; 502 when a service cannot answer."""
    state = _state()
    query = parse_place(read_json(request), state.settings.limits)
    try:
        made = state.places.make(query)
    except ServiceUnavailable as exc:
        return error(str(exc), 502)
    return jsonify(place_answer(made))


@bp.post("/caption")
def caption():
    """``{"place": …, "counts": {class id: pixels}, "prompt": …, "style": …}`` -> ``{"caption", "prompt"}``: the
    training caption of the map's classes (seg2sat.prompts, the one rule) and the text the model reads. The page
    sends its class counts, a few bytes, so the caption follows every stroke whatever the map's size."""
    body = body_object(read_json(request))
    place, own, style = (_text(body, name) for name in ("place", "prompt", "style"))
    text = caption_from_shares(place, class_counts(body))
    try:
        full = build_prompt(own.strip() or text, style or None)
    except ValueError as exc:
        raise ValueError(f"style: {exc}") from None
    return jsonify({"caption": text, "prompt": full})


def _text(body: dict, name: str) -> str:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name}: must be text")
    return value or ""


def _submit(mode: str):
    state = _state()
    req = parse_request(mode, read_json(request), state.store, state.settings.backend,
                        state.settings.limits)
    try:
        job = state.worker.submit(req)
    except QueueFull as exc:
        return error(str(exc), 429)
    except BackendError as exc:
        return error(str(exc), 503)
    return jsonify({"job": job.to_json(state.worker.position(job)), "prompt": req.prompt, "seeds": req.seeds,
                    "off_palette": req.off_palette}), 202


@bp.post("/generate")
def generate():
    return _submit("generate")


@bp.post("/inpaint")
def inpaint():
    return _submit("inpaint")


@bp.post("/outpaint")
def outpaint():
    return _submit("outpaint")


@bp.get("/jobs/<job_id>")
def job(job_id: str):
    worker = _state().worker
    found = worker.get(job_id)
    if found is None:
        return error(f"no job {job_id!r} (finished jobs are forgotten after a while)", 404)
    return jsonify(found.to_json(worker.position(found)))


@bp.post("/jobs/<job_id>/cancel")
def cancel(job_id: str):
    worker = _state().worker
    found = worker.cancel(job_id)
    if found is None:
        return error(f"no job {job_id!r}", 404)
    return jsonify(found.to_json(worker.position(found)))


@bp.get("/images/<image_id>.png")
def image(image_id: str):
    data = _state().store.png(image_id)
    if data is None:
        return error("no such image (ids come from job results; old images are dropped)", 404)
    return Response(data, mimetype="image/png", headers={"Cache-Control": "private, max-age=3600"})
