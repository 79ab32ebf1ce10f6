"""The annotation of one painting, independent of any user interface.

An :class:`AnnotationSession` holds, per emotion, what the annotator is working on: the mask, the
explanation, where it came from and what the annotator decided about it. The napari widget is a
thin view of it; the reader and writer convert between it and napari layers; tests drive it
directly.

Provenance rules (what the dataset's ``source`` / ``edited`` fields record):

* A model's proposal: ``source = "model:<name>"``, ``edited = False``, status *proposed*.
* The annotator changes that mask (paint, erase, fill, or clicks that re-decode it) or its text:
  ``source`` stays ``"model:<name>"`` (the model still drafted it) and ``edited = True``.
  Training can then weigh or filter drafts by whether a person corrected them.
* A mask or text the annotator makes where no model proposed anything: ``source = "human"``,
  ``edited = False`` (nothing of a model's was changed), status *accepted* (a person made it).
* Re-proposing an emotion replaces only that emotion. An emotion the annotator has edited or
  decided about (accepted, no stimulus) is *protected*: :meth:`AnnotationSession.apply_proposals`
  keeps it unless told otherwise, so the UI asks first.

Status and export: *accepted* and *proposed* items with a non-empty mask are exported; *no
stimulus* is exported as an explicit empty record; *rejected* items are not exported (the pair
stays "not annotated"). ``annotator`` is recorded only for items a person reviewed (accepted,
edited, drawn, or marked no stimulus), so unreviewed drafts are recognisable in the dataset.

Autosave: :meth:`AnnotationSession.autosave` writes one file per painting (keyed by the image
digest) to :func:`napari_emosem.paths.autosave_dir` atomically. Significant actions (proposals,
decisions, refinements, export) save at once; brush strokes and typing are saved by the periodic
call (at most every ``autosave_interval`` seconds), so a crash loses at most that long. Exporting
removes the autosave: an autosave exists exactly when there is unexported work.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from .emotions import EMOTIONS, normalise_emotion
from .data.records import now_iso
from .errors import EmoSEMError
from .image_io import image_digest, to_rgb_uint8

HUMAN = "human"
#: napari layer names are "<emotion> stimulus"
LAYER_SUFFIX = " stimulus"
#: key of this plugin's entry in a napari layer's ``metadata``
METADATA_KEY = "emosem"
#: Autosave file format version.
AUTOSAVE_FORMAT = 1

#: One colour per emotion for the mask layers: warm hues for the positive emotions, cool or
#: murky ones for the negative (ArtEmis order).
EMOTION_COLORS: dict[str, str] = {
    "amusement": "#ffb000",
    "awe": "#f4e04d",
    "contentment": "#7cc96b",
    "excitement": "#ff6d3a",
    "anger": "#e0282e",
    "disgust": "#9b8f1e",
    "fear": "#9d4edd",
    "sadness": "#3a86ff",
}


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

    @property
    def edited(self) -> bool:
        """Did a person change the model's proposal (mask or text)?"""
        return self.mask_edited or self.text_edited

    @property
    def from_model(self) -> bool:
        return self.source.startswith("model:")

    @property
    def reviewed(self) -> bool:
        """Did a person look at this (decided, edited, or made it)?"""
        return self.status in (Status.ACCEPTED, Status.NO_STIMULUS) or self.edited or not self.from_model

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))

    def to_state(self) -> dict[str, Any]:
        """Everything but the mask, as JSON-compatible values."""
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
        )


