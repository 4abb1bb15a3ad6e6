"""Training arguments, named as in diffusers' ``train_controlnet.py`` so its users feel at home.

Every option also answers to its dashed spelling (``--train-batch-size``), like the rest
of the ``seg2sat`` CLI. :func:`check_args` refuses inconsistent values before anything
heavy is loaded.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

from ..masks import MULTIPLE
from ..request import NUMERIC_FIELDS

SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")
TRACKERS = ("tensorboard", "wandb", "all", "none")
MAX_DEFAULT_WORKERS = 4
"""Data workers per training process by default, on machines with cores to spare (see :func:`default_num_workers`)."""


def default_num_workers(cap: int = MAX_DEFAULT_WORKERS) -> int:
    """Workers per training process that leave every process and worker of this machine a core of its own.

    More processes than cores only makes them wait for each other (and PyTorch's threads
    spin while they wait), so a 2-core laptop gets 1 worker and a 1-core container none.
    ``LOCAL_WORLD_SIZE`` is the number of training processes on this machine under
    ``accelerate launch`` / ``torchrun``: 8 GPUs on 16 cores get 1 worker each, not 4.
    """
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may use (taskset, cgroup cpusets)
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    local_processes = max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
    return max(0, min(cap, cores // local_processes - 1))


def _flag(group, name: str, **kwargs) -> None:
    """``--name_with_underscores`` plus its ``--dashed-spelling``."""
    group.add_argument(f"--{name}", *([f"--{name.replace('_', '-')}"] if "_" in name else []), dest=name, **kwargs)


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add every training option to ``parser`` (shared by ``seg2sat train`` and ``controlnet_training/train.py``)."""
    g = parser.add_argument_group("models")
    _flag(g, "pretrained_model_name_or_path", default=None,
          help="base Stable Diffusion model: hub id or folder (default: a verified copy of SD 2.1 base, "
               "see README, Real weights)")
    _flag(g, "controlnet_model_name_or_path", default=None,
          help="ControlNet to start from (hub id or folder); default: a new one initialised from the UNet")
    _flag(g, "revision", default=None, help="hub revision of the base model")
    _flag(g, "variant", default=None, help="weights variant of the base model, e.g. fp16")
    _flag(g, "cache_dir", default=None, help="where hub downloads are cached")

    g = parser.add_argument_group("data")
    _flag(g, "train_data_dir", default=None,
          help="a folder written by dataset preparation (save_to_disk), or an imagefolder-style folder")
    _flag(g, "dataset_name", default=None, help="a hub dataset id (or a local dataset folder)")
    _flag(g, "dataset_config_name", default=None, help="the hub dataset's configuration")
    _flag(g, "image_column", default="image", help="column with the aerial images (default image)")
    _flag(g, "conditioning_image_column", default="conditioning_image",
          help="column with the colour masks (default conditioning_image)")
    _flag(g, "caption_column", default="text", help="column with the captions (default text)")
    _flag(g, "max_train_samples", type=int, default=None, help="use only the first N examples")
    _flag(g, "resolution", type=int, default=512, help=f"training size in pixels, a multiple of {MULTIPLE} (default 512)")
    _flag(g, "center_crop", action="store_true", help="crop the centre instead of a random square")
    _flag(g, "random_flip", action="store_true", help="flip image and mask together, half of the time")
    _flag(g, "proportion_empty_prompts", type=float, default=0.0,
          help="share of captions replaced by an empty prompt (0..1; helps classifier-free guidance)")
    _flag(g, "dataloader_num_workers", type=int, default=None,
          help=f"data loading processes per training process (0 = in the main process); default: "
          f"{MAX_DEFAULT_WORKERS}, or fewer so that the workers and the training processes of this machine "
          f"together do not outnumber its cores ({default_num_workers()} here)")

    g = parser.add_argument_group("optimisation")
    _flag(g, "seed", type=int, default=0,
          help="seed of everything random: a new ControlNet's initial weights, data order, crops, noise; "
          "the same seed and options give the same weights on the same hardware and software (default 0)")
    _flag(g, "train_batch_size", type=int, default=4, help="batch size per device (default 4)")
    _flag(g, "num_train_epochs", type=int, default=1, help="epochs, when --max_train_steps is not given (default 1)")
    _flag(g, "max_train_steps", type=int, default=None, help="optimizer steps in all; overrides --num_train_epochs")
    _flag(g, "gradient_accumulation_steps", type=int, default=1, help="batches per optimizer step (default 1)")
    _flag(g, "gradient_checkpointing", action="store_true", help="recompute activations in the backward pass to save memory")
    _flag(g, "learning_rate", type=float, default=5e-6, help="learning rate (default 5e-6)")
    _flag(g, "scale_lr", action="store_true", help="multiply the learning rate by batch size x accumulation x processes")
    _flag(g, "lr_scheduler", default="constant", choices=SCHEDULERS, help="learning-rate schedule (default constant)")
    _flag(g, "lr_warmup_steps", type=int, default=500, help="warm-up steps of the schedule (default 500)")
    _flag(g, "lr_num_cycles", type=int, default=1, help="restarts of cosine_with_restarts")
    _flag(g, "lr_power", type=float, default=1.0, help="power of the polynomial schedule")
    _flag(g, "use_8bit_adam", action="store_true", help="bitsandbytes 8-bit AdamW (needs `pip install bitsandbytes` and a GPU)")
    _flag(g, "adam_beta1", type=float, default=0.9)
    _flag(g, "adam_beta2", type=float, default=0.999)
    _flag(g, "adam_weight_decay", type=float, default=1e-2)
    _flag(g, "adam_epsilon", type=float, default=1e-8)
    _flag(g, "max_grad_norm", type=float, default=1.0, help="gradient clipping norm (default 1.0)")
    _flag(g, "set_grads_to_none", action="store_true", help="free gradients between steps instead of zeroing them")
    _flag(g, "mixed_precision", default=None, choices=("no", "fp16", "bf16"),
          help="default: what `accelerate config` chose; frozen models run in this dtype")
    _flag(g, "allow_tf32", action="store_true", help="TF32 matmuls on Ampere and newer GPUs")

    g = parser.add_argument_group("checkpoints and output")
    _flag(g, "output_dir", type=Path, default=Path("seg2sat-controlnet"),
          help="the trained ControlNet, checkpoints, validation grids and logs (default seg2sat-controlnet)")
    _flag(g, "checkpointing_steps", type=int, default=500, help="save the full training state every N steps (default 500)")
    _flag(g, "checkpoints_total_limit", type=int, default=None, help="keep only the newest N checkpoints")
    _flag(g, "resume_from_checkpoint", default=None, help="'latest' (newest in --output_dir) or a checkpoint folder")
    _flag(g, "push_to_hub", action="store_true", help="upload the trained ControlNet to the Hugging Face hub")
    _flag(g, "hub_model_id", default=None, help="hub repository (default: the output folder's name)")
    _flag(g, "hub_token", default=None, help="hub token (default: the one saved by `hf auth login`)")

    g = parser.add_argument_group("validation and logging")
    _flag(g, "validation_image", nargs="+", default=None, help="mask files rendered at each validation")
    _flag(g, "validation_prompt", nargs="+", default=None, help="one prompt for all masks, or one per mask")
    _flag(g, "num_validation_images", type=int, default=2, help="images per mask and prompt (default 2)")
    _flag(g, "validation_steps", type=int, default=100, help="validate every N steps (default 100)")
    steps = NUMERIC_FIELDS["steps"].default
    _flag(g, "validation_inference_steps", type=int, default=steps,
          help=f"denoising steps of each validation image (default {steps}, as generate)")
    _flag(g, "report_to", default="tensorboard", choices=TRACKERS, help="experiment tracker (default tensorboard)")
    _flag(g, "tracker_project_name", default="seg2sat-controlnet", help="project name in the tracker")
    _flag(g, "logging_dir", default="logs",
          help="tracker logs: a folder inside --output_dir, or an absolute path (default logs: OUTPUT/logs)")
    return parser


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train the Seg2Sat ControlNet on Stable Diffusion 2.1 base. Run it with `accelerate launch` "
        "for several GPUs or nodes.",
    )
    return add_train_arguments(parser)


