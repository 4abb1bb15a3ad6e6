"""The models of ControlNet training and one training step.

Only the ControlNet learns. The VAE, UNet and text encoder are frozen, in eval mode and
in the mixed-precision dtype (half the memory, and no optimizer state); the ControlNet
stays in float32 and runs under accelerate's autocast. Attention is PyTorch's scaled
dot-product attention, diffusers' default on torch 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..pipelines import load_component
from ..weights import WeightsNotFoundError

TRAINING_FIELDS = {"`model`": "`pretrained_model_name_or_path`", "`controlnet`": "`controlnet_model_name_or_path`"}
"""The weights' messages name generate's fields; training calls the same settings by diffusers' names."""


def _renamed(load, *args, **kwargs):
    """``load(*args, **kwargs)``, its weights error naming training's fields (as RequestError.renamed does)."""
    try:
        return load(*args, **kwargs)
    except WeightsNotFoundError as exc:
        text = str(exc)
        for field, name in TRAINING_FIELDS.items():
            text = text.replace(field, name)
        raise WeightsNotFoundError(text) from exc


@dataclass
class Models:
    tokenizer: object
    text_encoder: torch.nn.Module
    vae: torch.nn.Module
    unet: torch.nn.Module
    controlnet: torch.nn.Module
    noise_scheduler: object

    def frozen(self) -> list[torch.nn.Module]:
        return [self.text_encoder, self.vae, self.unet]


def load_models(args, device: torch.device, weight_dtype: torch.dtype) -> Models:
    """Base model parts from ``--pretrained_model_name_or_path``; the ControlNet from its folder or from the UNet."""
    from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel
    from diffusers.models.attention_processor import AttnProcessor2_0
    from transformers import AutoTokenizer, CLIPTextModel

    base = args.pretrained_model_name_or_path
    hub = {"cache_dir": args.cache_dir, "revision": args.revision}
    weights = {**hub, "variant": args.variant}

    def part(cls, subfolder, **extra):
        return _renamed(load_component, cls, base, f"base model's {subfolder}", "`pretrained_model_name_or_path`",
                        subfolder=subfolder, **extra)

    tokenizer = part(AutoTokenizer, "tokenizer", **hub)
    noise_scheduler = part(DDPMScheduler, "scheduler", **hub)
    text_encoder = part(CLIPTextModel, "text_encoder", **weights)
    vae = part(AutoencoderKL, "vae", **weights)
    unet = part(UNet2DConditionModel, "unet", **weights)
    if args.controlnet_model_name_or_path:
        controlnet = _renamed(load_component, ControlNetModel, args.controlnet_model_name_or_path, "ControlNet",
                              "`controlnet_model_name_or_path`", cache_dir=args.cache_dir)
    else:
        controlnet = ControlNetModel.from_unet(unet)
    for module in (text_encoder, vae, unet):
        module.requires_grad_(False)
        module.eval()
        module.to(device) if weight_dtype == torch.float32 else module.to(device, dtype=weight_dtype)
    controlnet.to(device, dtype=torch.float32)
    controlnet.train()
    for module in (unet, controlnet):  # PyTorch SDPA, whatever processor a saved model was configured with
        module.set_attn_processor(AttnProcessor2_0())
    if args.gradient_checkpointing:
        controlnet.enable_gradient_checkpointing()
        unet.enable_gradient_checkpointing()  # the loss flows back through the UNet to the ControlNet
    return Models(tokenizer, text_encoder, vae, unet, controlnet, noise_scheduler)


def step_generator(seed: int, micro_batch: int, rank: int, device: torch.device) -> torch.Generator:
    """The noise and timesteps of one micro-batch on one process, from ``(seed, micro_batch, rank)`` alone.

    Nothing else draws from it, so a resumed run draws exactly what a straight run would.
    """
    value = int(np.random.SeedSequence([seed, micro_batch, rank]).generate_state(1, np.uint64)[0] >> 1)
    generator = torch.Generator(device=device if device.type in ("cuda", "cpu") else "cpu")
    return generator.manual_seed(value)


def _randn(shape, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


def diffusion_loss(models: Models, controlnet, batch: dict, generator: torch.Generator,
                   weight_dtype: torch.dtype) -> torch.Tensor:
    """The denoising loss of one batch, through the frozen UNet steered by ``controlnet``."""
    device = batch["pixel_values"].device
    scheduler = models.noise_scheduler
    with torch.no_grad():
        posterior = models.vae.encode(batch["pixel_values"].to(weight_dtype)).latent_dist
        latents = posterior.mean + posterior.std * _randn(posterior.mean.shape, generator, device).to(weight_dtype)
        latents = latents * models.vae.config.scaling_factor
        noise = _randn(latents.shape, generator, device).to(latents.dtype)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],),
                                  generator=generator, device=generator.device).to(device)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        text = models.text_encoder(batch["input_ids"], return_dict=False)[0]
    down, mid = controlnet(noisy, timesteps, encoder_hidden_states=text,
                           controlnet_cond=batch["conditioning_pixel_values"], return_dict=False)
    prediction = models.unet(
        noisy, timesteps, encoder_hidden_states=text,
        down_block_additional_residuals=[r.to(weight_dtype) for r in down],
        mid_block_additional_residual=mid.to(weight_dtype), return_dict=False,
    )[0]
    return F.mse_loss(prediction.float(), _target(scheduler, latents, noise, timesteps).float())


def _target(scheduler, latents, noise, timesteps) -> torch.Tensor:
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"unsupported prediction type of the base model's scheduler: {kind}")


def make_optimizer(args, params) -> torch.optim.Optimizer:
    if args.use_8bit_adam:
        import bitsandbytes as bnb

        cls = bnb.optim.AdamW8bit
    else:
        cls = torch.optim.AdamW
    return cls(params, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
               weight_decay=args.adam_weight_decay, eps=args.adam_epsilon)
