"""The queue of a campaign: its paintings that are not done (nor skipped), in the order that should
teach the model most (``emosem queue``; the navigator sorts by it). The orders themselves are in
:mod:`.queue`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..data import Painting
from ..errors import EmoSEMError
from .queue import QueueEntry, QueueOrder, rank, score_candidates
from .settings import CampaignSettings, read_settings
from .status import PaintingStatus, campaign_progress

#: on_painting(done, total, painting, error): after each painting the model looked at; ``error``
#: is None, or one line saying why the painting was left out
OnPainting = Callable[[int, int, Painting, str | None], None]


@dataclass
class QueueReport:
    order: QueueOrder
    emotions: tuple[str, ...]
    #: the ranked paintings, best first (the first ``top`` when asked)
    entries: list[QueueEntry]
    #: paintings that could be queued (neither done nor skipped) / done / skipped
    candidates: int
    done: int
    skipped: int
    #: (file name, why) of paintings left out because they could not be read
    failed: list[tuple[str, str]] = field(default_factory=list)

    def to_json(self, model: str) -> dict:
        """The ``emosem queue --json`` document."""
        return {
            "model": model,
            "order": self.order.value,
            "emotions": list(self.emotions),
            "paintings": {
                "candidates": self.candidates,
                "done": self.done,
                "skipped": self.skipped,
                "failed": len(self.failed),
            },
            "queue": [entry.to_json() for entry in self.entries],
            "failed": [{"painting": name, "error": why} for name, why in self.failed],
        }


def queue_paintings(
    dataset,
    predictor,
    *,
    order: QueueOrder | str = QueueOrder.UNCERTAINTY,
    top: int | None = None,
    seed: int = 0,
    settings: CampaignSettings | None = None,
    on_painting: OnPainting | None = None,
) -> QueueReport:
    """Rank the paintings of ``dataset`` (a :class:`~napari_emosem.data.StimulusDataset`) that are
    neither done nor skipped, with ``predictor`` (any :class:`~napari_emosem.predictor.Predictor`).

    Each candidate's uncertainty is measured on the campaign's emotions it still lacks a reviewed
    record for; ``diversity`` also reads the done paintings' features, to start far from them.
    A painting whose image cannot be read is left out and reported (``failed``); the rest are
    ranked.
    """
    try:
        order = QueueOrder(order)
    except ValueError:
        raise EmoSEMError(f"unknown order {order!r}: choose {', '.join(o.value for o in QueueOrder)}") from None
    check_top(top)
    settings = settings or read_settings(dataset.root)
    progress = campaign_progress(dataset, settings)
    open_ = [p for p in progress.paintings if p.status not in (PaintingStatus.DONE, PaintingStatus.SKIPPED)]
    done = [p.painting for p in progress.paintings if p.status is PaintingStatus.DONE]
    tally = _Tally(len(open_) + (len(done) if order is QueueOrder.DIVERSITY else 0), on_painting)
    candidates = _uncertainties(open_, dataset, predictor, settings.emotions, tally)
    annotated = _features(done, dataset, predictor, tally) if order is QueueOrder.DIVERSITY else []
    entries = rank(candidates, order, annotated=np.stack(annotated) if annotated else None, top=top, seed=seed)
    return QueueReport(
        order=order,
        emotions=tuple(settings.emotions),
        entries=entries,
        candidates=len(open_),
        done=len(done),
        skipped=progress.count(PaintingStatus.SKIPPED),
        failed=tally.failed,
    )


@dataclass
class _Tally:
    """Counts the paintings read for ``on_painting`` and keeps those that could not be read."""

    total: int
    on_painting: OnPainting | None
    seen: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, painting: Painting, error: str | None) -> None:
        self.seen += 1
        if error is not None:
            self.failed.append((painting.file_name, error))
        if self.on_painting:
            self.on_painting(self.seen, self.total, painting, error)


def _uncertainties(open_, dataset, predictor, emotions, tally: _Tally) -> list:
    """The open paintings' candidates, scored on the emotions each still lacks a reviewed record for."""
    candidates = []
    for item in open_:
        missing = [e for e in emotions if e not in item.reviewed]
        try:
            candidates += score_candidates([item.painting], dataset.image, predictor, missing)
        except (EmoSEMError, OSError) as exc:
            tally(item.painting, _one_line(exc))
            continue
        tally(item.painting, None)
    return candidates


def _features(done: list[Painting], dataset, predictor, tally: _Tally) -> list[np.ndarray]:
    """The done paintings' image features (diversity starts far from them)."""
    annotated = []
    for painting in done:
        try:
            predictor.set_image(dataset.image(painting))
            annotated.append(np.asarray(predictor.image_features(), np.float64).ravel())
        except (EmoSEMError, OSError) as exc:
            tally(painting, _one_line(exc))
            continue
        tally(painting, None)
    return annotated


def check_top(top: int | None) -> None:
    if top is not None and top < 1:
        raise EmoSEMError(f"--top {top}: give at least 1 (or leave it out for every painting)")


def _one_line(exc: Exception) -> str:
    if isinstance(exc, OSError):
        from .._io import describe_os_error

        return describe_os_error(exc)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
