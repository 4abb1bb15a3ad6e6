"""Training data: opening the dataset, the paired image/mask transform, and a resumable sampler.

Two things the stock diffusers script gets wrong are fixed here:

* masks are resized nearest-neighbour only (a bilinear resize blends class colours into
  colours no class has), and an image and its mask always get the very same crop and flip;
* the data order is a pure function of ``(seed, epoch, position)``: every random choice of
  an example (crop, flip, empty prompt) is seeded by ``(seed, epoch, index)`` and every
  epoch's order by ``(seed, epoch)``. Resuming at step k therefore continues with exactly
  the batches a run that never stopped would have seen, without reading the skipped ones.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import masks


@dataclass
class TrainingData:
    dataset: datasets.Dataset  # noqa: F821
    """The training split, reduced to the image, mask and caption columns."""
    root: str | None = None
    """The folder that relative file names in the data (imagefolder metadata) are relative to."""


def open_dataset(args) -> TrainingData:
    """The training split, with only the three columns training reads; clear errors for bad paths or columns.

    Cheap: a ``save_to_disk`` folder is memory-mapped, nothing is decoded, so a wrong path or
    column name is reported before any model is loaded.
    """
    import datasets

    source = args.train_data_dir or args.dataset_name
    local = bool(args.train_data_dir) or os.path.isdir(source)
    try:
        if local:
            dataset = _open_folder(Path(source), args.cache_dir)
        else:
            dataset = datasets.load_dataset(source, args.dataset_config_name, split="train", cache_dir=args.cache_dir)
    except (FileNotFoundError, OSError, datasets.exceptions.DatasetNotFoundError) as exc:
        raise ValueError(f"cannot open the training data {source!r}: {exc}") from exc
    columns = [args.image_column, args.conditioning_image_column, args.caption_column]
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise ValueError(f"the training data {source!r} has no column {', '.join(map(repr, missing))}; its columns are "
                         f"{', '.join(dataset.column_names)} (choose with `image_column`, `conditioning_image_column`, "
                         "`caption_column`)")
    if len(dataset) == 0:
        raise ValueError(f"the training data {source!r} holds no examples")
    dataset = dataset.select_columns(columns)
    if args.max_train_samples:
        dataset = dataset.select(range(min(args.max_train_samples, len(dataset))))
    return TrainingData(dataset, str(source) if local else None)


def _open_folder(folder: Path, cache_dir: str | None = None):
    """A ``save_to_disk`` folder (dataset preparation's output) or an ``imagefolder`` folder."""
    import datasets

    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
        loaded = datasets.load_from_disk(str(folder))
        if isinstance(loaded, datasets.DatasetDict):
            if "train" not in loaded and len(loaded) != 1:
                raise FileNotFoundError(f"{folder} has splits {', '.join(loaded)} but no 'train' split")
            loaded = loaded["train"] if "train" in loaded else next(iter(loaded.values()))
        return loaded
    return datasets.load_dataset("imagefolder", data_dir=str(folder), split="train", cache_dir=cache_dir)


def _as_image(value, root: str | None) -> Image.Image:
    """A decoded image, or a file name (imagefolder metadata) relative to the dataset folder."""
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict) and value.get("bytes") is None and value.get("path"):
        value = value["path"]
    if isinstance(value, str):
        path = Path(value) if os.path.isabs(value) or not root else Path(root) / value
        with Image.open(path) as im:
            im.load()
            return im
    raise ValueError(f"cannot read an image from a value of type {type(value).__name__}")


