"""Real clients against `seg2sat serve` on loopback: huggingface_hub's InferenceClient and Drawing2Map's payload.

The server runs the tiny random-weights pipeline; every request the server parses is
recorded with its headers, so the tests can replay it to the endpoint handler and check
that both answer the same image.
"""

from __future__ import annotations

import io
import json
import threading
import urllib.request

import huggingface_hub as hub
import numpy as np
import pytest
from huggingface_hub.errors import HfHubHTTPError
from PIL import Image
from test_endpoint import b64png, decode, load_script

from seg2sat import masks
from seg2sat.pipelines import load_pipeline
from seg2sat.serving import Service, create_app, make_server, stop_server
from seg2sat.settings import Settings

PROMPT = "Aerial view of Lyon"
BIG_SEED = 9223372036854775000  # what Drawing2Map sends: above 2**53, so float() would change it


class RecordingService(Service):
    """The real service, keeping each body it parses with the request's headers."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[dict, object]] = []

    def parse(self, data):
        from flask import has_request_context, request

        if has_request_context():  # not when a test calls the service directly
            self.seen.append((dict(request.headers), data))
        return super().parse(data)


@pytest.fixture(scope="module")
def mask_png() -> bytes:
    ids = np.full((64, 64), 11, dtype=np.uint8)
    ids[:, 28:36] = 3
    ids[8:30, 4:24] = 1
    buffer = io.BytesIO()
    masks.to_image(ids).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(tiny_dir):
    service = RecordingService(Settings(), pipeline=load_pipeline(tiny_dir))
    srv = make_server(create_app(service=service), port=0)
    threading.Thread(target=srv.run, daemon=True).start()
    yield f"http://127.0.0.1:{srv.effective_port}", service
    stop_server(srv)


@pytest.fixture
def client(server, monkeypatch):
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", False)  # offline mode blocks even a loopback URL
    return hub.InferenceClient(model=server[0], timeout=120)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def test_text_to_image_with_the_mask_in_extra_body(client, server, mask_png):
    b64 = b64png(Image.open(io.BytesIO(mask_png)))
    image = client.text_to_image(PROMPT, extra_body={"image": b64}, num_inference_steps=2, seed=11)
    headers, body = server[1].seen[-1]
    assert headers["Accept"] == "image/png" and headers["Content-Type"] == "application/json"
    assert body == {"inputs": PROMPT, "parameters": {"num_inference_steps": 2, "seed": 11, "image": b64}}
    assert image.format == "PNG" and image.size == (64, 64)
    same = client.text_to_image(PROMPT, extra_body={"image": b64}, num_inference_steps=2, seed=11)
    other_seed = client.text_to_image(PROMPT, extra_body={"image": b64}, num_inference_steps=2, seed=12)
    other_steps = client.text_to_image(PROMPT, extra_body={"image": b64}, num_inference_steps=1, seed=11)
    assert np.array_equal(pixels(image), pixels(same))
    assert not np.array_equal(pixels(image), pixels(other_seed))
    assert not np.array_equal(pixels(image), pixels(other_steps))
    direct = server[1]({"inputs": PROMPT, "parameters": {"image": b64, "steps": 2, "seed": 11}})
    assert np.array_equal(pixels(image), pixels(decode(direct["images"][0]))), "num_inference_steps is steps"


def test_the_clients_scheduler_parameter_picks_our_sampler(client, server, mask_png):
    """text_to_image(scheduler=…) names a sampler; ours match case-insensitively ("DDIM" is ddim)."""
    b64 = b64png(Image.open(io.BytesIO(mask_png)))
    image = client.text_to_image(PROMPT, extra_body={"image": b64}, num_inference_steps=2, seed=11, scheduler="DDIM")
    direct = server[1]({"inputs": PROMPT, "parameters": {"image": b64, "steps": 2, "seed": 11, "scheduler": "ddim"}})
    default = server[1]({"inputs": PROMPT, "parameters": {"image": b64, "steps": 2, "seed": 11}})
    assert np.array_equal(pixels(image), pixels(decode(direct["images"][0])))
    assert not np.array_equal(pixels(image), pixels(decode(default["images"][0])))


def test_image_to_image_sends_the_mask_as_inputs(client, server, mask_png):
    image = client.image_to_image(mask_png, prompt=PROMPT, num_inference_steps=2, seed=11)
    headers, body = server[1].seen[-1]
    assert headers["Accept"] == "image/png"
    assert set(body) == {"inputs", "parameters"} and body["parameters"] == {
        "prompt": PROMPT, "num_inference_steps": 2, "seed": 11}
    assert image.size == (64, 64)
    b64 = b64png(Image.open(io.BytesIO(mask_png)))
    as_text = client.text_to_image(PROMPT, extra_body={"image": b64}, num_inference_steps=2, seed=11)
    assert np.array_equal(pixels(image), pixels(as_text)), "the same request in either shape gives the same image"
    wide = client.image_to_image(mask_png, prompt=PROMPT, num_inference_steps=1, seed=1,
                                 target_size={"width": 128, "height": 64})
    assert server[1].seen[-1][1]["parameters"]["target_size"] == {"width": 128, "height": 64}
    assert wide.size == (128, 64)


def test_same_bodies_through_the_endpoint_handler(client, server, mask_png, tiny_dir):
    """What the client sent, replayed to endpoint/handler.py, gives the same images and seeds."""
    handler = load_script("handler").EndpointHandler(path=str(tiny_dir))
    got = client.image_to_image(mask_png, prompt=PROMPT, num_inference_steps=2, seed=5)
    out = handler(server[1].seen[-1][1])
    assert out["seeds"] == [5]
    assert np.array_equal(pixels(got), pixels(decode(out["images"][0])))
    got = client.text_to_image(PROMPT, extra_body={"image": b64png(Image.open(io.BytesIO(mask_png)))},
                               num_inference_steps=2, seed=5, width=128, height=64)
    out = handler(server[1].seen[-1][1])
    assert out["seeds"] == [5] and got.size == (128, 64)
    assert np.array_equal(pixels(got), pixels(decode(out["images"][0])))


@pytest.mark.parametrize("call, field", [
    (lambda c, m, b: c.text_to_image(PROMPT, extra_body={"image": b}, num_inference_steps=0),
     "parameters.num_inference_steps:"),
    (lambda c, m, b: c.text_to_image(PROMPT, extra_body={"image": b, "steps": 3}, num_inference_steps=2),
     "parameters.num_inference_steps:"),
    (lambda c, m, b: c.image_to_image(m), "parameters.prompt:"),
    (lambda c, m, b: c.image_to_image(m, prompt=PROMPT, target_size={"width": 8, "height": 64}),
     "parameters.target_size:"),
    (lambda c, m, b: c.text_to_image(PROMPT, extra_body={"image": b}, scheduler="KarrasDPM"), "parameters.scheduler:"),
])
def test_client_errors_are_400_naming_the_field_as_sent(client, mask_png, call, field):
    with pytest.raises(HfHubHTTPError) as info:
        call(client, mask_png, b64png(Image.open(io.BytesIO(mask_png))))
    assert info.value.response.status_code == 400
    error = info.value.response.json()["error"]
    assert error.startswith(field), error
    if "steps" in error and "conflicts" in error:
        assert "parameters.steps" in error


def drawing2map_payload(mask_png: bytes) -> dict:
    """Exactly what RubenGres/Seg2Sat's ui/frontend ResultCanvas.svelte posts (with Accept: image/png)."""
    b64 = b64png(Image.open(io.BytesIO(mask_png)))
    return {"inputs": PROMPT, "prompt": PROMPT, "image": b64, "steps": "20", "seed": str(BIG_SEED)}


def post_png(url: str, payload: dict) -> tuple[bytes, dict]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json", "Accept": "image/png"})
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 200 and response.headers["Content-Type"] == "image/png"
        return response.read(), dict(response.headers)


def test_drawing2map_payload_gets_its_png_with_the_exact_seed(server, mask_png, tiny_dir):
    payload = drawing2map_payload(mask_png)
    png, headers = post_png(server[0] + "/", payload)
    assert headers["X-Seed"] == str(BIG_SEED)
    assert Image.open(io.BytesIO(png)).size == (64, 64)
    again, _ = post_png(server[0] + "/predict", payload)
    assert again == png, "the same seed gives the same bytes"
    out = load_script("handler").EndpointHandler(path=str(tiny_dir))(payload)
    assert out["seeds"] == [BIG_SEED]
    assert np.array_equal(pixels(decode(out["images"][0])), pixels(Image.open(io.BytesIO(png))))
