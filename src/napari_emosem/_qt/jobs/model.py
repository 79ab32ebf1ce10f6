"""What the jobs of the chosen model share: the cached predictor, the model in use, the painting."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ...annotation import AnnotationSession
from ...predictor import Predictor
from ...predictor_cache import PredictorCache
from .base import Done, Job, limit_torch_threads, prepare_worker_thread

if TYPE_CHECKING:
    from ..controller import AnnotatorController


class ModelJob(Job):
    """A job of the model chosen when it starts, on ``session``'s painting (if any).

    Its results go to that session, and only while it is the annotator's current one: a painting
    the annotator left meanwhile is not changed behind their back.
    """

    def __init__(self, controller: AnnotatorController, cache: PredictorCache, session: AnnotationSession | None):
        super().__init__()
        self.controller, self.cache, self.session = controller, cache, session
        choice = controller.model  # the model in force when the job starts
        self.spec, self.device, self.precision = choice.spec, choice.device, choice.precision
        self.started = 0.0

    @property
    def for_current_painting(self) -> bool:
        return self.session is not None and self.session is self.controller.session

    def predictor(self, *, with_painting: bool = True) -> tuple[Predictor, bool, bool]:
        """In the worker, first: ``(predictor, loaded it now, encoded the painting now)``."""
        self.started = time.perf_counter()
        prepare_worker_thread()
        predictor, loaded = self.cache.predictor(self.spec, self.device, self.precision)
        limit_torch_threads()
        encoded = False
        if with_painting and self.session is not None:
            encoded = self.cache.set_image(predictor, self.session.image, self.session.digest)
        return predictor, loaded, encoded

    def done(self, predictor: Predictor, message: str, **results: Any) -> Done:
        return Done(
            message=message,
            source=predictor.source,
            model=predictor.description,
            seconds=time.perf_counter() - self.started,
            **results,
        )


class CampaignModelJob(ModelJob):
    """A model job over the campaign rather than the open painting (prefetch, re-propose the rest,
    sort by the queue): a background job that the annotator's own jobs pause between two steps,
    with no step count known ahead, during which the annotator may open another painting."""

    steps = None
    background = True
    holds_painting = False

    def __init__(self, controller: AnnotatorController, cache: PredictorCache):
        super().__init__(controller, cache, None)