@dataclass(frozen=True)
class AutosaveInfo:
    """What an autosave holds, for the "restore unexported work?" question."""

    path: Path
    saved_at: str
    file_name: str | None
    emotions: tuple[str, ...]


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
        Recorded on the items a person reviewed.
    metadata
        Painting metadata for the dataset (artist, title, style when known).
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
        autosave_dir: str | Path | bool | None = None,
        autosave_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.image = to_rgb_uint8(image, file_name or "painting")
        self.digest = image_digest(self.image)
        self.source_path = Path(source_path) if source_path else None
        self.file_name = file_name or (self.source_path.name if self.source_path else f"painting-{self.digest[:12]}.png")
        self.annotator = annotator
        self.metadata = dict(metadata or {})
        self.items: dict[str, EmotionAnnotation] = {}
        #: dataset records this session does not edit but must keep on export ("something else",
        #: which has text but never a mask), as dicts of ``Stimulus`` fields without the mask
        self.passthrough: list[dict[str, Any]] = []
        self.autosave_interval = float(autosave_interval)
        self._autosave_dir = autosave_dir
        self._clock = clock
        self.revision = 0
        self._exported_revision = 0
        self._autosaved_revision = 0
        self._last_autosave = clock()
        self.exported_to: Path | None = None
        self._source_matches: bool | None = None

    # Reading ----------------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape[:2]

    def __contains__(self, emotion: str) -> bool:
        return normalise_emotion(emotion) in self.items

    def __getitem__(self, emotion: str) -> EmotionAnnotation:
        return self.items[normalise_emotion(emotion)]

    def get(self, emotion: str) -> EmotionAnnotation | None:
        return self.items.get(normalise_emotion(emotion))

    def emotions(self) -> tuple[str, ...]:
        """Annotated emotions, in ArtEmis order."""
        return tuple(e for e in EMOTIONS if e in self.items)

    @property
    def dirty(self) -> bool:
        """True when there are changes that have not been exported."""
        return self.revision != self._exported_revision

    def protected(self, emotions: Iterable[str] = EMOTIONS) -> list[str]:
        """The emotions among ``emotions`` a new proposal would overwrite the annotator's work on."""
        out = []
        for emotion in emotions:
            item = self.get(emotion)
            if item is None:
                continue
            if item.edited or not item.from_model or item.status in (Status.ACCEPTED, Status.NO_STIMULUS):
                out.append(item.emotion)
        return out

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
            if not replace_protected and emotion in self.protected([emotion]):
                continue
            mask = self._as_mask(proposal.mask, f"the {emotion} proposal")
            previous = self.items.get(emotion)
            text = str(proposal.explanation or "")
            self.items[emotion] = EmotionAnnotation(
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
            )
            applied.append(emotion)
        if applied:
            self._changed(significant=True)
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
        mask = self._as_mask(proposal.mask, f"the refined {emotion} mask")
        item = self.items.get(emotion)
        if item is None:
            item = EmotionAnnotation(emotion=emotion, mask=mask, source=source, model=model, created=now_iso())
            self.items[emotion] = item
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
        if item.status in (Status.REJECTED, Status.NO_STIMULUS):
            item.status = Status.PROPOSED
        if points is not None:
            self._store_clicks(item, points, labels)
        item.modified = now_iso()
        self._changed(significant=True)
        return item

    def set_mask(self, emotion: str, mask: np.ndarray) -> EmotionAnnotation:
        """The annotator painted, erased or filled: store the new mask and mark it edited."""
        emotion = normalise_emotion(emotion)
        mask = self._as_mask(mask, f"the {emotion} mask")
        item = self.items.get(emotion)
        if item is None:
            item = EmotionAnnotation(emotion=emotion, mask=mask, status=Status.ACCEPTED, created=now_iso())
            self.items[emotion] = item
        elif np.array_equal(item.mask, mask):
            return item
        item.mask = mask
        if item.from_model:
            item.mask_edited = True
        if item.status in (Status.REJECTED, Status.NO_STIMULUS) and mask.any():
            item.status = Status.PROPOSED if item.from_model else Status.ACCEPTED
        item.modified = now_iso()
        self._changed(significant=False)
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
        item = self.items.get(emotion)
        if item is None:
            item = EmotionAnnotation(
                emotion=emotion, mask=np.zeros(self.shape, bool), status=Status.ACCEPTED, created=now_iso()
            )
            self.items[emotion] = item
        elif item.explanation == text and not from_model:
            return item
        item.explanation = text
        if from_model:
            item.draft = text
            item.text_edited = False
            if model is not None:
                item.model = model
        elif item.from_model:
            item.text_edited = text.strip() != item.draft.strip()
        item.modified = now_iso()
        self._changed(significant=from_model)
        return item

    def set_clicks(self, emotion: str, points: np.ndarray, labels: np.ndarray) -> None:
        """Remember the clicks shown for ``emotion`` (they come back when it is selected again).

        Clicks are view state: they are autosaved with the next change but never make the
        session "unexported" by themselves.
        """
        item = self.items.get(normalise_emotion(emotion))
        if item is not None:
            self._store_clicks(item, points, labels)

    def accept(self, emotion: str) -> EmotionAnnotation:
        """The annotator confirms this annotation."""
        return self._set_status(emotion, Status.ACCEPTED)

    def reject(self, emotion: str) -> EmotionAnnotation:
        """The annotator rejects this proposal; it is not exported (the pair stays unannotated)."""
        return self._set_status(emotion, Status.REJECTED)

    def mark_no_stimulus(self, emotion: str) -> EmotionAnnotation:
        """The annotator says this emotion has no stimulus in the painting: the mask is cleared."""
        emotion = normalise_emotion(emotion)
        if emotion not in self.items:
            self.items[emotion] = EmotionAnnotation(emotion=emotion, mask=np.zeros(self.shape, bool), created=now_iso())
        item = self.items[emotion]
        if item.mask.any():
            item.mask = np.zeros(self.shape, bool)
            if item.from_model:
                item.mask_edited = True
        return self._set_status(emotion, Status.NO_STIMULUS)

    def reopen(self, emotion: str) -> EmotionAnnotation:
        """Undo a decision: back to *proposed* (a model's item) or *accepted* (a person's)."""
        item = self[emotion]
        return self._set_status(emotion, Status.PROPOSED if item.from_model else Status.ACCEPTED)

    def remove(self, emotion: str) -> None:
        """Forget an emotion entirely (e.g. its layer was deleted)."""
        if self.items.pop(normalise_emotion(emotion), None) is not None:
            self._changed(significant=True)

    def _set_status(self, emotion: str, status: Status) -> EmotionAnnotation:
        item = self[emotion]
        if item.status != status:
            item.status = status
            item.modified = now_iso()
            self._changed(significant=True)
        return item

    def _store_clicks(self, item: EmotionAnnotation, points, labels) -> None:
        points = np.asarray(points, np.float64).reshape(-1, 2)
        labels = np.asarray(labels if labels is not None else np.ones(len(points)), np.int64).reshape(-1)
        if len(points) != len(labels):
            raise EmoSEMError(f"{len(points)} clicks but {len(labels)} labels; give one label per click")
        item.clicks, item.click_labels = points, labels

    def _as_mask(self, mask, what: str) -> np.ndarray:
        mask = np.asarray(mask)
        if mask.shape != self.shape:
            raise EmoSEMError(
                f"{what} is {mask.shape[0]} × {mask.shape[1] if mask.ndim > 1 else '?'} but the painting is "
                f"{self.shape[0]} × {self.shape[1]}; masks must have the painting's size"
            )
        return mask > 0 if mask.dtype != bool else mask.copy()

    def _changed(self, *, significant: bool) -> None:
        self.revision += 1
        if significant:
            self.autosave(force=True)

    # Dataset ----------------------------------------------------------------------------------

    def to_stimuli(self) -> tuple[list[Any], dict[str, str]]:
        """The dataset records (``napari_emosem.data.Stimulus``) and why any emotion is left out."""
        from .data import Stimulus

        stimuli, skipped = [], {}
        for emotion in self.emotions():
            item = self.items[emotion]
            texts = [t for t in [item.explanation, *item.more_explanations] if t.strip()]
            annotator = self.annotator if item.reviewed else item.annotator
            common = dict(
                explanations=texts,
                source=item.source,
                edited=item.edited,
                annotator=annotator,
                reviewed=item.reviewed,
                score=item.score if item.from_model else None,
                created=item.created,
                modified=item.modified,
            )
            if item.status == Status.REJECTED:
                skipped[emotion] = "rejected"
            elif item.status == Status.NO_STIMULUS:
                stimuli.append(Stimulus(emotion=emotion, mask=np.zeros(self.shape, bool), no_stimulus=True, **common))
            elif not item.mask.any():
                if texts:
                    # explanations without a mask yet (e.g. imported from ArtEmis): keep them
                    stimuli.append(Stimulus(emotion=emotion, mask=None, **common))
                else:
                    skipped[emotion] = "empty mask and no text (draw it, or mark it 'no stimulus')"
            else:
                stimuli.append(Stimulus(emotion=emotion, mask=item.mask, **common))
        for record in self.passthrough:
            stimuli.append(Stimulus(**{k: v for k, v in record.items() if k in PASSTHROUGH_FIELDS}))
        return stimuli, skipped

    def export(
        self,
        dataset_root: str | Path,
        file_name: str | None = None,
        image: np.ndarray | str | Path | None = None,
    ) -> ExportResult:
        """Write this painting and its annotations into a stimulus dataset (created if needed).

        Exporting the same painting again updates its records in place; another painting is
        appended. ``image`` defaults to the source file when its pixels are this painting's
        (bytes copied as they are), else the pixels (stored as PNG).
        """
        from .data import StimulusDataset

        root = Path(dataset_root)
        file_name = file_name or self.file_name
        stimuli, skipped = self.to_stimuli()
        if image is None:
            image = self.source_path if self._source_file_matches() else self.image
        dataset = StimulusDataset.open(root, create=True)
        painting = dataset.write_painting(image, file_name, stimuli, metadata=self.metadata or None)
        self.file_name = file_name
        self.exported_to = root
        self._exported_revision = self.revision
        self.discard_autosave()
        return ExportResult(
            dataset_root=root,
            file_name=file_name,
            painting=painting,
            written=tuple(s.emotion for s in stimuli if s.emotion in EMOTIONS),
            skipped=skipped,
        )

    def _source_file_matches(self) -> bool:
        # A file is copied as is only if it decodes to exactly these pixels (EXIF rotation,
        # 16-bit or alpha conversion could otherwise misalign the masks).
        if self.source_path is None:
            return False
        if self._source_matches is None:
            from .image_io import load_image

            try:
                self._source_matches = image_digest(load_image(self.source_path)) == self.digest
            except EmoSEMError:
                self._source_matches = False
        return self._source_matches

    @classmethod
    def from_stimuli(cls, image: np.ndarray, stimuli: Iterable[Any], **kwargs: Any) -> AnnotationSession:
        """A session holding a dataset painting's records (not dirty: nothing to export yet)."""
        session = cls(image, **kwargs)
        for stimulus in stimuli:
            item = annotation_from_stimulus(stimulus, session.shape)
            if item is not None:
                session.items[item.emotion] = item
            else:
                session.passthrough.append(passthrough_record(stimulus))
        session._exported_revision = session.revision
        return session

    @classmethod
    def from_layers(
        cls,
        image: np.ndarray,
        layers: Iterable[tuple[str, np.ndarray, dict[str, Any]]],
        **kwargs: Any,
    ) -> AnnotationSession:
        """A session from napari Labels layers given as ``(name, data, metadata)``.

        Layers are matched to emotions by their metadata, else by their name
        ("<emotion> stimulus"); others are ignored. Provenance comes from the metadata this
        module writes (see :func:`layer_metadata`); a layer without it counts as a person's.
        """
        session = cls(image, **kwargs)
        for name, data, metadata in layers:
            item = annotation_from_layer(name, data, metadata, session.shape)
            if item is not None:
                session.items[item.emotion] = item
        session._exported_revision = session.revision
        return session

    # Autosave ---------------------------------------------------------------------------------

    @property
    def autosave_path(self) -> Path | None:
        directory = self._autosave_directory()
        return None if directory is None else directory / f"{self.digest}.npz"

    def _autosave_directory(self) -> Path | None:
        if self._autosave_dir is False:
            return None
        if self._autosave_dir is None or self._autosave_dir is True:
            from .paths import autosave_dir

            return autosave_dir()
        return Path(self._autosave_dir)

    def autosave(self, *, force: bool = False) -> Path | None:
        """Save unexported work if there is any and ``autosave_interval`` has passed (or ``force``).

        Returns the file written, or None when nothing needed saving.
        """
        path = self.autosave_path
        if path is None or self.revision == self._autosaved_revision or not self.dirty:
            return None
        if not force and self._clock() - self._last_autosave < self.autosave_interval:
            return None
        from ._io import atomic_write_bytes

        state = {
            "format": AUTOSAVE_FORMAT,
            "digest": self.digest,
            "shape": list(self.shape),
            "file_name": self.file_name,
            "source_path": str(self.source_path) if self.source_path else None,
            "annotator": self.annotator,
            "metadata": self.metadata,
            "exported_to": str(self.exported_to) if self.exported_to else None,
            "passthrough": self.passthrough,
            "saved_at": now_iso(),
            "items": [item.to_state() for item in self.items.values()],
        }
        arrays = {"state": np.frombuffer(json.dumps(state).encode("utf-8"), np.uint8)}
        for emotion, item in self.items.items():
            if item.mask.any():
                # 1 bit per pixel: fast to write even for very large paintings
                arrays[f"mask:{emotion}"] = np.packbits(item.mask.reshape(-1))
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(path, buffer.getvalue())
        self._autosaved_revision = self.revision
        self._last_autosave = self._clock()
        return path

    def discard_autosave(self) -> None:
        """Delete this painting's autosave, if any."""
        path = self.autosave_path
        if path is not None:
            path.unlink(missing_ok=True)
        self._autosaved_revision = self.revision

    @classmethod
    def autosave_info(cls, image_or_digest: np.ndarray | str, *, autosave_dir: str | Path | None = None) -> AutosaveInfo | None:
        """Describe the autosave of a painting (given as pixels or digest), or None if there is none."""
        path = _autosave_file(image_or_digest, autosave_dir)
        if not path.exists():
            return None
        state, _ = _read_autosave(path)
        return AutosaveInfo(
            path=path,
            saved_at=state.get("saved_at", "?"),
            file_name=state.get("file_name"),
            emotions=tuple(i["emotion"] for i in state.get("items", [])),
        )

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
        path = _autosave_file(rgb, autosave_dir)
        if not path.exists():
            return None
        state, arrays = _read_autosave(path)
        if tuple(state.get("shape", ())) != rgb.shape[:2]:
            raise EmoSEMError(f"{path}: this autosave is for a painting of another size; discard it")
        kwargs.setdefault("file_name", state.get("file_name"))
        kwargs.setdefault("source_path", state.get("source_path"))
        kwargs.setdefault("annotator", state.get("annotator"))
        kwargs.setdefault("metadata", state.get("metadata"))
        session = cls(rgb, autosave_dir=autosave_dir, **kwargs)
        n = session.shape[0] * session.shape[1]
        for item_state in state.get("items", []):
            key = f"mask:{item_state.get('emotion')}"
            if key in arrays:
                mask = np.unpackbits(arrays[key], count=n).astype(bool).reshape(session.shape)
            else:
                mask = np.zeros(session.shape, bool)
            item = EmotionAnnotation.from_state(item_state, mask)
            session.items[item.emotion] = item
        session.passthrough = [dict(r) for r in state.get("passthrough") or []]
        exported = state.get("exported_to")
        session.exported_to = Path(exported) if exported else None
        # restored work is unexported work, and it is already on disk
        session.revision = 1
        session._exported_revision = 0
        session._autosaved_revision = 1
        return session

    # Status line ------------------------------------------------------------------------------

    def describe(self) -> str:
        """One line: what is annotated, by whom, what needs review."""
        if not self.items:
            return "nothing annotated yet"
        by_model: dict[str, list[str]] = {}
        for item in self.items.values():
            who = item.model or item.source if item.from_model else "you"
            by_model.setdefault(who, []).append(item.emotion)
        parts = [f"{', '.join(es)} by {who}" for who, es in by_model.items()]
        todo = [e for e, i in self.items.items() if i.status == Status.PROPOSED]
        line = "; ".join(parts)
        if todo:
            line += f" — {len(todo)} to review"
        if self.dirty:
            line += " — not exported"
        return line


