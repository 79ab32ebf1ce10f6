"""The annotation of one painting, independent of any user interface.

An :class:`AnnotationSession` holds, per emotion, what the annotator is working on (an
:class:`~napari_emosem.annotation.records.EmotionAnnotation`). It is the only writer of that state:
every change goes through one of its methods, which keeps provenance, counts the change for
"unexported" and autosave, and emits ``events.changed`` with the emotions it touched. A user
interface observes those events; it never writes the annotations itself.

Re-proposing an emotion replaces only that emotion. What a person reviewed
(:attr:`EmotionAnnotation.reviewed`) is *protected*: :meth:`AnnotationSession.apply_proposals`
keeps it unless told otherwise, so the UI asks first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from psygnal import Signal, SignalGroup

from ..data import StimulusDataset
from ..data.records import now_iso
from ..emotions import EMOTIONS, normalise_emotion
from ..errors import EmoSEMError
from ..image_io import image_digest, to_rgb_uint8
from . import autosave as _autosave
from . import dataset as _dataset
from . import edits
from .records import EmotionAnnotation, Status
from .visit_time import VisitTime


class SessionEvents(SignalGroup):
    """What an :class:`AnnotationSession` tells its observers."""

    #: the annotations of these emotions were added, changed or removed
    changed = Signal(tuple)
    #: the session was written into a dataset (an ``ExportResult``); it is not dirty any more
    exported = Signal(object)


class AnnotationSession:
    """The annotation of one painting: per emotion a mask, an explanation and their provenance.

    Parameters
    ----------
    image
        The painting (any array :func:`napari_emosem.image_io.to_rgb_uint8` accepts).
    file_name
        Its name in a dataset (default: ``source_path``'s name, else ``painting-<digest>.png``).
    source_path
        The image file it was read from, if any: exported as is when its pixels match.
    annotator
        Whose session this is: recorded on the annotations they reviewed; an export replaces only
        their records (and the drafts). Give it only their own records and the drafts
        (:func:`napari_emosem.annotation.dataset.annotator_records`).
    metadata
        Painting metadata for the dataset (artist, title, style when known).
    passthrough
        Dataset records this session keeps but does not edit (as ``Stimulus`` field dicts).
    exported_to
        The dataset the painting was opened from or last exported to.
    autosave_dir
        Where autosaves go (default :func:`napari_emosem.paths.autosave_dir`); ``False`` disables
        autosaving.
    autosave_interval
        Minimum seconds between autosaves of minor edits (brush strokes, typing).
    clock
        Monotonic clock for the autosave interval (tests pass their own).
    """

    def __init__(
        self,
        image: np.ndarray,
        *,
        file_name: str | None = None,
        source_path: str | Path | None = None,
        annotator: str | None = None,
        metadata: dict[str, Any] | None = None,
        passthrough: Iterable[dict[str, Any]] = (),
        exported_to: str | Path | None = None,
        autosave_dir: str | Path | bool | None = None,
        autosave_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.events = SessionEvents()
        self.image = to_rgb_uint8(image, file_name or "painting")
        self.digest = image_digest(self.image)
        self.source_path = Path(source_path) if source_path else None
        default_name = self.source_path.name if self.source_path else f"painting-{self.digest[:12]}.png"
        self.file_name = file_name or default_name
        self.annotator = annotator
        self.metadata = dict(metadata or {})
        self.exported_to = Path(exported_to) if exported_to else None
        self._passthrough = [dict(record) for record in passthrough]
        self._items: dict[str, EmotionAnnotation] = {}
        self._autosave = _autosave.AutosaveSchedule(autosave_dir, autosave_interval, clock)
        self.revision = 0
        self._exported_revision = 0
        self._source_matches: bool | None = None
        self._visit = VisitTime()  # see set_active_time

    # Reading ----------------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape[:2]

    @property
    def items(self) -> MappingProxyType[str, EmotionAnnotation]:
        """emotion -> annotation (read only: change them through this session's methods)."""
        return MappingProxyType(self._items)

    @property
    def passthrough(self) -> tuple[dict[str, Any], ...]:
        """Dataset records this session keeps on export but does not edit."""
        return tuple(self._passthrough)

    @property
    def autosave_interval(self) -> float:
        return self._autosave.interval

    def __contains__(self, emotion: str) -> bool:
        return normalise_emotion(emotion) in self._items

    def __getitem__(self, emotion: str) -> EmotionAnnotation:
        return self._items[normalise_emotion(emotion)]

    def get(self, emotion: str) -> EmotionAnnotation | None:
        return self._items.get(normalise_emotion(emotion))

    def emotions(self) -> tuple[str, ...]:
        """Annotated emotions, in ArtEmis order."""
        return tuple(e for e in EMOTIONS if e in self._items)

    @property
    def dirty(self) -> bool:
        """True when there are changes that have not been exported."""
        return self.revision != self._exported_revision

    @property
    def unsaved_seconds(self) -> float:
        """Active time of this visit not yet written into a dataset."""
        return self._visit.unsaved

    def protected(self, emotions: Iterable[str] = EMOTIONS) -> list[str]:
        """The emotions among ``emotions`` whose annotation a person reviewed: a new proposal would
        overwrite their work (:attr:`EmotionAnnotation.reviewed`, the one rule)."""
        return [item.emotion for item in map(self.get, emotions) if item is not None and item.reviewed]

    # Changes ----------------------------------------------------------------------------------

    def apply_proposals(
        self,
        proposals: Iterable[Any],
        *,
        source: str,
        model: str | None = None,
        replace_protected: bool = False,
    ) -> list[str]:
        """Put model proposals (``napari_emosem.predictor.Proposal``) in place, one per emotion.

        Each proposal replaces only its own emotion. Protected emotions (see :meth:`protected`)
        are kept unless ``replace_protected``. Returns the emotions that were replaced.
        """
        applied = []
        for proposal in proposals:
            emotion = normalise_emotion(proposal.emotion)
            if not replace_protected and self.protected([emotion]):
                continue
            mask = as_mask(proposal.mask, self.shape, f"the {emotion} proposal")
            previous = self._items.get(emotion)
            self._items[emotion] = edits.proposed(emotion, mask, proposal, previous, source=source, model=model)
            applied.append(emotion)
        if applied:
            self._changed(applied, significant=True)
        return applied

    def apply_refinement(
        self,
        proposal: Any,
        *,
        source: str,
        model: str | None = None,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
    ) -> EmotionAnnotation:
        """Replace one emotion's mask by the model's re-decoding with the annotator's clicks.

        The clicks are the annotator's input, so the result counts as edited; the explanation is
        kept (re-draft it explicitly with :meth:`set_explanation` ``from_model=True``).
        """
        emotion = normalise_emotion(proposal.emotion)
        mask = as_mask(proposal.mask, self.shape, f"the refined {emotion} mask")
        item = self._items.get(emotion)
        if item is None:
            item = EmotionAnnotation(emotion=emotion, mask=mask, source=source, model=model, created=now_iso())
            self._items[emotion] = item
        edits.refined(item, mask, proposal, source=source, model=model)
        if points is not None:
            item.set_clicks(points, labels)
        self._changed([emotion], significant=True)
        return item

    def set_mask(self, emotion: str, mask: np.ndarray) -> EmotionAnnotation:
        """The annotator painted, erased or filled: store the new mask and mark it edited."""
        emotion = normalise_emotion(emotion)
        mask = as_mask(mask, self.shape, f"the {emotion} mask")
        item = self._items.get(emotion)
        if item is None:
            item = EmotionAnnotation(emotion=emotion, mask=mask, status=Status.ACCEPTED, created=now_iso())
            self._items[emotion] = item
        elif np.array_equal(item.mask, mask):
            return item
        edits.painted(item, mask)
        self._changed([emotion], significant=False)
        return item

    def set_explanation(
        self,
        emotion: str,
        text: str,
        *,
        from_model: bool = False,
        model: str | None = None,
    ) -> EmotionAnnotation:
        """Store the explanation: typed by the annotator, or (``from_model``) a model's new draft."""
        emotion = normalise_emotion(emotion)
        text = str(text)
        item = self._items.get(emotion)
        if item is None:
            item = EmotionAnnotation(
                emotion=emotion, mask=np.zeros(self.shape, bool), status=Status.ACCEPTED, created=now_iso()
            )
            self._items[emotion] = item
        elif item.explanation == text and not from_model:
            return item
        edits.explained(item, text, from_model=from_model, model=model)
        self._changed([emotion], significant=from_model)
        return item

    def set_clicks(self, emotion: str, points: np.ndarray, labels: np.ndarray) -> None:
        """Remember the clicks shown for ``emotion`` (they come back when it is selected again).

        Clicks are view state: they are autosaved with the next change but never make the
        session "unexported" by themselves (and tell no observer).
        """
        item = self._items.get(normalise_emotion(emotion))
        if item is not None:
            item.set_clicks(points, labels)

    def accept(self, emotion: str) -> EmotionAnnotation:
        """The annotator confirms this annotation."""
        return self._set_status(emotion, Status.ACCEPTED)

    def reject(self, emotion: str) -> EmotionAnnotation:
        """The annotator rejects this proposal; it is not exported (the pair stays unannotated)."""
        return self._set_status(emotion, Status.REJECTED)

    def mark_no_stimulus(self, emotion: str) -> EmotionAnnotation:
        """The annotator says this emotion has no stimulus in the painting: the mask is cleared."""
        emotion = normalise_emotion(emotion)
        if emotion not in self._items:
            empty = np.zeros(self.shape, bool)
            self._items[emotion] = EmotionAnnotation(emotion=emotion, mask=empty, created=now_iso())
        edits.cleared(self._items[emotion])
        return self._set_status(emotion, Status.NO_STIMULUS)

    def reopen(self, emotion: str) -> EmotionAnnotation:
        """Undo a decision: back to *proposed* (a model's item) or *accepted* (a person's)."""
        item = self[emotion]
        return self._set_status(emotion, Status.PROPOSED if item.from_model else Status.ACCEPTED)

    def remove(self, emotion: str) -> None:
        """Forget an emotion entirely (e.g. its layer was deleted)."""
        emotion = normalise_emotion(emotion)
        if self._items.pop(emotion, None) is not None:
            self._changed([emotion], significant=True)

    def set_active_time(self, painting_seconds: float, pair_seconds: dict[str, float]) -> None:
        """The active time of this visit so far (an ``ActivityClock``'s): the painting's, and each
        emotion's. Export adds it to what the records stored from earlier visits. Not a change of
        the annotation (it makes nothing unexported by itself)."""
        self._visit.set(painting_seconds, pair_seconds)

    def load(self, item: EmotionAnnotation) -> None:
        """Take ``item`` as it was saved (a layer, a record): shown, but not a change to export."""
        self._items[item.emotion] = item
        self.events.changed.emit((item.emotion,))

    def _set_status(self, emotion: str, status: Status) -> EmotionAnnotation:
        item = self[emotion]
        if item.status != status:
            item.status = status
            item.modified = now_iso()
            self._changed([item.emotion], significant=True)
        return item

    def _changed(self, emotions: Iterable[str], *, significant: bool) -> None:
        self.revision += 1
        if significant:
            self.autosave(force=True)
        self.events.changed.emit(tuple(emotions))

    # Dataset ----------------------------------------------------------------------------------

    def to_stimuli(self) -> tuple[list[Any], dict[str, str]]:
        """The dataset records (``napari_emosem.data.Stimulus``) and why any emotion is left out."""
        items = [self._items[e] for e in self.emotions()]
        return _dataset.to_stimuli(items, self._passthrough, self.shape, self.annotator, self._visit.pairs)

    def painting_metadata(self) -> dict[str, Any]:
        """The painting's metadata as exported: with its active time, earlier visits' and this one's."""
        return self._visit.painting_metadata(self.metadata)

    def export(
        self,
        dataset: str | Path | StimulusDataset,
        file_name: str | None = None,
        image: np.ndarray | str | Path | None = None,
    ) -> _dataset.ExportResult:
        """Write this painting and its annotations into a stimulus dataset: an open one (a
        campaign's), or the folder of one (created if needed).

        Exporting the same painting again updates its records in place; another painting is
        appended. ``image`` defaults to the source file when its pixels are this painting's
        (bytes copied as they are), else the pixels (stored as PNG).
        """
        file_name = file_name or self.file_name
        stimuli, skipped = self.to_stimuli()
        if image is None:
            image = self.source_path if self._source_file_matches() else self.image
        target = dataset if isinstance(dataset, StimulusDataset) else Path(dataset)
        result = _dataset.write_painting(
            target, file_name, image, stimuli, skipped, self.painting_metadata(), writer=self.annotator
        )
        self.file_name = file_name
        self.exported_to = result.dataset_root
        self._exported_revision = self.revision
        self._visit.saved()
        self.discard_autosave()
        self.events.exported.emit(result)
        return result

    def _source_file_matches(self) -> bool:
        if self.source_path is None:
            return False
        if self._source_matches is None:
            self._source_matches = _dataset.file_has_pixels(self.source_path, self.digest)
        return self._source_matches

    @classmethod
    def from_stimuli(cls, image: np.ndarray, stimuli: Iterable[Any], **kwargs: Any) -> AnnotationSession:
        """A session holding a dataset painting's records (not dirty: nothing to export yet)."""
        rgb = to_rgb_uint8(image, kwargs.get("file_name") or "painting")
        items, passthrough = _dataset.from_stimuli(stimuli, rgb.shape[:2])
        return cls._holding(rgb, items, passthrough=[*passthrough, *kwargs.pop("passthrough", ())], **kwargs)

    @classmethod
    def _holding(cls, image, items: Iterable[EmotionAnnotation], *, unexported: bool = False, **kwargs: Any):
        """A session holding ``items`` as its starting point; ``unexported``: they are work not
        in any dataset yet (but on disk already, in the autosave)."""
        session = cls(image, **kwargs)
        session._items.update((item.emotion, item) for item in items)
        if unexported:
            session.revision = session._autosave.saved_revision = 1
        return session

    # Autosave ---------------------------------------------------------------------------------

    @property
    def autosave_path(self) -> Path | None:
        return self._autosave.path(self.digest)

    def autosave(self, *, force: bool = False) -> Path | None:
        """Save unexported work if there is any and ``autosave_interval`` has passed (or ``force``).

        Returns the file written, or None when nothing needed saving.
        """
        return self._autosave.save(self, force=force)

    def discard_autosave(self) -> None:
        """Delete this painting's autosave, if any."""
        self._autosave.discard(self)

    @staticmethod
    def autosave_info(
        image_or_digest: np.ndarray | str, *, autosave_dir: str | Path | None = None
    ) -> _autosave.AutosaveInfo | None:
        """Describe the autosave of a painting (given as pixels or digest), or None if there is none."""
        return _autosave.autosave_info(image_or_digest, autosave_dir)

    @classmethod
    def restore(
        cls,
        image: np.ndarray,
        *,
        autosave_dir: str | Path | None = None,
        **kwargs: Any,
    ) -> AnnotationSession | None:
        """The session autosaved for this painting (None if there is none). It is dirty: unexported."""
        rgb = to_rgb_uint8(image)
        found = _autosave.read_session(rgb, autosave_dir, kwargs)
        if found is None:
            return None
        items, kwargs = found
        return cls._holding(rgb, items, unexported=True, autosave_dir=autosave_dir, **kwargs)


def as_mask(mask, shape: tuple[int, int], what: str) -> np.ndarray:
    """``mask`` as a bool array of the painting's ``shape`` (label values > 0 are the stimulus)."""
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise EmoSEMError(
            f"{what} is {mask.shape[0]} × {mask.shape[1] if mask.ndim > 1 else '?'} but the painting is "
            f"{shape[0]} × {shape[1]}; masks must have the painting's size"
        )
    return mask > 0 if mask.dtype != bool else mask.copy()
