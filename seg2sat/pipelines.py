"""Loading the ControlNet pipeline: hub ids or folders, device and dtype, one copy per process.

The UI and the endpoint call :func:`load_pipeline` on every request; the cache makes
that a dictionary lookup after the first call. The inpainting pipeline is built
with ``from_pipe`` from the same components, so it costs no extra memory.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .pipestate import state_of
from .weights import (
    OFFICIAL_BASE,
    WeightsNotFoundError,
    cause,
    fetch_controlnet,
    fetch_named,
    fetch_verified,
)

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionControlNetInpaintPipeline, StableDiffusionControlNetPipeline

__all__ = ["CACHE", "PipelineCache", "WeightsNotFoundError", "inpaint_pipeline", "load_component", "load_pipeline"]



class PipelineCache:
    """Loaded pipelines by their load options: each loads once, whatever thread asks first.

    The process shares :data:`CACHE`; a test that needs pipelines of its own makes its own
    cache and passes it to :func:`load_pipeline` instead of patching a global.
    """

    def __init__(self) -> None:
        self._pipes: dict[tuple, StableDiffusionControlNetPipeline] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple, load) -> StableDiffusionControlNetPipeline:
        with self._lock:
            if key not in self._pipes:
                self._pipes[key] = load()
            return self._pipes[key]

    def keys(self) -> set[tuple]:
        with self._lock:
            return set(self._pipes)

    def clear(self) -> None:
        with self._lock:
            self._pipes.clear()


CACHE = PipelineCache()
"""The process's pipelines (the UI and the endpoint call :func:`load_pipeline` on every request)."""


def pick_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str) -> torch.dtype:
    """bf16 where the GPU supports it, else fp16 on GPUs; fp32 on CPU (half is slow or broken there)."""
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.startswith("mps"):
        return torch.float16
    return torch.float32


DTYPES = ("auto", "float32", "bfloat16", "float16")
"""What ``--dtype`` accepts: "auto" is :func:`pick_dtype`'s choice for the device."""


def resolve_dtype(dtype: torch.dtype | str | None, device: str) -> torch.dtype:
    """A torch dtype from a :data:`DTYPES` name (None or "auto": :func:`pick_dtype`), or the torch dtype given."""
    import torch

    if dtype is None or dtype == "auto":
        return pick_dtype(device)
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"`dtype` must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return getattr(torch, dtype)


def is_full_pipeline(path: str | os.PathLike) -> bool:
    """A saved pipeline folder that already holds its ControlNet (such as ``seg2sat make-tiny``'s)."""
    index = Path(path) / "model_index.json"
    if not index.is_file():
        return False
    return "controlnet" in json.loads(index.read_text(encoding="utf-8"))


def is_controlnet_folder(path: str | os.PathLike) -> bool:
    """A folder holding a ControlNet alone (``config.json`` of a ``ControlNetModel``), to put on a base model."""
    try:
        return json.loads((Path(path) / "config.json").read_text(encoding="utf-8")).get("_class_name") == "ControlNetModel"
    except (OSError, ValueError, AttributeError):
        return False


def looks_like_path(name: str) -> bool:
    """Hub ids are ``org/name``; anything existing, absolute, relative or deeper is a folder."""
    return os.path.exists(name) or name.startswith((".", "/", "~")) or name.count("/") > 1


def _from_folder(cls, folder: str | os.PathLike, what: str, flag: str, **kwargs):
    """``cls.from_pretrained`` of a local folder; a folder without weights says so in one sentence."""
    folder = os.path.expanduser(str(folder))
    if not os.path.isdir(folder):
        raise WeightsNotFoundError(f"Cannot load the {what}: the folder {folder!r} does not exist; "
                                   f"set {flag} to an existing folder or a hub id.")
    try:
        return cls.from_pretrained(folder, local_files_only=True, **kwargs)
    except (OSError, ValueError) as exc:
        raise WeightsNotFoundError(
            f"Cannot load the {what}: the folder {folder!r} holds no diffusers weights ({cause(exc, folder, flag)}); "
            f"set {flag} to a folder written by save_pretrained or `seg2sat download --dir`.") from exc


