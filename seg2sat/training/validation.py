"""Validation during training: the validation masks rendered with the ControlNet being trained.

The pipeline is assembled from the very modules in training (no second copy of any
weight, no download), images are made one at a time through :func:`seg2sat.generate`
(so masks follow the usual size policy and seeds), and memory is handed back afterwards.
That is what keeps validation from running out of memory at 512 px on one GPU.
"""

from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import masks
from ..generation import generate

GRID_DIR = "validation"


@dataclass
class ValidationSet:
    """The masks (class ids) and their prompts, read once at start-up so a bad file fails early."""

    masks: list[np.ndarray]
    prompts: list[str]

    @classmethod
    def from_args(cls, args) -> ValidationSet | None:
        if not args.validation_image:
            return None
        ids = [masks.load_mask(path).ids for path in args.validation_image]
        prompts = list(args.validation_prompt)
        return cls(ids, prompts * len(ids) if len(prompts) == 1 else prompts)


def validation_pipeline(models, controlnet):
    """A ControlNet pipeline over the training modules themselves: nothing is copied or loaded."""
    from diffusers import StableDiffusionControlNetPipeline, UniPCMultistepScheduler

    pipe = StableDiffusionControlNetPipeline(
        vae=models.vae, text_encoder=models.text_encoder, tokenizer=models.tokenizer, unet=models.unet,
        controlnet=controlnet, scheduler=UniPCMultistepScheduler.from_config(models.noise_scheduler.config),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def render(pipe, validation: ValidationSet, num_images: int, steps: int, seed: int, autocast_dtype) -> Image.Image:
    """The validation grid: one row per mask, the mask first, then ``num_images`` images (seeds seed, seed+1, …)."""
    rows = []
    autocast = (torch.autocast(pipe.device.type, dtype=autocast_dtype) if autocast_dtype is not None
                else contextlib.nullcontext())
    with torch.no_grad(), autocast:
        for ids, prompt in zip(validation.masks, validation.prompts):
            result = generate(ids, prompt, seed=seed, num_images=num_images, steps=steps, pipeline=pipe)
            rows.append([masks.to_image(ids), *result.images])
    return grid(rows)


def grid(rows: list[list[Image.Image]]) -> Image.Image:
    """Tiles rows of images (cells as large as the largest image) into one picture."""
    width = max(im.width for row in rows for im in row)
    height = max(im.height for row in rows for im in row)
    sheet = Image.new("RGB", (width * max(len(r) for r in rows), height * len(rows)), "white")
    for y, row in enumerate(rows):
        for x, im in enumerate(row):
            sheet.paste(im.convert("RGB"), (x * width, y * height))
    return sheet


def run_validation(accelerator, models, controlnet, validation: ValidationSet, args, step: int,
                   autocast_dtype) -> Path | None:
    """Render, save ``validation/step-<step>.png`` and log it to the trackers; main process only."""
    if not accelerator.is_main_process:
        return None
    model = accelerator.unwrap_model(controlnet)
    was_training = model.training
    model.eval()
    try:
        pipe = validation_pipeline(models, model)
        sheet = render(pipe, validation, args.num_validation_images, args.validation_inference_steps, args.seed,
                       autocast_dtype)
    finally:
        model.train(was_training)
        pipe = None
        _free_memory()
    path = Path(args.output_dir) / GRID_DIR / f"step-{step:06d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    _log(accelerator, sheet, step)
    return path


def _log(accelerator, sheet: Image.Image, step: int) -> None:
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_image("validation", np.asarray(sheet), step, dataformats="HWC")
        elif tracker.name == "wandb":
            import wandb

            tracker.log({"validation": wandb.Image(sheet, caption=f"step {step}")}, step=step)


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
