"""The stimulus dataset: a folder with ``images/`` and a COCO ``annotations.json``.

One :class:`StimulusDataset` API serves the plugin, ``propose``, ``train`` and ``evaluate``::

    ds = StimulusDataset.open("my-dataset", create=True)
    ds.write_painting(rgb, "starry-night.png", [Stimulus("awe", mask, ["the swirling sky"])])
    for painting, stimulus in ds.pairs(with_masks_only=True):
        ...

Opening validates the whole file (see :mod:`.validate`). Writing upserts paintings under a
cross-process lock, re-reading the file first, so concurrent writers never lose each other's
paintings, and a write that adds or replaces image files goes through a journal, so a kill at any
point leaves the old dataset or the new one (see :mod:`.store`). A reviewed record is never
replaced by a model's draft unless the write asks for it (:func:`.records.replaces`). The format
is documented in ``docs/dataset-format.md``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import secrets
import shutil
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .. import __version__
from .._io import check_writable_dir, create_new, describe_os_error, fsync_dir
from ..emotions import EMOTIONS, POSITIVE, SOMETHING_ELSE, parse_emotions
from ..errors import DatasetError, EmoSEMError
from ..image_io import (
    IMAGE_SUFFIXES,
    MAX_PIXELS,
    MIN_SIDE,
    image_digest,
    load_image,
    to_rgb_uint8,
)
from . import store
from .records import (
    ANNOTATION_FIELDS,
    METADATA_KEYS,
    Painting,
    Stimulus,
    now_iso,
    replaces,
)
from .rle import RLE, empty_rle, encode_mask, rle_bbox
from .validate import (
    CATEGORY_IDS,
    FORMAT_NAME,
    FORMAT_VERSION,
    Document,
    HeaderCache,
    StoredRecord,
    check_file_name,
    image_header_size,
    parse_document,
    parse_json_text,
)

IMAGES = "images"
#: How a write treats the painting's records: see :class:`PaintingUpdate`.
RECORD_MODES = ("exact", "merge")


@dataclass
class PaintingUpdate:
    """One painting to write with :meth:`StimulusDataset.write_paintings`."""

    #: RGB uint8 array (stored as PNG) or the path of an image file (its bytes are copied as is)
    image: np.ndarray | str | os.PathLike
    #: name under ``images/``; defaults to the source file's name for a path
    file_name: str | None = None
    stimuli: Sequence[Stimulus] = ()
    #: merged into the painting's metadata (artist, title, style, …); a None value removes a key
    metadata: dict[str, Any] | None = None
    #: overwrite an image of the same file name with different pixels
    replace: bool = False
    #: "exact": the painting's records become ``stimuli``; records of emotions not given are
    #: removed (an annotator's export: deleting or rejecting a record is a person's decision).
    #: "merge": only the emotions given are written and the painting's other records stay (a
    #: model's proposals for some emotions).
    records: str = "exact"
    #: let an unreviewed record (a model's draft) replace a reviewed one; see
    #: :func:`napari_emosem.data.records.replaces`. Without it such a record is kept and counted
    #: in :attr:`WriteReport.kept_reviewed`.
    overwrite_reviewed: bool = False


@dataclass
class WriteReport:
    """What :meth:`StimulusDataset.write_paintings` wrote."""

    #: the paintings written, in the order given
    paintings: list[Painting] = dataclasses.field(default_factory=list)
    #: (file name, emotion) of reviewed records kept in place of an unreviewed one
    kept_reviewed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    #: (file name, emotion) of reviewed records an unreviewed write replaced or dropped
    #: (only with ``overwrite_reviewed``)
    replaced_reviewed: list[tuple[str, str]] = dataclasses.field(default_factory=list)


@dataclass
class _Prepared:
    file_name: str
    alt_file_name: str | None  # the name an array is stored under when file_name is not .png
    width: int
    height: int
    png: bytes | None
    source: Path | None
    rgb: np.ndarray | None
    records: list[tuple[Stimulus, RLE | None]]
    metadata: dict[str, Any] | None
    replace: bool
    mode: str
    overwrite_reviewed: bool


class _Transaction:
    """What one locked write needs besides the document: lookups kept current as paintings are
    applied (so a batch of n paintings costs O(n), not O(n × dataset))."""

    def __init__(self, doc: Document):
        self.doc = doc
        self.by_name = doc.by_file_name()
        self.next_image_id = max(doc.paintings, default=0) + 1
        self.next_record_id = max((r.id for rs in doc.records.values() for r in rs), default=0) + 1
        #: image names the paintings of this write will be stored under
        self.planned: set[str] = set()
        #: image files to write: (painting, name under images/); staged, moved in after the commit
        self.stage: list[tuple[_Prepared, str]] = []
        #: image files the new JSON no longer names (replaced under a new name), deleted after it
        self.remove: list[str] = []
        self.report = WriteReport()


@dataclass
class _Plan:
    item: _Prepared
    existing: Painting | None
    stored_name: str
    write_image: bool
    obsolete: str | None
    #: the painting gets other pixels: its old records describe an image that is gone
    image_changed: bool
    #: emotions of reviewed records that the new pixels make stale (with overwrite_reviewed)
    dropped_reviewed: list[str]


@dataclass
class _DiskState:
    # identifies the version of annotations.json the in-memory document was read from
    ino: int
    mtime_ns: int
    size: int


class StimulusDataset:
    """A stimulus dataset on disk. Create with :meth:`open`."""

    def __init__(self, root: Path, document: Document, *, lock_timeout: float, disk: _DiskState | None):
        self._root = root
        self._doc = document
        self._disk = disk
        self._lock_timeout = lock_timeout
        self._header_cache: HeaderCache = {}
        self._digest_cache: dict[tuple[str, int, int], str] = {}
        self._thread_lock = threading.Lock()
        self._index_for: Document | None = None
        self._index: tuple[dict[str, Painting], dict[str, list[Painting]]] = ({}, {})
        #: images of a committed write not yet moved into place (see store.pending_images)
        self._pending: dict[str, Path] = {}

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        root: str | os.PathLike,
        *,
        create: bool = False,
        lock_timeout: float = store.DEFAULT_LOCK_TIMEOUT,
    ) -> StimulusDataset:
        """Open the dataset in folder ``root`` (or the folder of an ``annotations.json`` path).

        Everything is validated; problems raise one :class:`DatasetError` listing all of them.
        With ``create=True`` a folder without ``annotations.json`` opens as an empty dataset
        (the folder is created; the file is written by the first write).
        """
        root = Path(root).expanduser()
        if root.name == store.ANNOTATIONS and root.is_file():
            root = root.parent
        if root.exists() and not root.is_dir():
            raise DatasetError(f"{root} is a file; a stimulus dataset is a folder")
        if not root.exists() and not create:
            raise DatasetError(
                f"{root}: no such folder; give the folder of a stimulus dataset (the one that "
                f"holds {store.ANNOTATIONS} and images/)"
            )
        if create:
            check_writable_dir(root)
        dataset = cls(root, Document(), lock_timeout=lock_timeout, disk=None)
        found = dataset._load_from_disk(check_images=True)
        if not found and not create:
            raise DatasetError(
                f"{root} has no {store.ANNOTATIONS}, so it is not a stimulus dataset; give the "
                f"folder that holds {store.ANNOTATIONS} and images/ (emosem propose --out, "
                "import-apolo --out and the annotator's Export create one)"
            )
        return dataset

    def reload(self) -> None:
        """Re-read ``annotations.json`` (e.g. after another process wrote to it)."""
        self._load_from_disk(check_images=True)

    def _load_from_disk(self, *, check_images: bool) -> bool:
        path = store.annotations_path(self._root)
        for attempt in range(3):
            disk = _stat(path)
            text = store.read_text(self._root)
            if text is None:
                self._doc, self._disk, self._pending = Document(), None, {}
                return False
            obj = parse_json_text(text, path)
            info = obj.get("info") if isinstance(obj, dict) else None
            pending = store.pending_images(self._root, info.get("write_id") if isinstance(info, dict) else None)
            try:
                doc = parse_document(
                    obj, self._root, check_images=check_images, header_cache=self._header_cache,
                    pending=pending,
                )
            except DatasetError:
                # a writer committed between our reading the JSON and checking its images: read again
                if attempt < 2 and _stat(path) != disk:
                    continue
                raise
            self._doc, self._disk, self._pending = doc, disk, pending
            return True
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ reading
    @property
    def root(self) -> Path:
        """The dataset folder."""
        return self._root

    @property
    def images_dir(self) -> Path:
        return self._root / IMAGES

    @property
    def paintings(self) -> list[Painting]:
        """All paintings, in file order."""
        return [_copy_painting(p) for p in self._doc.paintings.values()]

    def __len__(self) -> int:
        return len(self._doc.paintings)

    def __repr__(self) -> str:
        n_records = sum(len(r) for r in self._doc.records.values())
        return f"StimulusDataset({str(self._root)!r}, paintings={len(self)}, records={n_records})"

    def painting(self, key: str | int | Painting) -> Painting | None:
        """The painting with this id, file name, or name (file stem, when unique); else None."""
        found = self._find(key)
        return None if found is None else _copy_painting(found)

    def _find(self, key: str | int | Painting) -> Painting | None:
        if isinstance(key, Painting):
            key = key.id
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            return self._doc.paintings.get(int(key))
        if isinstance(key, str):
            by_name, by_stem = self._name_index()
            found = by_name.get(key)
            if found is None:
                stems = by_stem.get(key, [])
                found = stems[0] if len(stems) == 1 else None
            return found
        return None

    def _name_index(self) -> tuple[dict[str, Painting], dict[str, list[Painting]]]:
        # rebuilt whenever the document object changes (every read or write replaces it)
        if self._index_for is not self._doc:
            by_name, by_stem = {}, {}
            for p in self._doc.paintings.values():
                by_name[p.file_name] = p
                by_stem.setdefault(p.name, []).append(p)
            self._index = (by_name, by_stem)
            self._index_for = self._doc
        return self._index

    def _require(self, key: str | int | Painting) -> Painting:
        found = self._find(key)
        if found is None:
            raise DatasetError(f"{self._root}: no painting {key!r} in this dataset")
        return found

    def stimuli(self, painting: str | int | Painting) -> list[Stimulus]:
        """All records of ``painting`` (copies: changing them changes nothing until written)."""
        p = self._require(painting)
        return [r.stimulus.copy() for r in self._doc.records.get(p.id, [])]

    def stimulus(self, painting: str | int | Painting, emotion: str) -> Stimulus | None:
        """The record of (painting, emotion), or None when that pair is not annotated yet."""
        from ..emotions import normalise_emotion

        emotion = normalise_emotion(emotion)
        for s in self.stimuli(painting):
            if s.emotion == emotion:
                return s
        return None

    def image_path(self, painting: str | int | Painting) -> Path:
        """The painting's image file."""
        return self._image_file(self._require(painting).file_name)

    def _image_file(self, file_name: str) -> Path:
        staged = self._pending.get(file_name)
        if staged is not None and staged.exists():  # committed, not moved into place yet
            return staged
        return self.images_dir / file_name

    def image(self, painting: str | int | Painting) -> np.ndarray:
        """The painting's pixels, RGB uint8 (H, W, 3)."""
        p = self._require(painting)
        path = self._image_file(p.file_name)
        rgb = load_image(path)
        if rgb.shape[:2] != (p.height, p.width):
            raise DatasetError(
                f"{path} is {rgb.shape[1]} × {rgb.shape[0]} px but the "
                f"dataset says {p.width} × {p.height}; the file was replaced outside "
                "napari-emosem. Restore it, or write the painting again"
            )
        return rgb

    def pairs(
        self,
        emotions: str | Iterable[str] | None = None,
        *,
        with_masks_only: bool = False,
        include_something_else: bool = False,
    ) -> list[tuple[Painting, Stimulus]]:
        """(painting, stimulus) for every record of the chosen emotions (default: all eight).

        ``with_masks_only`` keeps records that hold a mask, including the empty masks of
        ``no_stimulus`` records (negatives for training); text-only records are dropped.
        "something else" records (text only) come along only with ``include_something_else``.
        Masks are decoded when read (see :class:`Stimulus`), so this list stays small.
        """
        chosen = set(parse_emotions(emotions))
        if include_something_else:
            chosen.add(SOMETHING_ELSE)
        out = []
        for p in self._doc.paintings.values():
            painting = None
            for record in self._doc.records.get(p.id, []):
                s = record.stimulus
                if s.emotion not in chosen or (with_masks_only and not s.has_mask):
                    continue
                painting = painting or _copy_painting(p)
                out.append((painting, s.copy()))
        return out

    def summary(self) -> dict[str, Any]:
        """Counts for checkpoint metadata and status lines (JSON-serialisable)."""
        per_emotion = {e: {"pairs": 0, "with_mask": 0, "no_stimulus": 0, "explained": 0} for e in EMOTIONS}
        sources: Counter[str] = Counter()
        totals = Counter()
        for records in self._doc.records.values():
            for record in records:
                s = record.stimulus
                sources[s.source] += 1
                totals["edited"] += s.edited
                if s.emotion == SOMETHING_ELSE:
                    totals["something_else"] += 1
                    continue
                row = per_emotion[s.emotion]
                row["pairs"] += 1
                row["with_mask"] += s.has_mask and not s.no_stimulus
                row["no_stimulus"] += s.no_stimulus
                row["explained"] += bool(s.explanations)
        return {
            "root": str(self._root),
            "paintings": len(self._doc.paintings),
            "pairs": sum(r["pairs"] for r in per_emotion.values()),
            "with_mask": sum(r["with_mask"] for r in per_emotion.values()),
            "no_stimulus": sum(r["no_stimulus"] for r in per_emotion.values()),
            "text_only": sum(r["pairs"] - r["with_mask"] - r["no_stimulus"] for r in per_emotion.values()),
            "explained": sum(r["explained"] for r in per_emotion.values()),
            "something_else": totals["something_else"],
            "edited": totals["edited"],
            "sources": dict(sorted(sources.items())),
            "per_emotion": per_emotion,
        }

    def content_hash(self) -> str:
        """A stable hash of what training reads: every painting's file bytes and size, and each
        record's emotion, mask, explanations and no-stimulus flag (not ids, times or authors).
        Two datasets with the same content hash train the same model."""
        h = hashlib.sha256()
        h.update(f"{FORMAT_NAME} {FORMAT_VERSION}\n".encode())
        for p in sorted(self._doc.paintings.values(), key=lambda p: p.file_name):
            records = sorted(self._doc.records.get(p.id, []), key=lambda r: r.stimulus.emotion)
            entry = {
                "file_name": p.file_name,
                "size": [p.width, p.height],
                "file": self._file_digest(self._image_file(p.file_name)),
                "records": [
                    [
                        r.stimulus.emotion,
                        None if r.stimulus._stored_rle() is None else r.stimulus._stored_rle().counts,
                        r.stimulus.explanations,
                        r.stimulus.no_stimulus,
                    ]
                    for r in records
                ],
            }
            h.update(json.dumps(entry, sort_keys=True, ensure_ascii=False).encode("utf-8"))
            h.update(b"\n")
        return h.hexdigest()

    def _file_digest(self, path: Path) -> str:
        try:
            st = path.stat()
        except OSError:
            return "missing"
        key = (str(path), st.st_mtime_ns, st.st_size)
        digest = self._digest_cache.get(key)
        if digest is None:
            b = hashlib.blake2b(digest_size=16)
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    b.update(chunk)
            digest = self._digest_cache[key] = b.hexdigest()
        return digest

    # ------------------------------------------------------------------ writing
    def write_painting(
        self,
        image: np.ndarray | str | os.PathLike,
        file_name: str | None = None,
        stimuli: Sequence[Stimulus] = (),
        *,
        metadata: dict[str, Any] | None = None,
        replace: bool = False,
        records: str = "exact",
        overwrite_reviewed: bool = False,
    ) -> Painting:
        """Add a painting with its records, or update the painting stored under the same file
        name (its id and the ids of its (painting, emotion) records stay).

        ``image`` is an RGB array (stored as PNG; a ``file_name`` not ending in ``.png`` is
        stored as ``<stem>.png`` unless the dataset already holds a painting of exactly that
        name and the same pixels) or the path of an image file (its bytes are copied).
        A stored image with different pixels is only overwritten with ``replace=True``.
        ``records`` and ``overwrite_reviewed``: see :class:`PaintingUpdate`; a reviewed record
        is kept rather than replaced by an unreviewed one unless ``overwrite_reviewed``
        (:meth:`write_paintings` reports how many).
        """
        update = PaintingUpdate(
            image, file_name, stimuli, metadata=metadata, replace=replace, records=records,
            overwrite_reviewed=overwrite_reviewed,
        )
        return self.write_paintings([update]).paintings[0]

    def write_paintings(self, updates: Iterable[PaintingUpdate]) -> WriteReport:
        """Write several paintings in one locked transaction (one rewrite of the JSON file).

        Either every painting is written or none is (a refused painting raises
        :class:`DatasetError` listing every problem, before anything is written).
        """
        prepared, problems = [], []
        for index, update in enumerate(updates):
            try:
                prepared.append(self._prepare(update))
            except DatasetError as exc:
                problems.extend(exc.problems or [str(exc)])
            except EmoSEMError as exc:
                problems.append(f"painting {index + 1}: {exc}")
        names = Counter(p.file_name for p in prepared)
        problems.extend(f"{n!r} is given {c} times in one write" for n, c in names.items() if c > 1)
        if problems:
            raise DatasetError(f"{self._root}: nothing was written", problems)
        if not prepared:
            return WriteReport()
        try:
            with self._thread_lock, store.write_lock(self._root, self._lock_timeout):
                self.images_dir.mkdir(exist_ok=True)
                doc = self._document_under_lock()
                store.recover(self._root, doc.info.get("write_id"))
                new_doc = _shallow_copy(doc)
                tx = _Transaction(new_doc)
                plans = [self._plan(tx, item) for item in prepared]  # may refuse: nothing written yet
                tx.report.paintings = [self._apply(tx, plan) for plan in plans]
                self._commit(new_doc, tx.stage, tx.remove)
        except OSError as exc:
            raise DatasetError(f"{self._root}: nothing was written ({describe_os_error(exc)})") from None
        tx.report.paintings = [_copy_painting(p) for p in tx.report.paintings]
        return tx.report

    def remove_painting(self, painting: str | int | Painting, *, delete_image: bool = True) -> bool:
        """Remove a painting and all its records; returns False when it was not there."""
        key = painting.file_name if isinstance(painting, Painting) else painting
        try:
            with self._thread_lock, store.write_lock(self._root, self._lock_timeout):
                doc = self._document_under_lock()
                store.recover(self._root, doc.info.get("write_id"))
                self._doc = doc
                target = self._find(key)
                if target is None:
                    return False
                new_doc = _shallow_copy(doc)
                del new_doc.paintings[target.id]
                new_doc.records.pop(target.id, None)
                self._commit(new_doc, [], [target.file_name] if delete_image else [])
        except OSError as exc:
            raise DatasetError(f"{self._root}: nothing was written ({describe_os_error(exc)})") from None
        return True

    def _commit(self, doc: Document, stage: list[tuple[_Prepared, str]], remove: list[str]) -> None:
        """Write ``doc`` and the image files of this write so that a kill at any point leaves the
        old dataset or the new one (see :mod:`.store`). Call under the lock."""
        write_id = secrets.token_hex(8)
        doc.info["write_id"] = write_id
        if not stage and not remove:
            self._write_document(doc)
            return
        journal = store.Journal(write_id, [], list(remove))
        journal.moves = [(journal.staged(i), name) for i, (_, name) in enumerate(stage)]
        try:
            store.write_journal(self._root, journal)
            if stage:
                folder = store.staging_dir(self._root) / write_id
                folder.mkdir(parents=True)
                for (item, _), (staged, _) in zip(stage, journal.moves):
                    _write_image_file(self.images_dir / staged, item)
                fsync_dir(folder)
            self._write_document(doc)  # the commit
        except BaseException:
            store.discard(self._root, journal)
            raise
        try:
            store.complete(self._root, journal)
        except OSError as exc:
            self._pending = {name: self.images_dir / staged for staged, name in journal.moves}
            raise DatasetError(
                f"{self._root}: the records were written, but moving their images into place "
                f"failed ({describe_os_error(exc)}); the dataset opens as it is, and the next "
                "write to it finishes the move"
            ) from None
        self._pending = {}

    def _document_under_lock(self) -> Document:
        """The file's current content: our copy if nobody changed it since, else re-read."""
        path = store.annotations_path(self._root)
        current = _stat(path)
        if current is not None and current == self._disk:
            return self._doc
        if current is None:
            return Document() if self._disk is None else self._doc_missing_error()
        text = store.read_text(self._root)
        obj = parse_json_text(text, path)
        # Image files of other paintings are not checked here: an unrelated missing file must not
        # block saving; open() reports it.
        doc = parse_document(obj, self._root, check_images=False, header_cache=self._header_cache)
        self._doc, self._disk = doc, current
        return doc

    def _doc_missing_error(self) -> Document:
        raise DatasetError(
            f"{store.annotations_path(self._root)} was deleted while this dataset was open; "
            "nothing was written. Restore it, or open the folder again to start afresh"
        )

    def _write_document(self, doc: Document) -> None:
        store.write_json(self._root, _to_json(doc))
        self._doc = doc
        self._disk = _stat(store.annotations_path(self._root))

    # -- preparing (outside the lock) --
    def _prepare(self, update: PaintingUpdate) -> _Prepared:
        image = update.image
        file_name = update.file_name
        alt = None
        png = source = rgb = None
        if isinstance(image, (str, os.PathLike)):
            source = Path(image).expanduser()
            if file_name is None:
                file_name = source.name
            size = image_header_size(source)
            if isinstance(size, str):
                raise DatasetError(f"{source} {size}")
            width, height = size
            if min(width, height) < MIN_SIDE or width * height > MAX_PIXELS:
                load_image(source)  # raises the ImageError that explains the size limit
        else:
            if file_name is None:
                raise DatasetError("give a file_name for a painting passed as an array")
            rgb = to_rgb_uint8(image, file_name)
            height, width = rgb.shape[:2]
            if PurePosixPath(file_name).suffix.lower() != ".png":
                alt = str(PurePosixPath(file_name).with_suffix(".png"))
                if PurePosixPath(file_name).suffix.lower() not in IMAGE_SUFFIXES:
                    alt = file_name + ".png"  # "Starry night" or "v1.2": keep the whole name
            png = _encode_png(rgb)
        problem = check_file_name(file_name) or (alt and check_file_name(alt))
        if problem:
            raise DatasetError(problem)
        if alt is None and PurePosixPath(file_name).suffix.lower() not in IMAGE_SUFFIXES:
            raise DatasetError(
                f"file_name {file_name!r} must end in an image suffix ({', '.join(IMAGE_SUFFIXES)})"
            )
        records, problems = [], []
        seen = set()
        where = file_name
        if update.records not in RECORD_MODES:
            problems.append(f"{where}: records={update.records!r}; choose {' or '.join(map(repr, RECORD_MODES))}")
        if _json_problem(update.metadata):
            problems.append(f"{where}: metadata {_json_problem(update.metadata)}")
        for s in update.stimuli:
            if not isinstance(s, Stimulus):
                problems.append(f"{where}: expected Stimulus records; got {type(s).__name__}")
                continue
            if s.emotion in seen:
                problems.append(f"{where}: two records for {s.emotion!r}; give one per emotion")
                continue
            seen.add(s.emotion)
            rle = s._stored_rle()
            mask = None if rle is not None else s._mask
            shape = s.mask_shape
            if shape is not None and tuple(shape) != (height, width):
                problems.append(
                    f"{where}, {s.emotion}: mask is {shape[1]} × {shape[0]} px but the painting "
                    f"is {width} × {height}"
                )
                continue
            if s.emotion == SOMETHING_ELSE:
                if s.area > 0:
                    problems.append(
                        f"{where}: '{SOMETHING_ELSE}' carries explanations only, never a mask"
                    )
                    continue
                rle = None
            elif s.no_stimulus:
                if s.area > 0:
                    problems.append(f"{where}, {s.emotion}: no_stimulus is set but the mask is not empty")
                    continue
                rle = empty_rle(height, width)
            elif mask is not None:
                rle = encode_mask(mask)
            bad_extra = [k for k in s.extra if k in _RESERVED]
            if bad_extra:
                problems.append(f"{where}, {s.emotion}: extra fields {bad_extra} clash with the format's own")
                continue
            if s.score is not None and not math.isfinite(s.score):
                problems.append(f"{where}, {s.emotion}: score {s.score} is not a number; give one in [0, 1] or None")
                continue
            if _json_problem(s.extra):
                problems.append(f"{where}, {s.emotion}: extra fields {_json_problem(s.extra)}")
                continue
            records.append((s, rle))
        if problems:
            raise DatasetError("bad records", problems)
        return _Prepared(
            file_name, alt, int(width), int(height), png, source, rgb, records,
            update.metadata, update.replace, update.records, bool(update.overwrite_reviewed),
        )

    # -- under the lock: first plan every painting (all checks, nothing written), then apply --
    def _plan(self, tx: _Transaction, item: _Prepared) -> _Plan:
        existing = tx.by_name.get(item.file_name)
        if existing is None and item.alt_file_name is not None:
            existing = tx.by_name.get(item.alt_file_name)
        stored_name = existing.file_name if existing is not None else item.alt_file_name or item.file_name
        target = self.images_dir / stored_name
        write_image, obsolete, replacing = True, None, False
        if target.exists():
            if self._same_image(target, item):
                write_image = False
            elif not item.replace:
                raise DatasetError(
                    f"images/{stored_name} already holds a different image; pass replace=True "
                    "to overwrite it (its records are replaced too), or choose another file name"
                )
            else:
                replacing = True
                if item.png is not None and item.alt_file_name and stored_name != item.alt_file_name:
                    # new pixels from an array are stored as PNG: never PNG bytes under ".jpg"
                    obsolete, stored_name = stored_name, item.alt_file_name
        if stored_name in tx.planned:
            raise DatasetError(f"two paintings of one write would both be stored as images/{stored_name}")
        image_changed = existing is not None and (
            replacing or (existing.width, existing.height) != (item.width, item.height)
        )
        dropped = []
        if image_changed:
            # the old records describe pixels that are gone: none of them can stay
            given = {s.emotion: s for s, _ in item.records}
            dropped = [
                r.stimulus.emotion
                for r in tx.doc.records.get(existing.id, [])
                if r.stimulus.reviewed
                and not (r.stimulus.emotion in given and given[r.stimulus.emotion].reviewed)
                and not (item.mode == "exact" and r.stimulus.emotion not in given)
            ]
            if dropped and not item.overwrite_reviewed:
                raise DatasetError(
                    f"images/{stored_name}: the new image replaces one whose reviewed records "
                    f"({', '.join(dropped)}) describe the old pixels; pass overwrite_reviewed=True "
                    "to drop them, or write the new image under another file name"
                )
        tx.planned.add(stored_name)
        return _Plan(item, existing, stored_name, write_image, obsolete, image_changed, dropped)

    def _apply(self, tx: _Transaction, plan: _Plan) -> Painting:
        doc, by_name = tx.doc, tx.by_name
        item, existing, stored_name = plan.item, plan.existing, plan.stored_name
        if plan.write_image:
            tx.stage.append((item, stored_name))
        if plan.obsolete is not None:
            tx.remove.append(plan.obsolete)

        now = now_iso()
        if existing is None:
            image_id = tx.next_image_id
            tx.next_image_id += 1
            metadata: dict[str, Any] = {}
            old_records: dict[str, StoredRecord] = {}
        else:
            image_id = existing.id
            metadata = dict(existing.metadata)
            old_records = {r.stimulus.emotion: r for r in doc.records.get(image_id, [])}
        for key, value in (item.metadata or {}).items():
            if key in ("id", "file_name", "width", "height"):
                continue
            if value is None:
                metadata.pop(key, None)
            else:
                metadata[key] = value
        painting = Painting(image_id, stored_name, item.width, item.height, metadata)

        tx.report.replaced_reviewed.extend((stored_name, e) for e in plan.dropped_reviewed)
        # "merge" starts from the records that stay; "exact" from none. New pixels keep none.
        records: dict[str, StoredRecord] = {}
        if item.mode == "merge" and not plan.image_changed:
            records = dict(old_records)
        for s, rle in item.records:
            old = old_records.get(s.emotion)
            stored = Stimulus._stored(
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
            )
            if old is not None and not plan.image_changed:
                if not replaces(old.stimulus, stored, overwrite_reviewed=item.overwrite_reviewed):
                    records[s.emotion] = old
                    tx.report.kept_reviewed.append((stored_name, s.emotion))
                    continue
                if old.stimulus.reviewed and not stored.reviewed:
                    tx.report.replaced_reviewed.append((stored_name, s.emotion))
            if old is None:
                record_id = tx.next_record_id
                tx.next_record_id += 1
                stored.created = stored.created or now
                stored.modified = stored.modified or now
            else:
                record_id = old.id
                stored.created = stored.created or old.stimulus.created or now
                if _same_content(old.stimulus, stored):
                    stored.modified = old.stimulus.modified or stored.modified or now
                else:
                    stored.modified = now
            records[s.emotion] = StoredRecord(record_id, stored)
        doc.paintings[image_id] = painting
        doc.records[image_id] = list(records.values())
        if existing is not None and existing.file_name != stored_name:
            del by_name[existing.file_name]
        by_name[stored_name] = painting
        return painting

    def _same_image(self, target: Path, item: _Prepared) -> bool:
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


