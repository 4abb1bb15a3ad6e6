"""Training the Seg2Sat ControlNet on Stable Diffusion 2.1 base, with accelerate.

``seg2sat train …`` and ``accelerate launch controlnet_training/train.py …`` both end in
:func:`main`. The arguments follow diffusers' ``train_controlnet.py``; what differs is what
that script gets wrong for land-cover masks (see :mod:`.data` and :mod:`.checkpoints`).
"""

from __future__ import annotations

import sys

from ..options import spell
from .arguments import add_train_arguments, build_parser, check_args

__all__ = ["add_train_arguments", "build_parser", "check_args", "main", "train", "TrainingSummary"]


def __getattr__(name: str):
    """``train`` and ``TrainingSummary`` import torch and diffusers: only when used, so ``--help`` stays instant."""
    if name in ("train", "TrainingSummary"):
        from . import loop

        return getattr(loop, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``controlnet_training/train.py``: errors are one line, with this script's flags, and exit
    code 2."""
    from ..pipelines import WeightsNotFoundError
    from .loop import train

    parser = build_parser("train.py")
    args = parser.parse_args(argv)
    try:
        train(args)
    except (ValueError, WeightsNotFoundError) as exc:
        print(f"error: {spell(str(exc), 'cli', parser)}", file=sys.stderr)
        return 2
    return 0
