"""``seg2sat synthesize SOURCE --out DIR -n N``: the command, its flags, and what it prints."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..options import (
    add_backend_option,
    add_fallback_option,
    add_load_options,
    add_model_options,
    add_sampling_options,
    overrides,
    print_engine_notes,
    spell,
)
from ..prompts import STYLES
from ..request import RequestError
from ..settings import Settings
from ..weights import WeightsNotFoundError
from .layouts import LAYOUTS, parse_augment
from .run import Options, check_quality, request, synthesize
from .seeds import parse_styles
from .writers import FORMATS

FLAGS = {"steps": "--steps", "guidance_scale": "--guidance", "controlnet_scale": "--controlnet-scale",
         "negative_prompt": "--negative", "style": "--style", "scheduler": "--scheduler",
         "cache_interval": "--cache-interval", "num_images": "-n", "seed": "--seed"}


def register(sub) -> None:

    p = sub.add_parser(
        "synthesize", help="a synthetic segmentation dataset: N aerial images per mask, with the masks",
        description="Make N aerial images for every mask of SOURCE and write them with their masks as a dataset a "
        "segmentation model trains on at once. SOURCE: a folder of masks (colour PNGs, class-id PNGs, GeoTIFFs), a "
        "dataset written by `seg2sat prepare`, or a Hugging Face dataset (local folder or hub id). Runs on one "
        "process or under `accelerate launch` (the masks are shared out); a killed run resumes when rerun.")
    p.add_argument("source", metavar="SOURCE", help="folder of masks, prepared dataset, or Hugging Face dataset")
    p.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    p.add_argument("-n", "--num-images", dest="num_images", type=int, default=1,
                   help="images per mask (and per --augment layout) (default 1)")
    p.add_argument("--format", choices=FORMATS, default="parquet",
                   help="parquet: a Hugging Face dataset of Parquet shards with a dataset card (default); folder: "
                   "img/IMG_*.png + msk/MSK_*.png pairs; geotiff: the pairs as GeoTIFFs on each source mask's grid")
    p.add_argument("--mask-column", default=None,
                   help="dataset sources: the mask column (default: mask, conditioning_image, label, segmentation or "
                   "annotation, the first present)")
    p.add_argument("--caption-column", default=None,
                   help="dataset sources: the caption column, used as the prompt (default: text, caption or prompt "
                   "when present; else the class caption of the mask)")
    p.add_argument("--split", default="train", help="dataset sources: the split to read (default train)")
    p.add_argument("--style", default=None, metavar="NAME[=W],…",
                   help=f"style preset, or a weighted mix, e.g. photorealistic=3,pencil=1 ({', '.join(STYLES)}, "
                   "none); each image draws one from its seed (default none)")
    p.add_argument("--augment", default=None, metavar="LAYOUT,…",
                   help=f"label-preserving layouts made besides each mask as it is: {', '.join(LAYOUTS)}; the model "
                   "draws N images for each transformed mask, which they follow exactly")
    p.add_argument("--seed", type=int, default=0,
                   help="the run's seed: each image's seed is derived from (mask, layout, index, this) (default 0)")
    add_sampling_options(p)
    add_backend_option(p, default="diffusion")
    p.add_argument("--shard-rows", type=int, default=500, metavar="ROWS",
                   help="parquet: rows per shard; a killed run loses at most the shard being filled (default 500)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="the output holds a run with other options: keep its rows, make the missing ones with "
                       "these (the same command resumes without it)")
    again.add_argument("--overwrite", action="store_true",
                       help="the output holds another run: remove what it wrote and start again")
    p.add_argument("--filter-with", dest="filter_with", default=None, metavar="MODEL",
                   help="a transformers semantic-segmentation model (hub id or folder) trained on the FLAIR classes: "
                   "scores each image against its mask (score column: mean IoU) and writes an ignore mask (255 = "
                   "pixels to leave out of the loss, FreeMask's rule)")
    p.add_argument("--filter-margin", dest="filter_margin", type=float, default=1.25, metavar="X",
                   help="--filter-with: a pixel is ignored when its loss is above X times its class's mean loss in "
                   "the image and the model predicts another class there (default 1.25, FreeMask's)")
    p.add_argument("--min-score", dest="min_score", type=float, default=None, metavar="S",
                   help="--filter-with: images scoring below S (0..1) are not written (default: all are kept)")
    p.add_argument("--hard-first", dest="hard_first", action="store_true",
                   help="--filter-with: make image 0 of every mask first, then share the rest of the -n budget out "
                   "so the masks the model gets most wrong get more images (each at least 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_model_options(p)
    add_fallback_option(p)
    add_load_options(p)
    p.set_defaults(func=_cmd_synthesize)


def _cmd_synthesize(args) -> None:
    from ..engine import Engine  # torch: only when the command runs

    if args.num_images < 1:
        raise ValueError(f"-n: must be at least 1, got {args.num_images}")
    if args.shard_rows < 1:
        raise ValueError(f"--shard-rows: must be at least 1, got {args.shard_rows}")
    opts = Options(source=args.source, out=args.out, num_images=args.num_images, format=args.format,
                   mask_column=args.mask_column, caption_column=args.caption_column, split=args.split,
                   styles=parse_styles(args.style), layouts=parse_augment(args.augment), seed=args.seed,
                   negative_prompt=args.negative_prompt, steps=args.steps, guidance_scale=args.guidance_scale,
                   controlnet_scale=args.controlnet_scale, scheduler=args.scheduler, cache_interval=args.cache_interval,
                   backend=args.backend, shard_rows=args.shard_rows, resume=args.resume, overwrite=args.overwrite,
                   progress=not args.quiet, filter_with=args.filter_with, filter_margin=args.filter_margin,
                   min_score=args.min_score, hard_first=args.hard_first)
    if args.seed < 0:
        raise ValueError(f"--seed: must be a non-negative integer, got {args.seed}")
    check_quality(opts)

    try:  # every option checked before any model loads
        request(opts, np.full((64, 64), 11, np.uint8), "Aerial view", 0, opts.styles[0][0])
    except RequestError as exc:
        raise exc.renamed(FLAGS) from None
    state = _state(args) if args.backend == "diffusion" else _state(args, cpu=True)
    scorer = _scorer(opts, args, state)  # before the big model: a wrong filter fails fast
    engine = Engine(Settings.from_env(**overrides(args)))
    if args.backend == "diffusion":
        try:
            engine.load()
        except WeightsNotFoundError as exc:
            raise ValueError(spell(str(exc), "cli")) from None
    if state.is_main_process:
        print_engine_notes(engine)
    report = synthesize(opts, engine, state, scorer)
    if not state.is_main_process:
        return
    if report.already_done:
        print(f"note: resumed: {report.already_done} of {report.items} masks were already done", file=sys.stderr)
    if report.skipped:
        print(f"warning: skipped {len(report.skipped)} unreadable mask(s) (listed in {args.out / 'index.json'}); "
              "rerun to retry them", file=sys.stderr)
    if opts.min_score is not None:
        print(f"{report.dropped} of {report.made_images} images dropped (score < {opts.min_score:g})")
    print(f"made {report.made_images} images from {report.made_items} masks in {report.seconds:.1f} s: "
          f"{report.images_per_s:.2f} images/s over {report.processes} process(es)")
    print(f"{args.out}: {report.rows} rows")


def _scorer(opts, args, state):
    """The filter model on this process's device, or None without --filter-with."""
    if not opts.filter_with:
        return None
    from .filter import Filter

    device = args.device or str(getattr(state, "device", "cpu"))
    return Filter(opts.filter_with, device=device, margin=opts.filter_margin)


def _state(args, cpu: bool = False):
    """accelerate's view of the processes (one unless under ``accelerate launch``); each uses its own device."""
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=cpu or args.device == "cpu" or not torch.cuda.is_available())
    if state.num_processes > 1 and args.device is None and not cpu:
        args.device = str(state.device)
    return state
