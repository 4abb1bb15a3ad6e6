"""``--filter-with MODEL``: a segmentation model scores each synthetic image against its mask (FreeMask's lesson).

FreeMask (Yang et al., NeurIPS 2023) found that synthetic images help a segmentation
model only once their worst pixels are left out of the loss: a pixel is ignored when a
model's cross-entropy there is above its class's mean loss times a tolerance margin
(1.25 in their code). They took the class means from the model on *real* images; a
``synthesize`` run has none, so here the mean is the class's mean over the pixels of
that class in the *same image* — every row's ignore mask then depends on that row
alone, so a resumed run, or one shared out over eight processes, writes the same bytes
as one straight run. A relative rule alone would ignore the worst quarter of even a
perfect region, so a pixel is ignored only where the model also predicts another class.
A class region that is wrong as a whole is not caught by a relative rule; the image's
``score`` (mean IoU) catches it, and ``--min-score`` drops such images.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import weights
from ..classes import CLASSES

MARGIN = 1.25
"""FreeMask's tolerance margin: a pixel is ignored above this times its class's mean loss."""
IGNORE = 255
"""The ignore mask's value for a left-out pixel (0 = keep); training code sets ``ignore_index=255``."""
UNSCORED = -100


class FilterError(ValueError):
    """The model cannot be used as a filter; the message is one line for the user."""


@dataclass
class Scored:
    """One image's verdict: mean IoU of the model's prediction against the mask, and the ignore mask."""

    score: float
    ignore: np.ndarray  # uint8, the mask's shape: IGNORE where the pixel is left out, 0 elsewhere


def _name(text: str) -> str:
    return " ".join(str(text).lower().replace("_", " ").replace("-", " ").split())


def label_map(id2label: dict, num_labels: int) -> np.ndarray:
    """FLAIR id (0..19) -> the model's label index, UNSCORED where the model has no such class.

    By name when every label is a FLAIR class name (any order, any subset); otherwise a
    19-label model is read as FLAIR's order (label k = class k + 1, as FLAIR baselines
    number them). Anything else is refused: its classes cannot be matched to the masks.
    """
    flair = {_name(c.name): c.id for c in CLASSES}
    names = {int(k): _name(v) for k, v in (id2label or {}).items()}
    table = np.full(len(CLASSES) + 1, UNSCORED, np.int64)
    if names and len(names) == num_labels and all(n in flair for n in names.values()):
        for k, n in names.items():
            table[flair[n]] = k
        return table
    if num_labels == len(CLASSES):
        table[1:] = np.arange(len(CLASSES))
        return table
    strange = [n for n in names.values() if n not in flair][:3]
    raise FilterError(f"its {num_labels} labels are not the {len(CLASSES)} FLAIR classes (e.g. "
                      f"{', '.join(map(repr, strange)) or 'unnamed'}); use a model trained on FLAIR's classes, "
                      "whose id2label names them or which has 19 labels in FLAIR's order")


def ignore_rule(loss, target, predicted, margin: float = MARGIN):
    """The ignore mask (bool) of one image: loss above ``margin`` × its class's mean loss in this image, where
    the model predicts another class. ``loss``/``target``/``predicted``: (H, W) tensors, target in model labels
    (UNSCORED pixels are never ignored)."""
    import torch

    ignore = torch.zeros_like(target, dtype=torch.bool)
    for label in torch.unique(target).tolist():
        if label == UNSCORED:
            continue
        region = target == label
        mean = loss[region].mean()
        ignore |= region & (loss > margin * mean) & (predicted != label)
    return ignore


def mean_iou(target, predicted) -> float:
    """Mean IoU over the classes the mask holds (scored pixels only): 1.0 when the model agrees everywhere."""
    import torch

    scored = target != UNSCORED
    ious = []
    for label in torch.unique(target[scored]).tolist():
        want, got = (target == label) & scored, (predicted == label) & scored
        ious.append((want & got).sum().item() / max((want | got).sum().item(), 1))
    return float(np.mean(ious)) if ious else 1.0


