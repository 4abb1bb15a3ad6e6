"""Maps larger than the model's native tile, in one seamless image (MultiDiffusion-style).

The latent of the whole map is denoised as overlapping tiles the size the model was
trained on. At every step each tile is run through the ControlNet (conditioned on
its own part of the mask) and the UNet, and the noise predictions are averaged where
tiles overlap, with weights that fade towards tile edges; the scheduler then takes
one step on the whole latent. Because the tiles agree on the shared latent at every
step, there is no seam. The VAE decodes the result tile by tile, blended the same way.

Memory is bounded by the tile, not the map: only the latent (64x smaller than the
image), the blending sums and the output image grow with the map; every network
runs on one tile at a time. A map that fits in one tile takes exactly the same path
as the plain pipeline call, so it gives the same image for the same seed.

Text-to-image only: image-to-image (any size) is :mod:`seg2sat.img2img`, which reuses
the windows, the blending and the denoising loop here.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from .box import Box
from .request import NUMERIC_FIELDS
from .stepcache import StepCache

TileCallback = Callable[[int, int], None]
StartFn = Callable[[torch.Generator, int], tuple[torch.Tensor, torch.Tensor]]
"""(generator, steps) -> (timesteps to run, starting latent)."""


def tile_size(pipe) -> int:
    """The model's native tile in image pixels: 512 for SD 2.1 base, 64 for the tiny test pipeline."""
    return int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)


