"""A tiny random-weights SegFormer for the 19 FLAIR classes, saved like a Hub model folder.

``seg2sat synthesize --filter-with DIR`` and ``examples/synthetic_segmentation.py`` load any
``transformers`` semantic-segmentation model; tests and CI cannot download one, so this builds
one from a config (a few hundred kB) that loads through the same ``from_pretrained`` calls.
Label ``k`` is FLAIR class ``k + 1`` (``id2label`` names them), as a model trained on FLAIR has.
"""

from __future__ import annotations

from pathlib import Path

from ..classes import CLASSES


def build_tiny_segformer(out: str | Path, *, seed: int = 0, image_size: int = 64) -> Path:
    """Write a tiny SegFormer (model + image processor) for the FLAIR classes into ``out``."""
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    torch.manual_seed(seed)
    config = SegformerConfig(
        num_channels=3, num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
        patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[2, 2],
        decoder_hidden_size=16, num_labels=len(CLASSES),
        id2label={c.id - 1: c.name for c in CLASSES}, label2id={c.name: c.id - 1 for c in CLASSES},
    )
    out = Path(out)
    SegformerForSemanticSegmentation(config).save_pretrained(out)
    SegformerImageProcessor(size={"height": image_size, "width": image_size}, do_reduce_labels=False).save_pretrained(out)
    return out