# Conversions (layers, dataset records) ---------------------------------------------------------

#: ``Stimulus`` fields a pass-through record keeps (it never has a mask)
PASSTHROUGH_FIELDS = ("emotion", "explanations", "no_stimulus", "source", "edited", "reviewed", "annotator", "score", "created", "modified")


def passthrough_record(stimulus: Any) -> dict[str, Any]:
    """A dataset record this module does not edit, as JSON-compatible ``Stimulus`` fields."""
    return {key: getattr(stimulus, key) for key in PASSTHROUGH_FIELDS}



def layer_name(emotion: str) -> str:
    """The napari layer name of an emotion's mask: "<emotion> stimulus"."""
    return normalise_emotion(emotion) + LAYER_SUFFIX


def emotion_of_layer(name: str, metadata: dict[str, Any] | None = None) -> str | None:
    """The emotion a Labels layer annotates: from its metadata, else its name (napari may add " [1]")."""
    meta = (metadata or {}).get(METADATA_KEY) or {}
    candidates = [meta.get("emotion"), re.sub(r"\s*\[\d+\]$", "", str(name))]
    for candidate in candidates:
        if not candidate:
            continue
        text = str(candidate)
        if text.endswith(LAYER_SUFFIX):
            text = text[: -len(LAYER_SUFFIX)]
        try:
            emotion = normalise_emotion(text)
        except EmoSEMError:
            continue
        if emotion in EMOTIONS:
            return emotion
    return None


