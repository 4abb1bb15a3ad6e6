"""The web UI's JSON API, through Flask's test client, on the tiny pipeline loaded from disk."""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import numpy as np
import pytest
from PIL import Image

from seg2sat import masks
from seg2sat.classes import BY_NAME, CLASSES
from seg2sat.generation import generate
from seg2sat.prompts import build_prompt, caption
from seg2sat.render import render
from seg2sat.webui import create_app


def b64png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def small_ids() -> np.ndarray:
    ids = np.full((64, 64), 11, dtype=np.uint8)
    ids[:, 28:36] = 3
    ids[8:24, 6:24] = 1
    return ids


def wait(client, job_id: str, timeout: float = 60) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = client.get(f"/api/jobs/{job_id}").get_json()
        if state["status"] in ("done", "error", "cancelled"):
            return state
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {state}")


def fetch_image(client, result: dict) -> Image.Image:
    response = client.get(result["url"])
    assert response.status_code == 200 and response.mimetype == "image/png"
    return Image.open(io.BytesIO(response.data)).convert("RGB")


@pytest.fixture(scope="module")
def app(tiny_dir, tmp_path_factory):
    samples = tmp_path_factory.mktemp("samples")
    masks.to_image(small_ids()).save(samples / "village.png")
    (samples / "notes.txt").write_text("not a mask")
    app = create_app({"MODEL": str(tiny_dir), "DEVICE": "cpu", "SAMPLES_DIR": str(samples), "QUEUE_SIZE": 2,
                      "MAX_BODY_MB": 1})
    yield app
    app.extensions["seg2sat_ui"].worker.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def generated(app):
    """One finished generation shared by the tests that start from a result."""
    client = app.test_client()
    r = client.post("/api/generate", json={"mask": b64png(masks.to_image(small_ids())), "place": "Lyon, France",
                                            "seed": 5, "num_images": 2, "steps": 2, "style": "lego"})
    assert r.status_code == 202, r.get_json()
    return r.get_json(), wait(client, r.get_json()["job"]["id"])


def test_page_and_static_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and b'id="mask-canvas"' in page.data
    for module in ("main", "state", "api", "caption"):  # the page's ES modules, no build step
        answer = client.get(f"/static/{module}.js")
        assert answer.status_code == 200 and "javascript" in answer.mimetype, module
    assert client.get("/static/style.css").status_code == 200


def test_classes_come_from_the_class_table(client):
    got = client.get("/api/classes").get_json()
    assert got == [{"id": c.id, "name": c.name, "colour": c.colour} for c in CLASSES]


def test_health_reports_ready_backend(client):
    deadline = time.time() + 30
    while (health := client.get("/api/health").get_json())["status"] == "loading" and time.time() < deadline:
        time.sleep(0.05)
    assert health["status"] == "ready" and health["backend"] == "diffusion"
    assert health["backends"] == ["diffusion", "procedural", "remote"]


def test_generate_gives_the_seeds_and_images_of_the_core(generated, client, tiny_pipe):
    submitted, state = generated
    assert submitted["seeds"] == [5, 6]
    assert submitted["prompt"].startswith("Aerial view of Lyon, France. agricultural land")
    assert state["status"] == "done" and state["step"] == state["total"] == 4
    assert [r["seed"] for r in state["results"]] == [5, 6]
    assert state["prompt"].endswith("Colorful lego bricks")
    direct = generate(small_ids(), submitted["prompt"], seed=6, steps=2, style="lego", pipeline=tiny_pipe)
    assert np.array_equal(np.asarray(fetch_image(client, state["results"][1])), np.asarray(direct.images[0]))


def test_random_seed_is_resolved_and_reported(client):
    r = client.post("/api/generate", json={"mask": b64png(masks.to_image(small_ids())), "steps": 1})
    assert r.status_code == 202
    seed = r.get_json()["seeds"][0]
    state = wait(client, r.get_json()["job"]["id"])
    assert state["results"][0]["seed"] == seed


