"""Speed options at the real model's size, side by side: seconds per image, speed-up and peak memory.

    python benchmarks/bench_speed.py                  # CPU: 256 and 512 px, 6 steps
    python benchmarks/bench_speed.py --sizes 512 --steps 20 --runs 3   # what it does on a CUDA machine

Builds the SD 2.1 base-shaped pipeline of :mod:`seg2sat.testing.realsize` once (random weights cost
exactly what trained ones do; ``--folder`` reuses a build) and times one image of the town
sample per row, after a warm-up, all in one process so the ratios are measured side by side:

- ``diffusers``: a plain ``StableDiffusionControlNetPipeline`` call, UniPC, the baseline;
- ``seg2sat``: ``generation.run`` with the default settings (its overhead over the baseline);
- ``cache 3``: step caching, ``--cache-interval 3``;
- ``dpm++``: ``--scheduler dpm++`` (same cost per step; listed for completeness);
- ``compile``: ``--compile`` (CUDA only unless ``--compile-on-cpu``: inductor takes minutes on 2 cores);
- ``low-memory``: ``--low-memory`` (model offload on CUDA, VAE slicing/tiling);
- ``bf16``: ``--dtype bfloat16`` (CPUs with AMX or AVX-512 BF16 only; GPUs run bf16 already);
- ``few-step``: a fused LoRA (random, rank 64, standing in for h1t/TCD-SD21-base-LoRA) with
  ``--scheduler tcd --guidance 1`` (no classifier-free guidance: one UNet batch instead of two);
- ``best``: few-step + cache 3 (+ compile on CUDA, + bf16 on a CPU that computes it);
  ``best fp32`` is the same without bf16, on such a CPU.

Every row runs the same number of steps; the last line compares the documented 4-step mode
(few-step at 4 steps) with the default 20 steps. On CUDA it also prints denoising steps per second.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _var in ("DIFFUSERS_VERBOSITY", "TRANSFORMERS_VERBOSITY"):  # the table, not library chatter
    os.environ.setdefault(_var, "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@dataclass
class Row:
    name: str
    load: dict = field(default_factory=dict)
    request: dict = field(default_factory=dict)


class PeakMemory:
    """Peak memory during a block: CUDA's allocator peak on a GPU, else the process RSS sampled every 20 ms."""

    def __init__(self, cuda: bool):
        self.cuda, self.peak, self._stop = cuda, 0, threading.Event()

    def __enter__(self) -> PeakMemory:
        import torch

        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            threading.Thread(target=self._sample, daemon=True).start()
        return self

    def _sample(self) -> None:
        import psutil

        process = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, process.memory_info().rss)
            time.sleep(0.02)

    def __exit__(self, *exc) -> None:
        import torch

        self._stop.set()
        if self.cuda:
            self.peak = torch.cuda.max_memory_allocated()


