"""Generation jobs: a bounded queue and one worker thread, so a device runs one job at a time.

The page submits a job, gets its id at once and polls it for "step k of N";
cancelling stops a running job at its next denoising step. Finished jobs are
kept (a bounded number) so a slow poll still finds its result.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from ..engine import QueueFull
from ..options import spell
from ..request import Request
from .backends import Backend, BackendError
from .store import ImageStore

log = logging.getLogger(__name__)

class Cancelled(Exception):
    """Raised from the step callback to stop the pipeline mid-run."""


@dataclass(eq=False)  # jobs are compared by identity (their request holds arrays)
class Job:
    request: Request
    id: str = field(default_factory=lambda: secrets.token_hex(16))
    status: str = "queued"  # queued, running, done, error, cancelled
    step: int = 0
    total: int = 0
    error: str | None = None
    results: list[dict] = field(default_factory=list)
    prompt: str = ""
    backend: str = ""
    """The backend that made the images (the renderer when it stood in for the model); the request's until then."""
    created: float = field(default_factory=time.time)
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    @property
    def finished(self) -> bool:
        return self.status in ("done", "error", "cancelled")

    def to_json(self, position: int | None = None) -> dict:
        return {"id": self.id, "mode": self.request.mode, "status": self.status, "step": self.step,
                "total": self.total, "error": self.error, "prompt": self.prompt, "results": self.results,
                "queue_position": position, "steps": self.request.steps, "images": self.request.num_images,
                "backend": self.backend or self.request.backend}


class Worker:
    """Runs jobs one by one on a backend; loads the backend first so the page can say if it cannot."""

    def __init__(self, backend: Backend, store: ImageStore, queue_size: int = 8, keep: int = 100):
        self.backend, self.store, self.keep = backend, store, keep
        self.queue_size = queue_size
        """Jobs that may wait while one runs; more are refused."""
        self.queue: queue.Queue[Job | None] = queue.Queue()
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.state, self.message = "loading", "loading the model…"
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="seg2sat-ui-worker", daemon=True)

    def start(self, warmup: bool = True) -> Worker:
        if not warmup:
            self.state, self.message = "ready", "the model loads with the first job"
        self._warmup = warmup
        self._thread.start()
        return self

    def close(self) -> None:
        self.queue.put(None)

    def submit(self, req: Request) -> Job:
        if self.state == "error":
            raise BackendError(self.message)
        job = Job(req, total=req.steps * req.num_images)
        with self._lock:
            if sum(not j.finished for j in self.jobs.values()) > self.queue_size:
                raise QueueFull(f"the queue is full ({self.queue_size} jobs waiting); try again when one finishes")
            self.queue.put(job)
            self.jobs[job.id] = job
            self._forget_old()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self.jobs.get(job_id)

    def waiting(self) -> int:
        with self._lock:
            return sum(j.status == "queued" for j in self.jobs.values())

    def position(self, job: Job) -> int | None:
        """How many jobs run or wait before this one (0 = running now)."""
        if job.finished:
            return None
        with self._lock:
            waiting = [j for j in self.jobs.values() if not j.finished]
        return waiting.index(job) if job in waiting else None

    def cancel(self, job_id: str) -> Job | None:
        with self._lock:
            job = self.jobs.get(job_id)
            if job is not None and not job.finished:
                job.cancel_requested.set()
                if job.status == "queued":
                    job.status = "cancelled"
        return job

    def _forget_old(self) -> None:
        finished = [k for k, j in self.jobs.items() if j.finished]
        for key in finished[: max(0, len(self.jobs) - self.keep)]:
            del self.jobs[key]

    def _loop(self) -> None:
        if self._warmup:
            self._load()
        while True:
            job = self.queue.get()
            if job is None:
                return
            with self._lock:  # a cancel either lands before the job starts, or stops it at its next step
                if job.cancel_requested.is_set():
                    job.status = "cancelled"
                    continue
                job.status = "running"
            self._run(job)  # the engine takes the device's turn

    def _load(self) -> None:
        try:
            self.backend.load()
            self.state, self.message = "ready", spell(self.backend.note, "server") or "ready"
        except Exception as exc:  # any failure is shown on the page, word for word
            log.warning("backend %s cannot start: %s", self.backend.name, exc)
            self.state, self.message = "error", spell(str(exc), "server")

    def _run(self, job: Job) -> None:
        def on_step(k: int, n: int) -> None:
            job.step, job.total = k, n
            if job.cancel_requested.is_set():
                raise Cancelled

        try:
            result = self.backend.run(job.request, on_step)
        except Cancelled:
            job.status = "cancelled"
            return
        except (BackendError, ValueError, OSError, RuntimeError) as exc:
            job.error, job.status = _sentence(exc), "error"
            return
        except Exception as exc:
            log.exception("job %s failed", job.id)
            job.error, job.status = f"internal error: {type(exc).__name__}: {exc}", "error"
            return
        if job.cancel_requested.is_set():
            job.status = "cancelled"
            return
        job.prompt, job.backend = result.prompt, result.backend
        job.results = [{"id": (key := self.store.put(image)), "url": f"/api/images/{key}.png", "seed": seed,
                        "width": image.width, "height": image.height}
                       for image, seed in zip(result.images, result.seeds, strict=False)]
        job.step = job.total
        job.status = "done"


def _sentence(exc: Exception) -> str:
    text = spell(str(exc).strip(), "server") or type(exc).__name__
    return text[0].upper() + text[1:]
