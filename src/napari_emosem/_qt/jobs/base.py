"""Background work of the annotator: one :class:`Job` subclass per kind, run by :class:`JobRunner`.

A job's :meth:`Job.work` is a generator that runs in a napari thread worker (torch is imported
only there): it receives pixels and paths, never a layer or a widget, and every ``yield`` is a
progress step and the point where Cancel takes effect. Its ``on_*`` methods run on the GUI thread
and put the results in place. Errors a user can cause (a bad checkpoint, weights missing offline)
come back as :class:`Failed` with one clear line; anything else is a bug, logged with its
traceback.

``EMOSEM_SYNC_WORKERS=1`` (or ``synchronous=True``) runs jobs on the GUI thread, the way
stardist-napari does for its tests; the threaded path is the default and is what users get.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from napari.qt.threading import WorkerBase, create_worker
from napari.utils import progress
from psygnal import Signal, SignalGroup

from ...predictor import Proposal

logger = logging.getLogger(__name__)


def sync_workers_default() -> bool:
    return os.environ.get("EMOSEM_SYNC_WORKERS", "").strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class Step:
    """A progress report from a running model job."""

    message: str
    #: "loading", "loaded", "encoded", "masks", "explanation"
    kind: str = "progress"
    proposals: tuple[Proposal, ...] = ()
    emotion: str | None = None
    text: str = ""
    #: the model's ``source`` and ``description`` (on the "loaded" step)
    source: str = ""
    model: str = ""


@dataclass(frozen=True)
class Done:
    """What a finished model job returns."""

    message: str
    source: str
    model: str
    seconds: float
    proposals: tuple[Proposal, ...] = ()
    texts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Failed:
    """A job stopped by an error the user can fix (the message says how)."""

    message: str


def prepare_worker_thread() -> None:
    """Before a worker touches torch: keep triton out of this process (see below)."""
    # triton bundles its own LLVM; loading it into a process where Mesa's OpenGL driver (llvmpipe
    # under Xvfb, radeonsi on AMD GPUs) has already loaded LLVM crashes the process. EmoSEM never
    # uses triton (it only serves torch.compile kernels), and a None entry in sys.modules is
    # Python's documented way to make `import triton` raise ImportError ("not installed").
    sys.modules.setdefault("triton", None)


def limit_torch_threads() -> None:
    """Leave one core to the GUI thread: torch's intra-op threads would otherwise compete with the
    event loop for every core of a small machine."""
    torch = sys.modules.get("torch")
    if torch is None:  # a model without torch (the starter): nothing to limit
        return
    wanted = max(1, (os.cpu_count() or 1) - 1)
    if torch.get_num_threads() > wanted:
        torch.set_num_threads(wanted)


class Job:
    """One kind of background work. Subclasses set the class attributes and implement :meth:`work`."""

    name = "task"
    #: number of yields, for the progress bars; None: the job drives them with :meth:`report`
    steps: int | None = 1
    #: works on the current painting (which then stays current until the job ends)
    holds_painting = True
    #: its results fill stimulus layers (no spare layers are made meanwhile)
    fills_layers = False

    def __init__(self) -> None:
        self.running = False
        self.cancelled = False
        self.worker: WorkerBase | None = None
        #: napari's progress bar when the job drives it (``steps is None``)
        self.bar: progress | None = None
        self.runner: JobRunner | None = None

    def work(self) -> Iterator[Any]:
        """The generator run in the worker thread; returns the result (often :class:`Done`)."""
        raise NotImplementedError

    def on_step(self, step: Any) -> None:
        """A step arrived (GUI thread)."""

    def on_done(self, result: Any) -> None:
        """The work returned ``result`` (GUI thread; not called for :class:`Failed`)."""

    def on_cancelled(self) -> None:
        """The job stopped because it was cancelled (GUI thread)."""

    def on_cancel(self) -> None:
        """Cancel was asked for: wake the worker if it waits for the GUI."""

    def cancel(self) -> None:
        self.cancelled = True
        if self.worker is not None:
            self.worker.quit()
        self.on_cancel()

    def report(self, done: int, total: int, description: str | None = None, *, dock_format: str = "") -> None:
        """A job that drives its bars: ``done`` of ``total`` (0: busy indicator) in the dock's bar
        (with ``dock_format``) and napari's (with ``description``)."""
        if dock_format and self.runner is not None:
            self.runner.events.progress.emit(done, total, dock_format)
        bar = self.bar
        if bar is None:
            return
        if total != bar.total:
            bar.total = total
        if done != bar.n:
            bar.update(done - bar.n)
        if description and description != bar.desc:
            bar.set_description(description)


