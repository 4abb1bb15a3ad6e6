"""Drawing2Map as a new user meets it (issue 24), in Debian's chromium: versions of different sizes, the
right pane following the map, big imports, the error banner, the keyboard, offline places, the palette,
outpaint's scale, inpaint on an old result, and the small things."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image
from test_ui_browser import ROOT, TIMEOUT, UIServer, canvas_ids, drag, generate_and_wait, new_canvas, pick

from seg2sat import masks
from seg2sat.classes import BY_NAME
from seg2sat.render import render_array

MAP_SIZE = "[document.getElementById('mask-canvas').width, document.getElementById('mask-canvas').height]"
SIZES = {"laptop": (1280, 800), "desktop": (1920, 1080), "narrow": (900, 800)}


@pytest.fixture(scope="module")
def server():
    ui = UIServer({"BACKEND": "procedural", "WARMUP": False, "SAMPLES_DIR": str(ROOT / "examples" / "masks")})
    yield ui
    ui.close()


def open_at(browser, url: str, size: str = "laptop", context=None):
    """A fresh page (its own browser storage unless ``context``) at one of SIZES, once the page is ready."""
    width, height = SIZES[size]
    context = context or browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    page.js_errors, page.not_found = [], []
    page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
    page.on("response", lambda r: page.not_found.append(r.url) if r.status == 404 else None)
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    return page


def box(page, selector: str) -> dict:
    return page.locator(selector).bounding_box()


def overlap(a: dict, b: dict) -> bool:
    return a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"] and \
        a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"]


def preview_settled(page) -> None:
    page.wait_for_function("document.getElementById('preview-canvas').getAttribute('aria-busy') === 'false'")


def preview_pixels(page) -> np.ndarray:
    url = page.evaluate("document.getElementById('preview-canvas').toDataURL('image/png')")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def assert_preview_is_the_map(page) -> None:
    """The right pane shows the live preview, and it is exactly the offline render of the map on the left."""
    assert page.is_visible("#preview-canvas") and page.is_hidden("#result-image")
    assert page.inner_text("#result-title").upper() == "PREVIEW"
    preview_settled(page)
    expected = render_array(canvas_ids(page), seed=int(page.input_value("#seed")))
    assert np.array_equal(preview_pixels(page), expected)


def outpaint(page, side: str, pixels: int) -> None:
    page.select_option("#outpaint-side", side)
    page.fill("#outpaint-pixels", str(pixels))
    page.click("#extend")
    generate_and_wait(page, "#run-outpaint")


# ---------------------------------------------------------------- 1. versions of different sizes


def test_stepping_quickly_through_versions_of_different_sizes_shows_no_error(browser, server):
    page = open_at(browser, server.url)
    generate_and_wait(page)  # 512 x 512
    page.click("#outpaint")
    outpaint(page, "right", 128)  # 640 x 512
    outpaint(page, "all", 64)  # 768 x 640
    page.click("#leave-mode")
    assert page.inner_text("#version-label") == "3 / 3"
    # Every preview answer is late, as on a busy server: the map changes under the requests in flight.
    page.evaluate("""() => { const real = window.fetch;
        window.fetch = (url, options) => String(url).includes('/api/preview')
          ? new Promise((resolve, reject) => setTimeout(() => real(url, options).then(resolve, reject), 120))
          : real(url, options); }""")
    page.evaluate("""async () => { const back = document.getElementById('version-back');
        const next = document.getElementById('version-next');
        for (const b of [back, back, next, next, back, back, next, back, back]) {
          b.click(); await new Promise(r => setTimeout(r, 40)); } }""")
    preview_settled(page)
    page.wait_for_timeout(400)
    preview_settled(page)
    assert page.is_hidden("#error"), page.inner_text("#error-text")
    assert page.inner_text("#version-label") == "1 / 3" and page.evaluate(MAP_SIZE) == [512, 512]
    expected = render_array(canvas_ids(page), seed=int(page.input_value("#seed")))
    assert np.array_equal(preview_pixels(page), expected)  # no patch of an older map left in it
    assert page.js_errors == []
    page.close()


def test_a_failed_preview_says_so_in_the_pages_words(browser, server):
    page = open_at(browser, server.url)
    page.route("**/api/preview", lambda route: route.fulfill(status=400, content_type="application/json",
                                                              body=json.dumps({"error": "box: [1, 2] is not a rectangle"})))
    pick(page, "water")
    drag(page, [(100, 100), (140, 100)])
    page.wait_for_selector("#error:not([hidden])")
    assert "live preview" in page.inner_text("#error-text") and "box" not in page.inner_text("#error-text")
    page.close()


# ---------------------------------------------------------------- 2. the right pane follows the map


def test_the_right_pane_follows_the_map_until_the_next_result(browser, server, tmp_path):
    page = open_at(browser, server.url)
    generate_and_wait(page)
    assert "from the map on the left" in page.inner_text("#result-meta")  # a result says what it was made from
    page.click("#samples button[data-sample=river]")
    assert_preview_is_the_map(page)

    generate_and_wait(page)
    new_canvas(page, 128, 96)
    assert_preview_is_the_map(page)

    generate_and_wait(page)
    pick(page, "building")
    drag(page, [(10, 10), (60, 40)])
    assert_preview_is_the_map(page)

    generate_and_wait(page)
    ids = np.full((64, 80), BY_NAME["water"].id, dtype=np.uint8)
    masks.to_image(ids).save(tmp_path / "lake.png")
    page.set_input_files("#import-file", str(tmp_path / "lake.png"))
    page.wait_for_function("document.getElementById('mask-canvas').width === 80")
    assert_preview_is_the_map(page)

    page.click("#version-back")  # an older result comes back with its own map
    assert page.is_visible("#result-image") and page.evaluate(MAP_SIZE) == [128, 96]
    assert page.js_errors == []
    page.close()


# ---------------------------------------------------------------- 3. big imports, one size rule


def test_a_5000px_import_is_offered_a_nearest_resize_and_one_size_rule_holds(browser, server, tmp_path):
    page = open_at(browser, server.url)
    options = page.evaluate("fetch('/api/options').then(r => r.json())")
    least = options["min_side"]
    assert page.get_attribute("#canvas-width", "min") == str(least) == page.get_attribute("#osm-size", "min")

    ids = np.full((5000, 5000), BY_NAME["agricultural land"].id, dtype=np.uint8)
    ids[:, :1234] = BY_NAME["water"].id
    ids[2000:2100:, :] = BY_NAME["impervious surface"].id
    ids[3000:3400, 3000:3900] = BY_NAME["building"].id
    masks.to_image(ids).save(tmp_path / "big.png")
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.set_input_files("#import-file", str(tmp_path / "big.png"))
    page.wait_for_function("document.getElementById('mask-canvas').width === 2048", timeout=120_000)
    assert "5000 × 5000 px" in asked[0] and "2048 × 2048 px" in asked[0] and "nearest" in asked[0]
    expected = np.asarray(Image.fromarray(ids).resize((2048, 2048), Image.NEAREST))
    assert np.array_equal(canvas_ids(page), expected)  # nearest neighbour: every pixel a class, none blended
    assert "Scaled from 5000 × 5000 px" in page.inner_text("#import-note")

    masks.to_image(ids[:24, :20]).save(tmp_path / "small.png")  # too small: offered a resize too; declined
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.set_input_files("#import-file", str(tmp_path / "small.png"))
    page.wait_for_function("document.getElementById('import-note').textContent.includes('was not loaded')")
    assert f"{least} × 38 px" in asked[1] and page.evaluate(MAP_SIZE)[0] == 2048

    new_canvas(page, least + 8, least + 8)  # New follows the same rule as imports
    page.fill("#canvas-width", str(least - 1))
    page.click("#new-canvas")
    assert f"at least {least} px" in page.inner_text("#error-text") and page.evaluate(MAP_SIZE)[0] == least + 8
    assert page.js_errors == []
    page.close()


# ---------------------------------------------------------------- 4. the error banner


@pytest.mark.parametrize("size", ["laptop", "narrow"])
def test_the_error_banner_never_covers_generate_and_goes_away(browser, server, size):
    page = open_at(browser, server.url, size)

    def fail() -> None:
        page.fill("#steps", "0")
        page.evaluate("window.scrollTo(0, 0)")
        page.click("#generate")
        page.wait_for_selector("#error:not([hidden])")
        banner = box(page, "#error")
        for selector in ("#generate", "#place", "#style", "#steps"):
            assert not overlap(banner, box(page, selector)), selector
        hit = page.evaluate("""() => { const r = document.getElementById('generate').getBoundingClientRect();
            return r.bottom < 0 || r.top > innerHeight || document.elementFromPoint(r.x + r.width / 2,
              r.y + r.height / 2).id === 'generate'; }""")
        assert hit  # a click on Generate lands on Generate

    fail()
    page.keyboard.press("Escape")
    assert page.is_hidden("#error")
    fail()
    page.fill("#steps", "2")  # the cause is fixed
    assert page.is_hidden("#error")
    page.clock.install()  # the page's timers, run forward instead of waited for
    fail()
    page.clock.run_for(5_000)
    assert page.is_visible("#error")  # long enough to be read
    page.clock.run_for(60_000)
    page.wait_for_selector("#error", state="hidden", timeout=5000)  # after a while
    page.close()


# ---------------------------------------------------------------- 5. keyboard


def test_tab_reaches_open_project_and_focus_goes_to_cancel_while_a_job_runs(browser, server):
    page = open_at(browser, server.url)
    seen = []
    for _ in range(120):
        page.keyboard.press("Tab")
        seen.append(page.evaluate("document.activeElement.id"))
        if seen[-1] == "open-project":
            break
    assert seen[-1] == "open-project", seen
    assert page.evaluate("getComputedStyle(document.querySelector('.file-inline')).outlineStyle") != "none"

    held, released = [], []

    def hold(route):  # the job stays "running" until released
        route.continue_() if released else held.append(route)

    page.route("**/api/jobs/*", hold)
    page.focus("#generate")
    page.keyboard.press("Enter")
    page.wait_for_selector("#cancel:enabled")  # the job runs
    assert page.evaluate("document.activeElement.id") == "cancel"
    released.append(True)
    for route in held:
        route.continue_()
    page.wait_for_function("document.querySelectorAll('.result').length === 1")
    assert page.evaluate("document.activeElement.id") == "generate"
    page.close()


# ---------------------------------------------------------------- 6. a place while offline


def test_an_offline_place_is_said_in_plain_words(browser, tmp_path):
    ui = UIServer({"BACKEND": "procedural", "WARMUP": False, "OVERPASS_URL": "http://127.0.0.1:9",
                   "NOMINATIM_URL": "http://127.0.0.1:9", "OSM_CACHE_DIR": str(tmp_path / "osm")})
    page = open_at(browser, ui.url)
    try:
        for place in ("45.76,4.83", "1 Rue du Village, Lyon"):
            page.fill("#osm-place", place)
            page.click("#osm-fetch")
            page.wait_for_selector("#error:not([hidden])")
            text = page.inner_text("#error-text")
            assert "could not be reached" in text and "another server" in text, text
            for internal in ("Errno", "SEG2SAT_", "urlopen", "--", "Traceback", "Connection refused"):
                assert internal not in text, text
            page.type("#osm-place", " ")  # editing the place clears its error
            assert page.is_hidden("#error")
        page.fill("#osm-place", "45.70,4.80,45.75,4.85")  # a box sets its own size
        assert page.is_disabled("#osm-size")
        page.click("#osm-fetch")
        page.wait_for_selector("#error:not([hidden])")
        assert "larger number of m/px" in page.inner_text("#error-text")
    finally:
        page.close()
        ui.close()


# ---------------------------------------------------------------- 7. the palette


@pytest.mark.parametrize("size", list(SIZES))
def test_every_palette_name_is_readable_without_hovering(browser, server, size):
    page = open_at(browser, server.url, size)
    cut = page.evaluate("""[...document.querySelectorAll('.swatch')].filter(b => { const s = b.querySelector('span');
        return s.scrollWidth > s.clientWidth || b.scrollWidth > b.clientWidth || s.scrollHeight > s.clientHeight
          || s.getBoundingClientRect().right > b.getBoundingClientRect().right; }).map(b => b.textContent)""")
    assert cut == []
    assert page.locator(".swatch").count() == 19
    page.close()


# ---------------------------------------------------------------- 8. outpaint at the map's scale


def test_outpaint_shows_the_result_at_the_maps_scale_with_its_help_in_view(browser, server):
    page = open_at(browser, server.url)
    generate_and_wait(page)
    page.click("#outpaint")
    page.select_option("#outpaint-side", "right")
    page.fill("#outpaint-pixels", "128")
    page.click("#extend")
    page.wait_for_function("document.getElementById('mask-canvas').width === 640")
    target, result = box(page, "#target-image"), box(page, "#result-image")
    map_stage, result_stage = box(page, "#stage"), box(page, "#result-stage")
    assert result["width"] == pytest.approx(target["width"], abs=1)
    assert result["width"] == pytest.approx(result_stage["width"] * 512 / 640, abs=1)
    assert result["x"] - result_stage["x"] == pytest.approx(target["x"] - map_stage["x"], abs=1)
    for selector in ("#mode-help", "#run-outpaint", "#extend", "#leave-mode"):
        b = box(page, selector)
        assert b["y"] + b["height"] <= 800, selector
    assert page.js_errors == []
    page.close()


# ---------------------------------------------------------------- 9. inpaint on an old result


def test_inpaint_on_an_old_result_asks_before_replacing_a_new_map(browser, server):
    page = open_at(browser, server.url)
    generate_and_wait(page)
    version_map = canvas_ids(page)
    page.click("#samples button[data-sample=river]")
    river = canvas_ids(page)
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.click("#inpaint")
    page.wait_for_timeout(200)
    assert asked and "result 1" in asked[0] and page.is_hidden("#mode-panel")
    assert np.array_equal(canvas_ids(page), river)  # kept
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#inpaint")
    page.wait_for_selector("#mode-panel:not([hidden])")
    assert np.array_equal(canvas_ids(page), version_map) and page.is_visible("#result-image")
    page.click("#leave-mode")
    page.click("#undo")
    assert np.array_equal(canvas_ids(page), river)  # one Undo away, as the question said
    page.close()


# ---------------------------------------------------------------- 10. small things


def test_the_small_things(browser, server, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = open_at(browser, server.url, context=context)
    assert page.not_found == []  # the favicon too
    assert page.input_value("#place") == page.get_attribute("#osm-place", "placeholder")  # one example address
    shown = box(page, "#stage")["width"]
    assert page.inner_text("#zoom-value") == f"{round(100 * shown / 512)} %" != "100 %"  # the scale shown at Fit
    for selector in ("#save-project", "#open-project"):
        b = box(page, selector)
        assert 0 <= b["y"] and b["y"] + b["height"] <= 800, selector

    page.fill("#steps", "")
    page.click("#generate")
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error-text") == "Steps: type a number from 1 to 150."  # not "got 0"
    page.fill("#steps", "1")

    generate_and_wait(page)
    meta = page.evaluate("(() => { const e = document.getElementById('result-meta');"
                         " return [e.scrollWidth, e.clientWidth, e.textContent]; })()")
    assert meta[0] <= meta[1] and "photorealistic" in meta[2]

    (tmp_path / "cut.json").write_text('{"drawing2map_project": 1, "map": {"w": 6')
    page.set_input_files("#open-project", str(tmp_path / "cut.json"))
    page.wait_for_selector("#error:not([hidden])")
    text = page.inner_text("#error-text")
    assert "not a Drawing2Map project file" in text and "Unexpected" not in text and "JSON input" not in text

    pick(page, "vineyard")
    page.click("#zoom-in")
    zoom = page.inner_text("#zoom-value")
    page.wait_for_selector("#saved-note[data-state=kept]")  # a zoom is kept too
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.inner_text("#zoom-value") == zoom
    assert page.get_attribute(f".swatch[data-class='{BY_NAME['vineyard'].id}']", "aria-checked") == "true"
    assert page.inner_text("#hint").startswith("Welcome back")
    page.mouse.click(5, 5)
    assert not page.inner_text("#hint").startswith("Welcome back")  # said once
    assert page.js_errors == []
    context.close()
