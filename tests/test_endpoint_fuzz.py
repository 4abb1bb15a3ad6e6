"""Property: whatever payload arrives, the handler answers images or raises a ValueError naming a field.

Payloads are valid requests with some fields replaced by near-miss or arbitrary JSON,
removed, or joined by unknown ones, plus arbitrary JSON bodies, in every shape the
endpoint accepts (ours, Hugging Face image-to-image, the flat legacy one, Drawing2Map's).
Valid answers run on the tiny pipeline, so the numbers stay small (1-3 steps).
"""

from __future__ import annotations

import base64

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_endpoint import b64png

from seg2sat import masks
from seg2sat.pipelines import load_pipeline
from seg2sat.serving import PARAMETERS, RequestError, Service
from seg2sat.settings import Settings

MASK = np.full((64, 64), 11, dtype=np.uint8)
MASK[:, 20:28] = 3
MASK_B64 = b64png(masks.to_image(MASK))
PHOTO_B64 = b64png(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))
SMALL_B64 = b64png(np.zeros((32, 32, 3), dtype=np.uint8))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)

images = st.sampled_from([
    MASK_B64, "data:image/png;base64," + MASK_B64, PHOTO_B64, SMALL_B64, MASK_B64[:40], "", "%%%",
    base64.b64encode(b"GIF89a not really").decode(), b64png(np.zeros((20, 20, 3), np.uint8)),
])

near = {
    "image": images,
    "init_image": images,
    "seed": st.integers(-2, 2**64) | st.lists(st.integers(-1, 5), max_size=3) | st.sampled_from([1.0, 1.5, "7"]),
    "num_images": st.integers(-1, 2) | st.sampled_from([9, 1.0, "2", True, float("-inf")]),
    "steps": st.integers(-1, 2) | st.sampled_from([151, 10**12, 2.0, 2.5, "1", float("inf"), float("nan")]),
    "guidance_scale": st.floats(-1, 31) | st.sampled_from([float("nan"), float("inf"), "7.5"]),
    "controlnet_conditioning_scale": st.floats(-0.5, 2.5) | st.just(float("nan")),
    "negative_prompt": st.text(max_size=10) | st.integers(),
    "style": st.sampled_from(["lego", "Pencil", "cubism", "", None, 3]),
    "mode": st.sampled_from(["generate", "inpaint", "outpaint", "INPAINT", "paint", 0]),
    "backend": st.sampled_from(["diffusion", "gan", None]),
    "width": st.integers(0, 140) | st.sampled_from([5000, 64.5, 64.0, "64", float("inf"), float("nan")]),
    "height": st.integers(0, 140) | st.sampled_from([5000, -64]),
    "region": st.lists(st.integers(-10, 80), min_size=0, max_size=5) | images,
    "at": st.lists(st.integers(-10, 80), max_size=3) | st.just("0,0"),
    "num_inference_steps": st.integers(-1, 2) | st.sampled_from([151, 2.5, "1", None]),
    "target_size": st.fixed_dictionaries({}, optional={"width": st.sampled_from([64, 8, 96.0, "64"]),
                                                       "height": st.sampled_from([64, 32, -1])}) | st.just([64, 64]),
}

VALID = [
    {"image": MASK_B64, "steps": 1, "seed": 1},
    {"image": MASK_B64, "steps": 1, "mode": "inpaint", "init_image": PHOTO_B64, "region": [8, 8, 16, 16]},
    {"image": MASK_B64, "steps": 1, "mode": "outpaint", "init_image": SMALL_B64, "at": [0, 32]},
]


@st.composite
def payloads(draw):
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    params = dict(draw(st.sampled_from(VALID)))
    for name in draw(st.lists(st.sampled_from(sorted(near)), max_size=3, unique=True)):
        choice = draw(st.integers(0, 5))
        if choice == 0:
            params.pop(name, None)
        else:
            params[name] = draw(json_values if choice == 1 else near[name])
    if draw(st.integers(0, 7)) == 0:
        params[draw(st.text(min_size=1, max_size=6))] = draw(json_values)
    prompt = draw(st.sampled_from(["Aerial view of Lyon"] * 4 + ["", "   ", None, 5, ["x"]]))
    shape = draw(st.integers(0, 5))
    if shape == 0:  # the original flat payload
        return {"prompt": prompt, **{k: str(v) if isinstance(v, int) and k != "seed" else v for k, v in params.items()}}
    if shape == 1:  # Drawing2Map: the flat payload with inputs too, every number as text
        return {"inputs": prompt, "prompt": prompt, **{k: str(v) if isinstance(v, int) else v for k, v in params.items()}}
    if shape == 2 and "image" in params:  # Hugging Face image-to-image: the mask in inputs
        return {"inputs": params.pop("image"), "parameters": {"prompt": prompt, **params}}
    return {"inputs": prompt, "parameters": params}


@pytest.fixture(scope="module")
def service(tiny_dir):
    return Service(Settings(), pipeline=load_pipeline(tiny_dir))


def _known_field(field: str) -> bool:
    return field in {"body", "inputs", "prompt", "parameters"} or field.removeprefix("parameters.") in PARAMETERS


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@pytest.mark.slow
@given(data=payloads())
def test_any_payload_gives_images_or_a_value_error_naming_a_field(service, data):
    try:
        answer = service(data)
    except RequestError as exc:
        assert str(exc).startswith(f"{exc.field}:"), str(exc)
        assert _known_field(exc.field), str(exc)
        event(f"refused: {exc.field}")
        return
    event("answered")
    assert len(answer["images"]) == len(answer["seeds"]) >= 1
    assert all(isinstance(s, int) for s in answer["seeds"])
