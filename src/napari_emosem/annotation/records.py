"""One emotion's annotation of a painting: its mask, explanation, provenance and the decision on it.

Provenance rules (what the dataset's ``source`` / ``edited`` / ``reviewed`` fields record):

* A model's proposal: ``source = "model:<name>"``, ``edited = False``, status *proposed*.
* The annotator changes that mask (paint, erase, fill, or clicks that re-decode it) or its text:
  ``source`` stays ``"model:<name>"`` (the model still drafted it) and ``edited = True``.
* A mask or text the annotator makes where no model proposed anything: ``source = "human"``,
  ``edited = False`` (nothing of a model's was changed), status *accepted* (a person made it).
* :attr:`EmotionAnnotation.reviewed` is the one rule for "a person's work": accepted, marked no
  stimulus, edited, or made by a person. A model proposal never replaces a reviewed annotation
  unless the annotator says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from ..emotions import normalise_emotion
from ..errors import EmoSEMError

HUMAN = "human"


class Status(StrEnum):
    """What the annotator decided about one emotion's annotation."""

    PROPOSED = "proposed"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    NO_STIMULUS = "no stimulus"


@dataclass
class EmotionAnnotation:
    """One emotion's annotation of the painting."""

    emotion: str
    #: bool (H, W) at the painting's resolution; all False for "no stimulus"
    mask: np.ndarray = field(repr=False)
    explanation: str = ""
    #: further explanations kept from the dataset (ArtEmis has several per pair); exported after
    #: ``explanation``
    more_explanations: list[str] = field(default_factory=list)
    score: float | None = None
    source: str = HUMAN
    #: the model's own description (for status lines), when a model proposed this
    model: str | None = None
    #: the model's explanation draft, to tell whether the annotator changed the text
    draft: str = ""
    mask_edited: bool = False
    text_edited: bool = False
    status: Status = Status.PROPOSED
    annotator: str | None = None
    created: str | None = None
    modified: str | None = None
    #: clicks that refined this mask, (N, 2) as (row, col), and their labels (1 in, 0 out)
    clicks: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)), repr=False)
    click_labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64), repr=False)
    #: active annotation time stored from earlier visits, in seconds (the record's
    #: ``annotation_seconds``; this visit's time is the session's, see ``set_active_time``)
    seconds: float = 0.0
    #: the record's other fields this project does not edit (kept as they are)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def edited(self) -> bool:
        """Did a person change the model's proposal (mask or text)?"""
        return self.mask_edited or self.text_edited

    @property
    def from_model(self) -> bool:
        return self.source.startswith("model:")

    @property
    def reviewed(self) -> bool:
        """Did a person look at this (decided, edited, or made it)? Such work is never replaced
        by a model proposal without the annotator's explicit choice."""
        return self.status in (Status.ACCEPTED, Status.NO_STIMULUS) or self.edited or not self.from_model

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))

    def set_clicks(self, points, labels) -> None:
        """The clicks that refine this mask, as (row, col) and labels (1 inside, 0 outside)."""
        points = np.asarray(points, np.float64).reshape(-1, 2)
        labels = np.asarray(labels if labels is not None else np.ones(len(points)), np.int64).reshape(-1)
        if len(points) != len(labels):
            raise EmoSEMError(f"{len(points)} clicks but {len(labels)} labels; give one label per click")
        self.clicks, self.click_labels = points, labels

    def to_state(self) -> dict[str, Any]:
        """Everything but the mask, as JSON-compatible values (autosaves, layer metadata)."""
        return {
            "emotion": self.emotion,
            "explanation": self.explanation,
            "more_explanations": list(self.more_explanations),
            "score": self.score,
            "source": self.source,
            "model": self.model,
            "draft": self.draft,
            "mask_edited": self.mask_edited,
            "text_edited": self.text_edited,
            "status": self.status.value,
            "annotator": self.annotator,
            "created": self.created,
            "modified": self.modified,
            "clicks": np.asarray(self.clicks, np.float64).reshape(-1, 2).tolist(),
            "click_labels": np.asarray(self.click_labels).reshape(-1).astype(int).tolist(),
            "seconds": self.seconds,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], mask: np.ndarray) -> EmotionAnnotation:
        """Inverse of :meth:`to_state` (unknown keys are ignored, missing ones take defaults)."""
        emotion = normalise_emotion(state["emotion"])
        try:
            status = Status(state.get("status", Status.PROPOSED.value))
        except ValueError:
            raise EmoSEMError(
                f"{emotion}: unknown status {state.get('status')!r}; expected one of "
                f"{', '.join(s.value for s in Status)}"
            ) from None
        score = state.get("score")
        return cls(
            emotion=emotion,
            mask=mask,
            explanation=str(state.get("explanation") or ""),
            more_explanations=[str(t) for t in state.get("more_explanations") or []],
            score=None if score is None else float(score),
            source=str(state.get("source") or HUMAN),
            model=state.get("model"),
            draft=str(state.get("draft") or ""),
            mask_edited=bool(state.get("mask_edited", False)),
            text_edited=bool(state.get("text_edited", False)),
            status=status,
            annotator=state.get("annotator"),
            created=state.get("created"),
            modified=state.get("modified"),
            clicks=np.asarray(state.get("clicks") or np.zeros((0, 2)), np.float64).reshape(-1, 2),
            click_labels=np.asarray(state.get("click_labels") or [], np.int64).reshape(-1),
            seconds=as_seconds(state.get("seconds")),
            extra=dict(state.get("extra") or {}),
        )


def as_seconds(value: Any) -> float:
    # time is a report: a value that is no positive finite number counts as none
    try:
        value = float(value)
    except (TypeError, ValueError):
        return 0.0
    return value if 0 < value < float("inf") else 0.0