def random_lora(base: Path, out: Path, rank: int = 64) -> Path:
    """A LoRA on the UNet's attention projections, saved as diffusers saves one (what a TCD LoRA looks like)."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet")
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 1e-4)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionPipeline.save_lora_weights(out, unet_lora_layers=layers, safe_serialization=True)
    return out


def time_rows(rows: list[Row], base: Path, controlnet: Path, ids, steps: int, runs: int) -> dict[str, tuple]:
    """{row name: (seconds per image, peak bytes)} for rows sharing one size and step count."""
    import torch
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline, UniPCMultistepScheduler

    from seg2sat import masks
    from seg2sat.generation import run
    from seg2sat.pipelines import clear_cache, dtype_kwargs, load_pipeline, pick_device, pick_dtype, pickle_only_kwargs
    from seg2sat.request import Request

    device = pick_device()
    cuda = device == "cuda"
    results = {}

    def timed(call) -> tuple[float, int]:
        call(2)  # warm-up: kernels, allocator, compilation (2 steps: a cached step's variant compiles too)
        times = []
        with PeakMemory(cuda) as memory:
            for _ in range(runs):
                start = time.perf_counter()
                call(steps)
                if cuda:
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
        return statistics.median(times), memory.peak

    for row in rows:
        if row.name == "diffusers":
            dtype = pick_dtype(device)
            cn = ControlNetModel.from_pretrained(controlnet, **pickle_only_kwargs(str(controlnet)), **dtype_kwargs(dtype))
            pipe = StableDiffusionControlNetPipeline.from_pretrained(base, controlnet=cn, safety_checker=None,
                                                                     **dtype_kwargs(dtype)).to(device)
            pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)
            pipe.set_progress_bar_config(disable=True)
            control = masks.to_image(ids)

            def call(n, pipe=pipe, control=control):
                pipe("Aerial view of Lyon, France", image=control, num_inference_steps=n,
                     generator=torch.Generator("cpu").manual_seed(1), width=control.width, height=control.height)
        else:
            pipe = load_pipeline(base, controlnet, **row.load)

            def call(n, pipe=pipe, row=row):
                req = Request.build(mask=ids, prompt="Aerial view of Lyon, France", seed=1,
                                    **{"steps": n, **row.request})
                run(req, pipe)
        results[row.name] = timed(call)
        del pipe, call
        clear_cache()
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        print(f"  {row.name:<12} {results[row.name][0]:8.2f} s", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="square sides (default 256 512 on CPU, 512 on CUDA)")
    parser.add_argument("--steps", type=int, default=None,
                        help="steps of every row (default 6 on CPU, 20 on CUDA: with --cache-interval 3, 6 steps have "
                             "4 cached ones, near the 13 of 20 a default image has)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per row (median; default 1 on CPU, 3 on CUDA)")
    parser.add_argument("--folder", type=Path, default=None, help="an existing `python -m seg2sat.realsize` build")
    parser.add_argument("--compile-on-cpu", action="store_true", help="also time --compile on a CPU (slow to compile)")
    parser.add_argument("--no-compile", action="store_true", help="leave --compile out (its warm-up takes minutes)")
    parser.add_argument("--rows", nargs="+", default=None, metavar="NAME",
                        help="only these rows (and the diffusers baseline), e.g. --rows compile best")
    parser.add_argument("--skip-20", action="store_true", help="skip the 4-step vs 20-step comparison")
    parser.add_argument("--smoke", action="store_true", help="the tiny test pipeline instead: checks the script in seconds")
    args = parser.parse_args()

    import torch
    from diffusers.utils import logging as diffusers_logging

    from seg2sat import masks
    from seg2sat.speed import cpu_computes_bf16
    from seg2sat.testing.realsize import build_sd21_shaped

    diffusers_logging.disable_progress_bar()
    cuda = torch.cuda.is_available()
    sizes = args.sizes or ([512] if cuda else [256, 512])
    steps = args.steps or (20 if cuda else 6)
    runs = args.runs or (3 if cuda else 1)
    town = masks.load_mask(ROOT / "examples" / "masks" / "town.png").ids
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:
            from seg2sat.testing.tiny import make_tiny

            base = make_tiny(Path(tmp) / "tiny")
            controlnet = base / "controlnet"
        elif args.folder:
            base, controlnet = args.folder / "base", args.folder / "controlnet"
        else:
            base, controlnet = build_sd21_shaped(Path(tmp), log=None)
        lora = random_lora(base, Path(tmp) / "lora")
        few = {"scheduler": "tcd", "guidance_scale": 1.0}
        compiled = {"compile": True} if (cuda or args.compile_on_cpu) and not args.no_compile else {}
        bf16 = {"dtype": "bfloat16"} if not cuda and cpu_computes_bf16() else {}
        rows = [Row("diffusers"), Row("seg2sat"), Row("cache 3", request={"cache_interval": 3}),
                Row("dpm++", request={"scheduler": "dpm++"}), Row("few-step", load={"lora": str(lora)}, request=few),
                Row("best", load={"lora": str(lora), **compiled, **bf16}, request={**few, "cache_interval": 3}),
                Row("low-memory", load={"low_memory": True})]  # last: offload hooks must not touch the others
        if compiled:
            rows.insert(4, Row("compile", load=compiled))
        if bf16:
            rows.insert(4, Row("bf16", load=bf16))
            rows.insert(-1, Row("best fp32", load={"lora": str(lora)}, request={**few, "cache_interval": 3}))
        if args.rows:
            rows = [row for row in rows if row.name == "diffusers" or row.name in args.rows]
        name = torch.cuda.get_device_name() if cuda else "CPU"
        for size in sizes:
            ids = masks.resize_ids(town, (size, size))
            time_rows([Row("seg2sat")], base, controlnet, ids, 1, 1)  # the process's first run pays for warm caches
            print(f"{name}, {size} px, {steps} steps, median of {runs}:", flush=True)
            results = time_rows(rows, base, controlnet, ids, steps, runs)
            bare = results["diffusers"][0]
            print(f"{'option':<12} {'s/image':>9} {'speed-up':>9} {'peak GiB':>9}" + ("  it/s" if cuda else ""))
            for row in rows:
                seconds, peak = results[row.name]
                line = f"{row.name:<12} {seconds:9.2f} {bare / seconds:8.2f}x {peak / 2**30:9.2f}"
                print(line + (f"  {steps / seconds:5.1f}" if cuda else ""), flush=True)
            if not args.skip_20:
                slow = time_rows([Row("seg2sat")], base, controlnet, ids, 20, runs)["seg2sat"][0]
                fast = time_rows([Row("few-step", load={"lora": str(lora)}, request=few)], base, controlnet, ids, 4,
                                 runs)["few-step"][0]
                print(f"4-step mode vs 20 steps at {size} px: {slow:.2f} s / {fast:.2f} s = {slow / fast:.2f}x", flush=True)


if __name__ == "__main__":
    main()
