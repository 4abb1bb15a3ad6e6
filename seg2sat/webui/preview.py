"""The live preview: the offline render of the part of the map a stroke changed (``POST /api/preview``).

The page sends the class ids of the changed rectangle plus the renderer's ``HALO`` of
map around it (raw bytes, no image encoding on either side) and gets that rectangle
back as a PNG. The renderer's windows are bit-identical to a whole render, so the
preview is patched in place with no seam, and a small stroke costs a few
milliseconds whatever the size of the map.
"""

from __future__ import annotations

import io
import threading
import time

import numpy as np
from flask import Response, current_app, jsonify, request
from PIL import Image

from ..box import Box
from ..render import render_window
from ..request import RequestError, json_text
from ..serving.guard import read_json
from .api import bp  # a route of the API blueprint: same prefix, same JSON errors
from .payloads import body_object, class_ids

PREVIEW_SLOTS = 2
"""Previews rendered at once. A full-size one holds ~240 MB while it renders: without a limit, 30 at once took
the UI from 1.2 to 8.3 GB. A stroke's preview takes milliseconds, so waiting for a slot is short."""
PREVIEW_WAIT_S = 10.0
"""How long a preview waits for a slot before it is refused (429): the page simply sends the next one."""
_SLOTS = threading.BoundedSemaphore(PREVIEW_SLOTS)


@bp.post("/preview")
def preview():
    body = body_object(read_json(request))
    started = time.perf_counter()
    ids, box, origin, seed = _parse(body, current_app.extensions["seg2sat_ui"].settings.limits.max_pixels)
    if not _SLOTS.acquire(timeout=PREVIEW_WAIT_S):
        return jsonify({"error": f"{PREVIEW_SLOTS} previews are rendering; try again in a moment"}), 429
    try:
        buffer = io.BytesIO()
        Image.fromarray(render_window(ids, box, seed, origin)).save(buffer, format="PNG", compress_level=1)
    finally:
        _SLOTS.release()
    took = (time.perf_counter() - started) * 1000
    return Response(buffer.getvalue(), mimetype="image/png", headers={"Server-Timing": f"render;dur={took:.1f}"})


def _ints(body: dict, name: str, count: int) -> list[int]:
    value = body.get(name)
    if not isinstance(value, list) or len(value) != count or not all(isinstance(v, int) and v >= 0 for v in value):
        raise RequestError(name, f"must be a list of {count} non-negative integers, got {json_text(value)}")
    return value


def _parse(body: dict, max_pixels: int | None) -> tuple[np.ndarray, Box, tuple[int, int], int]:
    ids = class_ids(body, max_pixels)  # the same ids + size the page's Generate sends
    height, width = ids.shape
    left, top, right, bottom = _ints(body, "box", 4)
    if not (left < right <= width and top < bottom <= height):
        raise RequestError("box", f"{[left, top, right, bottom]} is not a rectangle inside the {width}x{height} ids")
    seed = body.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise RequestError("seed", f"must be a non-negative integer, got {json_text(seed)}")
    x, y = _ints(body, "origin", 2)
    return ids, Box(left, top, right, bottom), (x, y), seed
