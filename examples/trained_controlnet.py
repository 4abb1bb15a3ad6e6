"""Use a ControlNet you trained with ``controlnet_training/``, with diffusers directly.

This is the whole recipe without the seg2sat helpers, for people who want it inside
their own diffusers code: load the ControlNet, plug it into the SD 2.1 base pipeline,
move everything to one device, and condition on the colour mask. (``seg2sat
generate --controlnet DIR`` does the same in one line.)

    python examples/trained_controlnet.py examples/masks/town.png --controlnet controlnet-out
    python examples/trained_controlnet.py examples/masks/town.png --controlnet controlnet-out/checkpoint-500
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import ControlNetModel, StableDiffusionControlNetPipeline, UniPCMultistepScheduler
from diffusers.utils import logging as diffusers_logging

from seg2sat import caption, load_mask
from seg2sat.masks import model_size, resize_ids, to_image
from seg2sat.options import add_model_options, add_numeric_option
from seg2sat.pipelines import pick_device, pick_dtype, resolve_base
from seg2sat.request import NUMERIC_FIELDS


def find_controlnet(folder: str | Path) -> Path:
    """The ControlNet weights in a training output: the final model, else the newest checkpoint's.

    Training writes the final ControlNet at the top of its output folder and, on the
    way, ``checkpoint-<step>/controlnet``; a checkpoint folder itself works too.
    """
    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    if (folder / "controlnet" / "config.json").is_file():
        return folder / "controlnet"
    steps = sorted(folder.glob("checkpoint-*/controlnet/config.json"), key=lambda p: int(p.parts[-3].split("-")[1]))
    if steps:
        return steps[-1].parent
    raise ValueError(f"no ControlNet in {folder}: expected the output folder of controlnet_training (config.json "
                     "and diffusion_pytorch_model.safetensors) or one of its checkpoint-<step> folders")


def generate_with_trained(
    mask: str | Path,
    controlnet: str | Path,
    out: str | Path,
    model: str | None = None,
    place: str | None = None,
    seeds: Sequence[int] = (0,),
    steps: int = 20,
    size: int | None = None,
    device: str | None = None,
    controlnet_subfolder: str | None = None,
) -> list[Path]:
    """Write ``<mask>-trained-seed<N>.png`` for each seed, generated with the trained ControlNet.

    ``controlnet_subfolder``: a folder inside ``controlnet`` to look in, e.g. ``checkpoint-500``.
    """
    ids = load_mask(mask).ids  # colours snapped to the 19 classes
    if size:
        ids = resize_ids(ids, (size, size))
    device = device or pick_device()
    dtype = pick_dtype(device)

    folder = Path(controlnet) / controlnet_subfolder if controlnet_subfolder else controlnet
    net = ControlNetModel.from_pretrained(find_controlnet(folder), dtype=dtype)
    base, _notes = resolve_base(model)  # default: a verified copy of SD 2.1 base (its original repo is gone)
    pipe = StableDiffusionControlNetPipeline.from_pretrained(
        base, controlnet=net, dtype=dtype, safety_checker=None, requires_safety_checker=False
    )
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)
    pipe = pipe.to(device)  # every module on the device we picked, not only the UNet

    width, height = model_size(ids.shape[1], ids.shape[0])  # sides must be multiples of 64
    condition = to_image(resize_ids(ids, (width, height)))
    prompt = caption(place, ids)  # "Aerial view of <place>. <classes>." as in training
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for seed in seeds:
        image = pipe(
            prompt,
            image=condition,
            width=width,
            height=height,
            num_inference_steps=steps,
            generator=torch.Generator("cpu").manual_seed(seed),  # CPU generator: same image on any device
        ).images[0]
        path = out / f"{Path(mask).stem}-trained-seed{seed}.png"
        image.resize((ids.shape[1], ids.shape[0])).save(path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mask", type=Path, help="colour mask PNG, e.g. examples/masks/town.png")
    models = add_model_options(parser)
    models["--controlnet"].required = True  # this example is about a ControlNet you trained
    models["--controlnet"].metavar = "DIR"
    models["--controlnet"].help = "output folder of controlnet_training (or one of its checkpoint-<step> folders)"
    models["--controlnet-subfolder"].help = "a folder inside --controlnet to look in, e.g. checkpoint-500"
    parser.add_argument("--place", default=None, help="address or place for the caption")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    add_numeric_option(parser, "--steps", "steps", default=NUMERIC_FIELDS["steps"].default)
    parser.add_argument("--size", type=int, help="resize the mask to SIZE x SIZE first (default: keep its size)")
    parser.add_argument("--out", type=Path, default=Path("out"))
    args = parser.parse_args(argv)
    diffusers_logging.set_verbosity_error()  # progress bars and results only, no library notices
    try:
        paths = generate_with_trained(args.mask, args.controlnet, args.out, args.model, args.place, args.seeds,
                                      args.steps, args.size, args.device, args.controlnet_subfolder)
    except (ValueError, OSError) as exc:
        parser.exit(2, f"error: {exc}\n")
    print(*paths, sep="\n")


if __name__ == "__main__":
    main()
