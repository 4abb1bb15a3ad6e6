"""Step caching for the UNet and the ControlNet (DeepCache's idea, Ma et al. 2023).

Between two denoising steps the UNet's deep, low-resolution features hardly change;
the shallow, full-resolution path carries what does. So on every ``interval``-th
step (a *full* step) everything runs and the outputs of every UNet layer between the
first and the last are remembered, with the whole ControlNet's; on the steps in between
(*cached* steps) those modules return what they returned at the last full step. A
cached step runs only ``conv_in``, the first layer of ``down_blocks[0]`` (ResNet +
attention), the last layer of ``up_blocks[-1]`` (which joins the cached deep features
with this step's first-layer skip connection) and the output layers: DeepCache's
shallowest branch (its default for Stable Diffusion). Caching at block level instead
(keeping all of ``down_blocks[0]`` and ``up_blocks[-1]``) was measured too: at the real
model's size on a CPU it gained 1.60x at 512 px, against 1.94x for this branch, because
the full-resolution attention of the five shallow layers dominates a cached step.
The ControlNet is reused too: run every step, it would cost ~40% of a UNet and cap the
speed-up.

Why not the ``DeepCache`` package: its last release (0.1.1, 2023) patches a copy of
an old ``UNet2DConditionModel.forward`` and does not support ControlNet pipelines
(horseee/DeepCache#4, #21); diffusers' own caches (``diffusers.hooks``) target
transformer blocks, not UNets. Here nothing of diffusers' forward code is copied:
the deep modules' ``forward`` attributes are swapped for memoising wrappers while
the context is open and put back exactly on exit, even on an exception, so the
same modules work in the plain, inpaint and tiled loops alike.

Someone must say when a step ends: :meth:`StepCache.next_step` (the pipelines'
``callback_on_step_end``, or the tiled loop). Outputs are kept per *slot*
(:meth:`StepCache.select`): the tiled denoiser gives each tile its own, so each
tile reuses its own features. Memory: one set of deep features and ControlNet
residuals per slot (tens of MB per 512 px tile for SD 2.1 in float32).
While open, the context changes the shared modules: one request at a time per
pipeline (as the servers run them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable
from typing import Any

from torch import nn

_UNSET = object()


class StepCache:
    """Context manager: reuse deep UNet features and ControlNet outputs on all but every ``interval``-th step.

    ``interval`` 1 (or less) installs nothing: a pure pass-through. The wrappers read
    only ``full`` and the slot's dict, so ``torch.compile`` of the UNet/ControlNet sees
    two variants (full and cached step), not one per step or per tile.
    """

    def __init__(self, unet: nn.Module, controlnet: nn.Module | None = None, interval: int = 1):
        self.unet, self.controlnet, self.interval = unet, controlnet, max(int(interval), 1)
        self.step = 0
        self.full = True
        """Whether the current step runs every module (and records their outputs)."""
        self.slot: Hashable = 0
        self._store: dict[Hashable, dict[tuple[str, int], Any]] = {}
        self._current = self._store.setdefault(0, {})  # the slot's outputs; plain attributes, few torch.compile guards
        self._calls: Counter[str] = Counter()  # calls per module within the current step and slot
        self._saved: list[tuple[nn.Module, Any]] = []

    @property
    def active(self) -> bool:
        """Whether anything is cached at all (interval > 1)."""
        return self.interval > 1

    def next_step(self) -> None:
        """The current denoising step is over (for every slot)."""
        self.step += 1
        self.full = self.step % self.interval == 0
        self._calls.clear()

    def callback(self, pipe: Any, step: int, timestep: Any, tensors: dict) -> dict:
        """A diffusers ``callback_on_step_end`` that only ends the step (:meth:`next_step`)."""
        self.next_step()
        return tensors

    def select(self, slot: Hashable) -> None:
        """Following calls belong to ``slot`` (e.g. a tile index): they record and reuse that slot's outputs."""
        self.slot = slot
        self._current = self._store.setdefault(slot, {})
        self._calls.clear()

    def modules(self) -> dict[str, nn.Module]:
        """The modules skipped on cached steps, by name (as ``unet.get_submodule`` spells them)."""
        unet = self.unet
        last = len(unet.up_blocks) - 1
        deep: dict[str, nn.Module | None] = {
            **_layers_but(unet.down_blocks[0], "down_blocks.0", keep=0),
            **{f"down_blocks.{i}": block for i, block in enumerate(unet.down_blocks) if i > 0},
            "mid_block": getattr(unet, "mid_block", None),
            **{f"up_blocks.{i}": block for i, block in enumerate(unet.up_blocks) if i < last},
            **_layers_but(unet.up_blocks[last], f"up_blocks.{last}", keep=len(unet.up_blocks[last].resnets) - 1),
            "controlnet": self.controlnet,
        }
        return {name: module for name, module in deep.items() if module is not None}

    def _wrap(self, name: str, forward: Callable[..., Any]) -> Callable[..., Any]:
        def cached_forward(*args: Any, **kwargs: Any) -> Any:
            key = (name, self._calls[name])  # a module called twice in one step keeps both outputs
            self._calls[name] += 1
            store = self._current
            if self.full or key not in store:  # nothing recorded yet for this slot: run it
                store[key] = forward(*args, **kwargs)
            return store[key]

        return cached_forward

    def __enter__(self) -> StepCache:
        if self.active:
            try:
                for name, module in self.modules().items():
                    self._saved.append((module, module.__dict__.get("forward", _UNSET)))
                    module.forward = self._wrap(name, module.forward)
            except BaseException:
                self._restore()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore()

    def _restore(self) -> None:
        """Put every ``forward`` back as it was (an instance attribute set by someone else included)."""
        while self._saved:
            module, forward = self._saved.pop()
            if forward is _UNSET:
                del module.forward
            else:
                module.forward = forward
        self._store.clear()
        self._current = self._store.setdefault(self.slot, {})


def _layers_but(block: nn.Module, name: str, keep: int) -> dict[str, nn.Module]:
    """A UNet block's layers (ResNet, attention) other than layer ``keep``, and its downsampler (which feeds the deep blocks).

    An upsampler is never listed: in the last up block it would come after the kept layer.
    """
    parts = {}
    for kind in ("resnets", "attentions", "downsamplers"):
        for i, module in enumerate(getattr(block, kind, None) or []):
            if i != keep or kind == "downsamplers":
                parts[f"{name}.{kind}.{i}"] = module
    return parts


def step_cache(pipe_or_unet: Any, interval: int, controlnet: nn.Module | None = None) -> StepCache:
    """A :class:`StepCache` for a pipeline (its ``unet`` and ``controlnet``) or for a bare UNet (+ ControlNet)."""
    unet = getattr(pipe_or_unet, "unet", pipe_or_unet)
    if controlnet is None:
        controlnet = getattr(pipe_or_unet, "controlnet", None)
    return StepCache(unet, controlnet, interval)
