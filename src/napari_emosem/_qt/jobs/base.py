"""Background work of the annotator: one :class:`Job` subclass per kind, run by :class:`JobRunner`.

A job's :meth:`Job.work` is a generator that runs in a napari thread worker (torch is imported
only there): it receives pixels and paths, never a layer or a widget, and every ``yield`` is a
progress step and the point where Cancel takes effect. Its ``on_*`` methods run on the GUI thread
and put the results in place. Errors a user can cause (a bad checkpoint, weights missing offline)
come back as :class:`Failed` with one clear line; anything else is a bug, logged with its
traceback.

A *background* job (:attr:`Job.background`: the next painting prefetched, the rest of a
campaign re-proposed) runs only while the annotator asks for nothing: when they start a job of
their own, the background one is paused at its next step and resumed once theirs has ended. It
never makes the annotator busy, and reports through its own events, not the status line.

``EMOSEM_SYNC_WORKERS=1`` (or ``synchronous=True``) runs jobs on the GUI thread, the way
stardist-napari does for its tests; the threaded path is the default and is what users get.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
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
    #: yields to the annotator's jobs (paused while one runs); see the module docstring
    background = False

    def __init__(self) -> None:
        self.running = False
        self.cancelled = False
        #: open: a background job may go on to its next step (the runner closes it to pause it)
        self.gate = threading.Event()
        self.gate.set()
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

    def on_failed(self, message: str) -> None:
        """A background job returned :class:`Failed` (GUI thread); the annotator's jobs' failures
        go to the status line instead."""

    def on_cancel(self) -> None:
        """Cancel was asked for: wake the worker if it waits for the GUI."""

    def cancel(self) -> None:
        self.cancelled = True
        if self.worker is not None:
            self.worker.quit()
        self.gate.set()  # a paused job wakes to stop
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


#: what a paused background job yields once it has stopped between two steps
PAUSED = object()


def _gated(job: Job) -> Iterator[Any]:
    """``job.work()`` that stops between two steps while ``job.gate`` is closed (in the worker)."""
    steps = job.work()
    while True:
        try:
            step = next(steps)
        except StopIteration as stop:
            return stop.value
        yield step
        if not job.gate.is_set():
            yield PAUSED
            job.gate.wait()


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
    """Runs the annotator's jobs one at a time, and one background job while they ask for nothing;
    in thread workers or (``synchronous``) on the calling thread."""

    def __init__(self, *, synchronous: bool = False):
        self.synchronous = synchronous
        self.events = RunnerEvents()
        #: the annotator's job that runs (or starts)
        self.current: Job | None = None
        #: the background job (running, or paused while the annotator's runs)
        self.background: Job | None = None
        #: the annotator's job waiting for the background one to pause
        self._pending: Job | None = None
        #: the background job has stopped between two steps and waits for its gate
        self._parked = False
        #: a background job waiting for the runner to be idle
        self._queued: Job | None = None
        self._starting = False
        self._value = 0

    @property
    def busy(self) -> bool:
        """True while one of the annotator's jobs starts, waits or runs (background jobs aside)."""
        return self._starting or self._pending is not None or (self.current is not None and self.current.running)

    @property
    def idle(self) -> bool:
        """Nothing runs at all: a background job may start."""
        return not self.busy and self.background is None

    def start(self, job: Job) -> Job:
        """Start ``job``. The annotator's job first pauses a running background job (and starts
        once it has paused); a background job starts when the runner is :attr:`idle` (until then
        it waits, in place of any other waiting)."""
        if job.background:
            if not self.idle:
                self._queued = job
                return job
            self.background = job
            return self._launch(job)
        if self.background is not None and not self.synchronous and not self._parked:
            self._pending = job
            self.background.gate.clear()  # it yields PAUSED between two steps: _on_paused starts this
            return job
        return self._launch(job)

    def _launch(self, job: Job) -> Job:
        job.runner, job.running = self, True
        if not job.background:
            self.current = job
            self._value = 0
        self.events.started.emit(job)
        if not job.background:
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

    def _on_paused(self) -> None:
        self._parked = True
        pending, self._pending = self._pending, None
        if pending is not None:
            self._launch(pending)
        elif self.current is None:
            self._resume_background()

    def cancel(self, job: Job | None = None) -> bool:
        """Stop ``job`` (default: the annotator's running job) at its next step; False if it does
        not run."""
        if job is None:
            if self._pending is not None:
                pending, self._pending = self._pending, None
                pending.cancelled = True
                self._resume_background()
                self.events.finished.emit(pending)
                return True
            job = self.current
        if job is not None and job is self._queued:  # it never started
            self._queued, job.cancelled = None, True
            job.on_cancelled()
            self.events.finished.emit(job)
            return True
        if job is None or not job.running:
            return False
        job.cancel()
        return True

    def _resume_background(self) -> None:
        if self.background is not None:
            self._parked = False
            self.background.gate.set()

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
        show_bar = not job.background
        if job.steps is None and show_bar:
            job.bar = progress(total=0, desc=f"EmoSEM: {job.name}")
        bar = {"total": job.steps, "desc": f"EmoSEM: {job.name}"} if (job.steps is not None and show_bar) else None
        worker = create_worker(
            _gated if job.background else job.work,
            *((job,) if job.background else ()),
            _start_thread=False,
            _progress=bar,
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
        if step is PAUSED:
            self._on_paused()
            return
        if not job.background:
            if job.steps is not None:
                self._value = min(self._value + 1, job.steps)
                self.events.progress.emit(self._value, job.steps, f"{job.name}: %v/%m")
            self.events.status.emit(step.message)
        job.on_step(step)
        self.events.stepped.emit(step)

    def _returned(self, job: Job, result: Any) -> None:
        if isinstance(result, Failed):
            if job.background:  # its own business: the annotator did not ask for it
                job.on_failed(result.message)
            else:
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
        if self.background is job:
            self.background, self._parked = None, False
            pending, self._pending = self._pending, None
            if pending is not None:  # it ended before it could pause
                self._launch(pending)
        elif not job.background:
            self._resume_background()
        queued = self._queued
        if queued is not None and self.idle:
            self._queued = None
            self.background = queued
            self._launch(queued)
        self.events.finished.emit(job)

    def shutdown(self, timeout_ms: int) -> str | None:
        """Cancel the running jobs and wait for their workers (at most ``timeout_ms``); a worker
        still running while Qt tears the window down would crash the process. Returns a problem,
        if any."""
        self._pending = self._queued = None
        jobs = [job for job in (self.current, self.background) if job is not None]
        for job in jobs:
            if job.running:
                job.cancel()
        workers = [job for job in jobs if job.worker is not None]
        if not workers:
            return None
        problem = None
        try:
            WorkerBase.await_workers(timeout_ms)
        except RuntimeError as exc:  # timed out: closing must go on
            problem = f"a background task did not stop in time: {exc}"
        # their queued signals will not be delivered any more: let go of the jobs
        for job in workers:
            worker = job.worker
            for signal in (worker.yielded, worker.returned, worker.errored, worker.finished):
                with contextlib.suppress(TypeError, RuntimeError):
                    signal.disconnect()
            job.worker = None
        return problem