def resolve_base(model: str | os.PathLike | None) -> tuple[str, list[str]]:
    """A local folder holding the base model, and what the user should hear about where it came from.

    The default, and the deleted official id named explicitly, resolve to a verified copy of
    SD 2.1 base; a folder is used as it is; any other hub id is fetched as named, unverified.
    """
    name = str(model) if model else None
    if name is None or name == OFFICIAL_BASE:
        fetched = fetch_verified("base")
        notes = list(fetched.notes)
        if name == OFFICIAL_BASE and fetched.repo != OFFICIAL_BASE:
            notes.append(f"{OFFICIAL_BASE} was deleted from the Hugging Face Hub (November 2025); using its "
                         f"verified copy {fetched.repo}")
        return str(fetched.folder), notes
    if looks_like_path(name):
        if not os.path.isdir(os.path.expanduser(name)):
            raise WeightsNotFoundError(f"Cannot load the base model: the folder {name!r} does not exist; "
                                       "set `model` to an existing folder or a hub id.")
        return os.path.expanduser(name), []
    return str(fetch_named(name)), []


def resolve_controlnet(controlnet: str | os.PathLike | None, subfolder: str | None, base_folder: str) -> str | None:
    """A local folder holding the ControlNet, or None when the base folder is a full pipeline with its own."""
    name = str(controlnet) if controlnet else None
    if name is None and not subfolder and is_full_pipeline(base_folder):
        return None
    if name is not None and looks_like_path(name):
        return os.path.join(os.path.expanduser(name), subfolder or "")
    return str(fetch_controlnet(name, subfolder).folder)


def load_component(cls, name: str | os.PathLike | None, what: str, flag: str, kind: str = "base", **kwargs):
    """One model component (``cls.from_pretrained``) with the same clear errors as :func:`load_pipeline`.

    Training loads the UNet, VAE, text encoder and tokenizer one by one (``subfolder=…``)
    instead of a pipeline; a hub id resolves as in :func:`load_pipeline` (the default and the
    deleted official id: a verified copy of SD 2.1 base), with the same messages.
    """
    name = str(name) if name else None
    if name is None or not looks_like_path(name):
        name = str(fetch_controlnet(name).folder) if kind == "controlnet" else resolve_base(name)[0]
    return _from_folder(cls, name, what, flag, **kwargs)


def load_pipeline(
    model: str | os.PathLike | None = None,
    controlnet: str | os.PathLike | None = None,
    device: str | None = None,
    dtype: torch.dtype | str | None = None,
    *,
    lora: str | os.PathLike | None = None,
    lora_scale: float = 1.0,
    compile: bool = False,
    low_memory: bool = False,
    controlnet_subfolder: str | None = None,
    cache: PipelineCache | None = None,
) -> StableDiffusionControlNetPipeline:
    """The Seg2Sat text-to-image pipeline, loaded once per process for each set of options.

    ``model`` is a base Stable Diffusion model (hub id or folder) or a full saved
    ControlNet pipeline (folder or hub id); ``controlnet`` overrides the ControlNet (hub id or
    folder) and ``controlnet_subfolder`` picks a checkpoint inside it. Defaults: a verified
    copy of SD 2.1 base (:mod:`seg2sat.weights`) and ``rgres/Seg2Sat-sd-controlnet``.

    Speed options (:mod:`seg2sat.speed`): ``lora`` (hub id or folder) is fused into the
    weights at ``lora_scale``; ``compile`` fuses attention projections and
    ``torch.compile``-s the UNet and ControlNet (call :func:`seg2sat.speed.warm_up` once);
    ``low_memory`` offloads models to the CPU between uses (CUDA) and slices/tiles the VAE.
    ``dtype`` (a torch dtype or a :data:`DTYPES` name) defaults to bf16/fp16 on GPUs and fp32
    on CPUs; "bfloat16" on a CPU that computes in it (:func:`cpu_computes_bf16`) is the fast choice there.
    :func:`seg2sat.speed.notes` returns what the options want the user to know.
    """
    model = str(model) if model else None
    controlnet = str(controlnet) if controlnet else None
    device = device or pick_device()
    dtype = resolve_dtype(dtype, device)
    lora = str(lora) if lora else None
    key = (model, controlnet, controlnet_subfolder or None, device, dtype,
           lora, float(lora_scale) if lora else None, bool(compile), bool(low_memory))
    return (cache or CACHE).get(key, lambda: _load(
        model, controlnet, controlnet_subfolder or None, device, dtype, lora=lora, lora_scale=float(lora_scale),
        compile=bool(compile), low_memory=bool(low_memory)))


