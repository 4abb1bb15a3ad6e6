"""Drawing2Map end to end in a real browser: Debian's chromium driven by Playwright.

The UI server runs in a thread on 127.0.0.1 (a free port) with the tiny pipeline
loaded from disk; the browser draws with the mouse and the keyboard, like a user.
"""

from __future__ import annotations

import base64
import io
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seg2sat import masks
from seg2sat.classes import BY_NAME
from seg2sat.request import NUMERIC_FIELDS

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 30_000


class UIServer:
    """The web UI on a free local port, served from a thread."""

    def __init__(self, config: dict):
        from werkzeug.serving import make_server

        from seg2sat.webui import create_app

        self.app = create_app(config)
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.app.extensions["seg2sat_ui"].worker.close()


@pytest.fixture(scope="module")
def server(tiny_dir):
    ui = UIServer({"MODEL": str(tiny_dir), "DEVICE": "cpu", "SAMPLES_DIR": str(ROOT / "examples" / "masks")})
    yield ui
    ui.close()


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page.set_default_timeout(TIMEOUT)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    page.js_errors = errors
    return page


def new_canvas(page, width: int, height: int) -> None:
    page.fill("#canvas-width", str(width))
    page.fill("#canvas-height", str(height))
    page.click("#new-canvas")
    page.wait_for_function(f"document.getElementById('mask-canvas').width === {width}")


def pick(page, class_name: str) -> None:
    page.click(f".swatch[data-class='{BY_NAME[class_name].id}']")


def tool(page, name: str) -> None:
    page.click(f"#tool-{name}")


def at(page, x: int, y: int) -> tuple[float, float]:
    """Screen position of the centre of canvas pixel (x, y)."""
    box = page.locator("#overlay-canvas").bounding_box()
    w, h = page.evaluate("[document.getElementById('mask-canvas').width, document.getElementById('mask-canvas').height]")
    return box["x"] + (x + 0.5) * box["width"] / w, box["y"] + (y + 0.5) * box["height"] / h


def drag(page, points: list[tuple[int, int]]) -> None:
    page.mouse.move(*at(page, *points[0]))
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*at(page, *point), steps=4)
    page.mouse.up()


def click_pixel(page, x: int, y: int) -> None:
    page.mouse.click(*at(page, x, y))


