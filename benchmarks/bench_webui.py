"""Web UI costs: the server's overhead per job, and the browser's redraw time per stroke step.

1. Overhead of a job through the UI's API (JSON + base64 PNG mask in, queue, worker,
   image store, polling every 50 ms, PNG out) over calling seg2sat.generate directly,
   on the tiny pipeline at 256x256, 2 steps; interleaved rounds, medians.
2. In chromium (Playwright): milliseconds for one stroke step (a 15 px segment of the
   default 8 px brush, then the frame's redraw: dirty rectangle -> palette ->
   putImageData, and the live class shares) at 512, 1024 and 2048 px; under 16 ms
   keeps drawing at 60 frames per second. Then the fill bucket on the map's biggest
   field (target <= 50 ms at 2048 px) and the live preview's latency, from the end of a
   stroke to its rendered pixels in the result pane (target <= 100 ms).

Run: python benchmarks/bench_webui.py
"""

from __future__ import annotations

import base64
import io
import logging
import shutil
import statistics
import tempfile
import threading
import time

import numpy as np

from seg2sat import generate, masks
from seg2sat.testing.tiny import make_tiny
from seg2sat.webui import create_app

SIDE, STEPS, ROUNDS = 256, 2, 7


def town(side: int) -> np.ndarray:
    ids = np.full((side, side), 11, np.uint8)
    ids[:, side // 2 - 4 : side // 2 + 4] = 3
    ids[side // 8 : side // 3, side // 8 : side // 3] = 1
    return ids


def api_overhead(model_dir: str) -> None:
    app = create_app({"MODEL": model_dir, "DEVICE": "cpu"})
    client = app.test_client()
    backend = app.extensions["seg2sat_ui"].worker.backend  # the in-process diffusion backend: its pipeline
    backend.load()
    buffer = io.BytesIO()
    masks.to_image(town(SIDE)).save(buffer, format="PNG")
    body = {"mask": base64.b64encode(buffer.getvalue()).decode(), "place": "Lyon", "seed": 1, "steps": STEPS}
    warm = client.post("/api/generate", json=body).get_json()  # warm-up, and the caption
    prompt = warm["prompt"]
    while client.get(f"/api/jobs/{warm['job']['id']}").get_json()["status"] != "done":
        time.sleep(0.05)

    def direct():
        generate(town(SIDE), prompt, seed=1, steps=STEPS, pipeline=backend.pipe).images[0].save(io.BytesIO(), format="PNG")

    def through_api():
        job = client.post("/api/generate", json=body).get_json()["job"]["id"]
        while (state := client.get(f"/api/jobs/{job}").get_json())["status"] != "done":
            time.sleep(0.05)
        client.get(state["results"][0]["url"])

    times = {"direct": [], "api": []}
    for _ in range(ROUNDS):
        for name, fn in (("direct", direct), ("api", through_api)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    d, a = statistics.median(times["direct"]), statistics.median(times["api"])
    print(f"API job {SIDE}x{SIDE}, {STEPS} steps (tiny pipeline, median of {ROUNDS}): direct {d * 1000:.0f} ms, "
          f"through the UI API {a * 1000:.0f} ms, overhead {(a - d) * 1000:.0f} ms ({(a - d) / d:+.1%}; "
          f"polling every 50 ms accounts for up to 50 ms)")
    app.extensions["seg2sat_ui"].worker.close()


MODULES = """const state = await import("/static/state.js");  // the page's own module instances
    const editor = await import("/static/editor.js");
    const canvas = await import("/static/canvas.js");"""

FILL_AND_PREVIEW = """async (side) => {
    // Fill: the big field of a town-like map, median of 5. Preview: from the end of a stroke to its
    // pixels drawn in the result pane (POST /api/preview and the patch), median of 5.
    """ + MODULES + """
    const median = (xs) => xs.sort((a, b) => a - b)[2];
    const previewBusy = () => document.getElementById("preview-canvas").getAttribute("aria-busy") !== "false";
    const fills = [], previews = [];
    for (let i = 0; i < 5; i++) {
        const ids = new Uint8Array(side * side).fill(11);
        for (let y = 0; y < side; y++) for (let x = side / 2 - 4; x < side / 2 + 4; x++) ids[y * side + x] = 3;
        state.setMap(side, side, ids);
        const t = performance.now();
        state.floodFill(3, 3, 10);
        fills.push(performance.now() - t);
        await new Promise((r) => setTimeout(r, 300));
        while (previewBusy()) await new Promise((r) => setTimeout(r, 20));
        delete document.body.dataset.previewMs;
        editor.line(40 + i * 20, 60, 160 + i * 20, 90, false, 5);
        state.endStroke();
        while (document.body.dataset.previewMs === undefined) await new Promise((r) => setTimeout(r, 2));
        previews.push(Number(document.body.dataset.previewMs));
    }
    return [median(fills), median(previews)];
}"""


def browser_redraw() -> None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    try:
        from playwright.sync_api import sync_playwright
        from werkzeug.serving import make_server
    except ImportError:
        print("browser redraw: skipped (playwright not installed)")
        return
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    app = create_app({"BACKEND": "procedural"})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    args = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync"]
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=args)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.port}/")
            page.wait_for_selector("body[data-ready=true]")
            for side in (512, 1024, 2048):
                ms = page.evaluate("""async (side) => {
                    """ + MODULES + """
                    state.setMap(side, side, new Uint8Array(side * side).fill(11));
                    const times = [];
                    for (let i = 0; i < 15; i++) {
                        canvas.flush();
                        const t = performance.now();
                        editor.line(i * 7 % side, i * 13 % side, i * 7 % side + 12, i * 13 % side + 9, false, 1 + (i % 19));
                        canvas.flush();
                        times.push(performance.now() - t);
                    }
                    times.sort((a, b) => a - b);
                    return times[7];
                }""", side)
                print(f"browser redraw per stroke step at {side}x{side}: {ms:.1f} ms (median of 15, chromium headless)")
                fill, preview = page.evaluate(FILL_AND_PREVIEW, side)
                print(f"  fill of {side}x{side} (town pattern, the fields around the block): {fill:.1f} ms; "
                      f"live preview after a 12 px stroke: {preview:.0f} ms (medians of 5)")
            browser.close()
    except Exception as exc:
        print(f"browser redraw: skipped ({exc.__class__.__name__}: {exc})")
    finally:
        server.shutdown()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        api_overhead(str(make_tiny(f"{tmp}/tiny")))
    browser_redraw()
