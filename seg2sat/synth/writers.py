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

from ..gis import raster
from ..gis.files import atomic_path, write_text

FORMATS = ("parquet", "folder", "geotiff")
DATA = "data"
STATE = ".synth"
"""Hidden: the journals and per-process reports (``datasets`` ignores hidden folders)."""
TEXT_COLUMNS = ("prompt", "negative_prompt", "style", "source", "source_key", "layout", "backend", "model",
                "controlnet", "revision", "weights_sha256", "sampler", "speed", "seg2sat_version")
COLUMNS = ("image", "mask", *TEXT_COLUMNS[:3], "seed", *TEXT_COLUMNS[3:], "index", "steps", "guidance_scale",
           "controlnet_scale")
FILTER_COLUMNS = ("score", "ignore")
"""With ``--filter-with``: the image's score and its ignore mask (single band, 255 = leave the pixel out)."""
IMAGES = ("image", "mask", "ignore")
DROPPED = "dropped-{:03d}.jsonl"
DROPPED_GLOB = "dropped-*.jsonl"
"""Rows ``--min-score`` left out, one journal per process: a resumed run does not make them again."""


def columns(filtered: bool = False) -> tuple[str, ...]:
    return (*COLUMNS, *FILTER_COLUMNS) if filtered else COLUMNS


def features(filtered: bool = False):
    """The dataset's columns: ``image``, ``mask`` (single band, FLAIR class ids) and ``ignore`` as images, the
    rest plain."""
    from datasets import Features, Value
    from datasets import Image as ImageFeature

    kinds = {"seed": "int64", "index": "int32", "steps": "int32", "guidance_scale": "float32",
             "controlnet_scale": "float32", "score": "float32"}
    return Features({name: ImageFeature() if name in IMAGES else Value(kinds.get(name, "string"))
                     for name in columns(filtered)})


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
    return {k: v for k, v in row.items() if k in (*COLUMNS, "score") and k not in IMAGES}


def row_key(row: dict) -> tuple[str, str, str, int]:
    """What a row is known by when resuming: its mask (id and content key), layout and index."""
    return row["source"], row["source_key"], row["layout"], int(row["index"])


