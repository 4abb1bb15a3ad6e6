"""GIS rasters: GeoTIFF masks in, georeferenced GeoTIFFs out, other class systems, streamed maps of any size.

Every output is read back with rasterio, as QGIS would read it: size, CRS, transform,
colour table and overviews.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from seg2sat import masks
from seg2sat.classes import BY_ID, CLASSES
from seg2sat.cli import main
from seg2sat.gis import landcover, raster
from seg2sat.gis.stream import stream_render
from seg2sat.render import render_array

LAMBERT = "EPSG:2154"
ORIGIN = from_origin(843_000, 6_520_000, 0.2, 0.2)  # FLAIR's 0.2 m grid in Lambert-93


def _geotiff(path, bands: np.ndarray, transform=ORIGIN, crs=LAMBERT, dtype="uint8"):
    bands = bands[None] if bands.ndim == 2 else bands
    with rasterio.open(path, "w", driver="GTiff", width=bands.shape[2], height=bands.shape[1], count=bands.shape[0],
                       dtype=dtype, crs=crs, transform=transform) as dst:
        dst.write(bands.astype(dtype))
    return path


def _read(path):
    with rasterio.open(path) as src:
        return np.moveaxis(src.read(), 0, -1), src.crs, src.transform, src.overviews(1), src.colorinterp


def _blocks(shape, seed=0, block=16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = shape
    return rng.integers(1, 20, (h // block + 1, w // block + 1)).repeat(block, 0).repeat(block, 1)[:h, :w].astype(np.uint8)


def test_flair_msk_geotiff_gives_a_geotiff_on_the_same_grid(tmp_path, capsys):
    raw = _blocks((200, 300)).astype(np.int32)
    raw[:10] = 0  # no data
    raw[-10:] = 25  # a value above 19
    mask = _geotiff(tmp_path / "MSK_000001.tif", raw)
    out = tmp_path / "out"
    assert main(["generate", str(mask), "--prompt", "Aerial view", "--backend", "procedural", "--seed", "3",
                 "--out", str(out)]) == 0
    rgb, crs, transform, _, interp = _read(out / "MSK_000001-seed3.tif")
    assert crs == LAMBERT and transform == ORIGIN and rgb.shape == (200, 300, 3)
    assert [c.name for c in interp] == ["red", "green", "blue"]
    assert np.array_equal(rgb, render_array(masks.from_flair(raw), seed=3))
    assert np.array_equal(np.asarray(Image.open(out / "MSK_000001-seed3.png")), rgb)


def test_class_geotiff_round_trip_keeps_ids_grid_and_colour_table(tmp_path):
    ids = _blocks((64, 96), seed=1)
    grid = raster.Grid(96, 64, rasterio.crs.CRS.from_string(LAMBERT), ORIGIN)
    path = raster.write_classes(tmp_path / "classes.tif", ids, grid)
    with rasterio.open(path) as src:
        assert src.crs == LAMBERT and src.transform == ORIGIN and src.dtypes == ("uint8",)
        table = src.colormap(1)
    assert all(table[c.id][:3] == c.rgb for c in CLASSES)
    back, grid_back = raster.load_ids(path)
    assert np.array_equal(back, ids) and grid_back == grid
    assert np.array_equal(masks.load_mask(path).ids, ids)  # the Python API reads it the same way


def test_rgb_colour_raster_is_snapped_like_a_png(tmp_path):
    ids = _blocks((64, 64), seed=2)
    rgb = masks.to_rgb(ids).astype(np.int16)
    rgb[::7, ::5] += 6  # JPEG-like noise: still nearest to its class colour
    path = _geotiff(tmp_path / "colours.tif", np.moveaxis(np.clip(rgb, 0, 255), -1, 0))
    assert np.array_equal(raster.load_ids(path)[0], ids)
    assert np.array_equal(masks.load_mask(path).ids, ids)


def test_worldcover_codes_map_to_the_documented_classes():
    codes = np.array([[10, 20, 30, 40], [50, 60, 70, 80], [90, 95, 100, 0]], dtype=np.uint8)
    assert landcover.to_flair(codes, "worldcover").tolist() == [[16, 8, 10, 11], [1, 4, 14, 5], [10, 7, 10, 19]]


def test_corine_reads_level3_codes_and_grid_codes_alike():
    codes = np.array([[111, 122, 211, 221], [311, 312, 313, 512], [335, 999, 128, 48]], dtype=np.int16)
    ranks = np.array([[1, 4, 12, 15], [23, 24, 25, 41]], dtype=np.int16)  # GRID_CODE: rank in the legend
    assert landcover.to_flair(codes, "corine").tolist() == [[1, 3, 11, 9], [7, 6, 16, 5], [14, 19, 19, 19]]
    assert landcover.to_flair(ranks, "corine").tolist() == [[1, 3, 11, 9], [7, 6, 16, 5]]


def test_readme_lists_the_land_cover_tables():
    readme = (os.path.join(os.path.dirname(__file__), "..", "README.md"))
    text = open(readme, encoding="utf-8").read()
    for table in (landcover.WORLDCOVER, landcover.CORINE):
        for code, (cls, name) in table.items():
            assert f"| {code} | {name} | {BY_ID[cls].name} |" in text, (code, name)


def test_worldcover_at_10_m_is_resampled_nearest_to_the_requested_grid(tmp_path):
    codes = np.array([[10, 80], [50, 40]], dtype=np.uint8).repeat(4, 0).repeat(4, 1)  # 8 x 8 px at 10 m
    ten_m = from_origin(500_000, 5_000_000, 10, 10)
    mask = _geotiff(tmp_path / "worldcover.tif", codes, transform=ten_m, crs="EPSG:32631")
    out = tmp_path / "out"
    assert main(["generate", str(mask), "--prompt", "Aerial view", "--backend", "procedural", "--classes", "worldcover",
                 "--resolution", "2", "--seed", "1", "--out", str(out)]) == 0
    rgb, crs, transform, _, _ = _read(out / "worldcover-seed1.tif")
    assert crs == "EPSG:32631" and transform == from_origin(500_000, 5_000_000, 2, 2) and rgb.shape == (40, 40, 3)
    expected = landcover.to_flair(codes, "worldcover").repeat(5, 0).repeat(5, 1)
    assert np.array_equal(rgb, render_array(expected, seed=1))


def test_diffusion_backend_writes_the_geotiff_on_the_mask_grid(tmp_path, tiny_dir, capsys):
    ids = _blocks((64, 128), seed=3)
    mask = _geotiff(tmp_path / "MSK_000002.tif", ids)
    out = tmp_path / "out"
    assert main(["generate", str(mask), "--prompt", "Aerial view", "--model", str(tiny_dir), "--steps", "1",
                 "--seed", "5", "--out", str(out)]) == 0
    rgb, crs, transform, _, _ = _read(out / "MSK_000002-seed5.tif")
    assert crs == LAMBERT and transform == ORIGIN and rgb.shape == (64, 128, 3)
    assert np.array_equal(rgb, np.asarray(Image.open(out / "MSK_000002-seed5.png")))


def test_png_masks_still_give_only_pngs(tmp_path, town_png):
    out = tmp_path / "out"
    assert main(["generate", str(town_png), "--prompt", "x", "--backend", "procedural", "--out", str(out),
                 "--seed", "1"]) == 0
    assert [p.name for p in out.iterdir()] == ["town-seed1.png"]
    assert main(["generate", str(town_png), "--prompt", "x", "--backend", "procedural", "--out", str(out),
                 "--resolution", "0.2"]) == 2


@pytest.mark.slow
def test_large_outputs_are_cloud_optimized_with_overviews(tmp_path):
    ids = _blocks((1500, 2300), seed=4, block=40)
    mask = raster.write_classes(tmp_path / "big.tif", ids, raster.Grid(2300, 1500, LAMBERT, ORIGIN))
    done = stream_render(mask, tmp_path / "big-out.tif", seed=2, window=512)
    assert (done.windows, done.rendered) == (15, 15)
    with rasterio.open(done.path) as src:
        assert max(src.overviews(1)) * 512 >= 2300 and src.profile["tiled"] and src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert np.array_equal(np.moveaxis(src.read(), 0, -1), render_array(ids, seed=2))  # windows join seamlessly


STREAM = """
import sys
from pathlib import Path
from seg2sat.gis import raster, stream
raster.GDAL_CACHE_MB = 16
def rss(field):
    return int(next(l for l in open('/proc/self/status') if l.startswith(field)).split()[1]) // 1024
