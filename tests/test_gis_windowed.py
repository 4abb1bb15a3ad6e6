"""Diffusion maps window by window: shared out over two processes with accelerate, resumed after a stop, no seams."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from seg2sat.gis import raster
from seg2sat.gis.windowed import _boxes, diffuse_geotiff
from seg2sat.request import Request

ORIGIN = from_origin(843_000, 6_520_000, 0.2, 0.2)
WINDOW = 128  # the tiny pipeline's tile is 64 px: each window is itself a 2 x 2 tiled generation


@pytest.fixture
def big_mask(tmp_path):
    ids = np.random.default_rng(0).integers(1, 20, (12, 20)).repeat(16, 0).repeat(16, 1).astype(np.uint8)
    return raster.write_classes(tmp_path / "map.tif", ids, raster.Grid(320, 192, "EPSG:2154", ORIGIN))


def _read(path) -> np.ndarray:
    with rasterio.open(path) as src:
        assert src.crs == "EPSG:2154" and src.transform == ORIGIN and (src.width, src.height) == (320, 192)
        return np.moveaxis(src.read(), 0, -1).astype(np.int16)


def _request(seed: int = 1) -> Request:
    return Request.build(mask=np.ones((64, 64), np.uint8) * 11, prompt="Aerial view", seed=seed, steps=1)


@pytest.mark.slow
def test_two_accelerate_processes_share_the_windows_of_one_map(tmp_path, tiny_dir, tiny_pipe, big_mask):
    out = tmp_path / "two"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
         "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "seg2sat", "generate", str(big_mask),
         "--prompt", "Aerial view", "--model", str(tiny_dir), "--steps", "1", "--seed", "1", "--window", str(WINDOW),
         "--out", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "0/3" in done.stderr  # the main process's own share: 3 of the 6 windows
    assert sorted(p.name for p in out.iterdir()) == ["map-seed1.png", "map-seed1.tif"]
    alone = diffuse_geotiff(big_mask, tmp_path / "one.tif", _request(), tiny_pipe, window=WINDOW)
    assert alone.windows == 6
    assert np.abs(_read(out / "map-seed1.tif") - _read(alone.path)).max() <= 2


def test_a_stopped_map_keeps_its_finished_windows(tmp_path, tiny_pipe, big_mask):
    out = tmp_path / "result.tif"

    def stop_after_two(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        diffuse_geotiff(big_mask, out, _request(), tiny_pipe, window=WINDOW, on_window=stop_after_two)
    parts = tmp_path / "result.tif.parts"
    assert len(list(parts.glob("*.png"))) == 2 and not out.exists()
    resumed = diffuse_geotiff(big_mask, out, _request(), tiny_pipe, window=WINDOW)
    assert (resumed.windows, resumed.rendered) == (6, 4) and not parts.exists()
    straight = diffuse_geotiff(big_mask, tmp_path / "straight.tif", _request(), tiny_pipe, window=WINDOW)
    assert np.array_equal(_read(out), _read(straight.path))
    other_seed = diffuse_geotiff(big_mask, out, _request(seed=2), tiny_pipe, window=WINDOW)  # stale parts never reused
    assert other_seed.rendered == 6


def test_window_boundaries_step_no_more_than_neighbouring_pixels(tmp_path, tiny_pipe, big_mask):
    """Across the cross-fade between two windows, neighbouring pixels differ no more than inside a window."""
    image = _read(diffuse_geotiff(big_mask, tmp_path / "result.tif", _request(), tiny_pipe, window=WINDOW).path)
    grid = raster.Grid(320, 192, None, ORIGIN)
    step = np.abs(np.diff(image, axis=1)).mean(axis=(0, 2))  # step between column x and x + 1
    seams = np.zeros(319, bool)
    for left, _, right, _ in _boxes(grid, WINDOW, WINDOW // 8):
        for edge in (left, right):
            if 0 < edge < 320:
                seams[max(edge - WINDOW // 8 - 1, 0) : min(edge + 1, 319)] = True
    assert seams.any() and (~seams).any()
    assert step[seams].mean() <= step[~seams].mean() * 1.05
