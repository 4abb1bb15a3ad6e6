"""Peak memory of tiled generation: a 2048x2048 map against a 1024x1024 one (4x the pixels).

    python benchmarks/bench_tiling.py [--model DIR] [--steps 1]

Each size runs in its own process. The figure is the peak resident memory *added*
by one ``generate`` call over what the loaded, warmed-up pipeline already holds,
sampled every millisecond. Tiling keeps it bounded by the tile: the target is
2048^2 <= 1.5 x 1024^2.

Without ``--model`` the tiny random-weights pipeline is used with the real model's
tile geometry (512 px tiles, a 64x64 latent with attention over 4096 tokens, 128 px
overlap): real per-tile activations at small channel widths, so nothing is
downloaded. With real SD 2.1 weights the per-tile working set is larger still and
the ratio only closer to 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakSampler:
    """Highest resident set size seen while the ``with`` block runs."""

    def __enter__(self):
        self.peak, self._stop = _rss(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def measure(model: str, side: int, steps: int, tile: int) -> dict:
    """Runs in a child process: load, warm up on a small map, then measure one ``side`` x ``side`` map."""
    import numpy as np

    from seg2sat import masks
    from seg2sat.pipelines import load_pipeline
    from seg2sat.tiling import generate_tiled

    pipe = load_pipeline(model)
    town = masks.load_mask(os.path.join(os.path.dirname(__file__), "..", "examples", "masks", "town.png")).ids
    ids = np.tile(town, (side // town.shape[0] + 1, side // town.shape[1] + 1))[:side, :side]
    control = masks.to_image(ids)
    generate_tiled(pipe, control.crop((0, 0, 2 * tile * 8, tile * 8)), "Aerial view", seed=0, steps=1, tile=tile)
    before = _rss()
    start = time.perf_counter()
    with PeakSampler() as sampler:
        image = generate_tiled(pipe, control, "Aerial view of a town", seed=0, steps=steps, tile=tile)
    return {"side": side, "added_mb": (sampler.peak - before) / 2**20, "seconds": time.perf_counter() - start,
            "size": image.size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a saved pipeline folder (default: build the tiny one)")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--tile", type=int, default=64, help="tile in latent pixels (64 = 512 px, the SD tile)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.model, args.child, args.steps, args.tile)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from seg2sat.testing.tiny import make_tiny

            model = str(make_tiny(os.path.join(tmp, "tiny")))
        results = {}
        for side in (1024, 2048):
            out = subprocess.run([sys.executable, __file__, "--model", model, "--steps", str(args.steps),
                                  "--tile", str(args.tile), "--child", str(side)],
                                 capture_output=True, text=True, check=True)
            results[side] = json.loads(out.stdout.strip().splitlines()[-1])
            r = results[side]
            print(f"{side}x{side}: +{r['added_mb']:.0f} MB peak over the loaded pipeline, {r['seconds']:.0f} s, "
                  f"image {r['size']}")
    ratio = results[2048]["added_mb"] / results[1024]["added_mb"]
    print(f"peak memory ratio 2048^2 / 1024^2: {ratio:.2f} (4x the pixels; target <= 1.5)")


if __name__ == "__main__":
    main()
