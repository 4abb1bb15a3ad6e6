"""A pipeline the exact shape of Stable Diffusion 2.1 base + a ControlNet, with random weights.

The tiny pipeline (:mod:`seg2sat.testing.tiny`) runs every code path in seconds but at toy
sizes; this one has SD 2.1 base's published configurations (865 M-parameter UNet with
1024-wide cross-attention, the 23-layer OpenCLIP-H text encoder, the SD VAE, the PNDM
scheduler and a 49408-token tokenizer) and a ControlNet made from that UNet, so it costs
what the real model costs in time and memory, and its folders are laid out like the hub
repos: the base model in safetensors *plus* ``fp16`` variant files, the ControlNet as a
lone ``diffusion_pytorch_model.bin`` like the original ``rgres/Seg2Sat-sd-controlnet``.
Nothing is downloaded: the tokenizer's vocabulary and merges are synthetic (same size and
special tokens as the real one, not the same words).

    python -m seg2sat.realsize OUT        # writes OUT/base and OUT/controlnet

then ``seg2sat generate MASK --model OUT/base --controlnet OUT/controlnet --steps 1``.
:func:`build_sd21_shaped` is the same thing from Python (tests, benchmarks).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

VOCAB_SIZE = 49408
"""CLIP's vocabulary: 256 bytes, 256 word-final bytes, 48894 merges, 2 special tokens."""

# The published configurations of stabilityai/stable-diffusion-2-1-base (diffusers layout),
# minus the bookkeeping keys ("_diffusers_version", "_name_or_path", "architectures").
SD21_BASE_UNET = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": [5, 10, 20, 20],
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 1024,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "upcast_attention": False,
    "use_linear_projection": True,
}

SD21_BASE_VAE = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 768,  # sic: the 2.1 base repo keeps the 768 model's VAE config
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

SD21_BASE_TEXT_ENCODER = {  # OpenCLIP ViT-H/14's text tower, penultimate layer kept (23 of 24)
    "architectures": ["CLIPTextModel"],
    "attention_dropout": 0.0,
    "bos_token_id": 0,  # sic: the published ids; eos_token_id == 2 makes CLIPTextModel pool at argmax(input_ids)
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "gelu",
    "hidden_size": 1024,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 4096,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "model_type": "clip_text_model",
    "num_attention_heads": 16,
    "num_hidden_layers": 23,
    "pad_token_id": 1,
    "projection_dim": 512,
    "vocab_size": VOCAB_SIZE,
}

