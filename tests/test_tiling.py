"""Large maps with diffusion: tiles of the tiny pipeline make one image.

The tiny pipeline has SD 2.1 base's geometry (512 px tiles); most tests pass ``tile=8``
(64 px tiles) to exercise many tiles at a small cost.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from seg2sat import generate, masks
from seg2sat.box import Box
from seg2sat.tiling import blend_weights, generate_tiled, needs_tiling, tile_size, windows


def test_the_tile_is_the_model_s_native_size(tiny_pipe):
    assert tile_size(tiny_pipe) == 512
    assert needs_tiling(tiny_pipe, 576, 64) and not needs_tiling(tiny_pipe, 512, 512)


@pytest.mark.parametrize("height, width, tile, overlap", [(8, 8, 8, 2), (24, 32, 8, 2), (37, 9, 8, 3), (256, 256, 64, 16)])
def test_windows_cover_every_cell_inside_the_map_with_real_overlaps(height, width, tile, overlap):
    spans = windows(height, width, tile, overlap)
    covered = np.zeros((height, width), int)
    for left, top, right, bottom in spans:
        assert 0 <= top < bottom <= height and 0 <= left < right <= width
        assert bottom - top == min(tile, height) and right - left == min(tile, width)
        covered[top:bottom, left:right] += 1
    assert covered.min() >= 1
    starts = sorted({s[0] for s in spans})
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))
    assert blend_weights(tile, tile, overlap).min() > 0


def test_tiles_and_gis_windows_are_the_same_box_type_in_pil_order():
    from seg2sat.gis.raster import Grid
    from seg2sat.gis.stream import windows as gis_windows

    tile = windows(8, 24, 8, 2)[-1]  # the last tile of a wide latent: at the right edge
    assert isinstance(tile, Box) and (tile.left, tile.top, tile.right, tile.bottom) == (16, 0, 24, 8)
    image = Image.new("RGB", (24, 8))
    assert image.crop(tile).size == (tile.width, tile.height) == (8, 8)  # PIL takes it as (left, top, right, bottom)
    grid = Grid(width=1500, height=700, crs=None, transform=None)
    boxes = list(gis_windows(grid, 1024))
    assert all(isinstance(b, Box) for b in boxes) and boxes[1] == Box(1024, 0, 1500, 700)
    assert Box(0, 0, 10, 10).intersection(Box(5, 8, 20, 20)) == Box(5, 8, 10, 10)
    assert Box(0, 0, 10, 10).intersection(Box(10, 0, 20, 10)) is None


def test_bad_overlap_is_refused():
    with pytest.raises(ValueError, match="overlap"):
        windows(32, 32, 8, 8)


def test_a_one_tile_mask_gives_the_same_image_as_plain_generate(tiny_pipe, town_ids):
    ids = town_ids
    plain = generate(ids, "Aerial view of a town", seed=9, steps=2, pipeline=tiny_pipe).images[0]
    tiled = generate_tiled(tiny_pipe, masks.to_image(ids), "Aerial view of a town", seed=9, steps=2)
    assert np.array_equal(np.asarray(plain), np.asarray(tiled))


def test_large_masks_give_one_image_of_the_mask_size_with_progress_over_tiles_and_steps(tiny_pipe, town_ids):
    ids = np.tile(town_ids, (1, 5))[:, :600]  # 600 x 64 (model size 576 x 64): two 512 px tiles
    calls = []
    result = generate(ids, "Aerial view", seed=4, num_images=2, steps=2, pipeline=tiny_pipe,
                      on_step=lambda k, n: calls.append((k, n)))
    assert [im.size for im in result.images] == [(600, 64)] * 2
    tiles = len(windows(64 // 8, 576 // 8, 64, 16))
    assert tiles == 2
    assert calls[-1] == (2 * 2 * tiles, 2 * 2 * tiles)
    assert [k for k, _ in calls] == list(range(1, 2 * 2 * tiles + 1))
    assert not np.array_equal(np.asarray(result.images[0]), np.asarray(result.images[1]))


def test_tiled_generation_is_deterministic_per_seed(tiny_pipe, town_ids):
    control = masks.to_image(np.tile(town_ids, (2, 1)))
    a, b, c = (np.asarray(generate_tiled(tiny_pipe, control, "Aerial view", seed=s, steps=1, tile=8)) for s in (1, 1, 2))
    assert a.shape == (128, 128, 3) and np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_the_controlnet_sees_each_tile_s_own_part_of_the_mask(tiny_pipe, town_ids):
    ids = np.tile(town_ids, (2, 1))
    colours = masks.to_rgb(ids).astype(np.float32) / 255
    seen = []

    def spy(module, args, kwargs):
        seen.append(kwargs["controlnet_cond"][0].permute(1, 2, 0).numpy())

    hook = tiny_pipe.controlnet.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        generate_tiled(tiny_pipe, masks.to_image(ids), "Aerial view", seed=0, steps=1, tile=8)
    finally:
        hook.remove()
    spans = windows(16, 16, 8, 2)
    assert len(seen) == len(spans) > 1
    for cond, (left, top, right, bottom) in zip(seen, spans):
        assert np.allclose(cond, colours[top * 8 : bottom * 8, left * 8 : right * 8], atol=1e-6)


def test_control_sides_must_fit_the_latent_grid(tiny_pipe):
    with pytest.raises(ValueError, match="multiples of 8"):
        generate_tiled(tiny_pipe, masks.to_image(np.ones((100, 130), np.uint8)), "Aerial view", seed=0, steps=1)


def test_tiled_vae_decode_keeps_each_tile_where_no_other_tile_reaches(tiny_pipe):
    import torch

    from seg2sat.tiling import _decode_tile, decode

    latents = torch.randn(1, 4, 21, 30, generator=torch.Generator().manual_seed(0))
    image = np.asarray(decode(tiny_pipe, latents, 8, 2)).astype(int)
    assert image.shape == (168, 240, 3)
    spans = windows(21, 30, 8, 2)
    cover = np.zeros((168, 240), int)
    for left, top, right, bottom in spans:
        cover[top * 8 : bottom * 8, left * 8 : right * 8] += 1
    for left, top, right, bottom in spans:
        alone = np.asarray(_decode_tile(tiny_pipe, latents[:, :, top:bottom, left:right], None)).astype(int)
        only = cover[top * 8 : bottom * 8, left * 8 : right * 8] == 1
        assert only.any()
        assert np.abs(image[top * 8 : bottom * 8, left * 8 : right * 8][only] - alone[only]).max() <= 1


def test_image_to_image_from_the_procedural_render_runs_the_strength_share_of_steps(tiny_pipe, town_ids):
    calls = []
    kwargs = dict(seed=3, steps=4, pipeline=tiny_pipe)
    first = generate(town_ids, "Aerial view", init_image="procedural", strength=0.5,
                     on_step=lambda k, n: calls.append(n), **kwargs).images[0]
    assert first.size == (128, 64)
    assert calls[-1] == 2  # half of the 4 steps (one tile)
    again = generate(town_ids, "Aerial view", init_image="procedural", strength=0.5, **kwargs).images[0]
    assert np.array_equal(np.asarray(first), np.asarray(again))
    from_noise = generate(town_ids, "Aerial view", **kwargs).images[0]
    assert not np.array_equal(np.asarray(first), np.asarray(from_noise))
    flat = generate(town_ids, "Aerial view", init_image=np.full((64, 128, 3), 128, np.uint8), strength=0.5, **kwargs)
    assert not np.array_equal(np.asarray(first), np.asarray(flat.images[0]))


@pytest.mark.parametrize("kwargs, message", [
    (dict(init_image="procedural", strength=0), "strength"),
    (dict(init_image="procedural", strength=1.5), "strength"),
    (dict(init_image="no/such/start.png"), "init_image"),
])
def test_bad_image_to_image_inputs_fail_before_model_work(town_ids, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(town_ids, "Aerial view", pipeline=object(), **kwargs)


def test_image_to_image_over_many_tiles_runs_the_strength_share_of_steps_on_every_tile(tiny_pipe, town_ids):
    from seg2sat.img2img import generate_from_image

    control = masks.to_image(town_ids)
    tiles = len(windows(64 // 8, 128 // 8, 8, 2))
    passes = []
    start = Image.fromarray(np.full((64, 128, 3), 128, np.uint8))
    image = generate_from_image(tiny_pipe, control, start, "Aerial view", seed=1, strength=0.5, steps=4, tile=8,
                                on_tile=lambda done, total: passes.append(total))
    assert image.size == (128, 64) and tiles > 1
    assert passes[-1] == tiles * 2  # half of the 4 steps, on every tile
    with pytest.raises(ValueError, match="strength"):
        generate_from_image(tiny_pipe, control, start, "Aerial view", seed=1, strength=0)
