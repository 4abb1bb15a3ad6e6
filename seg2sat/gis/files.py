"""Files that are whole or absent, and inputs known by their content.

A run killed while GDAL copies a COG (or PIL writes a PNG) leaves a file that opens and
looks valid but is black or truncated. Every output is therefore written under a
temporary name beside its final one and renamed when complete (``os.replace`` is atomic
on one file system): the final name holds a complete file or nothing.

A resumed run must not mix two masks: the journal of finished windows is keyed on the
input's content, not its path. :func:`fingerprint` reads the size, the modification
time and a hash of the header and of samples spread over the file, so it costs a few
milliseconds even for a 10 GB raster and still sees a mask overwritten by another of
the same size.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HEAD_BYTES = 1 << 20
"""The header (GeoTIFF tags, tile offsets) is hashed whole."""
SAMPLE_BYTES = 1 << 16
SAMPLES = 32


def temporary_name(path: str | os.PathLike) -> Path:
    """A hidden name beside ``path`` with the same suffix (GDAL and PIL pick the format from it)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Write to the path yielded; it becomes ``path`` only if the block ends without an error."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        for side in tmp.parent.glob(tmp.name + ".*"):  # GDAL's .ovr.tmp and .aux.xml of the temporary
            side.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``Path.write_text``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def fingerprint(path: str | os.PathLike) -> dict:
    """Size, mtime and a hash of the header and of samples through the file: changes when the content does."""
    path = Path(path)
    stat = path.stat()
    digest = hashlib.sha256()
    with path.open("rb") as f:
        digest.update(f.read(HEAD_BYTES))
        if stat.st_size > HEAD_BYTES:
            step = max((stat.st_size - HEAD_BYTES) // SAMPLES, 1)
            for offset in range(HEAD_BYTES, stat.st_size, step):
                f.seek(offset)
                digest.update(f.read(SAMPLE_BYTES))
            f.seek(max(stat.st_size - SAMPLE_BYTES, 0))
            digest.update(f.read())
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.hexdigest()}
