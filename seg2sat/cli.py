"""The ``seg2sat`` command line.

Each sub-command lives with the code it drives and registers itself through a
``register(subparsers)`` function listed in ``COMMANDS``; this module only wires
them together and turns expected errors into one clear line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

from .cli_errors import CommandError
from .gis import MaskRaster, generate_geotiff
from .gis.cli import add_map_input_arguments, check_geotiff_job, place_to_mask
from .gis.files import atomic_path
from .gis.landcover import SOURCES
from .gis.raster import is_tiff
from .options import (
    add_backend_option,
    add_engine_options,
    add_sampling_options,
    command_parser,
    overrides,
    print_engine_notes,
    spell,
)
from .prompts import STYLES
from .request import NUMERIC_FIELDS, Request, RequestError
from .settings import Settings
from .weights import WeightsNotFoundError

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["COMMANDS", "CommandError", "build_parser", "main", "register_core", "request_from_args"]

COMMANDS = [
    "seg2sat.cli:register_core",
    "seg2sat.training.cli:register",
    "seg2sat.data.cli:register",
    "seg2sat.serving.cli:register",
    "seg2sat.webui.cli:register",
    "seg2sat.gis.cli:register",
    "seg2sat.download_cli:register",
    "seg2sat.doctor:register",
    "seg2sat.synth.cli:register",
]
"""``module:function`` entries; each function adds its sub-commands to the parser."""


def _quiet_libraries() -> None:
    """Keep the terminal for our own progress bar and messages, not library chatter."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        from diffusers.utils import logging as dlog

        dlog.set_verbosity_error()
        dlog.disable_progress_bar()
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
        from huggingface_hub.utils import logging as hlog

        hlog.set_verbosity_error()
        warnings.filterwarnings("ignore", category=UserWarning, module="huggingface_hub")
    except ImportError:  # pragma: no cover - core deps missing
        pass


FLAGS = {"steps": "--steps", "guidance_scale": "--guidance", "controlnet_scale": "--controlnet-scale",
         "num_images": "--num-images", "seed": "--seed", "negative_prompt": "--negative", "style": "--style",
         "prompt": "--prompt", "region": "--region", "at": "--at", "init_image": "--init", "strength": "--strength",
         "backend": "--backend", "mask": "MASK", "image": "IMAGE",
         "scheduler": "--scheduler", "cache_interval": "--cache-interval"}
"""Request field -> its flag, so an error names what the user typed (``--steps: must be …``)."""


def _add_generation_args(p: argparse.ArgumentParser, prompt_required: bool = True) -> None:

    p.add_argument("--prompt", required=prompt_required, help='e.g. "Aerial view of 31 Rue Molière, France"'
                   + ("" if prompt_required else " (default with --place: its caption)"))
    p.add_argument("--seed", type=int, default=None, help="seed of the first image; the next ones get seed+1, … (default random)")
    field = NUMERIC_FIELDS["num_images"]
    p.add_argument("-n", "--num-images", dest="num_images", type=field.cast, default=None,
                   help=f"{field.help} (default {field.default})")
    add_sampling_options(p)
    p.add_argument("--style", default=None, help=f"style preset: {', '.join(STYLES)}")
    p.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    add_backend_option(p, default="diffusion")
    p.add_argument("--classes", choices=SOURCES, default="flair",
                   help="what the numbers of a single-band GeoTIFF mask mean: FLAIR classes (default), ESA WorldCover "
                   "or CORINE Land Cover codes (see README, GIS rasters)")
    p.add_argument("--window", type=int, default=2048, metavar="PX",
                   help="diffusion: GeoTIFF maps with a side past PX are made in overlapping PX windows, one at a time, "
                   "resumable, shared out over processes under `accelerate launch` (default 2048)")
    p.add_argument("--resolution", type=float, default=None, metavar="M",
                   help="GeoTIFF masks: resample nearest-neighbour to M CRS units (metres) per pixel first, e.g. 0.2 "
                   "(FLAIR's) for a 10 m WorldCover map")
    add_engine_options(p)


