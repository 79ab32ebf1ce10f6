"""Draft an explanation for the annotator's current mask of one emotion."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ...errors import EmoSEMError
from .base import Done, Failed, Step
from .model import ModelJob


class ExplainJob(ModelJob):
    name = "draft text"
    steps = 1
    fills_layers = True

    def __init__(self, controller, cache, session, emotion: str):
        super().__init__(controller, cache, session)
        self.emotion = emotion
        self.mask = session[emotion].mask.copy()  # the mask as it is now, not as it may become

    def work(self) -> Iterator[Step]:
        try:
            predictor, _, _ = self.predictor()
            yield Step(f"drafting the {self.emotion} explanation", kind="encoded")
            if not np.any(self.mask):
                return Failed(f"the {self.emotion} mask is empty: draw the stimulus first, then draft its explanation")
            text = predictor.explain(self.emotion, self.mask)
        except EmoSEMError as exc:
            return Failed(str(exc))
        return self.done(predictor, f"drafted the {self.emotion} explanation", texts={self.emotion: text})

    def on_done(self, result: Done) -> None:
        if not self.for_current_painting:
            return
        self.session.set_explanation(self.emotion, result.texts[self.emotion], from_model=True, model=result.model)
        self.controller.status(f"{result.model}: {result.message}")
