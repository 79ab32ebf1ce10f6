"""The records of a stimulus dataset: a :class:`Painting` and its :class:`Stimulus` records.

A stimulus is what one annotator (or the model) says about one (painting, emotion) pair: a mask
(or none), its explanations, where it came from, and whether a person reviewed it. "Not annotated
yet" is the absence of a record; "this emotion has no stimulus in this painting" is a record with
``no_stimulus=True`` and an empty mask.

A pair holds at most one record per :class:`Slot`: the model's unreviewed draft, one reviewed
record per annotator, and one adjudicated record (a reviewer's decision between annotators).
:class:`PairRecords` is everything a pair holds, and says which record stands for the pair
(:attr:`PairRecords.effective`); ``docs/annotators.md`` defines votes, agreement and consensus.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any, NamedTuple

import numpy as np

from ..emotions import normalise_emotion
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
    "adjudicated",
    "annotation_seconds",
)
#: Painting fields of the format besides the core ones (kept in ``Painting.metadata``)
SKIPPED = "skipped"
ANNOTATION_SECONDS = "annotation_seconds"
#: How agreement reports and status lines name the annotator of a reviewed record without a name
UNNAMED = "(unnamed)"


def now_iso() -> str:
    """The current time in UTC, ISO 8601 to the second (``2026-11-30T21:05:44+00:00``): the one
    format every record, autosave and checkpoint is stamped with."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


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
    return value if value.tzinfo is not None else value.replace(tzinfo=_dt.UTC)


def is_model_source(source: str) -> bool:
    """``source`` names a model (``"model:<checkpoint id>"``), not a person."""
    return str(source).startswith("model:")


def replaces(existing: Stimulus | None, new: Stimulus, *, overwrite_reviewed: bool = False) -> bool:
    """Whether ``new`` may be written where ``existing`` is the pair's record (its effective
    record, :attr:`PairRecords.effective`): the one rule that keeps what a person wrote.

    A reviewed record (a person wrote, accepted or edited it, or marked the pair no stimulus) is
    never replaced by an unreviewed one (a model's draft) unless ``overwrite_reviewed`` asks for
    it: a pair a person reviewed gets no draft. A reviewed record may always be written: it goes
    to its own :class:`Slot` and replaces only what that slot held (that is a person's decision).
    Every writer of a dataset follows this rule (:meth:`StimulusDataset.write_paintings` applies
    it); the annotator can call it to decide before it asks.
    """
    if existing is None or not existing.reviewed or new.reviewed:
        return True
    return overwrite_reviewed


class Slot(NamedTuple):
    """Where a record sits among a pair's records: ``("draft", None)``, the model's unreviewed
    draft; ``("reviewed", name)``, one annotator's record (``name`` None for an unnamed one);
    ``("adjudicated", None)``, the reviewer's decision. A pair holds at most one record per slot."""

    kind: str
    annotator: str | None = None

    @property
    def label(self) -> str:
        """``draft``, ``adjudicated`` or the annotator's name (``(unnamed)``)."""
        if self.kind == "reviewed":
            return self.annotator if self.annotator is not None else UNNAMED
        return self.kind


