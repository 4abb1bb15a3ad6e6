"""OSM files as people download them: clipped .osm.pbf extracts, QGIS GeoPackages, boxes that miss the file.

``tests/data/pyrosm-test.osm.pbf`` is pyrosm's test extract (OpenStreetMap data, ODbL,
see tests/data/NOTICE): an extract cut from a bigger one, with clipped closed ways
that GDAL turns into 2-point rings, and self-crossing multipolygons.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely

from seg2sat.gis.osm import place_mask
from seg2sat.gis.osm_features import extent, read_features
from seg2sat.gis.osm_repair import decode, salvage
from seg2sat.options import spell
from seg2sat.testing import village

DATA = Path(__file__).resolve().parent / "data"
PBF = DATA / "pyrosm-test.osm.pbf"
PBF_BOX = "60.52,26.93,60.54,26.97"  # the whole extract (south,west,north,east)

CLIPPED_WAY = """<?xml version='1.0' encoding='UTF-8'?>
<osm version="0.6" generator="seg2sat-tests">
  <node id="1" lat="45.0000" lon="5.0000"/>
  <node id="2" lat="45.0000" lon="5.0004"/>
  <node id="3" lat="45.0004" lon="5.0004"/>
  <node id="4" lat="45.0004" lon="5.0000"/>
  <way id="10"><nd ref="1"/><nd ref="2"/><nd ref="3"/><nd ref="4"/><nd ref="1"/><tag k="building" v="yes"/></way>
  <way id="11"><nd ref="1"/><nd ref="90"/><nd ref="91"/><nd ref="1"/><tag k="landuse" v="forest"/></way>
