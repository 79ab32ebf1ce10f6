"""A cache of the checked parse of a dataset, so that opening a large dataset again skips
reading its JSON and re-checking every record (two thirds of the time to open 5,000 paintings ×
8 emotions again).

What is cached is exactly what the reader made of the bytes of ``annotations.json`` and of the
journal's first lines: the document (:func:`~.validate.parse_document`, then each line replayed
by :func:`~.validate.apply_entry`) and what those lines tell the reader (:class:`JournalPrefix`).
It is used only for the same bytes: the SHA-256 of ``annotations.json`` is its key, and the
journal must begin with the bytes the cached lines had (their length and SHA-256), so a journal
that was only appended to costs its new lines, checked as usual, and any other change is a full
read. The parse depends on nothing else: image files are checked on every open, as without a
cache. A cache file also names the reader that wrote it (:data:`CACHE_SCHEME`, the package and
Python versions, a hash of the source of the modules that parse), and its payload carries its own
SHA-256, so a file from another dataset, another version of napari-emosem, or one that is
truncated or damaged does not match and is ignored: the dataset is then read and checked in full,
and the cache written anew. The payload is a pickle of plain tuples, lists, dicts and scalars,
read by an unpickler that refuses every class, so a cache file can never run code.

One file per dataset folder, under ``<cache dir>/datasets/``, written atomically (a temporary
file renamed into place; no fsync: a file a crash damages fails its checksum). The least recently
used files go when there are more than :attr:`ParseCache.max_entries` or they hold more than
:attr:`ParseCache.max_bytes`. Deleting the folder is always safe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import os
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from .records import Painting, Stimulus
from .rle import RLE
from .store import Entry
from .validate import FORMAT_VERSION, Document, StoredRecord, _Index

#: Grows when the layout of a cache file or of its payload changes
CACHE_SCHEME = 1
MAGIC = b"napari-emosem parse cache\n"
SUFFIX = ".parse"
#: The header is one JSON line; longer than this is not one of ours
_MAX_HEADER = 4096


@dataclass
class JournalPrefix:
    """What the journal's first ``end`` bytes (complete lines) told the reader, besides the
    paintings they wrote into the document: all that opening needs to go on from there."""

    #: bytes of the journal read, and their SHA-256 ("": not computed yet, see :meth:`sealed`)
    end: int = 0
    sha256: str = hashlib.sha256(b"").hexdigest()
    #: lines in them
    lines: int = 0
    #: some of them extend another snapshot (a compaction was killed before deleting them)
    stale: bool = False
    #: of the lines that extend the snapshot, in order: the ids of the paintings they write, of
    #: those they remove, their image moves (staged file, file name), and the last line
    written: list[Any] = dataclasses.field(default_factory=list)
    removed: list[Any] = dataclasses.field(default_factory=list)
    moves: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    last: Entry | None = None

    def sealed(self, journal: bytes) -> JournalPrefix:
        """With the SHA-256 of its bytes of ``journal``, the journal as read."""
        return dataclasses.replace(self, sha256=hashlib.sha256(journal[: self.end]).hexdigest())

    def matches(self, journal: bytes) -> bool:
        """Whether ``journal`` (the journal's bytes now) begins with the bytes this describes."""
        return len(journal) >= self.end and hashlib.sha256(journal[: self.end]).hexdigest() == self.sha256

    def then(self, end: int, entries: list[Entry], current: list[Entry]) -> JournalPrefix:
        """This prefix followed by the ``entries`` read after it, up to byte ``end`` of the
        journal (``current``: those of them that extend the snapshot)."""
        return JournalPrefix(
            end, "", self.lines + len(entries),
            self.stale or len(current) != len(entries), self.written + written_ids(current),
            self.removed + [i for e in current for i in e.removed],
            self.moves + [m for e in current for m in e.moves], current[-1] if current else self.last,
        )  # fmt: skip


def written_ids(entries: list[Entry]) -> list[Any]:
    """The ids of the paintings the journal lines ``entries`` write, in order."""
    return [
        p["image"].get("id")
        for e in entries
        for p in e.paintings
        if isinstance(p, dict) and isinstance(p.get("image"), dict)
    ]


@dataclass
class CachedParse:
    """A dataset as the reader made it of ``annotations.json`` and the journal's first lines."""

    document: Document
    journal: JournalPrefix


@dataclass(frozen=True)
class ParseCache:
    """Where the checked parses of datasets are cached, and how much is kept.

    ``folder`` None: ``datasets/`` in the user cache folder (:func:`napari_emosem.paths.cache_dir`,
    moved by ``EMOSEM_CACHE_DIR``), looked up when used.
    """

    folder: Path | None = None
    #: a dataset smaller than this (annotations.json and journal) reads in a few milliseconds:
    #: not worth a cache file; nor are fewer new journal bytes worth writing the cache again
    min_bytes: int = 1 << 20
    max_entries: int = 16
    max_bytes: int = 2 << 30

    def where(self) -> Path:
        if self.folder is not None:
            return Path(self.folder)
        from ..paths import cache_dir

        return cache_dir() / "datasets"

    def file_for(self, root: Path) -> Path:
        """The cache file of the dataset folder ``root``."""
        name = hashlib.sha256(os.fsencode(os.path.realpath(root))).hexdigest()[:32]
        return self.where() / (name + SUFFIX)

    def load(self, root: Path, digest: str) -> CachedParse | None:
        """The parse of the dataset in ``root`` whose ``annotations.json`` has the SHA-256
        ``digest``, or None when the cache holds none (or cannot be read: it is only a cache)."""
        path = self.file_for(root)
        try:
            with open(path, "rb") as handle:
                if handle.read(len(MAGIC)) != MAGIC:
                    return None
                header = json.loads(handle.readline(_MAX_HEADER))
                if not isinstance(header, dict) or header.get("key") != _key(root, digest):
                    return None
                payload = handle.read()
            if len(payload) != header.get("payload_bytes") or hashlib.sha256(payload).hexdigest() != header.get(
                "payload_sha256"
            ):
                return None
            cached = _from_payload(_BuiltinsOnly(io.BytesIO(payload)).load())
        except Exception:  # unreadable, damaged or foreign: the dataset is read instead
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: pruned last
        return cached

    def save(self, root: Path, digest: str, cached: CachedParse) -> None:
        """Keep ``cached`` for the dataset whose ``annotations.json`` has the SHA-256 ``digest``;
        best effort (a cache that cannot be written costs the next open its time, nothing else)."""
        path = self.file_for(root)
        try:
            payload = pickle.dumps(_to_payload(cached), protocol=5)
            if len(payload) > self.max_bytes:
                path.unlink(missing_ok=True)
                return
            header = {
                "key": _key(root, digest),
                "payload_bytes": len(payload),
                "payload_sha256": hashlib.sha256(payload).hexdigest(),
            }
            write_file(path, header, payload)
            self._prune(keep=path)
        except (OSError, ValueError, TypeError, pickle.PicklingError, RecursionError):
            return

    def _prune(self, keep: Path) -> None:
        from .._io import remove_stale_temp_files

        folder = keep.parent
        remove_stale_temp_files(folder)
        files = []
        for entry in os.scandir(folder):
            if entry.name.endswith(SUFFIX) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    st = entry.stat(follow_symlinks=False)
                    files.append((entry.path == os.fspath(keep), st.st_mtime_ns, st.st_size, entry.path))
        total = 0
        for count, (_, _, size, name) in enumerate(sorted(files, reverse=True), start=1):
            total += size
            if count > self.max_entries or total > self.max_bytes:
                with contextlib.suppress(OSError):
                    os.unlink(name)


def write_file(path: Path, header: dict[str, Any], payload: bytes) -> None:
    """Write a cache file atomically, readable by its owner only (it holds a dataset's content)."""
    from .._io import create_new, temp_path

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    fd = create_new(tmp, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(MAGIC)
            handle.write(json.dumps(header, separators=(",", ":")).encode("ascii") + b"\n")
            handle.write(payload)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _key(root: Path, digest: str) -> dict[str, Any]:
    """What a cache file must have been written for to be used."""
    return {
        "scheme": CACHE_SCHEME,
        "reader": reader_fingerprint(),
        "format_version": FORMAT_VERSION,
        "root": os.fsdecode(os.path.realpath(root)),
        "annotations_sha256": digest,
    }


@functools.cache
def reader_fingerprint() -> str:
    """napari-emosem's version, Python's, and a hash of the source of the modules whose code
    decides what a dataset reads as: a development checkout whose reader changed does not read
    the parses of the old one."""
    from .. import emotions
    from . import records, rle, store, validate

    h = hashlib.sha256(f"{__version__} {sys.version}".encode())
    for module in (validate, records, rle, store, emotions, sys.modules[__name__]):
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()


class _BuiltinsOnly(pickle.Unpickler):
    """Reads plain data only: any class or function named in the pickle is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a parse cache")


# A record as a plain tuple: (id, rle or None, then these fields of the Stimulus, in this order)
_FIELDS = (
    "emotion", "explanations", "no_stimulus", "source", "edited", "annotator", "score", "created",
    "modified", "extra", "reviewed", "adjudicated", "annotation_seconds",
)  # fmt: skip


def _to_payload(cached: CachedParse) -> tuple:
    doc, journal = cached.document, cached.journal
    paintings, records = [], []
    for p in doc.paintings.values():
        paintings.append((p.id, p.file_name, p.width, p.height, p.metadata))
        rows = []
        for r in doc.records.get(p.id, []):
            state = r.stimulus.__dict__
            rle = state["_rle"]
            rows.append((r.id, None if rle is None else tuple(rle), *(state[f] for f in _FIELDS)))
        records.append(rows)
    index = doc._index
    # the index as the reader left it: its order, and the largest ids used (a removed painting's
    # id is not given out again)
    index_state = None if index is None else (
        [p.id for p in index.by_name.values()], index.owners, index.last_image_id, index.last_record_id
    )  # fmt: skip
    last = journal.last
    journal_state = (
        journal.end, journal.sha256, journal.lines, journal.stale, journal.written, journal.removed,
        journal.moves, None if last is None else tuple(getattr(last, f.name) for f in dataclasses.fields(last)),
    )  # fmt: skip
    return (doc.info, doc.extra, paintings, records, index_state, journal_state)


def _from_payload(payload: tuple) -> CachedParse:
    info, extra, paintings, records, index_state, journal_state = payload
    if not (isinstance(info, dict) and isinstance(extra, dict)):
        raise TypeError("not a parse")
    doc = Document(info=info, extra=extra)
    new, stimulus, rle_of, record = object.__new__, Stimulus, RLE._make, StoredRecord
    for (image_id, file_name, width, height, metadata), rows in zip(paintings, records, strict=True):
        doc.paintings[image_id] = Painting(image_id, file_name, width, height, metadata)
        stored = doc.records[image_id] = []
        # Stimulus._checked's work, inlined: forty thousand calls are a tenth of a second
        for r in rows:
            s = new(stimulus)
            s.__dict__ = {
                "emotion": r[2], "explanations": r[3], "no_stimulus": r[4], "source": r[5], "edited": r[6],
                "annotator": r[7], "score": r[8], "created": r[9], "modified": r[10], "extra": r[11],
                "reviewed": r[12], "adjudicated": r[13], "annotation_seconds": r[14], "_mask": None,
                "_rle": None if r[1] is None else rle_of(r[1]),
            }  # fmt: skip
            stored.append(record(r[0], s))
    if index_state is not None:
        named, owners, last_image_id, last_record_id = index_state
        by_name = {p.file_name: p for p in map(doc.paintings.__getitem__, named)}
        doc._index = _Index(by_name, owners, last_image_id, last_record_id)
    end, sha256, lines, stale, written, removed, moves, last = journal_state
    journal = JournalPrefix(
        end, sha256, lines, stale, written, removed, [tuple(m) for m in moves], None if last is None else Entry(*last)
    )
    return CachedParse(doc, journal)