def prepare_pair(
    image: Image.Image,
    mask: Image.Image,
    resolution: int,
    rng: np.random.Generator,
    center_crop: bool = False,
    random_flip: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """An aerial image and its colour mask -> ``(image, mask colours)``, both uint8 (3, R, R).

    Bytes, not floats: a quarter of the memory between data workers and the training process
    and on the way to the GPU; :func:`model_inputs` scales them there. The mask is snapped to
    clean class ids, resized nearest-neighbour only, and gets the image's exact crop and flip,
    so every conditioning pixel is a real class colour that lies over the image pixel it describes.
    """
    image = image.convert("RGB")
    ids = masks.snap(mask).ids
    if ids.shape != (image.height, image.width):
        ids = masks.resize_ids(ids, image.size)
    scale = resolution / min(image.size)
    size = (max(resolution, round(image.width * scale)), max(resolution, round(image.height * scale)))
    if size != image.size:
        image = image.resize(size, Image.BICUBIC)
        ids = masks.resize_ids(ids, size)
    top, left = _crop_origin(size, resolution, rng, center_crop)
    pixels = np.asarray(image)[top : top + resolution, left : left + resolution]
    ids = ids[top : top + resolution, left : left + resolution]
    if random_flip and rng.random() < 0.5:
        pixels, ids = pixels[:, ::-1], ids[:, ::-1]
    image_t = torch.from_numpy(np.array(pixels)).permute(2, 0, 1).contiguous()
    mask_t = torch.from_numpy(masks.to_rgb(np.ascontiguousarray(ids))).permute(2, 0, 1).contiguous()
    return image_t, mask_t


def model_inputs(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """A collated batch on ``device``, scaled as the models expect: image in [-1, 1], mask colours in [0, 1]."""
    moved = {key: t.to(device, non_blocking=True) for key, t in batch.items()}
    moved["pixel_values"] = moved["pixel_values"].float().div_(127.5).sub_(1.0)
    moved["conditioning_pixel_values"] = moved["conditioning_pixel_values"].float().div_(255.0)
    return moved


def _crop_origin(size: tuple[int, int], resolution: int, rng: np.random.Generator, center: bool) -> tuple[int, int]:
    width, height = size
    if center:
        return (height - resolution) // 2, (width - resolution) // 2
    return int(rng.integers(0, height - resolution + 1)), int(rng.integers(0, width - resolution + 1))


def example_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random source of one example in one epoch: independent of workers, order and resumes."""
    return np.random.default_rng([seed, epoch, index])


class PairDataset(torch.utils.data.Dataset):
    """Items are ``(index, epoch)`` pairs from :class:`ResumableSampler`; returns model-ready tensors."""

    def __init__(self, data: TrainingData, tokenizer, args) -> None:
        self.dataset = data.dataset
        self.root = data.root
        self.tokenizer = tokenizer
        self.columns = (args.image_column, args.conditioning_image_column, args.caption_column)
        self.resolution = args.resolution
        self.center_crop = args.center_crop
        self.random_flip = args.random_flip
        self.empty_share = args.proportion_empty_prompts
        self.seed = args.seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, epoch = item
        row = self.dataset[index]
        rng = example_rng(self.seed, epoch, index)
        image = _as_image(row[self.columns[0]], self.root)
        mask = _as_image(row[self.columns[1]], self.root)
        pixels, control = prepare_pair(image, mask, self.resolution, rng, self.center_crop, self.random_flip)
        text = self._caption(row[self.columns[2]], rng)
        ids = self.tokenizer(text, max_length=self.tokenizer.model_max_length, padding="max_length",
                             truncation=True, return_tensors="pt").input_ids[0]
        return {"pixel_values": pixels, "conditioning_pixel_values": control, "input_ids": ids}

    def _caption(self, value, rng: np.random.Generator) -> str:
        """One caption (a random one of a list); an empty one for ``proportion_empty_prompts`` of the examples."""
        if rng.random() < self.empty_share:
            return ""
        if isinstance(value, (list, tuple)):
            return str(value[int(rng.integers(len(value)))]) if value else ""
        return "" if value is None else str(value)


def collate(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([e[key] for e in examples]) for key in examples[0]}


@dataclass(frozen=True)
class DataPlan:
    """How the examples are dealt out: each micro-batch takes ``batch_size`` examples on every process."""

    num_examples: int
    batch_size: int
    num_processes: int = 1

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.num_processes

    @property
    def batches_per_epoch(self) -> int:
        """Micro-batches per process and epoch; the last one is completed with the epoch's first examples."""
        return math.ceil(self.num_examples / self.global_batch)

    def position(self, micro_batches: int) -> tuple[int, int]:
        """``(epoch, batch within the epoch)`` after ``micro_batches`` micro-batches."""
        return divmod(micro_batches, self.batches_per_epoch)


class ResumableSampler(torch.utils.data.Sampler):
    """An endless stream of ``(index, epoch)`` that starts at any micro-batch without reading the ones before.

    Epoch ``e`` is a permutation seeded by ``(seed, e)``, padded to whole global batches by
    wrapping around; process ``rank`` takes its slice of each global batch. The stream never
    ends: the training loop stops it by step count, and one DataLoader iterator (and its
    workers) lives for the whole run instead of being rebuilt every epoch.
    """

    def __init__(self, plan: DataPlan, rank: int = 0, seed: int = 0, start: int = 0) -> None:
        self.plan, self.rank, self.seed, self.start = plan, rank, seed, start

    def epoch_order(self, epoch: int) -> np.ndarray:
        order = np.random.default_rng([self.seed, epoch]).permutation(self.plan.num_examples)
        return np.resize(order, self.plan.batches_per_epoch * self.plan.global_batch)

    def batch(self, micro_batch: int) -> list[tuple[int, int]]:
        """This process's examples in micro-batch number ``micro_batch`` of the run."""
        epoch, b = self.plan.position(micro_batch)
        first = b * self.plan.global_batch + self.rank * self.plan.batch_size
        return [(int(i), epoch) for i in self.epoch_order(epoch)[first : first + self.plan.batch_size]]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        micro, cached = self.start, (-1, None)
        while True:
            epoch, b = self.plan.position(micro)
            if cached[0] != epoch:
                cached = (epoch, self.epoch_order(epoch))
            first = b * self.plan.global_batch + self.rank * self.plan.batch_size
            for i in cached[1][first : first + self.plan.batch_size]:
                yield int(i), epoch
            micro += 1


def seed_worker(worker_id: int) -> None:
    """Workers draw nothing random themselves, but libraries they call might: seed them predictably."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
