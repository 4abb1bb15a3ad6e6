"""What one request, many slow clients or a careless token may cost the local servers (issue 27).

Memory per noisy mask (measured with RSS in a fresh process), previews through a bounded
number of slots, the UI's image store bounded in bytes, slow and idle clients that cannot
starve waitress, and an endpoint token that never reaches an answer or a log line.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import socket
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seg2sat.serving import Service, create_app, make_server, stop_server
from seg2sat.serving.connections import make_waitress
from seg2sat.settings import Settings
from seg2sat.webui import create_app as create_ui
from seg2sat.webui import preview
from seg2sat.webui.store import ImageStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_request_memory

MB = 2**20


# --------------------------------------------------------------------------- memory


@pytest.fixture(scope="module")
def noisy_2048(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("noise") / "noise.jpg")
    bench_request_memory.noisy_jpeg(2048, path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("case", ["ui-import", "serve-predict"])
def test_a_noisy_2048_mask_costs_at_most_300_mb(noisy_2048, case):
    """Before: +1.7 GB in each parser (the neighbour rules' full-image scratch arrays); after: ~170 MB."""
    row = bench_request_memory.measure(case, noisy_2048)
    assert row["peak_above_idle_mb"] <= 300, row


def test_previews_render_a_bounded_number_at_once(monkeypatch):
    app = create_ui({"BACKEND": "procedural", "WARMUP": False})
    state = {"now": 0, "most": 0}
    lock = threading.Lock()
    real = preview.render_window

    def slow_render(*args, **kwargs):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.2)
        with lock:
            state["now"] -= 1
        return real(*args, **kwargs)

    monkeypatch.setattr(preview, "render_window", slow_render)
    ids = base64.b64encode(np.full(64 * 64, 11, np.uint8).tobytes()).decode()
    body = {"ids": ids, "size": [64, 64], "box": [0, 0, 64, 64], "origin": [0, 0], "seed": 1}

    def ask(_):
        return app.test_client().post("/api/preview", json=body).status_code

    try:
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(ask, range(8)))
    finally:
        app.extensions["seg2sat_ui"].worker.close()
    assert codes == [200] * 8 and state["most"] == preview.PREVIEW_SLOTS


def test_the_image_store_is_bounded_in_bytes():
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), np.uint8)
    store = ImageStore(200, max_bytes=MB)
    keys = [store.put(Image.fromarray(np.roll(noise, i, 0))) for i in range(10)]  # ~190 KB each
    assert store.nbytes <= MB and 3 <= len(store) < 10
    assert store.png(keys[-1]) is not None and store.png(keys[0]) is None
    big = ImageStore(200, max_bytes=1)
    assert big.png(big.put(Image.fromarray(noise))) is not None, "the newest image is always kept"


def test_the_store_size_in_mb_is_a_ui_setting(monkeypatch):
    monkeypatch.setenv("SEG2SAT_UI_STORE_MB", "1.5")
    app = create_ui({"BACKEND": "procedural", "WARMUP": False})
    assert app.extensions["seg2sat_ui"].store.max_bytes == int(1.5 * MB)
    app.extensions["seg2sat_ui"].worker.close()


# --------------------------------------------------------------------------- slow clients


