"""Re-propose the rest: every painting of the campaign that is not done gets the model's drafts.

After Fine-tune the model in use is the new checkpoint; the campaign's unreviewed drafts are the
old model's. :func:`napari_emosem.propose.propose_pending` proposes again for every painting that
is neither done nor skipped, one painting per step, never touching a reviewed pair; this job runs
it in the background (the annotator's own jobs pause it between two paintings) with progress and
Cancel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from psygnal import Signal, SignalGroup

from ...data import Stimulus, StimulusDataset
from ...errors import EmoSEMError
from ...image_io import image_digest
from ...propose import propose_pending
from .base import Failed
from .model import CampaignModelJob


@dataclass(frozen=True)
class PendingStep:
    """One painting re-proposed (or not: ``error``), with its records as written."""

    index: int
    total: int
    file_name: str
    error: str | None
    records: tuple[Stimulus, ...] = ()

    @property
    def message(self) -> str:
        what = f"could not re-propose {self.file_name}: {self.error}" if self.error else f"re-proposed {self.file_name}"
        return f"{self.index} of {self.total}: {what}"


@dataclass(frozen=True)
class Reproposed:
    done: int
    total: int
    failed: tuple[str, ...]


class ReproposeEvents(SignalGroup):
    #: paintings done, of how many, and the last one's line
    progress = Signal(int, int, str)
    #: it ended: done, cancelled or failed, in one line
    ended = Signal(str)


class ReproposeJob(CampaignModelJob):
    """``propose_pending`` over the campaign at ``root`` with the model in use, for ``emotions``."""

    name = "re-propose the rest"

    def __init__(
        self,
        controller,
        cache,
        root: Path,
        emotions: Sequence[str],
        *,
        on_painting: Callable[[ReproposeJob, PendingStep], None] | None = None,
    ):
        super().__init__(controller, cache)
        self.root, self.emotions = Path(root), tuple(emotions)
        self.events = ReproposeEvents()
        #: paintings re-proposed so far, of how many (as the GUI thread has seen them)
        self.done_count = self.total = 0
        self._pending = None
        #: the model's description (known once it is loaded)
        self.model = ""
        #: ``on_painting(job, step)``: a painting was re-proposed (GUI thread)
        self.on_painting = on_painting

    def work(self) -> Iterator[PendingStep]:
        try:
            predictor, _, _ = self.predictor(with_painting=False)
            self.model = predictor.description
            # opened here, not shared with the GUI thread: the two write under the dataset's lock
            dataset = StimulusDataset.open(self.root)
            self._pending = propose_pending(dataset, _ThroughCache(predictor, self.cache), emotions=list(self.emotions))
            done, total, failed = 0, 0, []  # counted here: the GUI thread may not have seen the last step yet
            for step in self._pending:
                done, total = step.index, step.total
                if step.error:
                    failed.append(step.file_name)
                records = () if step.error else tuple(dataset.records(step.file_name))
                yield PendingStep(step.index, step.total, step.file_name, step.error, records)
        except EmoSEMError as exc:
            return Failed(str(exc))
        return Reproposed(done, total, tuple(failed))

    def on_step(self, step: PendingStep) -> None:
        self.done_count, self.total = step.index, step.total
        if self.on_painting is not None:
            self.on_painting(self, step)
        self.events.progress.emit(step.index, step.total, step.message)

    def on_done(self, result: Reproposed) -> None:
        self._close()
        names = ", ".join(result.failed[:3]) + ("…" if len(result.failed) > 3 else "")
        failed = f"; {len(result.failed)} could not be: {names}" if result.failed else ""
        self.events.ended.emit(f"re-proposed {result.done} painting{'s' if result.done != 1 else ''}{failed}")

    def on_cancelled(self) -> None:
        self._close()
        done = f"{self.done_count} of {self.total} paintings"
        self.events.ended.emit(f"re-proposing cancelled after {done} (those keep their new drafts)")

    def on_failed(self, message: str) -> None:
        self._close()
        self.events.ended.emit(f"could not re-propose: {message}")

    def _close(self) -> None:
        # the worker has finished: closing the core's generator here is safe (it stops cleanly)
        if self._pending is not None:
            self._pending.close()
            self._pending = None


class _ThroughCache:
    """The predictor, with ``set_image`` going through the annotator's :class:`PredictorCache`, so
    that it knows which painting the predictor holds after each one re-proposed."""

    def __init__(self, predictor, cache):
        self._predictor, self._cache = predictor, cache

    def set_image(self, image) -> None:
        if self._cache.loaded is self._predictor:
            self._cache.set_image(self._predictor, image, image_digest(image))
        else:
            self._predictor.set_image(image)

    def __getattr__(self, name):
        return getattr(self._predictor, name)
