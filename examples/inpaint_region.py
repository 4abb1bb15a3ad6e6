"""Regenerate one region of a generated image, optionally after repainting the mask there.

Inpainting redraws only the region; every pixel outside it stays exactly as it was.
With ``--repaint CLASS`` the mask is changed inside the region first (say, the
houses in a corner become a wood), and the new pixels follow the edited mask.

    python examples/inpaint_region.py examples/masks/town.png --box 0,0.5,0.5,1 --repaint deciduous
    python examples/inpaint_region.py examples/masks/river.png --model tiny --steps 2 --size 128
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from diffusers.utils import logging as diffusers_logging
from PIL import Image

from seg2sat import caption, generate, get_class, inpaint, load_mask
from seg2sat.masks import resize_ids, to_image
from seg2sat.options import add_model_options, add_numeric_option, model_arguments
from seg2sat.pipelines import WeightsNotFoundError, load_pipeline
from seg2sat.testing.figures import grid


def box_region(shape: tuple[int, int], box: tuple[float, float, float, float]) -> np.ndarray:
    """A boolean region (True = regenerate) from a box given as fractions x0, y0, x1, y1 of the image."""
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
        raise ValueError(f"box must be x0,y0,x1,y1 fractions with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, got {box}")
    h, w = shape
    region = np.zeros(shape, dtype=bool)
    region[round(y0 * h) : max(round(y1 * h), round(y0 * h) + 1), round(x0 * w) : max(round(x1 * w), round(x0 * w) + 1)] = True
    return region


def inpaint_region(
    mask: str | Path,
    out: str | Path,
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.5, 0.5),
    repaint: str | None = None,
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
    """Generate an image from ``mask``, then redo the ``box`` part; writes before, region, after and a sheet."""
    ids = load_mask(mask).ids
    if size:
        ids = resize_ids(ids, (size, size))
    region = box_region(ids.shape, box)
    edited = ids.copy()
    if repaint:
        edited[region] = get_class(repaint).id
    pipe = load_pipeline(model, controlnet, device=device, controlnet_subfolder=controlnet_subfolder)
    pipe.set_progress_bar_config(disable=False, desc="denoising")
    before = generate(ids, caption(place, ids), seed=seed, steps=steps, pipeline=pipe).images[0]
    after = inpaint(before, edited, region, caption(place, edited), seed=seed + 1, steps=steps, pipeline=pipe).images[0]

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(mask).stem
    files = {
        "before": before,
        "region": Image.fromarray(region.astype(np.uint8) * 255),
        "inpainted": after,
        "inpaint-sheet": grid([to_image(ids), before, to_image(edited), after],
                              ["mask", "before", "edited mask" if repaint else "mask", "inpainted"]),
    }
    for name, image in files.items():
        image.save(out / f"{stem}-{name}.png")
    return [out / f"{stem}-{name}.png" for name in files]


def _box(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected four numbers x0,y0,x1,y1, got {text!r}") from None
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"expected four numbers x0,y0,x1,y1, got {text!r}")
    return values  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mask", type=Path, help="colour mask PNG, e.g. examples/masks/town.png")
    parser.add_argument("--box", type=_box, default=(0.0, 0.0, 0.5, 0.5),
                        help="region to redo as fractions x0,y0,x1,y1 of the image (default 0,0,0.5,0.5)")
    parser.add_argument("--repaint", help="class name to paint into the region first, e.g. deciduous")
    parser.add_argument("--place", default=None, help="address or place for the caption")
    parser.add_argument("--seed", type=int, default=0)
    add_model_options(parser)
    add_numeric_option(parser, "--steps", "steps")
    parser.add_argument("--size", type=int, help="resize the mask to SIZE x SIZE first (default: keep its size)")
    parser.add_argument("--out", type=Path, default=Path("out"))
    args = parser.parse_args(argv)
    diffusers_logging.set_verbosity_error()  # progress bars and results only, no library notices
    try:
        paths = inpaint_region(args.mask, args.out, args.box, args.repaint, args.place, args.seed,
                               **model_arguments(args), steps=args.steps, size=args.size)
    except (ValueError, WeightsNotFoundError) as exc:
        parser.exit(2, f"error: {exc}\n")
    print(*paths, sep="\n")


if __name__ == "__main__":
    main()
