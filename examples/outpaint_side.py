"""Grow a generated image past one of its edges, following the mask into the new strip.

The mask covers the whole grown canvas. The example first generates the image for
the mask without a strip on one side, then outpaints that strip: the first image is
kept pixel for pixel, and the new part continues its roads, fields and rivers.

    python examples/outpaint_side.py examples/masks/river.png --side right --pixels 128
    python examples/outpaint_side.py examples/masks/coast.png --side top --model tiny --steps 2 --size 128
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffusers.utils import logging as diffusers_logging

from seg2sat import caption, generate, load_mask, outpaint
from seg2sat.generation import grow
from seg2sat.masks import resize_ids, to_image
from seg2sat.options import add_model_options, add_numeric_option, model_arguments
from seg2sat.pipelines import WeightsNotFoundError, load_pipeline
from seg2sat.testing.figures import grid

SIDES = ("left", "right", "top", "bottom")


def outpaint_side(
    mask: str | Path,
    out: str | Path,
    side: str = "right",
    pixels: int | None = None,
    place: str | None = None,
    seed: int = 0,
    *,
    model: str | None = None,
    controlnet: str | None = None,
    controlnet_subfolder: str | None = None,
    device: str | None = None,
    steps: int | None = None,
    size: int | None = None,
) -> list[Path]:
    """Generate ``mask`` less a ``pixels`` strip on ``side`` (default a quarter), then outpaint the strip.

    Writes ``<mask>-start.png``, ``<mask>-outpainted-<side>.png`` and a sheet into ``out``.
    """
    ids = load_mask(mask).ids
    if size:
        ids = resize_ids(ids, (size, size))
    h, w = ids.shape
    horizontal = side in ("left", "right")
    length = w if horizontal else h
    pixels = pixels or length // 4
    if not 0 < pixels < length:
        raise ValueError(f"pixels must be between 1 and {length - 1} for this mask, got {pixels}")
    inner = (w - pixels, h) if horizontal else (w, h - pixels)
    _, (x, y) = grow(side, pixels, inner)  # where the first image sits in the grown canvas
    start_ids = ids[y : y + inner[1], x : x + inner[0]]
    pipe = load_pipeline(model, controlnet, device=device, controlnet_subfolder=controlnet_subfolder)
    pipe.set_progress_bar_config(disable=False, desc="denoising")
    start = generate(start_ids, caption(place, start_ids), seed=seed, steps=steps, pipeline=pipe).images[0]
    grown = outpaint(start, ids, (x, y), caption(place, ids), seed=seed + 1, steps=steps, pipeline=pipe).images[0]

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(mask).stem
    files = {"start": start, f"outpainted-{side}": grown,
             "outpaint-sheet": grid([to_image(ids), grown], ["mask", f"grown {pixels} px {side}"])}
    for name, image in files.items():
        image.save(out / f"{stem}-{name}.png")
    return [out / f"{stem}-{name}.png" for name in files]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mask", type=Path, help="colour mask PNG of the whole grown canvas, e.g. examples/masks/river.png")
    parser.add_argument("--side", choices=SIDES, default="right")
    parser.add_argument("--pixels", type=int, help="width of the strip to outpaint (default a quarter of the mask)")
    parser.add_argument("--place", default=None, help="address or place for the caption")
    parser.add_argument("--seed", type=int, default=0)
    add_model_options(parser)
    add_numeric_option(parser, "--steps", "steps")
    parser.add_argument("--size", type=int, help="resize the mask to SIZE x SIZE first (default: keep its size)")
    parser.add_argument("--out", type=Path, default=Path("out"))
    args = parser.parse_args(argv)
    diffusers_logging.set_verbosity_error()  # progress bars and results only, no library notices
    try:
        paths = outpaint_side(args.mask, args.out, args.side, args.pixels, args.place, args.seed,
                              **model_arguments(args), steps=args.steps, size=args.size)
    except (ValueError, WeightsNotFoundError) as exc:
        parser.exit(2, f"error: {exc}\n")
    print(*paths, sep="\n")


if __name__ == "__main__":
    main()
