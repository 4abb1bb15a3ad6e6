"""The engine: the one object every front end asks for images.

Built once from :class:`~seg2sat.settings.Settings`, it owns what used to be copied into
each front end: loading the model with its speed options, falling back to the offline
renderer when the weights cannot be had (and why, in :attr:`Engine.note`), the notes a user
should read once, and the one queue in front of the device. The CLI, ``seg2sat serve``, the
endpoint handler and the web UI translate their input into a checked
:class:`~seg2sat.request.Request`, call :meth:`Engine.run` and translate the
:class:`~seg2sat.request.Result` back, which names the backend that actually ran.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from . import generation
from .request import Request, Result
from .settings import Settings
from .speed import cpu_tip, notes, warm_up
from .weights import WeightsNotFoundError

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """More requests wait than ``queue_size`` allows: refused at once rather than held open for minutes.

    ``retry_after`` (seconds) is a fair guess where one can be made.
    """

    def __init__(self, message: str, retry_after: int | None = None):
        self.retry_after = retry_after
        super().__init__(message)


class DeviceGate:
    """One generation at a time on a device, waiting requests served first come first served.

    A GPU running two diffusion loops at once runs each at half speed and may run out of
    memory; queueing keeps latency predictable. At most ``max_waiting`` requests wait:
    beyond that :class:`QueueFull` is raised at once.
    """

    def __init__(self, max_waiting: int):
        self.max_waiting = max_waiting
        self._cond = threading.Condition()
        self._next_ticket = 0
        self._serving = 0
        self._average_s = 1.0

    @property
    def waiting(self) -> int:
        with self._cond:
            return self._next_ticket - self._serving - (1 if self.busy else 0)

    @property
    def busy(self) -> bool:
        return self._next_ticket > self._serving

    @contextmanager
    def slot(self) -> Iterator[float]:
        """Wait for the device; yields the seconds spent waiting."""
        start = time.perf_counter()
        with self._cond:
            queued = self._next_ticket - self._serving
            if queued > self.max_waiting:
                wait = max(1, round(queued * self._average_s))
                raise QueueFull(f"the server is busy; retry in {wait} s", retry_after=wait)
            ticket = self._next_ticket
            self._next_ticket += 1
            while ticket != self._serving:
                self._cond.wait()
        began = time.perf_counter()
        try:
            yield began - start
        finally:
            with self._cond:
                self._average_s = 0.8 * self._average_s + 0.2 * (time.perf_counter() - began)
                self._serving += 1
                self._cond.notify_all()


class Engine:
    """The model (or the renderer standing in for it), loaded once, behind one device queue.

    ``pipeline`` skips loading (tests, benchmarks); ``model``/``controlnet`` override the
    settings' (an endpoint repository's own weights). Loading is lazy and thread-safe:
    :meth:`load` at start-up makes the first request as fast as the next.
    """

    def __init__(self, settings: Settings | None = None, *, pipeline=None, model: str | None = None,
                 controlnet: str | None = None, gate: DeviceGate | None = None):
        self.settings = settings or Settings.from_env()
        self.model, self.controlnet = model or self.settings.model, controlnet or self.settings.controlnet
        self.gate = gate or DeviceGate(self.settings.queue_size)
        self.note = ""
        """Why the renderer stands in for the model, once it does (empty while the model serves)."""
        self.notes: list[str] = []
        """What the user should read once about the loaded model (what the load options did)."""
        self.tip: str | None = None
        """A faster way to run here, when no precision was chosen (bfloat16 on a CPU that computes it)."""
        self._pipeline = pipeline
        self._loaded = pipeline is not None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the diffusion pipeline is in memory."""
        return self._pipeline is not None

    @property
    def pipeline(self):
        """The diffusion pipeline, loaded on first use; None when the renderer stands in (see :attr:`note`)."""
        self.load()
        return self._pipeline

    def load(self) -> Engine:
        """Load the model once. Missing weights: the renderer stands in and :attr:`note` says why, or, without
        ``Settings.fallback``, :class:`~seg2sat.weights.WeightsNotFoundError` is raised (every time it is asked)."""
        with self._lock:
            if self._loaded:
                return self
            from .pipelines import load_pipeline

            try:
                self._pipeline = load_pipeline(self.model, self.controlnet, device=self.settings.device,
                                               **self.settings.load_options())
            except WeightsNotFoundError as exc:
                if not self.settings.fallback:
                    raise
                self.note = f"{exc} Using the procedural renderer instead (`fallback` off makes this an error)."
                log.info("%s", self.note)  # each front end shows it, in its own words
            else:
                self._after_load()
            self._loaded = True
        return self

    def _after_load(self) -> None:

        self.notes = list(notes(self._pipeline))
        self.tip = cpu_tip(self._pipeline) if self.settings.dtype == "auto" else None
        for line in filter(None, [*self.notes, self.tip]):
            log.info("%s", line)
        if self.settings.compile:
            warm_up(self._pipeline)

    def backend_for(self, req: Request) -> str:
        """The backend that will make ``req``: the one it asks for, or the renderer standing in."""
        if req.backend == "diffusion" and self.pipeline is None:
            return "procedural"
        return req.backend

    def run(self, req: Request, on_step: generation.StepCallback | None = None, *, queue: bool = True) -> Result:
        """The images of a checked request, after its turn on the device (``queue=False``: the caller holds it).

        The request is not changed: a fallback runs a copy, and the result names the backend
        that ran and carries the fallback note in ``warnings``.
        """
        backend = self.backend_for(req)
        run = req if backend == req.backend else replace(req, backend=backend)
        if not queue:
            return self._run(run, on_step, 0.0, fell_back=run is not req)
        with self.gate.slot() as waited:
            return self._run(run, on_step, waited, fell_back=run is not req)

    def _run(self, req: Request, on_step, waited: float, fell_back: bool) -> Result:
        began = time.perf_counter()
        result = generation.run(req, self._pipeline if req.backend == "diffusion" else None, on_step)
        result.backend = req.backend
        result.timing = {"queue_s": waited, "generate_s": time.perf_counter() - began}
        if fell_back:
            result.warnings.append(self.note)
        return result
