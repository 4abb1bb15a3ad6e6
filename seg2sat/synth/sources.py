"""Where the masks come from: a folder of mask files, a dataset written by ``seg2sat prepare``, any Hugging Face dataset.

A source is a list of items, each known by a stable ``id`` (the file's path in the folder,
the dataset's ``id`` column or row number) and a content ``key`` (a hash of the mask's
bytes and its caption): a resumed run finds what is done by both, so a mask overwritten
under the same name is made again. An item's mask is read only when it is made; one that
cannot be read raises :class:`Unreadable`, which the run counts and skips.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .. import masks

MASK_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".webp")
MASK_COLUMNS = ("mask", "conditioning_image", "label", "segmentation", "annotation")
"""Tried in order when ``--mask-column`` is not given (``conditioning_image`` is ``seg2sat prepare``'s)."""
CAPTION_COLUMNS = ("text", "caption", "prompt")
"""Used as the caption when present and ``--caption-column`` is not given."""
DATASET_MARKERS = ("dataset_dict.json", "state.json", "dataset_info.json")


class Unreadable(Exception):
    """This item's mask cannot be read: the run skips it and counts it."""


@dataclass
class Mask:
    """An item's mask, read: class ids 1..19, its grid when it came from a GeoTIFF, its caption if any."""

    ids: np.ndarray
    caption: str | None = None
    grid: Any = None
    """:class:`seg2sat.gis.raster.Grid` of a GeoTIFF mask (None otherwise)."""


def ids_from_image(image: Image.Image) -> np.ndarray:
    """Class ids of a mask image: a single band holding 0..19 is FLAIR codes, anything else colours (snapped)."""
    if image.mode in ("L", "I", "I;16", "I;16B", "I;16L"):
        values = np.asarray(image)
        if values.size and int(values.max()) <= 19:
            return masks.from_flair(values.astype(np.int64))
    if image.mode == "P" and "transparency" not in image.info:
        image = image.convert("RGB")
    return masks.load_mask(image).ids


def _ids_from_bytes(data: bytes, name: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return ids_from_image(image)
    except Image.UnidentifiedImageError:
        raise Unreadable(f"{name}: not an image file (PNG, JPEG, TIFF…) that can be read") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise Unreadable(f"{name}: not a readable mask image ({exc})") from None


def _key(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()[:20]


def _unprefixed(stem: str) -> str:
    return stem[4:] if stem.upper().startswith("MSK_") and len(stem) > 4 else stem


class FolderSource:
    """Mask files under a folder (recursively): colour PNGs, class-id PNGs, GeoTIFFs.

    In a FLAIR tree only the ``MSK_*`` files are masks; ``IMG_*`` files (aerial photographs) never are.
    """

    kind = "folder"

    def __init__(self, root: Path, exclude: Path | None = None):
        self.root = root
        skip = exclude.resolve() if exclude is not None else None  # an output folder inside the source
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in MASK_SUFFIXES and p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(root).parts)
                       and not (skip is not None and p.resolve().is_relative_to(skip)))
        files = [p for p in files if not p.name.upper().startswith("IMG_")]
        flair = [p for p in files if p.name.upper().startswith("MSK_")]
        self.files = flair or files
        if not self.files:
            raise ValueError(f"{root}: no mask files ({', '.join(MASK_SUFFIXES)}) in this folder")
        self.geotiff = all(p.suffix.lower() in (".tif", ".tiff") for p in self.files)
        stems = [_unprefixed(p.stem) for p in self.files]
        self.names = stems if len(set(stems)) == len(stems) else [  # FLAIR's numbers are unique: kept alone
            (p.relative_to(root).parent / _unprefixed(p.stem)).as_posix() for p in self.files]

    def name(self, i: int) -> str:
        """The pair's name in ``folder``/``geotiff`` outputs: the file's (``MSK_123.tif`` -> ``123``), or its path
        when two files share a name."""
        return self.names[i]

    def __len__(self) -> int:
        return len(self.files)

    def item_id(self, i: int) -> str:
        return self.files[i].relative_to(self.root).as_posix()

    def key(self, i: int) -> str:
        try:
            return _key(self.files[i].read_bytes())
        except OSError as exc:
            raise Unreadable(f"{self.item_id(i)}: {exc.strerror or exc}") from None

    def read(self, i: int) -> Mask:
        path = self.files[i]
        if path.suffix.lower() in (".tif", ".tiff"):
            from ..gis import raster

            try:
                ids, grid = raster.load_ids(path)
            except Exception as exc:  # rasterio's errors, a corrupt file: any of them is this item's, not the run's
                raise Unreadable(f"{self.item_id(i)}: not a readable GeoTIFF mask ({str(exc).splitlines()[0]})") from None
            return Mask(ids=ids, grid=grid)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise Unreadable(f"{self.item_id(i)}: {exc.strerror or exc}") from None
        return Mask(ids=_ids_from_bytes(data, self.item_id(i)))


class DatasetSource:
    """Rows of a Hugging Face dataset (``load_from_disk`` folder, local data files or a Hub id)."""

    kind = "dataset"
    geotiff = False

    def __init__(self, dataset, name: str, mask_column: str | None, caption_column: str | None):
        from datasets import Image as ImageFeature

        columns = list(dataset.column_names)
        if mask_column is None:
            mask_column = next((c for c in MASK_COLUMNS if c in columns), None)
            if mask_column is None:
                raise ValueError(f"{name}: no mask column ({', '.join(MASK_COLUMNS)}); name it with `mask_column`, "
                                 f"one of: {', '.join(columns)}")
        elif mask_column not in columns:
            raise ValueError(f"`mask_column`: {name} has no column {mask_column!r}; it has: {', '.join(columns)}")
        if caption_column is None:
            caption_column = next((c for c in CAPTION_COLUMNS if c in columns), None)
        elif caption_column not in columns:
            raise ValueError(f"`caption_column`: {name} has no column {caption_column!r}; it has: {', '.join(columns)}")
        if len(dataset) == 0:
            raise ValueError(f"{name}: the dataset has no rows")
        dataset = dataset.select_columns([c for c in (mask_column, caption_column, "id") if c in columns])
        if isinstance(dataset.features[mask_column], ImageFeature):
            dataset = dataset.cast_column(mask_column, ImageFeature(decode=False))  # bytes: hashed, then decoded
        self.dataset, self.label, self.mask_column, self.caption_column = dataset, name, mask_column, caption_column
        self.ids = [str(v) for v in dataset["id"]] if "id" in columns else None
        if self.ids is not None and len(set(self.ids)) != len(self.ids):
            self.ids = None  # not an identifier: rows are known by their number
        self._row: tuple[int, dict] | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def item_id(self, i: int) -> str:
        return self.ids[i] if self.ids is not None else f"row-{i:07d}"

    def name(self, i: int) -> str:
        return self.item_id(i)

    def _get(self, i: int) -> dict:
        if self._row is None or self._row[0] != i:
            self._row = (i, self.dataset[i])
        return self._row[1]

    def _mask_bytes(self, i: int) -> tuple[bytes, Any]:
        value = self._get(i)[self.mask_column]
        if isinstance(value, dict) and ("bytes" in value or "path" in value):
            data = value.get("bytes")
            if data is None and value.get("path"):
                try:
                    data = Path(value["path"]).read_bytes()
                except OSError as exc:
                    raise Unreadable(f"{self.item_id(i)}: {exc.strerror or exc}") from None
            if data is None:
                raise Unreadable(f"{self.item_id(i)}: the mask is empty")
            return data, None
        if value is None:
            raise Unreadable(f"{self.item_id(i)}: the mask is empty")
        array = np.asarray(value)
        if array.ndim != 2 or array.dtype.kind not in "iu":
            raise Unreadable(f"{self.item_id(i)}: the mask column holds neither images nor 2-D class ids")
        return array.tobytes() + json.dumps(array.shape).encode(), array

    def caption(self, i: int) -> str | None:
        if self.caption_column is None:
            return None
        text = self._get(i)[self.caption_column]
        return text.strip() if isinstance(text, str) and text.strip() else None

    def key(self, i: int) -> str:
        data, _ = self._mask_bytes(i)
        return _key(data, (self.caption(i) or "").encode("utf-8"))

    def read(self, i: int) -> Mask:
        data, array = self._mask_bytes(i)
        ids = masks.from_flair(array.astype(np.int64)) if array is not None else _ids_from_bytes(data, self.item_id(i))
        return Mask(ids=ids, caption=self.caption(i))


def open_source(source: str, mask_column: str | None = None, caption_column: str | None = None,
                split: str = "train", exclude: Path | None = None):
    """The source named on the command line; a one-line ValueError when it holds no masks.

    ``exclude``: a folder inside a mask folder that is not part of it (the output).
    """
    path = Path(source)
    if path.is_file():
        raise ValueError(f"{source}: SOURCE must be a folder of masks or a dataset, not a file")
    if path.is_dir():
        if any((path / m).exists() for m in DATASET_MARKERS):
            return DatasetSource(_from_disk(path, split), source, mask_column, caption_column)
        skip = exclude.resolve() if exclude is not None else None
        data_files = any(p.suffix in (".parquet", ".arrow") for p in path.rglob("*")
                         if not (skip is not None and p.resolve().is_relative_to(skip)))
        if mask_column or caption_column or data_files:
            return DatasetSource(_load(str(path), split), source, mask_column, caption_column)
        return FolderSource(path, exclude)
    if "/" in source and not source.startswith((".", "/")) and source.count("/") == 1:
        return DatasetSource(_load(source, split), source, mask_column, caption_column)
    raise ValueError(f"{source}: no such folder (or Hugging Face dataset id owner/name)")


def _from_disk(path: Path, split: str):
    from datasets import DatasetDict, load_from_disk

    loaded = load_from_disk(str(path))
    if isinstance(loaded, DatasetDict):
        if split not in loaded:
            raise ValueError(f"{path}: no split {split!r}; it has: {', '.join(loaded)}")
        return loaded[split]
    return loaded


def _load(name: str, split: str):
    from datasets import load_dataset

    try:
        return load_dataset(name, split=split)
    except (FileNotFoundError, ValueError) as exc:
        raise ValueError(f"{name}: cannot load it as a dataset ({str(exc).splitlines()[0]})") from None
    except Exception as exc:  # the Hub's errors (not found, gated, offline) are many classes
        raise ValueError(f"{name}: cannot load it as a dataset ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
