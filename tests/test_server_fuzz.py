"""Property: no body sent to either server's JSON API is answered with a 5xx, and every refusal speaks JSON.

Bodies are near-valid requests with fields replaced by arbitrary JSON (deeply nested too),
arbitrary JSON documents, and bytes that are not JSON at all, sent to ``seg2sat serve``
and to every JSON route of the web UI (procedural backend: no model). A refusal is a 4xx
``{"error": sentence}`` whose sentence quotes values in JSON's words (``true``, ``null``,
``"text"``), never Python's (``True``, ``None``, ``'text'``, ``{'a': 1}``).
"""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from seg2sat import masks
from seg2sat.serving import Service, create_app
from seg2sat.settings import Settings
from seg2sat.webui import create_app as create_ui


def _b64png(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


IDS = np.full((64, 64), 11, dtype=np.uint8)
IDS[:, 20:28] = 3
MASK = _b64png(masks.to_rgb(IDS))
PHOTO = _b64png(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))
SMALL = _b64png(np.zeros((32, 32, 3), dtype=np.uint8))
PREVIEW_IDS = base64.b64encode(IDS.tobytes()).decode()

PYTHON_WORDS = re.compile(r"got (True|False|None)\b|got \{'|got \['|got '|got the text '|\(got '")
"""How a Python repr of a JSON value reads in a message (point 7 of issue 27)."""

leaves = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12)
          | st.sampled_from([MASK, SMALL, "", "%%%", "data:image/png;base64,", "left", "all", "\x00"]))
json_values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)
nested = st.integers(40, 3000).map(lambda n: json.loads("[" * min(n, 900) + "]" * min(n, 900))
                                   if n < 900 else {"deep": n})

SERVE_VALID = [{"inputs": "Aerial view", "parameters": {"image": MASK, "steps": 1, "seed": 1, "backend": "procedural"}},
               {"prompt": "Aerial view", "image": MASK, "steps": "1", "seed": "2", "backend": "procedural"},
               {"inputs": MASK, "parameters": {"prompt": "x", "mode": "inpaint", "init_image": PHOTO,
                                               "region": [8, 8, 16, 16], "backend": "procedural"}}]
UI_VALID = {
    "/api/generate": {"mask": MASK, "prompt": "x", "steps": 1, "seed": 1},
    "/api/inpaint": {"mask": MASK, "image": PHOTO, "region": [0, 0, 8, 8], "prompt": "x", "steps": 1},
    "/api/outpaint": {"mask": _b64png(masks.to_rgb(np.full((64, 96), 11, np.uint8))), "image": PHOTO,
                      "side": "right", "pixels": 32, "prompt": "x", "steps": 1},
    "/api/preview": {"ids": PREVIEW_IDS, "size": [64, 64], "box": [0, 0, 8, 8], "origin": [0, 0], "seed": 1},
    "/api/masks/import": {"image": MASK},
}


@st.composite
def bodies(draw, valid: list[dict]):
    """(raw body, what was drawn): a mutated valid body, any JSON, a deep one, or bytes that are not JSON."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=40)), "bytes"
    if kind == 1:
        return json.dumps(draw(nested)), "nested"
    if kind == 2:
        return json.dumps(draw(json_values)), "any JSON"
    body = json.loads(json.dumps(draw(st.sampled_from(valid))))
    target = body["parameters"] if "parameters" in body and draw(st.booleans()) else body
    for key in draw(st.lists(st.sampled_from(sorted(target) + ["extra"]), max_size=3, unique=True)):
        if draw(st.integers(0, 4)) == 0:
            target.pop(key, None)
        else:
            target[key] = draw(json_values | nested)
    return json.dumps(body), "mutated"


def _check(answer, drawn: str) -> None:
    event(f"{answer.status_code} ({drawn})")
    assert answer.status_code < 500, answer.get_data(as_text=True)[:500]
    if answer.status_code >= 400:
        message = answer.get_json()["error"]
        assert isinstance(message, str) and message
        assert not PYTHON_WORDS.search(message), message


@pytest.fixture(scope="module")
def serve():
    settings_ = Settings(backend="procedural")
    return create_app(settings_, Service(settings_)).test_client()


@pytest.fixture(scope="module")
def ui():
    app = create_ui({"BACKEND": "procedural", "WARMUP": False, "QUEUE_SIZE": 2})
    yield app.test_client()
    app.extensions["seg2sat_ui"].worker.close()


FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(drawn=bodies(SERVE_VALID), path=st.sampled_from(["/", "/predict"]))
def test_serve_answers_no_body_with_a_5xx(serve, drawn, path):
    body, kind = drawn
    _check(serve.post(path, data=body, content_type="application/json"), kind)


@FUZZ
@given(data=st.data())
def test_the_ui_answers_no_body_with_a_5xx(ui, data):
    path = data.draw(st.sampled_from(sorted(UI_VALID)))
    body, kind = data.draw(bodies([UI_VALID[path]]))
    _check(ui.post(path, data=body, content_type="application/json"), kind)


@pytest.mark.parametrize(("name", "value", "words"), [
    ("steps", True, "got true"), ("seed", [None], "got null"), ("steps", {"a": 1}, "got an object"),
    ("seed", "\x00", 'got the text "\\u0000"'), ("steps", [1, [2]], "got an array of 2 items")])
def test_messages_quote_values_in_json_words(serve, ui, name, value, words):
    """Before: ``got True``, ``got None``, ``got {'a': 1}``, ``got the text '\\x00'``."""
    answer = serve.post("/", json={"inputs": "x", "parameters": {"image": MASK, name: value}})
    assert answer.status_code == 400 and words in answer.get_json()["error"], answer.get_json()
    answer = ui.post("/api/generate", json={"mask": MASK, "prompt": "x", name: value})
    assert answer.status_code == 400 and words in answer.get_json()["error"], answer.get_json()