def canvas_ids(page) -> np.ndarray:
    """The class of every pixel on the editor canvas, failing on any colour that is not a class colour."""
    page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    url = page.evaluate("document.getElementById('mask-canvas').toDataURL('image/png')")
    return rgb_to_ids(np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")))


def rgb_to_ids(rgb: np.ndarray) -> np.ndarray:
    snapped = masks.snap(Image.fromarray(rgb))
    assert snapped.off_palette == 0, "a pixel that is not a class colour reached the canvas"
    return snapped.ids


def export(page) -> Image.Image:
    with page.expect_download() as info:
        page.click("#export")
    return Image.open(info.value.path()).convert("RGBA")


def generate_and_wait(page, button: str = "#generate") -> None:
    before = page.locator(".result").count()
    page.click(button)
    page.wait_for_function(f"document.querySelectorAll('.result').length > {before}")
    page.wait_for_function("document.getElementById('result-image').complete && !document.getElementById('result-image').hidden")


def shown_image(page, selector: str = "#result-image") -> np.ndarray:
    """The pixels of an image element on the page (a blob: URL the page made), as RGB."""
    url = page.evaluate("""(sel) => { const img = document.querySelector(sel);
        const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
        c.getContext('2d').drawImage(img, 0, 0); return c.toDataURL('image/png'); }""", selector)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def test_settings_inputs_take_labels_defaults_and_ranges_from_the_server(browser, server):
    page = open_page(browser, server.url)
    for input_id, name in (("steps", "steps"), ("guidance", "guidance_scale"), ("num-images", "num_images"),
                           ("controlnet-scale", "controlnet_scale")):
        setting = NUMERIC_FIELDS[name]
        got = page.eval_on_selector(f"#{input_id}", "e => [e.min, e.max, e.value, e.closest('label').textContent.trim()]")
        assert [float(v) for v in got[:3]] == [setting.low, setting.high, setting.default]
        assert got[3] == setting.label
    assert page.js_errors == []
    page.close()


def test_drawing_tools_are_pixel_exact_and_undoable(browser, server):
    page = open_page(browser, server.url)
    assert page.locator(".swatch").count() == 19
    new_canvas(page, 64, 64)
    assert (canvas_ids(page) == BY_NAME["agricultural land"].id).all()  # the default background class

    pick(page, "water")
    page.fill("#brush-size", "5")
    page.dispatch_event("#brush-size", "input")
    drag(page, [(5, 5), (30, 5), (30, 20)])
    assert page.is_visible("#brush-cursor")  # the outline of the brush follows the pointer
    ids = canvas_ids(page)
    water = BY_NAME["water"].id
    assert ids[5, 5] == ids[5, 30] == ids[20, 30] == water and ids[40, 40] != water
    assert ids[5, 2] != water  # a 5 px round brush reaches 2 px from the stroke, not more
    assert page.locator("#shares li").first.inner_text().startswith("agricultural land")
    assert "water" in page.locator("#shares").inner_text()

    pick(page, "building")
    tool(page, "rect")
    drag(page, [(40, 40), (50, 55)])
    ids = canvas_ids(page)
    assert (ids[40:56, 40:51] == BY_NAME["building"].id).all() and ids[39, 45] != BY_NAME["building"].id

    pick(page, "deciduous")
    tool(page, "fill")
    click_pixel(page, 60, 2)
    ids = canvas_ids(page)
    deciduous = BY_NAME["deciduous"].id
    assert (ids == deciduous).sum() == (ids != water).sum() - (ids == BY_NAME["building"].id).sum()
    assert ids[5, 5] == water  # the fill stopped at the stroke

    page.mouse.move(*at(page, 45, 45))
    assert page.inner_text("#cursor-info") == "45, 45: building"

    tool(page, "eyedropper")
    click_pixel(page, 30, 10)
    assert page.get_attribute(f".swatch[data-class='{water}']", "aria-checked") == "true"

    page.select_option("#background", str(BY_NAME["bare soil"].id))
    tool(page, "eraser")
    drag(page, [(45, 45), (46, 45)])
    assert canvas_ids(page)[45, 45] == BY_NAME["bare soil"].id

    before_undo = canvas_ids(page)
    page.click("#undo")  # eraser stroke gone
    assert canvas_ids(page)[45, 45] == BY_NAME["building"].id
    page.keyboard.press("Control+z")  # fill gone
    assert canvas_ids(page)[60, 2] == BY_NAME["agricultural land"].id
    page.keyboard.press("Control+Shift+z")
    assert canvas_ids(page)[60, 2] == deciduous
    page.click("#redo")
    assert np.array_equal(canvas_ids(page), before_undo)

    exported = export(page)
    assert exported.size == (64, 64)
    assert np.array_equal(rgb_to_ids(np.asarray(exported.convert("RGB"))), before_undo)
    assert (np.asarray(exported)[..., 3] == 255).all()

    page.keyboard.press("]")
    assert page.inner_text("#brush-size-value") == "6"
    page.click("#clear")
    assert (canvas_ids(page) == BY_NAME["bare soil"].id).all()
    assert page.js_errors == []
    page.close()


def test_import_snaps_and_samples_load(browser, server, tmp_path):
    page = open_page(browser, server.url)
    town = masks.load_mask(ROOT / "examples" / "masks" / "town.png").ids
    assert np.array_equal(canvas_ids(page), town)  # a newcomer starts from the town sample, not a blank square
    new_canvas(page, 64, 64)
    page.click("#samples button[data-sample=town]")
    page.wait_for_function("document.getElementById('import-note').textContent.startsWith('Sample town')")
    assert np.array_equal(canvas_ids(page), town)
    assert np.array_equal(rgb_to_ids(np.asarray(export(page).convert("RGB"))), town)

    # An anti-aliased, JPEG-ish drawing: off-palette pixels are snapped and their share is shown.
    ids = np.full((64, 96), BY_NAME["water"].id, dtype=np.uint8)
    ids[:, 48:] = BY_NAME["herbaceous vegetation"].id
    rgb = masks.to_rgb(ids).astype(np.int16)
    rgb[:16] += 6
    path = tmp_path / "drawing.jpg.png"
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path)
    page.set_input_files("#import-file", str(path))
    page.wait_for_function("document.getElementById('mask-canvas').width === 96")
    assert np.array_equal(canvas_ids(page), ids)
    assert "25.0 % of the pixels were off-palette" in page.inner_text("#import-note")
    page.click("#undo")
    assert np.array_equal(canvas_ids(page), town)

    # Too small for the size rule (32 px a side, /api/options): the page offers to resize (accepted here).
    Image.fromarray(masks.to_rgb(ids[:20, :24])).save(tmp_path / "tiny.png")
    page.once("dialog", lambda dialog: dialog.accept())
    page.set_input_files("#import-file", str(tmp_path / "tiny.png"))
    page.wait_for_function("document.getElementById('mask-canvas').height === 32")
    assert page.evaluate("document.getElementById('mask-canvas').width") == 38  # 24 x 20 scaled by 32 / 20

    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    page.set_input_files("#import-file", str(bad))
    page.wait_for_selector("#error:not([hidden])")
    assert "Imported file: the decoded bytes are not an image" in page.inner_text("#error-text")
    assert page.js_errors == []
    page.close()