def test_inpaint_keeps_every_pixel_outside_the_region(generated, client):
    result = generated[1]["results"][0]
    source = np.asarray(fetch_image(client, result))
    region = np.zeros((64, 64), dtype=np.uint8)
    region[40:60, 40:60] = 255
    new_mask = small_ids()
    new_mask[40:60, 40:60] = 5  # a pond drawn where the region is
    r = client.post("/api/inpaint", json={"image_id": result["id"], "mask": b64png(masks.to_image(new_mask)),
                                          "region": b64png(Image.fromarray(region)), "seed": 9, "steps": 2})
    assert r.status_code == 202, r.get_json()
    state = wait(client, r.get_json()["job"]["id"])
    assert state["status"] == "done", state
    out = np.asarray(fetch_image(client, state["results"][0]))
    outside = region == 0
    assert np.array_equal(out[outside], source[outside])
    assert not np.array_equal(out[~outside], source[~outside])


def test_outpaint_grows_the_image_and_keeps_the_old_pixels(generated, client):
    result = generated[1]["results"][0]
    source = np.asarray(fetch_image(client, result))
    grown = np.full((64, 96), 10, dtype=np.uint8)
    grown[:, 32:] = small_ids()
    r = client.post("/api/outpaint", json={"image_id": result["id"], "mask": b64png(masks.to_image(grown)),
                                           "side": "left", "pixels": 32, "seed": 1, "steps": 1})
    assert r.status_code == 202, r.get_json()
    state = wait(client, r.get_json()["job"]["id"])
    out = np.asarray(fetch_image(client, state["results"][0]))
    assert out.shape == (64, 96, 3)
    assert np.array_equal(out[:, 32:], source)


def test_import_snaps_to_class_colours_and_reports_off_palette(client):
    rgb = masks.to_rgb(small_ids()).astype(np.int16)
    rgb[:4] += 9  # a JPEG-like shift on the top rows
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    r = client.post("/api/masks/import", data={"file": (io.BytesIO(buffer.getvalue()), "drawn.png")},
                    headers={"Origin": "http://localhost"})  # as the page's own upload (the browser adds it)
    assert r.status_code == 200, r.get_json()
    got = r.get_json()
    ids = np.frombuffer(base64.b64decode(got["ids"]), dtype=np.uint8).reshape(got["height"], got["width"])
    assert np.array_equal(ids, small_ids())
    assert got["off_palette"] == pytest.approx(4 / 64)
    assert got["shares"][0]["id"] == 11


def test_an_import_outside_the_size_rule_comes_back_scaled_with_its_own_size(client):
    """Larger than max_pixels: snapped, then scaled to fit by nearest neighbour (classes kept), with ``source``."""
    ids = np.full((2100, 2100), BY_NAME["water"].id, dtype=np.uint8)  # 4.4 M px, over the 4,194,304 limit
    ids[:, 1050:] = BY_NAME["building"].id
    buffer = io.BytesIO()
    masks.to_image(ids).save(buffer, format="PNG")
    r = client.post("/api/masks/import", data={"file": (io.BytesIO(buffer.getvalue()), "big.png")},
                    headers={"Origin": "http://localhost"})
    got = r.get_json()
    assert r.status_code == 200 and got["source"] == [2100, 2100] and (got["width"], got["height"]) == (2048, 2048)
    out = np.frombuffer(base64.b64decode(got["ids"]), dtype=np.uint8).reshape(2048, 2048)
    assert np.array_equal(out, np.asarray(Image.fromarray(ids).resize((2048, 2048), Image.NEAREST)))


def test_samples_are_listed_and_loaded_by_name_only(client):
    assert client.get("/api/samples").get_json() == [{"name": "village"}]
    got = client.get("/api/samples/village").get_json()
    ids = np.frombuffer(base64.b64decode(got["ids"]), dtype=np.uint8).reshape(64, 64)
    assert np.array_equal(ids, small_ids())
    for name in ("notes", "..%2F..%2Fetc%2Fpasswd", "missing"):
        r = client.get(f"/api/samples/{name}")
        assert r.status_code == 404 and "error" in r.get_json()


