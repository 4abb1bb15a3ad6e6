"""A map larger than the model's 512 px tile, generated as one seamless image.

Nothing special is needed: ``seg2sat.generate`` sees that the mask is larger than a
tile and denoises it in overlapping tiles that agree at every step (see
``seg2sat/tiling.py``). Without a mask argument this example lays the sample masks
out as a 2 x 2 mosaic (1024 x 1024 px, about 200 m across at the FLAIR scale).

    python examples/large_map.py                                  # the mosaic of sample masks
    python examples/large_map.py my_big_mask.png --place "Lyon, France"
    python examples/large_map.py --model tiny --steps 2 --size 128  # offline smoke run
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from diffusers.utils import logging as diffusers_logging
from tqdm import tqdm

from seg2sat import caption, generate, load_mask
from seg2sat.masks import resize_ids, to_image
from seg2sat.options import add_model_options, add_numeric_option, model_arguments
from seg2sat.pipelines import WeightsNotFoundError, load_pipeline

MASKS = Path(__file__).resolve().parent / "masks"
MOSAIC = ("town.png", "river.png", "vineyards.png", "forest_clearcut.png")


def mosaic(paths: Sequence[str | Path], columns: int = 2) -> np.ndarray:
    """Class-id maps of equal size laid out in rows of ``columns``: a big mask from small ones."""
    maps = [load_mask(p).ids for p in paths]
    if len({m.shape for m in maps}) != 1:
        raise ValueError("the masks of a mosaic must all have the same size")
    rows = [np.hstack(maps[i : i + columns]) for i in range(0, len(maps), columns)]
    if rows[-1].shape != rows[0].shape:
        raise ValueError(f"{len(maps)} masks do not fill rows of {columns}")
    return np.vstack(rows)


def large_map(
    out: str | Path,
    mask: str | Path | None = None,
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
    """Write ``<name>-mask.png`` and ``<name>-seed<N>.png`` for ``mask`` (default: the sample mosaic)."""
    ids = load_mask(mask).ids if mask else mosaic([MASKS / name for name in MOSAIC])
    if size:
        ids = resize_ids(ids, (size, size))
    name = Path(mask).stem if mask else "mosaic"
    pipe = load_pipeline(model, controlnet, device=device, controlnet_subfolder=controlnet_subfolder)
    with tqdm(desc=f"{ids.shape[1]}x{ids.shape[0]} map", unit="tile step") as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        image = generate(ids, caption(place, ids), seed=seed, steps=steps, pipeline=pipe, on_step=progress).images[0]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    to_image(ids).save(out / f"{name}-mask.png")
    image.save(out / f"{name}-seed{seed}.png")
    return [out / f"{name}-mask.png", out / f"{name}-seed{seed}.png"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mask", nargs="?", type=Path, help="a large colour mask (default: 2 x 2 mosaic of the samples)")
    parser.add_argument("--place", default=None, help="address or place for the caption")
    parser.add_argument("--seed", type=int, default=0)
    add_model_options(parser)
    add_numeric_option(parser, "--steps", "steps")
    parser.add_argument("--size", type=int, help="resize the map to SIZE x SIZE first (default: keep its size)")
    parser.add_argument("--out", type=Path, default=Path("out"))
    args = parser.parse_args(argv)
    diffusers_logging.set_verbosity_error()  # progress bars and results only, no library notices
    try:
        paths = large_map(args.out, args.mask, args.place, args.seed, **model_arguments(args), steps=args.steps,
                          size=args.size)
    except (ValueError, WeightsNotFoundError) as exc:
        parser.exit(2, f"error: {exc}\n")
    print(*paths, sep="\n")


if __name__ == "__main__":
    main()
