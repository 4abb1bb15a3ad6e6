"""The web UI's "Start from a place" API (POST /api/place) against local Overpass and Nominatim stubs (127.0.0.1)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image
from rasterio.crs import CRS
from rasterio.transform import from_origin

from seg2sat import masks
from seg2sat.classes import BY_NAME
from seg2sat.gis.raster import Grid
from seg2sat.testing import village
from seg2sat.webui import create_app

UA = "seg2sat-ui-tests (test@example.org)"
ADDRESS = "1 Rue du Village, Lyon"


def make_app(tmp_path, overpass_url: str, nominatim_url: str, **extra):
    return create_app({"BACKEND": "procedural", "WARMUP": False, "OVERPASS_URL": overpass_url,
                       "NOMINATIM_URL": nominatim_url, "USER_AGENT": UA, "OSM_CACHE_DIR": str(tmp_path / "osm"),
                       **extra})


@pytest.fixture
def stubs(overpass, nominatim):
    """(overpass state, nominatim requests seen, app config URLs) of the two local services."""
    url, state = overpass
    domain, seen = nominatim
    return state, seen, (url, f"http://{domain}")


@pytest.fixture
def client(tmp_path, stubs):
    app = make_app(tmp_path, *stubs[2])
    yield app.test_client()
    app.extensions["seg2sat_ui"].worker.close()


def answer_grid(body: dict) -> Grid:
    """The grid the answer says the map lies on."""
    left, _, _, top = body["bounds"]
    res = body["resolution"]
    return Grid(body["width"], body["height"], CRS.from_string(body["crs"]), from_origin(left, top, res, res))


def answer_ids(body: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(body["ids"]), dtype=np.uint8).reshape(body["height"], body["width"])


def test_an_address_gives_its_osm_mask_name_and_grid(client, stubs):
    overpass_state, nominatim_seen, _ = stubs
    r = client.post("/api/place", json={"place": ADDRESS})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert (body["width"], body["height"]) == (512, 512) and body["resolution"] == 0.2  # the CLI's defaults
    assert body["crs"] == "EPSG:32631" and body["place"] == ADDRESS and body["features"] == len(village.features())
    ids = answer_ids(body)
    assert (ids == village.expected_ids(answer_grid(body))).mean() >= 0.999  # every feature in its pixels
    assert np.array_equal(masks.snap(Image.open(io.BytesIO(base64.b64decode(body["image"].split(",", 1)[1]))))
                          .ids, ids)  # the colour PNG is the same map
    assert body["caption"].startswith(f"Aerial view of {ADDRESS}. herbaceous vegetation, ")
    lat, lon = village.centre_latlon()
    assert abs(body["lat"] - lat) < 1e-9 and abs(body["lon"] - lon) < 1e-9
    west, south, east, north = body["wgs84_bounds"]
    assert west < lon < east and south < lat < north
    assert [s["path"] for s in nominatim_seen] == ["/search"] and nominatim_seen[0]["agent"] == UA
    assert len(overpass_state["seen"]) == 1 and overpass_state["seen"][0]["agent"] == UA
    assert {s["id"] for s in body["shares"]} == set(np.unique(ids).tolist())

    # The page sends the map and the place back: the generate caption is the place's caption.
    r = client.post("/api/generate", json={"mask": body["image"], "place": body["place"], "seed": 1, "steps": 1})
    assert r.status_code == 202, r.get_json()
    assert r.get_json()["prompt"] == body["caption"]


@pytest.mark.slow
def test_size_resolution_and_coordinates(client, stubs):
    overpass_state, nominatim_seen, _ = stubs
    body = {"place": village.place(), "size": "256x128", "resolution": 0.5, "background": "bare soil"}
    first = client.post("/api/place", json=body).get_json()
    assert (first["width"], first["height"], first["resolution"]) == (256, 128, 0.5)
    assert first["place"].startswith("Mourenx, Pau")  # coordinates are named by Nominatim, as in training
    assert [s["path"] for s in nominatim_seen] == ["/reverse"]
    ids = answer_ids(first)
    assert (ids == village.expected_ids(answer_grid(first), background=BY_NAME["bare soil"].id)).mean() >= 0.999
    again = client.post("/api/place", json=dict(body, size=256)).get_json()
    assert (again["width"], again["height"]) == (256, 256)
    client.post("/api/place", json=body)
    assert len(overpass_state["seen"]) == 2  # the third asks for the first one's area: the cache answers


BAD = [
    ({}, "place: type an address"),
    ({"place": "   "}, "place: type an address"),
    ({"place": 12}, "place: type an address"),
    ({"place": "x" * 301}, "place: at most 300 characters"),
    ({"place": ADDRESS, "size": 0}, "size: each side must be 1..4096 px, got 0x0"),
    ({"place": ADDRESS, "size": "big"}, "size: must be W or WxH in pixels, got \"big\""),
    ({"place": ADDRESS, "size": 2.5}, "size: must be W or WxH in pixels"),
    ({"place": ADDRESS, "size": 16}, "size: the image is 16x16; each side must be at least 32 px"),
    ({"place": ADDRESS, "size": 4096}, "size: the image is 4096x4096 = 16,777,216 px, more than the limit"),
    ({"place": ADDRESS, "resolution": 0}, "resolution: must be 0.01..1000 metres per pixel, got 0"),
    ({"place": ADDRESS, "resolution": "fine"}, "resolution: must be a number of metres per pixel, got \"fine\""),
    ({"place": ADDRESS, "resolution": True}, "resolution: must be a number"),
    ({"place": ADDRESS, "background": "lava"}, "background: unknown land-cover class 'lava'"),
    ({"place": "95,4"}, "place: latitudes must be in -90..90"),
    ({"place": "45.8,4.9,45.7,4.8"}, "place: a box is south,west,north,east with south < north"),
    ({"place": "45.70,4.80,45.75,4.85"}, "type a larger number of m/px (coarser pixels) or take a smaller box"),
    ({"place": "45.700,4.800,45.705,4.805"}, "place: the box is 2010x2822 = 5,672,220 px at 0.2 m/px, more than"),
    ({"place": "nowhere"}, "place: Nominatim found no place called 'nowhere'"),
    ([1], "send a JSON object"),
]


def test_bad_input_is_a_400_naming_the_field(client, stubs):
    for body, words in BAD:
        r = client.post("/api/place", json=body)
        assert r.status_code == 400 and words in r.get_json()["error"], (body, r.get_json())
        assert "--" not in r.get_json()["error"], body  # the page's words, not the CLI's options
        assert "`" not in r.get_json()["error"], body  # every core field spelled as the page says it
    assert stubs[0]["seen"] == []  # every one refused before Overpass was asked


def _one_line_502(response, *words: str) -> None:
    message = response.get_json()["error"]
    assert response.status_code == 502, message
    assert all(w in message for w in words), message
    assert "\n" not in message and "Traceback" not in message and "--" not in message and "`" not in message


def test_services_that_cannot_answer_are_one_line_502s(client, stubs, tmp_path):
    overpass_state, _, (overpass_url, nominatim_url) = stubs
    overpass_state["status"] = 429
    _one_line_502(client.post("/api/place", json={"place": ADDRESS}), "answered HTTP 429", "busy")
    overpass_state["status"], overpass_state["body"] = 200, b"<html>maintenance</html>"
    _one_line_502(client.post("/api/place", json={"place": ADDRESS}), "did not answer with OSM XML")
    _one_line_502(client.post("/api/place", json={"place": "fail street"}),
                  f"the geocoder (Nominatim {nominatim_url}) failed", "try again")

    app = make_app(tmp_path / "down", "http://127.0.0.1:9", "http://127.0.0.1:9")  # an empty cache
    try:
        down = app.test_client()
        # Plain words: what could not be reached and how to use another server; no errno, no variable name.
        _one_line_502(down.post("/api/place", json={"place": ADDRESS}),
                      "The address search (Nominatim, at http://127.0.0.1:9) could not be reached", "another server")
        _one_line_502(down.post("/api/place", json={"place": "45.76,4.83"}),
                      "The map service (Overpass, at http://127.0.0.1:9/api/interpreter) could not be reached",
                      "another server")
        for body in ({"place": ADDRESS}, {"place": "45.76,4.83"}):
            message = down.post("/api/place", json=body).get_json()["error"]
            assert "Errno" not in message and "SEG2SAT_" not in message and "(<" not in message, message
    finally:
        app.extensions["seg2sat_ui"].worker.close()


def test_osm_settings_come_from_the_ui_variables_and_options(monkeypatch, tmp_path):
    import argparse

    from seg2sat.webui.cli import add_arguments, config_from_args

    monkeypatch.setenv("SEG2SAT_UI_OVERPASS_URL", "http://overpass.example")
    monkeypatch.setenv("SEG2SAT_UI_USER_AGENT", "env-agent (me@example.org)")
    monkeypatch.setenv("SEG2SAT_UI_OSM_CACHE_DIR", str(tmp_path))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(parser.parse_args(["--nominatim-url", "http://nominatim.example", "--backend",
                                                 "procedural", "--user-agent", "cli-agent (me@example.org)"]))
    app = create_app(dict(config, WARMUP=False))
    try:
        got = app.extensions["seg2sat_ui"].places.settings
        assert (got.overpass_url, got.nominatim_url, got.user_agent, got.cache_dir) == (
            "http://overpass.example", "http://nominatim.example", "cli-agent (me@example.org)", tmp_path)
    finally:
        app.extensions["seg2sat_ui"].worker.close()
    with pytest.raises(ValueError, match="user agent"):
        create_app({"BACKEND": "procedural", "WARMUP": False, "USER_AGENT": "Python-urllib/3.11"})


def test_options_give_the_page_the_cli_defaults(client):
    assert client.get("/api/options").get_json()["place"] == {"size": 512, "resolution": 0.2, "low": 0.01,
                                                               "high": 1000.0}