def test_cancel_stops_a_running_job(client):
    r = client.post("/api/generate", json={"mask": b64png(masks.to_image(small_ids())), "steps": 150,
                                           "num_images": 8, "seed": 1})
    job_id = r.get_json()["job"]["id"]
    deadline = time.time() + 30
    while client.get(f"/api/jobs/{job_id}").get_json()["step"] < 1 and time.time() < deadline:
        time.sleep(0.02)
    assert client.post(f"/api/jobs/{job_id}/cancel").status_code == 200
    state = wait(client, job_id)
    assert state["status"] == "cancelled" and state["results"] == [] and state["step"] < state["total"]


def _mask() -> str:
    return b64png(masks.to_image(small_ids()))


@pytest.mark.parametrize(
    "path, body, words",
    [
        ("/api/generate", None, "body: not valid JSON"),
        ("/api/generate", [1], "JSON object"),
        ("/api/generate", {"steps": 2}, "mask: must be a base64-encoded PNG"),
        ("/api/generate", {"mask": "not base64!"}, "mask: is not valid base64"),
        ("/api/generate", {"mask": base64.b64encode(b"hello").decode()}, "mask: the decoded bytes are not an image"),
        ("/api/generate", {"mask": b64png(Image.new("RGB", (3000, 3000)))}, "more than the limit"),
        ("/api/generate", {"mask": _mask(), "steps": 0}, "steps: must be an integer between 1 and 150, got 0"),
        ("/api/generate", {"mask": _mask(), "steps": "many"}, "steps: must be an integer"),
        ("/api/generate", {"mask": _mask(), "num_images": 9}, "num_images: "),
        ("/api/generate", {"mask": _mask(), "guidance_scale": 31}, "guidance_scale: "),
        ("/api/generate", {"mask": _mask(), "controlnet_conditioning_scale": 2.5}, "controlnet_conditioning_scale: "),
        ("/api/generate", {"mask": _mask(), "controlnet_scale": 2.5}, "controlnet_scale: "),
        ("/api/generate", {"mask": _mask(), "controlnet_scale": 1, "controlnet_conditioning_scale": 2},
         "controlnet_scale: 1 conflicts with controlnet_conditioning_scale = 2; send one of them"),
        ("/api/generate", {"mask": _mask(), "seed": -1}, "seed: "),
        ("/api/generate", {"mask": _mask(), "style": "cubism"}, "style: "),
        ("/api/generate", {"mask": _mask(), "place": 3}, "place: must be a string"),
        ("/api/generate", {"mask": _mask(), "region": _mask()}, "region: is not used in mode 'generate'"),
        ("/api/generate", {"mask": _mask(), "side": "left"}, "side: is not used in mode 'generate'"),
        ("/api/inpaint", {"mask": _mask(), "image_id": "../../etc/passwd", "region": _mask()}, "image_id: names no image"),
        ("/api/inpaint", {"mask": _mask(), "image_id": "0" * 32, "region": _mask()}, "image_id: names no image"),
        ("/api/inpaint", {"mask": _mask()}, "image_id or image: is required"),
        ("/api/inpaint", {"mask": _mask(), "image": _mask(), "region": b64png(Image.new("L", (64, 64)))}, "region: is empty"),
        ("/api/inpaint", {"mask": _mask(), "image": _mask(), "region": b64png(Image.new("L", (32, 64), 255))},
         "region: is 32x64"),
        ("/api/inpaint", {"mask": _mask(), "image": b64png(Image.new("RGB", (32, 32))), "region": _mask()},
         "image: is 32x32"),
        ("/api/outpaint", {"mask": _mask(), "image": _mask(), "side": "up", "pixels": 8}, "side: "),
        ("/api/outpaint", {"mask": _mask(), "image": _mask(), "side": "left", "pixels": 0}, "pixels: "),
        ("/api/outpaint", {"mask": _mask(), "image": _mask(), "side": "left", "pixels": 32}, "mask: extending"),
        ("/api/outpaint", {"mask": _mask(), "image": _mask(), "side": "left", "pixels": 32}, "96x64 mask"),
    ],
)
def test_bad_requests_get_a_400_with_a_sentence(client, path, body, words):
    r = client.post(path, data="nonsense" if body is None else json.dumps(body), content_type="application/json")
    assert r.status_code == 400
    assert words in r.get_json()["error"]


