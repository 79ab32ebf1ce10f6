"""Keeps one loaded predictor, and knows which painting it was given, across background tasks.

Loading a model and encoding a painting are the slow parts of a proposal; an annotator proposes,
refines and drafts many times on the same painting with the same model. No Qt here: the napari
annotator's thread workers use it, and so could any other front end.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .loading import load_predictor
from .predictor import Predictor


class PredictorCache:
    """The predictor of the last (model spec, device) asked for, and the painting it holds.

    Used from one worker at a time: the annotator starts a task only when the previous one has
    finished. (No lock: a cancelled task stays suspended at a ``yield``, and a lock held across
    that yield would block every later task.)
    """

    def __init__(self, loader: Callable[..., Predictor] | None = None):
        """``loader(spec, device=..., precision=...)``: default :func:`napari_emosem.loading.load_predictor`."""
        self._loader = loader or load_predictor
        self._key: tuple[str, str, str] | None = None
        self._predictor: Predictor | None = None
        self._digest: str | None = None

    @property
    def loaded(self) -> Predictor | None:
        """The predictor loaded last, if any (it may hold a painting already)."""
        return self._predictor

    def predictor(self, spec: str, device: str, precision: str = "auto") -> tuple[Predictor, bool]:
        """The predictor for (spec, device, precision: one of ``precision.PRECISIONS``), loading
        it if needed; also says whether it loaded."""
        key = (str(spec), str(device), str(precision))
        if self._predictor is not None and self._key == key:
            return self._predictor, False
        self._predictor = None
        self._digest = None
        self._predictor = self._loader(spec, device=device, precision=precision)  # torch is imported here, in a worker
        self._key = key
        return self._predictor, True

    def set_image(self, predictor: Predictor, rgb: np.ndarray, digest: str) -> bool:
        """Give the painting to the predictor unless it already has it; True if it did work."""
        if self._digest == digest:
            return False
        self._digest = None
        predictor.set_image(rgb)
        self._digest = digest
        return True