if len(sys.argv) > 4:  # warm up GDAL, PROJ and the renderer on a tiny map: what remains is the map's own cost
    stream.stream_render(sys.argv[4], Path(sys.argv[2]).with_name('warm-up.tif'), seed=1, window=int(sys.argv[3]))
before = rss('VmHWM')
stream.stream_render(sys.argv[1], sys.argv[2], seed=1, window=int(sys.argv[3]))
print(before, rss('VmHWM'))
"""


def _stream_child(mask, out, window, warm_up=None):
    return subprocess.Popen([sys.executable, "-c", STREAM, str(mask), str(out), str(window)]
                            + ([str(warm_up)] if warm_up else []), stdout=subprocess.PIPE, text=True)


def _stream_growth(tmp_path, size: int) -> int:
    """MB that a streamed render of a size x size map adds to the process's peak RSS."""
    ids = np.tile(_blocks((512, 512), seed=5, block=32), (size // 512, size // 512))
    mask = raster.write_classes(tmp_path / f"map{size}.tif", ids, raster.Grid(size, size, LAMBERT, ORIGIN))
    del ids
    warm_up = raster.write_classes(tmp_path / "warm-up-mask.tif", _blocks((64, 64)), raster.Grid(64, 64, LAMBERT, ORIGIN))
    child = _stream_child(mask, tmp_path / f"out{size}.tif", 512, warm_up)
    before, peak = (int(v) for v in child.communicate(timeout=600)[0].split())
    assert child.returncode == 0
    with rasterio.open(tmp_path / f"out{size}.tif") as src:
        assert (src.width, src.height) == (size, size) and src.overviews(1)
    return peak - before


@pytest.mark.slow
def test_streamed_memory_does_not_grow_with_the_map(tmp_path):
    """9x the pixels, about the same peak: a 6144 x 6144 map (108 MB of colour) is never held whole."""
    small, large = _stream_growth(tmp_path, 2048), _stream_growth(tmp_path, 6144)
    print(f"peak RSS growth: {small} MB at 2048 px, {large} MB at 6144 px")
    assert large < 6144 * 6144 * 3 / 2**20, f"peak RSS grew by {large} MB"
    # What is left depends on the map only through GDAL's COG copy (overviews, its 16 MB block cache here).
    assert large - small < 48, f"peak RSS grew by {small} MB at 2048 px, {large} MB at 6144 px"


@pytest.mark.slow
def test_killed_render_resumes_and_keeps_finished_windows(tmp_path):
    size, window = 3072, 512
    ids = _blocks((size, size), seed=6, block=48)
    mask = raster.write_classes(tmp_path / "map.tif", ids, raster.Grid(size, size, LAMBERT, ORIGIN))
    out = tmp_path / "out.tif"
    journal = tmp_path / "out.tif.journal.json"
    child = _stream_child(mask, out, window)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            done = len(json.loads(journal.read_text())["done"])
        except (OSError, ValueError):
            done = 0
        if done >= 3:
            break
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    kept = set(json.loads(journal.read_text())["done"])
    assert 3 <= len(kept) < 36 and not out.exists()
    resumed = stream_render(mask, out, seed=1, window=window)
    assert resumed.windows == 36 and resumed.rendered == 36 - len(kept)
    with rasterio.open(out) as src:
        assert np.array_equal(np.moveaxis(src.read(), 0, -1), render_array(ids, seed=1))
    assert not journal.exists() and not (tmp_path / "out.tif.partial.tif").exists()


def test_a_corrupt_geotiff_mask_is_one_clear_error(tmp_path, capsys):
    bad = tmp_path / "MSK_bad.tif"
    bad.write_bytes(b"II*\x00 not really a tiff")
    for backend in ("procedural", "diffusion"):
        assert main(["generate", str(bad), "--prompt", "x", "--backend", backend, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "MSK_bad.tif" in err and "\n" not in err


@pytest.mark.parametrize("classes", ["worldcover", "corine"])
def test_other_class_systems_need_a_single_band(classes):
    with pytest.raises(ValueError, match="classes must be one of"):
        landcover.to_flair(np.zeros((2, 2), np.uint8), classes + "x")


def test_inpaint_of_a_georeferenced_map_is_georeferenced_too(tmp_path, capsys):
    ids = _blocks((64, 96), seed=7)
    mask = _geotiff(tmp_path / "MSK_000003.tif", ids)
    Image.fromarray(render_array(ids, seed=1)).save(tmp_path / "image.png")
    region = np.zeros((64, 96), np.uint8)
    region[10:30, 20:50] = 255
    Image.fromarray(region).save(tmp_path / "region.png")
    out = tmp_path / "out"
    assert main(["inpaint", str(tmp_path / "image.png"), str(mask), "--region", str(tmp_path / "region.png"),
                 "--prompt", "x", "--backend", "procedural", "--seed", "2", "--out", str(out)]) == 0
    rgb, crs, transform, _, _ = _read(out / "image-inpaint-seed2.tif")
    assert crs == LAMBERT and transform == ORIGIN and rgb.shape == (64, 96, 3)
    assert np.array_equal(rgb, np.asarray(Image.open(out / "image-inpaint-seed2.png")))