def _positive(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"`{name}` must be at least 1, got {value}")


def check_args(args: argparse.Namespace) -> argparse.Namespace:
    """Refuse impossible settings with a message naming the option, before any data or model is touched."""
    if not args.train_data_dir and not args.dataset_name:
        raise ValueError("give the training data: `train_data_dir` FOLDER (from dataset preparation) or `dataset_name` HUB_ID")
    if args.train_data_dir and args.dataset_name:
        raise ValueError("give either `train_data_dir` or `dataset_name`, not both")
    _positive(args, "train_batch_size", "num_train_epochs", "max_train_steps", "gradient_accumulation_steps",
              "checkpointing_steps", "checkpoints_total_limit", "validation_steps", "num_validation_images",
              "validation_inference_steps", "max_train_samples")
    if args.resolution < MULTIPLE or args.resolution % MULTIPLE:
        raise ValueError(f"`resolution` must be a multiple of {MULTIPLE} (the model's size step), got {args.resolution}")
    if not 0.0 <= args.proportion_empty_prompts <= 1.0:
        raise ValueError(f"`proportion_empty_prompts` must be between 0 and 1, got {args.proportion_empty_prompts}")
    if args.dataloader_num_workers is None:  # resolved here, so the tracker's config records the number used
        args.dataloader_num_workers = default_num_workers()
    if args.dataloader_num_workers < 0:
        raise ValueError("`dataloader_num_workers` must be 0 or more")
    if args.learning_rate <= 0:
        raise ValueError(f"`learning_rate` must be positive, got {args.learning_rate}")
    _check_validation(args)
    _check_tracker(args.report_to)
    if args.use_8bit_adam and importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError("`use_8bit_adam` needs bitsandbytes: pip install bitsandbytes")
    if args.resume_from_checkpoint and args.resume_from_checkpoint != "latest":
        if not Path(args.resume_from_checkpoint).is_dir():
            raise ValueError(f"`resume_from_checkpoint`: no checkpoint folder {args.resume_from_checkpoint!r}; "
                             "pass a checkpoint-N folder or 'latest'")
    return args


def _check_validation(args: argparse.Namespace) -> None:
    images, prompts = args.validation_image or [], args.validation_prompt or []
    if bool(images) != bool(prompts):
        raise ValueError("validation needs both `validation_image` and `validation_prompt`")
    if images and len(prompts) not in (1, len(images)):
        raise ValueError(f"give one `validation_prompt` for all masks or one per mask: got {len(prompts)} prompts "
                         f"for {len(images)} masks")
    for path in images:
        if not Path(path).is_file():
            raise ValueError(f"`validation_image`: file not found: {path}")


def _check_tracker(report_to: str) -> None:
    wanted = () if report_to in ("all", "none") else (report_to,)  # "all" = whichever are installed
    for name in wanted:
        if importlib.util.find_spec(name) is None:
            raise ValueError(f"`report_to` {report_to} needs the {name} package: pip install {name} (or `report_to` none)")
