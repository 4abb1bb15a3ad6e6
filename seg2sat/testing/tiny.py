"""A complete, tiny, random-weights SD 2.1 + ControlNet pipeline built from configs.

Nothing here downloads anything: the tokenizer is a character-level CLIP BPE
tokenizer whose vocabulary is written on the spot. The result has the same
components, layout and code paths as the real model (UNet with linear-projection
attention like SD 2.1, ControlNet made from that UNet, an 8x VAE, a CLIP text
encoder, UniPC), only a few MB large, so tests and demos exercise the real
loading and generation code on any machine.
"""

from __future__ import annotations

from pathlib import Path

import torch

TEXT_DIM = 32


def byte_alphabet() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for raw bytes (as in GPT-2 and CLIP)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = (b for b in range(256) if b not in keep)
    mapping = {b: chr(b) for b in keep}
    mapping.update({b: chr(256 + n) for n, b in enumerate(extra)})
    return [mapping[b] for b in range(256)]


def build_tokenizer():
    """A character-level CLIP tokenizer: the real CLIP base alphabet, no merges.

    Any text (accents included) tokenises without an unknown token, one token per byte.
    """
    from transformers import CLIPTokenizer

    alphabet = byte_alphabet()
    tokens = ["<|startoftext|>", "<|endoftext|>", *alphabet, *(c + "</w>" for c in alphabet)]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=77)


def build_tiny_pipeline(seed: int = 0):
    """Return a ``StableDiffusionControlNetPipeline`` with tiny random weights."""
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        StableDiffusionControlNetPipeline,
        UNet2DConditionModel,
        UniPCMultistepScheduler,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    unet = UNet2DConditionModel(
        sample_size=64,  # latent size the model is made for: 64 x 8 = 512 px tiles, as SD 2.1 base (see tiling.py)
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        norm_num_groups=32,
    )
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 16, 32))
    vae = AutoencoderKL(
        block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=TEXT_DIM,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=TEXT_DIM,
            hidden_act="gelu",
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    scheduler = UniPCMultistepScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
    )
    return StableDiffusionControlNetPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        controlnet=controlnet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def make_tiny(directory: str | Path, seed: int = 0) -> Path:
    """Build the tiny pipeline and save it to ``directory`` (loadable like any saved pipeline)."""
    directory = Path(directory)
    pipe = build_tiny_pipeline(seed)
    pipe.save_pretrained(directory)
    write_slow_tokenizer_files(pipe.tokenizer, directory / "tokenizer")
    _prefix_text_encoder_keys(directory / "text_encoder" / "model.safetensors")
    return directory


def _prefix_text_encoder_keys(path: Path) -> None:
    """Store the CLIP text encoder under ``text_model.*`` keys, as SD 2.1's own checkpoint does.

    transformers 5 saves ``CLIPTextModel`` without that prefix and reads both layouts;
    transformers 4.x reads only the prefixed one (else it silently re-initialises the
    encoder at random, so a seed would give other images in another process).
    """
    from safetensors.torch import load_file, save_file

    if not path.is_file():
        return
    state = load_file(path)
    if state and not all(key.startswith("text_model.") for key in state):
        save_file({key if key.startswith("text_model.") else f"text_model.{key}": value.contiguous()
                   for key, value in state.items()}, path, metadata={"format": "pt"})


def write_slow_tokenizer_files(tokenizer, folder: str | Path) -> None:
    """Add ``vocab.json`` and ``merges.txt`` beside the saved ``tokenizer.json``.

    transformers 5 saves only ``tokenizer.json``; transformers 4.x's ``CLIPTokenizer``
    (the class diffusers picks from ``model_index.json``) needs these two files,
    as Hugging Face's Inference Endpoints toolkit ships transformers 4.51.
    Both files describe the same tokenizer (no merges), so either version tokenises alike.
    """
    import json

    folder = Path(folder)
    vocab = dict(sorted(tokenizer.get_vocab().items(), key=lambda item: item[1]))
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    if not (folder / "merges.txt").exists():
        (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
