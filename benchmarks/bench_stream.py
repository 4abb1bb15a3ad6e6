"""Streamed offline rendering of big GeoTIFF masks: speed and peak memory at several map sizes.

    python benchmarks/bench_stream.py [--sizes 8192 32768] [--work DIR]

For each size, a georeferenced mask GeoTIFF (EPSG:2154, 0.2 m) is written window by
window from the sample town mask, tiled with flips so that neighbouring tiles
differ, then the real command renders it in a child process:
``seg2sat generate MASK.tif --backend procedural --out DIR``. The child's peak
resident memory comes from the kernel (``wait4``), so it includes Python, torch's
import by the CLI, GDAL's cache and the output's overviews. Memory must not grow
with the map: < 1 GB at any size.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from seg2sat import masks

TOWN = Path(__file__).resolve().parents[1] / "examples" / "masks" / "town.png"


def write_mask(path: Path, size: int) -> None:
    """A size x size class GeoTIFF made of flipped copies of the town mask, written in strips."""
    town = masks.load_mask(TOWN).ids
    th, tw = town.shape
    variants = [town, town[::-1], town[:, ::-1], town[::-1, ::-1]]
    profile = dict(driver="GTiff", width=size, height=size, count=1, dtype="uint8", crs="EPSG:2154",
                   transform=from_origin(843_000, 6_520_000, 0.2, 0.2), tiled=True, compress="deflate",
                   BIGTIFF="IF_SAFER")
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, size, th):
            row = [variants[(top // th + left // tw) % 4] for left in range(0, size, tw)]
            strip = np.concatenate(row, axis=1)[: min(th, size - top), :size]
            dst.write(strip, 1, window=Window(0, top, size, strip.shape[0]))


def run(mask: Path, out: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of one ``seg2sat generate … --backend procedural`` child process."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "seg2sat", "generate", str(mask), "--prompt", "Aerial view",
                              "--backend", "procedural", "--seed", "1", "--out", str(out)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if status:
        raise SystemExit(f"seg2sat generate failed on {mask} (status {status})")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8192, 32768])
    parser.add_argument("--work", type=Path, default=None, help="folder for the masks and outputs (default: a temp dir)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="seg2sat-stream-"))
    work.mkdir(parents=True, exist_ok=True)
    print("| map (px) | Mpx | seconds | Mpx/s | peak RSS (MB) | overviews | output (MB) |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        mask, out = work / f"mask{size}.tif", work / f"out{size}"
        if not mask.is_file():
            write_mask(mask, size)
        seconds, peak = run(mask, out)
        result = out / f"{mask.stem}-seed1.tif"
        with rasterio.open(result) as src:
            assert (src.width, src.height) == (size, size)
            overviews = src.overviews(1)
        mpx = size * size / 1e6
        print(f"| {size} | {mpx:.0f} | {seconds:.0f} | {mpx / seconds:.2f} | {peak:.0f} | {overviews} | "
              f"{result.stat().st_size / 2**20:.0f} |", flush=True)
        result.unlink()


if __name__ == "__main__":
    main()
