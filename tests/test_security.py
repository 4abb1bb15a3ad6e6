"""Attacks on both local servers, as a hostile web page and a careless client would make them (issue 27).

Forged Hosts (DNS rebinding), cross-site simple and multipart posts, CORS for the pages
``seg2sat serve --allowed-origins`` names, nested JSON, bodies over the limit, and a
real Chromium page on a second local origin. Servers use the procedural backend: no model.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from conftest import CHROMIUM, CHROMIUM_ARGS
from PIL import Image

from seg2sat import masks
from seg2sat.serving import Service, create_app, make_server, stop_server
from seg2sat.serving.connections import make_waitress
from seg2sat.serving.guard import MAX_DEPTH, Policy, host_name, same_origin
from seg2sat.settings import Settings
from seg2sat.webui import create_app as create_ui

IDS = np.full((64, 64), 11, dtype=np.uint8)
IDS[:, 20:28] = 3


def b64png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


MASK = b64png(masks.to_image(IDS))
BODY = {"inputs": "Aerial view", "parameters": {"image": MASK, "steps": 1, "seed": 1}}
PAGE = "http://127.0.0.1:9"  # a foreign origin (never served)


def serve_app(**settings):
    settings = Settings(backend="procedural", **settings)
    return create_app(settings, Service(settings))


@pytest.fixture(scope="module")
def serve():
    return serve_app(allowed_hosts="proxy.example", allowed_origins="http://localhost:3000").test_client()


@pytest.fixture(scope="module")
def ui_app():
    app = create_ui({"BACKEND": "procedural", "WARMUP": False, "MAX_BODY_MB": 1})
    yield app
    app.extensions["seg2sat_ui"].worker.close()


@pytest.fixture
def ui(ui_app):
    return ui_app.test_client()


class Running:
    """A server from make_server / make_waitress on a free loopback port, served from a thread."""

    def __init__(self, server, app):
        self.server, self.app = server, app
        self.port = server.effective_port
        self.thread = threading.Thread(target=server.run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        stop_server(self.server)


# --------------------------------------------------------------------------- Host (DNS rebinding)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "rebind.test:7860", "127.0.0.1.evil.example",
                                  "localhost.evil.example", "10.0.0.5"])
def test_a_forged_host_is_refused_by_both_servers(serve, ui, host):
    for client, path in ((serve, "/health"), (ui, "/api/health"), (ui, "/")):
        answer = client.get(path, headers={"Host": host})
        assert answer.status_code == 403, (path, host)
    answer = serve.post("/", json=BODY, headers={"Host": host})
    assert answer.status_code == 403 and "--allowed-hosts" in answer.get_json()["error"]
    answer = ui.post("/api/generate", json={"mask": MASK, "prompt": "x"}, headers={"Host": host})
    said = answer.get_json()["error"]
    assert answer.status_code == 403 and "SEG2SAT_ALLOWED_HOSTS (--allowed-hosts)" in said and "`" not in said
    page = ui.get("/", headers={"Host": host}).get_data(as_text=True)  # the page's own URL: Flask's error page
    assert "SEG2SAT_ALLOWED_HOSTS" in page and "`" not in page


@pytest.mark.parametrize("host", ["localhost", "localhost:8080", "127.0.0.1:1", "[::1]:8080", "LOCALHOST.",
                                  "proxy.example", "proxy.example:443"])
def test_local_names_and_allowed_hosts_are_served(serve, host):
    assert serve.get("/health", headers={"Host": host}).status_code == 200


def test_the_bound_host_and_wildcards():
    named = Policy(bound="192.168.1.20")
    assert named.host_ok("192.168.1.20:8080") and not named.host_ok("192.168.1.21")
    everywhere = Policy(bound="0.0.0.0")  # every interface: IP literals are the machine's (no rebinding by name)
    assert everywhere.host_ok("192.168.1.21:80") and everywhere.host_ok(socket.gethostname())
    assert not everywhere.host_ok("evil.example")
    assert Policy(hosts=("*",)).host_ok("anything.example")
    assert host_name("[::1]:80") == "::1" and same_origin("http://localhost:80", "localhost")


# --------------------------------------------------------------------------- Origin, content types, uploads


def test_a_foreign_origin_cannot_post_to_either_server(serve, ui):
    answer = serve.post("/", json=BODY, headers={"Origin": PAGE})
    assert answer.status_code == 403 and "Access-Control-Allow-Origin" not in answer.headers
    assert ui.post("/api/generate", json={"mask": MASK, "prompt": "x"}, headers={"Origin": PAGE}).status_code == 403
    assert ui.post("/api/preview", json={}, headers={"Origin": "null"}).status_code == 403
    own = ui.post("/api/masks/import", json={"image": MASK}, headers={"Origin": "http://localhost"})
    assert own.status_code == 200, own.get_json()


@pytest.mark.parametrize("kind", ["text/plain", "application/x-www-form-urlencoded", None])
def test_json_endpoints_take_application_json_only(serve, ui, kind):
    """What any page may send without a preflight (and a body without a type) runs nothing."""
    data = json.dumps(BODY)
    answer = serve.post("/", data=data, content_type=kind)
    assert answer.status_code == 415 and "application/json" in answer.get_json()["error"]
    for path in ("/api/generate", "/api/preview", "/api/place", "/api/masks/import"):
        answer = ui.post(path, data=json.dumps({"mask": MASK, "image": MASK}), content_type=kind)
        assert answer.status_code == 415, path


def test_uploads_need_a_same_origin_request(ui):
    def upload(**headers):
        return ui.post("/api/masks/import", data={"file": (io.BytesIO(base64.b64decode(MASK)), "m.png")},
                       content_type="multipart/form-data", headers=headers)

    assert upload().status_code == 403  # a cross-site form carries no proof of its origin
    assert upload(Origin=PAGE).status_code == 403
    assert upload(Origin="http://localhost").status_code == 200
    assert upload(**{"Sec-Fetch-Site": "same-origin"}).status_code == 200


# --------------------------------------------------------------------------- CORS (serve --allowed-origins)


def test_preflight_answers_allowed_origins_only(serve):
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    ok = serve.options("/", headers={"Origin": "http://localhost:3000", **ask})
    assert ok.status_code == 204
    assert ok.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "POST" in ok.headers["Access-Control-Allow-Methods"]
    assert "content-type" in ok.headers["Access-Control-Allow-Headers"].lower()
    refused = serve.options("/", headers={"Origin": PAGE, **ask})
    assert refused.status_code == 403 and "Access-Control-Allow-Origin" not in refused.headers


def test_every_answer_to_an_allowed_origin_carries_cors_headers(serve):
    origin = {"Origin": "http://localhost:3000"}
    answers = [serve.post("/", json=BODY, headers=origin), serve.get("/health", headers=origin),
               serve.post("/", json={"inputs": 1}, headers=origin),  # 400
               serve.post("/", data="{}", content_type="text/plain", headers=origin),  # 415
               serve.get("/nowhere", headers=origin)]  # 404
    assert [a.status_code for a in answers] == [200, 200, 400, 415, 404]
    for answer in answers:
        assert answer.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
        assert "Origin" in answer.headers["Vary"]


def test_allowed_origins_must_be_origins():
    with pytest.raises(ValueError, match="allowed origins"):
        serve_app(allowed_origins="http://localhost:3000/app")


# --------------------------------------------------------------------------- bodies


def test_deeply_nested_json_is_a_400_naming_the_limit(serve, ui):
    deep = "[" * 1000 + "]" * 1000
    answer = serve.post("/", data=deep, content_type="application/json")
    assert answer.status_code == 400 and f"{MAX_DEPTH} levels" in answer.get_json()["error"]
    nested = json.dumps({"inputs": "x", "parameters": {"image": MASK, "seed": [[[[[[]]]]]] * 1}})
    assert serve.post("/", data=nested, content_type="application/json").status_code == 400
    for path in ("/api/generate", "/api/preview", "/api/masks/import", "/api/place"):
        answer = ui.post(path, data=deep, content_type="application/json")
        assert answer.status_code == 400 and f"{MAX_DEPTH} levels" in answer.get_json()["error"], path


@pytest.mark.parametrize("side", [[], {}, [1], 1, True, None])
def test_outpaint_side_of_any_json_type_is_a_400(ui, side):
    answer = ui.post("/api/outpaint", json={"mask": MASK, "image": MASK, "side": side, "pixels": 8, "prompt": "x"})
    assert answer.status_code == 400 and answer.get_json()["error"].startswith("side: ")


def _raw(port: int, head: str, body: bytes = b"") -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    conn.sock.sendall(head.encode() + body)
    response = http.client.HTTPResponse(conn.sock, method="POST")
    response.begin()
    return response.status, dict(response.getheaders()), response.read()


def test_bodies_over_the_limit_get_a_json_413_chunked_or_not():
    app = serve_app(max_body_mb=0.01, allowed_origins="http://localhost:3000")
    ui_app = create_ui({"BACKEND": "procedural", "WARMUP": False, "MAX_BODY_MB": 0.01})
    servers = [Running(make_server(app, "127.0.0.1", 0), app),
               Running(make_waitress(ui_app, "127.0.0.1", 0, 2, 10485), ui_app)]
    try:
        for running, path in zip(servers, ("/", "/api/generate"), strict=True):
            origin = "Origin: http://localhost:3000\r\n" if path == "/" else ""  # the UI serves its own page only
            host = f"Host: 127.0.0.1:{running.port}\r\n{origin}"
            chunk = b"a" * 4000
            chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(5)) + b"0\r\n\r\n"
            status, headers, data = _raw(running.port, f"POST {path} HTTP/1.1\r\n{host}Content-Type: application/json"
                                         "\r\nTransfer-Encoding: chunked\r\n\r\n", chunked)
            assert status == 413 and "error" in json.loads(data), (path, data)
            status, headers, data = _raw(running.port, f"POST {path} HTTP/1.1\r\n{host}Content-Type: application/json"
                                         f"\r\nContent-Length: {50 * 2**20}\r\n\r\n")  # past waitress's own limit
            assert status == 413 and "error" in json.loads(data), (path, data)
            if path == "/":
                assert headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    finally:
        for running in servers:
            running.close()
        ui_app.extensions["seg2sat_ui"].worker.close()


# --------------------------------------------------------------------------- a real browser on other origins


class Page(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<!doctype html><title>another site</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser_rebinding():
    """Chromium that resolves rebind.test to 127.0.0.1, as a DNS-rebinding attacker's name would."""
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP rebind.test 127.0.0.1"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def sites():
    """Two pages on other local origins: one that serve allows, one it does not."""
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), Page) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield [f"http://127.0.0.1:{s.server_address[1]}" for s in servers]
    for server in servers:
        server.shutdown()