DRAFT = Slot("draft")
ADJUDICATED = Slot("adjudicated")


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

    @property
    def skipped(self) -> dict[str, Any] | None:
        """``{"reason", "annotator", "at"}`` when an annotator took the painting out of the
        campaign (checked when the dataset is read), else None."""
        return self.metadata.get(SKIPPED) or None

    @property
    def annotation_seconds(self) -> float:
        """Active annotation time spent on the painting (0 when none was recorded)."""
        return float(self.metadata.get(ANNOTATION_SECONDS) or 0.0)


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

    ``adjudicated`` marks a reviewer's decision between several annotators' records of the pair
    (``annotator`` is the reviewer; it is reviewed). ``annotation_seconds`` is the active time a
    person spent on the record (summed over visits; 0 for drafts).
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
    adjudicated: bool = False
    annotation_seconds: float = 0.0

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
            self.reviewed = self.derive_reviewed(self.source, self.edited, self.no_stimulus, self.annotator)
        self.adjudicated = bool(self.adjudicated)
        self.reviewed = bool(self.reviewed) or self.adjudicated
        self.annotation_seconds = float(self.annotation_seconds or 0.0)

    @property
    def slot(self) -> Slot:
        """The record's place among the pair's records (see :class:`Slot`)."""
        if self.adjudicated:
            return ADJUDICATED
        return Slot("reviewed", self.annotator) if self.reviewed else DRAFT

    # The mask is either an array held here or an RLE decoded on demand; `mask` is a property
    # (set at the end of this module).
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

    @staticmethod
    def derive_reviewed(source: str, edited: bool, no_stimulus: bool, annotator: str | None) -> bool:
        """Whether a record without the ``reviewed`` field is reviewed (files written before it
        existed): unless a model proposed it and nobody edited it, marked it no stimulus or put
        their name on it."""
        return not is_model_source(source) or edited or no_stimulus or annotator is not None

    @classmethod
    def _stored(cls, rle: RLE | None, **fields) -> Stimulus:
        stimulus = cls(**fields)
        stimulus._rle = rle
        return stimulus

    @classmethod
    def _checked(
        cls, rle: RLE | None, emotion: str, explanations: list[str], no_stimulus: bool, source: str,
        edited: bool, annotator: str | None, score: float | None, created: str | None,
        modified: str | None, extra: dict[str, Any], reviewed: bool, adjudicated: bool,
        annotation_seconds: float,
    ) -> Stimulus:  # fmt: skip
        """A stored record from fields the reader has checked and normalised already (opening a
        large dataset builds tens of thousands: this skips ``__init__``'s conversions)."""
        stimulus = object.__new__(cls)
        stimulus.__dict__ = {
            "emotion": emotion, "explanations": explanations, "no_stimulus": no_stimulus, "source": source,
            "edited": edited, "annotator": annotator, "score": score, "created": created, "modified": modified,
            "extra": extra, "reviewed": reviewed, "adjudicated": adjudicated,
            "annotation_seconds": annotation_seconds, "_mask": None, "_rle": rle,
        }  # fmt: skip
        return stimulus

    def _stored_rle(self) -> RLE | None:
        return self._rle

    def copy(self) -> Stimulus:
        """A copy that shares nothing mutable (a stored mask stays encoded)."""
        other = object.__new__(Stimulus)
        other.__dict__.update(self.__dict__)
        other.explanations = list(self.explanations)
        other.extra = dict(self.extra)
        if self._mask is not None:
            other._mask = self._mask.copy()
        return other

    def __repr__(self) -> str:
        shape = self.mask_shape
        mask = "None" if shape is None else f"<{shape[1]}×{shape[0]}, {self.area} px>"
        return (
            f"Stimulus(emotion={self.emotion!r}, mask={mask}, explanations={self.explanations!r}, "
            f"no_stimulus={self.no_stimulus}, source={self.source!r}, edited={self.edited}, "
            f"reviewed={self.reviewed}, annotator={self.annotator!r}"
            + (", adjudicated=True" if self.adjudicated else "")
            + ")"
        )


# A data descriptor on the dataclass: the generated __init__ assigns through the setter, and
# dataclasses.replace/asdict read through the getter (decoding a stored mask).
Stimulus.mask = property(  # type: ignore[assignment]
    Stimulus._get_mask, Stimulus._set_mask, doc="bool (H, W) mask, or None (text only)"
)


def copy_painting(p: Painting) -> Painting:
    """A copy the caller may change (its metadata too)."""
    return replace(p, metadata=dict(p.metadata))


def same_judgement(a: Stimulus, b: Stimulus) -> bool:
    """The same judgement: mask, explanations, no stimulus, where it came from (not times, not
    whose it is)."""
    ra, rb = a._stored_rle(), b._stored_rle()
    return (
        (None if ra is None else ra.counts) == (None if rb is None else rb.counts)
        and a.explanations == b.explanations
        and a.no_stimulus == b.no_stimulus
        and a.source == b.source
        and a.edited == b.edited
        and a.extra == b.extra
    )