def test_progress_and_cancel(browser, server):
    page = open_page(browser, server.url)
    new_canvas(page, 64, 64)
    page.fill("#steps", "150")
    page.fill("#num-images", "8")
    page.click("#generate")
    page.wait_for_function("/Image [1-8] of 8 · step [0-9]+ of 150/.test(document.getElementById('progress-text').textContent)")
    page.click("#cancel")
    assert page.inner_text("#progress-text") == "Cancelling…"
    page.wait_for_function("document.getElementById('progress-text').textContent === 'Cancelled'")
    assert page.locator(".result").count() == 0 and page.is_disabled("#cancel") and page.is_enabled("#generate")
    page.fill("#steps", "0")
    page.click("#generate")
    page.wait_for_selector("#error:not([hidden])")
    assert "Steps: must be an integer between 1 and 150, got 0" in page.inner_text("#error-text")  # the label's word
    page.close()


def test_missing_weights_are_explained_on_the_page(browser, tmp_path):
    ui = UIServer({"MODEL": str(tmp_path / "no-weights"), "DEVICE": "cpu", "FALLBACK": False})
    try:
        page = open_page(browser, ui.url)
        page.wait_for_selector("#error:not([hidden])")
        assert "does not exist" in page.inner_text("#error-text") and "--model" in page.inner_text("#error-text")
        assert "not available" in page.inner_text("#backend-status")
        page.close()
    finally:
        ui.close()


def _pixel_colour(page, x: int, y: int) -> str:
    """The #rrggbb the editor canvas shows at pixel (x, y)."""
    page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    rgb = page.evaluate(f"Array.from(document.getElementById('mask-canvas').getContext('2d')"
                        f".getImageData({x}, {y}, 1, 1).data.slice(0, 3))")
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _inside(expected: np.ndarray, class_id: int) -> tuple[int, int]:
    """(x, y) of a pixel of the class well inside its area (eroded by 3 px), so rounding cannot move it."""
    windows = np.lib.stride_tricks.sliding_window_view(expected == class_id, (7, 7))
    rows, cols = np.nonzero(windows.all(axis=(2, 3)))
    middle = len(rows) // 2
    return int(cols[middle]) + 3, int(rows[middle]) + 3


