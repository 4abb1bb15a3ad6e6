"""Does synthetic data help a segmentation model? Train SegFormer on real pairs, then on real + synthetic pairs, compare.

Run A trains on the real pairs alone, run B on the same real pairs mixed with ``seg2sat synthesize`` output:
each training image is synthetic with probability ``--synthetic-share`` (0.5: sampled 1:1 whatever the two sizes),
so both runs see the same number of images per step. Both start from the same weights, with the same seed,
steps and learning-rate schedule, and are scored on the same held-out real pairs (a seeded split of ``--real``, or
``--eval``). Synthetic rows made from a held-out mask are dropped: they would show run B the answers.

    seg2sat synthesize flair_labels_train --out flair-synth -n 1
    python examples/synthetic_segmentation.py --real flair_aerial_train flair_labels_train --synthetic flair-synth \\
        --eval flair_aerial_test flair_labels_test --model nvidia/mit-b0 --steps 20000 --batch-size 16
    python examples/synthetic_segmentation.py --real pairs --synthetic synth --model tiny-segformer --steps 4 --size 64
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import ConcatDataset, DataLoader, Dataset, WeightedRandomSampler
from tqdm import tqdm
from transformers import SegformerForSemanticSegmentation
from transformers.utils import logging as transformers_logging

from seg2sat.classes import CLASSES
from seg2sat.masks import load_mask
from seg2sat.synth.sources import ids_from_image

IGNORE = 255  # label of pixels no loss or score counts (the synthetic `ignore` column marks them so)
NUM = len(CLASSES)  # FLAIR class id k is label k - 1
SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
MEAN, STD = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])  # ImageNet's, as SegFormer's


def _key(name: str) -> str:
    """``D004/Z1/msk/MSK_123.tif`` -> ``123``: how a pair, and a synthetic row's ``source``, name the mask."""
    stem = Path(str(name)).stem
    return stem[4:] if stem[:4].upper() in ("IMG_", "MSK_", "IGN_") else stem


def _read_image(path: Path) -> Image.Image:
    if path.suffix.lower() in (".tif", ".tiff"):
        import rasterio

        with rasterio.open(path) as src:  # FLAIR: R, G, B, NIR, elevation; the model sees RGB
            return Image.fromarray(np.moveaxis(src.read([1, 2, 3]), 0, -1))
    with Image.open(path) as image:
        return image.convert("RGB")


