"""The two records of a stimulus dataset: a :class:`Painting` and its :class:`Stimulus` records.

A stimulus is what one (painting, emotion) pair holds: a mask (or none), its explanations, where
it came from, and whether a person reviewed it. "Not annotated yet" is the absence of a record; "this emotion has no stimulus
in this painting" is a record with ``no_stimulus=True`` and an empty mask.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from ..emotions import SOMETHING_ELSE, normalise_emotion
from .rle import RLE, decode_rle

#: Image fields of the COCO file that are not painting metadata.
IMAGE_CORE_FIELDS = ("id", "file_name", "width", "height")
#: Metadata keys the project knows; others are kept as they are.
METADATA_KEYS = ("artist", "title", "style")
#: Annotation fields the project reads and writes; anything else is kept in ``Stimulus.extra``.
ANNOTATION_FIELDS = (
    "id",
    "image_id",
    "category_id",
    "segmentation",
    "area",
    "bbox",
    "iscrowd",
    "explanation",
    "explanations",
    "source",
    "edited",
    "annotator",
    "created",
    "modified",
    "score",
    "no_stimulus",
    "has_mask",
    "reviewed",
)


def now_iso() -> str:
    """The current time in UTC, ISO 8601 to the second (``2026-11-30T21:05:44+00:00``): the one
    format every record, autosave and checkpoint is stamped with."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def parse_time(text: str | None) -> _dt.datetime | None:
    """An ISO 8601 time as an aware datetime (a time without offset is taken as UTC), or None for
    None or text that is not a time. Compare times with this, never as text: files written by
    earlier versions carry the writer's local offset."""
    if not text:
        return None
    try:
        value = _dt.datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=_dt.timezone.utc)


def is_model_source(source: str) -> bool:
    """``source`` names a model (``"model:<checkpoint id>"``), not a person."""
    return str(source).startswith("model:")


def replaces(existing: Stimulus | None, new: Stimulus, *, overwrite_reviewed: bool = False) -> bool:
    """Whether ``new`` may replace ``existing``, the stored record of the same (painting,
    emotion): the one rule that keeps what a person wrote.

    A reviewed record (a person wrote, accepted or edited it, or marked the pair no stimulus) is
    never replaced by an unreviewed one (a model's draft) unless ``overwrite_reviewed`` asks for
    it. A reviewed record may replace anything: that is a person's decision. Every writer of a
    dataset follows this rule (:meth:`StimulusDataset.write_paintings` applies it); the
    annotator can call it to decide before it asks.
    """
    if existing is None or not existing.reviewed or new.reviewed:
        return True
    return overwrite_reviewed