def needs_tiling(pipe, width: int, height: int) -> bool:
    """Whether a map of this size (in model pixels) is larger than one tile."""
    tile = tile_size(pipe)
    return width > tile or height > tile


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile starts along one axis: the fewest tiles of ``tile`` overlapping by at least ``overlap``, evenly spread."""
    if size <= tile:
        return [0]
    count = math.ceil((size - overlap) / (tile - overlap))
    return sorted({round(i * (size - tile) / (count - 1)) for i in range(count)})


def windows(height: int, width: int, tile: int, overlap: int) -> list[Box]:
    """Overlapping windows covering a ``height`` x ``width`` grid, row by row; every cell lies in at least one."""
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be at least 0 and less than the tile ({tile}), got {overlap}")
    return [Box(left, top, min(left + tile, width), min(top + tile, height))
            for top in _starts(height, tile, overlap) for left in _starts(width, tile, overlap)]


def _ramp(length: int, fade: int) -> np.ndarray:
    """1 in the middle, falling linearly to 1/(fade+1) at both ends: overlapping tiles cross-fade, never drop to 0."""
    position = np.arange(length)
    distance = np.minimum(position, length - 1 - position) + 1
    return np.minimum(distance / (fade + 1), 1.0).astype(np.float32)


def blend_weights(height: int, width: int, fade: int) -> np.ndarray:
    """(height, width) weights for one tile: full in the middle, fading over ``fade`` cells at the edges."""
    return np.outer(_ramp(height, fade), _ramp(width, fade))


class TiledDenoiser:
    """The denoising loop of ``StableDiffusionControlNetPipeline`` over tiles of one big latent."""

    def __init__(self, pipe, control: Image.Image, prompt: str, negative_prompt: str | None,
                 guidance_scale: float, controlnet_scale: float, overlap: int | None = None, tile: int | None = None):
        self.pipe = pipe
        self.control = control
        self.device = pipe._execution_device
        self.cfg = guidance_scale > 1 and pipe.unet.config.time_cond_proj_dim is None
        self.guidance_scale = guidance_scale
        self.controlnet_scale = controlnet_scale
        self.scale = int(pipe.vae_scale_factor)
        self.tile = int(tile or pipe.unet.config.sample_size)
        self.overlap = self.tile // 4 if overlap is None else overlap
        width, height = control.size
        self.windows = windows(height // self.scale, width // self.scale, self.tile, self.overlap)
        positive, negative = pipe.encode_prompt(prompt, self.device, 1, self.cfg, negative_prompt)
        self.embeds = torch.cat([negative, positive]) if self.cfg else positive

    def _control_tile(self, window: Box) -> torch.Tensor:
        box = window.scaled(self.scale)
        crop = self.control if box == (0, 0, *self.control.size) else self.control.crop(box)
        return self.pipe.prepare_image(image=crop, width=box.width, height=box.height, batch_size=1,
                                       num_images_per_prompt=1, device=self.device, dtype=self.pipe.controlnet.dtype,
                                       do_classifier_free_guidance=self.cfg)

    def _predict(self, latents: torch.Tensor, t, window: Box) -> torch.Tensor:
        """Guided noise prediction for one tile of the latent, exactly as the pipeline computes it."""
        rows, cols = window.slices()
        tile = latents[:, :, rows, cols]
        model_input = torch.cat([tile] * 2) if self.cfg else tile
        model_input = self.pipe.scheduler.scale_model_input(model_input, t)
        down, mid = self.pipe.controlnet(model_input, t, encoder_hidden_states=self.embeds,
                                         controlnet_cond=self._control_tile(window),
                                         conditioning_scale=self.controlnet_scale, guess_mode=False, return_dict=False)
        noise = self.pipe.unet(model_input, t, encoder_hidden_states=self.embeds, timestep_cond=None,
                               cross_attention_kwargs=None,
                               down_block_additional_residuals=down, mid_block_additional_residual=mid,
                               return_dict=False)[0]
        if self.cfg:
            uncond, text = noise.chunk(2)
            noise = uncond + self.guidance_scale * (text - uncond)
        return noise

    def _average(self, latents: torch.Tensor, t, on_tile: Callable[[], None], cache: StepCache | None = None
                 ) -> torch.Tensor:
        """Noise prediction for the whole latent: tile predictions averaged where they overlap.

        ``cache``: a step cache keeps each tile's deep features apart (one slot per tile).
        """
        if len(self.windows) == 1:
            on_tile()
            return self._predict(latents, t, self.windows[0])
        total = torch.zeros_like(latents)
        weight = torch.zeros_like(latents[:, :1])
        for index, window in enumerate(self.windows):
            if cache is not None:
                cache.select(index)
            rows, cols = window.slices()
            w = torch.from_numpy(blend_weights(window.height, window.width, self.overlap)).to(latents)
            total[:, :, rows, cols] += self._predict(latents, t, window) * w
            weight[:, :, rows, cols] += w
            on_tile()
        return total / weight

    def noise_start(self, generator: torch.Generator, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Timesteps to run and the starting latent for text-to-image: every step, from pure noise."""
        pipe = self.pipe
        width, height = self.control.size
        pipe.scheduler.set_timesteps(steps, device=self.device)
        latents = pipe.prepare_latents(1, pipe.unet.config.in_channels, height, width, self.embeds.dtype,
                                       self.device, generator)
        return pipe.scheduler.timesteps, latents

    def __call__(self, seed: int, steps: int, on_tile: TileCallback | None = None, cache: StepCache | None = None,
                 start: StartFn | None = None) -> Image.Image:
        """One image for ``seed``; ``start`` (default :meth:`noise_start`) gives the timesteps and first latent.

        Image-to-image (:mod:`seg2sat.img2img`) passes its own ``start``: the picture, noised.
        """
        pipe = self.pipe
        generator = torch.Generator("cpu").manual_seed(seed)
        timesteps, latents = (start or self.noise_start)(generator, steps)
        extra = pipe.prepare_extra_step_kwargs(generator, 0.0)
        total = len(timesteps) * len(self.windows)
        done = 0
        with torch.no_grad(), pipe.progress_bar(total=total) as bar:

            def tile_done() -> None:
                nonlocal done
                done += 1
                bar.update()
                if on_tile is not None:
                    on_tile(done, total)

            for t in timesteps:
                noise = self._average(latents, t, tile_done, cache)
                latents = pipe.scheduler.step(noise, t, latents, **extra, return_dict=False)[0]
                if cache is not None:
                    cache.next_step()
            return decode(pipe, latents, self.tile, self.overlap, generator)


