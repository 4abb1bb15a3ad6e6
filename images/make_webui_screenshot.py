"""The README's pictures of the web UI: ``python images/make_webui_screenshot.py`` writes images/webui_start.png
(the first screen: a sample map and its live preview) and images/webui_example.png (after Generate).

The town sample (the page opens on it) turned into an image by the procedural backend
(no weights, so the picture is the same on every machine), in headless chromium
(Debian's, driven by Playwright) with a 1280x800 window, captured as a user sees it:
the map and its result side by side, without scrolling.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from playwright.sync_api import sync_playwright  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from seg2sat.webui import create_app  # noqa: E402

ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]


def screenshot(out: Path, chromium: str) -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    app = create_app({"BACKEND": "procedural", "SAMPLES_DIR": str(ROOT / "examples" / "masks")})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(60_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"http://127.0.0.1:{server.port}/")
            page.wait_for_selector("body[data-ready=true]")
            page.wait_for_selector("#preview-canvas[aria-busy=false]")  # the live preview is drawn
            page.screenshot(path=str(out.with_name("webui_start.png")))  # what a newcomer sees first
            page.fill("#seed", "3")
            page.evaluate("window.scrollTo(0, 0)")
            page.click("#generate")
            page.wait_for_function("document.querySelectorAll('.result').length === 1")
            page.wait_for_function("!document.getElementById('result-image').hidden"
                                   " && document.getElementById('result-image').complete")
            box = page.locator("#overlay-canvas").bounding_box()  # the pointer on the map: class name and brush
            page.mouse.move(box["x"] + box["width"] * 200 / 512, box["y"] + box["height"] * 300 / 512)
            if errors or page.is_visible("#error"):
                raise RuntimeError(f"the page reported an error: {errors or page.inner_text('#error-text')}")
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
            browser.close()
    finally:
        server.shutdown()
        app.extensions["seg2sat_ui"].worker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "images" / "webui_example.png")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium",
                        help="the browser to drive (default: chromium on the PATH)")
    args = parser.parse_args()
    screenshot(args.out, args.chromium)
    print(args.out)


if __name__ == "__main__":
    main()