def dtype_kwargs(dtype: torch.dtype) -> dict:
    """``from_pretrained``'s dtype keyword for the installed diffusers: ``dtype`` from 0.40 on, ``torch_dtype`` before.

    diffusers 0.33 (the one Hugging Face's Inference Endpoints toolkit ships) ignores ``dtype=``
    with only a warning, which would load fp32 on a GPU; 0.40+ still reads ``torch_dtype`` but deprecates it.
    """
    import diffusers

    release = tuple(int(part) for part in diffusers.__version__.split("+")[0].split(".")[:2] if part.isdigit())
    return {"dtype" if release >= (0, 40) else "torch_dtype": dtype}


def _load(model: str | None, controlnet: str | None, subfolder: str | None, device: str, dtype: torch.dtype, *,
          lora: str | None = None, lora_scale: float = 1.0, compile: bool = False, low_memory: bool = False):
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    from . import speed

    kwargs: dict = {**dtype_kwargs(dtype), "safety_checker": None, "requires_safety_checker": False}
    base, notes = resolve_base(model)
    lora_folder = _lora_folder(lora) if lora else None
    controlnet_folder = resolve_controlnet(controlnet, subfolder, base)
    if controlnet_folder is not None:
        kwargs["controlnet"] = _from_folder(ControlNetModel, controlnet_folder, "ControlNet", "`controlnet`",
                                            **dtype_kwargs(dtype), **pickle_only_kwargs(controlnet_folder))
    pipe = _from_folder(StableDiffusionControlNetPipeline, base, "base model", "`model`", **kwargs)
    pipe.set_progress_bar_config(disable=True)
    state = state_of(pipe)
    state.options = {"lora": lora, "lora_scale": lora_scale, "compile": compile, "low_memory": low_memory}
    state.notes = list(notes)
    speed.use_precision(pipe, device, dtype)
    speed.use_scheduler(pipe, "unipc")
    if lora_folder:
        speed.fuse_lora(pipe, lora_folder, lora_scale, attempts=[True],
                        error=lambda exc: WeightsNotFoundError(
                            f"Cannot load the LoRA: the folder {lora_folder!r} holds no LoRA weights; set `lora` to a "
                            "folder holding pytorch_lora_weights.safetensors (as written by save_lora_weights) or a hub id."))
    if compile:
        speed.compile_pipeline(pipe, device)
    if low_memory and speed.low_memory(pipe, device):
        return pipe  # offloaded: the hooks move each model to the GPU when it runs
    return pipe.to(device)


def _lora_folder(lora: str) -> str:
    """The LoRA's local folder: as named, or fetched from the Hub."""
    if looks_like_path(lora):
        if not os.path.isdir(os.path.expanduser(lora)):
            raise WeightsNotFoundError(f"Cannot load the LoRA: the folder {lora!r} does not exist; "
                                       "set `lora` to an existing folder or a hub id.")
        return os.path.expanduser(lora)
    return str(fetch_named(lora, kind="lora"))


def pickle_only_kwargs(name: str) -> dict:
    """``use_safetensors=False`` for weights stored only as ``.bin`` (older hub repos, the original Seg2Sat ControlNet).

    Otherwise diffusers first looks for a ``.safetensors`` file and logs "An error occurred while
    trying to fetch …" before it falls back to the ``.bin``, which reads like a failure. Decided
    from the folder, or from the hub cache for a hub id; {} (diffusers' own choice) when unknown.
    """
    stem = "diffusion_pytorch_model"
    if looks_like_path(name):
        folder = Path(os.path.expanduser(name))

        def has(ext: str) -> bool:
            return (folder / f"{stem}.{ext}").is_file() or any(folder.glob(f"{stem}*.{ext}.index.json"))
    else:
        from huggingface_hub import try_to_load_from_cache

        def has(ext: str) -> bool:
            return isinstance(try_to_load_from_cache(name, f"{stem}.{ext}"), str)
    return {"use_safetensors": False} if has("bin") and not has("safetensors") else {}


def inpaint_pipeline(pipe: StableDiffusionControlNetPipeline) -> StableDiffusionControlNetInpaintPipeline:
    """The inpainting pipeline over the very same modules as ``pipe`` (no second copy of any weight)."""
    from diffusers import StableDiffusionControlNetInpaintPipeline

    state = state_of(pipe)
    if state.inpaint is None:
        state.inpaint = StableDiffusionControlNetInpaintPipeline(**pipe.components)
        state.inpaint.set_progress_bar_config(**pipe._progress_bar_config)
    return state.inpaint


def clear_cache() -> None:
    """Forget every loaded pipeline of the process (a UI switching models)."""
    CACHE.clear()