def decode(pipe, latents: torch.Tensor, tile: int, overlap: int, generator: torch.Generator | None = None) -> Image.Image:
    """VAE-decode a latent of any size in ``tile`` x ``tile`` pieces, cross-fading them, into one PIL image.

    Tiles are blended one row of tiles at a time: rows of pixels that no later tile
    touches are finished into the 8-bit output right away, so the float sums never
    hold more than one row of tiles. A latent that fits in one tile is decoded in one
    call, as the pipeline does.
    """
    scale = int(pipe.vae_scale_factor)
    _, _, height, width = latents.shape
    spans = windows(height, width, tile, overlap)
    if len(spans) == 1:
        return _decode_tile(pipe, latents, generator)
    out = np.empty((height * scale, width * scale, 3), np.uint8)
    band = _Band(out)
    for left, top, right, bottom in spans:
        band.start_at(top * scale, bottom * scale)
        piece = np.asarray(_decode_tile(pipe, latents[:, :, top:bottom, left:right], generator), np.float32)
        band.add(piece, top * scale, left * scale, blend_weights(piece.shape[0], piece.shape[1], overlap * scale))
    band.start_at(height * scale, height * scale)
    return Image.fromarray(out)


class _Band:
    """Weighted sums for the rows of pixels the current row of tiles covers; finished rows go to ``out``."""

    def __init__(self, out: np.ndarray):
        self.out, self.top = out, 0
        self.sums = np.zeros((0, out.shape[1], 3), np.float32)
        self.weights = np.zeros((0, out.shape[1], 1), np.float32)

    def start_at(self, top: int, bottom: int) -> None:
        """Rows above ``top`` are final: write them out; make room down to ``bottom``."""
        done = top - self.top
        if done <= 0 and bottom <= self.top + len(self.sums):
            return
        finished = self.sums[:done] / np.maximum(self.weights[:done], 1e-12)
        self.out[self.top : self.top + len(finished)] = np.clip(finished + 0.5, 0, 255).astype(np.uint8)
        keep = max(len(self.sums) - done, 0)
        sums = np.zeros((max(bottom - top, keep), *self.sums.shape[1:]), np.float32)
        weights = np.zeros((len(sums), *self.weights.shape[1:]), np.float32)
        sums[:keep], weights[:keep] = self.sums[done:], self.weights[done:]
        self.sums, self.weights, self.top = sums, weights, top

    def add(self, piece: np.ndarray, top: int, left: int, weight: np.ndarray) -> None:
        rows = slice(top - self.top, top - self.top + piece.shape[0])
        cols = slice(left, left + piece.shape[1])
        self.sums[rows, cols] += piece * weight[..., None]
        self.weights[rows, cols] += weight[..., None]


def _decode_tile(pipe, latents: torch.Tensor, generator) -> Image.Image:
    with torch.no_grad():
        image = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False, generator=generator)[0]
    return pipe.image_processor.postprocess(image, output_type="pil", do_denormalize=[True])[0]


def generate_tiled(pipe, control: Image.Image, prompt: str, *, seed: int, steps: int = NUMERIC_FIELDS["steps"].default,
                   guidance_scale: float = NUMERIC_FIELDS["guidance_scale"].default,
                   controlnet_scale: float = NUMERIC_FIELDS["controlnet_scale"].default, negative_prompt: str | None = None,
                   overlap: int | None = None, tile: int | None = None,
                   on_tile: TileCallback | None = None, cache: StepCache | None = None) -> Image.Image:
    """One image for a colour-mask ``control`` of any size (sides multiples of 8), tile by tile.

    ``tile`` and ``overlap`` are in latent pixels (defaults: the model's native size,
    64 = 512 image px for SD, and a quarter of it). A smaller tile needs less memory.
    Image-to-image (a start picture instead of pure noise) is :func:`seg2sat.img2img.generate_from_image`.
    ``on_tile`` sees (tile passes done, tile passes in all) = tiles x steps.
    ``cache``: an open :class:`~seg2sat.stepcache.StepCache` on ``pipe``, told of every tile and step.
    """
    check_control(pipe, control)
    denoiser = TiledDenoiser(pipe, control.convert("RGB"), prompt, negative_prompt, guidance_scale,
                             controlnet_scale, overlap, tile)
    return denoiser(seed, steps, on_tile, cache)


def check_control(pipe, control: Image.Image) -> None:
    """The latent grid is the image / the VAE's factor: sides that are not multiples of it are refused."""
    if control.width % pipe.vae_scale_factor or control.height % pipe.vae_scale_factor:
        raise ValueError(f"control image sides must be multiples of {pipe.vae_scale_factor}, got {control.size}")