@dataclass
class Painting:
    """One image of the dataset. ``metadata`` holds artist/title/style when known (and any
    other per-image fields of the COCO file)."""

    id: int
    file_name: str
    width: int
    height: int
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The file name without its suffix: APOLO's and ArtEmis's ``painting`` key."""
        return PurePosixPath(self.file_name).stem

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return (self.height, self.width)


@dataclass(eq=False, repr=False)
class Stimulus:
    """The annotation of one (painting, emotion) pair.

    ``mask`` is bool (H, W) at the painting's resolution, or ``None`` for a text-only record.
    Records read from a dataset decode their mask from RLE each time ``mask`` is read (so that a
    list of thousands of pairs stays small); keep the array if you need it more than once.
    ``extra`` holds annotation fields this project does not know (kept when the file is rewritten).

    ``reviewed`` says whether a person stands behind the record: they wrote it, accepted or edited
    a model's proposal, or marked the pair *no stimulus*. An unreviewed record is a model's draft.
    Left ``None`` it is derived from the other fields (how files without the field are read): a
    record is reviewed unless a model proposed it and nobody edited it, marked it no stimulus or
    put their name on it.
    """

    emotion: str
    mask: np.ndarray | None = None
    explanations: list[str] = field(default_factory=list)
    no_stimulus: bool = False
    source: str = "human"
    edited: bool = False
    annotator: str | None = None
    score: float | None = None
    created: str | None = None
    modified: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    reviewed: bool | None = None

    def __post_init__(self) -> None:
        self.emotion = normalise_emotion(self.emotion)
        explanations = self.explanations
        if explanations is None:
            explanations = []
        elif isinstance(explanations, str):
            explanations = [explanations]
        self.explanations = [str(e) for e in explanations]
        self.no_stimulus = bool(self.no_stimulus)
        self.source = str(self.source)
        self.edited = bool(self.edited)
        self.score = None if self.score is None else float(self.score)
        self.extra = dict(self.extra or {})
        if self.reviewed is None:
            self.reviewed = (
                not is_model_source(self.source) or self.edited or self.no_stimulus or self.annotator is not None
            )
        self.reviewed = bool(self.reviewed)

    # The mask is either an array held here or an RLE decoded on demand; `mask` is a property (set at the end of this module).
    def _get_mask(self) -> np.ndarray | None:
        if self._mask is not None:
            return self._mask
        if self._rle is not None:
            return decode_rle(self._rle)
        return None

    def _set_mask(self, value) -> None:
        self._rle = None
        if value is None:
            self._mask = None
            return
        array = np.asarray(value)
        if array.ndim != 2:
            raise ValueError(f"a stimulus mask must be 2-D (height, width); got shape {array.shape}")
        self._mask = array.astype(bool, copy=False)

    @property
    def has_mask(self) -> bool:
        """True when the record holds a mask (an empty one for ``no_stimulus``)."""
        return self._mask is not None or self._rle is not None

    @property
    def mask_shape(self) -> tuple[int, int] | None:
        """(height, width) of the mask without decoding it."""
        if self._mask is not None:
            return self._mask.shape  # type: ignore[return-value]
        if self._rle is not None:
            return (self._rle.height, self._rle.width)
        return None

    @property
    def area(self) -> int:
        """Foreground pixels (0 without a mask), without decoding a stored mask."""
        if self._mask is not None:
            return int(np.count_nonzero(self._mask))
        if self._rle is not None:
            return self._rle.area
        return 0

    @property
    def explanation(self) -> str:
        """The first explanation, or ``""``."""
        return self.explanations[0] if self.explanations else ""

    @property
    def is_something_else(self) -> bool:
        return self.emotion == SOMETHING_ELSE

    @classmethod
    def _stored(cls, rle: RLE | None, **fields) -> Stimulus:
        stimulus = cls(**fields)
        stimulus._rle = rle
        return stimulus

    def _stored_rle(self) -> RLE | None:
        return self._rle

    def copy(self) -> Stimulus:
        """A copy that shares nothing mutable (a stored mask stays encoded)."""
        other = Stimulus(
            self.emotion,
            None,
            list(self.explanations),
            self.no_stimulus,
            self.source,
            self.edited,
            self.annotator,
            self.score,
            self.created,
            self.modified,
            dict(self.extra),
            self.reviewed,
        )
        other._mask = None if self._mask is None else self._mask.copy()
        other._rle = self._rle
        return other

    def __repr__(self) -> str:
        shape = self.mask_shape
        mask = "None" if shape is None else f"<{shape[1]}×{shape[0]}, {self.area} px>"
        return (
            f"Stimulus(emotion={self.emotion!r}, mask={mask}, explanations={self.explanations!r}, "
            f"no_stimulus={self.no_stimulus}, source={self.source!r}, edited={self.edited}, "
            f"reviewed={self.reviewed})"
        )


# A data descriptor on the dataclass: the generated __init__ assigns through the setter, and
# dataclasses.replace/asdict read through the getter (decoding a stored mask).
Stimulus.mask = property(  # type: ignore[assignment]
    Stimulus._get_mask, Stimulus._set_mask, doc="bool (H, W) mask, or None (text only)"
)