SD21_BASE_SCHEDULER = {
    "_class_name": "PNDMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}

SD21_BASE_TOKENIZER = {  # tokenizer_config / special_tokens_map: OpenCLIP pads with "!" (id 0)
    "model_max_length": 77,
    "bos_token": "<|startoftext|>",
    "eos_token": "<|endoftext|>",
    "unk_token": "<|endoftext|>",
    "pad_token": "!",
}

SD21_BASE_MODEL_INDEX = {  # no safety checker and no feature extractor in the 2.x repos
    "_class_name": "StableDiffusionPipeline",
    "feature_extractor": [None, None],
    "requires_safety_checker": False,
    "safety_checker": [None, None],
    "scheduler": ["diffusers", "PNDMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}

PUBLISHED_DIFFUSERS_VERSION = "0.10.0.dev0"
PUBLISHED_TRANSFORMERS_VERSION = "4.25.0.dev0"

# Letters in rough English frequency first, so common pairs get merges (and low ids) first.
_PRIORITY = "etaoinshrdlcumwfgypbvkjxqz0123456789 .,-'/()!?:;\"&%+=_*#@$<>[]{}|\\^`~"


def _clean(config: dict) -> dict:
    return {k: v for k, v in config.items() if not k.startswith("_") and k != "architectures"}


def build_tokenizer():
    """A byte-level BPE CLIP tokenizer with exactly :data:`VOCAB_SIZE` tokens, written on the spot.

    Ids as in the real one: bytes 0-255, word-final bytes 256-511, merges from 512,
    ``<|startoftext|>`` 49406 and ``<|endoftext|>`` 49407, padding with ``!`` (0). The
    merges are every two-byte pair (word-final and not), commonest letters first:
    text tokenises like CLIP's does in structure, never to an unknown token.
    """
    from transformers import CLIPTokenizer

    from .tiny import byte_alphabet

    alphabet = sorted(byte_alphabet(), key=ord)  # CLIP's order: printable bytes first, so "!" is id 0
    order = [c for c in _PRIORITY if c in alphabet] + [c for c in alphabet if c not in _PRIORITY]
    tokens = [*alphabet, *(c + "</w>" for c in alphabet)]
    n_merges = VOCAB_SIZE - len(tokens) - 2
    merges: list[tuple[str, str]] = []
    total = 0
    while len(merges) < n_merges:  # pairs (i, j) by rank sum i + j: the commonest pairs first
        for i in range(max(0, total - len(order) + 1), min(total, len(order) - 1) + 1):
            a, b = order[i], order[total - i]
            for left, right in ((a, b + "</w>"), (a, b)):
                if len(merges) < n_merges:
                    merges.append((left, right))
                    tokens.append(left + right)
        total += 1
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    assert len(tokens) == len(set(tokens)) == VOCAB_SIZE
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, **SD21_BASE_TOKENIZER)


def save_tokenizer_hub_layout(tokenizer, folder: str | Path) -> None:
    """The tokenizer as the SD 2.1 base repo stores it: vocab.json, merges.txt and two small JSON files.

    (``save_pretrained`` of transformers 5 writes a ``tokenizer.json`` instead; the hub
    repo has none, so loading must build the tokenizer from the vocabulary and merges.)
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (folder / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {k: SD21_BASE_TOKENIZER[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    config = {"add_prefix_space": False, "do_lower_case": True, "errors": "replace", "tokenizer_class": "CLIPTokenizer",
              **SD21_BASE_TOKENIZER}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


def _wake_zero_convs(controlnet, generator) -> None:
    """A fresh ControlNet's output convs are zero, which would make it a no-op; a trained one's are not."""
    import torch

    with torch.no_grad():
        for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                     controlnet.controlnet_cond_embedding.conv_out]:
            conv.weight.normal_(0.0, 0.02, generator=generator)
            conv.bias.normal_(0.0, 0.02, generator=generator)


def write_published_configs(base: str | Path) -> None:
    """Replace the JSON files this diffusers/transformers wrote with the ones the hub repo has.

    Loading is then tested against the repo's (older) files, not against what today's
    libraries would write: e.g. no ``image_encoder`` entry in model_index.json, ``torch_dtype``
    rather than ``dtype`` in the text encoder's config.
    """
    base = Path(base)

    def diffusers_json(config: dict) -> dict:
        config = dict(config)
        return {"_class_name": config.pop("_class_name"), "_diffusers_version": PUBLISHED_DIFFUSERS_VERSION, **config}

    files = {
        "model_index.json": diffusers_json(SD21_BASE_MODEL_INDEX),
        "unet/config.json": diffusers_json(SD21_BASE_UNET),
        "vae/config.json": diffusers_json(SD21_BASE_VAE),
        "scheduler/scheduler_config.json": diffusers_json(SD21_BASE_SCHEDULER),
        "text_encoder/config.json": dict(sorted({
            **SD21_BASE_TEXT_ENCODER, "torch_dtype": "float32", "transformers_version": PUBLISHED_TRANSFORMERS_VERSION,
        }.items())),
    }
    for name, config in files.items():
        (base / name).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _save_fp16_variant(model, folder: Path, weights_name: str) -> None:
    """``<weights>.fp16.safetensors`` beside the fp32 file, as the hub repos have (the configs stay fp32)."""
    import torch
    from safetensors.torch import save_file

    stem, ext = weights_name.rsplit(".", 1)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / f"{stem}.fp16.{ext}"), metadata={"format": "pt"})
    del state


def build_sd21_shaped(out_dir: str | Path, seed: int = 0, log=print) -> tuple[Path, Path]:
    """Write an SD 2.1 base-shaped base model and ControlNet (random weights) under ``out_dir``.

    Returns ``(base_dir, controlnet_dir)``: ``out_dir/base`` (a StableDiffusionPipeline
    folder: safetensors and fp16 variants) and ``out_dir/controlnet`` (config.json and
    diffusion_pytorch_model.bin only). About 8.7 GB on disk and ~8.2 GB of RAM while
    it is built (its time is in the README, under Run the tests).
    """
    import gc

    import torch
    from diffusers import AutoencoderKL, ControlNetModel, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    out_dir = Path(out_dir)
    base, cn_dir = out_dir / "base", out_dir / "controlnet"
    start = time.perf_counter()

    def step(what: str) -> None:
        if log:
            log(f"[realsize] {what} ({time.perf_counter() - start:.1f} s)")

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    tokenizer = build_tokenizer()
    step("tokenizer")
    with torch.device("cpu"):
        unet = UNet2DConditionModel.from_config(_clean(SD21_BASE_UNET))
        step(f"unet {sum(p.numel() for p in unet.parameters()) / 1e6:.0f} M parameters")
        controlnet = ControlNetModel.from_unet(unet)
        _wake_zero_convs(controlnet, generator)
        step(f"controlnet {sum(p.numel() for p in controlnet.parameters()) / 1e6:.0f} M parameters")
        vae = AutoencoderKL.from_config(_clean(SD21_BASE_VAE))
        text_encoder = CLIPTextModel(CLIPTextConfig(**_clean(SD21_BASE_TEXT_ENCODER)))
        step(f"vae, text encoder {sum(p.numel() for p in text_encoder.parameters()) / 1e6:.0f} M parameters")
    scheduler = PNDMScheduler.from_config(_clean(SD21_BASE_SCHEDULER))
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(base, safe_serialization=True)
    save_tokenizer_hub_layout(tokenizer, base / "tokenizer")
    write_published_configs(base)
    step("base model saved (safetensors)")
    for name, weights in (("unet", "diffusion_pytorch_model.safetensors"), ("vae", "diffusion_pytorch_model.safetensors"),
                          ("text_encoder", "model.safetensors")):
        _save_fp16_variant(getattr(pipe, name), base / name, weights)
    step("fp16 variants saved")
    del pipe, unet, vae, text_encoder
    gc.collect()
    controlnet.save_pretrained(cn_dir, safe_serialization=False)
    step("controlnet saved (.bin)")
    _check_layout(base, cn_dir)
    return base, cn_dir


def _check_layout(base: Path, cn_dir: Path) -> None:
    """The files the hub repos have (the point of the exercise), and nothing that would hide a loading problem."""
    index = json.loads((base / "model_index.json").read_text(encoding="utf-8"))
    assert index["_class_name"] == "StableDiffusionPipeline" and "controlnet" not in index, index
    for sub, weights in (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"), ("text_encoder", "model")):
        for name in (f"{weights}.safetensors", f"{weights}.fp16.safetensors", "config.json"):
            assert (base / sub / name).is_file(), base / sub / name
    assert sorted(p.name for p in cn_dir.iterdir()) == ["config.json", "diffusion_pytorch_model.bin"], list(cn_dir.iterdir())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m seg2sat.realsize", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="folder to write base/ and controlnet/ into (about 9 GB)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    base, cn_dir = build_sd21_shaped(args.out, seed=args.seed)
    print(base)
    print(cn_dir)


if __name__ == "__main__":
    main()
