"""``seg2sat synthesize``: images/s on 1 and 2 processes, and its overhead per image over plain generation.

1. Overhead (in one process, one torch thread): the same masks, seeds and steps through
   ``synthesize()`` (hash, read, generate, PNG-encode, Parquet shards, card) and through
   what ``seg2sat generate`` does per mask (build the request, run the engine, save a PNG).
   Rounds are interleaved and the median taken. Target: <= 5 %.
2. Scaling on CPUs: the command as users run it, on one process (torch using every core)
   and under ``accelerate launch --multi_gpu --num_processes 2`` (torchrun + gloo, a core
   each); images/s as the command prints it (model loading and start-up left out, which
   a long run amortises). Target on 2 cores: 2 processes >= 1.7x.
3. ``--filter-with`` (in one process, one torch thread): the same run without a filter, with the tiny
   SegFormer of the tests, and with a SegFormer shaped like MiT-b0 (random weights cost what trained ones
   do), interleaved; the filter's own time per image is timed inside it.
4. With a CUDA GPU and ``--realsize``: an SD 2.1 base-shaped pipeline with random weights
   (it costs what the trained one does) at 512 px, 20 steps, bf16, ``--cache-interval 3``.

Run: python benchmarks/bench_synthesize.py [--masks 16] [--side 128] [--steps 4] [--realsize]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def write_masks(folder: Path, count: int, side: int) -> Path:
    from seg2sat import masks

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(count):
        ids = np.full((side, side), 11, np.uint8)
        a, b = sorted(rng.integers(0, side, 2))
        ids[a:b, : side // 2] = 1
        ids[:, side // 2 + k % 8 : side // 2 + 8 + k % 8] = 3
        ids[side * 2 // 3 :, side * 2 // 3 :] = 5
        masks.to_image(ids).save(folder / f"m{k:03d}.png")
    return folder


def overhead(model: str, src: Path, work: Path, steps: int, rounds: int) -> tuple[float, float, float, int]:
    """Median seconds of (plain generation, synthesize, synthesize outside the engine) for all masks, and the
    number of images: the last is the overhead itself, which machine noise hardly touches."""
    import torch

    from seg2sat import prompts
    from seg2sat.engine import Engine
    from seg2sat.request import Request
    from seg2sat.settings import Settings
    from seg2sat.synth.run import Options, synthesize
    from seg2sat.synth.seeds import row_draws
    from seg2sat.synth.sources import FolderSource

    torch.set_num_threads(1)
    engine = Engine(Settings(model=model)).load()
    source = FolderSource(src)

    def plain() -> None:
        out = work / "plain"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        for i in range(len(source)):
            ids = source.read(i).ids
            seed = row_draws(source.item_id(i), "", 0, 0)[0]
            req = Request.build(mask=ids, prompt=prompts.caption(None, ids), seed=seed, steps=steps)
            engine.run(req).images[0].save(out / f"{source.item_id(i)}-seed{seed}.png")

    inside = {"s": 0.0}
    run = engine.run

    def timed_run(req, on_step=None, queue=True):
        start = time.perf_counter()
        try:
            return run(req, on_step, queue=queue)
        finally:
            inside["s"] += time.perf_counter() - start

    def synth() -> None:
        out = work / "synth"
        shutil.rmtree(out, ignore_errors=True)
        inside["s"] = 0.0
        engine.run = timed_run
        try:
            synthesize(Options(source=str(src), out=out, steps=steps, progress=False), engine)
        finally:
            engine.run = run
        outside.append(time.perf_counter() - began[0] - inside["s"])

    outside: list[float] = []
    began = [time.perf_counter()]
    plain(), synth()  # warm-up
    times: dict = {plain: [], synth: []}
    outside.clear()
    for _ in range(rounds):
        for fn in (plain, synth):
            began[0] = time.perf_counter()
            fn()
            times[fn].append(time.perf_counter() - began[0])
    return statistics.median(times[plain]), statistics.median(times[synth]), statistics.median(outside), len(source)


def filter_overhead(model: str, src: Path, work: Path, steps: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Median seconds per image of a whole run, and of the filter's scoring in it, for: no filter, the tiny
    SegFormer, a MiT-b0-shaped SegFormer."""
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    from seg2sat.classes import CLASSES
    from seg2sat.engine import Engine
    from seg2sat.settings import Settings
    from seg2sat.synth.filter import Filter
    from seg2sat.synth.run import Options, synthesize
    from seg2sat.testing.segformer import build_tiny_segformer

    torch.set_num_threads(1)
    engine = Engine(Settings(model=model)).load()
    b0 = work / "segformer-b0"
    SegformerForSemanticSegmentation(SegformerConfig(num_labels=len(CLASSES), id2label={
        c.id - 1: c.name for c in CLASSES}, label2id={c.name: c.id - 1 for c in CLASSES})).save_pretrained(b0)
    SegformerImageProcessor().save_pretrained(b0)  # 512 x 512, as SegFormer models on the Hub
    scorers = {"none": None, "tiny SegFormer": Filter(str(build_tiny_segformer(work / "segformer-tiny"))),
               "SegFormer MiT-b0 shape, 512 px input": Filter(str(b0))}
    inside = {"s": 0.0}
    for scorer in scorers.values():
        if scorer is not None:
            real = scorer.score

            def timed(images, masks, batch=8, real=real):
                start = time.perf_counter()
                try:
                    return real(images, masks, batch)
                finally:
                    inside["s"] += time.perf_counter() - start

            scorer.score = timed
    count = len(list(src.iterdir()))
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in scorers}
    for round_ in range(rounds + 1):  # the first round warms up
        for name, scorer in scorers.items():
            out = work / "filtered"
            shutil.rmtree(out, ignore_errors=True)
            inside["s"] = 0.0
            start = time.perf_counter()
            synthesize(Options(source=str(src), out=out, steps=steps, progress=False,
                               filter_with=scorer and scorer.model_id), engine, scorer=scorer)
            if round_:
                times[name].append(((time.perf_counter() - start) / count, inside["s"] / count))
    return {name: (statistics.median(t for t, _ in v), statistics.median(f for _, f in v)) for name, v in times.items()}


