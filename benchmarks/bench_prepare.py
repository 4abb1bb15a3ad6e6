"""Conversion speed of dataset preparation: FLAIR patches per second, per core and end to end.

Writes a FLAIR-like tree of real-size patches (512x512, 5 bands uint8, EPSG:2154) into a
temporary folder, then prints:

- conversion alone (read + check the GeoTIFFs, write both PNGs: the work the ``--workers``
  processes do) in one process: patches/s per core (target >= 100);
- the whole ``prepare`` run without geocoding (conversion + journal + building the
  Hugging Face dataset), with 1 and with 2 workers.

Aerial content matters for PNG speed (noise compresses slowly, fields quickly): with the
reference patches present (../shared/reference/flair-pairs) the tiles are made from them
(shifted so no two are alike), otherwise from smooth synthetic textures.

    python benchmarks/bench_prepare.py [--patches 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seg2sat.data.dataset import prepare
from seg2sat.data.flair import convert, discover
from seg2sat.masks import snap

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "flair-pairs"
SIZE = 512


def sources() -> tuple[list[np.ndarray], list[np.ndarray], str]:
    """(RGB images, raw class masks) to build tiles from, and where they came from."""
    from PIL import Image

    pairs = sorted(REFERENCE.glob("IMG_*.png"))
    if pairs:
        images = [np.asarray(Image.open(p).convert("RGB")) for p in pairs]
        masks = [snap(Image.open(p.with_name(p.name.replace("IMG_", "MSK_")))).ids for p in pairs]
        return images, masks, f"{len(pairs)} reference FLAIR patches"
    rng = np.random.default_rng(0)
    low = rng.integers(0, 256, (3, 16, 16, 3)).astype(np.uint8)
    images = [np.asarray(Image.fromarray(a).resize((SIZE, SIZE), Image.BICUBIC)) for a in low]
    images = [np.clip(a + rng.normal(0, 6, a.shape), 0, 255).astype(np.uint8) for a in images]
    masks = [np.repeat(np.repeat(rng.integers(1, 20, (8, 8), dtype=np.uint8), 64, 0), 64, 1) for _ in images]
    return images, masks, "synthetic textures (reference patches not found)"


def write_tree(root: Path, count: int) -> str:
    import rasterio
    from rasterio.transform import from_origin

    images, masks, origin = sources()
    rng = np.random.default_rng(1)
    for n in range(count):
        k = n % len(images)
        shift = tuple(rng.integers(0, SIZE, 2))
        rgb = np.roll(images[k], shift, (0, 1))
        extra = rng.integers(0, 256, (2, SIZE // 8, SIZE // 8), dtype=np.uint8).repeat(8, 1).repeat(8, 2)
        data = np.concatenate([np.moveaxis(rgb, -1, 0), extra])
        mask = np.roll(masks[k], shift, (0, 1))[None]
        zone = root / "D000_2021" / f"Z{n // 100}_UU"
        transform = from_origin(650_000 + (n % 10) * 102.4, 6_860_000 - (n // 10) * 102.4, 0.2, 0.2)
        for folder, name, array in (("img", "IMG", data), ("msk", "MSK", mask)):
            path = zone / folder / f"{name}_{n:06d}.tif"
            path.parent.mkdir(parents=True, exist_ok=True)
            with rasterio.open(path, "w", driver="GTiff", width=SIZE, height=SIZE, count=array.shape[0],
                               dtype="uint8", crs="EPSG:2154", transform=transform) as dst:
                dst.write(array)
    return origin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "flair"
        origin = write_tree(root, args.patches)
        print(f"{args.patches} patches of {SIZE}x{SIZE} px made from {origin}")
        patches, _ = discover(root)
        convert(patches[0], Path(tmp) / "warm")  # imports, pyproj set-up
        start, cpu = time.perf_counter(), time.process_time()
        for patch in patches:
            convert(patch, Path(tmp) / "convert")
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        # per core = per CPU-second of the converting process; the wall figure also counts
        # waiting for the CPU when other jobs share the machine (load average printed)
        print(f"conversion alone, 1 process: {len(patches) / cpu:.0f} patches/s per core "
              f"({cpu / len(patches) * 1000:.1f} ms CPU per patch; wall {len(patches) / seconds:.0f} patches/s, "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        from datasets.utils.logging import disable_progress_bar

        disable_progress_bar()
        for workers in (1, 2):
            summary = prepare(root, Path(tmp) / f"out{workers}", workers=workers, progress=False)
            print(f"whole run, --no-geocode --workers {workers}: {summary.rows / summary.seconds:.0f} patches/s "
                  f"({summary.seconds:.1f} s, dataset build included)")


if __name__ == "__main__":
    main()
