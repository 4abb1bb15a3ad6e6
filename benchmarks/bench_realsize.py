"""Seconds per image at the real model's size: an SD 2.1 base-shaped pipeline with random weights.

    python benchmarks/bench_realsize.py [--steps 20] [--size 512] [--folder DIR]

Builds the pipeline of :mod:`seg2sat.realsize` (or reuses ``--folder``), loads it the way
every front end does (:func:`seg2sat.pipelines.load_pipeline`: best device, bf16/fp16 on
GPUs), and times ``generate`` on the town sample after one warm-up image. Prints the
device, the dtype the weights really have, seconds per image, denoising steps per second
and peak memory (GPU: torch's peak allocation; CPU: the process's peak RSS). Random
weights cost exactly what trained ones do, so the timings hold for the real model.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=512, help="square side in px (masks over 512 px are tiled)")
    parser.add_argument("--folder", type=Path, default=None, help="an existing build (base/ and controlnet/)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    import torch

    from seg2sat import masks
    from seg2sat.generation import generate
    from seg2sat.pipelines import load_pipeline
    from seg2sat.realsize import build_sd21_shaped

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        base, controlnet = ((args.folder / "base", args.folder / "controlnet") if args.folder
                            else build_sd21_shaped(Path(tmp), log=None))
        built = time.perf_counter() - start
        start = time.perf_counter()
        pipe = load_pipeline(base, controlnet)
        loaded = time.perf_counter() - start
        ids = masks.resize_ids(masks.load_mask(ROOT / "examples" / "masks" / "town.png").ids, (args.size, args.size))
        cuda = pipe.device.type == "cuda"

        def one(steps: int) -> float:
            t0 = time.perf_counter()
            generate(ids, "Aerial view of Lyon, France", seed=1, steps=steps, pipeline=pipe)
            if cuda:
                torch.cuda.synchronize()
            return time.perf_counter() - t0

        one(2)  # warm-up: kernels, allocator, cudnn autotuning
        times = sorted(one(args.steps) for _ in range(args.runs))
        seconds = times[len(times) // 2]
        peak = (torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        name = torch.cuda.get_device_name() if cuda else "cpu"
        print(f"device {name}, weights {pipe.unet.dtype}, build {built:.0f} s, load {loaded:.1f} s")
        print(f"{args.size} px, {args.steps} steps: {seconds:.3f} s per image (median of {args.runs}), "
              f"{args.steps / seconds:.1f} it/s, peak memory {peak / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