def test_oversized_request_and_unknown_ids_are_json_errors(client):
    r = client.post("/api/generate", data=b"x" * (2 * 1024 * 1024), content_type="application/json")
    assert r.status_code == 413 and "too large" in r.get_json()["error"]
    assert client.get("/api/jobs/nope").status_code == 404
    assert client.post("/api/jobs/nope/cancel").status_code == 404
    for image_id in ("0" * 32, "..", "a" * 31):
        r = client.get(f"/api/images/{image_id}.png")
        assert r.status_code == 404 and "error" in r.get_json()


def test_full_queue_refuses_with_a_message(tiny_dir):
    app = create_app({"MODEL": str(tiny_dir), "DEVICE": "cpu", "QUEUE_SIZE": 1, "WARMUP": False})
    client = app.test_client()
    body = {"mask": _mask(), "steps": 150, "num_images": 8}
    answers = [client.post("/api/generate", json=body) for _ in range(3)]
    assert 429 in [a.status_code for a in answers]
    refused = next(a for a in answers if a.status_code == 429)
    assert "queue is full" in refused.get_json()["error"]
    for a in answers:
        if a.status_code == 202:
            client.post(f"/api/jobs/{a.get_json()['job']['id']}/cancel")
            wait(client, a.get_json()["job"]["id"])  # the pipeline is shared: let it stop before going on
    app.extensions["seg2sat_ui"].worker.close()


def test_missing_weights_fall_back_to_the_procedural_renderer_and_say_so(tmp_path):
    app = create_app({"MODEL": str(tmp_path / "no-such-model"), "DEVICE": "cpu"})
    client = app.test_client()
    deadline = time.time() + 30
    while (health := client.get("/api/health").get_json())["status"] == "loading" and time.time() < deadline:
        time.sleep(0.05)
    assert health["status"] == "ready" and "does not exist" in health["message"] and "procedural" in health["message"]
    r = client.post("/api/generate", json={"mask": _mask(), "steps": 1, "seed": 4})
    assert r.status_code == 202, r.get_json()
    state = wait(client, r.get_json()["job"]["id"])
    assert state["status"] == "done" and [res["seed"] for res in state["results"]] == [4]
    image = fetch_image(client, state["results"][0])
    assert image.size == (small_ids().shape[1], small_ids().shape[0])
    app.extensions["seg2sat_ui"].worker.close()


def test_missing_weights_are_explained_on_health_and_generate(tmp_path):
    app = create_app({"MODEL": str(tmp_path / "no-such-model"), "DEVICE": "cpu", "FALLBACK": False})
    client = app.test_client()
    deadline = time.time() + 30
    while (health := client.get("/api/health").get_json())["status"] == "loading" and time.time() < deadline:
        time.sleep(0.05)
    assert health["status"] == "error" and "does not exist" in health["message"] and "--model" in health["message"]
    assert client.get("/").status_code == 200
    r = client.post("/api/generate", json={"mask": _mask(), "steps": 1})
    assert r.status_code == 503 and r.get_json()["error"] == health["message"]
    app.extensions["seg2sat_ui"].worker.close()


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="procedural"):
        create_app({"BACKEND": "magic"})


