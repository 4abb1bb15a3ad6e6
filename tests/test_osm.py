"""Real places from OpenStreetMap: tag table, reader, rasterizer, Overpass and Nominatim clients, CLI (all offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from PIL import Image

from seg2sat import masks
from seg2sat.classes import CLASSES
from seg2sat.gis.osm import grid_over, parse_coordinates, parse_size, place_mask, rasterize
from seg2sat.gis.osm_features import parse_hstore, read_features
from seg2sat.gis.osm_tags import classify, line_width, rules_markdown
from seg2sat.gis.raster import Grid
from seg2sat.options import spell
from seg2sat.testing import village

ROOT = Path(__file__).resolve().parents[1]
RES = 0.2
UA = "seg2sat-tests (test@example.org)"


@pytest.fixture
def village_file(tmp_path) -> Path:
    return village.write_geojson(tmp_path / "village.geojson")


@pytest.fixture
def village_mask(village_file):
    return place_mask(village.place(), source=village_file)


def _pixel(grid: Grid, u: float, v: float) -> tuple[int, int]:
    """(row, col) of the pixel holding the point u, v metres from the village centre."""
    col = int((village.CENTRE[0] + u - grid.transform.c) // grid.transform.a)
    row = int((grid.transform.f - village.CENTRE[1] - v) // -grid.transform.e)
    return row, col


def _footprint_pixels(mask, name: str, inset: float = 0.0) -> np.ndarray:
    item = next(f for f in village.features() if f.name == name)
    shrunk = village.VillageFeature(name, {}, None, 99, item.footprint.buffer(-inset, join_style="mitre"), 0)
    return village.expected_ids(mask.grid, background=0, items=[shrunk]) == 99


# --- the rasterizer on the synthetic village ---------------------------------------------------------------

def test_village_pixels_match_the_hand_worked_expectation(village_mask):
    expected = village.expected_ids(village_mask.grid)
    assert village_mask.ids.shape == (512, 512) and village_mask.features == len(village.features())
    assert (village_mask.ids == expected).mean() >= 0.999
    assert set(np.unique(village_mask.ids)) == {1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 18}


def test_building_interior_is_building(village_mask):
    inside = _footprint_pixels(village_mask, "house", inset=0.3)
    assert inside.sum() > 1000 and (village_mask.ids[inside] == 1).all()


def test_road_is_impervious_with_its_documented_width(village_mask):
    assert line_width(classify({"highway": "residential"})[0], {}) == village.ROAD_WIDTH
    for u in (-50.0, -5.0, 48.0):  # across the road, where nothing else is
        _, col = _pixel(village_mask.grid, u, 0)
        column = village_mask.ids[:, col] == 3
        rows = np.flatnonzero(column)
        assert len(rows) == village.ROAD_WIDTH / RES and np.all(np.diff(rows) == 1)  # one 30 px band, no gaps
        assert rows[0] == _pixel(village_mask.grid, u, 5 + village.ROAD_WIDTH / 2 - RES / 2)[0]


def test_pool_inside_a_garden_stays_a_pool(village_mask):
    pool = _footprint_pixels(village_mask, "pool")
    garden = _footprint_pixels(village_mask, "garden", inset=0.3) & ~_footprint_pixels(village_mask, "pool", inset=-0.3)
    garden &= ~_footprint_pixels(village_mask, "house", inset=-0.3)
    assert (village_mask.ids[pool] == 13).all() and (village_mask.ids[garden] == 10).all()


def test_leaf_type_splits_woods(village_mask):
    ids, grid = village_mask.ids, village_mask.grid
    assert ids[_pixel(grid, 50, 50)] == 6  # natural=wood, leaf_type=needleleaved
    assert ids[_pixel(grid, -5, 50)] == 7  # landuse=forest, leaf_type=broadleaved
    assert classify({"landuse": "forest"})[1] == 16 and classify({"natural": "wood", "leaf_type": "mixed"})[1] == 16


def test_drawing_order(village_mask):
    ids, grid = village_mask.ids, village_mask.grid
    assert ids[_pixel(grid, 20.5, 50)] == 2  # the track crosses the wood
    assert ids[_pixel(grid, 20.5, 5)] == 3  # the road crosses the track
    assert ids[_pixel(grid, 35, 35)] == 10  # a park clearing inside the (larger) wood
    assert ids[_pixel(grid, -30, 30)] == 5  # a pond inside the meadow
    assert ids[_pixel(grid, -20, -41)] == 5  # the river over the garden's edge
    assert ids[_pixel(grid, 10, -25)] == 18  # the greenhouse in the vineyard


def test_osm_xml_file_gives_the_same_mask(tmp_path, village_mask):
    osm = village.write_osm(tmp_path / "village.osm")
    assert np.array_equal(place_mask(village.place(), source=osm).ids, village_mask.ids)


OSM_XML = """<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6" generator="test">
 <node id="1" lat="45.0000" lon="4.0000"/><node id="2" lat="45.0000" lon="4.0010"/>
 <node id="3" lat="45.0010" lon="4.0010"/><node id="4" lat="45.0010" lon="4.0000"/>
 <node id="5" lat="45.0004" lon="4.0004"/><node id="6" lat="45.0004" lon="4.0006"/>
 <node id="7" lat="45.0006" lon="4.0006"/><node id="8" lat="45.0006" lon="4.0004"/>
 <node id="9" lat="45.0002" lon="3.9990"/><node id="10" lat="45.0002" lon="4.0020"/>
 <way id="100"><nd ref="1"/><nd ref="2"/><nd ref="3"/><nd ref="4"/><nd ref="1"/></way>
 <way id="101"><nd ref="5"/><nd ref="6"/><nd ref="7"/><nd ref="8"/><nd ref="5"/>
  <tag k="area:highway" v="pedestrian"/></way>
 <way id="102"><nd ref="9"/><nd ref="10"/><tag k="highway" v="residential"/><tag k="surface" v="gravel"/>
  <tag k="width" v="4"/><tag k="name" v="Chemin &quot;du&quot; Bois"/></way>
 <relation id="200"><member type="way" ref="100" role="outer"/>
  <tag k="type" v="multipolygon"/><tag k="natural" v="wood"/><tag k="leaf_type" v="needleleaved"/></relation>