def _write_image_file(target: Path, item: _Prepared) -> None:
    """Write a painting's bytes to a new file (a staged one: the journal decides its fate)."""
    fd = create_new(target)
    with os.fdopen(fd, "wb") as handle:
        if item.png is not None:
            handle.write(item.png)
        else:
            with open(item.source, "rb") as src:
                shutil.copyfileobj(src, handle, 1 << 20)
        handle.flush()
        os.fsync(handle.fileno())


_RESERVED = frozenset(ANNOTATION_FIELDS)


def _json_problem(value: Any) -> str | None:
    """Why ``value`` cannot be written into annotations.json (not JSON, NaN, too deep), or None."""
    if not value:
        return None
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        return f"cannot be written as JSON ({str(exc).splitlines()[0][:120]})"
    return None


def _same_content(a: Stimulus, b: Stimulus) -> bool:
    ra, rb = a._stored_rle(), b._stored_rle()
    return (
        (None if ra is None else ra.counts) == (None if rb is None else rb.counts)
        and a.explanations == b.explanations
        and a.no_stimulus == b.no_stimulus
        and a.source == b.source
        and a.edited == b.edited
        and a.reviewed == b.reviewed
        and a.annotator == b.annotator
        and a.score == b.score
        and a.extra == b.extra
    )