def test_settings_are_shared_with_serve_and_the_ui_has_its_own_prefix(monkeypatch, caplog):
    """SEG2SAT_* as for `seg2sat serve` (local = diffusion), SEG2SAT_UI_* for the UI alone, the config dict last."""
    from seg2sat.settings import Settings

    for name, value in {"SEG2SAT_BACKEND": "local", "SEG2SAT_MAX_PIXELS": "4096", "SEG2SAT_MAX_BODY_MB": "2",
                        "SEG2SAT_UI_STORE_SIZE": "7", "SEG2SAT_UI_WARMUP": "false", "SEG2SAT_UI_PORT": "0",
                        "SEG2SAT_PORT": "1234"}.items():
        monkeypatch.setenv(name, value)
    app = create_app({"QUEUE_SIZE": 3})
    try:
        state = app.extensions["seg2sat_ui"]
        assert state.settings == Settings.from_env(queue_size=3)
        assert (state.settings.backend, state.settings.max_pixels, state.worker.queue_size) == ("diffusion", 4096, 3)
        assert app.config["MAX_CONTENT_LENGTH"] == 2 * 2**20 and state.store.capacity == 7 and app.config["PORT"] == 0
        assert app.config["BACKEND"] == "diffusion" and app.config["WARMUP"] is False
        assert "SEG2SAT_PORT is no longer read; the web UI reads SEG2SAT_UI_PORT" in caplog.text
    finally:
        state.worker.close()


def test_options_give_the_core_settings_styles_and_limits(client):
    from seg2sat.prompts import STYLES
    from seg2sat.request import NUMERIC_FIELDS

    got = client.get("/api/options").get_json()
    assert got["settings"] == {name: {"default": s.default, "low": s.low, "high": s.high, "label": s.label,
                                      "integer": s.cast is int} for name, s in NUMERIC_FIELDS.items()}
    assert [s["name"] for s in got["styles"]] == list(STYLES) and got["max_pixels"] == 2048 * 2048