def test_start_from_a_place(browser, overpass, nominatim, tmp_path):
    """Type an address, press Enter: the OSM mask of the (stub) village fills the canvas, undoably; Generate uses it."""
    from seg2sat.gis import osm
    from seg2sat.testing import village

    address = "1 Rue du Village, Lyon"
    ui = UIServer({"BACKEND": "procedural", "WARMUP": False, "OVERPASS_URL": overpass[0],
                   "NOMINATIM_URL": f"http://{nominatim[0]}", "USER_AGENT": "seg2sat-ui-tests (test@example.org)",
                   "OSM_CACHE_DIR": str(tmp_path / "osm")})
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(TIMEOUT)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(ui.url)
        page.wait_for_selector("body[data-ready=true]")
        assert page.input_value("#osm-size") == "512" and page.input_value("#osm-resolution") == "0.2"
        assert page.is_visible("#osm-place") and page.is_visible("#osm-fetch")  # above the fold at 1280x800
        new_canvas(page, 64, 64)
        drawing = canvas_ids(page)

        held = []  # hold the request, to see the page while it waits for the services
        page.route("**/api/place", lambda route: held.append(route))
        page.fill("#osm-place", address)
        page.press("#osm-place", "Enter")
        page.wait_for_function("document.getElementById('osm-status').textContent.startsWith('Fetching the map of')")
        assert page.inner_text("#osm-status") == f"Fetching the map of {address}…"
        assert page.is_disabled("#osm-fetch") and page.is_visible("#osm-progress")
        page.wait_for_timeout(100)
        assert len(held) == 1 and held[0].request.post_data_json == {
            "place": address, "size": 512, "resolution": 0.2, "background": BY_NAME["agricultural land"].id}
        held[0].continue_()
        page.wait_for_function("document.getElementById('mask-canvas').width === 512")
        page.unroute("**/api/place")
        page.wait_for_function("!document.getElementById('osm-fetch').disabled")

        grid = osm.grid_around(*village.centre_latlon())
        expected = village.expected_ids(grid)
        assert (canvas_ids(page) == expected).mean() >= 0.999
        for name in ("building", "swimming pool", "water", "coniferous", "impervious surface"):
            assert _pixel_colour(page, *_inside(expected, BY_NAME[name].id)) == BY_NAME[name].colour, name
        page.wait_for_selector("#prompt-preview[aria-busy=false]")  # the caption, from the server
        assert page.input_value("#place") == address and address in page.inner_text("#prompt-preview")
        assert page.inner_text("#osm-status").startswith(f"{address}: 512 × 512 px, 0.2 m/px (EPSG:32631), 14 OSM features.")
        assert page.is_hidden("#osm-progress") and page.is_hidden("#error")
        page.evaluate("window.scrollTo(0, 0)")  # what the user sees: the control and the map, at 1280x800
        page.screenshot(path=str(tmp_path / "start-from-a-place.png"))

        page.click("#undo")  # the drawing before the place comes back
        assert np.array_equal(canvas_ids(page), drawing)
        page.click("#redo")
        assert (canvas_ids(page) == expected).mean() >= 0.999

        page.fill("#steps", "1")
        generate_and_wait(page)
        card = page.locator(".result").first
        assert f"Aerial view of {address}. herbaceous vegetation, " in card.inner_text()
        assert shown_image(page).shape == (512, 512, 3)

        page.fill("#osm-place", "nowhere")
        page.click("#osm-fetch")
        page.wait_for_selector("#error:not([hidden])")
        assert "Place: Nominatim found no place called 'nowhere'" in page.inner_text("#error-text")
        assert page.inner_text("#osm-status") == "No map of nowhere." and page.is_enabled("#osm-fetch")
        assert (canvas_ids(page) == expected).mean() >= 0.999  # the map stays
        assert errors == []
    finally:
        page.close()
        ui.close()
