"""One locked write's changes to the document: every painting planned first, then applied.

:meth:`Transaction.plan` makes every check that depends on the dataset (the stored painting, the
image file already there, other paintings of the write) and writes nothing, so that a refused
painting leaves the dataset untouched; :meth:`Transaction.apply` then puts each painting and its
records into the new document, slot by slot (see :class:`~.records.Slot`), and lists the image
files the commit stages and deletes (:mod:`.writing` does the file operations).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..emotions import SOMETHING_ELSE
from ..errors import DatasetError, EmoSEMError
from ..image_io import image_digest, load_image
from . import store
from .prepare import Prepared
from .records import DRAFT, Painting, Slot, Stimulus, now_iso, same_judgement
from .rle import RLE, empty_rle
from .updates import WriteReport
from .validate import Document, StoredRecord

#: a pair's records by slot, in the painting's order
Slots = dict[tuple[str, Slot], StoredRecord]


@dataclass
class Plan:
    """Where one painting of the write goes, checked; nothing written yet."""

    item: Prepared
    existing: Painting | None
    stored_name: str
    width: int
    height: int
    write_image: bool
    obsolete: str | None
    #: the painting gets other pixels: its old records describe an image that is gone
    image_changed: bool
    #: emotions of reviewed records that the new pixels make stale (with overwrite_reviewed)
    dropped_reviewed: list[str]


class Transaction:
    """What one locked write needs besides the document (whose index keeps the lookups current
    as paintings are applied, so that a batch of n paintings costs O(n), not O(n × dataset))."""

    def __init__(self, doc: Document, root: Path):
        self.doc = doc
        self.root = root
        self.images_dir = store.images_dir(root)
        #: image names the paintings of this write will be stored under
        self.planned: set[str] = set()
        #: image files to write: (painting, name under images/); staged, moved in after the commit
        self.stage: list[tuple[Prepared, str]] = []
        #: image files the new document no longer names (replaced under a new name), deleted after it
        self.remove: list[str] = []
        self.report = WriteReport()

    # -- planning: every check, nothing written --
    def plan(self, item: Prepared) -> Plan:
        by_name = self.doc.index.by_name
        existing = by_name.get(item.file_name)
        if item.stored_pixels:
            return self._plan_stored(item, existing)
        if existing is None and item.alt_file_name is not None:
            existing = by_name.get(item.alt_file_name)
        stored_name = existing.file_name if existing is not None else item.alt_file_name or item.file_name
        stored_name, write_image, obsolete, replacing = self._place_image(item, stored_name)
        if stored_name in self.planned:
            raise DatasetError(f"two paintings of one write would both be stored as images/{stored_name}")
        image_changed = existing is not None and (
            replacing or (existing.width, existing.height) != (item.width, item.height)
        )
        dropped = self._stale_reviewed(item, existing, stored_name) if image_changed else []
        self.planned.add(stored_name)
        return Plan(item, existing, stored_name, item.width, item.height, write_image, obsolete, image_changed, dropped)

    def _plan_stored(self, item: Prepared, existing: Painting | None) -> Plan:
        """An update of the stored painting, pixels unchanged: its records must fit its size."""
        if existing is None:
            raise DatasetError(f"{self.root}: no painting {item.file_name!r} in this dataset to update")
        if existing.file_name in self.planned:
            raise DatasetError(f"{item.file_name!r} is given twice in one write")
        bad = [
            s.emotion for s, _ in item.records
            if s.mask_shape is not None and tuple(s.mask_shape) != existing.shape
        ]  # fmt: skip
        if bad:
            raise DatasetError(
                f"{item.file_name}: the masks of {', '.join(bad)} are not the painting's size "
                f"({existing.width} × {existing.height})"
            )
        self.planned.add(existing.file_name)
        return Plan(item, existing, existing.file_name, existing.width, existing.height, False, None, False, [])

    def _place_image(self, item: Prepared, stored_name: str) -> tuple[str, bool, str | None, bool]:
        """(name stored under, whether the image file is written, the old file it makes obsolete,
        whether it replaces other pixels) for an image already under ``stored_name`` or not."""
        target = self.images_dir / stored_name
        if not target.exists():
            return stored_name, True, None, False
        if _same_image(target, item):
            return stored_name, False, None, False
        if not item.replace:
            raise DatasetError(
                f"images/{stored_name} already holds a different image; pass replace=True "
                "to overwrite it (its records are replaced too), or choose another file name"
            )
        if item.png is not None and item.alt_file_name and stored_name != item.alt_file_name:
            # new pixels from an array are stored as PNG: never PNG bytes under ".jpg"
            return item.alt_file_name, True, stored_name, True
        return stored_name, True, None, True

    def _stale_reviewed(self, item: Prepared, existing: Painting, stored_name: str) -> list[str]:
        """Emotions of reviewed records the new pixels make stale (the old records describe pixels
        that are gone: none of them can stay); refused without ``overwrite_reviewed``."""
        given = {(s.emotion, s.slot) for s, _ in item.records}
        dropped = sorted({
            r.stimulus.emotion
            for r in self.doc.records.get(existing.id, [])
            if r.stimulus.reviewed
            and (r.stimulus.emotion, r.stimulus.slot) not in given
            and not (item.mode == "exact" and r.stimulus.emotion not in {s.emotion for s, _ in item.records}
                     and r.stimulus.slot.kind == "reviewed" and r.stimulus.slot.annotator in item.writers)
        })  # fmt: skip
        if dropped and not item.overwrite_reviewed:
            raise DatasetError(
                f"images/{stored_name}: the new image replaces one whose reviewed records "
                f"({', '.join(dropped)}) describe the old pixels; pass overwrite_reviewed=True "
                "to drop them, or write the new image under another file name"
            )
        return dropped

    # -- applying: the new document --
    def apply(self, plan: Plan) -> Painting:
        if plan.write_image:
            self.stage.append((plan.item, plan.stored_name))
        if plan.obsolete is not None:
            self.remove.append(plan.obsolete)
        now = now_iso()
        painting, old = self._painting(plan)
        self.report.replaced_reviewed.extend((plan.stored_name, e) for e in plan.dropped_reviewed)
        slots: Slots = {(r.stimulus.emotion, r.stimulus.slot): r for r in old}
        previous = dict(slots)  # what each slot held: ids and created times carry over
        if plan.item.mode == "exact":
            _clear_for_exact(slots, plan.item)
        for s, rle in plan.item.records:
            slots = self._put_record(slots, previous, _stored_copy(s, rle, plan), plan, now)
        self.doc.put(painting, list(slots.values()))
        return painting

    def _painting(self, plan: Plan) -> tuple[Painting, list[StoredRecord]]:
        """The painting as written (a new id for a new one) and the records it keeps."""
        index, existing = self.doc.index, plan.existing
        if existing is None:
            index.last_image_id += 1
            image_id = index.last_image_id
            metadata: dict[str, Any] = {}
            old: list[StoredRecord] = []
        else:
            image_id = existing.id
            metadata = dict(existing.metadata)
            old = [] if plan.image_changed else list(self.doc.records.get(image_id, []))
        for key, value in (plan.item.metadata or {}).items():
            if key in ("id", "file_name", "width", "height"):
                continue
            if value is None:
                metadata.pop(key, None)
            else:
                metadata[key] = value
        return Painting(image_id, plan.stored_name, plan.width, plan.height, metadata), old

    def _put_record(self, slots: Slots, previous: Slots, stored: Stimulus, plan: Plan, now: str) -> Slots:
        """``slots`` with ``stored`` in its slot (or without it: a draft kept out of a reviewed
        pair); a person's record takes the place of the pair's draft."""
        emotion, slot = stored.emotion, stored.slot
        key = (emotion, slot)
        if slot == DRAFT and not self._draft_may_enter(slots, emotion, plan):
            return slots
        base = previous.get(key)
        consumed = None
        if slot != DRAFT:  # a person's record consumes the pair's draft
            consumed = previous.get((emotion, DRAFT))
            draft_key = (emotion, DRAFT)
            if draft_key in slots and key not in slots:
                # it takes the draft's place in the file: accepting keeps the painting's order
                slots = {(key if k == draft_key else k): v for k, v in slots.items()}
            slots.pop(draft_key, None)
        slots[key] = StoredRecord(self._record_id(stored, base or consumed, now), stored)
        return slots

    def _draft_may_enter(self, slots: Slots, emotion: str, plan: Plan) -> bool:
        """Whether a draft may go into a pair; it replaces the pair's reviewed records only with
        ``overwrite_reviewed`` (reported either way)."""
        reviewed_keys = [k for k in slots if k[0] == emotion and k[1] != DRAFT]
        if not reviewed_keys:
            return True
        if not plan.item.overwrite_reviewed:
            self.report.kept_reviewed.append((plan.stored_name, emotion))
            return False
        for k in reviewed_keys:
            del slots[k]
        self.report.replaced_reviewed.append((plan.stored_name, emotion))
        return True

    def _record_id(self, stored: Stimulus, base: StoredRecord | None, now: str) -> int:
        """The record's id (its predecessor's, or a new one), its times set on the way."""
        if base is None:
            index = self.doc.index
            index.last_record_id += 1
            stored.created = stored.created or now
            stored.modified = stored.modified or now
            return index.last_record_id
        stored.created = stored.created or base.stimulus.created or now
        if _same_content(base.stimulus, stored):
            stored.modified = base.stimulus.modified or stored.modified or now
        else:
            stored.modified = now
        return base.id


def _clear_for_exact(slots: Slots, item: Prepared) -> None:
    """An "exact" write: the slots given are written anew, in the order given; of the emotions not
    given, the draft and the writer's own record go (rejecting or deleting is a person's decision)."""
    given = {(s.emotion, s.slot) for s, _ in item.records}
    given_emotions = {e for e, _ in given}
    for key in list(slots):
        emotion, slot = key
        if key in given or (emotion not in given_emotions and (
            slot == DRAFT or (slot.kind == "reviewed" and slot.annotator in item.writers)
        )):  # fmt: skip
            del slots[key]


def _stored_copy(s: Stimulus, rle: RLE | None, plan: Plan) -> Stimulus:
    """The record as the dataset stores it (a no-stimulus record gets the painting's empty mask)."""
    if rle is None and s.no_stimulus and s.emotion != SOMETHING_ELSE:
        rle = empty_rle(plan.height, plan.width)
    return Stimulus._stored(
        rle,
        emotion=s.emotion,
        explanations=list(s.explanations),
        no_stimulus=s.no_stimulus and s.emotion != SOMETHING_ELSE,
        source=s.source,
        edited=s.edited,
        annotator=s.annotator,
        score=s.score,
        created=s.created,
        modified=s.modified,
        extra=dict(s.extra),
        reviewed=s.reviewed,
        adjudicated=s.adjudicated,
        annotation_seconds=s.annotation_seconds,
    )


def _same_content(a: Stimulus, b: Stimulus) -> bool:
    """The same record, whose it is included (not times): its modified time stays."""
    return (
        same_judgement(a, b)
        and a.reviewed == b.reviewed
        and a.adjudicated == b.adjudicated
        and a.annotator == b.annotator
        and a.score == b.score
    )


def _same_image(target: Path, item: Prepared) -> bool:
    if item.source is not None:
        if _file_equal(item.source, target):
            return True
        try:
            theirs = load_image(item.source)
        except EmoSEMError:
            return False
    else:
        theirs = item.rgb
    try:
        ours = load_image(target)
    except EmoSEMError:
        return False
    return ours.shape == theirs.shape and image_digest(ours) == image_digest(theirs)


def _file_equal(a: Path, b: Path) -> bool:
    try:
        if a.stat().st_size != b.stat().st_size:
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                ca, cb = fa.read(1 << 20), fb.read(1 << 20)
                if ca != cb:
                    return False
                if not ca:
                    return True
    except OSError:
        return False