def test_remote_backend_speaks_the_endpoint_protocol(tiny_pipe, monkeypatch):
    """Against the real local endpoint server (seg2sat.serving), sharing the tiny pipeline."""
    from werkzeug.serving import make_server

    from seg2sat import serving
    from seg2sat.settings import Settings

    seen = []
    limits = Settings(max_pixels=64 * 64)
    endpoint = serving.create_app(limits, serving.Service(limits, pipeline=tiny_pipe))
    endpoint.before_request(lambda: seen.append(__import__("flask").request.headers.get("Authorization")))
    server = make_server("127.0.0.1", 0, endpoint, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("SEG2SAT_ENDPOINT_TOKEN", "secret-token")
    app = create_app({"BACKEND": "remote", "ENDPOINT_URL": f"http://127.0.0.1:{server.port}/"})
    client = app.test_client()
    try:
        r = client.post("/api/generate", json={"mask": _mask(), "place": "Nantes", "seed": 3, "num_images": 2, "steps": 1})
        state = wait(client, r.get_json()["job"]["id"])
        assert state["status"] == "done", state
        assert [x["seed"] for x in state["results"]] == [3, 4]
        assert state["prompt"].startswith("Aerial view of Nantes.") and seen == ["Bearer secret-token"]
        direct = generate(small_ids(), r.get_json()["prompt"], seed=4, steps=1, pipeline=tiny_pipe)
        assert np.array_equal(np.asarray(fetch_image(client, state["results"][1])), np.asarray(direct.images[0]))
        # Inpainting travels as init_image + region; the endpoint keeps every pixel outside the region.
        region = np.zeros((64, 64), dtype=np.uint8)
        region[:16, :16] = 255
        source = state["results"][0]
        r = client.post("/api/inpaint", json={"image_id": source["id"], "mask": _mask(), "seed": 1, "steps": 1,
                                              "region": b64png(Image.fromarray(region))})
        state = wait(client, r.get_json()["job"]["id"])
        out, before = np.asarray(fetch_image(client, state["results"][0])), np.asarray(fetch_image(client, source))
        assert np.array_equal(out[16:], before[16:]) and not np.array_equal(out[:16, :16], before[:16, :16])
        # The endpoint's own refusal (a mask over its pixel limit) reaches the user in words.
        big = b64png(masks.to_image(np.full((64, 128), 11, dtype=np.uint8)))
        state = wait(client, client.post("/api/generate", json={"mask": big, "steps": 1}).get_json()["job"]["id"])
        assert state["status"] == "error" and "HTTP 400" in state["error"] and "image" in state["error"]
    finally:
        server.shutdown()
        app.extensions["seg2sat_ui"].worker.close()


def test_remote_backend_without_url_says_what_to_set():
    app = create_app({"BACKEND": "remote", "ENDPOINT_URL": None})
    client = app.test_client()
    deadline = time.time() + 10
    while (health := client.get("/api/health").get_json())["status"] == "loading" and time.time() < deadline:
        time.sleep(0.02)
    assert health["status"] == "error" and "SEG2SAT_ENDPOINT_URL (--endpoint-url)" in health["message"]
    assert "`" not in health["message"]
    app.extensions["seg2sat_ui"].worker.close()


@pytest.mark.slow
def test_start_script_serves_the_page_and_prints_its_url(tiny_dir):
    """`python ui/start_webui.py` (= `seg2sat ui`) starts the server and says where it is."""
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen([sys.executable, str(root / "ui" / "start_webui.py"), "--model", str(tiny_dir),
                                "--device", "cpu", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    try:
        line = process.stdout.readline()
        assert "Drawing2Map is running at http://localhost:" in line, line
        url = line.split(" at ", 1)[1].split()[0]
        with urllib.request.urlopen(url, timeout=30) as page:
            assert b'id="mask-canvas"' in page.read()
        with urllib.request.urlopen(url + "api/classes", timeout=30) as answer:
            assert len(json.loads(answer.read())) == 19
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_procedural_backend_needs_no_weights_and_keeps_pixels_outside_the_region():
    app = create_app({"BACKEND": "procedural"})
    client = app.test_client()
    try:
        r = client.post("/api/generate", json={"mask": _mask(), "seed": 2, "num_images": 2})
        state = wait(client, r.get_json()["job"]["id"])
        assert state["status"] == "done" and [x["seed"] for x in state["results"]] == [2, 3]
        first = np.asarray(fetch_image(client, state["results"][0]))
        assert np.array_equal(first, np.asarray(render(small_ids(), seed=2)))
        grown = np.full((64, 80), 5, dtype=np.uint8)
        grown[:, :64] = small_ids()
        r = client.post("/api/outpaint", json={"image_id": state["results"][0]["id"], "side": "right", "pixels": 16,
                                               "mask": b64png(masks.to_image(grown)), "seed": 9})
        out = np.asarray(fetch_image(client, wait(client, r.get_json()["job"]["id"])["results"][0]))
        assert out.shape == (64, 80, 3) and np.array_equal(out[:, :64], first)
    finally:
        app.extensions["seg2sat_ui"].worker.close()


def _preview_body(ids: np.ndarray, box, origin=(0, 0), seed=3) -> dict:
    return {"ids": base64.b64encode(ids.tobytes()).decode(), "size": [ids.shape[1], ids.shape[0]], "box": list(box),
            "origin": list(origin), "seed": seed}


def test_preview_of_a_changed_rectangle_matches_the_whole_render(client):
    """The page sends the stroke's rectangle plus the halo; the answer is exactly that part of the full render."""
    from seg2sat.render import HALO, render_array

    ids = np.tile(small_ids(), (4, 4))  # 256 x 256
    whole = render_array(ids, seed=3)
    left, top, right, bottom = 100, 60, 140, 90  # the stroke's bounding box
    x0, y0 = max(left - HALO, 0), max(top - HALO, 0)
    window = np.ascontiguousarray(ids[y0 : bottom + HALO, x0 : right + HALO])
    r = client.post("/api/preview", json=_preview_body(window, (left - x0, top - y0, right - x0, bottom - y0), (x0, y0)))
    assert r.status_code == 200 and r.mimetype == "image/png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(r.data)).convert("RGB")), whole[top:bottom, left:right])


@pytest.mark.parametrize("change, words", [
    ({"ids": "not base64!"}, "ids"), ({"size": [10, 10]}, "ids: holds"), ({"box": [0, 0, 99, 5]}, "box"),
    ({"seed": -1}, "seed"), ({"ids": base64.b64encode(bytes(64 * 64)).decode()}, "class ids"),
])
def test_preview_refuses_bad_bodies_naming_the_field(client, change, words):
    body = dict(_preview_body(small_ids(), (0, 0, 64, 64)), **change)
    r = client.post("/api/preview", json=body)
    assert r.status_code == 400 and words in r.get_json()["error"]


# ---------------------------------------------------------------- the map as class ids; the caption


def _ids_body(ids: np.ndarray) -> dict:
    return {"ids": base64.b64encode(np.ascontiguousarray(ids, dtype=np.uint8).tobytes()).decode(),
            "size": [ids.shape[1], ids.shape[0]]}


def test_generate_takes_the_map_as_class_ids_like_the_preview_and_still_takes_a_colour_png():
    """The page sends ids (nothing to snap); other clients' colour PNGs give the very same job."""
    app = create_app({"BACKEND": "procedural", "WARMUP": False})
    client = app.test_client()
    try:
        grown = np.full((64, 80), 5, dtype=np.uint8)
        grown[:, :64] = small_ids()
        states = []
        for body in (_ids_body(grown), {"mask": b64png(masks.to_image(grown))}):
            r = client.post("/api/generate", json=dict(body, seed=4, place="Lyon"))
            assert r.status_code == 202 and r.get_json()["off_palette"] == 0
            assert r.get_json()["prompt"] == caption("Lyon", grown)
            states.append(wait(client, r.get_json()["job"]["id"]))
        by_ids, by_png = (np.asarray(fetch_image(client, s["results"][0])) for s in states)
        assert np.array_equal(by_ids, np.asarray(render(grown, seed=4))) and np.array_equal(by_ids, by_png)
        first = states[0]["results"][0]["id"]  # outpaint too: its mask size is checked on ids
        r = client.post("/api/outpaint", json=dict(_ids_body(np.full((64, 96), 5, np.uint8)), image_id=first,
                                                   side="right", pixels=16))
        assert r.status_code == 202, r.get_json()
    finally:
        app.extensions["seg2sat_ui"].worker.close()


@pytest.mark.parametrize("change, words", [
    ({"mask": _mask()}, "mask: send the map once"),
    ({"size": [64, 63]}, "ids: holds 4096 bytes, not 64x63"),
    ({"size": [64]}, "size: must be [width, height]"),
    ({"size": [3000, 3000]}, "size: 3000x3000 is larger than the limit"),
    ({"ids": "not base64!"}, "ids: must be base64"),
    ({"ids": base64.b64encode(bytes(64 * 64)).decode()}, "ids: class ids must be 1..19"),
])
def test_a_bad_ids_map_is_refused_naming_the_field(client, change, words):
    r = client.post("/api/generate", json=dict(_ids_body(small_ids()), **change))
    assert r.status_code == 400 and words in r.get_json()["error"]


def test_the_caption_is_the_core_rule_on_the_pages_class_counts(client):
    ids = small_ids().copy()
    ids[0, :30] = 7  # 30 px: under MIN_SHARE, left out of the caption
    counts = {str(k): int(v) for k, v in zip(*np.unique(ids, return_counts=True))}
    answer = client.post("/api/caption", json={"place": " Lyon ", "counts": counts, "style": "lego"}).get_json()
    assert answer == {"caption": caption("Lyon", ids), "prompt": build_prompt(caption("Lyon", ids), "lego")}
    own = client.post("/api/caption", json={"prompt": "Mine.", "counts": counts, "style": "oil"}).get_json()
    assert own == {"caption": caption(None, ids), "prompt": build_prompt("Mine.", "oil")}
    assert client.post("/api/caption", json={"counts": {}}).get_json()["caption"] == "Aerial view."


@pytest.mark.parametrize("body, words", [
    ({}, "counts: must map class ids to pixel counts"), ({"counts": {"1": -3}}, "counts: must map"),
    ({"counts": {"20": 3}}, "counts: class ids must be 1..19"), ({"counts": {}, "style": "cubism"}, "style: "),
    ({"counts": {}, "place": 3}, "place: must be text"),
])
def test_a_bad_caption_question_is_refused_naming_the_field(client, body, words):
    r = client.post("/api/caption", json=body)
    assert r.status_code == 400 and words in r.get_json()["error"]