def _encode_png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=4)
    return buffer.getvalue()


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


def _stat(path: Path) -> _DiskState | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return _DiskState(st.st_ino, st.st_mtime_ns, st.st_size)


def _copy_painting(p: Painting) -> Painting:
    return dataclasses.replace(p, metadata=dict(p.metadata))


def _shallow_copy(doc: Document) -> Document:
    return Document(
        info=dict(doc.info),
        paintings=dict(doc.paintings),
        records={k: list(v) for k, v in doc.records.items()},
        extra=dict(doc.extra),
    )


def _supercategory(emotion: str) -> str:
    if emotion == SOMETHING_ELSE:
        return "other"
    return "positive" if emotion in POSITIVE else "negative"


def _to_json(doc: Document) -> dict[str, Any]:
    now = now_iso()
    info = dict(doc.info)
    info.setdefault("description", "Emotion stimuli in paintings (napari-emosem)")
    info.setdefault("version", "1.0")
    info.setdefault("year", int(now[:4]))
    info.setdefault("date_created", now)
    info.update(
        format=FORMAT_NAME,
        format_version=FORMAT_VERSION,
        date_modified=now,
        writer=f"napari-emosem {__version__}",
    )
    images = []
    annotations = []
    for p in doc.paintings.values():
        entry = {"id": p.id, "file_name": p.file_name, "width": p.width, "height": p.height}
        for key in METADATA_KEYS:
            if key in p.metadata:
                entry[key] = p.metadata[key]
        entry.update({k: v for k, v in p.metadata.items() if k not in entry})
        images.append(entry)
        for record in doc.records.get(p.id, []):
            annotations.append(_annotation_json(record, p))
    out: dict[str, Any] = {"info": info}
    out.update(doc.extra)
    out["images"] = images
    out["categories"] = [
        {"id": CATEGORY_IDS[e], "name": e, "supercategory": _supercategory(e)}
        for e in (*EMOTIONS, SOMETHING_ELSE)
    ]
    out["annotations"] = annotations
    return out


def _annotation_json(record: StoredRecord, painting: Painting) -> dict[str, Any]:
    s = record.stimulus
    rle = s._stored_rle()
    has_mask = rle is not None
    if rle is None:
        rle = empty_rle(painting.height, painting.width)
    ann: dict[str, Any] = {
        "id": record.id,
        "image_id": painting.id,
        "category_id": CATEGORY_IDS[s.emotion],
        "segmentation": rle.to_json(),
        "area": rle.area,
        "bbox": rle_bbox(rle),
        # one region per record, not a COCO "crowd": COCOeval would otherwise ignore matches
        "iscrowd": 0,
        "explanation": s.explanation,
        "explanations": list(s.explanations),
        "source": s.source,
        "edited": s.edited,
        "reviewed": s.reviewed,
        "annotator": s.annotator,
        "created": s.created,
        "modified": s.modified,
        "score": s.score,
        "no_stimulus": s.no_stimulus,
        "has_mask": has_mask,
    }
    ann.update(s.extra)
    return ann
