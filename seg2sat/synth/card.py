"""The dataset card (``README.md``) and the run's index: how the dataset was made, in words and in JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..classes import CLASSES
from ..gis.files import write_text

HEADER = """---
pretty_name: {name}
task_categories:
- image-segmentation
tags:
- synthetic
- aerial-imagery
- land-cover
- seg2sat
---
"""
LOADING = {
    "parquet": "```python\nfrom datasets import load_dataset\n\nds = load_dataset({out!r}, split=\"train\")\n"
               "ds[0][\"image\"], ds[0][\"mask\"]  # PIL images; the mask's pixel values are the class ids below\n```",
    "folder": "`img/IMG_<name>.png` (RGB) pairs with `msk/MSK_<name>.png` (single band, pixel value = class id), "
              "as FLAIR names them; `img/metadata.jsonl` holds one line per pair (prompt, seed, provenance), so "
              "`load_dataset(\"imagefolder\", data_dir=\"img\")` reads it too.",
    "geotiff": "`img/IMG_<name>.tif` (RGB, Cloud-Optimized GeoTIFF) pairs with `msk/MSK_<name>.tif` (single band, "
               "class ids, FLAIR colour table), each on its source mask's grid (CRS and transform), as FLAIR lays its "
               "patches out; `img/metadata.jsonl` holds one line per pair.",
}


def write_card(out: Path, manifest: dict[str, Any], index: dict[str, Any]) -> Path:
    """``OUT/README.md``: what the rows are, how to load them, every option and the weights that made them.

    The card names no ``configs``/``data_files``: ``datasets`` then finds ``data/train-*.parquet`` itself and
    keys its cache on those files, so a resumed run's new rows are seen (a config's pattern would key the
    cache on the pattern and the folder's name alone, and serve the rows of an older run).
    """
    fmt = manifest["format"]
    prov = manifest["provenance"]
    lines = [HEADER.format(name="Seg2Sat synthetic aerial images"),
             "# Synthetic aerial images with their land-cover masks", "",
             f"{index['rows']} aerial images made by [Seg2Sat](https://github.com/RubenGres/Seg2Sat) "
             f"`seg2sat synthesize` from the land-cover masks of `{manifest['source']}` "
             f"({index['items']} masks, {manifest['num_images']} image(s) per mask and layout). Each image follows "
             "its mask, so each pair is a labelled example for a segmentation model; the images are synthetic: "
             "check what they add on real held-out data before relying on them.", "",
             "## Loading", "", LOADING[fmt].format(out=str(out)), "",
             "## Columns", "",
             "| column | meaning |", "|---|---|",
             "| `image` | the synthetic aerial image (RGB) |",
             "| `mask` | its land-cover mask: one band, pixel value = FLAIR class id (table below) |",
             "| `prompt` | the text the model read (caption + style) |",
             "| `negative_prompt`, `style` | the negative prompt and the style preset (empty: none) |",
             "| `seed` | the image's seed, derived from (`source`, `layout`, `index`, run seed): "
             "`seg2sat generate` with it remakes the image |",
             "| `source`, `source_key` | the mask it was made from (path or row id) and a hash of that mask's content |",
             "| `layout`, `index` | the `augment` layout (empty: as it is) and the image's number for that mask |",
             *(QUALITY_COLUMNS if manifest.get("filter") else []),
             "| `backend`, `model`, `controlnet`, `revision`, `weights_sha256`, `sampler`, `steps`, "
             "`guidance_scale`, `controlnet_scale`, `speed`, `seg2sat_version` | provenance: what made the image |",
             "", "## Classes", "", "| id | class |", "|---|---|",
             *[f"| {c.id} | {c.name} |" for c in CLASSES], "",
             "## How it was made", "",
             f"- backend: {prov['backend']}" + (f" ({prov['model']} + ControlNet {prov['controlnet']})"
                                                 if prov["backend"] == "diffusion" else " (the offline renderer)"),
             f"- revision: {prov['revision'] or 'local files'}; ControlNet weights SHA-256: "
             f"{prov['weights_sha256'] or 'n/a'}",
             f"- sampler {prov['sampler'] or 'n/a'}, {manifest['steps']} steps, guidance {manifest['guidance_scale']}, "
             f"ControlNet scale {manifest['controlnet_scale']}, speed options {prov['speed'] or 'none'}",
             f"- styles: {_styles(manifest['styles'])}; layouts: "
             f"{', '.join(n or 'as is' for n in manifest['layouts'])}; run seed {manifest['seed']}",
             f"- seg2sat {prov['seg2sat_version']}; {index['processes']} process(es), "
             f"{index['images_per_s']:.3g} images/s in the last run", *_quality(manifest, index), "",
             "The full settings are in `synthesize.json`, the list of files and skipped masks in `index.json`.", ""]
    return write_text(out / "README.md", "\n".join(lines))


QUALITY_COLUMNS = [
    "| `score` | mean IoU, over the mask's classes, of the filter model's prediction on the image against the mask "
    "(1 = it agrees everywhere) |",
    "| `ignore` | one band: 255 where the filter found the image does not follow the mask, 0 elsewhere; train with "
    "`ignore_index=255` on those pixels |",
]


def _quality(manifest: dict[str, Any], index: dict[str, Any]) -> list[str]:
    """The filter's lines of "How it was made": the model, its rule and defaults, what was dropped."""
    quality = manifest.get("filter")
    if not quality:
        return ["- no quality filter (`filter_with`): every image is kept and scored by no model"]
    floor = quality["min_score"]
    return [f"- quality filter: `{quality['model']}` ({quality['labels']} labels), FreeMask's rule: a pixel is "
            f"ignored when its cross-entropy is above {quality['margin']:g} × its class's mean in that image and the "
            "model predicts another class there",
            f"- {index.get('dropped', 0)} image(s) left out for a score below {floor:g}" if floor is not None
            else "- no `min_score`: every scored image is kept",
            "- `hard_first`: image 0 of every mask first, the rest of the budget to the masks scoring lowest"
            if quality["hard_first"] else "- the same number of images for every mask (no `hard_first`)"]


def _styles(styles) -> str:
    return ", ".join(f"{name or 'none'} {share:.0%}" for name, share in styles)


def write_index(out: Path, index: dict[str, Any]) -> Path:
    return write_text(out / "index.json", json.dumps(index, indent=2, ensure_ascii=False) + "\n")
