"""Contact sheets: images side by side with a caption under each.

The README figures (mask + four seeds, mask + four styles), the example scripts and
anyone comparing results need the same picture: a row of same-sized tiles that can
be told apart at a glance. Captions sit under the tiles, never on them, so no
pixel of a result is hidden.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

GAP = 8
"""Pixels of white between tiles and around the sheet."""


def _font(height: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=height)
    except TypeError:  # Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def grid(images: Sequence[Image.Image], labels: Sequence[str] | None = None, columns: int | None = None,
         tile: int | None = None) -> Image.Image:
    """Lay ``images`` out in rows of ``columns`` (default: all in one row), each with its label below.

    Every tile is scaled to ``tile`` pixels wide (default: the first image's width),
    keeping its aspect ratio; masks are scaled with nearest-neighbour so their class
    colours stay exact.
    """
    if not images:
        raise ValueError("grid needs at least one image")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"got {len(labels)} labels for {len(images)} images")
    columns = max(1, min(columns or len(images), len(images)))
    width = tile or images[0].width
    tiles = [_scaled(im, width) for im in images]
    height = max(t.height for t in tiles)
    text_h = max(12, width // 16) if labels else 0
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (GAP + columns * (width + GAP), GAP + rows * (height + text_h + GAP)), "white")
    draw, font = ImageDraw.Draw(sheet), _font(int(text_h * 0.8) or 10)
    for n, im in enumerate(tiles):
        x, y = GAP + (n % columns) * (width + GAP), GAP + (n // columns) * (height + text_h + GAP)
        sheet.paste(im, (x, y))
        if labels:
            draw.text((x + width / 2, y + height + text_h / 2), labels[n], fill="black", font=font, anchor="mm")
    return sheet


def _scaled(image: Image.Image, width: int) -> Image.Image:
    image = image.convert("RGB")
    if image.width == width:
        return image
    height = max(1, round(image.height * width / image.width))
    # A mask has few colours: resample it nearest so no blended (non-class) colour appears.
    few_colours = image.getcolors(64) is not None
    return image.resize((width, height), Image.NEAREST if few_colours else Image.LANCZOS)
