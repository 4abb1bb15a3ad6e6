"""What Seg2Sat knows about a loaded pipeline, kept beside it: nothing is stuck on diffusers' objects.

A weak-key table maps each pipeline to its :class:`PipelineState`; the entry goes when the
pipeline does. :mod:`seg2sat.pipelines` fills it at load, :mod:`seg2sat.speed` reads and updates it.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PipelineState:
    options: dict[str, Any] = field(default_factory=dict)
    """The load options (lora, lora_scale, compile, low_memory)."""
    notes: list[str] = field(default_factory=list)
    """One-line notes the load left for the user."""
    inpaint: Any = None
    """The inpainting pipeline over the same modules, once built."""
    schedulers: dict[str, Any] = field(default_factory=dict)
    """Samplers made so far, by name (a request only swaps a reference)."""
    scheduler_config: Any = None
    """The base model's scheduler configuration, every sampler is made from."""
    compiled: bool = False
    warm: bool = False
    """Whether :func:`seg2sat.speed.warm_up` has run (compilation paid)."""


_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def state_of(pipe) -> PipelineState:
    """The pipeline's state, made empty on first use."""
    with _LOCK:
        state = _STATES.get(pipe)
        if state is None:
            state = _STATES[pipe] = PipelineState()
        return state
