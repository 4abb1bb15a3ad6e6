"""Procedural renderer figures: colour fidelity against real FLAIR photos, and speed.

    python benchmarks/bench_render.py [--reference ../shared/reference/flair-pairs] [--figure images/procedural_town.png]

Fidelity (skipped when the reference folder is absent): every real patch's mask is
rendered, and for each class in each patch the mean colour of the render is compared
with the mean colour of the photo over the same pixels (Euclidean distance in 0-255
RGB), weighted by the class's area; the same for flat legend colours as a baseline.
The spread ratio is the render's per-class colour std over the photo's (1 is ideal,
the target is within 0.5-2). Speed: best of a few runs on one core.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from seg2sat import masks
from seg2sat.classes import BY_ID
from seg2sat.render import render_array
from seg2sat.render_stats import read_pairs

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "masks" / "town.png"
DEFAULT_REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "flair-pairs"


def fidelity(pairs) -> None:
    rows, total, flat_total, weight = [], 0.0, 0.0, 0
    for ids, photo in pairs:
        rendered = render_array(ids, seed=0).astype(np.float64)
        flat = masks.to_rgb(ids).astype(np.float64)
        for cls in np.unique(ids):
            sel = ids == cls
            n = int(sel.sum())
            real, ours = photo[sel].astype(np.float64), rendered[sel]
            distance = float(np.linalg.norm(real.mean(0) - ours.mean(0)))
            ratio = float(ours.std(0).mean() / max(real.std(0).mean(), 1e-6))
            rows.append((BY_ID[int(cls)].name, n, distance, ratio))
            total += distance * n
            flat_total += float(np.linalg.norm(real.mean(0) - flat[sel].mean(0))) * n
            weight += n
    print(f"{'class':<24}{'pixels':>9}{'mean dist':>11}{'std ratio':>11}")
    for name, n, distance, ratio in rows:
        print(f"{name:<24}{n:>9}{distance:>11.1f}{ratio:>11.2f}")
    ratios = [r[3] for r in rows if r[1] >= 1000]
    print(f"area-weighted mean-colour distance: {total / weight:.1f} "
          f"(flat legend colours: {flat_total / weight:.1f}; target <= 25)")
    print(f"std ratio render/real over classes with >= 1000 px: min {min(ratios):.2f}, max {max(ratios):.2f} (target 0.5-2)")


def busy_map(side: int) -> np.ndarray:
    """The worst case: 32 px blocks of random classes, so every texture and a lot of edges are paid for."""
    cells = np.random.default_rng(0).integers(1, 20, size=(side // 32 + 1, side // 32 + 1), dtype=np.uint8)
    return np.kron(cells, np.ones((32, 32), np.uint8))[:side, :side]


def town_map(side: int) -> np.ndarray:
    """A realistic map: the sample town mask repeated."""
    town = masks.load_mask(SAMPLE).ids
    reps = (side // town.shape[0] + 1, side // town.shape[1] + 1)
    return np.tile(town, reps)[:side, :side]


def speed(ids: np.ndarray, repeats: int) -> tuple[float, float]:
    """Best (CPU seconds, wall seconds). CPU time is this one thread's work, unaffected by other jobs on the machine."""
    best_cpu = best_wall = float("inf")
    for _ in range(repeats):
        cpu, wall = time.thread_time(), time.perf_counter()
        render_array(ids, seed=1)
        best_cpu = min(best_cpu, time.thread_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return best_cpu, best_wall


def figure(path: Path) -> None:
    """The README picture: the sample town mask and its procedural render (seed 1), side by side."""
    from PIL import Image

    from seg2sat.render import render

    ids = masks.load_mask(SAMPLE).ids
    h, w = ids.shape
    canvas = Image.new("RGB", (2 * w + 8, h), "white")
    canvas.paste(masks.to_image(ids), (0, 0))
    canvas.paste(render(ids, seed=1), (w + 8, 0))
    canvas.save(path, optimize=True)
    print(f"figure: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE)
    parser.add_argument("--figure", type=Path, default=None, help="also write the README figure (mask | render) here")
    args = parser.parse_args()
    if args.figure:
        figure(args.figure)
    pairs = read_pairs(args.reference) if args.reference.is_dir() else []
    if pairs:
        fidelity(pairs)
    else:
        print(f"fidelity: skipped, no reference pairs in {args.reference}")
    for name, make in (("town", town_map), ("busy", busy_map)):
        cpu, wall = speed(make(512), 5)
        print(f"{name} 512x512:   {cpu * 1000:.0f} ms CPU, {wall * 1000:.0f} ms wall (target <= 100 ms)")
        cpu, wall = speed(make(4096), 1)
        print(f"{name} 4096x4096: {cpu:.2f} s CPU, {wall:.2f} s wall (target <= 5 s)")


if __name__ == "__main__":
    main()
