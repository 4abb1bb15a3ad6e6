"""Checkpoints: the full training state, written so that a crash mid-write never costs the previous one.

A checkpoint is ``OUTPUT/checkpoint-<step>``: accelerate's state (optimizer, LR
scheduler, RNG states of every process, gradient scaler), the ControlNet in diffusers
format (``controlnet/``, usable on its own with ``seg2sat generate --controlnet``) and
:class:`Progress` (step and data position). It is written into a ``.tmp`` folder and
renamed into place once complete; a rename is atomic, so a ``checkpoint-<step>`` folder
is always whole and ``latest`` never picks a half-written one.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

PREFIX = "checkpoint-"
_NAME = re.compile(rf"^{PREFIX}(\d+)$")
PROGRESS_FILE = "progress.json"


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint (accelerate pickles it through ``state_dict``)."""

    global_step: int = 0
    micro_batches: int = 0
    """Micro-batches consumed by each process: the data position."""
    batch_size: int = 0
    num_processes: int = 0
    num_examples: int = 0

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints in ``output_dir``, oldest first."""
    if not Path(output_dir).is_dir():
        return []
    found = [(int(m.group(1)), p) for p in Path(output_dir).iterdir() if p.is_dir() and (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = checkpoints(output_dir)
    return found[-1] if found else None


def resolve(resume: str | None, output_dir: Path) -> Path | None:
    """``--resume_from_checkpoint``: ``latest`` (None when there is none yet: a fresh start) or a folder."""
    if not resume:
        return None
    if resume == "latest":
        return latest_checkpoint(output_dir)
    path = Path(resume)
    if not (path / PROGRESS_FILE).is_file():
        raise ValueError(f"`resume_from_checkpoint`: {path} is not a complete checkpoint (no {PROGRESS_FILE})")
    return path


def save_checkpoint(accelerator, output_dir: Path, progress: Progress, total_limit: int | None = None) -> Path:
    """Write ``checkpoint-<step>`` atomically on every process's behalf, then drop the oldest beyond ``total_limit``."""
    output_dir = Path(output_dir)
    final = output_dir / f"{PREFIX}{progress.global_step}"
    partial = output_dir / f"{final.name}.tmp"
    if accelerator.is_main_process:
        for leftover in output_dir.glob(f"{PREFIX}*.tmp"):  # half-written by a run that crashed
            shutil.rmtree(leftover, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (partial / PROGRESS_FILE).write_text(json.dumps(progress.state_dict(), indent=1), encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        partial.rename(final)
        if total_limit:
            for old in checkpoints(output_dir)[:-total_limit]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def register_controlnet_format(accelerator, controlnet_cls) -> None:
    """Save the ControlNet inside checkpoints with ``save_pretrained`` and load it back likewise.

    This replaces accelerate's anonymous ``model.safetensors`` with a ``controlnet/``
    folder any diffusers user can load, without storing the weights twice.
    """

    def save(models, weights, output_dir):
        if accelerator.is_main_process:
            for model in models:
                accelerator.unwrap_model(model).save_pretrained(Path(output_dir) / "controlnet")
        while weights:
            weights.pop()

    def load(models, input_dir):
        while models:
            model = accelerator.unwrap_model(models.pop())
            saved = controlnet_cls.from_pretrained(Path(input_dir) / "controlnet")
            model.load_state_dict(saved.state_dict())
            del saved

    accelerator.register_save_state_pre_hook(save)
    accelerator.register_load_state_pre_hook(load)