def _read_band(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        import rasterio

        with rasterio.open(path) as src:
            return src.read(1)
    with Image.open(path) as image:
        return np.asarray(image)


def _read_ids(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        return load_mask(path).ids  # one band of FLAIR codes
    with Image.open(path) as image:
        return ids_from_image(image)  # class-id PNG or colour mask


class FolderPairs:
    """``IMG_<n>`` images and ``MSK_<n>`` masks (PNG, or FLAIR's GeoTIFFs) anywhere under the folders, matched by n."""

    def __init__(self, roots: list[Path]):
        found: dict[str, dict[str, Path]] = {"IMG_": {}, "MSK_": {}, "IGN_": {}}  # IGN_: --filter-with's ignore masks
        for root in roots:
            for path in sorted(root.rglob("*")):
                if path.name[:4].upper() in found and path.suffix.lower() in SUFFIXES:
                    found[path.name[:4].upper()].setdefault(_key(path.name), path)
        self.keys = sorted(found["IMG_"].keys() & found["MSK_"].keys())
        self.files = [(found["IMG_"][k], found["MSK_"][k], found["IGN_"].get(k)) for k in self.keys]
        self.ignore = any(f[2] for f in self.files)
        meta = [root / "img" / "metadata.jsonl" for root in roots if (root / "img" / "metadata.jsonl").is_file()]
        rows = [json.loads(line) for m in meta for line in m.read_text().splitlines()]
        made_from = {_key(r["file_name"]): _key(r["source"]) for r in rows}
        self.origins = [made_from.get(k) for k in self.keys] if made_from else None  # synthesize --format folder

    def __len__(self) -> int:
        return len(self.files)

    def load(self, i: int) -> tuple[Image.Image, np.ndarray, np.ndarray | None]:
        image, mask, ignore = self.files[i]
        return _read_image(image), _read_ids(mask), _read_band(ignore) == IGNORE if ignore else None


class DatasetPairs:
    """A Hugging Face dataset: ``seg2sat synthesize`` Parquet (image, mask, source, ignore) or ``seg2sat prepare``."""

    def __init__(self, dataset, name: str):
        columns = dataset.column_names
        self.mask = next((c for c in ("mask", "conditioning_image", "label") if c in columns), None)
        if "image" not in columns or self.mask is None:
            raise ValueError(f"{name}: needs an image column and a mask column (mask or conditioning_image); "
                             f"it has: {', '.join(columns)}")
        self.ignore = "ignore" in columns  # seg2sat synthesize --filter-with: 255 where the image disagrees
        self.dataset = dataset.select_columns(["image", self.mask] + ["ignore"] * self.ignore)
        self.keys = [_key(v) for v in dataset["id"]] if "id" in columns else [f"row-{i:07d}" for i in range(len(dataset))]
        self.origins = [_key(v) for v in dataset["source"]] if "source" in columns else None

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, i: int) -> tuple[Image.Image, np.ndarray, np.ndarray | None]:
        row = self.dataset[i]
        ignore = np.asarray(row["ignore"]) == IGNORE if self.ignore and row["ignore"] is not None else None
        return row["image"].convert("RGB"), ids_from_image(row[self.mask]), ignore


def open_pairs(paths: list[Path], option: str) -> FolderPairs | DatasetPairs:
    """``--real`` / ``--synthetic`` / ``--eval``: folders of pairs, or one dataset folder (saved or Parquet)."""
    for path in paths:
        if not path.is_dir():
            raise ValueError(f"{option} {path}: no such folder")
    if len(paths) == 1 and any((paths[0] / m).is_file() for m in ("dataset_dict.json", "state.json")):
        from datasets import DatasetDict, load_from_disk

        loaded = load_from_disk(str(paths[0]))
        pairs = DatasetPairs(loaded["train"] if isinstance(loaded, DatasetDict) else loaded, str(paths[0]))
    elif len(paths) == 1 and next(paths[0].rglob("*.parquet"), None):
        from datasets import load_dataset

        pairs = DatasetPairs(load_dataset(str(paths[0]), split="train"), str(paths[0]))
    else:
        pairs = FolderPairs(paths)
    if not len(pairs):
        raise ValueError(f"{option} {' '.join(map(str, paths))}: no image/mask pairs (IMG_<n> and MSK_<n> files, "
                         "PNG or GeoTIFF, or a dataset with image and mask columns)")
    return pairs


class Samples(Dataset):
    """Some pairs as SegFormer inputs: normalised SIZE x SIZE images and labels (class id - 1, 255 ignored)."""

    def __init__(self, pairs: FolderPairs | DatasetPairs, indices: list[int], size: int):
        self.pairs, self.indices, self.size = pairs, list(indices), size

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, ids, ignore = self.pairs.load(self.indices[j])
        labels = ids.astype(np.uint8) - 1
        if ignore is not None:
            labels[ignore] = IGNORE
        side = (self.size, self.size)
        pixels = torch.from_numpy(np.asarray(image.resize(side, Image.BILINEAR), np.float32) / 255)
        labels = np.asarray(Image.fromarray(labels).resize(side, Image.NEAREST), np.int64)
        return ((pixels - MEAN) / STD).permute(2, 0, 1), torch.from_numpy(labels)


def load_model(model: str) -> SegformerForSemanticSegmentation:
    """The SegFormer with a 19-class head (a new one for a backbone such as nvidia/mit-b0)."""
    transformers_logging.set_verbosity_error()  # "newly initialized head" is expected for a backbone
    if model.startswith((".", "/", "~")) and not Path(model).expanduser().is_dir():
        raise ValueError(f"--model {model}: no such folder")
    try:
        return SegformerForSemanticSegmentation.from_pretrained(
            model, num_labels=NUM, id2label={c.id - 1: c.name for c in CLASSES},
            label2id={c.name: c.id - 1 for c in CLASSES}, ignore_mismatched_sizes=True)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--model {model}: cannot load it as a SegFormer ({str(exc).strip().splitlines()[0]})") from None


def train(init, data: Dataset, weights: list[float], name: str, args) -> SegformerForSemanticSegmentation:
    """``args.steps`` AdamW steps of ``args.batch_size`` images drawn (with replacement) by ``weights``."""
    model = copy.deepcopy(init).to(args.device).train()
    sampler = WeightedRandomSampler(weights, args.steps * args.batch_size,
                                    generator=torch.Generator().manual_seed(args.seed))
    loader = DataLoader(data, args.batch_size, sampler=sampler, num_workers=args.workers, drop_last=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=args.steps, power=1.0)
    torch.manual_seed(args.seed)  # dropout draws the same in both runs
    for pixels, labels in tqdm(loader, desc=name, total=args.steps):
        with torch.autocast(args.device.type, torch.bfloat16, enabled=args.device.type == "cuda"):
            loss = model(pixel_values=pixels.to(args.device), labels=labels.to(args.device)).loss
        loss.backward()
        optimizer.step(), schedule.step(), optimizer.zero_grad()
    return model


@torch.no_grad()
def evaluate(model, data: Dataset, args) -> dict:
    """Confusion matrix over the held-out pixels -> per-class IoU, mIoU (classes in the masks or the predictions), accuracy."""
    model.eval()
    confusion = np.zeros((NUM, NUM), np.int64)
    for pixels, labels in tqdm(DataLoader(data, args.batch_size, num_workers=args.workers), desc="evaluating", leave=False):
        logits = model(pixel_values=pixels.to(args.device)).logits.float()
        predicted = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear").argmax(1).cpu().numpy()
        truth = labels.numpy()
        kept = truth != IGNORE
        confusion += np.bincount(NUM * truth[kept] + predicted[kept], minlength=NUM * NUM).reshape(NUM, NUM)
    hits = np.diag(confusion)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = hits / (confusion.sum(0) + confusion.sum(1) - hits)  # NaN: class neither in the masks nor predicted
    return {"miou": float(np.nanmean(iou)), "accuracy": float(hits.sum() / max(confusion.sum(), 1)),
            "iou": {c.name: float(iou[c.id - 1]) for c in CLASSES if not np.isnan(iou[c.id - 1])}}


def split(n: int, held_out: float, seed: int) -> tuple[list[int], list[int]]:
    """Real pair indices -> (train, held out): a fraction (< 1) or a count, drawn by ``seed``."""
    count = max(1, round(n * held_out)) if held_out < 1 else int(held_out)
    if held_out <= 0 or (held_out >= 1 and held_out != count) or count >= n:
        raise ValueError(f"--held-out {held_out:g} of {n} real pairs: give a fraction in (0, 1) or a whole count "
                         "that leaves at least one pair to train on")
    order = np.random.default_rng(seed).permutation(n)
    return sorted(order[count:].tolist()), sorted(order[:count].tolist())


def compare(args) -> dict:
    """Train A (real) and B (real + synthetic) and score both on the held-out real pairs."""
    real, synthetic = open_pairs(args.real, "--real"), open_pairs(args.synthetic, "--synthetic")
    if args.eval:
        train_idx, held = list(range(len(real))), open_pairs(args.eval, "--eval")
        held_idx = list(range(len(held)))
    else:
        (train_idx, held_idx), held = split(len(real), args.held_out, args.seed), real
    held_keys = {held.keys[i] for i in held_idx}
    synth_idx = [i for i in range(len(synthetic)) if not synthetic.origins or synthetic.origins[i] not in held_keys]
    if not synth_idx:
        raise ValueError(f"--synthetic: all {len(synthetic)} rows were made from held-out masks")
    init = load_model(args.model)
    print(f"real: {len(train_idx)} pairs to train on, {len(held_idx)} held out; synthetic: {len(synth_idx)} rows "
          f"({len(synthetic) - len(synth_idx)} made from held-out masks dropped"
          f"{'' if synthetic.origins else '; no source column, none could be checked'})"
          f"{'; pixels its ignore masks mark are left out of the loss' if synthetic.ignore else ''}")
    real_train, synth_train = Samples(real, train_idx, args.size), Samples(synthetic, synth_idx, args.size)
    share = args.synthetic_share
    mixed_weights = [(1 - share) / len(real_train)] * len(real_train) + [share / len(synth_train)] * len(synth_train)
    held_out = Samples(held, held_idx, args.size)
    a = train(init, real_train, [1.0] * len(real_train), "A real", args)
    results = {"A": evaluate(a, held_out, args)}
    del a
    b = train(init, ConcatDataset([real_train, synth_train]), mixed_weights, "B real + synthetic", args)
    results["B"] = evaluate(b, held_out, args)
    return results


def report(results: dict) -> str:
    """The table: mIoU and pixel accuracy of A, B and B - A, then IoU per class."""
    a, b = results["A"], results["B"]
    lines = [f"{'run':<25}{'mIoU':>8}{'pixel acc':>11}",
             f"{'A real':<25}{a['miou']:>8.4f}{a['accuracy']:>11.4f}",
             f"{'B real + synthetic':<25}{b['miou']:>8.4f}{b['accuracy']:>11.4f}",
             f"{'B - A':<25}{b['miou'] - a['miou']:>+8.4f}{b['accuracy'] - a['accuracy']:>+11.4f}", "",
             f"{'IoU per class':<25}{'A':>8}{'B':>11}"]
    for c in CLASSES:
        if c.name in a["iou"] or c.name in b["iou"]:
            a_iou, b_iou = (f"{r['iou'][c.name]:.4f}" if c.name in r["iou"] else "-" for r in (a, b))
            lines.append(f"{c.id:>2} {c.name:<22}{a_iou:>8}{b_iou:>11}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", type=Path, nargs="+", required=True,
                        help="real pairs: folders of IMG_<n>/MSK_<n> files (FLAIR's image and label trees, PNG pairs) "
                             "or a `seg2sat prepare` dataset")
    parser.add_argument("--synthetic", type=Path, nargs="+", required=True, help="`seg2sat synthesize` output")
    parser.add_argument("--eval", type=Path, nargs="+", help="held-out real pairs (e.g. FLAIR's test set) instead of a split")
    parser.add_argument("--held-out", type=float, default=0.2, help="fraction (< 1) or count of --real kept to score on")
    parser.add_argument("--synthetic-share", type=float, default=0.5, help="chance a training image of B is synthetic")
    parser.add_argument("--model", default="nvidia/mit-b0", help="SegFormer hub id or folder (default nvidia/mit-b0)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=6e-5)
    parser.add_argument("--size", type=int, default=512, help="images and masks are resized to SIZE x SIZE")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", help="cuda, mps or cpu (default: cuda when there is one)")
    parser.add_argument("--workers", type=int, default=4, help="data-loading processes")
    parser.add_argument("--json", type=Path, help="also write the scores to this file")
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "size"):
        if getattr(args, name) < 1:
            parser.exit(2, f"error: --{name.replace('_', '-')} must be at least 1\n")
    if not 0 < args.synthetic_share < 1:
        parser.exit(2, "error: --synthetic-share must be between 0 and 1\n")
    try:
        args.device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError:
        parser.exit(2, f"error: --device {args.device}: not a device torch knows (cuda, cuda:1, mps, cpu)\n")
    try:
        results = compare(args)
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