class RunnerEvents(SignalGroup):
    started = Signal(object)  # the job
    #: the dock's progress bar: value, maximum, format (QProgressBar's %v/%m/%p)
    progress = Signal(int, int, str)
    status = Signal(str)
    #: a job could not do its work: message, whether napari should notify too
    failed = Signal(str, bool)
    #: a step, after its job handled it
    stepped = Signal(object)
    finished = Signal(object)  # the job: done, failed or cancelled


class JobRunner:
    """Runs one job at a time, in a thread worker or (``synchronous``) on the calling thread."""

    def __init__(self, *, synchronous: bool = False):
        self.synchronous = synchronous
        self.events = RunnerEvents()
        self.current: Job | None = None
        self._starting = False
        self._value = 0

    @property
    def busy(self) -> bool:
        """True while a job starts or runs."""
        return self._starting or (self.current is not None and self.current.running)

    def start(self, job: Job) -> Job:
        job.runner, job.running = self, True
        self.current = job
        self._value = 0
        self.events.started.emit(job)
        self.events.progress.emit(0, max(job.steps or 0, 0), f"{job.name}: %v/%m")
        if self.synchronous:
            self._run_here(job)
            return job
        # napari may run queued events while it sets up the worker and its progress bar (a
        # preload timer, say): they must see the runner busy, not start a job of their own
        self._starting = True
        try:
            self._run_in_worker(job)
        finally:
            self._starting = False
        return job

    def cancel(self) -> bool:
        """Stop the running job at its next step; False if none runs."""
        job = self.current
        if job is None or not job.running:
            return False
        job.cancel()
        return True

    def _run_here(self, job: Job) -> None:
        generator = job.work()
        try:
            while True:
                try:
                    step = next(generator)
                except StopIteration as stop:
                    result = stop.value
                    break
                self._step(job, step)
        except Exception as exc:  # a bug in a job: reported like the threaded path does
            self._crashed(job, exc)
        else:
            self._returned(job, result)
        self._finish(job)

    def _run_in_worker(self, job: Job) -> None:
        if job.steps is None:
            job.bar = progress(total=0, desc=f"EmoSEM: {job.name}")
        worker = create_worker(
            job.work,
            _start_thread=False,
            _progress={"total": job.steps, "desc": f"EmoSEM: {job.name}"} if job.steps is not None else None,
            # errors are reported by _crashed (and by napari's own notification of worker errors)
            _ignore_errors=True,
        )
        job.worker = worker
        worker.yielded.connect(lambda step: self._step(job, step))
        worker.returned.connect(lambda result: self._returned(job, result))
        worker.errored.connect(lambda exc: self._crashed(job, exc))
        worker.finished.connect(lambda: self._finish(job))
        worker.start()

    def _step(self, job: Job, step: Any) -> None:
        if job.steps is not None:
            self._value = min(self._value + 1, job.steps)
            self.events.progress.emit(self._value, job.steps, f"{job.name}: %v/%m")
        self.events.status.emit(step.message)
        job.on_step(step)
        self.events.stepped.emit(step)

    def _returned(self, job: Job, result: Any) -> None:
        if isinstance(result, Failed):
            self.events.failed.emit(result.message, True)
        elif result is not None:
            job.on_done(result)

    def _crashed(self, job: Job, exc: BaseException) -> None:
        # a bug, not a user error (those come back as Failed): the traceback goes to the log
        logger.error("EmoSEM %s failed", job.name, exc_info=(type(exc), exc, exc.__traceback__))
        self.events.failed.emit(f"{job.name} failed: {type(exc).__name__}: {exc}", False)

    def _finish(self, job: Job) -> None:
        job.running = False
        if job.bar is not None:
            job.bar.close()
            job.bar = None
        if job.cancelled:
            job.on_cancelled()
        if self.current is job:
            self.current = None
        self.events.finished.emit(job)

    def shutdown(self, timeout_ms: int) -> str | None:
        """Cancel the running job and wait for its worker (at most ``timeout_ms``); a worker still
        running while Qt tears the window down would crash the process. Returns a problem, if any."""
        job = self.current
        if job is not None and job.running:
            job.cancel()
        if job is None or job.worker is None:
            return None
        problem = None
        try:
            WorkerBase.await_workers(timeout_ms)
        except RuntimeError as exc:  # timed out: closing must go on
            problem = f"a background task did not stop in time: {exc}"
        # its queued signals will not be delivered any more: let go of the job
        for signal in (job.worker.yielded, job.worker.returned, job.worker.errored, job.worker.finished):
            with contextlib.suppress(TypeError, RuntimeError):
                signal.disconnect()
        job.worker = None
        return problem
