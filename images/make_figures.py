"""Regenerate the README figures from the sample masks in ``examples/masks/``.

- ``sample_masks.png``: every sample mask with its name (no model needed);
- ``seed_grid.png``: one mask and the images of four seeds;
- ``style_grid.png``: one mask and one seed in four styles (lego, pencil, oil, stained glass).

The seed and style grids need the real weights (SD 2.1 base and the Seg2Sat
ControlNet, from the hub cache or folders given with ``--model``/``--controlnet``);
``--model tiny`` (a folder made by ``seg2sat make-tiny tiny``) is a quick smoke run
that writes the same files with random-weight pictures, so use ``--out`` then.

    python images/make_figures.py                       # real weights, writes into images/
    python images/make_figures.py --model tiny --steps 2 --size 128 --out /tmp/figures
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from diffusers.utils import logging as diffusers_logging
from PIL import Image

from seg2sat import caption, generate, load_mask
from seg2sat.masks import resize_ids, to_image
from seg2sat.options import add_model_options, add_numeric_option, model_arguments
from seg2sat.pipelines import WeightsNotFoundError, load_pipeline
from seg2sat.testing.figures import grid

ROOT = Path(__file__).resolve().parents[1]
MASKS = ROOT / "examples" / "masks"
SEEDS = (1, 2, 3, 4)
STYLES = ("lego", "pencil", "oil", "stained-glass")


def masks_figure(folder: Path = MASKS, tile: int = 256) -> Image.Image:
    """All sample masks side by side, named after their files."""
    paths = sorted(Path(folder).glob("*.png"))
    if not paths:
        raise ValueError(f"no PNG masks in {folder}")
    return grid([to_image(load_mask(p).ids) for p in paths], [p.stem.replace("_", " ") for p in paths], tile=tile)


def seed_figure(ids, place: str | None, seeds: Sequence[int], steps: int, pipeline) -> Image.Image:
    """The mask, then one image per seed."""
    result = generate(ids, caption(place, ids), seed=list(seeds), num_images=len(seeds), steps=steps, pipeline=pipeline)
    return grid([to_image(ids), *result.images], ["mask", *(f"seed {s}" for s in result.seeds)])


def style_figure(ids, place: str | None, styles: Sequence[str], seed: int, steps: int, pipeline) -> Image.Image:
    """The mask, then the same seed in each style."""
    images = [generate(ids, caption(place, ids), seed=seed, style=s, steps=steps, pipeline=pipeline).images[0]
              for s in styles]
    return grid([to_image(ids), *images], ["mask", *styles])


def make_figures(
    out: str | Path = ROOT / "images",
    mask: str | Path = MASKS / "town.png",
    place: str | None = "Saint-Cyr-sur-Mer, Var, France",
    *,
    model: str | None = None,
    controlnet: str | None = None,
    controlnet_subfolder: str | None = None,
    device: str | None = None,
    steps: int = 30,
    size: int | None = None,
    seed: int = 1,
) -> list[Path]:
    """Write ``sample_masks.png`` first (it needs no weights), then ``seed_grid.png`` and ``style_grid.png``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    masks_figure().save(out / "sample_masks.png", optimize=True)
    ids = load_mask(mask).ids
    if size:
        ids = resize_ids(ids, (size, size))
    pipe = load_pipeline(model, controlnet, device=device, controlnet_subfolder=controlnet_subfolder)
    pipe.set_progress_bar_config(disable=False, desc="denoising")
    seed_figure(ids, place, [seed + i for i in range(len(SEEDS))], steps, pipe).save(out / "seed_grid.png")
    style_figure(ids, place, STYLES, seed, steps, pipe).save(out / "style_grid.png")
    return [out / name for name in ("sample_masks.png", "seed_grid.png", "style_grid.png")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "images", help="folder for the figures (default images/)")
    parser.add_argument("--mask", type=Path, default=MASKS / "town.png", help="mask of the seed and style grids")
    parser.add_argument("--place", default="Saint-Cyr-sur-Mer, Var, France", help="place for the caption")
    parser.add_argument("--seed", type=int, default=1, help="first seed of the seed grid, the seed of the style grid")
    add_model_options(parser)
    add_numeric_option(parser, "--steps", "steps", default=30)  # the README's figures: a few more than the default
    parser.add_argument("--size", type=int, help="resize the mask to SIZE x SIZE first (default: keep its size)")
    args = parser.parse_args(argv)
    diffusers_logging.set_verbosity_error()
    try:
        paths = make_figures(args.out, args.mask, args.place, **model_arguments(args), steps=args.steps, size=args.size,
                             seed=args.seed)
    except (ValueError, WeightsNotFoundError) as exc:
        parser.exit(2, f"error: {exc}\n")
    print(*paths, sep="\n")


if __name__ == "__main__":
    main()