DRAWING2MAP_FETCH = """async ([url, image]) => {
  // The original Drawing2Map page's request: a flat JSON body, numbers as text, read back as JSON.
  try {
    const r = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({inputs: "Aerial view", prompt: "Aerial view", image, steps: "1", seed: "42"})});
    const data = await r.json();
    return {status: r.status, image: (data.image || "").slice(0, 10), seeds: data.seeds, error: data.error};
  } catch (e) { return {failed: String(e)}; }
}"""


def test_a_page_on_an_allowed_origin_uses_serve_and_others_cannot(browser_rebinding, sites):
    allowed, other = sites
    app = serve_app(allowed_origins=allowed)
    running = Running(make_server(app, "127.0.0.1", 0), app)
    url = f"http://localhost:{running.port}/"
    try:
        page = browser_rebinding.new_page()
        page.goto(allowed)
        answer = page.evaluate(DRAWING2MAP_FETCH, [url, MASK])
        assert answer["status"] == 200 and answer["image"].startswith("iVBOR") and answer["seeds"] == [42], answer
        error = page.evaluate(DRAWING2MAP_FETCH, [url, "%%%"])  # an error is readable too
        assert error["status"] == 400 and error["error"].startswith("image: "), error
        page.goto(other)
        assert "failed" in page.evaluate(DRAWING2MAP_FETCH, [url, MASK])  # blocked by CORS
        page.close()
        handled = app.extensions["seg2sat"].handled
        assert handled["ok"] == 1, handled  # the other page's request never ran
    finally:
        running.close()


