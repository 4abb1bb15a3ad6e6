"""Land-cover rasters as people download them: WorldCover tiles in degrees, nodata, huge jobs,
masks changed between runs, runs killed while the output is copied.

The rasters are made here with rasterio the way ESA and Copernicus publish them:
WorldCover in EPSG:4326 at 1/12000 degree (~10 m) with nodata 0, CORINE as int16 codes
with nodata -128.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from seg2sat.cli import main
from seg2sat.gis import plan, raster
from seg2sat.gis.files import fingerprint
from seg2sat.gis.stream import stream_render
from seg2sat.render import render_array

DEGREE_PX = 1 / 12000  # WorldCover's pixel, ~9.3 m north-south
LYON = (4.80, 45.77)  # top-left corner (lon, lat) of the synthetic tiles


def _worldcover(path, shape=(120, 150), nodata_box=(slice(90, 120), slice(0, 30)), nodata=0):
    """A WorldCover-like tile: cropland, built-up, water, and a nodata corner."""
    codes = np.full(shape, 40, np.uint8)
    codes[: shape[0] // 4, : shape[1] // 4] = 50
    codes[shape[0] // 2:, shape[1] * 2 // 3:] = 80
    codes[nodata_box] = nodata
    with rasterio.open(path, "w", driver="GTiff", width=shape[1], height=shape[0], count=1, dtype="uint8",
                       crs="EPSG:4326", transform=from_origin(*LYON, DEGREE_PX, DEGREE_PX), nodata=nodata,
                       compress="deflate", tiled=True) as dst:
        dst.write(codes, 1)
    return path


def _run(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


def test_worldcover_in_degrees_is_reprojected_to_utm_with_a_note(tmp_path, capsys):
    """The README's WorldCover example: --resolution is metres, the tile is in degrees (it gave a 1 x 1 px map)."""
    tile = _worldcover(tmp_path / "ESA_WorldCover_10m_2021_v200_N45E003_Map.tif")
    out = tmp_path / "out"
    code, err = _run(["generate", str(tile), "--classes", "worldcover", "--resolution", "2", "--backend",
                      "procedural", "--seed", "1", "--prompt", "x", "--out", str(out)], capsys)
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.startswith("note: ")]
    assert any("EPSG:4326 (degrees): reprojected to its UTM zone EPSG:32631 for --resolution 2 m" in n for n in notes)
    with rasterio.open(next(out.glob("*.tif"))) as src:
        assert src.crs.to_epsg() == 32631 and src.res == (2.0, 2.0)
        # 150 x 120 px of 1/12000 deg at 45.8 N: ~970 m x 1110 m, so ~485 x 555 px at 2 m
        assert 470 < src.width < 600 and 530 < src.height < 580
        valid = src.read_masks(1)
        lon, lat = LYON[0] + 15 * DEGREE_PX, LYON[1] - 105 * DEGREE_PX  # inside the nodata corner
        row, col = _utm_pixel(src, lon, lat)
        assert valid[row, col] == 0
        row, col = _utm_pixel(src, LYON[0] + 75 * DEGREE_PX, LYON[1] - 60 * DEGREE_PX)  # the middle
        assert valid[row, col] == 255


def _utm_pixel(src, lon: float, lat: float) -> tuple[int, int]:
    from pyproj import Transformer

    x, y = Transformer.from_crs("EPSG:4326", src.crs.to_wkt(), always_xy=True).transform(lon, lat)
    return src.index(x, y)


