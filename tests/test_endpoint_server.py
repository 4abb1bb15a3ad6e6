"""The local server (`seg2sat serve`): Flask test client for the protocol, waitress on loopback for the queue."""

from __future__ import annotations

import base64
import io
import json
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image
from test_endpoint import b64png, decode

from seg2sat import masks
from seg2sat.pipelines import load_pipeline
from seg2sat.serving import Service, create_app, make_server, stop_server
from seg2sat.settings import Settings


class CountingService(Service):
    """The real service, noting how many generations run on the device at the same time (inside the engine's queue)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.active = self.most = self.runs = 0
        self._count = threading.Lock()
        generate = self.engine._run

        def counted(*args, **kwargs):
            with self._count:
                self.active += 1
                self.most = max(self.most, self.active)
            try:
                return generate(*args, **kwargs)
            finally:
                with self._count:
                    self.active -= 1
                    self.runs += 1

        self.engine._run = counted


def make_app(tiny_dir, **limits):
    settings = Settings(**limits)
    return create_app(settings, CountingService(settings, pipeline=load_pipeline(tiny_dir)))


@pytest.fixture
def client(tiny_dir):
    return make_app(tiny_dir).test_client()


@pytest.fixture
def body(town_ids):
    mask = masks.to_image(town_ids[:, 32:96])  # 64x64: one tile of the tiny model
    return {"inputs": "Aerial view of Lyon", "parameters": {"image": b64png(mask), "steps": 1, "seed": 3}}


def test_health(client, tiny_dir):
    answer = client.get("/health")
    assert answer.status_code == 200
    health = answer.get_json()
    assert health["status"] == "ok" and health["model_loaded"] and health["fallback"] is None
    assert health["limits"]["max_pixels"] == Settings().max_pixels == 2048 * 2048
    assert health["limits"]["steps"] == [1, 150] and health["defaults"]["steps"] == 20
    assert health["limits"]["controlnet_conditioning_scale"] == [0.0, 2.0], "parameters under their wire names"
    assert health["queue_size"] == Settings().queue_size == 8
    small = make_app(tiny_dir, max_pixels=4096, queue_size=2).test_client().get("/health").get_json()
    assert small["limits"]["max_pixels"] == 4096 and small["queue_size"] == 2


@pytest.mark.parametrize("route", ["/", "/predict"])
def test_post_answers_json_images(client, body, route):
    answer = client.post(route, json=body)
    assert answer.status_code == 200, answer.get_json()
    data = answer.get_json()
    assert data["seeds"] == [3]
    assert decode(data["images"][0]).size == (64, 64)
    assert {"parse_s", "queue_s", "generate_s", "total_s"} <= set(data["timing"])
    assert "generate;dur=" in answer.headers["Server-Timing"]


def test_accept_png_returns_one_png(client, body):
    answer = client.post("/", json=body, headers={"Accept": "image/png"})
    assert answer.status_code == 200
    assert answer.mimetype == "image/png"
    assert answer.headers["X-Seed"] == "3"
    png = Image.open(io.BytesIO(answer.data))
    assert png.size == (64, 64)
    as_json = client.post("/", json=body).get_json()
    assert np.array_equal(np.asarray(png), np.asarray(decode(as_json["images"][0])))
    body["parameters"]["num_images"] = 2
    refused = client.post("/", json=body, headers={"Accept": "image/png"})
    assert refused.status_code == 400 and "num_images" in refused.get_json()["error"]


def test_legacy_payload_over_http(client, body):
    flat = {"prompt": "Aerial view", "image": body["parameters"]["image"], "steps": "1", "seed": "9"}
    answer = client.post("/", data=json.dumps(flat), content_type="application/json")
    assert answer.status_code == 200 and answer.get_json()["seeds"] == [9]
    refused = client.post("/", data=json.dumps(flat), content_type="text/plain")  # what any web page may send
    assert refused.status_code == 415 and "application/json" in refused.get_json()["error"]


def test_drawing2map_payload_over_http_answers_its_png_with_the_exact_seed(client, body):
    flat = {"inputs": "Aerial view", "prompt": "Aerial view", "image": body["parameters"]["image"], "steps": "1",
            "seed": "9223372036854775000"}
    answer = client.post("/", json=flat, headers={"Accept": "image/png"})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.mimetype == "image/png" and answer.headers["X-Seed"] == "9223372036854775000"
    assert client.post("/", json=flat, headers={"Accept": "image/png"}).data == answer.data
    assert client.post("/", json=flat).get_json()["seeds"] == [9223372036854775000]


def test_bare_image_body_is_asked_for_its_prompt(client, body):
    """What InferenceClient.image_to_image(image) posts when given no prompt: the raw PNG, no Content-Type."""
    raw = base64.b64decode(body["parameters"]["image"])
    answer = client.post("/", data=raw, headers={"Accept": "image/png"})
    assert answer.status_code == 400 and answer.get_json()["error"].startswith("parameters.prompt:")


def test_alias_and_our_name_disagreeing_is_400_naming_both(client, body):
    body["parameters"]["num_inference_steps"] = 2
    error = client.post("/", json=body).get_json()["error"]
    assert error.startswith("parameters.num_inference_steps:") and "parameters.steps" in error


@pytest.mark.parametrize("data, field", [
    ("{not json", "body"),
    ('"just a string"', "body"),
    (json.dumps({"inputs": "x", "parameters": {"image": "@@@"}}), "parameters.image"),
    (json.dumps({"inputs": "", "parameters": {"image": "MASK"}}), "inputs"),
    (json.dumps({"inputs": "", "parameters": {}}), "parameters.image"),  # the core checks the mask before the prompt
])
def test_bad_requests_are_400_json_naming_the_field(client, body, data, field):
    data = data.replace('"MASK"', json.dumps(body["parameters"]["image"]))
    answer = client.post("/", data=data, content_type="application/json")
    assert answer.status_code == 400
    assert answer.get_json()["error"].startswith(field)
    assert client.post("/", json=body).status_code == 200


def test_body_limit_and_unknown_routes_answer_json(tiny_dir, body):
    client = make_app(tiny_dir, max_body_mb=200 / 2**20).test_client()
    answer = client.post("/", json=body)
    assert answer.status_code == 413 and "limit" in answer.get_json()["error"]
    assert client.get("/nowhere").status_code == 404 and "error" in client.get("/nowhere").get_json()
    assert client.get("/predict").status_code == 405


def test_full_queue_answers_503_with_retry_after_then_serves_again(tiny_dir, body):
    app = make_app(tiny_dir, queue_size=0)
    client = app.test_client()
    gate = app.extensions["seg2sat"].gate
    with gate.slot():  # the device is busy with someone else's generation
        answer = client.post("/", json=body)
        assert answer.status_code == 503
        assert int(answer.headers["Retry-After"]) >= 1
        assert client.post("/", json={"inputs": ""}).status_code == 400, "bad input is refused before queueing"
    assert client.post("/", json=body).status_code == 200


def test_procedural_backend_needs_no_model(body):
    service = Service(Settings(model="/no/such/model", backend="procedural", fallback=False))
    client = create_app(service=service).test_client()
    answer = client.post("/", json=body)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["backend"] == "procedural"
    assert decode(answer.get_json()["images"][0]).size == (64, 64)
    assert not service.loaded
    body["parameters"]["backend"] = "diffusion"
    missing = client.post("/", json=body)
    assert missing.status_code == 503 and "/no/such/model" in missing.get_json()["error"]
    assert client.get("/health").get_json()["status"] == "ok"


def test_missing_weights_fall_back_to_the_renderer_and_say_so(body):
    service = Service(Settings(model="/no/such/model"))
    client = create_app(service=service).test_client()
    answer = client.post("/", json=body)
    assert answer.status_code == 200, answer.get_json()
    data = answer.get_json()
    assert data["backend"] == "procedural" and any("/no/such/model" in w for w in data["warnings"])
    assert "procedural renderer" in client.get("/health").get_json()["fallback"]
    png = client.post("/", json=body, headers={"Accept": "image/png"})
    assert png.status_code == 200 and png.headers["X-Backend"] == "procedural"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png.data))), np.asarray(decode(data["images"][0])))


def test_remote_backend_is_refused_with_the_reason(body):
    with pytest.raises(ValueError, match="remote is a web UI backend"):
        Service(Settings(backend="remote"))
    body["parameters"]["backend"] = "remote"
    answer = create_app(service=Service(Settings(backend="procedural"))).test_client().post("/", json=body)
    assert answer.status_code == 400
    assert answer.get_json()["error"].startswith("parameters.backend:") and "web UI" in answer.get_json()["error"]
    body["parameters"]["backend"] = "local"  # the web UI's old name of diffusion
    assert Service(Settings(backend="procedural")).parse(body).backend == "diffusion"


@pytest.mark.parametrize("argv, message", [
    (["--backend", "remote"], "serve runs the model itself; remote is a web UI backend"),
    (["--backend", "gan"], "--backend: must be diffusion or procedural"),
])
def test_serve_refuses_other_backends_in_one_line(argv, message):
    """Before anything loads; seg2sat.cli.main prints a CommandError as one line `error: …` and exits 2."""
    import argparse

    from seg2sat.cli import CommandError
    from seg2sat.serving.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["serve", *argv])
    with pytest.raises(CommandError, match=message) as info:
        args.func(args)
    assert "\n" not in str(info.value)
    assert parser.parse_args(["serve", "--no-fallback"]).fallback is False  # one spelling of the option everywhere


def test_serve_names_the_variable_that_gave_a_bad_backend(monkeypatch):
    """A bad SEG2SAT_BACKEND is named as the variable, not as the flag nobody typed."""
    import argparse

    from seg2sat.cli import CommandError
    from seg2sat.serving.cli import register

    monkeypatch.setenv("SEG2SAT_BACKEND", "gan")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["serve"])
    with pytest.raises(CommandError) as info:
        args.func(args)
    assert str(info.value).startswith("SEG2SAT_BACKEND must be one of diffusion, procedural"), info.value
    assert "--backend" not in str(info.value) and "`" not in str(info.value)


def test_procedural_inpaint_keeps_the_image_outside_the_region(body):
    photo = np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    body["parameters"].update(mode="inpaint", init_image=b64png(photo), region=[0, 0, 32, 64], backend="procedural")
    out = np.asarray(decode(Service(Settings())(body)["images"][0]).convert("RGB"))
    assert (out[:, 32:] == photo[:, 32:]).all() and (out[:, :32] != photo[:, :32]).any()


def _post(url: str, payload) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_concurrent_requests_on_loopback_are_all_answered_one_generation_at_a_time(tiny_dir, body):
    app = make_app(tiny_dir, queue_size=16)
    server = make_server(app, port=0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.effective_port}/predict"
    requests = []
    for n in range(16):
        params = dict(body["parameters"], seed=n)
        if n % 4 == 3:
            params["steps"] = 0  # a bad one
        requests.append({"inputs": body["inputs"], "parameters": params})
    try:
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda p: _post(url, p), requests))
    finally:
        stop_server(server)
    service = app.extensions["seg2sat"].service
    for n, (status, data) in enumerate(answers):
        if n % 4 == 3:
            assert status == 400 and data["error"].startswith("parameters.steps")
        else:
            assert status == 200 and data["seeds"] == [n]
    assert service.runs == 12
    assert service.most == 1, "two generations ran on the device at once"
    handled = app.extensions["seg2sat"].handled
    assert handled["ok"] == 12 and handled["bad_request"] == 4


@pytest.mark.slow
def test_seg2sat_serve_command_answers_on_the_port_it_prints(tiny_dir, body):
    import subprocess
    import sys

    server = subprocess.Popen([sys.executable, "-m", "seg2sat", "serve", "--model", str(tiny_dir), "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        while "serving on" not in line:
            line = server.stdout.readline()
            assert line or server.poll() is None, server.stderr.read()[-2000:]
        url = line.split()[2]
        status, data = _post(url + "/predict", body)
        assert status == 200 and data["seeds"] == [3]
        body["parameters"]["steps"] = 0
        assert _post(url + "/", body)[0] == 400
    finally:
        server.terminate()
        server.wait(timeout=30)
