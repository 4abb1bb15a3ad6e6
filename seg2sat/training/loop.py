"""The training program: accelerate for one GPU, several GPUs or several nodes (DDP).

Order of work: check the arguments and open the data (cheap, so mistakes surface in a
second), then load the models, resume if asked, train with a progress bar, checkpoint
and validate on schedule, and finally save the ControlNet in diffusers format.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from . import checkpoints as ckpt
from .arguments import check_args
from .data import DataPlan, PairDataset, ResumableSampler, collate, model_inputs, open_dataset, seed_worker
from .hub import push_to_hub, write_model_card
from .models import Models, diffusion_loss, load_models, make_optimizer, step_generator
from .validation import ValidationSet, run_validation

log = logging.getLogger(__name__)


@dataclass
class TrainingSummary:
    output_dir: Path
    """The trained ControlNet (diffusers format), checkpoints, validation grids and logs."""
    global_step: int
    loss: float
    """Mean loss of the last optimizer step (nan when no step ran)."""
    samples_per_second: float
    data_wait_share: float
    """Share of the training time spent waiting for the data loader (both from the second step on)."""
    resumed_from: Path | None = None


def _accelerator(args):
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    project = ProjectConfiguration(project_dir=str(args.output_dir),
                                   logging_dir=str(Path(args.output_dir) / args.logging_dir))
    return Accelerator(mixed_precision=args.mixed_precision, project_config=project,
                       log_with=None if args.report_to == "none" else args.report_to)


def _seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) before any model is built, as diffusers' scripts do.

    ``ControlNetModel.from_unet`` draws the conditioning embedding's initial weights from
    torch's global generator: unseeded, two runs with the same ``--seed`` would start from
    (and end with) different ControlNets. Everything drawn later has its own seeded
    generator (:func:`.models.step_generator`, :func:`.data.example_rng`), and a resumed
    run restores the global RNG states from its checkpoint.
    """
    from accelerate.utils import set_seed

    set_seed(seed)


def _weight_dtype(accelerator) -> torch.dtype:
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)


def _max_steps(args, plan: DataPlan) -> int:
    if args.max_train_steps:
        return args.max_train_steps
    return math.ceil(args.num_train_epochs * plan.batches_per_epoch / args.gradient_accumulation_steps)