class Filter:
    """A ``transformers`` semantic-segmentation model, loaded once per process, that scores batches of images."""

    def __init__(self, model: str, device: str = "cpu", margin: float = MARGIN):
        self.model_id, self.device, self.margin = model, device, margin
        self.model, self.processor = load(model)
        self.model.to(device).eval()
        config = self.model.config
        try:
            self.table = label_map(getattr(config, "id2label", None), int(config.num_labels))
        except FilterError as exc:
            raise FilterError(f"`filter_with`: {model}: {exc}") from None

    def score(self, images: list, masks: list[np.ndarray], batch: int = 8) -> list[Scored]:
        """Each image against its mask (FLAIR ids), ``batch`` images per forward pass (memory stays bounded
        whatever ``-n`` is)."""
        return [v for start in range(0, len(images), batch)
                for v in self._score(images[start : start + batch], masks[start : start + batch])]

    def _score(self, images: list, masks: list[np.ndarray]) -> list[Scored]:
        """The model's logits, upsampled (bilinear) to each mask's size, give the per-pixel cross-entropy."""
        import torch
        import torch.nn.functional as F

        inputs = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt")
        with torch.inference_mode():
            logits = self.model(pixel_values=inputs["pixel_values"].to(self.device)).logits.float()
        verdicts = []
        table = torch.from_numpy(self.table)
        for k, ids in enumerate(masks):
            target = table[torch.from_numpy(np.asarray(ids, np.int64).clip(0, len(CLASSES)))].to(logits.device)
            up = F.interpolate(logits[k : k + 1], size=target.shape, mode="bilinear", align_corners=False)
            loss = F.cross_entropy(up, target[None], ignore_index=UNSCORED, reduction="none")[0]
            predicted = up[0].argmax(0)
            ignore = ignore_rule(loss, target, predicted, self.margin)
            verdicts.append(Scored(mean_iou(target, predicted), (ignore.cpu().numpy() * IGNORE).astype(np.uint8)))
        return verdicts

    def describe(self) -> dict:
        """What the manifest and the card record about the filter."""
        return {"model": self.model_id, "margin": self.margin, "labels": int(self.model.config.num_labels)}


def load(model: str):
    """(model, image processor) from a hub id or folder, or a one-line :class:`FilterError` saying why not."""
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation
    from transformers.utils import logging as hf_logging

    folder = Path(model).expanduser()
    if folder.exists() and not (folder / "config.json").is_file():
        raise FilterError(f"`filter_with`: {model} is not a transformers model folder (no config.json); give a "
                          "semantic-segmentation model's folder or hub id, e.g. a SegFormer trained on FLAIR")
    quiet = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        net = AutoModelForSemanticSegmentation.from_pretrained(str(folder) if folder.exists() else model)
        processor = AutoImageProcessor.from_pretrained(str(folder) if folder.exists() else model)
    except ValueError as exc:
        if "Unrecognized" in str(exc) or "AutoModel" in str(exc):
            raise FilterError(f"`filter_with`: {model} is not a semantic-segmentation model ("
                              f"{_model_type(folder)}); give one such as a SegFormer trained on FLAIR") from None
        raise FilterError(f"`filter_with`: {model} cannot be loaded: {_first_line(exc)}") from None
    except OSError as exc:
        raise FilterError(f"`filter_with`: {_why(exc, model)}") from None
    finally:
        hf_logging.set_verbosity(quiet)
        hf_logging.enable_progress_bar()
    return net, processor


def _model_type(folder: Path) -> str:
    try:
        kind = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError):
        kind = None
    return f"its config is a {kind!r} model" if kind else "its config names no segmentation model"


def _why(exc: OSError, model: str) -> str:
    """A missing folder, or a hub model that cannot be had, in :func:`seg2sat.weights.cause`'s words where they
    fit (its offline advice names ``seg2sat download``, which fetches the generator's weights, not this model)."""
    if Path(model).exists():
        return f"{model} cannot be loaded: {_first_line(exc)}"
    if model.startswith(("/", ".", "~")) or model.count("/") > 1:
        return f"{model}: no such folder"
    try:
        said = weights.cause(exc, model, "`filter_with`")
    except Exception:  # its checks reach for the network: a plain sentence is enough
        said = ""
    if not said or "seg2sat download" in said:
        return (f"{model!r} is not on this machine and cannot be downloaded ({weights.no_network_reason()}); "
                f"run `hf download {model} --local-dir DIR` where there is network and pass DIR")
    return said


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
