"""The stimulus dataset: a folder with ``images/`` and a COCO ``annotations.json``.

One :class:`StimulusDataset` API serves the plugin, ``propose``, ``train`` and ``evaluate``::

    ds = StimulusDataset.open("my-dataset", create=True)
    ds.write_painting(rgb, "starry-night.png", [Stimulus("awe", mask, ["the swirling sky"])])
    for painting, stimulus in ds.pairs(with_masks_only=True):
        ...

Opening validates the whole file and the journal lines written since it (see :mod:`.validate`);
the checked parse of a large dataset is cached under the hash of its bytes (:mod:`.parse_cache`).
Writing upserts paintings under a cross-process lock, catching up with the file first, so
concurrent writers never lose each other's paintings. Each write appends one line to the journal
(O(the paintings written), crash-safe: see :mod:`.store`); when the journal has grown enough (see
:class:`Compaction`) it is folded into ``annotations.json``. A reviewed record is never replaced by
a model's draft unless the write asks for it (:func:`.records.replaces`), and a person's save
replaces only their own records (:class:`~.records.Slot`). The format is documented in
``docs/dataset-format.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
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
from .parse_cache import CachedParse, JournalPrefix, ParseCache
from .records import (
    ANNOTATION_FIELDS,
    DRAFT,
    METADATA_KEYS,
    UNNAMED,
    Painting,
    PairRecords,
    Slot,
    Stimulus,
    effective_record,
    now_iso,
)
from .rle import RLE, empty_rle, encode_mask, rle_bbox
from .validate import (
    CATEGORY_IDS,
    FORMAT_NAME,
    FORMAT_VERSION,
    Document,
    HeaderCache,
    StoredRecord,
    apply_entry,
    check_file_name,
    check_image_files,
    image_header_size,
    painting_field_problem,
    parse_document,
    parse_json_text,
)

IMAGES = "images"
#: How a write treats the painting's records: see :class:`PaintingUpdate`.
RECORD_MODES = ("exact", "merge")
#: Version of :meth:`StimulusDataset.content_hash`'s recipe (not the file format's: a dataset of
#: format 1 read by this version hashes as it did)
HASH_SCHEME = 1
#: :meth:`StimulusDataset.open`'s parse cache: in the user cache folder, looked up when used
DEFAULT_PARSE_CACHE = ParseCache()


@dataclass
class PaintingUpdate:
    """One painting to write with :meth:`StimulusDataset.write_paintings`."""

    #: RGB uint8 array (stored as PNG), the path of an image file (its bytes are copied as is), or
    #: None: the painting the dataset holds under ``file_name``, pixels unchanged (a records- or
    #: metadata-only update: no image is read or written)
    image: np.ndarray | str | os.PathLike | None
    #: name under ``images/``; defaults to the source file's name for a path
    file_name: str | None = None
    stimuli: Sequence[Stimulus] = ()
    #: merged into the painting's metadata (artist, title, style, …); a None value removes a key
    metadata: dict[str, Any] | None = None
    #: overwrite an image of the same file name with different pixels
    replace: bool = False
    #: "exact" (an annotator's save): the writer's part of the painting becomes ``stimuli``: for
    #: every emotion, the writer's own record and the draft are removed unless given again
    #: (deleting or rejecting one is a person's decision); other annotators' records and the
    #: adjudicated one stay unless a record for their slot is given.
    #: "merge": only the records given are written, each into its slot; the painting's other
    #: records stay (a model's proposals for some emotions, an adjudication).
    records: str = "exact"
    #: let an unreviewed record (a model's draft) replace the reviewed records of its pair; see
    #: :func:`napari_emosem.data.records.replaces`. Without it such a record is kept out and
    #: counted in :attr:`WriteReport.kept_reviewed`.
    overwrite_reviewed: bool = False
    #: whose save this is, for "exact" (whose records it may remove); default: the annotator the
    #: given reviewed records name (an unnamed annotator when they name none)
    writer: str | None = None


@dataclass
class WriteReport:
    """What :meth:`StimulusDataset.write_paintings` wrote."""

    #: the paintings written, in the order given
    paintings: list[Painting] = dataclasses.field(default_factory=list)
    #: (file name, emotion) of reviewed pairs that kept their records instead of taking a draft
    kept_reviewed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    #: (file name, emotion) of pairs whose reviewed records an unreviewed write replaced or
    #: dropped (only with ``overwrite_reviewed``)
    replaced_reviewed: list[tuple[str, str]] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class Compaction:
    """When a write folds the journal into ``annotations.json`` (see :mod:`.store`).

    A small dataset is compacted after every write: rewriting it costs milliseconds, and its
    ``annotations.json`` stays complete for COCO tools. A large one only when the journal outgrows
    ``max(min_journal, fraction × annotations.json)``: saving stays O(the painting), and the
    rewrite's cost is spread over many saves (at most a quarter more bytes written than saved).
    """

    #: snapshot + journal at most this many bytes: compact after every write
    small: int = 1 << 20
    min_journal: int = 4 << 20
    fraction: float = 0.25

    def due(self, snapshot_bytes: int, journal_bytes: int) -> bool:
        if journal_bytes <= 0:
            return False
        if snapshot_bytes + journal_bytes <= self.small:
            return True
        return journal_bytes > max(self.min_journal, self.fraction * snapshot_bytes)


@dataclass
class _Prepared:
    file_name: str
    alt_file_name: str | None  # the name an array is stored under when file_name is not .png
    #: None for an update of the stored painting (image=None): its size is known under the lock
    width: int | None
    height: int | None
    png: bytes | None
    source: Path | None
    rgb: np.ndarray | None
    records: list[tuple[Stimulus, RLE | None]]
    metadata: dict[str, Any] | None
    replace: bool
    mode: str
    overwrite_reviewed: bool
    #: the annotators whose records an "exact" write may remove
    writers: frozenset[str | None]

    @property
    def stored_pixels(self) -> bool:
        return self.png is None and self.source is None


class _Transaction:
    """What one locked write needs besides the document (whose index keeps the lookups current
    as paintings are applied, so that a batch of n paintings costs O(n), not O(n × dataset))."""

    def __init__(self, doc: Document):
        self.doc = doc
        #: image names the paintings of this write will be stored under
        self.planned: set[str] = set()
        #: image files to write: (painting, name under images/); staged, moved in after the commit
        self.stage: list[tuple[_Prepared, str]] = []
        #: image files the new document no longer names (replaced under a new name), deleted after it
        self.remove: list[str] = []
        self.report = WriteReport()


@dataclass
class _Plan:
    item: _Prepared
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


@dataclass(frozen=True)
class _DiskState:
    """Which version of the files the in-memory document was read from."""

    #: annotations.json: (inode, mtime_ns, size)
    snapshot: tuple[int, int, int]
    #: the journal's inode (None: no journal) and the bytes and lines of it replayed
    journal_ino: int | None = None
    journal_end: int = 0
    journal_lines: int = 0
    #: the journal's last line that extends the snapshot: the only one that can be unfinished
    last: store.Entry | None = None
    #: the journal holds lines of an older snapshot (a compaction was killed before deleting them)
    stale: bool = False


class StimulusDataset:
    """A stimulus dataset on disk. Create with :meth:`open`."""

    def __init__(
        self, root: Path, document: Document, *, lock_timeout: float, disk: _DiskState | None,
        compaction: Compaction = Compaction(), parse_cache: ParseCache | None = None,
    ):  # fmt: skip
        self._root = root
        self._parse_cache = parse_cache
        #: whether the last read of annotations.json came from the parse cache
        self._from_cache = False
        self._doc = document
        self._disk = disk
        self._lock_timeout = lock_timeout
        self._compaction = compaction
        self._header_cache = HeaderCache()
        self._digest_cache: dict[tuple[str, int, int], str] = {}
        self._thread_lock = threading.Lock()
        self._index_for: Document | None = None
        self._stems: dict[str, list[Painting]] = {}
        #: images of committed writes that may not be moved into place yet (see store.pending_images)
        self._pending: dict[str, Path] = {}

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        root: str | os.PathLike,
        *,
        create: bool = False,
        lock_timeout: float = store.DEFAULT_LOCK_TIMEOUT,
        compaction: Compaction = Compaction(),
        parse_cache: ParseCache | None = DEFAULT_PARSE_CACHE,
    ) -> StimulusDataset:
        """Open the dataset in folder ``root`` (or the folder of an ``annotations.json`` path).

        Everything is validated; problems raise one :class:`DatasetError` listing all of them.
        With ``create=True`` a folder without ``annotations.json`` opens as an empty dataset
        (the folder is created; the file is written by the first write). ``compaction`` says when
        writes fold the journal into ``annotations.json``. ``parse_cache`` keeps the checked parse
        of a large dataset in the user cache folder, so that opening it again unchanged skips
        reading and checking its records (see :mod:`.parse_cache`; image files are checked each
        time); None: never.
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
        dataset = cls(
            root, Document(), lock_timeout=lock_timeout, disk=None, compaction=compaction, parse_cache=parse_cache
        )
        dataset._header_cache.load(root)
        found = dataset._load_from_disk(check_images=True)
        if not found and not create:
            raise DatasetError(
                f"{root} has no {store.ANNOTATIONS}, so it is not a stimulus dataset; give the "
                f"folder that holds {store.ANNOTATIONS} and images/ (emosem propose --out, "
                "import-apolo --out and the annotator's Export create one)"
            )
        return dataset

    def reload(self) -> None:
        """Re-read the dataset (e.g. after another process wrote to it)."""
        self._load_from_disk(check_images=True)

    def _load_from_disk(self, *, check_images: bool) -> bool:
        with _no_collection_pauses():
            return self._load(check_images=check_images)

    def _load(self, *, check_images: bool) -> bool:
        path = store.annotations_path(self._root)
        cache = self._parse_cache
        attempts = 5
        for attempt in range(attempts):
            snapshot = _stat(path)
            data = store.read_bytes(self._root)
            if data is None:
                self._doc, self._disk, self._pending, self._from_cache = Document(), None, {}, False
                return False
            # what the reader makes of the files depends on their bytes alone: the parse cache
            # holds it under the hash of annotations.json, for a journal that begins as it did
            digest = None if cache is None else hashlib.sha256(data).hexdigest()
            cached = None if digest is None else cache.load(self._root, digest)
            if cached is not None:
                journal_data, journal_ino = store.read_journal_bytes(self._root)
                if not cached.journal.matches(journal_data):
                    cached = None
            if cached is None:
                obj = parse_json_text(store.decode(data, path), path)
                info = obj.get("info") if isinstance(obj, dict) else None
                snapshot_id = info.get("write_id") if isinstance(info, dict) else None
                journal_data, journal_ino = store.read_journal_bytes(self._root)
                known = JournalPrefix()
            else:
                snapshot_id, known = cached.document.snapshot_id, cached.journal
            snapshot_bytes = len(data)
            del data
            try:
                # the lines after those the cache holds (all of them without one), checked
                journal = store.parse_journal(
                    self._root, journal_data[known.end :], journal_ino, known.end, known.lines + 1
                )
                current = [e for e in journal.entries if snapshot_id and e.snapshot == snapshot_id]
                lines = known.then(journal.end, journal.entries, current)
                pending = store.pending_images(self._root, lines.moves)
                # the journal's paintings' image files are checked once it is replayed: a line
                # may delete a file that an earlier line or the snapshot names
                later = set(lines.written) | set(lines.removed)
                if cached is None:
                    doc = parse_document(
                        obj, self._root, check_images=check_images, header_cache=self._header_cache,
                        pending=pending, later=later,
                    )  # fmt: skip
                else:
                    doc = cached.document
                    if check_images:  # what parse_document checks besides the JSON: every time
                        check_image_files(
                            doc, self._root, [i for i in doc.paintings if i not in later],
                            header_cache=self._header_cache, pending=pending, file=store.ANNOTATIONS,
                        )  # fmt: skip
                self._replay(doc, current)
                if check_images:
                    check_image_files(doc, self._root, later, header_cache=self._header_cache, pending=pending)
            except DatasetError:
                # a writer committed or compacted between our reads (images moved, lines cut): read again
                if attempt < attempts - 1 and _stat(path) != snapshot:
                    continue
                raise
            if _stat(path) != snapshot and attempt < attempts - 1:
                continue  # compacted while we read: the journal may belong to the new snapshot
            self._doc, self._pending, self._from_cache = doc, pending, cached is not None
            self._disk = _DiskState(
                snapshot, journal.ino, journal.end, lines.lines, lines.last, stale=lines.stale
            )  # fmt: skip
            if check_images:
                self._header_cache.save(self._root, doc.index.by_name)
                # kept when new, and again once a megabyte of journal has been read past it (not
                # while a writer holds the lock: check_images=False)
                if cache is not None and snapshot_bytes + journal.end >= cache.min_bytes and (
                    cached is None or journal.end - known.end >= cache.min_bytes
                ):
                    cache.save(self._root, digest, CachedParse(doc, lines.sealed(journal_data)))
            return True
        raise AssertionError("unreachable")  # pragma: no cover

    def _replay(self, doc: Document, entries: list[store.Entry]) -> None:
        journal = store.journal_path(self._root)
        for entry in entries:
            apply_entry(
                doc, {"paintings": entry.paintings, "removed": entry.removed}, self._root,
                where=f"{journal} line {entry.line}", check_images=False,
            )  # fmt: skip

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
            doc = self._doc
            found = doc.index.by_name.get(key)
            if found is None:
                stems = self._stem_index(doc).get(key, [])
                found = stems[0] if len(stems) == 1 else None
            return found
        return None

    def _stem_index(self, doc: Document) -> dict[str, list[Painting]]:
        # rebuilt whenever the document object changes (every read or write replaces it)
        if self._index_for is not doc:
            stems: dict[str, list[Painting]] = {}
            for p in doc.paintings.values():
                stems.setdefault(p.name, []).append(p)
            self._stems, self._index_for = stems, doc
        return self._stems

    def _require(self, key: str | int | Painting) -> Painting:
        found = self._find(key)
        if found is None:
            raise DatasetError(f"{self._root}: no painting {key!r} in this dataset")
        return found

    def _by_emotion(self, painting: Painting) -> dict[str, list[Stimulus]]:
        """The painting's stored records by emotion (emotions in order of first appearance)."""
        out: dict[str, list[Stimulus]] = {}
        for r in self._doc.records.get(painting.id, []):
            out.setdefault(r.stimulus.emotion, []).append(r.stimulus)
        return out

    def stimuli(self, painting: str | int | Painting) -> list[Stimulus]:
        """One record per annotated emotion of ``painting``: the pair's effective record (the
        adjudicated one, else a person's, else the draft: see
        :func:`~napari_emosem.data.records.effective_record`). Copies: changing them changes
        nothing until written. Every record of a pair: :meth:`records`."""
        p = self._require(painting)
        return [effective_record(rs).copy() for rs in self._by_emotion(p).values()]

    def stimulus(self, painting: str | int | Painting, emotion: str) -> Stimulus | None:
        """The effective record of (painting, emotion), or None when that pair is not annotated."""
        pair = self.pair(painting, emotion)
        return None if pair is None else pair.effective

    def records(self, painting: str | int | Painting, emotion: str | None = None) -> list[Stimulus]:
        """Every record of ``painting`` (of one ``emotion`` when given): drafts, each annotator's,
        adjudicated ones; each says whose it is (:attr:`Stimulus.slot`). Copies."""
        from ..emotions import normalise_emotion

        p = self._require(painting)
        wanted = None if emotion is None else normalise_emotion(emotion)
        return [
            r.stimulus.copy() for r in self._doc.records.get(p.id, []) if wanted is None or r.stimulus.emotion == wanted
        ]

    def pair(self, painting: str | int | Painting, emotion: str) -> PairRecords | None:
        """Everything the pair (painting, emotion) holds, or None when it holds nothing."""
        from ..emotions import normalise_emotion

        p = self._require(painting)
        records = self._by_emotion(p).get(normalise_emotion(emotion))
        return None if not records else PairRecords(_copy_painting(p), records[0].emotion, [r.copy() for r in records])

    def every_pair(
        self, emotions: str | Iterable[str] | None = None, *, include_something_else: bool = False
    ) -> list[PairRecords]:
        """:class:`~napari_emosem.data.records.PairRecords` of every annotated pair of the chosen
        emotions (default: all eight), painting by painting: what multi-annotator readers need
        (votes, consensus maps, adjudicated records, every annotator's explanations)."""
        chosen = set(parse_emotions(emotions))
        if include_something_else:
            chosen.add(SOMETHING_ELSE)
        out = []
        for p in self._doc.paintings.values():
            painting = None
            for emotion, records in self._by_emotion(p).items():
                if emotion in chosen:
                    painting = painting or _copy_painting(p)
                    out.append(PairRecords(painting, emotion, [r.copy() for r in records]))
        return out

    def annotators(self) -> list[str]:
        """Names of the annotators with a reviewed record (``(unnamed)`` for records without a
        name), sorted; adjudicators count by their adjudicated records too."""
        names = {
            r.stimulus.annotator if r.stimulus.annotator is not None else UNNAMED
            for records in self._doc.records.values()
            for r in records
            if r.stimulus.reviewed
        }
        return sorted(names)

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
        """(painting, stimulus) for every annotated pair of the chosen emotions (default: all
        eight), with the pair's effective record (see :meth:`stimuli`).

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
            for emotion, records in self._by_emotion(p).items():
                s = effective_record(records)
                if emotion not in chosen or (with_masks_only and not s.has_mask):
                    continue
                painting = painting or _copy_painting(p)
                out.append((painting, s.copy()))
        return out

    def summary(self) -> dict[str, Any]:
        """Counts for checkpoint metadata and status lines (JSON-serialisable): pairs counted by
        their effective record; ``records`` counts every record, ``annotators`` names them."""
        per_emotion = {e: {"pairs": 0, "with_mask": 0, "no_stimulus": 0, "explained": 0} for e in EMOTIONS}
        sources: Counter[str] = Counter()
        totals = Counter()
        for p in self._doc.paintings.values():
            for records in self._by_emotion(p).values():
                totals["records"] += len(records)
                s = effective_record(records)
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
            "records": totals["records"],
            "annotators": self.annotators(),
            "sources": dict(sorted(sources.items())),
            "per_emotion": per_emotion,
        }

    def content_hash(self) -> str:
        """A stable hash of what training reads: every painting's file bytes and size, and each
        record's emotion, mask, explanations and no-stimulus flag, and which record is adjudicated
        (not ids, times or authors). Two datasets with the same content hash train the same model.
        """
        h = hashlib.sha256()
        h.update(f"{FORMAT_NAME} {HASH_SCHEME}\n".encode())
        order = {"adjudicated": 0, "reviewed": 1, "draft": 2}
        for p in sorted(self._doc.paintings.values(), key=lambda p: p.file_name):
            records = sorted(
                (r.stimulus for r in self._doc.records.get(p.id, [])),
                key=lambda s: (s.emotion, order[s.slot.kind], s.slot.label),
            )
            entry = {
                "file_name": p.file_name,
                "size": [p.width, p.height],
                "file": self._file_digest(self._image_file(p.file_name)),
                "records": [
                    [
                        s.emotion,
                        None if s._stored_rle() is None else s._stored_rle().counts,
                        s.explanations,
                        s.no_stimulus,
                    ]
                    + (["adjudicated"] if s.adjudicated else [])
                    for s in records
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

    @property
    def journal_bytes(self) -> int:
        """Bytes of journal not yet folded into ``annotations.json`` (0: the file is complete)."""
        try:
            return store.journal_path(self._root).stat().st_size
        except FileNotFoundError:
            return 0

    # ------------------------------------------------------------------ writing
    def write_painting(
        self,
        image: np.ndarray | str | os.PathLike | None,
        file_name: str | None = None,
        stimuli: Sequence[Stimulus] = (),
        *,
        metadata: dict[str, Any] | None = None,
        replace: bool = False,
        records: str = "exact",
        overwrite_reviewed: bool = False,
        writer: str | None = None,
    ) -> Painting:
        """Add a painting with its records, or update the painting stored under the same file
        name (its id and the ids of its records stay).

        ``image`` is an RGB array (stored as PNG; a ``file_name`` not ending in ``.png`` is
        stored as ``<stem>.png`` unless the dataset already holds a painting of exactly that
        name and the same pixels), the path of an image file (its bytes are copied), or None for
        the painting stored under ``file_name`` as it is. A stored image with different pixels is
        only overwritten with ``replace=True``. ``records``, ``overwrite_reviewed`` and
        ``writer``: see :class:`PaintingUpdate`; a reviewed record is kept rather than replaced by
        an unreviewed one unless ``overwrite_reviewed`` (:meth:`write_paintings` reports how many).
        """
        update = PaintingUpdate(
            image, file_name, stimuli, metadata=metadata, replace=replace, records=records,
            overwrite_reviewed=overwrite_reviewed, writer=writer,
        )  # fmt: skip
        return self.write_paintings([update]).paintings[0]

    def update_metadata(self, painting: str | int | Painting, metadata: dict[str, Any]) -> Painting:
        """Change only a painting's metadata (a None value removes a key): skipping it
        (``skipped``), its ``annotation_seconds``, its artist… No record is touched and no image
        read: O(the painting)."""
        found = self._require(painting)
        update = PaintingUpdate(None, found.file_name, (), metadata=metadata, records="merge")
        return self.write_paintings([update]).paintings[0]

    def write_paintings(self, updates: Iterable[PaintingUpdate]) -> WriteReport:
        """Write several paintings in one locked transaction (one line of the journal).

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
                doc = self._begin()
                new_doc = doc.copy()
                tx = _Transaction(new_doc)
                plans = [self._plan(tx, item) for item in prepared]  # may refuse: nothing written yet
                tx.report.paintings = [self._apply(tx, plan) for plan in plans]
                self._commit(new_doc, tx.report.paintings, [], tx.stage, tx.remove)
        except OSError as exc:
            raise DatasetError(f"{self._root}: nothing was written ({describe_os_error(exc)})") from None
        tx.report.paintings = [_copy_painting(p) for p in tx.report.paintings]
        return tx.report

    def remove_painting(self, painting: str | int | Painting, *, delete_image: bool = True) -> bool:
        """Remove a painting and all its records; returns False when it was not there."""
        key = painting.file_name if isinstance(painting, Painting) else painting
        try:
            with self._thread_lock, store.write_lock(self._root, self._lock_timeout):
                doc = self._begin()
                target = self._find(key)
                if target is None:
                    return False
                new_doc = doc.copy()
                new_doc.drop(target.id)
                self._commit(new_doc, [], [target.id], [], [target.file_name] if delete_image else [])
        except OSError as exc:
            raise DatasetError(f"{self._root}: nothing was written ({describe_os_error(exc)})") from None
        return True

    def compact(self) -> bool:
        """Fold the journal into ``annotations.json`` now, so that the file alone is the whole
        dataset (what ``emosem compact`` and exports do before other tools read it). Returns False
        when there was nothing to fold."""
        try:
            with self._thread_lock, store.write_lock(self._root, self._lock_timeout):
                doc = self._begin()
                if self._disk is not None and self._disk.journal_end == 0 and not self.journal_bytes:
                    return False
                self._write_snapshot(doc)
        except OSError as exc:
            raise DatasetError(
                f"{self._root}: not compacted ({describe_os_error(exc)}); the dataset is unchanged"
            ) from None
        return True

    # -- under the lock --
    def _begin(self) -> Document:
        """Under the lock: catch up with the files, finish or undo what killed writers left, and
        make sure ``annotations.json`` exists and carries an id for journal lines to name."""
        doc, journal, stale = self._catch_up()
        last = self._disk.last if self._disk is not None else None
        store.recover(self._root, journal.end, journal.size, last, doc.index.by_name)
        if doc.snapshot_id is None or self._disk is None or (stale and last is not None):
            # a new dataset, a COCO file from elsewhere, or a journal that mixes snapshots: start
            # a new snapshot (it holds everything; the journal goes)
            self._write_snapshot(doc)
        elif stale:  # only lines an earlier compaction folded in already: drop them
            store.truncate_journal(self._root, 0)
            self._disk = _DiskState(self._disk.snapshot)
        return self._doc

    def _catch_up(self) -> tuple[Document, store.JournalRead, bool]:
        """The dataset as it is now (our copy, plus the journal lines appended since we read it,
        or everything re-read when annotations.json changed), the journal as read, and whether it
        holds lines of another snapshot."""
        path = store.annotations_path(self._root)
        snapshot = _stat(path)
        if snapshot is None:
            if self._disk is not None:
                self._doc_missing_error()
            journal = store.read_journal(self._root)
            self._doc = Document()
            return self._doc, journal, bool(journal.entries) or journal.size > 0
        disk = self._disk
        if disk is not None and snapshot == disk.snapshot:
            ino = _journal_ino(self._root)
            same_journal = ino == disk.journal_ino or (disk.journal_ino is None and disk.journal_end == 0)
            if same_journal:
                journal = store.read_journal(self._root, disk.journal_end, disk.journal_lines + 1)
                if journal.end >= disk.journal_end and all(
                    e.snapshot == self._doc.snapshot_id for e in journal.entries
                ):
                    doc = self._doc
                    if journal.entries:  # only the journal grew: replay the new lines
                        doc = doc.copy()
                        self._replay(doc, journal.entries)
                    self._doc = doc
                    self._disk = dataclasses.replace(
                        disk, journal_ino=journal.ino, journal_end=journal.end,
                        journal_lines=disk.journal_lines + len(journal.entries),
                        last=journal.entries[-1] if journal.entries else disk.last,
                    )  # fmt: skip
                    return doc, journal, disk.stale
        # annotations.json changed (compacted, replaced): read it all again. Image files of other
        # paintings are not checked here: an unrelated missing file must not block saving;
        # open() reports it.
        self._load_from_disk(check_images=False)
        journal = store.read_journal(self._root)
        return self._doc, journal, self._disk.stale

    def _doc_missing_error(self) -> Document:
        raise DatasetError(
            f"{store.annotations_path(self._root)} was deleted while this dataset was open; "
            "nothing was written. Restore it, or open the folder again to start afresh"
        )

    def _commit(
        self,
        doc: Document,
        written: list[Painting],
        removed: list[int],
        stage: list[tuple[_Prepared, str]],
        remove: list[str],
    ) -> None:
        """Append one journal line for this write, with its image files staged first, so that a
        kill at any point leaves the old dataset or the new one (see :mod:`.store`); then compact
        when it is due. Call under the lock, after :meth:`_begin`."""
        write = secrets.token_hex(8)
        entry = store.Entry(
            doc.snapshot_id, write,
            paintings=[_painting_json(p, doc.records.get(p.id, [])) for p in written],
            removed=list(removed), remove=list(remove),
        )  # fmt: skip
        entry.moves = [(entry.staged(i), name) for i, (_, name) in enumerate(stage)]
        try:
            if stage:
                folder = store.staging_dir(self._root) / write
                folder.mkdir(parents=True)
                for (item, _), (staged, _) in zip(stage, entry.moves, strict=True):
                    _write_image_file(self.images_dir / staged, item)
                fsync_dir(folder)
            size = store.append_entry(self._root, entry)  # the commit
        except BaseException:
            store.remove_staging(self._root, write)
            raise
        self._doc = doc
        self._disk = dataclasses.replace(
            self._disk, journal_ino=_journal_ino(self._root), journal_end=size,
            journal_lines=self._disk.journal_lines + 1, last=entry,
        )  # fmt: skip
        try:
            store.complete(self._root, entry, doc.index.by_name)
        except OSError as exc:
            self._pending = {name: self.images_dir / staged for staged, name in entry.moves}
            raise DatasetError(
                f"{self._root}: the records were written, but moving their images into place "
                f"failed ({describe_os_error(exc)}); the dataset opens as it is, and the next "
                "write to it finishes the move"
            ) from None
        self._pending = {}
        if self._compaction.due(self._disk.snapshot[2], self._disk.journal_end):
            with contextlib.suppress(OSError):  # the journal holds the write: the next one retries
                self._write_snapshot(doc)

    def _write_snapshot(self, doc: Document) -> None:
        """Write ``doc`` as ``annotations.json`` with a new id, then delete the journal it folds
        in. Call under the lock, with nothing unfinished in the journal."""
        doc = doc.copy()
        doc.info["write_id"] = secrets.token_hex(8)
        store.write_json(self._root, _to_json(doc))  # the commit: from here the journal's lines are stale
        store.truncate_journal(self._root, 0)
        self._doc = doc
        self._disk = _DiskState(_stat(store.annotations_path(self._root)))

    # -- preparing (outside the lock) --
    def _prepare(self, update: PaintingUpdate) -> _Prepared:
        image = update.image
        file_name = update.file_name
        alt = None
        png = source = rgb = None
        width = height = None
        if image is None:
            if not isinstance(file_name, str):
                raise DatasetError("give the file_name of the stored painting to update (image=None)")
        elif isinstance(image, (str, os.PathLike)):
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
            raise DatasetError(f"file_name {file_name!r} must end in an image suffix ({', '.join(IMAGE_SUFFIXES)})")
        records, problems = [], []
        seen: set[tuple[str, Slot]] = set()
        where = file_name
        if update.records not in RECORD_MODES:
            problems.append(f"{where}: records={update.records!r}; choose {' or '.join(map(repr, RECORD_MODES))}")
        if _json_problem(update.metadata):
            problems.append(f"{where}: metadata {_json_problem(update.metadata)}")
        else:
            field_problem = painting_field_problem({k: v for k, v in (update.metadata or {}).items() if v is not None})
            if field_problem:
                problems.append(f"{where}: {field_problem}")
        for s in update.stimuli:
            if not isinstance(s, Stimulus):
                problems.append(f"{where}: expected Stimulus records; got {type(s).__name__}")
                continue
            if (s.emotion, s.slot) in seen:
                problems.append(
                    f"{where}: two records for {s.emotion!r} in one slot ({s.slot.label}); give one "
                    "draft, one adjudicated record and one record per annotator for each emotion"
                )
                continue
            seen.add((s.emotion, s.slot))
            rle = s._stored_rle()
            mask = None if rle is not None else s._mask
            shape = s.mask_shape
            if shape is not None and height is not None and tuple(shape) != (height, width):
                problems.append(
                    f"{where}, {s.emotion}: mask is {shape[1]} × {shape[0]} px but the painting is {width} × {height}"
                )
                continue
            if s.emotion == SOMETHING_ELSE:
                if s.area > 0:
                    problems.append(f"{where}: '{SOMETHING_ELSE}' carries explanations only, never a mask")
                    continue
                rle = None
            elif s.no_stimulus:
                if s.area > 0:
                    problems.append(f"{where}, {s.emotion}: no_stimulus is set but the mask is not empty")
                    continue
                rle = None if shape is None else empty_rle(*shape)  # no shape: the stored painting's, under the lock
            elif mask is not None:
                rle = encode_mask(mask)
            bad_extra = [k for k in s.extra if k in _RESERVED]
            if bad_extra:
                problems.append(f"{where}, {s.emotion}: extra fields {bad_extra} clash with the format's own")
                continue
            if s.score is not None and not math.isfinite(s.score):
                problems.append(f"{where}, {s.emotion}: score {s.score} is not a number; give one in [0, 1] or None")
                continue
            if not (math.isfinite(s.annotation_seconds) and s.annotation_seconds >= 0):
                problems.append(
                    f"{where}, {s.emotion}: annotation_seconds {s.annotation_seconds} is not a time; give seconds >= 0"
                )
                continue
            if _json_problem(s.extra):
                problems.append(f"{where}, {s.emotion}: extra fields {_json_problem(s.extra)}")
                continue
            records.append((s, rle))
        if problems:
            raise DatasetError("bad records", problems)
        if update.writer is not None:
            writers = frozenset([update.writer])
        else:
            writers = frozenset(s.annotator for s, _ in records if s.reviewed and not s.adjudicated) or frozenset(
                [None]
            )
        return _Prepared(
            file_name, alt, width, height, png, source, rgb, records,
            update.metadata, update.replace, update.records, bool(update.overwrite_reviewed), writers,
        )  # fmt: skip

    # -- under the lock: first plan every painting (all checks, nothing written), then apply --
    def _plan(self, tx: _Transaction, item: _Prepared) -> _Plan:
        by_name = tx.doc.index.by_name
        existing = by_name.get(item.file_name)
        if item.stored_pixels:
            if existing is None:
                raise DatasetError(f"{self._root}: no painting {item.file_name!r} in this dataset to update")
            if existing.file_name in tx.planned:
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
            tx.planned.add(existing.file_name)
            return _Plan(item, existing, existing.file_name, existing.width, existing.height, False, None, False, [])
        if existing is None and item.alt_file_name is not None:
            existing = by_name.get(item.alt_file_name)
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
            given = {(s.emotion, s.slot) for s, _ in item.records}
            dropped = sorted({
                r.stimulus.emotion
                for r in tx.doc.records.get(existing.id, [])
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
        tx.planned.add(stored_name)
        return _Plan(
            item, existing, stored_name, item.width, item.height, write_image, obsolete, image_changed, dropped
        )

    def _apply(self, tx: _Transaction, plan: _Plan) -> Painting:
        doc = tx.doc
        item, existing, stored_name = plan.item, plan.existing, plan.stored_name
        if plan.write_image:
            tx.stage.append((item, stored_name))
        if plan.obsolete is not None:
            tx.remove.append(plan.obsolete)

        now = now_iso()
        index = doc.index
        if existing is None:
            index.last_image_id += 1
            image_id = index.last_image_id
            metadata: dict[str, Any] = {}
            old: list[StoredRecord] = []
        else:
            image_id = existing.id
            metadata = dict(existing.metadata)
            old = [] if plan.image_changed else list(doc.records.get(image_id, []))
        for key, value in (item.metadata or {}).items():
            if key in ("id", "file_name", "width", "height"):
                continue
            if value is None:
                metadata.pop(key, None)
            else:
                metadata[key] = value
        painting = Painting(image_id, stored_name, plan.width, plan.height, metadata)
        tx.report.replaced_reviewed.extend((stored_name, e) for e in plan.dropped_reviewed)

        slots: dict[tuple[str, Slot], StoredRecord] = {(r.stimulus.emotion, r.stimulus.slot): r for r in old}
        previous = dict(slots)  # what each slot held: ids and created times carry over
        if item.mode == "exact":
            # the slots given are written anew, in the order given; of the emotions not given, the
            # draft and the writer's own record go (rejecting or deleting is a person's decision)
            given = {(s.emotion, s.slot) for s, _ in item.records}
            given_emotions = {e for e, _ in given}
            for key in list(slots):
                emotion, slot = key
                if key in given or (emotion not in given_emotions and (
                    slot == DRAFT or (slot.kind == "reviewed" and slot.annotator in item.writers)
                )):  # fmt: skip
                    del slots[key]
        for s, rle in item.records:
            if rle is None and s.no_stimulus and s.emotion != SOMETHING_ELSE:
                rle = empty_rle(plan.height, plan.width)
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
                adjudicated=s.adjudicated,
                annotation_seconds=s.annotation_seconds,
            )
            emotion, slot = s.emotion, stored.slot
            key = (emotion, slot)
            reviewed_keys = [k for k in slots if k[0] == emotion and k[1] != DRAFT]
            if slot == DRAFT and reviewed_keys:
                if not item.overwrite_reviewed:
                    tx.report.kept_reviewed.append((stored_name, emotion))
                    continue
                for k in reviewed_keys:
                    del slots[k]
                tx.report.replaced_reviewed.append((stored_name, emotion))
            base = previous.get(key)
            consumed = None
            if slot != DRAFT:  # a person's record consumes the pair's draft
                consumed = previous.get((emotion, DRAFT))
                draft_key = (emotion, DRAFT)
                if draft_key in slots and key not in slots:
                    # it takes the draft's place in the file: accepting keeps the painting's order
                    slots = {(key if k == draft_key else k): v for k, v in slots.items()}
                slots.pop(draft_key, None)
            base = base or consumed
            if base is None:
                index.last_record_id += 1
                record_id = index.last_record_id
                stored.created = stored.created or now
                stored.modified = stored.modified or now
            else:
                record_id = base.id
                stored.created = stored.created or base.stimulus.created or now
                if _same_content(base.stimulus, stored):
                    stored.modified = base.stimulus.modified or stored.modified or now
                else:
                    stored.modified = now
            slots[key] = StoredRecord(record_id, stored)
        doc.put(painting, list(slots.values()))
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
        and a.adjudicated == b.adjudicated
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


@contextlib.contextmanager
def _no_collection_pauses():
    """Python's cycle collector off while a dataset is read: the reader makes hundreds of
    thousands of objects (none in cycles), and each collection it triggers walks them all again
    (a third of the time to open 40,000 records). Restored as it was, whatever happens."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _journal_ino(root: Path) -> int | None:
    try:
        return store.journal_path(root).stat().st_ino
    except FileNotFoundError:
        return None


def _copy_painting(p: Painting) -> Painting:
    return dataclasses.replace(p, metadata=dict(p.metadata))


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
        images.append(_image_json(p))
        annotations.extend(_annotation_json(record, p) for record in doc.records.get(p.id, []))
    out: dict[str, Any] = {"info": info}
    out.update(doc.extra)
    out["images"] = images
    out["categories"] = [
        {"id": CATEGORY_IDS[e], "name": e, "supercategory": _supercategory(e)} for e in (*EMOTIONS, SOMETHING_ELSE)
    ]
    out["annotations"] = annotations
    return out


def _painting_json(painting: Painting, records: list[StoredRecord]) -> dict[str, Any]:
    """A painting's whole state as a journal line holds it (see :func:`.validate.apply_entry`)."""
    return {"image": _image_json(painting), "annotations": [_annotation_json(r, painting) for r in records]}


def _image_json(p: Painting) -> dict[str, Any]:
    entry = {"id": p.id, "file_name": p.file_name, "width": p.width, "height": p.height}
    for key in METADATA_KEYS:
        if key in p.metadata:
            entry[key] = p.metadata[key]
    entry.update({k: v for k, v in p.metadata.items() if k not in entry})
    return entry


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
        "adjudicated": s.adjudicated,
        "annotator": s.annotator,
        "created": s.created,
        "modified": s.modified,
        "score": s.score,
        # 0 rather than 0.0 for drafts: integers are what JSON readers parse fastest
        "annotation_seconds": int(s.annotation_seconds) if s.annotation_seconds.is_integer() else s.annotation_seconds,
        "no_stimulus": s.no_stimulus,
        "has_mask": has_mask,
    }
    ann.update(s.extra)
    return ann