def _open_slow(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\n")  # a request that never ends
        socks.append(s)
    return socks


def _health_s(port: int, path: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        assert r.status == 200
    return time.perf_counter() - start


@pytest.mark.parametrize("which", ["serve", "ui"])
def test_slow_clients_do_not_starve_either_server(which):
    """Before: waitress's 100 connections were taken by 101 idle sockets and /health hung while they lasted
    (the UI, on werkzeug's threaded server, spent a thread on each)."""
    if which == "serve":
        settings = Settings(backend="procedural")
        app = create_app(settings, Service(settings))
        server, path = make_server(app, "127.0.0.1", 0), "/health"
    else:
        from seg2sat.webui.cli import UI_THREADS

        app = create_ui({"BACKEND": "procedural", "WARMUP": False})
        server, path = make_waitress(app, "127.0.0.1", 0, UI_THREADS, MB), "/api/health"
    threading.Thread(target=server.run, daemon=True).start()
    port = server.effective_port
    socks = _open_slow(port, 200)
    try:
        for _ in range(3):
            for s in socks:
                s.sendall(b"X")  # a byte now and then keeps waitress's idle timer from firing
            assert _health_s(port, path) < 1.0
    finally:
        for s in socks:
            s.close()
        stop_server(server)
        if which == "ui":
            app.extensions["seg2sat_ui"].worker.close()


def test_a_request_that_never_finishes_arriving_is_closed():
    """waitress's idle timer restarts with every byte; the request deadline does not."""
    app = create_ui({"BACKEND": "procedural", "WARMUP": False})
    server = make_waitress(app, "127.0.0.1", 0, 2, MB, request_timeout=1.5)
    threading.Thread(target=server.run, daemon=True).start()
    (slow,) = _open_slow(server.effective_port, 1)
    start = time.perf_counter()
    try:
        while not _closed(slow):
            assert time.perf_counter() - start < 10, "the trickling client was never closed"
            time.sleep(0.3)
        assert time.perf_counter() - start > 1.4
    finally:
        slow.close()
        server.close()
        app.extensions["seg2sat_ui"].worker.close()


def _closed(s: socket.socket) -> bool:
    """Send one more header line; whether the server has closed the connection."""
    import select

    try:
        s.sendall(b"X-Slow: 1\r\n")
    except OSError:
        return True
    return bool(select.select([s], [], [], 0)[0]) and s.recv(1) == b""


# --------------------------------------------------------------------------- the endpoint token


class EchoingEndpoint(BaseHTTPRequestHandler):
    """A hostile or buggy endpoint: its error repeats the Authorization header it got."""

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"error": f"bad credentials {self.headers['Authorization']!r}"}).encode()
        self.send_response(401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _wait_ready(client) -> dict:
    deadline = time.time() + 10
    while (health := client.get("/api/health").get_json())["status"] == "loading" and time.time() < deadline:
        time.sleep(0.02)
    return health


def _job(client, mask: str) -> dict:
    answer = client.post("/api/generate", json={"mask": mask, "prompt": "x", "steps": 1})
    job_id = answer.get_json()["job"]["id"]
    deadline = time.time() + 30
    while (state := client.get(f"/api/jobs/{job_id}").get_json())["status"] in ("queued", "running"):
        assert time.time() < deadline
        time.sleep(0.05)
    return state


@pytest.fixture
def mask_b64() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (219, 14, 154)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_a_crlf_token_is_stripped_and_never_echoed(monkeypatch, caplog, mask_b64):
    secret = "hf_SecretTokenFromACrlfFile"
    monkeypatch.setenv("SEG2SAT_ENDPOINT_TOKEN", secret + "\r\n")
    seen: list[str] = []

    class Recording(EchoingEndpoint):
        def do_POST(self):
            seen.append(self.headers["Authorization"])
            super().do_POST()

    endpoint = ThreadingHTTPServer(("127.0.0.1", 0), Recording)
    threading.Thread(target=endpoint.serve_forever, daemon=True).start()
    app = create_ui({"BACKEND": "remote", "ENDPOINT_URL": f"http://127.0.0.1:{endpoint.server_address[1]}/"})
    client = app.test_client()
    caplog.set_level(logging.DEBUG)
    try:
        assert _wait_ready(client)["status"] == "ready"
        state = _job(client, mask_b64)
        assert seen == [f"Bearer {secret}"], "sent stripped"
        assert state["status"] == "error" and "HTTP 401" in state["error"] and "[token]" in state["error"]
        pages = [client.get(p).get_data(as_text=True) for p in ("/", "/api/health", f"/api/jobs/{state['id']}")]
        for text in [*pages, json.dumps(state), caplog.text]:
            assert "SecretToken" not in text
    finally:
        endpoint.shutdown()
        app.extensions["seg2sat_ui"].worker.close()


def test_a_token_with_a_control_character_is_refused_at_start(monkeypatch, caplog):
    monkeypatch.setenv("SEG2SAT_ENDPOINT_TOKEN", "hf_Secret\x01Inside")
    caplog.set_level(logging.DEBUG)
    app = create_ui({"BACKEND": "remote", "ENDPOINT_URL": "http://127.0.0.1:9/"})
    health = _wait_ready(app.test_client())
    app.extensions["seg2sat_ui"].worker.close()
    assert health["status"] == "error" and "SEG2SAT_ENDPOINT_TOKEN" in health["message"]
    assert "Secret" not in json.dumps(health) and "Secret" not in caplog.text
    with pytest.raises(ValueError, match="control") as refused:
        Settings().endpoint_token({"SEG2SAT_ENDPOINT_TOKEN": "a\nb"})
    assert "a\nb" not in str(refused.value)
    assert Settings().endpoint_token({"HF_TOKEN": "  hf_x \r\n"}) == "hf_x"
