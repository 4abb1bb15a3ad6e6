"""The output formats: Parquet shards with a dataset card, FLAIR-named PNG pairs, GeoTIFF pairs on the source grid.

Every process writes its own files and never touches another's; a file is complete or
absent (written under a temporary name, then renamed). What is done is read back from
the output itself: an item is done when its rows are in a shard (``parquet``) or in a
process's journal after its files (``folder``, ``geotiff``), under its id and content key.
The main process, at the end, drops rows of items that are gone or changed, and writes
the index and the dataset card.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..gis.files import atomic_path, write_text

FORMATS = ("parquet", "folder", "geotiff")
DATA = "data"
STATE = ".synth"
"""Hidden: the journals and per-process reports (``datasets`` ignores hidden folders)."""
TEXT_COLUMNS = ("prompt", "negative_prompt", "style", "source", "source_key", "layout", "backend", "model",
                "controlnet", "revision", "weights_sha256", "sampler", "speed", "seg2sat_version")
COLUMNS = ("image", "mask", *TEXT_COLUMNS[:3], "seed", *TEXT_COLUMNS[3:], "index", "steps", "guidance_scale",
           "controlnet_scale")


def features():
    """The dataset's columns: ``image`` and ``mask`` (single band, FLAIR class ids) as images, the rest plain."""
    from datasets import Features, Value
    from datasets import Image as ImageFeature

    kinds = {"seed": "int64", "index": "int32", "steps": "int32", "guidance_scale": "float32",
             "controlnet_scale": "float32"}
    return Features({name: ImageFeature() if name in ("image", "mask") else Value(kinds.get(name, "string"))
                     for name in COLUMNS})


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def mask_image(ids: np.ndarray) -> Image.Image:
    """Class ids as a single-band 8-bit image (pixel value = FLAIR class id 1..19)."""
    return Image.fromarray(np.asarray(ids, dtype=np.uint8), mode="L")


def file_stem(row: dict) -> str:
    """``<the mask's name, made safe>_<layout>_<index>``: the name after ``IMG_`` / ``MSK_`` of a row's pair."""
    safe = "".join(c if c.isalnum() or c in "-." else "_" for c in row["name"]).strip("._") or "mask"
    return "_".join(filter(None, (safe, row["layout"], f"{row['index']:03d}")))


def _fields(row: dict) -> dict:
    return {k: v for k, v in row.items() if k in COLUMNS and k not in ("image", "mask")}


class ParquetWriter:
    """Rows buffered in memory (as PNG bytes) and written as one shard every ``shard_rows`` rows or
    ``shard_seconds`` seconds, always whole items: a shard holds all the rows of each item in it."""

    def __init__(self, out: Path, process_index: int, shard_rows: int = 500, shard_seconds: float = 300.0):
        self.out, self.process_index = out, process_index
        self.shard_rows, self.shard_seconds = shard_rows, shard_seconds
        self.rows: list[dict] = []
        self.started = time.monotonic()

    def done(self) -> set[tuple[str, str]]:
        import pyarrow.parquet as pq

        found = set()
        for path in sorted((self.out / DATA).glob("*.parquet")):
            table = pq.read_table(path, columns=["source", "source_key"])
            found.update(zip(table.column("source").to_pylist(), table.column("source_key").to_pylist()))
        return found

    def add(self, rows: list[dict]) -> None:
        for row in rows:
            self.rows.append({**_fields(row), "image": {"bytes": png_bytes(row["image"]), "path": None},
                              "mask": {"bytes": png_bytes(mask_image(row["mask"])), "path": None}})
        if len(self.rows) >= self.shard_rows or time.monotonic() - self.started >= self.shard_seconds:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.rows:
            return
        schema = features().arrow_schema
        table = pa.Table.from_pylist(self.rows, schema=schema)
        path = self.out / DATA / f"train-{self.process_index:03d}-{time.time_ns():x}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp, row_group_size=100)
        self.rows, self.started = [], time.monotonic()

    def close(self) -> None:
        self.flush()


