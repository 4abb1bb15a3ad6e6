"""Speed options: samplers per request, and what :func:`seg2sat.pipelines.load_pipeline` does for LoRA/compile/low memory.

* :func:`use_scheduler` puts a request's sampler (:data:`seg2sat.request.SCHEDULERS`) on a
  pipeline and on the inpainting pipeline that shares its modules; each pipeline keeps
  one instance per sampler, so switching costs a dictionary lookup.
* :func:`fuse_lora` fuses a LoRA into the UNet (and text encoder, if the LoRA has one):
  no extra work per step. The published few-step recipe for SD 2.1 base is the TCD LoRA
  ``h1t/TCD-SD21-base-LoRA`` with the ``tcd`` sampler, 4 steps and guidance 1.
* :func:`compile_pipeline` fuses the attention projections, puts the UNet and ControlNet
  in channels-last layout and ``torch.compile``-s them; :func:`warm_up` pays for the
  compilation once per process, before the first user waits.
* :func:`use_precision` notes a precision this CPU computes slowly (`` `dtype` ``: bfloat16
  on a CPU with AMX or AVX-512 BF16 beats float32) and puts bf16 models in channels-last
  layout on a CPU, where the VAE gains most (figures: README, Fast generation;
  ``benchmarks/bench_speed.py``).
* :func:`low_memory` offloads whole models to the CPU between uses (CUDA only) and
  decodes the VAE in slices and tiles.

Front ends print :func:`notes` (such as "model offload does nothing" on a CPU-only machine).
"""

from __future__ import annotations

import logging
import os

import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    LCMScheduler,
    TCDScheduler,
    UniPCMultistepScheduler,
)

from .pipestate import state_of
from .request import NUMERIC_FIELDS, SCHEDULERS, RequestError
from .stepcache import step_cache
from .tiling import tile_size

logger = logging.getLogger(__name__)

TCD_GAMMA = 0.3
"""TCD's stochasticity ``gamma`` (its paper's and diffusers' default): 0 is deterministic, 1 is most random."""

COMPILE_BACKEND = "inductor"
"""``torch.compile``'s backend (tests swap in "aot_eager": inductor's C++ build takes minutes on a small CPU)."""
COMPILE_MODE: str | None = None
"""inductor's mode; None is its default. "max-autotune-no-cudagraphs" benchmarks kernels for every convolution and
matmul: on an H100 that took 294 s for the tiny test pipeline's warm-up alone, far too long for a server's start."""


class GammaTCDScheduler(TCDScheduler):
    """diffusers' TCD sampler that uses its own ``gamma`` whatever ``eta`` the caller passes.

    TCD reads ``gamma`` from ``step(eta=…)``; diffusers' pipelines pass their ``eta``
    argument there, which defaults to 0.0 (DDIM's deterministic setting), so the
    recommended 0.3 would be lost unless every caller (the pipeline call, the tiled
    sampler) passed ``eta=0.3``. Set ``scheduler.gamma = None`` to use the caller's ``eta``.
    """

    gamma: float | None = TCD_GAMMA

    def step(self, model_output, timestep, sample, eta: float = TCD_GAMMA, generator=None, return_dict: bool = True):
        return super().step(model_output, timestep, sample, eta=eta if self.gamma is None else self.gamma,
                            generator=generator, return_dict=return_dict)


SCHEDULER_CLASSES: dict[str, type] = {
    "unipc": UniPCMultistepScheduler,
    "dpm++": DPMSolverMultistepScheduler,
    "euler-a": EulerAncestralDiscreteScheduler,
    "ddim": DDIMScheduler,
    "lcm": LCMScheduler,
    "tcd": GammaTCDScheduler,
}
"""The request's sampler names -> diffusers classes (``tcd``: TCD with ``gamma`` 0.3, see :class:`GammaTCDScheduler`)."""

_SCHEDULER_KWARGS: dict[str, dict] = {"dpm++": {"algorithm_type": "dpmsolver++"}}

assert tuple(SCHEDULER_CLASSES) == SCHEDULERS, "seg2sat.request.SCHEDULERS and SCHEDULER_CLASSES disagree"


