"""Training throughput: samples/s and the share of step time spent waiting for data.

CPU (default): the tiny random-weights pipeline trained by the real program
(``seg2sat.training.train``) on a synthetic dataset written in dataset preparation's
format; with ``--reference`` the data are the real FLAIR pairs of ../shared/reference
(skipped cleanly when absent). Target: data wait < 5 % of the step time.

GPU (``--sd21``): SD 2.1 base-sized UNet, VAE, text encoder and ControlNet built from
their configurations (random weights, nothing downloaded), 512 px steps through the
same loss and optimizer as training, with and without gradient checkpointing; prints
steps/s and peak memory. Needs CUDA.

    python benchmarks/bench_train.py                     # tiny, CPU
    python benchmarks/bench_train.py --workers 0         # data loading in the main process
    python benchmarks/bench_train.py --sd21 --batch-size 4
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REFERENCE = ROOT.parent / "shared" / "reference" / "flair-pairs"


def synthetic_dataset(path: Path, n: int, size: int) -> Path:
    """``n`` image / colour-mask / caption rows in the agreed save_to_disk format."""
    import datasets
    from PIL import Image

    from seg2sat import masks, prompts

    rng = np.random.default_rng(0)
    rows: dict[str, list] = {"image": [], "conditioning_image": [], "text": []}
    for i in range(n):
        ids = np.full((size, size), 11, dtype=np.uint8)
        for _ in range(6):
            top, left = rng.integers(0, size, 2)
            ids[top : top + size // 3, left : left + size // 3] = rng.integers(1, 20)
        pixels = np.clip(masks.to_rgb(ids).astype(np.int16) + rng.integers(-30, 30, ids.shape + (3,)), 0, 255)
        rows["image"].append(Image.fromarray(pixels.astype(np.uint8)))
        rows["conditioning_image"].append(masks.to_image(ids))
        rows["text"].append(prompts.caption(f"Town {i}, France", ids))
    features = datasets.Features({"image": datasets.Image(), "conditioning_image": datasets.Image(),
                                  "text": datasets.Value("string")})
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(path))
    return path


def reference_dataset(path: Path) -> Path | None:
    """The real FLAIR pairs, or None when ../shared/reference is not there."""
    import datasets
    from PIL import Image

    images = sorted(REFERENCE.glob("IMG_*.png")) if REFERENCE.is_dir() else []
    if not images:
        return None
    rows = {"image": [], "conditioning_image": [], "text": []}
    for image in images:
        rows["image"].append(Image.open(image).convert("RGB"))
        rows["conditioning_image"].append(Image.open(image.with_name(image.name.replace("IMG_", "MSK_"))).convert("RGB"))
        rows["text"].append("Aerial view.")
    features = datasets.Features({"image": datasets.Image(), "conditioning_image": datasets.Image(),
                                  "text": datasets.Value("string")})
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(path))
    return path


def bench_tiny(opts) -> None:
    from seg2sat.testing.tiny import make_tiny
    from seg2sat.training import build_parser, train

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tiny = make_tiny(tmp / "tiny")
        if opts.reference:
            data = reference_dataset(tmp / "data")
            if data is None:
                print(f"skipped: no reference data in {REFERENCE}")
                return
        else:
            data = synthetic_dataset(tmp / "data", opts.examples, opts.source_size)
        argv = ["--pretrained_model_name_or_path", str(tiny), "--controlnet_model_name_or_path",
                str(tiny / "controlnet"), "--train_data_dir", str(data), "--output_dir", str(tmp / "out"),
                "--resolution", str(opts.resolution), "--train_batch_size", str(opts.batch_size),
                "--max_train_steps", str(opts.steps), "--checkpointing_steps", str(opts.steps * 10),
                "--dataloader_num_workers", str(opts.workers), "--report_to", "none", "--random_flip"]
        summary = train(build_parser().parse_args(argv))
    source = "reference FLAIR pairs (512 px)" if opts.reference else f"synthetic {opts.source_size} px"
    print(f"tiny model, CPU, {source} -> {opts.resolution} px, batch {opts.batch_size}, {opts.steps} steps, "
          f"{opts.workers} workers: {summary.samples_per_second:.1f} samples/s, "
          f"data wait {summary.data_wait_share:.1%} of step time")


def sd21_models(device, weight_dtype):
    """SD 2.1 base-sized parts from their published configurations, random weights (no download)."""
    from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from seg2sat.testing.tiny import build_tokenizer
    from seg2sat.training.models import Models

    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                                use_linear_projection=True)
    controlnet = ControlNetModel.from_unet(unet)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2,
                        sample_size=768)
    tokenizer = build_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=1024, intermediate_size=4096,
                                                num_hidden_layers=23, num_attention_heads=16,
                                                max_position_embeddings=77, hidden_act="gelu", projection_dim=1024,
                                                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                                pad_token_id=tokenizer.pad_token_id))
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False).eval().to(device, dtype=weight_dtype)
    controlnet.to(device).train()
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    return Models(tokenizer, text_encoder, vae, unet, controlnet, scheduler)


def bench_sd21(opts) -> None:
    import torch

    from seg2sat.training.arguments import build_parser
    from seg2sat.training.models import diffusion_loss, make_optimizer, step_generator

    if not torch.cuda.is_available() and not opts.smoke_cpu:
        print("skipped: --sd21 needs a CUDA GPU")
        return
    if opts.smoke_cpu:  # checks that the code runs, on any machine; its timings mean nothing
        device, dtype = torch.device("cpu"), torch.bfloat16
    else:
        device, dtype = torch.device("cuda"), torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        torch.backends.cuda.matmul.allow_tf32 = True
    args = build_parser().parse_args(["--train_data_dir", "unused"])
    for checkpointing in (False, True):
        models = sd21_models(device, dtype)
        if checkpointing:
            models.controlnet.enable_gradient_checkpointing()
            models.unet.enable_gradient_checkpointing()
        optimizer = make_optimizer(args, models.controlnet.parameters())
        r, b = opts.resolution, opts.batch_size
        batch = {"pixel_values": torch.randn(b, 3, r, r, device=device).clamp(-1, 1),
                 "conditioning_pixel_values": torch.rand(b, 3, r, r, device=device),
                 "input_ids": torch.randint(0, 500, (b, 77), device=device)}
        cuda = device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        for step in range(opts.steps + 2):
            if step == 2:  # the first steps warm up kernels and the allocator
                if cuda:
                    torch.cuda.synchronize()
                started = time.perf_counter()
            with torch.autocast(device.type, dtype=dtype):
                loss = diffusion_loss(models, models.controlnet, batch, step_generator(0, step, 0, device), dtype)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        rate = opts.steps / (time.perf_counter() - started)
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        where = torch.cuda.get_device_name() if cuda else "CPU smoke run"
        print(f"SD 2.1-sized, {where}, {dtype}, {r} px, batch {b}, gradient checkpointing "
              f"{'on' if checkpointing else 'off'}: {rate:.2f} steps/s ({rate * b:.1f} samples/s), peak {peak:.1f} GiB")
        del models, optimizer, batch, loss
        if cuda:
            torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sd21", action="store_true", help="SD 2.1-sized models on a GPU instead of the tiny ones")
    parser.add_argument("--smoke-cpu", action="store_true", help="with --sd21: run on CPU to check the code (slow)")
    parser.add_argument("--reference", action="store_true", help="train on ../shared/reference/flair-pairs")
    parser.add_argument("--resolution", type=int, default=None, help="default 64 (tiny) or 512 (--sd21)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2, help="data loader workers (tiny)")
    parser.add_argument("--examples", type=int, default=64, help="synthetic examples (tiny)")
    parser.add_argument("--source-size", type=int, default=96, help="side of the synthetic images (tiny)")
    opts = parser.parse_args()
    opts.resolution = opts.resolution or (512 if opts.sd21 else 64)
    (bench_sd21 if opts.sd21 else bench_tiny)(opts)


if __name__ == "__main__":
    main()
