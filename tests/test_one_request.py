"""One request model: the CLI, the endpoint API and the web UI API refuse the same values with the same words.

Each front end names the field in its own spelling (``--steps``, ``parameters.steps``,
``steps``); what follows the name is the core's one sentence (seg2sat.request).
"""

from __future__ import annotations

import base64

import pytest

from seg2sat.cli import main
from seg2sat.request import NUMERIC_FIELDS, Request

BAD = [  # (request field, CLI flag and value, HTTP value)
    ("steps", ["--steps", "0"], 0),
    ("steps", ["--steps", "151"], 151),
    ("num_images", ["--num-images", "9"], 9),
    ("guidance_scale", ["--guidance", "30.5"], 30.5),
    ("controlnet_scale", ["--controlnet-scale", "2.5"], 2.5),
    ("seed", ["--seed", "-1"], -1),
    ("style", ["--style", "cubist"], "cubist"),
]
HTTP_NAMES = {"controlnet_scale": "controlnet_conditioning_scale"}


@pytest.fixture(scope="module")
def clients():
    from seg2sat.serving import create_app as endpoint_app
    from seg2sat.settings import Settings
    from seg2sat.webui import create_app as ui_app

    endpoint = endpoint_app(Settings(backend="procedural")).test_client()
    ui = ui_app({"BACKEND": "procedural", "WARMUP": False}).test_client()
    return endpoint, ui


def _detail(message: str, field: str) -> str:
    assert message.startswith(f"{field}: "), (field, message)
    return message[len(field) + 2:]


@pytest.mark.parametrize("name, flag, value", BAD, ids=[f"{b[0]}={b[2]}" for b in BAD])
def test_cli_endpoint_and_ui_refuse_a_bad_value_with_the_same_sentence(name, flag, value, clients, town_png, tmp_path,
                                                                       capsys):
    wire = HTTP_NAMES.get(name, name)
    mask = base64.b64encode(town_png.read_bytes()).decode()

    code = main(["generate", str(town_png), "--prompt", "x", "--backend", "procedural", "--out", str(tmp_path), *flag])
    cli = capsys.readouterr().err.strip()
    assert code == 2 and cli.startswith("error: "), cli
    cli = _detail(cli.removeprefix("error: "), flag[0])

    endpoint, ui = clients
    answer = endpoint.post("/", json={"inputs": "x", "parameters": {"image": mask, wire: value}})
    assert answer.status_code == 400
    http = _detail(answer.get_json()["error"], f"parameters.{wire}")

    answer = ui.post("/api/generate", json={"mask": mask, "prompt": "x", wire: value})
    assert answer.status_code == 400
    page = _detail(answer.get_json()["error"], wire)

    assert cli == http == page
    if name in NUMERIC_FIELDS:  # the sentence gives the range from the one table
        assert f"between {NUMERIC_FIELDS[name].low} and {NUMERIC_FIELDS[name].high}" in cli


def test_defaults_come_from_one_table(town_ids):
    req = Request.build(mask=town_ids, prompt="x", seed=1)
    assert (req.steps, req.guidance_scale, req.controlnet_scale, req.num_images) == tuple(
        NUMERIC_FIELDS[k].default for k in ("steps", "guidance_scale", "controlnet_scale", "num_images"))


def test_the_configuration_table_lists_every_variable_the_code_reads():
    """README's Configuration table is the one list of SEG2SAT_* variables: none missing, none stale."""
    import re
    from dataclasses import fields
    from pathlib import Path

    from seg2sat.settings import PREFIX, Settings
    from seg2sat.webui.config import UI_DEFAULTS, UI_PREFIX

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(SEG2SAT_[A-Z_]*[A-Z])`", section)) - {"SEG2SAT_ENDPOINT_TOKEN"}
    read = {PREFIX + f.name.upper() for f in fields(Settings)} | {UI_PREFIX + k for k in UI_DEFAULTS}
    assert documented == read


def test_speed_options_reach_the_request_from_every_front_end(clients, town_png, tiny_dir, tmp_path):
    """--scheduler / --cache-interval, the endpoint's parameters and the UI's fields are one pair of Request fields."""
    from seg2sat.cli import build_parser, request_from_args

    args = build_parser().parse_args(["generate", str(town_png), "--prompt", "x", "--out", str(tmp_path),
                                      "--scheduler", "dpm++", "--cache-interval", "3"])
    req = request_from_args(args)
    assert (req.scheduler, req.cache_interval) == ("dpm++", 3)
    mask = base64.b64encode(town_png.read_bytes()).decode()
    endpoint, ui = clients
    for name, value in (("scheduler", "fast"), ("cache_interval", 11)):
        answer = endpoint.post("/", json={"inputs": "x", "parameters": {"image": mask, name: value}})
        assert answer.status_code == 400 and answer.get_json()["error"].startswith(f"parameters.{name}: ")
        answer = ui.post("/api/generate", json={"mask": mask, "prompt": "x", name: value})
        assert answer.status_code == 400 and answer.get_json()["error"].startswith(f"{name}: ")
    ok = endpoint.post("/", json={"inputs": "x", "parameters": {"image": mask, "scheduler": "euler-a",
                                                              "cache_interval": 2, "backend": "procedural"}})
    assert ok.status_code == 200


def test_shared_variables_mean_the_same_to_serve_and_ui(monkeypatch, town_png):
    """SEG2SAT_BACKEND, SEG2SAT_QUEUE_SIZE, SEG2SAT_MAX_PIXELS: same values, same effect in both servers."""
    from seg2sat.serving import create_app as endpoint_app
    from seg2sat.webui import create_app as ui_app

    monkeypatch.setenv("SEG2SAT_BACKEND", "procedural")
    monkeypatch.setenv("SEG2SAT_QUEUE_SIZE", "3")
    monkeypatch.setenv("SEG2SAT_MAX_PIXELS", "4096")
    endpoint = endpoint_app().test_client()
    ui = ui_app({"WARMUP": False}).test_client()
    served, page = endpoint.get("/health").get_json(), ui.get("/api/health").get_json()
    assert served["backend"] == page["backend"] == "procedural"
    assert served["queue_size"] == page["queue_size"] == 3

    mask = base64.b64encode(town_png.read_bytes()).decode()  # 128 x 64 = 8192 px, over the limit
    served = endpoint.post("/", json={"inputs": "x", "parameters": {"image": mask}})
    page = ui.post("/api/generate", json={"mask": mask, "prompt": "x"})
    assert served.status_code == page.status_code == 400
    assert _detail(served.get_json()["error"], "parameters.image") == _detail(page.get_json()["error"], "mask")
