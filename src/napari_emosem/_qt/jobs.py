"""Run a task generator in a napari thread worker, or synchronously for deterministic tests.

``EMOSEM_SYNC_WORKERS=1`` (or ``synchronous=True``) runs tasks on the GUI thread, the way
stardist-napari does for its tests; the threaded path is the default and is what users get.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any


def sync_workers_default() -> bool:
    return os.environ.get("EMOSEM_SYNC_WORKERS", "").strip().lower() in ("1", "true", "yes")


class Job:
    """A running (or finished) task; ``cancel()`` stops it at its next progress step."""

    def __init__(self, name: str):
        self.name = name
        self.worker = None
        self.running = True
        self.cancelled = False
        #: napari's progress bar when the caller drives it (``steps=None``), else None
        self.bar = None

    def cancel(self) -> None:
        self.cancelled = True
        if self.worker is not None:
            self.worker.quit()

    def report(self, done: int, total: int, description: str | None = None) -> None:
        """Move a caller-driven progress bar to ``done`` of ``total`` (0: busy indicator)."""
        bar = self.bar
        if bar is None:
            return
        if total != bar.total:
            bar.total = total
        if done != bar.n:
            bar.update(done - bar.n)
        if description and description != bar.desc:
            bar.set_description(description)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def start_job(
    name: str,
    generator_function: Callable[..., Iterator[Any]],
    *args: Any,
    on_yield: Callable[[Any], None],
    on_return: Callable[[Any], None],
    on_error: Callable[[BaseException], None],
    on_finish: Callable[[Job], None],
    steps: int | None = 0,
    synchronous: bool = False,
) -> Job:
    """Start ``generator_function(*args)``; callbacks run on the GUI thread.

    ``steps`` (the number of yields) drives napari's progress bar; 0 shows a busy indicator;
    None: the caller drives the bar with :meth:`Job.report` (a task that learns its length as it
    goes, such as training). ``on_finish`` runs last in every case (done, failed, cancelled).
    """
    job = Job(name)

    def finish(*_: Any) -> None:
        job.running = False
        job.close_bar()
        on_finish(job)

    if synchronous:
        from .tasks import run_sync

        try:
            result = run_sync(generator_function(*args), on_yield)
        except Exception as exc:  # a bug in a task: report it like the threaded path does
            on_error(exc)
        else:
            on_return(result)
        finish()
        return job

    from napari.qt.threading import create_worker

    if steps is None:
        from napari.utils import progress

        job.bar = progress(total=0, desc=name)
    worker = create_worker(
        generator_function,
        *args,
        _start_thread=False,
        _progress={"total": steps, "desc": name} if steps is not None else None,
        # errors are reported by on_error (and by napari's own notification of worker errors)
        _ignore_errors=True,
    )
    job.worker = worker
    worker.yielded.connect(on_yield)
    worker.returned.connect(on_return)
    worker.errored.connect(on_error)
    worker.finished.connect(finish)
    worker.start()
    return job
