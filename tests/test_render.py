"""The procedural renderer: every class, class boundaries, seamless tiles, seeds, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from seg2sat.classes import CLASSES, NUM_CLASSES
from seg2sat.generation import generate
from seg2sat.render import HALO, render, render_array, render_window
from seg2sat.render_stats import class_stats


def test_every_class_renders_a_textured_image_near_its_real_colour():
    stats = class_stats()
    for c in CLASSES:
        ids = np.full((96, 96), c.id, np.uint8)
        image = render(ids, seed=3)
        assert image.mode == "RGB" and image.size == (96, 96)
        pixels = np.asarray(image).reshape(-1, 3).astype(float)
        assert pixels.std(0).max() > 3, f"{c.name} is a flat colour"
        distance = np.linalg.norm(pixels.mean(0) - np.array(stats[c.id][0]))
        assert distance < 40, f"{c.name}: mean colour {pixels.mean(0)} is far from {stats[c.id][0]}"


def _quadrants(a: int, b: int, c: int, d: int, side: int = 128) -> np.ndarray:
    ids = np.empty((side, side), np.uint8)
    half = side // 2
    ids[:half, :half], ids[:half, half:], ids[half:, :half], ids[half:, half:] = a, b, c, d
    return ids


@pytest.mark.parametrize("classes", [(1, 5, 11, 7), (13, 3, 9, 18)])
def test_away_from_boundaries_each_pixel_has_its_own_class_texture(classes):
    ids = _quadrants(*classes)
    out = render_array(ids, seed=2)
    half = ids.shape[0] // 2
    for cls, (ys, xs) in zip(classes, [(slice(0, half), slice(0, half)), (slice(0, half), slice(half, None)),
                                       (slice(half, None), slice(0, half)), (slice(half, None), slice(half, None))]):
        alone = render_array(np.full_like(ids, cls), seed=2)
        inner = np.zeros(ids.shape, bool)
        inner[ys, xs] = True
        inner[half - HALO : half + HALO] = False
        inner[:, half - HALO : half + HALO] = False
        assert np.array_equal(out[inner], alone[inner]), f"class {cls} took texture from a neighbour"


def test_class_regions_stay_distinguishable_up_to_the_boundary():
    ids = _quadrants(1, 3, 11, 7)
    out = render_array(ids, seed=0).astype(float)
    means = {c: out[ids == c].mean(0) for c in (1, 3, 11, 7)}
    for c, mean in means.items():
        others = [np.linalg.norm(mean - m) for k, m in means.items() if k != c]
        assert min(others) > 20, f"class {c} looks like its neighbours"


def test_class_edges_are_softened_without_changing_classes():
    ids = np.full((64, 64), 5, np.uint8)
    ids[:, 32:] = 14  # water | snow: very different colours
    out = render_array(ids, seed=0).astype(float)
    water, snow, edge = out[:, 8:24].mean((0, 1)), out[:, 40:56].mean((0, 1)), out[:, 31].mean(0)
    assert np.linalg.norm(edge - water) > 10 and np.linalg.norm(edge - snow) > 10


def test_tiles_rendered_apart_are_identical_to_the_whole(town_ids):
    whole = render_array(town_ids, seed=11)
    h, w = town_ids.shape
    stitched = np.zeros_like(whole)
    for top in range(0, h, 37):
        for left in range(0, w, 45):
            box = (left, top, min(left + 45, w), min(top + 37, h))
            stitched[box[1] : box[3], box[0] : box[2]] = render_window(town_ids, box, seed=11)
    assert np.array_equal(stitched, whole)


def test_pixels_depend_on_absolute_position_so_neighbouring_maps_join(town_ids):
    whole = render_array(town_ids, seed=4)
    part = render_array(town_ids[:, 40:], seed=4, origin=(40, 0))
    assert np.array_equal(part[HALO:-HALO, HALO:-HALO], whole[HALO:-HALO, 40 + HALO : -HALO])
    shifted = render_array(town_ids[:, 40:], seed=4)
    assert not np.array_equal(part, shifted)


def test_same_seed_same_image_other_seed_other_image(town_ids):
    a, b, c = (render_array(town_ids, seed=s) for s in (7, 7, 8))
    assert np.array_equal(a, b)
    assert np.mean(np.any(a != c, axis=-1)) > 0.5


def test_procedural_backend_reads_mask_files_and_numbers_seeds(town_png, town_ids):
    result = generate(town_png, "Aerial view of a town", seed=5, num_images=2, backend="procedural")
    assert result.seeds == [5, 6]
    assert [im.size for im in result.images] == [(128, 64)] * 2
    assert np.array_equal(np.asarray(result.images[0]), render_array(town_ids, seed=5))
    assert not np.array_equal(np.asarray(result.images[0]), np.asarray(result.images[1]))


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 4, 3), np.uint8), "2-D"),
    (np.zeros((4, 4), np.uint8), "1..19"),
    (np.full((4, 4), NUM_CLASSES + 1, np.uint8), "1..19"),
    (np.zeros((0, 4), np.uint8), "non-empty"),
    (np.ones((4, 4), np.float32), "integer"),
])
def test_bad_masks_are_refused_with_a_clear_message(bad, message):
    with pytest.raises(ValueError, match=message):
        render(bad)


def test_bad_seed_origin_and_box_are_refused(town_ids):
    with pytest.raises(ValueError, match="seed"):
        render(town_ids, seed=-1)
    with pytest.raises(ValueError, match="origin"):
        render(town_ids, origin="top")
    with pytest.raises(ValueError, match="inside"):
        render_window(town_ids, (0, 0, 500, 10))
    with pytest.raises(ValueError, match="num_images"):
        generate(town_ids, "x", num_images=0, backend="procedural")
    with pytest.raises(ValueError, match="not found"):
        generate("no/such/mask.png", "x", backend="procedural")