def write_dropped(out: Path, process_index: int, dropped: list[dict]) -> None:
    """Append ``dropped`` rows' keys and scores to this process's journal (after the rows made with them)."""
    if not dropped:
        return
    path = out / STATE / DROPPED.format(process_index)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as f:
        f.write("".join(json.dumps({**dict(zip(("source", "source_key", "layout", "index"), row_key(r))),
                                    "score": r["score"]}) + "\n" for r in dropped).encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def read_dropped(out: Path) -> list[dict]:
    """Every complete line of every process's ``--min-score`` journal."""
    return [r for path in sorted((out / STATE).glob(DROPPED_GLOB)) for r in _lines(path)]


class ParquetWriter:
    """Rows buffered in memory (as PNG bytes) and written as one shard every ``shard_rows`` rows or
    ``shard_seconds`` seconds, always whole items: a shard holds all the rows of each item in it."""

    def __init__(self, out: Path, process_index: int, shard_rows: int = 500, shard_seconds: float = 300.0,
                 filtered: bool = False):
        self.out, self.process_index, self.filtered = out, process_index, filtered
        self.shard_rows, self.shard_seconds = shard_rows, shard_seconds
        self.rows: list[dict] = []
        self.dropped: list[dict] = []
        self.started = time.monotonic()

    def done(self) -> set[tuple[str, str, str, int]]:
        """Every row in a shard or in a ``--min-score`` journal, by :func:`row_key`."""
        import pyarrow.parquet as pq

        found = {row_key(r) for r in read_dropped(self.out)}
        for path in sorted((self.out / DATA).glob("*.parquet")):
            table = pq.read_table(path, columns=["source", "source_key", "layout", "index"])
            found.update(row_key(r) for r in table.to_pylist())
        return found

    def add(self, rows: list[dict], dropped: list[dict] = ()) -> None:
        for row in rows:
            images = {"image": row["image"], "mask": mask_image(row["mask"])}
            if self.filtered:
                images["ignore"] = mask_image(row["ignore"])
            self.rows.append({**_fields(row), **{k: {"bytes": png_bytes(v), "path": None} for k, v in images.items()}})
        if rows:  # journalled with the shard that holds the item's kept rows: an item is done whole or not
            self.dropped.extend(dropped)
        else:  # nothing of the item waits in memory
            write_dropped(self.out, self.process_index, list(dropped))
        if len(self.rows) >= self.shard_rows or time.monotonic() - self.started >= self.shard_seconds:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.rows:
            table = pa.Table.from_pylist(self.rows, schema=features(self.filtered).arrow_schema)
            path = self.out / DATA / f"train-{self.process_index:03d}-{time.time_ns():x}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                pq.write_table(table, tmp, row_group_size=100)
        write_dropped(self.out, self.process_index, self.dropped)  # after the item's other rows are safe
        self.rows, self.dropped, self.started = [], [], time.monotonic()

    def close(self) -> None:
        self.flush()


class FilesWriter:
    """``img/IMG_<stem>.png`` + ``msk/MSK_<stem>.png`` (+ ``ign/IGN_<stem>.png`` with ``--filter-with``) for
    ``folder``, or ``.tif`` on the source's grid for ``geotiff``, then one journal line per row in
    ``.synth/rows-<process>.jsonl``."""

    def __init__(self, out: Path, process_index: int, geotiff: bool = False):
        self.out, self.geotiff, self.process_index = out, geotiff, process_index
        self.journal = out / STATE / f"rows-{process_index:03d}.jsonl"
        self.suffix = ".tif" if geotiff else ".png"

    def done(self) -> set[tuple[str, str, str, int]]:
        return {row_key(r) for r in [*read_journals(self.out), *read_dropped(self.out)]}

    def add(self, rows: list[dict], dropped: list[dict] = ()) -> None:
        lines = [json.dumps(self._write(row), ensure_ascii=False) for row in rows]
        if lines:
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            with self.journal.open("ab") as f:  # after the files: a journalled row has its files
                f.write(("\n".join(lines) + "\n").encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
        write_dropped(self.out, self.process_index, list(dropped))

    def _write(self, row: dict) -> dict:
        """The row's files; its journal record."""
        stem = file_stem(row)
        files = {"img": ("IMG", row["image"]), "msk": ("MSK", row["mask"])}
        if "ignore" in row:
            files["ign"] = ("IGN", row["ignore"])
        paths = {}
        for folder, (prefix, data) in files.items():
            path = paths[folder] = self.out / folder / f"{prefix}_{stem}{self.suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            if folder == "img" and self.geotiff:
                from ..gis import raster

                raster.write_rgb(path, np.asarray(data.convert("RGB")), row["grid"])
            elif self.geotiff:
                write_band(path, data, row["grid"], classes=folder == "msk")
            else:
                with atomic_path(path) as tmp:
                    (data if folder == "img" else mask_image(data)).save(tmp, format="PNG")
        record = {"file_name": paths["img"].name, "mask": f"../msk/{paths['msk'].name}", **_fields(row)}
        if "ign" in paths:
            record["ignore"] = f"../ign/{paths['ign'].name}"
        return record

    def close(self) -> None:
        pass


def write_band(path: Path, data: np.ndarray, grid, classes: bool) -> None:
    """A mask as a GeoTIFF on ``grid``: class ids with FLAIR's colour table, or a plain 0/255 ignore band."""

    if classes:
        raster.write_classes(path, data, grid)
        return
    import rasterio

    profile = {**raster.class_profile(grid), "nodata": None}
    with raster.env(), atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(np.asarray(data, dtype=np.uint8), 1)
        dst.set_band_description(1, "ignore: 255 = leave the pixel out of the loss")


def _lines(path: Path) -> list[dict]:
    records = []
    for line in path.read_bytes().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:  # a line torn by a kill
            continue
    return records


def read_journals(out: Path) -> list[dict]:
    """Every complete journal line of every process (a line torn by a kill is ignored)."""
    return [r for path in sorted((out / STATE).glob("rows-*.jsonl")) for r in _lines(path)]


def writer_for(fmt: str, out: Path, process_index: int, shard_rows: int = 500, filtered: bool = False):
    if fmt == "parquet":
        return ParquetWriter(out, process_index, shard_rows, filtered=filtered)
    return FilesWriter(out, process_index, geotiff=fmt == "geotiff")


def finish_dropped(out: Path, keep: set[tuple[str, str]]) -> int:
    """Main process, at the end: the ``--min-score`` journals without masks gone or changed, as one. Returns
    how many rows the dataset left out."""
    records = {row_key(r): r for r in read_dropped(out) if (r["source"], r["source_key"]) in keep}
    for path in (out / STATE).glob(DROPPED_GLOB):
        path.unlink()
    if records:
        write_text(out / STATE / DROPPED.format(0), "".join(json.dumps(r) + "\n" for r in records.values()))
    return len(records)


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
            if r.get("ignore"):
                (out / "ign" / Path(r["ignore"]).name).unlink(missing_ok=True)
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