def test_a_rebinding_page_cannot_read_or_drive_the_ui(browser_rebinding):
    app = create_ui({"BACKEND": "procedural", "WARMUP": False})
    running = Running(make_waitress(app, "127.0.0.1", 0, 2, 2**20), app)
    try:
        page = browser_rebinding.new_page()
        answer = page.goto(f"http://rebind.test:{running.port}/")  # the attacker's name, our address
        assert answer.status == 403
        posted = page.evaluate("""async (mask) => {
            const r = await fetch("/api/generate", {method: "POST", headers: {"Content-Type": "application/json"},
                                                    body: JSON.stringify({mask, prompt: "x"})});
            return r.status; }""", MASK)
        assert posted == 403
        assert app.extensions["seg2sat_ui"].worker.jobs == {}
        assert page.goto(f"http://localhost:{running.port}/").status == 200  # the real page still works
        page.close()
    finally:
        running.close()
        app.extensions["seg2sat_ui"].worker.close()


# --------------------------------------------------------------------------- the page itself


def test_the_ui_page_cannot_be_framed_by_other_sites(ui):
    for path in ("/", "/api/health"):
        answer = ui.get(path)
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]


def test_a_project_file_cannot_make_the_page_fetch_a_url(browser_rebinding):
    """A crafted project's versions[].image naming a URL is refused, and nothing is fetched."""
    hits: list[str] = []

    class Recording(Page):
        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

    tracker = ThreadingHTTPServer(("127.0.0.1", 0), Recording)
    threading.Thread(target=tracker.serve_forever, daemon=True).start()
    app = create_ui({"BACKEND": "procedural", "WARMUP": False})
    running = Running(make_waitress(app, "127.0.0.1", 0, 2, 2**20), app)
    ids = base64.b64encode(IDS.tobytes()).decode()
    project = {"drawing2map_project": 1, "map": {"w": 64, "h": 64, "ids": ids}, "settings": {}, "background": 11,
               "versions": [{"image": f"http://127.0.0.1:{tracker.server_address[1]}/track",
                             "mask": {"w": 64, "h": 64, "ids": ids}}]}
    try:
        page = browser_rebinding.new_page()
        page.goto(f"http://127.0.0.1:{running.port}/")
        page.wait_for_selector("body[data-ready=true]")
        page.set_input_files("#open-project", files=[{"name": "crafted.json", "mimeType": "application/json",
                                                       "buffer": json.dumps(project).encode()}])
        page.wait_for_function("() => document.getElementById('error-text').innerText.includes('crafted.json')")
        assert "not embedded" in page.inner_text("#error-text")
        page.close()
        assert hits == []
    finally:
        running.close()
        tracker.shutdown()
        app.extensions["seg2sat_ui"].worker.close()


