"""One mask, one seed, four styles: lego bricks, pencil sketch, oil on canvas, stained glass.

The mask fixes *where* things are; the style preset only adds words to the prompt
(see ``seg2sat.STYLES``), so the same seed in each style shows what the words change.

    python examples/style_grid.py examples/masks/vineyards.png --seed 3
    python examples/style_grid.py examples/masks/town.png --styles lego oil --model tiny --steps 2 --size 128
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from diffusers.utils import logging as diffusers_logging

from seg2sat import STYLES, caption, generate, load_mask
from seg2sat.masks import resize_ids, to_image
from seg2sat.options import add_model_options, add_numeric_option, model_arguments
from seg2sat.pipelines import WeightsNotFoundError, load_pipeline
from seg2sat.testing.figures import grid

GRID_STYLES = ("lego", "pencil", "oil", "stained-glass")


def style_grid(
    mask: str | Path,
    out: str | Path,
    place: str | None = None,
    styles: Sequence[str] = GRID_STYLES,
    seed: int = 0,
    *,
    model: str | None = None,
    controlnet: str | None = None,
    controlnet_subfolder: str | None = None,
    device: str | None = None,
    steps: int | None = None,
    size: int | None = None,
) -> list[Path]:
    """Write ``<mask>-<style>.png`` per style and ``<mask>-styles.png`` (mask + every style) into ``out``."""
    unknown = [s for s in styles if s not in STYLES]
    if unknown:  # before loading anything: a typo should cost nothing
        raise ValueError(f"unknown style(s) {', '.join(unknown)}; choose from {', '.join(STYLES)}")
    ids = load_mask(mask).ids
    if size:
        ids = resize_ids(ids, (size, size))
    pipe = load_pipeline(model, controlnet, device=device, controlnet_subfolder=controlnet_subfolder)
    pipe.set_progress_bar_config(disable=False, desc="denoising")
    prompt = caption(place, ids)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(mask).stem
    images, written = [], []
    for style in styles:
        image = generate(ids, prompt, seed=seed, style=style, steps=steps, pipeline=pipe).images[0]
        image.save(out / f"{stem}-{style}.png")
        images.append(image)
        written.append(out / f"{stem}-{style}.png")
    grid([to_image(ids), *images], ["mask", *styles]).save(out / f"{stem}-styles.png")
    return [*written, out / f"{stem}-styles.png"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mask", type=Path, help="colour mask PNG, e.g. examples/masks/town.png")
    parser.add_argument("--place", default=None, help="address or place for the caption (default none)")
    parser.add_argument("--styles", nargs="+", default=list(GRID_STYLES), choices=list(STYLES))
    parser.add_argument("--seed", type=int, default=0)
    add_model_options(parser)
    add_numeric_option(parser, "--steps", "steps")
    parser.add_argument("--size", type=int, help="resize the mask to SIZE x SIZE first (default: keep its size)")
    parser.add_argument("--out", type=Path, default=Path("out"))
    args = parser.parse_args(argv)
    diffusers_logging.set_verbosity_error()  # progress bars and results only, no library notices
    try:
        paths = style_grid(args.mask, args.out, args.place, args.styles, args.seed, **model_arguments(args),
                           steps=args.steps, size=args.size)
    except (ValueError, WeightsNotFoundError) as exc:
        parser.exit(2, f"error: {exc}\n")
    print(*paths, sep="\n")


if __name__ == "__main__":
    main()
