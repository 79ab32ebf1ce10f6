"""How each kind of change merges into one emotion's annotation: its provenance and its status.

A model proposal, a refinement with clicks, a brush stroke, an explanation (typed or drafted) and
clearing the mask each change an :class:`~.records.EmotionAnnotation` by their own rule: what is
kept from what was there, what counts as edited, which decision is undone. These functions only
apply the rules; :class:`~.session.AnnotationSession` calls them, stores the result and tells its
observers (it stays the only writer of a session's state).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.records import now_iso
from .records import EmotionAnnotation, Status

#: the decisions a new mask undoes (the annotator drew or the model found a stimulus after all)
_UNDONE_BY_A_MASK = (Status.REJECTED, Status.NO_STIMULUS)


def proposed(
    emotion: str, mask: np.ndarray, proposal: Any, previous: EmotionAnnotation | None, *, source: str, model: str | None
) -> EmotionAnnotation:
    """A model's proposal in place of ``previous``: a fresh draft, keeping only what is not the
    model's to replace (the further explanations, when it was created, earlier visits' time)."""
    text = str(proposal.explanation or "")
    return EmotionAnnotation(
        emotion=emotion,
        mask=mask,
        explanation=text,
        more_explanations=list(previous.more_explanations) if previous else [],
        score=None if proposal.score is None else float(proposal.score),
        source=source,
        model=model,
        draft=text,
        status=Status.PROPOSED,
        created=previous.created if previous else now_iso(),
        modified=now_iso(),
        seconds=previous.seconds if previous else 0.0,
        extra=dict(previous.extra) if previous else {},
    )


def refined(item: EmotionAnnotation, mask: np.ndarray, proposal: Any, *, source: str, model: str | None) -> None:
    """The model re-decoded ``item``'s mask with the annotator's clicks: the clicks are their
    input, so the mask counts as edited; an explanation they typed is kept."""
    item.mask = mask
    if item.from_model:
        item.mask_edited = True
    else:
        # clicks on a human annotation: the model drew it, guided by a person
        item.source, item.model, item.mask_edited = source, model, True
    if proposal.score is not None:
        item.score = float(proposal.score)
    if proposal.explanation and not item.text_edited:
        item.explanation = item.draft = str(proposal.explanation)
    if item.status in _UNDONE_BY_A_MASK:
        item.status = Status.PROPOSED
    item.modified = now_iso()


def painted(item: EmotionAnnotation, mask: np.ndarray) -> None:
    """The annotator painted, erased or filled ``item``'s mask."""
    item.mask = mask
    if item.from_model:
        item.mask_edited = True
    if item.status in _UNDONE_BY_A_MASK and mask.any():
        item.status = Status.PROPOSED if item.from_model else Status.ACCEPTED
    item.modified = now_iso()


def explained(item: EmotionAnnotation, text: str, *, from_model: bool, model: str | None) -> None:
    """A new explanation: typed by the annotator (edited when it differs from the model's draft),
    or (``from_model``) the model's new draft."""
    item.explanation = text
    if from_model:
        item.draft = text
        item.text_edited = False
        if model is not None:
            item.model = model
    elif item.from_model:
        item.text_edited = text.strip() != item.draft.strip()
    item.modified = now_iso()


def cleared(item: EmotionAnnotation) -> None:
    """``item``'s mask emptied ("no stimulus"): a change of the model's mask is an edit."""
    if item.mask.any():
        item.mask = np.zeros_like(item.mask)
        if item.from_model:
            item.mask_edited = True