CROSS_SITE_POSTS = """async ([serve, ui, body, png]) => {
  // What any page may send without a preflight: text/plain JSON, and a multipart upload.
  const form = new FormData();
  form.append("file", new Blob([Uint8Array.from(atob(png), (c) => c.charCodeAt(0))], {type: "image/png"}), "m.png");
  for (const [url, init] of [[serve, {body, headers: {"Content-Type": "text/plain"}}],
                             [ui + "api/generate", {body, headers: {"Content-Type": "text/plain"}}],
                             [ui + "api/masks/import", {body: form}]]) {
    await fetch(url, Object.assign({method: "POST", mode: "no-cors"}, init));
  }
  return true;
}"""


def test_cross_site_simple_and_multipart_posts_from_chromium_run_nothing(browser_rebinding, sites):
    """A page on another origin fires the posts a browser sends without asking; both servers refuse each."""
    seen: list[tuple[str, int]] = []
    serve_app_ = serve_app()
    ui_app = create_ui({"BACKEND": "procedural", "WARMUP": False})
    for app in (serve_app_, ui_app):
        app.after_request(lambda r: seen.append((__import__("flask").request.path, r.status_code)) or r)
    servers = [Running(make_server(serve_app_, "127.0.0.1", 0), serve_app_),
               Running(make_waitress(ui_app, "127.0.0.1", 0, 2, 2**20), ui_app)]
    try:
        page = browser_rebinding.new_page()
        page.goto(sites[1])
        page.evaluate(CROSS_SITE_POSTS, [f"http://localhost:{servers[0].port}/", f"http://localhost:{servers[1].port}/",
                                         json.dumps({"mask": MASK, "prompt": "x", **BODY}), MASK])
        page.close()
        assert sorted(seen) == [("/", 403), ("/api/generate", 403), ("/api/masks/import", 403)], seen
        assert serve_app_.extensions["seg2sat"].handled["ok"] == 0 and ui_app.extensions["seg2sat_ui"].worker.jobs == {}
    finally:
        for running in servers:
            running.close()
        ui_app.extensions["seg2sat_ui"].worker.close()
