"""The local server's overhead per request over a direct handler call, on the tiny pipeline.

    python benchmarks/bench_endpoint.py [--requests 40]

Builds the tiny random-weights pipeline in a temporary folder, starts `seg2sat serve`'s
app under waitress on loopback, and alternates the same request sent directly to the
handler (Service.__call__) and over HTTP (JSON and Accept: image/png). Prints the
median of each and the difference: what HTTP, JSON, base64, queueing and Flask cost.
Then sends a set of bad inputs and counts the 400 answers.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import tempfile
import threading
import time
import urllib.error
import urllib.request

import numpy as np
from PIL import Image

from seg2sat import masks
from seg2sat.pipelines import load_pipeline
from seg2sat.serving import Service, create_app, make_server, stop_server
from seg2sat.settings import Settings
from seg2sat.testing.tiny import make_tiny


def b64png(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def post(url: str, body: dict, accept: str = "application/json") -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        error.read()
        return error.code


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def bad_inputs(mask: str) -> list[dict]:
    params = {"image": mask, "steps": 1}
    variants = [{"steps": 0}, {"steps": 151}, {"steps": "x"}, {"guidance_scale": 99}, {"num_images": 0},
                {"num_images": 9}, {"seed": -1}, {"style": "cubism"}, {"mode": "upscale"}, {"width": 5000, "height": 5000},
                {"image": "!!"}, {"image": base64.b64encode(b"not an image").decode()}, {"image": ""},
                {"mode": "inpaint"}, {"mode": "outpaint", "init_image": mask}, {"controlnet_conditioning_scale": 3},
                {"negative_prompt": 1}, {"typo": 1}]
    bodies = [{"inputs": "Aerial view", "parameters": {**params, **v}} for v in variants]
    return bodies + [{"inputs": "", "parameters": params}, {"parameters": params}, {"inputs": "x", "parameters": "no"}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=40, help="requests of each kind (default 40)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        service = Service(Settings(), pipeline=load_pipeline(make_tiny(f"{folder}/tiny")))
    ids = np.full((64, 64), 11, dtype=np.uint8)
    ids[:, 28:36] = 3
    mask = b64png(masks.to_rgb(ids))
    body = {"inputs": "Aerial view of Lyon", "parameters": {"image": mask, "steps": 1, "seed": 1}}
    app = create_app(service=service)
    server = make_server(app, port=0)
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{server.effective_port}/"
    try:
        for _ in range(3):  # warm up both paths
            service(body), post(url, body)
        direct, http, png = [], [], []
        for _ in range(args.requests):
            direct.append(timed(lambda: service(body)))
            http.append(timed(lambda: post(url, body)))
            png.append(timed(lambda: post(url, body, "image/png")))
        statuses = [post(url, bad) for bad in bad_inputs(mask)]
        after = post(url, body)
    finally:
        stop_server(server)
    d, h, p = (statistics.median(v) * 1000 for v in (direct, http, png))
    print(f"tiny pipeline, 64x64 mask, 1 step, {args.requests} requests of each kind (medians)")
    print(f"direct handler call:        {d:7.1f} ms")
    print(f"server, JSON answer:        {h:7.1f} ms  (overhead {h - d:+.1f} ms per request)")
    print(f"server, Accept: image/png:  {p:7.1f} ms  (overhead {p - d:+.1f} ms per request)")
    print(f"bad inputs: {len(statuses)} sent, {statuses.count(400)} answered 400, "
          f"others {[s for s in statuses if s != 400]}; next valid request: {after}")
    print(f"handled by the server: {app.extensions['seg2sat'].handled}")


if __name__ == "__main__":
    main()
