"""Captions in the format the model was trained on, and style presets.

Training captions read ``Aerial view of <place>. <class>, <class>, ….`` with the
classes present in the mask, largest share first; classes covering less than
``MIN_SHARE`` of the mask are left out (a few stray pixels are not worth a word).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .classes import BY_ID
from .masks import class_shares

MIN_SHARE = 0.01

STYLES: dict[str, str] = {
    "photorealistic": "High resolution satellite image, 4K, ultra detailed",
    "lego": "Colorful lego bricks",
    "pencil": "Black and white paper pencil drawing",
    "oil": "Oil on canvas painting",
    "stained-glass": "Stained glass window",
}


def _names(shares: Mapping[int, float], min_share: float) -> list[str]:
    ranked = sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))
    return [BY_ID[i].name for i, share in ranked if share >= min_share]


def caption(place: str | None, ids: np.ndarray, min_share: float = MIN_SHARE) -> str:
    """The training caption for a mask; ``place`` is an address or OSM display name, or None."""
    return caption_from_shares(place, class_shares(ids), min_share)


def caption_from_shares(place: str | None, shares: Mapping[int, float], min_share: float = MIN_SHARE) -> str:
    """The caption from class shares ({class id: share}) already computed, e.g. in a worker process.

    Dataset preparation computes the shares where the mask is read and only learns the
    place later (geocoding runs in the main process); this avoids shipping the mask back.
    """
    head = f"Aerial view of {place.strip()}" if place and place.strip() else "Aerial view"
    names = _names(shares, min_share)
    return f"{head}. {', '.join(names)}." if names else f"{head}."


def style_text(style: str | None) -> str:
    """Resolve a preset name (or a preset's own text) to the text appended to the prompt."""
    if not style:
        return ""
    key = style.strip().lower()
    if key in STYLES:
        return STYLES[key]
    for text in STYLES.values():
        if key == text.lower():
            return text
    raise ValueError(f"unknown style {style!r}; choose one of: {', '.join(STYLES)}")


def build_prompt(prompt: str, style: str | None = None) -> str:
    """The user's prompt with the style preset appended, as the model sees it."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt must be a non-empty string, e.g. 'Aerial view of 31 Rue Molière, France'")
    extra = style_text(style)
    prompt = prompt.strip()
    if not extra:
        return prompt
    return f"{prompt.rstrip('.')}. {extra}"
