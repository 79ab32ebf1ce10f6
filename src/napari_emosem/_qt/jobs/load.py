"""Load the chosen model before the annotator asks for a proposal."""

from __future__ import annotations

from collections.abc import Iterator

from ...errors import EmoSEMError
from .base import Done, Failed, Step
from .model import ModelJob


class LoadJob(ModelJob):
    """Loading torch's C++ libraries and building a model hold the interpreter lock for up to half
    a second at a time, which freezes napari's event loop; done when the annotator opens or picks
    another model, it does not happen in the middle of a propose, and errors (missing weights, a
    bad checkpoint) show up at once."""

    name = "load model"
    steps = 1
    holds_painting = False  # no painting in it: the annotator may open another meanwhile

    def work(self) -> Iterator[Step]:
        yield Step(f"loading {self.spec}", kind="loading")
        try:
            predictor, _, _ = self.predictor(with_painting=False)
        except EmoSEMError as exc:
            return Failed(str(exc))
        return self.done(predictor, f"ready: {predictor.description}")

    def on_done(self, result: Done) -> None:
        self.controller.status(f"{result.message} (loaded in {result.seconds:.1f} s)")
