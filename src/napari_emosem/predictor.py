"""The one interface the CLI, the widget, training and evaluation use to get proposals.

A :class:`Predictor` works on one painting at a time, like segment_anything's ``SamPredictor``:
``set_image`` does the expensive per-painting work once (EmoSEM: the image embedding; starter:
regions and features); ``propose``, ``refine`` and ``explain`` are then cheap.

Coordinates follow napari: points are ``(row, col)`` in the painting's pixels.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Proposal:
    """A model's draft for one (painting, emotion) pair."""

    emotion: str
    #: bool (H, W) at the painting's own resolution
    mask: np.ndarray
    #: the model's confidence in [0, 1] (EmoSEM: its predicted IoU; starter: the region's score)
    score: float
    explanation: str = ""
    #: soft map in [0, 1], float32 (H, W), when asked for (the APOLO metric thresholds it)
    probability: np.ndarray | None = field(default=None, repr=False)


class Predictor(abc.ABC):
    """Proposes stimulus masks and explanation drafts for one painting at a time."""

    #: short id, e.g. ``"starter"``, ``"tiny"``, ``"vit_b"`` or a checkpoint id
    name: str = "predictor"
    #: True for models that have learned nothing from annotations (drafts to start the loop)
    cold_start: bool = False

    @property
    def source(self) -> str:
        """What the dataset's ``source`` field records for this model's drafts."""
        return f"model:{self.name}"

    @property
    def description(self) -> str:
        """A phrase for status lines: which model proposed this."""
        return self.name

    @abc.abstractmethod
    def set_image(self, image: np.ndarray) -> None:
        """Prepare for one painting (RGB uint8, H × W × 3)."""

    @abc.abstractmethod
    def propose(
        self,
        emotions: Sequence[str],
        *,
        explain: bool = True,
        with_probability: bool = False,
    ) -> list[Proposal]:
        """One proposal per emotion, in the order given."""

    @abc.abstractmethod
    def refine(
        self,
        emotion: str,
        points: np.ndarray,
        labels: np.ndarray,
        *,
        explain: bool = False,
    ) -> Proposal:
        """Re-propose ``emotion`` given clicks: ``points`` (N, 2) as (row, col), ``labels`` 1 = in, 0 = out."""

    @abc.abstractmethod
    def explain(self, emotion: str, mask: np.ndarray) -> str:
        """Draft an explanation of why ``mask`` (bool H × W) evokes ``emotion``."""

    # Helpers shared by implementations -------------------------------------------------------

    def _require_image(self):
        image = getattr(self, "_image", None)
        if image is None:
            raise RuntimeError("call set_image(painting) before propose/refine/explain")
        return image

    def image_features(self) -> np.ndarray:
        """A feature vector of the current painting, for choosing varied paintings to annotate
        next (compared by cosine distance; see ``campaign.queue``). Here a model-free one: a
        colour histogram and a grey thumbnail of the image."""
        from .campaign.queue import colour_features

        return colour_features(self._require_image())


def check_points(points, labels, shape) -> tuple[np.ndarray, np.ndarray]:
    """Validate click prompts against a painting of ``shape`` (H, W, ...)."""
    from .errors import EmoSEMError

    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if len(points) != len(labels):
        raise EmoSEMError(f"{len(points)} points but {len(labels)} labels; give one label per point")
    if np.any(~np.isin(labels, (0, 1))):
        raise EmoSEMError("point labels must be 1 (inside the stimulus) or 0 (outside)")
    h, w = shape[:2]
    inside = (points[:, 0] >= 0) & (points[:, 0] < h) & (points[:, 1] >= 0) & (points[:, 1] < w)
    return points[inside], labels[inside]