def command(model: str, src: Path, out: Path, steps: int, processes: int, threads: int, extra=()) -> tuple[float, float]:
    """(images/s the command prints, wall seconds) of one run of the command."""
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    args = ["synthesize", str(src), "--out", str(out), "--model", model, "--steps", str(steps), "--quiet", *extra]
    launch = [sys.executable, "-m", "seg2sat"] if processes == 1 else [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "seg2sat"]
    start = time.perf_counter()
    done = subprocess.run([*launch, *args], capture_output=True, text=True, env=env, timeout=3600)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    found = re.search(r"([0-9.]+) images/s over (\d+) process", done.stdout)
    assert found and int(found.group(2)) == processes, done.stdout
    return float(found.group(1)), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--masks", type=int, default=16)
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--realsize", action="store_true", help="also the real-size pipeline on CUDA at 512 px")
    args = parser.parse_args()
    import torch

    from seg2sat.testing.tiny import make_tiny

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = str(make_tiny(work / "tiny"))
        src = write_masks(work / "masks", args.masks, args.side)
        plain, synth, outside, n = overhead(model, src, work, args.steps, args.rounds)
        print(f"tiny pipeline, {n} masks of {args.side} px, {args.steps} steps, 1 thread: plain generation "
              f"{plain / n * 1000:.1f} ms/image, synthesize {synth / n * 1000:.1f} ms/image "
              f"({(synth / plain - 1) * 100:+.1f} %); "
              f"synthesize's own work outside the model: {outside / n * 1000:.1f} ms/image "
              f"({outside / (synth - outside) * 100:.1f} % of the image's time)")
        filtered = filter_overhead(model, src, work, args.steps, args.rounds)
        base = filtered["none"][0]
        print("--filter-with, same run, 1 thread: " + "; ".join(
            f"{name}: {whole * 1000:.1f} ms/image ({whole / base:.2f}x), the filter's own {own * 1000:.1f} ms "
            f"(= {own / base:.0%} of an unfiltered image's time)" for name, (whole, own) in filtered.items()))
        one1, wall11 = command(model, src, work / "one1", args.steps, 1, 1)
        one, wall1 = command(model, src, work / "one", args.steps, 1, cores)
        two, wall2 = command(model, src, work / "two", args.steps, 2, max(cores // 2, 1))
        print(f"{cores} CPU cores: 1 process x 1 thread {one1:.2f} images/s ({wall11:.1f} s with start-up), "
              f"1 process x {cores} threads {one:.2f} images/s ({wall1:.1f} s), 2 processes x {max(cores // 2, 1)} "
              f"thread(s) {two:.2f} images/s ({wall2:.1f} s): {two / one1:.2f}x / {two / one:.2f}x")
        if args.realsize and torch.cuda.is_available():
            from seg2sat.testing.realsize import build_sd21_shaped

            base, controlnet = build_sd21_shaped(work / "realsize", log=lambda *a: None)
            big = write_masks(work / "masks512", 12, 512)
            fast = ("--controlnet", str(controlnet), "--cache-interval", "3", "--dtype", "bfloat16", "--device", "cuda")
            rate, wall = command(str(base), big, work / "gpu", 20, 1, cores, fast)
            print(f"{torch.cuda.get_device_name()}: real-size pipeline, 512 px, 20 steps, bf16, --cache-interval 3: "
                  f"{rate:.2f} images/s ({wall:.1f} s with start-up and loading)")
        elif args.realsize:
            print("--realsize: no CUDA GPU here; skipped")


if __name__ == "__main__":
    main()
