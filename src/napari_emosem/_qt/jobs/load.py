"""Load the chosen model before the annotator asks for a proposal."""

from __future__ import annotations

import contextlib
import gc
import importlib
from collections.abc import Iterator

from ...errors import EmoSEMError
from .base import Done, Failed, Step
from .model import ModelJob

#: What the first painting would otherwise import on the GUI thread: napari imports pandas, xarray,
#: scipy.ndimage and skimage.color the first time it makes an Image and a Labels layer, and the
#: dataset decodes masks with pycocotools. Imported in this worker while the model loads, they
#: cost opening the first painting nothing (about 0.5 s of a 2-core CPU's GUI thread otherwise).
FIRST_PAINTING_IMPORTS = ("pandas", "xarray", "scipy.ndimage", "skimage.color", "pycocotools.mask")


def import_ahead() -> None:
    for name in FIRST_PAINTING_IMPORTS:
        with contextlib.suppress(ImportError):  # napari does without some of them
            importlib.import_module(name)
    # torch, the model and these add some 400,000 objects; Python's next full cyclic collection
    # comes once new objects outnumber a quarter of the old, which would be while the first
    # campaign opens (0.35 s of it here): run it now, while the annotator waits for the model
    gc.collect()


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
        import_ahead()
        plan = getattr(predictor, "plan", None)  # EmoSEM's: what "precision" resolved to here
        arithmetic = f" ({plan.label})" if plan is not None else ""
        return self.done(predictor, f"ready: {predictor.description}{arithmetic}")

    def on_done(self, result: Done) -> None:
        self.controller.status(f"{result.message} (loaded in {result.seconds:.1f} s)")