def _tracker_config(args) -> dict:
    """Scalars only: trackers (tensorboard hparams) refuse lists and paths."""
    config = {}
    for key, value in vars(args).items():
        if key == "hub_token":
            continue
        config[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return config


def train(args) -> TrainingSummary:
    """Run a whole training as configured by ``args`` (see :mod:`.arguments`)."""
    check_args(args)
    data = open_dataset(args)
    validation = ValidationSet.from_args(args)
    output_dir = Path(args.output_dir)
    resume = ckpt.resolve(args.resume_from_checkpoint, output_dir)

    accelerator = _accelerator(args)
    if args.allow_tf32 and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    weight_dtype = _weight_dtype(accelerator)
    _seed_everything(args.seed)
    models = load_models(args, accelerator.device, weight_dtype)

    plan = DataPlan(len(data.dataset), args.train_batch_size, accelerator.num_processes)
    max_steps = _max_steps(args, plan)
    if args.scale_lr:
        args.learning_rate *= args.gradient_accumulation_steps * args.train_batch_size * accelerator.num_processes
    optimizer = make_optimizer(args, models.controlnet.parameters())
    lr_scheduler = _lr_scheduler(args, optimizer, max_steps)
    controlnet, optimizer = accelerator.prepare(models.controlnet, optimizer)
    progress = ckpt.Progress(batch_size=plan.batch_size, num_processes=plan.num_processes,
                             num_examples=plan.num_examples)
    accelerator.register_for_checkpointing(lr_scheduler, progress)
    from diffusers import ControlNetModel

    ckpt.register_controlnet_format(accelerator, ControlNetModel)
    if resume is not None:
        accelerator.print(f"resuming from {resume}")
        accelerator.load_state(str(resume))
        _check_same_plan(progress, plan, accelerator)
    elif args.resume_from_checkpoint == "latest":
        accelerator.print(f"no checkpoint in {output_dir} yet: starting a new training")
    if accelerator.is_main_process:
        accelerator.init_trackers(args.tracker_project_name, config=_tracker_config(args))

    loader = _loader(data, models, args, plan, accelerator, progress.micro_batches)
    stats = _run(accelerator, args, models, controlnet, optimizer, lr_scheduler, loader, progress, max_steps,
                 validation, weight_dtype)
    _finish(accelerator, args, controlnet, progress, validation, models, weight_dtype, stats)
    return TrainingSummary(output_dir, progress.global_step, stats["loss"], stats["samples_per_second"],
                           stats["data_wait_share"], resume)


def _lr_scheduler(args, optimizer, max_steps: int):
    """Stepped once per optimizer step on every process (not prepared: no per-process multiplying)."""
    from diffusers.optimization import get_scheduler

    return get_scheduler(args.lr_scheduler, optimizer, num_warmup_steps=args.lr_warmup_steps,
                         num_training_steps=max_steps, num_cycles=args.lr_num_cycles, power=args.lr_power)


def _check_same_plan(progress: ckpt.Progress, plan: DataPlan, accelerator) -> None:
    """A different batch size, process count or dataset changes the data order: say so, carry on."""
    saved = (progress.batch_size, progress.num_processes, progress.num_examples)
    if saved != (plan.batch_size, plan.num_processes, plan.num_examples):
        accelerator.print(
            f"warning: the checkpoint was written with batch size {saved[0]} on {saved[1]} processes over "
            f"{saved[2]} examples, this run uses {plan.batch_size} on {plan.num_processes} over {plan.num_examples}: "
            "the data order continues from the same micro-batch number, not from the exact same examples")
        progress.batch_size, progress.num_processes, progress.num_examples = (
            plan.batch_size, plan.num_processes, plan.num_examples)


def _loader(data, models: Models, args, plan: DataPlan, accelerator, start: int):
    """One endless loader from the saved data position; not passed through accelerate (we shard ourselves)."""
    sampler = ResumableSampler(plan, rank=accelerator.process_index, seed=args.seed, start=start)
    workers = args.dataloader_num_workers
    return torch.utils.data.DataLoader(
        PairDataset(data, models.tokenizer, args), batch_size=args.train_batch_size, sampler=sampler,
        collate_fn=collate, num_workers=workers, pin_memory=accelerator.device.type == "cuda",
        persistent_workers=workers > 0, prefetch_factor=4 if workers else None, worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(args.seed),  # keeps the global RNG untouched
    )


def _run(accelerator, args, models, controlnet, optimizer, lr_scheduler, loader, progress, max_steps,
         validation, weight_dtype) -> dict:
    """The optimisation loop; returns throughput figures for the summary."""
    from tqdm.auto import tqdm

    accum = args.gradient_accumulation_steps
    batches = iter(loader)
    bar = tqdm(total=max_steps, initial=progress.global_step, desc="training", unit="step",
               disable=not accelerator.is_local_main_process, dynamic_ncols=True)
    samples, first_step = 0, progress.global_step
    wait = busy = 0.0
    loss_value = float("nan")
    while progress.global_step < max_steps:
        started = time.perf_counter()
        losses = []
        for k in range(accum):
            fetch = time.perf_counter()
            batch = model_inputs(next(batches), accelerator.device)
            wait += time.perf_counter() - fetch
            generator = step_generator(args.seed, progress.micro_batches, accelerator.process_index,
                                       accelerator.device)
            sync = nullcontext() if k == accum - 1 else accelerator.no_sync(controlnet)
            with sync:
                loss = diffusion_loss(models, controlnet, batch, generator, weight_dtype)
                accelerator.backward(loss / accum)
            losses.append(loss.detach())
            progress.micro_batches += 1
        if args.max_grad_norm:
            accelerator.clip_grad_norm_(controlnet.parameters(), args.max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=args.set_grads_to_none)
        progress.global_step += 1
        busy += time.perf_counter() - started
        samples += accum * args.train_batch_size * accelerator.num_processes
        loss_value = accelerator.reduce(torch.stack(losses).mean(), reduction="mean").item()  # all processes
        if not math.isfinite(loss_value):
            raise ValueError(f"the loss is {loss_value} at step {progress.global_step}; "
                             "lower `learning_rate` or use bf16 instead of fp16")
        if progress.global_step == first_step + 1 and max_steps > progress.global_step:
            samples, wait, busy = 0, 0.0, 0.0  # throughput is measured from the second step: no start-up costs
        rate = samples / busy if busy else 0.0
        logs = {"loss": loss_value, "lr": lr_scheduler.get_last_lr()[0], "samples_per_s": rate,
                "data_wait_share": wait / busy if busy else 0.0}
        bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{logs['lr']:.2e}", samples_s=f"{rate:.1f}", refresh=False)
        bar.update(1)
        accelerator.log(logs, step=progress.global_step)
        if progress.global_step % args.checkpointing_steps == 0:
            ckpt.save_checkpoint(accelerator, args.output_dir, progress, args.checkpoints_total_limit)
        if validation and progress.global_step % args.validation_steps == 0:
            run_validation(accelerator, models, controlnet, validation, args, progress.global_step,
                           weight_dtype if weight_dtype != torch.float32 else None)
            accelerator.wait_for_everyone()
    bar.close()
    return {"loss": loss_value, "samples_per_second": samples / busy if busy else 0.0,
            "data_wait_share": wait / busy if busy else 0.0}


def _finish(accelerator, args, controlnet, progress, validation, models, weight_dtype, stats) -> None:
    """Last checkpoint (so training can be extended), final ControlNet, model card, hub upload."""
    output_dir = Path(args.output_dir)
    if ckpt.latest_checkpoint(output_dir) != output_dir / f"{ckpt.PREFIX}{progress.global_step}":
        ckpt.save_checkpoint(accelerator, output_dir, progress, args.checkpoints_total_limit)
    if validation and progress.global_step % args.validation_steps:
        run_validation(accelerator, models, controlnet, validation, args, progress.global_step,
                       weight_dtype if weight_dtype != torch.float32 else None)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        accelerator.unwrap_model(controlnet).save_pretrained(output_dir)
        write_model_card(output_dir, args, progress.global_step, stats["loss"])
        if args.push_to_hub:
            push_to_hub(output_dir, args)
        accelerator.print(f"trained ControlNet saved to {output_dir} (step {progress.global_step})")
    accelerator.end_training()