def use_scheduler(pipe, name: str):
    """Put the sampler ``name`` on ``pipe`` (and its inpainting pipeline); returns the scheduler instance.

    Each sampler is made once per pipeline from the scheduler config the pipeline first
    had (the base model's), then reused: a request only swaps a reference. The
    inpainting pipeline of :func:`seg2sat.pipelines.inpaint_pipeline` was built from
    ``pipe.components`` and holds its own reference, so it is switched too.
    """
    if name not in SCHEDULER_CLASSES:
        raise RequestError("scheduler", f"must be one of {', '.join(SCHEDULERS)}, got {name!r}")
    state = state_of(pipe)
    if state.scheduler_config is None:
        state.scheduler_config = pipe.scheduler.config
    cache = state.schedulers
    scheduler = cache.get(name)
    if scheduler is None:
        cls = SCHEDULER_CLASSES[name]
        if type(pipe.scheduler) is cls and not _SCHEDULER_KWARGS.get(name):
            scheduler = pipe.scheduler  # the pipeline's own (UniPC after load_pipeline): keep it as configured
        else:
            scheduler = cls.from_config(state.scheduler_config, **_SCHEDULER_KWARGS.get(name, {}))
        cache[name] = scheduler
    for target in (pipe, state.inpaint):
        if target is not None and target.scheduler is not scheduler:
            target.scheduler = scheduler
    return scheduler


def check_steps(scheduler, steps: int) -> None:
    """LCM and TCD pick their steps from a fixed schedule (``original_inference_steps``, 50): refuse more, in words."""
    most = getattr(scheduler.config, "original_inference_steps", None)
    if isinstance(scheduler, (LCMScheduler, TCDScheduler)) and most and steps > most:
        name = "lcm" if isinstance(scheduler, LCMScheduler) else "tcd"
        raise RequestError("steps", f"the {name} sampler runs at most {most} steps, got {steps} (it is made for 2-8 steps)")


# --------------------------------------------------------------------------- load-time options


def notes(pipe) -> list[str]:
    """One-line notes the load options left for the user (front ends print them once)."""
    return list(state_of(pipe).notes)


def _note(pipe, text: str) -> None:
    logger.info(text)
    state_of(pipe).notes.append(text)


def cpu_computes_bf16() -> bool:
    """Whether this CPU has bfloat16 arithmetic (AMX or AVX-512 BF16); elsewhere PyTorch emulates it, slowly."""
    return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()


def channels_last_pays(device: str, dtype: torch.dtype) -> bool:
    """Whether convolutions run faster in channels-last layout: on GPUs, and for bfloat16 on a CPU (not float32 there).

    The figures behind this rule are in the README (Fast generation).
    """
    return not str(device).startswith("cpu") or dtype == torch.bfloat16


def use_precision(pipe, device: str, dtype: torch.dtype) -> None:
    """Fit the loaded models to their precision: a note where this CPU computes it slowly, else channels-last on a CPU."""
    if not str(device).startswith("cpu"):
        return
    if dtype == torch.float16:
        _note(pipe, "`dtype` float16: CPUs compute half precision slowly; bfloat16 (or float32) is faster here")
    elif dtype == torch.bfloat16 and not cpu_computes_bf16():
        _note(pipe, "`dtype` bfloat16: this CPU has no bfloat16 arithmetic (AMX or AVX-512 BF16), "
                    "so it is emulated and slower than float32")
    elif channels_last_pays(device, dtype):
        for name in ("unet", "controlnet", "vae"):
            getattr(pipe, name).to(memory_format=torch.channels_last)


def cpu_tip(pipe) -> str | None:
    """A tip for a float32 pipeline on a CPU that computes bfloat16 (front ends show it when no precision was chosen)."""
    if pipe.device.type == "cpu" and pipe.unet.dtype == torch.float32 and cpu_computes_bf16():
        return ("this CPU computes bfloat16 natively: `dtype` bfloat16 makes images about "
                "3x faster; see the README, Fast generation")
    return None


def fuse_lora(pipe, name: str, scale: float = 1.0, *, attempts: list[bool], error) -> None:
    """Load the LoRA ``name`` (hub id or folder) with diffusers' peft backend, fuse it at ``scale``, drop the adapters.

    After ``fuse_lora`` the LoRA's product sits in the base weights; ``unload_lora_weights``
    then removes the peft wrapper layers and keeps those fused weights, so the UNet is a
    plain UNet again (no per-step cost, ``torch.compile`` sees ordinary layers). ``attempts``
    lists the ``local_files_only`` values to try; ``error(exc)`` builds the exception to raise
    when the weights cannot be fetched.
    """
    path = os.path.expanduser(name)
    last: Exception | None = None
    for local_only in attempts:
        try:
            pipe.lora_state_dict(path, local_files_only=local_only)  # fetch (and cache) or fail, before touching the model
            break
        except (OSError, ValueError) as exc:
            last = exc
    else:
        raise error(last) from last
    pipe.load_lora_weights(path, local_files_only=True, adapter_name="seg2sat")
    pipe.fuse_lora(lora_scale=scale, adapter_names=["seg2sat"])
    pipe.unload_lora_weights()