</osm>
"""
"""Way 11 was clipped by the extract: only node 1 is in the file, so GDAL makes the ring [1, 1]."""


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    from seg2sat.cli import main

    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_clipped_pbf_extract_is_repaired_not_a_traceback(tmp_path, capsys):
    code, out, err = _cli(["osm-mask", PBF_BOX, "--from", str(PBF), "--resolution", "2", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert "Traceback" not in err and "Non closed ring" not in err and len(err.splitlines()) == 2
    summary = err.splitlines()[-1]
    assert "broken features repaired" in summary and "skipped" in summary
    with rasterio.open(next(tmp_path.glob("*.tif"))) as src:
        ids = src.read(1)
    assert (ids == 1).mean() > 0.01  # buildings were drawn


def test_pbf_counts_broken_features():
    found = read_features(PBF)
    assert found.skipped >= 8 and found.repaired >= 10  # 8 clipped buildings/landuse ways are [a, a] rings
    assert shapely.is_valid(found.geometries).all()


def test_clipped_closed_way_in_osm_xml(tmp_path):
    path = tmp_path / "clipped.osm"
    path.write_text(CLIPPED_WAY)
    mask = place_mask("45.0,5.0,45.0004,5.0005", source=path, resolution=0.5)
    assert (mask.ids == 1).sum() > 100  # the intact building; the clipped forest is skipped
    assert read_features(path).skipped == 1


def test_salvage_keeps_the_usable_rings():
    """A multipolygon whose second part and one hole were clipped to 2 points keeps its valid shell."""
    shell = [(0, 0), (10, 0), (10, 10), (0, 10), (0, 0)]
    wkb = _multipolygon_wkb([[shell, [(2, 2), (3, 3)]], [[(20, 20), (20, 20)]]])
    with pytest.raises(shapely.errors.GEOSException):
        shapely.from_wkb(wkb)
    fixed = salvage(wkb)
    assert fixed.is_valid and fixed.area == 100
    decoded = decode(np.array([wkb, None], dtype=object))
    assert decoded.repaired == 1 and decoded.skipped == 0 and decoded.geometries[1] is None


def _multipolygon_wkb(polygons: list[list[list[tuple[float, float]]]]) -> bytes:
    import struct

    out = struct.pack("<BII", 1, 6, len(polygons))
    for rings in polygons:
        out += struct.pack("<BII", 1, 3, len(rings))
        for ring in rings:
            out += struct.pack("<I", len(ring)) + np.asarray(ring, dtype="<f8").tobytes()
    return out


def test_qgis_geopackage_with_layer_styles(tmp_path):
    """QGIS adds a non-spatial ``layer_styles`` table whenever a style is saved into a GeoPackage."""
    import pyogrio

    path = tmp_path / "village.gpkg"
    _write_gpkg(path)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE layer_styles (id INTEGER PRIMARY KEY AUTOINCREMENT, f_table_name TEXT, "
                   "styleName TEXT, styleQML TEXT, useAsDefault BOOLEAN)")
        db.execute("INSERT INTO layer_styles (f_table_name, styleName, styleQML, useAsDefault) "
                   "VALUES ('village', 'default', '<qgis/>', 1)")
        db.execute("INSERT INTO gpkg_contents (table_name, data_type, identifier) "
                   "VALUES ('layer_styles', 'attributes', 'layer_styles')")
    assert "layer_styles" in [str(name) for name, _ in pyogrio.list_layers(path)]
    mask = place_mask(village.place(), source=path)
    assert (mask.ids == village.expected_ids(mask.grid)).mean() >= 0.999


def _write_gpkg(path: Path) -> None:
    """The synthetic village as a GeoPackage layer (pyogrio's raw writer, no geopandas)."""
    import pyogrio.raw

    source = village.write_geojson(path.with_suffix(".geojson"))
    meta, _, wkb, columns = pyogrio.raw.read(source)
    pyogrio.raw.write(path, wkb, columns, list(meta["fields"]), layer="village", driver="GPKG", crs=meta["crs"],
                      geometry_type="Unknown")


def test_box_outside_the_file_is_one_line_exit_2(tmp_path, capsys):
    swapped = "26.95,60.53"  # lon,lat typed as lat,lon
    code, _, err = _cli(["osm-mask", swapped, "--from", str(PBF), "--out", str(tmp_path)], capsys)
    assert code == 2 and err.startswith("error: ") and "outside the file" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1
    assert extent(PBF) == pytest.approx((26.93, 60.52, 26.97, 60.54), abs=1e-6)
    assert not list(tmp_path.glob("*.tif"))


def test_nothing_drawn_is_an_error(tmp_path, capsys):
    path = tmp_path / "clipped.osm"
    path.write_text(CLIPPED_WAY)  # GDAL's OSM XML reader gives no extent: the empty result tells
    code, _, err = _cli(["osm-mask", "45.01,5.01", "--from", str(path), "--out", str(tmp_path)], capsys)
    assert code == 2 and "all background" in err.splitlines()[-1] and "Traceback" not in err


def _coast_osm() -> str:
    """A coast running north (land on its left, the west), an island in the sea east of it, a house inland."""
    nodes = {1: (43.2990, 5.3500), 2: (43.3010, 5.3500),  # the coastline, south to north, along 5.35 E
             10: (43.2998, 5.3520), 11: (43.2998, 5.3530), 12: (43.3004, 5.3530), 13: (43.3004, 5.3520),  # island
             20: (43.2999, 5.3480), 21: (43.2999, 5.3485), 22: (43.3002, 5.3485), 23: (43.3002, 5.3480)}  # house
    xml = "".join(f'  <node id="{i}" lat="{lat}" lon="{lon}"/>\n' for i, (lat, lon) in nodes.items())
    return (f"<?xml version='1.0' encoding='UTF-8'?>\n<osm version=\"0.6\" generator=\"seg2sat-tests\">\n{xml}"
            '  <way id="100"><nd ref="1"/><nd ref="2"/><tag k="natural" v="coastline"/></way>\n'
            '  <way id="101"><nd ref="10"/><nd ref="11"/><nd ref="12"/><nd ref="13"/><nd ref="10"/>'
            '<tag k="natural" v="coastline"/></way>\n'  # counter-clockwise: land inside
            '  <way id="102"><nd ref="20"/><nd ref="21"/><nd ref="22"/><nd ref="23"/><nd ref="20"/>'
            '<tag k="building" v="yes"/></way>\n</osm>\n')


def test_coastline_makes_the_sea_on_its_right(tmp_path):
    path = tmp_path / "coast.osm"
    path.write_text(_coast_osm())
    mask = place_mask("43.2995,5.3470,43.3006,5.3540", source=path, resolution=1.0)
    lon = np.linspace(5.3470, 5.3540, mask.grid.width)  # ~1 m columns, west to east
    row = mask.ids[mask.grid.height // 2]
    west, east = row[lon < 5.3495], row[(lon > 5.3505) & ((lon < 5.3518) | (lon > 5.3532))]
    assert (east == 5).all() and not (west == 5).any()  # sea east of the coast, none inland
    island = row[(lon > 5.3522) & (lon < 5.3528)]
    assert len(island) and not (island == 5).any()  # the island is land
    assert (row[(lon > 5.3481) & (lon < 5.3484)] == 1).all()  # the house
    assert (mask.ids == 5).mean() > 0.4


def test_windowed_osm_mask_is_the_whole_rasterization_pixel_for_pixel(tmp_path):
    from seg2sat.gis.osm import drawing_list, grid_over, rasterize
    from seg2sat.gis.osm_windowed import rasterize_to_file

    grid = grid_over(60.527, 26.944, 60.533, 26.952, resolution=1.0)  # 440 x 669 px, 138 features
    found = read_features(PBF, bounds=(26.943, 60.526, 26.953, 60.534))
    whole, drawn = rasterize(found, grid, background=11)
    path = tmp_path / "windowed.tif"
    assert rasterize_to_file(drawing_list(found, grid), grid, 11, path, window=100)[0] == drawn > 10
    with rasterio.open(path) as src:
        assert np.array_equal(src.read(1), whole) and src.transform == grid.transform and src.colormap(1)


def test_a_district_past_4096_px_is_written_window_by_window(tmp_path):
    box = "60.526,26.94,60.5345,26.957"  # ~930 m x 950 m: 4669 x 4738 px at FLAIR's 0.2 m
    mask = place_mask(box, source=PBF, out=tmp_path)
    assert mask.ids is None and sorted(mask.paths) == ["tif", "txt"] and mask.features > 400
    with rasterio.open(mask.paths["tif"]) as src:
        assert (src.width, src.height) == (mask.grid.width, mask.grid.height) and min(src.width, src.height) > 4096
        assert src.res == (0.2, 0.2) and src.block_shapes == [(256, 256)]
        sample = src.read(1, window=((2000, 3000), (2000, 3000)))
    assert (sample == 1).any() and (sample == 3).any()  # buildings and roads
    assert mask.paths["txt"].read_text().startswith("Aerial view. ") and "building" in mask.caption
    assert (tmp_path / (mask.paths["tif"].name + ".aux.xml")).is_file()
    with pytest.raises(ValueError, match="output folder") as refused:  # in memory (the web UI) it stays refused
        place_mask(box, source=PBF)
    assert spell(str(refused.value), "cli").endswith("give an output folder (--out)")  # with the way out
    assert spell(str(refused.value), "ui").endswith("give an output folder (on the command line)")


CLIPPED_RELATION = """<?xml version='1.0' encoding='UTF-8'?>
<osm version="0.6" generator="seg2sat-tests">
  <node id="1" lat="45.0000" lon="5.0000"/>
  <node id="2" lat="45.0000" lon="5.0020"/>
  <node id="3" lat="45.0020" lon="5.0020"/>
  <node id="4" lat="45.0020" lon="5.0000"/>
  <node id="5" lat="45.0005" lon="5.0005"/>
  <node id="6" lat="45.0005" lon="5.0010"/>
  <node id="7" lat="45.0010" lon="5.0010"/>
  <node id="8" lat="45.0030" lon="5.0030"/>
  <node id="9" lat="45.0031" lon="5.0031"/>
  <way id="10"><nd ref="1"/><nd ref="2"/><nd ref="3"/><nd ref="4"/><nd ref="1"/></way>
  <way id="11"><nd ref="5"/><nd ref="6"/><nd ref="7"/></way>
  <way id="12"><nd ref="8"/><nd ref="9"/><nd ref="98"/><nd ref="99"/></way>
  <relation id="20">
    <member type="way" ref="10" role="outer"/>
    <member type="way" ref="11" role="inner"/>
    <tag k="type" v="multipolygon"/><tag k="landuse" v="forest"/>
  </relation>
  <relation id="21">
    <member type="way" ref="12" role="outer"/>
    <tag k="type" v="multipolygon"/><tag k="natural" v="water"/>
  </relation>
</osm>
"""
"""Two multipolygon relations an extract clipped: an inner way cut open, an outer way whose nodes are gone."""


def test_clipped_relations_read_without_gdal_ring_warnings(tmp_path):
    import warnings

    import pyogrio.raw

    path = tmp_path / "clipped.osm"
    path.write_text(CLIPPED_RELATION)
    with warnings.catch_warnings(record=True) as raw:
        warnings.simplefilter("always")
        pyogrio.raw.read(path, layer="multipolygons")
    assert any("Non closed ring" in str(w.message) for w in raw)  # what GDAL says, once per broken ring
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        found = read_features(path)
    assert not ours and len(found) == 1 and found.tags[0]["landuse"] == "forest"


def test_cli_stderr_is_two_lines_on_a_clipped_extract(tmp_path):
    """The real process: GDAL's warnings would reach stderr here (pytest does not capture them)."""
    import subprocess
    import sys

    path = tmp_path / "clipped.osm"
    path.write_text(CLIPPED_RELATION)
    run = subprocess.run([sys.executable, "-m", "seg2sat", "osm-mask", "45.0,5.0,45.002,5.002", "--from", str(path),
                          "--resolution", "1", "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 2 and lines[1].startswith("1 of 1 OSM features drawn"), run.stderr


def test_geocoder_retries_offline_are_one_line_notes(caplog):
    """Offline, geopy's RateLimiter logged every retry with a full traceback before the one-line error."""
    import logging

    from geopy.exc import GeocoderUnavailable

    from seg2sat.data.geocode import GeocodingError, NominatimGeocoder

    geocoder = NominatimGeocoder("seg2sat-tests (test@example.org)", domain="localhost:9", min_delay=0, retries=2)

    def offline(*args, **kwargs):
        raise GeocoderUnavailable("Failed to resolve 'nominatim.openstreetmap.org'")

    geocoder._search.func, geocoder._search.error_wait_seconds = offline, 0
    with caplog.at_level(logging.WARNING, logger="geopy"), pytest.raises(GeocodingError, match="Nominatim failed"):
        geocoder.search("31 Rue Molière, Lyon")
    notes = [r for r in caplog.records if r.name == "geopy"]
    assert [r.getMessage() for r in notes] == ["note: Nominatim: GeocoderUnavailable, retrying (1 of 2)",
                                               "note: Nominatim: GeocoderUnavailable, retrying (2 of 2)"]
    assert all(r.exc_info is None for r in notes)


MONACO = DATA / "monaco-port.osm.pbf"


def _at(mask, lat: float, lon: float) -> int:
    """The class at a WGS84 point of the mask."""
    from pyproj import Transformer

    x, y = Transformer.from_crs("EPSG:4326", mask.grid.crs.to_wkt(), always_xy=True).transform(lon, lat)
    col, row = ~mask.grid.transform * (x, y)
    return int(mask.ids[int(row), int(col)])


def test_real_coast_port_hercule_is_sea(tmp_path):
    """Geofabrik's Monaco, cut around the port: the harbour and the open sea are water, the town is not."""
    mask = place_mask("43.731,7.420,43.736,7.429", source=MONACO, resolution=1.0, background="herbaceous vegetation")
    assert _at(mask, 43.7347, 7.4255) == 5  # the harbour basin
    assert _at(mask, 43.7314, 7.4288) == 5  # the open sea off the Rocher
    assert _at(mask, 43.7334, 7.4212) != 5  # La Condamine, on land
    assert 0.25 < (mask.ids == 5).mean() < 0.6