</osm>
"""


def test_osm_xml_relation_with_leaf_type_in_other_tags(tmp_path):
    path = tmp_path / "wood.osm"
    path.write_text(OSM_XML, encoding="utf-8")
    found = read_features(path)
    by_kind = {t.get("natural") or t.get("highway") or t.get("area:highway"): t for t in found.tags}
    assert by_kind["wood"]["leaf_type"] == "needleleaved" and by_kind["wood"]["type"] == "multipolygon"
    assert by_kind["residential"]["surface"] == "gravel" and by_kind["residential"]["name"] == 'Chemin "du" Bois'
    grid = grid_over(45.0, 4.0, 45.001, 4.001, resolution=1.0)
    ids, drawn = rasterize(found, grid, background=11)
    assert drawn == 3
    centre = shapely.Point(4.0005, 45.0005)
    to_px = rasterio.transform.rowcol
    from pyproj import Transformer

    x, y = Transformer.from_crs("EPSG:4326", grid.crs.to_wkt(), always_xy=True).transform(centre.x, centre.y)
    assert ids[to_px(grid.transform, x, y)] == 3  # the closed area:highway way is an area: impervious
    x, y = Transformer.from_crs("EPSG:4326", grid.crs.to_wkt(), always_xy=True).transform(4.0008, 45.0008)
    assert ids[to_px(grid.transform, x, y)] == 6  # the wood relation: coniferous
    x, y = Transformer.from_crs("EPSG:4326", grid.crs.to_wkt(), always_xy=True).transform(4.0008, 45.0002)
    assert ids[to_px(grid.transform, x, y)] == 2  # a gravel road is pervious
    column = ids[:, to_px(grid.transform, x, y)[1]]
    assert (column == 2).sum() == 4  # its width=4 tag, at 1 m/px


# --- tags and parsing ---------------------------------------------------------------------------------------

def test_tag_rules():
    assert classify({"building": "greenhouse"})[1] == 18 and classify({"building": "yes"})[1] == 1
    assert classify({"building": "no"}) is None and classify({"highway": "primary", "tunnel": "yes"}) is None
    assert classify({"leisure": "swimming_pool", "location": "indoor"}) is None
    assert classify({"highway": "track"})[1] == 2 and classify({"highway": "track", "surface": "asphalt"})[1] == 3
    rule = classify({"waterway": "river"})[0]
    assert line_width(rule, {}) == 12 and line_width(rule, {"width": "30 m"}) == 30 and line_width(rule, {"width": "x"}) == 12
    assert classify({"landuse": "greenhouse_horticulture"})[1] == 18 and classify({"natural": "glacier"})[1] == 14


def test_hstore_and_place_parsing():
    assert parse_hstore(r'"leaf_type"=>"needleleaved","name"=>"a \"b\" c","k=>v"=>"x,y"') == {
        "leaf_type": "needleleaved", "name": 'a "b" c', "k=>v": "x,y"}
    assert parse_size("512") == (512, 512) and parse_size("640x480") == (640, 480)
    assert parse_coordinates("45.76, 4.83") == (45.76, 4.83) and parse_coordinates("31 Rue Molière, Lyon") is None
    with pytest.raises(ValueError, match="south < north"):
        parse_coordinates("45.8,4.9,45.7,4.8")
    with pytest.raises(ValueError, match="`size`: each side must be") as refused:
        parse_size("0")
    assert spell(str(refused.value), "cli").startswith("--size: each side")  # what osm-mask prints


def test_a_box_gives_its_own_extent():
    from pyproj import Transformer

    grid = grid_over(45.7640, 4.8350, 45.7650, 4.8365, resolution=0.5)
    assert grid.crs.to_epsg() == 32631 and grid.transform.a == 0.5
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:32631", always_xy=True).transform([4.8350, 4.8365] * 2,
                                                                                    [45.7640] * 2 + [45.7650] * 2)
    left, top = grid.transform.c, grid.transform.f
    assert left <= min(x) < left + 0.5 and top - 0.5 < max(y) <= top  # every corner of the box is inside
    assert max(x) <= left + grid.width * 0.5 < max(x) + 0.5 and top - grid.height * 0.5 <= min(y) < top - grid.height * 0.5 + 0.5


def test_readme_has_the_tag_table():
    assert rules_markdown() in (ROOT / "README.md").read_text(encoding="utf-8")


# --- files ---------------------------------------------------------------------------------------------------

def test_geotiff_png_and_caption(village_file, tmp_path):
    mask = place_mask(village.place(), source=village_file, out=tmp_path / "out", name="Le Village")
    with rasterio.open(mask.paths["tif"]) as src:
        assert src.crs.to_epsg() == 32631 and src.transform == mask.grid.transform
        assert src.transform.c == village.CENTRE[0] - 256 * RES and src.transform.f == village.CENTRE[1] + 256 * RES
        assert np.array_equal(src.read(1), mask.ids)
        table = src.colormap(1)
        assert all(table[c.id][:3] == c.rgb for c in CLASSES)
    assert np.array_equal(masks.snap(Image.open(mask.paths["png"])).ids, mask.ids)
    text = mask.paths["txt"].read_text(encoding="utf-8").strip()
    assert text == mask.caption
    assert text.startswith("Aerial view of Le Village. herbaceous vegetation, agricultural land, coniferous")


# --- Overpass ------------------------------------------------------------------------------------------------

def test_overpass_once_per_area_then_the_cache(overpass, nominatim, tmp_path):
    url, state = overpass
    domain, seen = nominatim
    options = dict(overpass_url=url, nominatim_url=f"http://{domain}", cache_dir=tmp_path / "cache", user_agent=UA)
    first = place_mask(village.place(), **options)
    assert len(state["seen"]) == 1 and state["seen"][0]["path"] == "/api/interpreter"
    assert state["seen"][0]["agent"] == UA and "[out:xml]" in state["seen"][0]["query"]
    assert 'way["building"]' in state["seen"][0]["query"] and "[bbox:45.7" in state["seen"][0]["query"]
    assert (first.ids == village.expected_ids(first.grid)).mean() >= 0.999
    assert first.caption.startswith("Aerial view of Mourenx, Pau") and seen[-1]["path"] == "/reverse"
    again = place_mask(village.place(), **options)
    assert len(state["seen"]) == 1 and np.array_equal(again.ids, first.ids)  # the cache answered
    assert len(seen) == 1  # and the place name came from the geocode cache


def test_overpass_failures_are_one_line_and_never_cached(overpass, tmp_path):
    url, state = overpass
    options = dict(source=None, name="x", cache_dir=tmp_path / "cache", user_agent=UA)
    state["status"] = 429
    with pytest.raises(ValueError, match=r"answered HTTP 429 .*busy") as err:
        place_mask(village.place(), overpass_url=url, **options)
    assert "\n" not in str(err.value)
    state["status"], state["body"] = 200, b'<?xml version="1.0"?>\n<osm><remark> runtime error: Query timed out </remark></osm>'
    with pytest.raises(ValueError, match="gave up on the query: runtime error: Query timed out"):
        place_mask(village.place(), overpass_url=url, **options)
    assert not list((tmp_path / "cache").glob("*.osm"))
    with pytest.raises(ValueError, match=r"Overpass API http://127.0.0.1:9/api/interpreter is unreachable \("):
        place_mask(village.place(), overpass_url="http://127.0.0.1:9", **options)


# --- Nominatim -----------------------------------------------------------------------------------------------

def test_an_address_is_geocoded_once(nominatim, village_file, tmp_path):
    domain, seen = nominatim
    options = dict(source=village_file, nominatim_url=f"http://{domain}", cache_dir=tmp_path / "cache", user_agent=UA)
    mask = place_mask("1 Rue du Village, Lyon", **options)
    assert [s["path"] for s in seen] == ["/search"] and seen[0]["q"] == "1 Rue du Village, Lyon" and seen[0]["agent"] == UA
    assert mask.caption.startswith("Aerial view of 1 Rue du Village, Lyon. ")
    assert (mask.ids == village.expected_ids(mask.grid)).mean() >= 0.999
    place_mask("1  rue du village, LYON", **options)
    assert len(seen) == 1  # same address, differently typed: from the cache
    with pytest.raises(ValueError, match="found no place called 'nowhere'"):
        place_mask("nowhere", **options)
    from seg2sat.data.geocode import CachedGeocoder, GeocodeCache, NominatimGeocoder

    client = NominatimGeocoder(UA, min_delay=0, domain=domain, scheme="http", retries=0)  # no 5 s retry waits here
    with pytest.raises(ValueError, match="Nominatim failed on 'fail'"):
        place_mask("fail", geocoder=CachedGeocoder(client, GeocodeCache(tmp_path / "g.sqlite")), **options)


# --- command line --------------------------------------------------------------------------------------------

def test_cli_osm_mask_end_to_end(village_file, tmp_path, capsys):
    from seg2sat.cli import main

    out = tmp_path / "out"
    assert main(["osm-mask", village.place(), "--from", str(village_file), "--out", str(out), "--size", "256x128"]) == 0
    printed = capsys.readouterr().out.splitlines()
    tif = next(out.glob("*.tif"))
    assert str(tif) in printed and printed[-1].startswith("Aerial view. ")
    with rasterio.open(tif) as src:
        assert (src.width, src.height) == (256, 128) and src.crs.to_epsg() == 32631
        grid = Grid(src.width, src.height, src.crs, src.transform)
        assert (src.read(1) == village.expected_ids(grid)).mean() >= 0.999
    assert Image.open(tif.with_suffix(".png")).size == (256, 128) and tif.with_suffix(".txt").is_file()


def test_cli_errors_are_one_line(village_file, tmp_path, capsys):
    from seg2sat.cli import main

    assert main(["osm-mask", "95,4", "--from", str(village_file), "--out", str(tmp_path)]) == 2
    assert main(["osm-mask", village.place(), "--from", str(tmp_path / "missing.gpkg"), "--out", str(tmp_path)]) == 2
    assert main(["osm-mask", village.place(), "--from", str(village_file), "--background", "lava", "--out",
                 str(tmp_path)]) == 2
    printed = capsys.readouterr().err
    err = [line for line in printed.splitlines() if line.startswith("error: ")]
    assert len(err) == 3 and "Traceback" not in printed
    assert "latitudes must be in -90..90" in err[0] and "file not found" in err[1] and "unknown land-cover class" in err[2]
    assert err[0].startswith("error: PLACE '95,4': latitudes")  # the field `place`, as osm-mask's help says it
    assert err[1] == f"error: --from {tmp_path / 'missing.gpkg'}: file not found"  # the field `source`, as typed


def test_generate_place_builds_the_mask_and_prompts_with_its_caption(nominatim, village_file, tmp_path, monkeypatch,
                                                                    capsys):
    from seg2sat import request
    from seg2sat.cli import main

    prompts = []
    build = request.Request.build.__func__
    monkeypatch.setattr(request.Request, "build", classmethod(
        lambda cls, *a, **kw: prompts.append(kw.get("prompt")) or build(cls, *a, **kw)))
    domain, _ = nominatim
    out = tmp_path / "out"
    args = ["generate", "--place", "1 Rue du Village, Lyon", "--from", str(village_file), "--nominatim-url",
            f"http://{domain}", "--cache-dir", str(tmp_path / "cache"), "--backend", "procedural", "--seed", "1",
            "--out", str(out)]
    assert main(args) == 0
    assert prompts and prompts[0].startswith("Aerial view of 1 Rue du Village, Lyon. herbaceous vegetation, ")
    mask_tif = out / "1-rue-du-village-lyon.tif"
    with rasterio.open(mask_tif) as src:
        assert (src.read(1) == village.expected_ids(Grid(src.width, src.height, src.crs, src.transform))).mean() >= 0.999
    image = out / "1-rue-du-village-lyon-seed1.png"
    assert image.is_file() and Image.open(image).size == (512, 512)
    assert str(mask_tif) in capsys.readouterr().out
    assert main(args + ["--prompt", "my own words"]) == 0 and prompts[-1] == "my own words"


def test_generate_wants_exactly_one_of_mask_and_place(village_file, town_png, tmp_path, capsys):
    from seg2sat.cli import main

    assert main(["generate", "--prompt", "x", "--out", str(tmp_path)]) == 2
    assert main(["generate", str(town_png), "--place", village.place(), "--from", str(village_file),
                 "--out", str(tmp_path)]) == 2
    assert main(["generate", str(town_png), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["error: give MASK or --place PLACE (exactly one)"] * 2 + [
        "error: --prompt: required with MASK (with --place, the place's caption is the prompt)"]
