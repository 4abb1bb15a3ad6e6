"""The web UI's JavaScript, checked without a browser: ES modules that import what others export, one way
(no cycle), reached from the page's one entry module, sharing nothing through ``window``, writing the state
only in state.js, and with no copy of the caption rule (it is Python's: seg2sat/prompts.py)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

WEBUI = Path(__file__).resolve().parents[1] / "seg2sat" / "webui"
STATIC = WEBUI / "static"

IMPORT = re.compile(r'^import\s+(?P<what>[^;]*?)\s+from\s+"\./(?P<module>[\w-]+)\.js";', re.M | re.S)
EXPORT = re.compile(r"^export\s+(?:async\s+)?(?:function\*?|const|let|class)\s+(?P<name>[\w$]+)", re.M)
STATE_WRITE = re.compile(r"\bS\.[\w.]+(?:\[[^\]]*\])?\s*(?:[-+*/|&]?=(?!=)|\+\+|--)")
WINDOW_WRITE = re.compile(r"\b(?:window|globalThis|self)\s*(?:\.\s*\w+|\[[^\]]*\])\s*(?:[-+*/|&]?=(?!=)|\+\+|--)")


def sources() -> dict[str, str]:
    return {path.stem: path.read_text(encoding="utf-8") for path in sorted(STATIC.glob("*.js"))}


def imports(text: str) -> list[tuple[str, str]]:
    """(module, what) for each ``import … from "./module.js"``."""
    return [(m["module"], " ".join(m["what"].split())) for m in IMPORT.finditer(text)]


def graph() -> dict[str, set[str]]:
    return {name: {module for module, _ in imports(text)} for name, text in sources().items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path that ends where it starts), or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_page_loads_one_module_and_no_classic_script():
    page = (WEBUI / "templates" / "index.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script\b[^>]*>", page)
    assert scripts == ['<script type="module" src="{{ url_for(\'static\', filename=\'main.js\') }}">']


def test_modules_import_one_way_and_every_module_is_used():
    edges = graph()
    assert find_cycle(edges) is None, f"import cycle: {' -> '.join(find_cycle(edges))}"
    for name, targets in edges.items():
        assert targets <= set(edges), f"{name}.js imports a module that does not exist: {targets - set(edges)}"
    reached, todo = set(), ["main"]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(edges[name])
    assert reached == set(edges), f"modules the page never loads: {sorted(set(edges) - reached)}"
    assert edges["state"] == set(), "state.js is at the bottom: it imports nothing"
    assert edges["api"] == set(), "api.js is at the bottom: it imports nothing"


def test_every_imported_name_is_exported_by_its_module():
    texts = sources()
    exported = {name: set(EXPORT.findall(text)) for name, text in texts.items()}
    for name, text in texts.items():
        for module, what in imports(text):
            if what.startswith("* as "):
                alias = what[5:].strip()
                used = set(re.findall(rf"(?<![\w./]){alias}\.(\w+)", text))
                assert used <= exported[module], f"{name}.js uses {alias}.{used - exported[module]}, not exported"
                continue
            names = {part.split(" as ")[0].strip() for part in what.strip("{} ").split(",") if part.strip()}
            assert names <= exported[module], f"{name}.js imports {names - exported[module]} from {module}.js"


def test_nothing_is_shared_through_window_and_only_state_js_writes_the_state():
    for name, text in sources().items():
        assert not WINDOW_WRITE.search(text), f"{name}.js assigns to a global: {WINDOW_WRITE.search(text)[0]}"
        assert '"use strict"' not in text  # modules are strict already: a leftover means a classic script
        if name != "state":
            found = STATE_WRITE.search(text)
            assert not found, f"{name}.js writes the state directly: {found[0]!r} (use state.js's functions)"


@pytest.mark.parametrize("bad", ["window.S = S;", "window['x'] = 1;", "globalThis.api = api;", "S.w = 3;",
                                 "S.ids[i] = 5;", "S.mode.at = [0, 0];", "S.edits++;"])
def test_the_checks_see_a_global_or_a_state_write(bad):
    assert WINDOW_WRITE.search(bad) or STATE_WRITE.search(bad)


def test_the_caption_rule_is_not_copied_in_javascript():
    for name, text in sources().items():
        assert "Aerial view" not in text and "minShare" not in text and "min_share" not in text, name


# ---------------------------------------------------------------- through the page, in chromium


@pytest.fixture(scope="module")
def procedural_ui():
    from test_ui_browser import ROOT, UIServer

    ui = UIServer({"BACKEND": "procedural", "WARMUP": False, "SAMPLES_DIR": str(ROOT / "examples" / "masks")})
    yield ui
    ui.close()


def _page(browser, url: str):
    from test_ui_browser import TIMEOUT

    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.set_default_timeout(TIMEOUT)
    page.js_errors = []
    page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    return page


def _caption_settled(page) -> None:
    page.wait_for_selector("#prompt-preview[aria-busy=false]", state="attached")


def test_generate_posts_the_class_ids_the_canvas_shows(browser, procedural_ui):
    import base64

    import numpy as np
    from test_ui_browser import canvas_ids, drag, generate_and_wait, pick

    page = _page(browser, procedural_ui.url)
    pick(page, "water")
    drag(page, [(40, 300), (400, 320)])
    with page.expect_request("**/api/generate") as request:
        generate_and_wait(page)
    body = request.value.post_data_json
    assert request.value.headers["content-type"] == "application/json" and "mask" not in body
    width, height = body["size"]
    sent = np.frombuffer(base64.b64decode(body["ids"]), np.uint8).reshape(height, width)
    shown = canvas_ids(page)
    assert sent.shape == shown.shape == (512, 512) and np.array_equal(sent, shown)
    assert (sent == 5).sum() > 1000  # the water stroke went as class 5, no colour on the way
    assert "seed 42" in page.inner_text("#result-meta") and page.js_errors == []
    page.context.close()


def test_the_caption_shown_is_the_servers_for_the_classes_drawn(browser, procedural_ui):
    from test_ui_browser import canvas_ids, drag, new_canvas, pick, tool

    from seg2sat.prompts import build_prompt, caption

    page = _page(browser, procedural_ui.url)
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if r.url.endswith("/api/caption") else None)
    new_canvas(page, 128, 128)
    tool(page, "rect")
    pick(page, "water")
    drag(page, [(0, 0), (127, 40)])
    pick(page, "building")
    drag(page, [(0, 127), (12, 127)])  # 13 px: under 1 %, not worth a word
    page.fill("#place", "Annecy")
    _caption_settled(page)
    ids = canvas_ids(page)
    expected = caption("Annecy", ids)
    assert expected == "Aerial view of Annecy. agricultural land, water."
    assert page.get_attribute("#prompt", "placeholder") == expected
    assert page.inner_text("#prompt-preview") == build_prompt(expected, "photorealistic")

    tool(page, "brush")
    page.select_option("#style", "")
    _caption_settled(page)
    page.clock.install()
    page.clock.pause_at(time.time() * 1000 + 10_000)  # the page's timers wait for run_for: no race with the load
    asked.clear()
    drag(page, [(10, 60), (30, 62), (50, 64), (70, 66), (90, 68), (110, 70), (120, 100)])  # 24 pointer moves
    assert asked == [] and page.get_attribute("#prompt-preview", "aria-busy") == "true"
    page.clock.run_for(1_000)
    page.clock.resume()
    _caption_settled(page)
    assert len(asked) == 1, f"the caption is asked once the stroke pauses, not at every move: {len(asked)}"
    assert page.inner_text("#prompt-preview") == caption("Annecy", canvas_ids(page))
    page.fill("#prompt", "My own words.")
    _caption_settled(page)
    assert page.inner_text("#prompt-preview") == "My own words."
    assert page.js_errors == []
    page.context.close()
