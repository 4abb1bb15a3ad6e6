"""The GIS Python API: seg2sat.gis.generate_geotiff, called directly, its GeoTIFFs read back with rasterio."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from seg2sat.gis import MaskRaster, generate_geotiff, raster
from seg2sat.render import render_array
from seg2sat.request import Request

LAMBERT = "EPSG:2154"
ORIGIN = from_origin(843_000, 6_520_000, 0.2, 0.2)


def _map(path, shape=(96, 160), seed=0):
    rng = np.random.default_rng(seed)
    h, w = shape
    ids = rng.integers(1, 20, (h // 16, w // 16)).repeat(16, 0).repeat(16, 1).astype(np.uint8)
    return raster.write_classes(path, ids, raster.Grid(w, h, LAMBERT, ORIGIN)), ids


def _request(backend="diffusion", seed=3, n=1) -> Request:
    """Every setting but the mask: generate_geotiff reads the mask from the GeoTIFF."""
    return Request.build(mask=np.ones((8, 8), np.uint8), prompt="Aerial view", seed=seed, num_images=n, steps=1,
                         backend=backend)


def _read(path, shape):
    with rasterio.open(path) as src:
        assert src.crs == LAMBERT and src.transform == ORIGIN and (src.height, src.width) == shape
        return np.moveaxis(src.read(), 0, -1)


class NoModel:
    """An engine whose model must not be touched (a procedural request never needs it)."""

    @property
    def pipeline(self):
        raise AssertionError("the model was loaded for a procedural request")


def test_procedural_maps_are_streamed_into_georeferenced_files(tmp_path):
    mask, ids = _map(tmp_path / "map.tif")
    seen = []
    result = generate_geotiff(mask, _request("procedural", n=2), NoModel(), tmp_path / "out", on_output=seen.append)
    assert (result.how, result.backend) == ("streamed", "procedural")
    assert [p.name for p in result.paths] == ["map-seed3.tif", "map-seed3.png", "map-seed4.tif", "map-seed4.png"]
    assert seen == result.outputs and [o.seed for o in seen] == [3, 4]
    rgb = _read(result.outputs[0].tif, ids.shape)
    assert np.array_equal(rgb, render_array(ids, seed=3))
    assert np.array_equal(np.asarray(Image.open(result.outputs[0].png).convert("RGB")), rgb)
    again = generate_geotiff(mask, _request("procedural"), NoModel(), tmp_path / "out", name="again")
    assert again.paths[0].name == "again-seed3.tif" and again.outputs[0].resumed == 0


def test_diffusion_in_memory_windowed_and_without_weights(tmp_path, tiny_pipe):
    mask, ids = _map(tmp_path / "map.tif")
    engine = SimpleNamespace(pipeline=tiny_pipe)
    small = generate_geotiff(mask, _request(), engine, tmp_path / "small")
    assert small.how == "in memory" and [p.name for p in small.paths] == ["map-seed3.png", "map-seed3.tif"]
    assert np.array_equal(_read(small.outputs[0].tif, ids.shape), np.asarray(Image.open(small.outputs[0].png).convert("RGB")))

    big = generate_geotiff(mask, _request(), engine, tmp_path / "big", window=64, state=None)
    assert (big.how, big.backend) == ("windowed", "diffusion") and big.outputs[0].windows > 1
    _read(big.outputs[0].tif, ids.shape)

    fallback = generate_geotiff(mask, _request(), SimpleNamespace(pipeline=None), tmp_path / "fallback")
    assert (fallback.how, fallback.backend) == ("in memory", "procedural")
    assert np.array_equal(_read(fallback.outputs[0].tif, ids.shape), render_array(ids, seed=3))


def test_an_open_mask_raster_is_read_once_and_checks_the_request_on_its_ids(tmp_path):
    mask, ids = _map(tmp_path / "map.tif", shape=(640, 640))
    with MaskRaster(mask, backend="procedural") as opened:
        assert opened.streamed and opened.ids.shape == (512, 512)  # a corner: the map is never read whole
        req = Request.build(mask=opened.ids, prompt="x", seed=1, backend="procedural")
        result = generate_geotiff(opened, req, NoModel(), tmp_path / "out")
    assert np.array_equal(_read(result.outputs[0].tif, ids.shape), render_array(ids, seed=1))
    with MaskRaster(mask) as opened:  # diffusion, not past the window: the whole map, with its grid
        assert not opened.streamed and np.array_equal(opened.ids, ids)


def test_an_unreadable_mask_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff")
    with pytest.raises(ValueError, match="bad.tif"):
        generate_geotiff(bad, _request("procedural"), NoModel(), tmp_path / "out")


@pytest.mark.parametrize("backend", ["procedural", "diffusion"])
def test_the_cli_opens_a_geotiff_mask_once(tmp_path, monkeypatch, backend):
    """Size check, request sample (or whole map) and every window: one open raster (streamed and in memory)."""
    from seg2sat.cli import main

    mask, _ = _map(tmp_path / "map.tif")
    real, opened = rasterio.open, []

    def counting(path, *args, **kwargs):
        opened.extend([path] if str(path) == str(mask) else [])
        return real(path, *args, **kwargs)

    monkeypatch.setattr(rasterio, "open", counting)
    assert main(["generate", str(mask), "--prompt", "x", "--backend", backend, "--model", str(tmp_path / "none"),
                 "--out", str(tmp_path / "out")]) == 0
    assert len(opened) == 1 and len(list((tmp_path / "out").glob("map-seed*.tif"))) == 1