def register_core(sub) -> None:

    p = sub.add_parser("make-tiny", help="build the tiny random-weights test pipeline into a folder",
                       description="Build a complete, tiny, random-weights SD 2.1 + ControlNet pipeline (a few MB) "
                       "for tests and demos, fully offline. Pass the folder to --model.")
    p.add_argument("dir", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_make_tiny)

    p = sub.add_parser("generate", help="aerial images from a land-cover mask",
                       description="Generate aerial images from a colour mask (PNG/JPEG, snapped to the class colours) "
                       "or a FLAIR GeoTIFF mask.")
    p.add_argument("mask", type=Path, nargs="?", default=None, help="the mask (or --place instead)")
    _add_generation_args(p, prompt_required=False)
    add_map_input_arguments(p)
    p.add_argument("--init", dest="init_image", default=None, metavar="procedural|IMAGE",
                   help="diffusion starts from this image instead of noise (image-to-image); 'procedural' = the "
                   "offline render of the mask, which ties the result closer to the mask")
    p.add_argument("--strength", type=float, default=None,
                   help="with --init: how much of it is redrawn, in (0, 1] (default 0.75)")
    p.set_defaults(func=_cmd_run, mode="generate")

    p = sub.add_parser("inpaint", help="regenerate a region of an image",
                       description="Regenerate the white part of REGION in IMAGE, following MASK there; "
                       "every other pixel stays exactly as it was.")
    p.add_argument("image", type=Path)
    p.add_argument("mask", type=Path, help="land-cover mask of the same size as IMAGE")
    p.add_argument("--region", type=Path, required=True, help="PNG of the same size: white = regenerate")
    _add_generation_args(p)
    p.set_defaults(func=_cmd_run, mode="inpaint")

    p = sub.add_parser("outpaint", help="extend an image past its edges",
                       description="MASK covers the grown canvas; IMAGE sits at X,Y in it and stays as it was; "
                       "the rest is generated.")
    p.add_argument("image", type=Path)
    p.add_argument("mask", type=Path, help="land-cover mask of the whole grown canvas")
    p.add_argument("--at", required=True, help="X,Y: where the image's top-left corner sits in the mask")
    _add_generation_args(p)
    p.set_defaults(func=_cmd_run, mode="outpaint")


def _cmd_make_tiny(args) -> None:
    from .testing.tiny import make_tiny  # torch: only for this command

    print(make_tiny(args.dir, seed=args.seed))


def request_from_args(args, mask=None):
    """The flags as one checked Request; an error names the flag. No model is loaded yet.

    ``mask``: the mask already read (class ids), instead of the MASK file.
    """

    fields = {name: getattr(args, name, None) for name in (
        "prompt", "seed", "num_images", "steps", "guidance_scale", "controlnet_scale", "negative_prompt", "style",
        "backend", "init_image", "strength", "region", "scheduler", "cache_interval")}
    if args.mode == "outpaint":
        try:
            fields["at"] = [int(v) for v in args.at.split(",")]
        except ValueError:
            raise CommandError(f"--at: must be X,Y (two integers), got {args.at!r}") from None
    if fields["init_image"] not in (None, "procedural"):
        fields["init_image"] = Path(fields["init_image"])
    for path in (args.mask, getattr(args, "image", None), fields["region"], fields["init_image"]):
        if isinstance(path, Path) and not path.is_file():
            raise CommandError(f"file not found: {path}")
    try:
        return Request.build(args.mode, mask=args.mask if mask is None else mask, image=getattr(args, "image", None),
                             **fields)
    except RequestError as exc:
        raise exc.renamed(FLAGS) from None


