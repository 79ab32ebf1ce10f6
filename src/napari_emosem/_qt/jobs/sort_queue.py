"""Sort the navigator by the queue: ``campaign.annotate_next.queue_paintings`` in the background.

The model looks at every painting that is neither done nor skipped (``emosem queue``), which takes
a while on a large campaign: the job runs it with progress and Cancel, and pauses between two
paintings while the annotator's own jobs run (the core's function reports each painting through a
callback, so it runs in a thread of its own that waits at each painting until the job goes on).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from psygnal import Signal, SignalGroup

from ...campaign.annotate_next import QueueReport, queue_paintings
from ...data import StimulusDataset
from ...errors import EmoSEMError
from .base import Failed
from .model import CampaignModelJob
from .repropose import _ThroughCache


@dataclass(frozen=True)
class QueueStep:
    """The model looked at one painting (``error``: why it was left out)."""

    index: int
    total: int
    file_name: str
    error: str | None

    @property
    def message(self) -> str:
        what = f"left out {self.file_name}: {self.error}" if self.error else self.file_name
        return f"{self.index} of {self.total}: {what}"


class SortQueueEvents(SignalGroup):
    #: paintings looked at, of how many, and the last one's line
    progress = Signal(int, int, str)
    #: it ended: sorted, cancelled or failed, in one line
    ended = Signal(str)


class _Stopped(Exception):
    """The job was cancelled: the core's loop stops at its next painting."""


class SortQueueJob(CampaignModelJob):
    """``queue_paintings(order=...)`` over the campaign at ``root`` with the model in use;
    ``on_sorted(report)`` gets the :class:`QueueReport` (GUI thread)."""

    name = "sort by the queue"

    def __init__(self, controller, cache, root: Path, order: str, *, on_sorted: Callable[[QueueReport], None]):
        super().__init__(controller, cache)
        self.root, self.order, self.on_sorted = Path(root), str(order), on_sorted
        self.events = SortQueueEvents()
        self._release: Callable[[], None] | None = None

    def work(self) -> Iterator[QueueStep]:
        try:
            predictor, _, _ = self.predictor(with_painting=False)
            dataset = StimulusDataset.open(self.root)  # the worker's own: the GUI thread's is not shared
        except EmoSEMError as exc:
            return Failed(str(exc))
        steps: queue.Queue = queue.Queue()
        go_on = threading.Semaphore(0)
        stop = threading.Event()
        outcome: dict = {}

        def on_painting(done: int, total: int, painting, error: str | None) -> None:
            steps.put(QueueStep(done, total, painting.file_name, error))
            go_on.acquire()  # until the job goes on: not while it is paused
            if stop.is_set():
                raise _Stopped

        def run() -> None:
            try:
                outcome["report"] = queue_paintings(
                    dataset, _ThroughCache(predictor, self.cache), order=self.order, on_painting=on_painting
                )
            except _Stopped:
                pass
            except EmoSEMError as exc:
                outcome["error"] = str(exc)
            finally:
                steps.put(None)

        def release() -> None:
            stop.set()
            go_on.release()

        self._release = release
        thread = threading.Thread(target=run, name="emosem-queue", daemon=True)
        thread.start()
        try:
            while (step := steps.get()) is not None:
                yield step
                go_on.release()
        finally:  # also when cancelled: the thread stops at its next painting
            release()
            thread.join()
        if "error" in outcome:
            return Failed(outcome["error"])
        return outcome.get("report")

    def on_step(self, step: QueueStep) -> None:
        self.events.progress.emit(step.index, step.total, step.message)

    def on_done(self, report: QueueReport | None) -> None:
        if report is None:
            self.events.ended.emit("sorting by the queue stopped")
            return
        self.on_sorted(report)
        left_out = f"; {len(report.failed)} left out" if report.failed else ""
        self.events.ended.emit(f"sorted by the queue ({report.order.value}): {len(report.entries)} paintings{left_out}")

    def on_cancelled(self) -> None:
        # the worker may have stopped at a step without closing the generator: let the thread end
        if self._release is not None:
            self._release()
        self.events.ended.emit("sorting by the queue cancelled: the list keeps its order")

    def on_failed(self, message: str) -> None:
        self.events.ended.emit(f"could not sort by the queue: {message}")
