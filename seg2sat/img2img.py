"""Image-to-image: denoising that starts from a picture noised to ``strength`` instead of pure noise.

A procedural render of the mask as the start ties the result closer to the mask. The
picture is VAE-encoded in tiles that cross-fade, and the tiled denoising loop of
:mod:`seg2sat.tiling` runs the last ``strength`` share of the steps, so a map of any
size gets one seamless image; a map that fits one tile is one window of the same path.
"""

from __future__ import annotations

import torch
from PIL import Image

from .request import NUMERIC_FIELDS
from .stepcache import StepCache
from .tiling import TileCallback, TiledDenoiser, blend_weights, check_control, windows


def generate_from_image(pipe, control: Image.Image, init_image: Image.Image, prompt: str, *, seed: int,
                        strength: float = NUMERIC_FIELDS["strength"].default,
                        steps: int = NUMERIC_FIELDS["steps"].default,
                        guidance_scale: float = NUMERIC_FIELDS["guidance_scale"].default,
                        controlnet_scale: float = NUMERIC_FIELDS["controlnet_scale"].default,
                        negative_prompt: str | None = None, overlap: int | None = None, tile: int | None = None,
                        on_tile: TileCallback | None = None, cache: StepCache | None = None) -> Image.Image:
    """One image for a colour-mask ``control`` of any size (sides multiples of 8), starting from ``init_image``.

    ``init_image`` is resized to the control's size and noised to ``strength``
    (0 < strength <= 1; 1 keeps almost nothing of it); that share of the steps runs.
    ``tile``, ``overlap``, ``on_tile`` and ``cache`` are :func:`seg2sat.tiling.generate_tiled`'s.
    """
    check_control(pipe, control)
    if not (isinstance(strength, (int, float)) and 0 < strength <= 1):
        raise ValueError(f"strength must be a number in (0, 1], got {strength!r}")
    denoiser = TiledDenoiser(pipe, control.convert("RGB"), prompt, negative_prompt, guidance_scale,
                             controlnet_scale, overlap, tile)

    def start(generator: torch.Generator, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        return noised_start(denoiser, generator, steps, init_image, float(strength))

    return denoiser(seed, steps, on_tile, cache, start)


def noised_start(denoiser: TiledDenoiser, generator: torch.Generator, steps: int, init: Image.Image,
                 strength: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The last ``strength`` share of the timesteps, and ``init``'s latent noised to the first of them."""
    pipe = denoiser.pipe
    width, height = denoiser.control.size
    pipe.scheduler.set_timesteps(steps, device=denoiser.device)
    order = getattr(pipe.scheduler, "order", 1)
    skip = (steps - min(max(round(steps * strength), 1), steps)) * order
    timesteps = pipe.scheduler.timesteps[skip:]
    if hasattr(pipe.scheduler, "set_begin_index"):
        pipe.scheduler.set_begin_index(skip)
    clean = encode(pipe, init.resize((width, height), Image.LANCZOS), denoiser.tile, denoiser.overlap)
    noise = torch.randn(clean.shape, generator=generator, dtype=torch.float32).to(denoiser.device, clean.dtype)
    return timesteps, pipe.scheduler.add_noise(clean, noise, timesteps[:1])


def encode(pipe, image: Image.Image, tile: int, overlap: int) -> torch.Tensor:
    """The scaled VAE latent of an RGB image of any size, encoded in tiles whose latents cross-fade.

    The latent distribution's mode is used, so the same image always gives the same latent.
    """
    scale = int(pipe.vae_scale_factor)
    width, height = image.size
    pixels = pipe.image_processor.preprocess(image.convert("RGB"), height=height, width=width)
    pixels = pixels.to(pipe._execution_device, pipe.vae.dtype)
    spans = windows(height // scale, width // scale, tile, overlap)
    total = weight = None
    with torch.no_grad():
        for left, top, right, bottom in spans:
            piece = pixels[:, :, top * scale : bottom * scale, left * scale : right * scale]
            latent = pipe.vae.encode(piece).latent_dist.mode() * pipe.vae.config.scaling_factor
            if len(spans) == 1:
                return latent
            if total is None:
                total = torch.zeros((1, latent.shape[1], height // scale, width // scale), dtype=latent.dtype,
                                    device=latent.device)
                weight = torch.zeros_like(total[:, :1])
            w = torch.from_numpy(blend_weights(bottom - top, right - left, overlap)).to(latent)
            total[:, :, top:bottom, left:right] += latent * w
            weight[:, :, top:bottom, left:right] += w
    return total / weight
