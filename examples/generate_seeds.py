"""Generate aerial images from one mask with several seeds, and a sheet to compare them.

Each seed is one image, and the same seed gives the same image again: pick the one
you like and keep its seed. The prompt is built in the format the model was trained
on (``Aerial view of <place>. <classes>.``) with ``seg2sat.caption``.

    python examples/generate_seeds.py examples/masks/town.png --place "Saint-Cyr-sur-Mer, France"
    python examples/generate_seeds.py examples/masks/coast.png --seeds 7 8 --model tiny --steps 2 --size 128
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from diffusers.utils import logging as diffusers_logging

from seg2sat import caption, generate, load_mask
from seg2sat.masks import resize_ids, to_image
from seg2sat.options import add_model_options, add_numeric_option, model_arguments
from seg2sat.pipelines import WeightsNotFoundError, load_pipeline
from seg2sat.testing.figures import grid


def generate_seeds(
    mask: str | Path,
    out: str | Path,
    place: str | None = None,
    seeds: Sequence[int] = (1, 2, 3, 4),
    *,
    model: str | None = None,
    controlnet: str | None = None,
    controlnet_subfolder: str | None = None,
    device: str | None = None,
    steps: int | None = None,
    size: int | None = None,
) -> list[Path]:
    """Write ``<mask>-seed<N>.png`` for every seed and ``<mask>-seeds.png`` (mask + all seeds) into ``out``.

    ``size`` resizes the mask to a square of that side first (nearest-neighbour; quick trials).
    """
    ids = load_mask(mask).ids
    if size:
        ids = resize_ids(ids, (size, size))
    pipe = load_pipeline(model, controlnet, device=device, controlnet_subfolder=controlnet_subfolder)
    pipe.set_progress_bar_config(disable=False, desc="denoising")
    prompt = caption(place, ids)
    print(f"prompt: {prompt}")
    result = generate(ids, prompt, seed=list(seeds), num_images=len(seeds), steps=steps, pipeline=pipe)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(mask).stem
    written = []
    for image, seed in zip(result.images, result.seeds):
        image.save(out / f"{stem}-seed{seed}.png")
        written.append(out / f"{stem}-seed{seed}.png")
    sheet = grid([to_image(ids), *result.images], ["mask", *(f"seed {s}" for s in result.seeds)])
    sheet.save(out / f"{stem}-seeds.png")
    return [*written, out / f"{stem}-seeds.png"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mask", type=Path, help="colour mask PNG, e.g. examples/masks/town.png")
    parser.add_argument("--place", default="Saint-Cyr-sur-Mer, Var, France", help="address or place for the caption")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    add_model_options(parser)
    add_numeric_option(parser, "--steps", "steps")
    parser.add_argument("--size", type=int, help="resize the mask to SIZE x SIZE first (default: keep its size)")
    parser.add_argument("--out", type=Path, default=Path("out"))
    args = parser.parse_args(argv)
    diffusers_logging.set_verbosity_error()  # progress bars and results only, no library notices
    try:
        paths = generate_seeds(args.mask, args.out, args.place, args.seeds, **model_arguments(args), steps=args.steps,
                               size=args.size)
    except (ValueError, WeightsNotFoundError) as exc:
        parser.exit(2, f"error: {exc}\n")
    print(*paths, sep="\n")


if __name__ == "__main__":
    main()
