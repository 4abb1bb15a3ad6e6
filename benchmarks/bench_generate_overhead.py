"""Overhead of seg2sat.generate over a bare diffusers pipeline call, on the tiny pipeline.

Both sides get the same pipeline, prompt, conditioning image, steps and seed; the
difference is what Seg2Sat adds (reading and snapping the mask, checking arguments,
building the prompt, the seed bookkeeping). Calls are interleaved and the median
taken, so machine noise hits both alike. Prints the overhead in percent (target <= 5 %).
Run: python benchmarks/bench_generate_overhead.py
"""

from __future__ import annotations

import statistics
import tempfile
import time

import numpy as np
import torch

from seg2sat import generate, masks
from seg2sat.pipelines import load_pipeline
from seg2sat.testing.tiny import make_tiny


def town(side: int) -> np.ndarray:
    ids = np.full((side, side), 11, np.uint8)
    ids[:, side // 2 - 4 : side // 2 + 4] = 3
    ids[side // 8 : side // 3, side // 8 : side // 3] = 1
    ids[side * 2 // 3 :, side * 2 // 3 :] = 5
    return ids


def measure(pipe, side: int, steps: int, rounds: int) -> tuple[float, float]:
    ids = town(side)
    control = masks.to_image(ids)
    prompt = "Aerial view of Lyon, France"

    def bare():
        pipe(prompt=prompt, image=control, width=side, height=side, num_inference_steps=steps,
             generator=torch.Generator("cpu").manual_seed(0))

    def ours():
        generate(ids, prompt, seed=0, steps=steps, pipeline=pipe)

    bare(), ours()  # warm-up
    times = {bare: [], ours: []}
    for _ in range(rounds):
        for fn in (bare, ours):
            start = time.perf_counter()
            fn()
            times[fn].append(time.perf_counter() - start)
    return statistics.median(times[bare]), statistics.median(times[ours])


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        pipe = load_pipeline(make_tiny(tmp + "/tiny"))
        for side, steps, rounds in ((64, 2, 60), (256, 10, 6)):
            bare, ours = measure(pipe, side, steps, rounds)
            print(f"{side}x{side}, {steps} steps: diffusers {bare * 1000:.1f} ms, seg2sat.generate {ours * 1000:.1f} ms, "
                  f"overhead {(ours - bare) / bare:+.1%} (target <= 5%)")


if __name__ == "__main__":
    main()