def mask_digest(mask: np.ndarray) -> str:
    """A short content hash of a mask: tells whether a layer was painted since it was labelled."""
    import hashlib

    mask = np.asarray(mask) > 0
    h = hashlib.blake2b(digest_size=8)
    h.update(repr(mask.shape).encode())
    h.update(np.packbits(mask.reshape(-1)).tobytes())
    return h.hexdigest()


def layer_metadata(item: EmotionAnnotation, *, painting: str | None = None) -> dict[str, Any]:
    """What a Labels layer's ``metadata`` carries for ``item`` (``painting``: the image digest)."""
    state = item.to_state()
    state["painting"] = painting
    state["mask_digest"] = mask_digest(item.mask)
    return {METADATA_KEY: state}


def annotation_from_layer(
    name: str,
    data: np.ndarray,
    metadata: dict[str, Any] | None,
    shape: Sequence[int],
) -> EmotionAnnotation | None:
    """An emotion's annotation from a Labels layer's name, data and metadata (None if not one)."""
    emotion = emotion_of_layer(name, metadata)
    if emotion is None:
        return None
    data = np.asarray(data)
    if tuple(data.shape) != tuple(shape[:2]):
        raise EmoSEMError(
            f"layer {name!r} is {' × '.join(map(str, data.shape))} but the painting is "
            f"{shape[0]} × {shape[1]}; a stimulus layer must have the painting's size"
        )
    mask = data > 0
    state = dict((metadata or {}).get(METADATA_KEY) or {})
    if not state:
        # drawn by hand in napari, without this plugin
        return EmotionAnnotation(emotion=emotion, mask=mask, status=Status.ACCEPTED, created=now_iso())
    state["emotion"] = emotion
    item = EmotionAnnotation.from_state(state, mask)
    if state.get("mask_digest") not in (None, mask_digest(mask)):
        # painted in napari after this metadata was written (e.g. saved without the annotator)
        if item.from_model:
            item.mask_edited = True
        if item.status in (Status.NO_STIMULUS, Status.REJECTED) and mask.any():
            item.status = Status.PROPOSED if item.from_model else Status.ACCEPTED
        item.modified = now_iso()
    return item


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
    )


def _autosave_file(image_or_digest, autosave_dir) -> Path:
    if isinstance(image_or_digest, str):
        digest = image_or_digest
    else:
        digest = image_digest(to_rgb_uint8(image_or_digest))
    if autosave_dir is None:
        from .paths import autosave_dir as default_dir

        autosave_dir = default_dir()
    return Path(autosave_dir) / f"{digest}.npz"


def _read_autosave(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        state = json.loads(arrays.pop("state").tobytes().decode("utf-8"))
    except Exception as exc:  # any corruption: zip, npy header, JSON
        raise EmoSEMError(
            f"{path}: the autosave cannot be read ({type(exc).__name__}: {exc}); delete it to start afresh"
        ) from None
    if state.get("format") != AUTOSAVE_FORMAT:
        raise EmoSEMError(f"{path}: autosave format {state.get('format')!r} is not supported; delete it")
    return state, arrays
