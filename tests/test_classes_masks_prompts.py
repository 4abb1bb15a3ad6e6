import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from seg2sat import CLASSES, caption, masks, prompts
from seg2sat.classes import get_class, legend_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_table_has_the_19_flair_classes_with_unique_colours():
    assert [c.id for c in CLASSES] == list(range(1, 20))
    assert len({c.colour for c in CLASSES}) == 19
    assert get_class("water").colour == "#1553ae" and get_class(1).name == "building"
    with pytest.raises(ValueError, match="unknown land-cover class"):
        get_class("lava")


def test_readme_legend_is_the_table():
    assert legend_markdown() in (ROOT / "README.md").read_text(encoding="utf-8")


def test_codec_round_trip(town_ids):
    image = masks.to_image(town_ids)
    assert image.getpixel((12, 10)) == get_class("building").rgb
    result = masks.snap(image)
    assert np.array_equal(result.ids, town_ids) and result.off_palette == 0.0


def test_raw_flair_values_outside_1_19_become_other():
    raw = np.array([[0, 1, 19, 20, 255]], dtype=np.uint8)
    assert masks.from_flair(raw).tolist() == [[19, 1, 19, 19, 19]]


def _antialiased_stroke() -> Image.Image:
    big = Image.new("RGB", (256, 256), get_class("herbaceous vegetation").rgb)
    ImageDraw.Draw(big).line([(10, 20), (240, 200)], fill=get_class("impervious surface").rgb, width=24)
    return big.resize((64, 64), Image.BILINEAR)  # blends the stroke edges like a canvas brush


def test_snap_antialiased_stroke_gives_only_the_two_classes_and_reports_off_palette():
    result = masks.snap(_antialiased_stroke())
    assert set(np.unique(result.ids)) == {3, 10}
    assert 0.0 < result.off_palette < 0.5


def test_snap_jpeg_compressed_mask(town_ids):
    buf = io.BytesIO()
    masks.to_image(town_ids).save(buf, format="JPEG", quality=75)
    result = masks.snap(Image.open(buf))
    assert result.off_palette > 0.1
    assert (result.ids == town_ids).mean() > 0.97  # only edge pixels may move


def test_snap_rgba_transparent_is_background_and_alpha_does_not_leak():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:4, :, :3] = get_class("water").rgb
    rgba[:4, :, 3] = 255
    result = masks.snap(Image.fromarray(rgba, "RGBA"), background=10)
    assert (result.ids[:4] == 5).all() and (result.ids[4:] == 10).all()
    assert result.off_palette == 0.0


def test_snap_palette_and_greyscale_images():
    p = masks.to_image(np.array([[1, 5], [7, 14]], np.uint8)).convert("P", palette=Image.ADAPTIVE)
    assert masks.snap(p).ids.tolist() == [[1, 5], [7, 14]]
    grey = Image.fromarray(np.array([[0, 255]], np.uint8), "L")
    assert masks.snap(grey).ids.tolist() == [[19, 14]]  # black = other, white = snow


def test_resizing_a_mask_never_invents_classes(town_ids):
    resized = masks.resize_ids(town_ids, (300, 100))
    assert resized.shape == (100, 300) and set(np.unique(resized)) == set(np.unique(town_ids))


def test_size_policy_rounds_to_multiples_of_64():
    assert masks.model_size(512, 512) == (512, 512)
    assert masks.model_size(500, 90) == (512, 64)
    assert masks.model_size(10, 1000) == (64, 1024)


def test_load_mask_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        masks.load_mask(tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="not a readable image"):
        masks.load_mask(bad)


def test_caption_lists_classes_largest_first_without_rare_ones(town_ids):
    ids = town_ids.copy()
    ids[0, 0] = 13  # one swimming-pool pixel: below the share threshold
    text = caption("31 Rue Molière, France", ids)
    assert text == "Aerial view of 31 Rue Molière, France. agricultural land, water, building, impervious surface."
    assert caption(None, ids).startswith("Aerial view. agricultural land")
    assert "swimming pool" not in text


def test_styles_and_prompt_building():
    assert prompts.build_prompt("Aerial view of Lyon", "lego") == "Aerial view of Lyon. Colorful lego bricks"
    assert prompts.build_prompt("Aerial view of Lyon.", None) == "Aerial view of Lyon."
    assert set(prompts.STYLES.values()) >= {"Oil on canvas painting", "Stained glass window"}
    with pytest.raises(ValueError, match="unknown style"):
        prompts.build_prompt("x", "cubism")
    with pytest.raises(ValueError, match="prompt"):
        prompts.build_prompt("  ", None)


SAMPLES = Path(__file__).resolve().parents[1] / "examples" / "masks"


@pytest.mark.parametrize("quality", [95, 70, 50])
def test_jpeg_fringes_never_add_a_class_and_edges_stay_put(quality):
    """A JPEG of the town sample: yellow-green and red-green blends used to read as ligneous and bare soil."""
    png = Image.open(SAMPLES / "town.png").convert("RGB")
    truth = masks.snap(png).ids
    buffer = io.BytesIO()
    png.save(buffer, "JPEG", quality=quality)
    snapped = masks.snap(Image.open(buffer)).ids
    assert set(masks.class_shares(snapped)) == set(masks.class_shares(truth))
    assert caption("Lyon", snapped) == caption("Lyon", truth)
    assert (snapped != truth).mean() < 0.012


def test_a_small_painted_area_survives_and_an_isolated_speck_takes_its_surroundings():
    ids = np.full((64, 64), 11, np.uint8)
    ids[10:14, 10:14] = 13  # a 4 x 4 pool: small, but painted
    rgb = masks.to_rgb(ids).astype(np.int16)
    rgb += np.random.default_rng(0).integers(-6, 7, rgb.shape)  # JPEG-like noise everywhere
    rgb[40, 40] = (150, 150, 60)  # one stray pixel nearest to another class
    snapped = masks.snap(np.clip(rgb, 0, 255).astype(np.uint8)).ids
    assert np.array_equal(snapped, ids)