def effective_record(records: list[Stimulus]) -> Stimulus | None:
    """The record that stands for a pair where one record is wanted (training targets, exports,
    the single-annotator view): the adjudicated record; else the reviewed one, and of several the
    one modified last (on a tie, the annotator whose name sorts first); else the draft; else None.
    """
    adjudicated = [r for r in records if r.adjudicated]
    if adjudicated:
        return adjudicated[0]
    reviewed = sorted((r for r in records if r.reviewed), key=lambda r: r.slot.label)
    if reviewed:
        oldest = _dt.datetime.min.replace(tzinfo=_dt.UTC)
        return max(reviewed, key=lambda r: parse_time(r.modified) or oldest)
    return next((r for r in records if not r.reviewed), None)


@dataclass
class PairRecords:
    """Every record of one (painting, emotion) pair: at most one per :class:`Slot`.

    The definitions (votes, consensus, effective record) are in ``docs/annotators.md``.
    """

    painting: Painting
    emotion: str
    records: list[Stimulus]

    @property
    def draft(self) -> Stimulus | None:
        """The model's unreviewed draft (writers keep none beside a reviewed record)."""
        return next((r for r in self.records if not r.reviewed), None)

    @property
    def adjudicated(self) -> Stimulus | None:
        return next((r for r in self.records if r.adjudicated), None)

    @property
    def reviewed(self) -> list[Stimulus]:
        """The annotators' own records (reviewed, not adjudicated), by annotator name."""
        return sorted((r for r in self.records if r.reviewed and not r.adjudicated), key=lambda r: r.slot.label)

    @property
    def votes(self) -> list[Stimulus]:
        """The records agreement and consensus count: the annotators' own records that hold a
        mask or say *no stimulus* (text-only records have no say on pixels)."""
        return [r for r in self.reviewed if r.has_mask]

    @property
    def annotators(self) -> list[str]:
        """Names (``(unnamed)`` for a record without one) of the annotators with a record here."""
        return [r.slot.label for r in self.reviewed]

    @property
    def effective(self) -> Stimulus | None:
        """See :func:`effective_record`."""
        return effective_record(self.records)

    @property
    def explanations(self) -> list[str]:
        """Every person's explanation of the pair (the adjudicated record's first, then each
        annotator's by name), each once: the references for BLEU/CIDEr, as ArtEmis evaluates."""
        out: list[str] = []
        adjudicated = self.adjudicated
        for record in ([adjudicated] if adjudicated else []) + self.reviewed:
            out.extend(e for e in record.explanations if e not in out)
        return out

    def pair_votes(self):
        """The votes as :class:`napari_emosem.annotators.PairVotes` (what
        :func:`~napari_emosem.annotators.agreement` measures): each annotator's mask, None for a
        *no stimulus* vote."""
        from ..annotators import PairVotes, Vote

        votes = [Vote(v.slot.label, None if v.no_stimulus else v.mask) for v in self.votes]
        return PairVotes(self.painting.file_name, self.emotion, votes)

    def consensus_map(self, without: str | None = None) -> np.ndarray | None:
        """float32 (H, W) in [0, 1]: per pixel, the fraction of the votes that mark it (a *no
        stimulus* vote marks none); None when the pair has no vote. ``without``: leave that
        annotator's vote out (the consensus of the others, e.g. to score each annotator against
        it: the human ceiling)."""
        from ..annotators.consensus import consensus_map

        votes = [v for v in self.votes if without is None or v.slot.label != without]
        if not votes:
            return None
        return consensus_map([None if v.no_stimulus else v.mask for v in votes], self.painting.shape)

    def target(self) -> np.ndarray | None:
        """What to train and evaluate on: the adjudicated mask (0/1) when there is one, else the
        consensus map (a soft target); None when neither exists (a draft or text only)."""
        adjudicated = self.adjudicated
        if adjudicated is not None and adjudicated.has_mask:
            return adjudicated.mask.astype(np.float32)
        return self.consensus_map()