def compile_pipeline(pipe, device: str) -> None:
    """Fused QKV projections (UNet and VAE), channels-last UNet/ControlNet, and ``torch.compile`` of both.

    The compilation itself happens at the first call for each input shape (:func:`warm_up`).
    Mode :data:`COMPILE_MODE` (inductor's default: fused kernels, no autotuning, no CUDA
    graphs, so the ControlNet's outputs can flow into the UNet and samplers can be swapped freely).
    Channels-last only where it pays (:func:`channels_last_pays`; not for float32 on a CPU).
    """
    if hasattr(pipe, "fuse_qkv_projections") and hasattr(pipe.unet, "fuse_qkv_projections"):
        pipe.fuse_qkv_projections()  # the ControlNet model has no such method in diffusers 0.42
    mode = COMPILE_MODE if COMPILE_BACKEND == "inductor" else None
    for name in ("unet", "controlnet"):
        module = getattr(pipe, name, None)
        if module is None:
            continue
        if channels_last_pays(device, module.dtype):
            module.to(memory_format=torch.channels_last)
        module.compile(mode=mode, backend=COMPILE_BACKEND)
    state_of(pipe).compiled = True


def low_memory(pipe, device: str) -> bool:
    """Model CPU offload on CUDA, VAE slicing and tiling everywhere; True when the pipeline was offloaded.

    With offload, each model moves to the GPU only while it runs (the pipeline must then
    not be moved with ``.to``). Without CUDA it would do nothing: a note says so.
    """
    pipe.vae.enable_slicing()
    pipe.vae.enable_tiling()
    if str(device).startswith("cuda") and torch.cuda.is_available():
        pipe.enable_model_cpu_offload(device=device)
        _note(pipe, "`low_memory`: model CPU offload on (each model moves to the GPU only while it runs); "
                    "VAE slicing/tiling on")
        return True
    if torch.cuda.is_available():
        _note(pipe, f"`low_memory`: the pipeline runs on {device}, so model offload does nothing; VAE slicing/tiling on")
    else:
        _note(pipe, "`low_memory`: no GPU here, model offload does nothing; VAE slicing/tiling on")
    return False


def warm_up(pipe, size: int | None = None, guidance_scales: tuple[float, ...] | None = None) -> None:
    """Run the generations that make ``torch.compile`` compile every variant before users wait.

    Per guidance mode: one plain step, then three steps under a step cache of interval 2
    (a full step, a cached one, and a full step over a filled cache). The step cache's
    wrappers make the models four variants to compile; without the last three, the first
    request with ``cache_interval`` > 1 (such as the web UI's fast mode) would wait for
    compilation, and without the third, its second full step would.
    ``size``: the image side, by default the model's tile (512 px for SD 2.1 base), the
    shape every tiled generation uses. ``guidance_scales``: the default guidance (batch
    of 2, classifier-free guidance), plus 1.0 (batch of 1) when a LoRA is fused, as the
    few-step recipes run without guidance. Other shapes compile on first use (recompiles
    become shape-dynamic). Runs once per pipeline; cheap and harmless when not compiled.
    """
    from PIL import Image


    if state_of(pipe).warm:
        return
    size = int(size or tile_size(pipe))
    if guidance_scales is None:
        lora = state_of(pipe).options.get("lora")
        guidance_scales = (float(NUMERIC_FIELDS["guidance_scale"].default), *((1.0,) if lora else ()))
    progress = dict(getattr(pipe, "_progress_bar_config", {}))
    pipe.set_progress_bar_config(**{**progress, "disable": True})
    try:
        control = Image.new("RGB", (size, size))
        for guidance in guidance_scales:
            for interval, steps in ((1, 1), (2, 3)):
                with step_cache(pipe, interval) as cache:
                    pipe(prompt="aerial view", image=control, width=size, height=size, num_inference_steps=steps,
                         guidance_scale=guidance, generator=torch.Generator("cpu").manual_seed(0), output_type="latent",
                         callback_on_step_end=cache.callback)
    finally:
        pipe._progress_bar_config = progress
    state_of(pipe).warm = True
