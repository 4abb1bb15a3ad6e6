"""``seg2sat train``: the same program as ``controlnet_training/train.py``; options in :mod:`.arguments`."""

from __future__ import annotations

from .arguments import add_train_arguments


def register(sub) -> None:
    """``seg2sat train``: the same program as ``controlnet_training/train.py``."""
    parser = sub.add_parser(
        "train", help="train the ControlNet (accelerate; one GPU, several, or CPU for tests)",
        description="Train the Seg2Sat ControlNet on a dataset from dataset preparation. Runs on one device as is; "
        "for several GPUs or nodes: accelerate launch --config_file CONFIG -m seg2sat train …",
    )
    add_train_arguments(parser)
    parser.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    from .loop import train  # torch and diffusers: only when training

    train(args)
    return 0
