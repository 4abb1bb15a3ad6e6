"""Drawing2Map as people use it, at 1280 x 800 in Debian's chromium: the result beside the drawing,
the live preview, edits that chain, work that survives a reload, errors where the user looks."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image
from test_ui_browser import (
    ROOT,
    TIMEOUT,
    UIServer,
    at,
    canvas_ids,
    drag,
    generate_and_wait,
    new_canvas,
    pick,
    shown_image,
    tool,
)

from seg2sat.classes import BY_NAME
from seg2sat.render import render_array


@pytest.fixture(scope="module")
def server(tiny_dir):
    ui = UIServer({"MODEL": str(tiny_dir), "DEVICE": "cpu", "SAMPLES_DIR": str(ROOT / "examples" / "masks")})
    yield ui
    ui.close()


def laptop(browser, url: str, context=None):
    """A page at 1280 x 800, like a laptop screen; its own browser storage unless ``context`` is given."""
    context = context or browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    page.js_errors = []
    page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    return page


def in_viewport(page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 800 and box["x"] + box["width"] <= 1280


def brush(page, size: int) -> None:
    page.fill("#brush-size", str(size))
    page.dispatch_event("#brush-size", "input")


def test_the_result_appears_beside_the_map_without_scrolling_and_the_typed_seed_is_used(browser, server):
    page = laptop(browser, server.url)
    assert in_viewport(page, "#stage") and in_viewport(page, "#result-stage") and in_viewport(page, "#generate")
    map_box, result_box = page.locator("#stage").bounding_box(), page.locator("#result-stage").bounding_box()
    assert map_box["x"] + map_box["width"] < result_box["x"]  # side by side, the map first
    assert abs(map_box["width"] - result_box["width"]) < 1 and abs(map_box["height"] - result_box["height"]) < 1
    page.fill("#seed", "12345")  # the seed field is below the panes: filling it scrolls there
    page.evaluate("window.scrollTo(0, 0)")
    page.locator("#place").press("Enter")  # Enter in the address field generates
    # 20 tiny-pipeline steps at 512 px can outlast the default 30 s on a shared CPU; this test is about layout.
    page.wait_for_function("document.querySelectorAll('.result').length === 1", timeout=120_000)
    page.wait_for_function("!document.getElementById('result-image').hidden && document.getElementById('result-image').complete")
    assert page.evaluate("window.scrollY") == 0 and in_viewport(page, "#result-image")
    assert "seed 12345" in page.inner_text("#result-meta") and page.input_value("#seed") == "12345"
    assert shown_image(page).shape == (512, 512, 3)
    # The zoom is shared: both panes grow together.
    page.click("#zoom-in")
    assert page.locator("#stage").bounding_box()["width"] == pytest.approx(page.locator("#result-stage").bounding_box()["width"])
    assert page.locator("#stage").bounding_box()["width"] > map_box["width"] * 1.4
    assert page.js_errors == []
    page.close()


def test_the_live_preview_follows_a_stroke_within_100_ms(browser, server):
    page = laptop(browser, server.url)
    new_canvas(page, 256, 256)
    page.wait_for_selector("#preview-canvas[aria-busy=false]")  # the new map's own preview is done
    page.evaluate("delete document.body.dataset.previewMs")
    pick(page, "water")
    brush(page, 12)
    drag(page, [(40, 128), (200, 128)])
    page.wait_for_function("document.body.dataset.previewMs !== undefined")
    latency = float(page.evaluate("document.body.dataset.previewMs"))
    assert latency < 100, f"the preview took {latency} ms after the stroke"
    # The preview is exactly the offline render of the map drawn (seed from the seed field).
    seed = int(page.input_value("#seed"))
    url = page.evaluate("document.getElementById('preview-canvas').toDataURL('image/png')")
    preview = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))
    expected = render_array(canvas_ids(page), seed=seed)
    wrong = np.argwhere((preview != expected).any(axis=2))
    assert not len(wrong), f"{len(wrong)} preview pixels differ from the render, in {wrong.min(0)}..{wrong.max(0)}"
    assert page.js_errors == []
    page.close()


def test_a_stroke_whose_changes_were_drawn_while_it_went_on_still_reports_its_latency(browser, server):
    """The pointer rests mid-stroke until the preview has caught up, then lifts: nothing is left to draw, and the
    page still says the stroke is on screen (it used to wait forever for a request that was never sent)."""
    page = laptop(browser, server.url)
    new_canvas(page, 256, 256)
    page.wait_for_selector("#preview-canvas[aria-busy=false]")
    page.evaluate("delete document.body.dataset.previewMs")
    pick(page, "water")
    brush(page, 12)
    page.mouse.move(*at(page, 40, 128))
    page.mouse.down()
    page.mouse.move(*at(page, 200, 128), steps=4)
    page.wait_for_selector("#preview-canvas[aria-busy=false]")  # the stroke so far is drawn
    page.mouse.up()
    page.wait_for_function("document.body.dataset.previewMs !== undefined", timeout=10_000)
    assert float(page.evaluate("document.body.dataset.previewMs")) < 100
    assert page.js_errors == []
    page.close()


def test_inpaints_and_outpaints_chain_on_the_current_result(browser, server):
    page = laptop(browser, server.url)
    new_canvas(page, 64, 64)
    page.fill("#steps", "1")
    page.fill("#seed", "3")
    generate_and_wait(page)
    first = shown_image(page)

    def inpaint(points, cls: str) -> np.ndarray:
        tool(page, "region")
        brush(page, 8)
        drag(page, points)
        pick(page, cls)
        tool(page, "brush")
        drag(page, [(0, 0), (63, 63)])  # the diagonal crosses the region and the locked map around it
        generate_and_wait(page, "#run-inpaint")
        return shown_image(page)

    page.click("#inpaint")
    ids_before = canvas_ids(page)
    second = inpaint([(8, 8), (16, 8)], "water")
    assert page.is_visible("#mode-panel")  # still inpainting, now on the new version
    third = inpaint([(44, 50), (54, 50)], "building")
    ids = canvas_ids(page)
    changed_a = (second != first).any(axis=2)
    assert changed_a[4:13, 4:21].any() and not changed_a[30:].any()
    changed_b = (third != second).any(axis=2)
    assert changed_b[46:55, 40:59].any() and not changed_b[:30].any()
    assert np.array_equal(third[4:13, 4:21], second[4:13, 4:21])  # the first edit is kept by the second
    assert ids[40, 20] == ids_before[40, 20] and ids[30, 30] == ids_before[30, 30]  # outside the regions: locked
    page.click("#leave-mode")

    page.click("#outpaint")
    for side, size in (("right", (64, 96)), ("bottom", (96, 96))):
        page.select_option("#outpaint-side", side)
        page.fill("#outpaint-pixels", "32")
        page.click("#extend")
        generate_and_wait(page, "#run-outpaint")
        grown = shown_image(page)
        assert grown.shape[:2] == size
    assert np.array_equal(grown[:64, :64], third) and page.inner_text("#version-label") == "5 / 5"
    page.click("#version-back")  # versions are undoable: the one before, with its own map
    assert page.inner_text("#version-label") == "4 / 5" and shown_image(page).shape[:2] == (64, 96)
    assert page.evaluate("document.getElementById('mask-canvas').width") == 96
    assert page.js_errors == []
    page.close()


def test_a_reload_keeps_the_drawing_and_the_results(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = laptop(browser, server.url, context)
    new_canvas(page, 64, 64)
    pick(page, "vineyard")
    brush(page, 10)
    drag(page, [(5, 30), (60, 30)])
    page.fill("#steps", "1")
    generate_and_wait(page)
    drawn, result = canvas_ids(page), shown_image(page)
    page.wait_for_function("document.getElementById('saved-note').textContent.startsWith('Kept')")
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert np.array_equal(canvas_ids(page), drawn) and page.input_value("#steps") == "1"
    assert page.locator(".result").count() == 1 and np.array_equal(shown_image(page), result)
    context.close()


def test_an_error_shows_where_the_user_is_looking(browser, server):
    page = laptop(browser, server.url)
    page.fill("#steps", "0")
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    assert page.evaluate("window.scrollY") > 100
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("Enter")  # Enter generates
    page.wait_for_selector("#error:not([hidden])")
    assert in_viewport(page, "#error")
    text = page.inner_text("#error-text")
    assert text.startswith("Steps:") and "object at 0x" not in text
    page.close()


def test_the_palette_is_one_tab_stop_and_arrows_pick_a_class(browser, server):
    page = laptop(browser, server.url)
    assert page.evaluate("[...document.querySelectorAll('.swatch')].filter(b => b.tabIndex === 0).length") == 1
    page.focus(".swatch[aria-checked=true]")
    page.keyboard.press("ArrowRight")
    assert page.get_attribute(f".swatch[data-class='{BY_NAME['pervious surface'].id}']", "aria-checked") == "true"
    page.keyboard.press("ArrowDown")
    assert page.get_attribute(f".swatch[data-class='{BY_NAME['bare soil'].id}']", "aria-checked") == "true"
    for selector in ("#brush-size", "#progress", "#blend", "#zoom-in"):
        assert page.evaluate(f"document.querySelector('{selector}').getAttribute('aria-label')")
    page.reload()  # Tab from the top of a fresh page
    page.wait_for_selector("body[data-ready=true]")
    presses = 0
    while page.evaluate("document.activeElement.id") != "generate" and presses < 60:
        page.keyboard.press("Tab")
        presses += 1
    assert presses <= 4, f"{presses} Tab presses from the top of the page to Generate"
    page.close()


def test_fill_of_a_2048_map_is_fast(browser, server):
    page = laptop(browser, server.url)
    new_canvas(page, 2048, 2048)
    tool(page, "fill")
    pick(page, "water")
    page.mouse.click(*at(page, 100, 100))
    page.wait_for_function("document.body.dataset.fillMs !== undefined")
    assert float(page.evaluate("document.body.dataset.fillMs")) < 200  # the page measures it; bench_webui.py prints the figure
    assert (canvas_ids(page) == BY_NAME["water"].id).all()
    page.close()
