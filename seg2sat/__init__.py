"""Seg2Sat: land-cover segmentation masks in, aerial images out.

The core package every front end (CLI, endpoint, web UI, training, dataset
preparation) imports. The heavy imports (torch, diffusers) happen on first use.
"""

from .classes import CLASSES, LandCoverClass, get_class
from .masks import class_shares, from_flair, load_mask, model_size, snap, to_image
from .prompts import STYLES, build_prompt, caption

__version__ = "0.1.0"

__all__ = [
    "CLASSES", "LandCoverClass", "get_class", "class_shares", "from_flair", "load_mask", "model_size",
    "snap", "to_image", "STYLES", "build_prompt", "caption", "generate", "inpaint", "outpaint",
    "load_pipeline", "WeightsNotFoundError", "Result",
]

_LAZY = {
    "generate": "generation", "inpaint": "generation", "outpaint": "generation", "Result": "generation",
    "load_pipeline": "pipelines", "WeightsNotFoundError": "pipelines",
}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'seg2sat' has no attribute {name!r}")