def _cmd_run(args) -> None:
    """generate / inpaint / outpaint: flags -> Request -> pipeline (or the renderer) -> files."""

    if args.mode == "generate":
        place_to_mask(args)  # --place: its OSM mask, written to --out, becomes MASK; its caption the default prompt
    if _tiff_mask(args):
        return _cmd_geotiff(args)
    if args.resolution is not None:
        raise CommandError("--resolution: only GeoTIFF masks have a resolution to resample")
    req = request_from_args(args)
    result = _engine(args, req).run(req)
    if result.off_palette:
        print(f"note: {result.off_palette:.1%} of the mask pixels were off-palette and snapped to the nearest class colour")
    args.out.mkdir(parents=True, exist_ok=True)
    for image, seed in zip(result.images, result.seeds):
        path = args.out / f"{_stem(args)}-seed{seed}.png"
        with atomic_path(path) as tmp:  # whole or not at all, and never through a planted symlink
            image.save(tmp, format="PNG")
        print(path)


def _cmd_geotiff(args) -> None:
    """A GeoTIFF mask: :func:`seg2sat.gis.generate_geotiff` (streamed, windowed or in memory), its files printed."""

    with MaskRaster(args.mask, classes=args.classes, resolution=args.resolution, window=args.window,
                    mode=args.mode, backend=args.backend) as mask:  # opened once: its size, then its pixels
        if args.mode == "generate" and args.place is None:
            check_geotiff_job(args, mask.src)  # notes, or a map past --max-pixels refused, before any pixel is read
        req = request_from_args(args, mask.ids)  # the whole map, or a corner of one made window by window
        state = _accelerate_state(args) if req.backend == "diffusion" and mask.streamed else None
        engine = _engine(args, req)

        def printed(output) -> None:
            if output.resumed:
                print(f"note: resumed: {output.resumed} of {output.windows} windows were already done",
                      file=sys.stderr)
            for path in output.paths:
                print(path)

        generate_geotiff(mask, req, engine, args.out, progress=True, state=state, name=_stem(args),
                         on_output=printed)


def _engine(args, req) -> Engine:
    """The engine the flags describe, loaded when the request wants the model; what it says is printed once."""
    from .engine import Engine  # torch: only for commands that generate

    engine = Engine(Settings(**{k: v for k, v in overrides(args).items() if v is not None}).checked())
    if req.backend != "diffusion":
        return engine
    engine.load()
    print_engine_notes(engine)
    if engine.pipeline is not None:
        engine.pipeline.set_progress_bar_config(disable=False, desc="denoising", unit="step")
    return engine


def _stem(args) -> str:
    return args.mask.stem if args.mode == "generate" else f"{args.image.stem}-{args.mode}"


def _tiff_mask(args) -> bool:
    """Whether MASK is a GeoTIFF (it must then exist: its grid and pixels are read before any model work)."""

    if args.mask is None or not is_tiff(args.mask):
        return False
    if not args.mask.is_file():
        raise CommandError(f"file not found: {args.mask}")
    return True


def _accelerate_state(args):
    """accelerate's view of the processes (one unless under ``accelerate launch``); each process uses its own device."""
    import torch
    from accelerate import PartialState

    # cpu=True lets processes without a GPU share the work too (gloo), e.g. two CPU processes in tests.
    state = PartialState(cpu=args.device == "cpu" or not torch.cuda.is_available())
    if state.num_processes > 1 and args.device is None:
        args.device = str(state.device)
    return state


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seg2sat",
        description="Seg2Sat: land-cover segmentation masks in, aerial images out.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for entry in COMMANDS:
        module, func = entry.split(":")
        getattr(import_module(module), func)(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "uses_models", True):  # quieting them imports them: not for model-free commands
        _quiet_libraries()
    try:
        result = args.func(args)
    except (CommandError, ValueError, WeightsNotFoundError) as exc:
        own = command_parser(parser, getattr(args, "command", None))
        print(f"error: {spell(str(exc), 'cli', own)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
