"""Shared fixtures: the tiny pipeline is built once per test session and loaded from disk like a user would."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from seg2sat import masks

ROOT = Path(__file__).resolve().parents[1]


def striped_ids(k: int, side: int = 64) -> np.ndarray:
    """A small class-id map (fields, a building block, a water strip) that differs with ``k``: masks for synthesize."""
    ids = np.full((side, side), 11, np.uint8)
    ids[8 + k : 30, 10 : 40 - k] = 1
    ids[:, 44 + k : 52] = 5
    return ids
# One torch thread per process: test servers, subprocesses and the browser share two cores,
# and PyTorch's spinning worker threads slow everything down many times when cores are busy.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Subprocesses (`python -m seg2sat …`) import this checkout, whatever is pip-installed.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    from seg2sat.testing.tiny import make_tiny

    return make_tiny(tmp_path_factory.mktemp("tiny") / "pipeline")


@pytest.fixture(scope="session")
def tiny_pipe(tiny_dir):
    from seg2sat.pipelines import load_pipeline

    return load_pipeline(tiny_dir)


@pytest.fixture
def town_ids() -> np.ndarray:
    """A small hand-made map: fields, a road, a block of buildings and a river (64 x 128)."""
    ids = np.full((64, 128), 11, dtype=np.uint8)  # agricultural land
    ids[:, 60:68] = 3  # road
    ids[8:30, 10:40] = 1  # buildings
    ids[40:, 90:] = 5  # water
    return ids


@pytest.fixture
def town_png(tmp_path, town_ids):
    path = tmp_path / "town.png"
    masks.to_image(town_ids).save(path)
    return path


@pytest.fixture
def nominatim():
    """A local HTTP server speaking Nominatim's /reverse and /search protocols; records what it was asked.

    /search finds every address at the synthetic village's centre (seg2sat.testing.village), except
    "nowhere" (no result) and addresses containing "fail" (HTTP 500).
    """
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlparse

    from seg2sat.testing.village import centre_latlon

    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            path = urlparse(self.path).path
            query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
            seen.append({"path": path, "agent": self.headers["User-Agent"], **query})
            body = self._search(query) if path == "/search" else self._reverse(query)
            if body is None:
                self.send_response(500)
                self.end_headers()
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _reverse(self, query):
            if float(query["lat"]) < 0:
                return None
            return {"error": "Unable to geocode"} if float(query["lat"]) > 80 else {
                "display_name": "Mourenx, Pau, Pyrénées-Atlantiques, France", "lat": query["lat"], "lon": query["lon"]}

        def _search(self, query):
            if "fail" in query["q"]:
                return None
            lat, lon = centre_latlon()
            return [] if query["q"] == "nowhere" else [{"display_name": query["q"], "lat": str(lat), "lon": str(lon)}]

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


@pytest.fixture
def overpass(tmp_path):
    """A local HTTP server speaking Overpass (POST /api/interpreter, OSM XML answers); ``state`` drives it.

    It answers the synthetic village (seg2sat.testing.village) as OSM XML, whatever the box asked.
    """
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs

    from seg2sat.testing import village

    answer = village.write_osm(tmp_path / "answer.osm").read_bytes()
    state = {"status": 200, "body": answer, "seen": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            data = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())["data"][0]
            state["seen"].append({"path": self.path, "agent": self.headers["User-Agent"], "query": data})
            self.send_response(state["status"])
            self.send_header("Content-Length", str(len(state["body"])))
            self.end_headers()
            self.wfile.write(state["body"])

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium driven by Playwright, shared by every browser test."""
    from playwright import sync_api

    if not Path(CHROMIUM).exists():
        pytest.fail(f"chromium not found at {CHROMIUM}: install it with `apt-get install -y chromium`")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


BROWSER_FIXTURES = {"browser", "browser_rebinding"}


def pytest_collection_modifyitems(config, items):
    """Every test that starts chromium is marked ``browser``, so ``-m "not browser"`` needs no browser installed."""
    for item in items:
        if BROWSER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.browser)
