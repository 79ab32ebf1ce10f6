"""The stimulus dataset: a folder with ``images/`` and a COCO ``annotations.json``.

One :class:`StimulusDataset` API serves the plugin, ``propose``, ``train`` and ``evaluate``::

    ds = StimulusDataset.open("my-dataset", create=True)
    ds.write_painting(rgb, "starry-night.png", [Stimulus("awe", mask, ["the swirling sky"])])
    for painting, stimulus in ds.pairs(with_masks_only=True):
        ...

Opening validates the whole file (see :mod:`.validate`). Writing upserts whole paintings under a
cross-process lock, re-reading the file first, so concurrent writers never lose each other's
paintings (see :mod:`.store`). The format is documented in ``docs/dataset-format.md``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .. import __version__
from .._io import atomic_open, check_writable_dir
from ..emotions import EMOTIONS, POSITIVE, SOMETHING_ELSE, parse_emotions
from ..errors import DatasetError, EmoSEMError
from ..image_io import IMAGE_SUFFIXES, MAX_PIXELS, MIN_SIDE, image_digest, load_image, to_rgb_uint8
from . import store
from .records import ANNOTATION_FIELDS, METADATA_KEYS, Painting, Stimulus, now_iso
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


class _Transaction:
    """What one locked write needs besides the document: lookups kept current as paintings are
    applied (so a batch of n paintings costs O(n), not O(n × dataset))."""

    def __init__(self, doc: Document):
        self.doc = doc
        self.by_name = doc.by_file_name()
        self.next_image_id = max(doc.paintings, default=0) + 1
        self.next_record_id = max((r.id for rs in doc.records.values() for r in rs), default=0) + 1
        #: image files replaced under a new name, removed once the JSON no longer names them
        self.obsolete: list[Path] = []
        #: image names the paintings of this write will be stored under
        self.planned: set[str] = set()


@dataclass
class _Plan:
    item: _Prepared
    existing: Painting | None
    stored_name: str
    write_image: bool
    obsolete: Path | None


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
        if not root.exists():
            if not create:
                raise DatasetError(
                    f"{root}: no such folder. Check the path, or create a new dataset there "
                    "(StimulusDataset.open(root, create=True))"
                )
        if create:
            check_writable_dir(root)
        dataset = cls(root, Document(), lock_timeout=lock_timeout, disk=None)
        found = dataset._load_from_disk(check_images=True)
        if not found and not create:
            raise DatasetError(
                f"{root} has no {store.ANNOTATIONS}, so it is not a stimulus dataset; point to "
                "the folder that holds annotations.json and images/, or create a new dataset "
                "there (StimulusDataset.open(root, create=True))"
            )
        return dataset

    def reload(self) -> None:
        """Re-read ``annotations.json`` (e.g. after another process wrote to it)."""
        self._load_from_disk(check_images=True)

    def _load_from_disk(self, *, check_images: bool) -> bool:
        path = store.annotations_path(self._root)
        text = store.read_text(self._root)
        if text is None:
            self._doc, self._disk = Document(), None
            return False
        disk = _stat(path)
        obj = parse_json_text(text, path)
        self._doc = parse_document(
            obj, self._root, check_images=check_images, header_cache=self._header_cache
        )
        self._disk = disk
        return True

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
        return self.images_dir / self._require(painting).file_name

    def image(self, painting: str | int | Painting) -> np.ndarray:
        """The painting's pixels, RGB uint8 (H, W, 3)."""
        p = self._require(painting)
        rgb = load_image(self.images_dir / p.file_name)
        if rgb.shape[:2] != (p.height, p.width):
            raise DatasetError(
                f"{self.images_dir / p.file_name} is {rgb.shape[1]} × {rgb.shape[0]} px but the "
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
                "file": self._file_digest(self.images_dir / p.file_name),
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
    ) -> Painting:
        """Add a painting with its records, or replace the records of the painting stored under
        the same file name (its id and the ids of its (painting, emotion) records stay).

        ``image`` is an RGB array (stored as PNG; a ``file_name`` not ending in ``.png`` is
        stored as ``<stem>.png`` unless the dataset already holds a painting of exactly that
        name and the same pixels) or the path of an image file (its bytes are copied).
        A stored image with different pixels is only overwritten with ``replace=True``.
        """
        return self.write_paintings(
            [PaintingUpdate(image, file_name, stimuli, metadata=metadata, replace=replace)]
        )[0]

    def write_paintings(self, updates: Iterable[PaintingUpdate]) -> list[Painting]:
        """Write several paintings in one locked transaction (one rewrite of the JSON file)."""
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
            return []
        with self._thread_lock, store.write_lock(self._root, self._lock_timeout):
            check_writable_dir(self.images_dir)
            doc = self._document_under_lock()
            new_doc = _shallow_copy(doc)
            tx = _Transaction(new_doc)
            plans = [self._plan(tx, item) for item in prepared]  # may refuse: nothing written yet
            written = [self._apply(tx, plan) for plan in plans]
            self._write_document(new_doc)
            for path in tx.obsolete:  # replaced files, unlinked only once the JSON no longer names them
                path.unlink(missing_ok=True)
        return [_copy_painting(p) for p in written]

    def remove_painting(self, painting: str | int | Painting, *, delete_image: bool = True) -> bool:
        """Remove a painting and all its records; returns False when it was not there."""
        key = painting.file_name if isinstance(painting, Painting) else painting
        with self._thread_lock, store.write_lock(self._root, self._lock_timeout):
            doc = self._document_under_lock()
            self._doc = doc
            target = self._find(key)
            if target is None:
                return False
            new_doc = _shallow_copy(doc)
            del new_doc.paintings[target.id]
            new_doc.records.pop(target.id, None)
            self._write_document(new_doc)
            if delete_image:
                try:
                    (self.images_dir / target.file_name).unlink()
                except FileNotFoundError:
                    pass
        return True

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
            records.append((s, rle))
        if problems:
            raise DatasetError("bad records", problems)
        return _Prepared(
            file_name, alt, int(width), int(height), png, source, rgb, records,
            update.metadata, update.replace,
        )

    # -- under the lock: first plan every painting (all checks, nothing written), then apply --
    def _plan(self, tx: _Transaction, item: _Prepared) -> _Plan:
        existing = tx.by_name.get(item.file_name)
        if existing is None and item.alt_file_name is not None:
            existing = tx.by_name.get(item.alt_file_name)
        stored_name = existing.file_name if existing is not None else item.alt_file_name or item.file_name
        target = self.images_dir / stored_name
        write_image, obsolete = True, None
        if target.exists():
            if self._same_image(target, item):
                write_image = False
            elif not item.replace:
                raise DatasetError(
                    f"images/{stored_name} already holds a different image; pass replace=True "
                    "to overwrite it (its records are replaced too), or choose another file name"
                )
            elif item.png is not None and item.alt_file_name and stored_name != item.alt_file_name:
                # new pixels from an array are stored as PNG: never PNG bytes under ".jpg"
                obsolete, stored_name = target, item.alt_file_name
        if stored_name in tx.planned:
            raise DatasetError(f"two paintings of one write would both be stored as images/{stored_name}")
        tx.planned.add(stored_name)
        return _Plan(item, existing, stored_name, write_image, obsolete)

    def _apply(self, tx: _Transaction, plan: _Plan) -> Painting:
        doc, by_name = tx.doc, tx.by_name
        item, existing, stored_name = plan.item, plan.existing, plan.stored_name
        if plan.write_image:
            self._store_image(self.images_dir / stored_name, item)
        if plan.obsolete is not None:
            tx.obsolete.append(plan.obsolete)

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

        new_records = []
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
            new_records.append(StoredRecord(record_id, stored))
        doc.paintings[image_id] = painting
        doc.records[image_id] = new_records
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

    def _store_image(self, target: Path, item: _Prepared) -> None:
        with atomic_open(target) as handle:
            if item.png is not None:
                handle.write(item.png)
            else:
                with open(item.source, "rb") as src:
                    shutil.copyfileobj(src, handle, 1 << 20)


_RESERVED = frozenset(ANNOTATION_FIELDS)


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