def test_a_huge_job_is_sized_and_refused_without_yes(tmp_path, capsys):
    """--resolution 0.2 on a 10 m tile is 2 500 times the pixels: say how much, and ask."""
    tile = _worldcover(tmp_path / "wc.tif", shape=(1200, 1200), nodata_box=(slice(0, 1), slice(0, 1)))
    job = plan.plan(tile, 0.2)
    assert job.grid.crs.to_epsg() == 32631
    assert 2.0e9 < job.pixels < 2.5e9  # 0.1 deg a side: ~8.0 km x 11.3 km in UTM at 0.2 m
    assert job.windows == -(-job.grid.width // 1024) * -(-job.grid.height // 1024)
    code, err = _run(["generate", str(tile), "--classes", "worldcover", "--resolution", "0.2", "--backend",
                      "procedural", "--prompt", "x", "--out", str(tmp_path / "out")], capsys)
    lines = err.splitlines()
    assert code == 2 and "Traceback" not in err and lines[-1].startswith("error: the map would be ")
    assert f"{job.windows} windows" in lines[-1] and "--yes" in lines[-1] and "GB on disk" in lines[-1]
    assert not (tmp_path / "out").exists()
    assert plan.check(job, yes=True)[-1].startswith("map: ")  # --yes: the size is still printed


def test_a_resolution_that_collapses_the_map_is_refused():
    grid = raster.Grid(1, 1, None, from_origin(0, 0, 1, 1))
    with pytest.raises(ValueError, match="1 x 1 px"):
        plan.check(plan.Plan(grid, 1, 1024, None))


NODATA_CASES = {
    # classes, dtype, land code, nodata tag, no-data code written in the corner
    "worldcover": ("worldcover", "uint8", 40, 0, 0),
    "worldcover, no nodata tag": ("worldcover", "uint8", 40, None, 0),  # the product's 0 is still no data
    "corine int8 ranks": ("corine", "int8", 12, -128, -128),  # CLC's GeoTIFF: GRID_CODE ranks, nodata -128
    "corine rank 48": ("corine", "int8", 12, -128, 48),  # GRID_CODE 48 is CLC's own "NODATA" class
    "corine codes": ("corine", "int16", 211, -32768, -32768),
}


@pytest.mark.parametrize("case", NODATA_CASES)
def test_nodata_stays_nodata_in_the_streamed_map(tmp_path, case):
    classes, dtype, land, tag, nodata = NODATA_CASES[case]
    codes = np.full((300, 400), land, dtype)
    codes[200:, :150] = nodata
    mask = tmp_path / "landcover.tif"
    with rasterio.open(mask, "w", driver="GTiff", width=400, height=300, count=1, dtype=dtype, crs="EPSG:3035",
                       transform=from_origin(3_800_000, 2_500_000, 10, 10), nodata=tag) as dst:
        dst.write(codes, 1)
    out = stream_render(mask, tmp_path / "out.tif", seed=2, classes=classes, window=256)
    with rasterio.open(out.path) as src:
        valid = src.read_masks(1)
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    assert (valid[200:, :150] == 0).all() and (valid[:200] == 255).all() and (valid[:, 150:] == 255).all()


def test_resume_starts_over_when_the_mask_changed(tmp_path):
    """Kill a run, overwrite the mask with another of the same size, rerun: nothing of the old mask is kept."""
    size, window = 768, 256
    grid = raster.Grid(size, size, "EPSG:2154", from_origin(843_000, 6_520_000, 0.2, 0.2))
    first, second = np.full((size, size), 11, np.uint8), np.full((size, size), 5, np.uint8)
    second[:100] = 1
    mask = raster.write_classes(tmp_path / "map.tif", first, grid)
    out = tmp_path / "out.tif"

    def kill_after_three(done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stream_render(mask, out, seed=1, window=window, on_window=kill_after_three)
    before = fingerprint(mask)
    raster.write_classes(mask, second, grid)
    os.utime(mask, ns=(before["mtime_ns"], before["mtime_ns"]))  # same size, same mtime: the content still tells
    assert os.path.getsize(mask) != before["size"] or fingerprint(mask)["sha256"] != before["sha256"]
    resumed = stream_render(mask, out, seed=1, window=window)
    assert resumed.rendered == resumed.windows == 9
    with rasterio.open(out) as src:
        assert np.array_equal(np.moveaxis(src.read(), 0, -1), render_array(second, seed=1))


def test_a_kill_while_the_cog_is_copied_leaves_no_file_under_the_final_name(tmp_path, monkeypatch):
    import rasterio.shutil

    size = 600
    ids = np.full((size, size), 11, np.uint8)
    mask = raster.write_classes(tmp_path / "map.tif", ids, raster.Grid(size, size, "EPSG:2154",
                                                                       from_origin(0, 0, 1, 1)))
    real_copy = rasterio.shutil.copy

    def killed_copy(src, dst, **kw):
        real_copy(src, dst, **kw)  # the COG is complete on disk, but the process dies before it is renamed
        raise KeyboardInterrupt

    monkeypatch.setattr(rasterio.shutil, "copy", killed_copy)
    out = tmp_path / "out.tif"
    with pytest.raises(KeyboardInterrupt):
        stream_render(mask, out, seed=1)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.glob("out*")) == ["out.tif.journal.json", "out.tif.partial.tif"]
    assert not list(tmp_path.glob(".*"))  # no temporary left
    monkeypatch.setattr(rasterio.shutil, "copy", real_copy)
    assert stream_render(mask, out, seed=1).rendered == 0 and out.exists()  # the rerun only copies


def test_osm_outputs_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    from PIL import Image

    from seg2sat.gis.osm import PlaceMask, save

    grid = raster.Grid(64, 64, "EPSG:2154", from_origin(0, 64, 1, 1))
    mask = PlaceMask(np.full((64, 64), 11, np.uint8), grid, "Aerial view.", None, 45.0, 5.0, 1)

    def killed_save(self, fp, *args, **kw):
        open(fp, "wb").write(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", killed_save)
    with pytest.raises(KeyboardInterrupt):
        save(mask, tmp_path, "place")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["place.tif", "place.tif.aux.xml"]  # no half PNG


def test_class_names_are_readable_by_gdal(tmp_path):
    """QGIS's legend reads GDAL's category names and RAT: GDAL itself reads them back (its VRT copy lists them)."""
    import xml.etree.ElementTree as ET

    import rasterio.shutil

    from seg2sat.classes import CLASSES

    ids = np.array([[1, 5], [11, 19]], np.uint8)
    path = raster.write_classes(tmp_path / "classes.tif", ids, raster.Grid(2, 2, "EPSG:2154", from_origin(0, 2, 1, 1)))
    assert (tmp_path / "classes.tif.aux.xml").is_file()
    rasterio.shutil.copy(path, tmp_path / "classes.vrt", driver="VRT")  # GDAL serialises what it read
    band = ET.parse(tmp_path / "classes.vrt").getroot().find("VRTRasterBand")
    names = [c.text or "" for c in band.find("CategoryNames")]
    assert names[1] == "building" and names[5] == "water" and names[0] == "" and len(names) == 20
    rat = band.find("GDALRasterAttributeTable")
    rows = [[f.text for f in row] for row in rat.findall("Row")]
    assert [r[1] for r in rows] == [c.name for c in CLASSES]
    assert [int(r[0]) for r in rows] == [c.id for c in CLASSES] and rows[0][2:5] == [str(v) for v in CLASSES[0].rgb]
    assert [f.find("Name").text for f in rat.findall("FieldDefn")][:2] == ["Value", "Class"]
    with rasterio.open(path) as src:  # the GeoTIFF itself is unchanged: ids, colour table, nodata
        assert np.array_equal(src.read(1), ids) and src.nodata == 0 and src.colormap(1)[1][:3] == CLASSES[0].rgb


def test_nodata_stays_nodata_in_a_map_made_whole(tmp_path):
    """Maps small enough for one diffusion pass are read whole and written by write_rgb: nodata kept there too."""
    tile = _worldcover(tmp_path / "wc.tif")
    ids, grid = raster.load_ids(tile, "worldcover")
    assert grid.valid is not None and not grid.valid[100:, :30].any() and grid.valid[:90].all()
    out = raster.write_rgb(tmp_path / "out.tif", render_array(ids, seed=1), grid)
    with rasterio.open(out) as src:
        assert np.array_equal(src.read_masks(1) > 0, grid.valid) and src.crs.to_epsg() == 4326


def test_png_of_a_result_keeps_nodata_transparent(tmp_path):
    from PIL import Image

    tile = _worldcover(tmp_path / "wc.tif")
    ids, grid = raster.load_ids(tile, "worldcover")
    cog = raster.write_rgb(tmp_path / "out.tif", render_array(ids, seed=1), grid)
    png = raster.png_of(cog, tmp_path / "out.png")
    with Image.open(png) as im:
        assert im.mode == "RGBA" and np.array_equal(np.asarray(im)[..., 3] > 0, grid.valid)
    full = raster.write_rgb(tmp_path / "full.tif", render_array(ids, seed=1), raster.Grid(150, 120, None,
                                                                                         from_origin(0, 0, 1, 1)))
    with Image.open(raster.png_of(full, tmp_path / "full.png")) as im:
        assert im.mode == "RGB"
    assert not list(tmp_path.glob(".*"))
