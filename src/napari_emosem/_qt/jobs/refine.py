"""Re-decode one emotion's mask with the annotator's clicks (from the cached embedding)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ...errors import EmoSEMError
from .base import Done, Failed, Step
from .model import ModelJob


class RefineJob(ModelJob):
    name = "refine"
    steps = 1
    fills_layers = True

    def __init__(self, controller, cache, session, emotion: str, points: np.ndarray, labels: np.ndarray):
        super().__init__(controller, cache, session)
        self.emotion = emotion
        self.points = np.asarray(points, np.float64)
        self.labels = np.asarray(labels, np.int64)

    def work(self) -> Iterator[Step]:
        try:
            predictor, _, _ = self.predictor()
            yield Step(f"refining {self.emotion}", kind="encoded")
            proposal = predictor.refine(self.emotion, self.points, self.labels, explain=False)
        except EmoSEMError as exc:
            return Failed(str(exc))
        n = len(self.points)
        message = f"refined {self.emotion} with {n} click{'s' if n != 1 else ''}"
        return self.done(predictor, message, proposals=(proposal,))

    def on_done(self, result: Done) -> None:
        if not self.for_current_painting:
            return
        self.session.apply_refinement(
            result.proposals[0], source=result.source, model=result.model, points=self.points, labels=self.labels
        )
        self.controller.status(f"{result.model}: {result.message} ({result.seconds * 1000:.0f} ms)")
