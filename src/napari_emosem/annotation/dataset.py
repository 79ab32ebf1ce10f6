"""Between a session's annotations and a stimulus dataset's records (``napari_emosem.data``).

Status and export: *accepted* and *proposed* annotations with a non-empty mask are exported;
*no stimulus* is exported as an explicit empty record; *rejected* ones are not exported (the pair
stays "not annotated"). ``annotator`` is recorded only on what a person reviewed, so unreviewed
drafts are recognisable in the dataset. Records the session does not edit (text-only "something
else") pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Stimulus, StimulusDataset
from ..data.records import ANNOTATION_SECONDS
from ..emotions import EMOTIONS, normalise_emotion
from ..errors import EmoSEMError
from ..image_io import image_digest, load_image
from .records import HUMAN, EmotionAnnotation, Status, as_seconds

#: ``Stimulus`` fields a pass-through record keeps (it never has a mask)
PASSTHROUGH_FIELDS = (
    "emotion",
    "explanations",
    "no_stimulus",
    "source",
    "edited",
    "reviewed",
    "annotator",
    "score",
    "created",
    "modified",
    "adjudicated",
    "annotation_seconds",
)


@dataclass(frozen=True)
class ExportResult:
    """What :meth:`AnnotationSession.export` wrote."""

    dataset_root: Path
    file_name: str
    #: the dataset's record of the painting (``napari_emosem.data.Painting``)
    painting: Any
    written: tuple[str, ...]
    #: emotion -> why it was not written
    skipped: dict[str, str]


def passthrough_record(stimulus: Any) -> dict[str, Any]:
    """A dataset record the session does not edit, as JSON-compatible ``Stimulus`` fields."""
    return {key: getattr(stimulus, key) for key in PASSTHROUGH_FIELDS}


def annotation_from_stimulus(stimulus: Any, shape: Sequence[int]) -> EmotionAnnotation | None:
    """An emotion's annotation from a dataset record (None for text-only "something else")."""
    try:
        emotion = normalise_emotion(stimulus.emotion)
    except EmoSEMError:
        return None
    if emotion not in EMOTIONS:
        return None
    if stimulus.mask is None:
        mask = np.zeros(tuple(shape[:2]), bool)
    else:
        mask = np.asarray(stimulus.mask).astype(bool)
    texts = list(stimulus.explanations or [])
    extra = dict(stimulus.extra or {})
    # a record field since format 2; an older caller's record may still carry it in extra
    stored = as_seconds(getattr(stimulus, ANNOTATION_SECONDS, 0.0))
    seconds = max(stored, as_seconds(extra.pop(ANNOTATION_SECONDS, None)))
    if stimulus.no_stimulus:
        status = Status.NO_STIMULUS
    elif stimulus.reviewed:
        status = Status.ACCEPTED
    else:
        status = Status.PROPOSED
    return EmotionAnnotation(
        emotion=emotion,
        mask=mask,
        explanation=texts[0] if texts else "",
        more_explanations=texts[1:],
        score=stimulus.score,
        source=str(stimulus.source or HUMAN),
        # the dataset keeps one edited flag; the draft text is not stored, so an edited record
        # keeps its flag through mask_edited
        mask_edited=bool(stimulus.edited),
        draft=texts[0] if texts else "",
        status=status,
        annotator=stimulus.annotator,
        created=stimulus.created,
        modified=stimulus.modified,
        seconds=seconds,
        extra=extra,
    )


def from_stimuli(stimuli: Iterable[Any], shape: Sequence[int]) -> tuple[list[EmotionAnnotation], list[dict[str, Any]]]:
    """A painting's records as annotations, and the records kept as they are (pass-through)."""
    items, passthrough = [], []
    for stimulus in stimuli:
        item = annotation_from_stimulus(stimulus, shape)
        if item is not None:
            items.append(item)
        else:
            passthrough.append(passthrough_record(stimulus))
    return items, passthrough


def to_stimuli(
    items: Iterable[EmotionAnnotation],
    passthrough: Iterable[dict[str, Any]],
    shape: tuple[int, int],
    annotator: str | None,
    seconds: Mapping[str, float] | None = None,
) -> tuple[list[Any], dict[str, str]]:
    """The dataset records (``napari_emosem.data.Stimulus``) and why any emotion is left out.

    ``seconds``: active time spent on each emotion since the session began, added to what the
    records stored from earlier visits (``annotation_seconds``).
    """
    stimuli, skipped = [], {}
    seconds = seconds or {}
    for item in items:
        emotion = item.emotion
        texts = [t for t in [item.explanation, *item.more_explanations] if t.strip()]
        common = dict(
            explanations=texts,
            source=item.source,
            edited=item.edited,
            annotator=annotator if item.reviewed else item.annotator,
            reviewed=item.reviewed,
            score=item.score if item.from_model else None,
            created=item.created,
            modified=item.modified,
            extra=dict(item.extra),
            annotation_seconds=round(item.seconds + seconds.get(emotion, 0.0), 1),
        )
        if item.status == Status.REJECTED:
            skipped[emotion] = "rejected"
        elif item.status == Status.NO_STIMULUS:
            stimuli.append(Stimulus(emotion=emotion, mask=np.zeros(shape, bool), no_stimulus=True, **common))
        elif not item.mask.any():
            if texts:
                # explanations without a mask yet (e.g. imported from ArtEmis): keep them
                stimuli.append(Stimulus(emotion=emotion, mask=None, **common))
            else:
                skipped[emotion] = "empty mask and no text (draw it, or mark it 'no stimulus')"
        else:
            stimuli.append(Stimulus(emotion=emotion, mask=item.mask, **common))
    for record in passthrough:
        stimuli.append(Stimulus(**{k: v for k, v in record.items() if k in PASSTHROUGH_FIELDS}))
    return stimuli, skipped


def write_painting(
    target: Path | StimulusDataset,
    file_name: str,
    image: Any,
    stimuli: list[Any],
    skipped: dict[str, str],
    metadata: dict[str, Any],
) -> ExportResult:
    """Write one painting and its records into ``target``: a dataset already open (a campaign's:
    nothing is read again), or the folder of one (created if needed)."""
    dataset = target if isinstance(target, StimulusDataset) else StimulusDataset.open(target, create=True)
    painting = dataset.write_painting(image, file_name, stimuli, metadata=metadata or None)
    return ExportResult(
        dataset_root=dataset.root,
        file_name=file_name,
        painting=painting,
        written=tuple(s.emotion for s in stimuli if s.emotion in EMOTIONS),
        skipped=skipped,
    )


def file_has_pixels(path: Path, digest: str) -> bool:
    """Does the image file decode to exactly the pixels of ``digest``? Only then is it exported as
    is (EXIF rotation, 16-bit or alpha conversion could otherwise misalign the masks)."""
    try:
        return image_digest(load_image(path)) == digest
    except EmoSEMError:
        return False