class FilesWriter:
    """``img/IMG_<stem>.png`` + ``msk/MSK_<stem>.png`` (``folder``) or ``.tif`` on the source's grid (``geotiff``),
    then one journal line per row in ``.synth/rows-<process>.jsonl``."""

    def __init__(self, out: Path, process_index: int, geotiff: bool = False):
        self.out, self.geotiff = out, geotiff
        self.journal = out / STATE / f"rows-{process_index:03d}.jsonl"
        self.suffix = ".tif" if geotiff else ".png"

    def done(self) -> set[tuple[str, str]]:
        return {(r["source"], r["source_key"]) for r in read_journals(self.out)}

    def add(self, rows: list[dict]) -> None:
        lines = []
        for row in rows:
            stem = file_stem(row)
            image, mask = self.out / "img" / f"IMG_{stem}{self.suffix}", self.out / "msk" / f"MSK_{stem}{self.suffix}"
            image.parent.mkdir(parents=True, exist_ok=True)
            mask.parent.mkdir(parents=True, exist_ok=True)
            if self.geotiff:
                from ..gis import raster

                raster.write_rgb(image, np.asarray(row["image"].convert("RGB")), row["grid"])
                raster.write_classes(mask, row["mask"], row["grid"])
            else:
                with atomic_path(image) as tmp:
                    row["image"].save(tmp, format="PNG")
                with atomic_path(mask) as tmp:
                    mask_image(row["mask"]).save(tmp, format="PNG")
            lines.append(json.dumps({"file_name": image.name, "mask": f"../msk/{mask.name}", **_fields(row)},
                                    ensure_ascii=False))
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        with self.journal.open("ab") as f:  # after the files: a journalled row has its files
            f.write(("\n".join(lines) + "\n").encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())

    def close(self) -> None:
        pass


def read_journals(out: Path) -> list[dict]:
    """Every complete journal line of every process (a line torn by a kill is ignored)."""
    records = []
    for path in sorted((out / STATE).glob("rows-*.jsonl")):
        for line in path.read_bytes().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def writer_for(fmt: str, out: Path, process_index: int, shard_rows: int = 500):
    if fmt == "parquet":
        return ParquetWriter(out, process_index, shard_rows)
    return FilesWriter(out, process_index, geotiff=fmt == "geotiff")


def finish(fmt: str, out: Path, keep: set[tuple[str, str]]) -> dict[str, Any]:
    """Main process, after every process is done: drop rows of items not in ``keep`` (gone or changed), write
    the index (parquet: the shard list; folder/geotiff: ``img/metadata.jsonl``). Returns rows and files."""
    if fmt == "parquet":
        return _finish_parquet(out, keep)
    records = read_journals(out)
    kept = {(r["source"], r["source_key"], r["index"], r["layout"]): r for r in records
            if (r["source"], r["source_key"]) in keep}  # one row each, whatever the journals repeat
    names = {r["file_name"] for r in kept.values()}
    for r in records:
        if (r["source"], r["source_key"]) not in keep and r["file_name"] not in names:  # its files were not remade
            (out / "img" / r["file_name"]).unlink(missing_ok=True)
            for stale in (out / "msk").glob(Path(r["mask"]).name + "*"):  # and GDAL's .aux.xml beside it
                stale.unlink()
    rows = sorted(kept.values(), key=lambda r: (r["source"], r["layout"], r["index"]))
    (out / "img").mkdir(parents=True, exist_ok=True)
    write_text(out / "img" / "metadata.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    for path in (out / STATE).glob("rows-*.jsonl"):  # compacted: the kept rows only, in one journal
        path.unlink()
    write_text(out / STATE / "rows-000.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return {"rows": len(rows), "files": ["img/metadata.jsonl"]}


def _finish_parquet(out: Path, keep: set[tuple[str, str]]) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, files = 0, []
    for path in sorted((out / DATA).glob("*.parquet")):
        table = pq.read_table(path, columns=["source", "source_key"])
        pairs = list(zip(table.column("source").to_pylist(), table.column("source_key").to_pylist()))
        wanted = [pair in keep for pair in pairs]
        if not any(wanted):
            path.unlink()
            continue
        if not all(wanted):  # rewritten without the stale rows, under a new name (datasets' cache sees it)
            full = pq.read_table(path).filter(pa.array(wanted))
            fresh = path.with_name(f"{path.name.rsplit('-', 1)[0]}-{time.time_ns():x}.parquet")
            with atomic_path(fresh) as tmp:
                pq.write_table(full, tmp, row_group_size=100)
            path.unlink()
            path = fresh
        rows += sum(wanted)
        files.append(f"{DATA}/{path.name}")
    return {"rows": rows, "files": files}
