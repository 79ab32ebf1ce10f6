"""Reading a dataset's files into the copy this process holds (:class:`LocalCopy`).

``annotations.json`` is parsed and checked (see :mod:`.validate`), or its checked parse taken
from the parse cache when its bytes and the journal's first lines are the same (see
:mod:`.parse_cache`); the journal lines written since are read, checked and replayed. A read that
races a writer's commit or compaction starts again (a few times).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DatasetError
from . import store
from .parse_cache import CachedParse, JournalPrefix, ParseCache
from .validate import Document, HeaderCache, apply_entry, check_image_files, parse_document, parse_json_text

#: reads of a dataset that a writer changes meanwhile, before the last one's error stands
_ATTEMPTS = 5


@dataclass(frozen=True)
class DiskState:
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


@dataclass
class LocalCopy:
    """The dataset as this process holds it: the document, and which files it came from."""

    doc: Document = field(default_factory=Document)
    #: None: no annotations.json was read
    disk: DiskState | None = None
    #: images of committed writes that may not be moved into place yet (see store.pending_images)
    pending: dict[str, Path] = field(default_factory=dict)
    #: whether the last read of annotations.json came from the parse cache
    from_cache: bool = False


@dataclass
class _Source:
    """annotations.json as read (parsed JSON, or the cached checked parse) and the journal's bytes."""

    digest: str | None
    snapshot_bytes: int
    cached: CachedParse | None
    obj: Any
    snapshot_id: str | None
    journal_data: bytes
    journal_ino: int | None
    #: the journal lines the cached parse holds already (none without one)
    known: JournalPrefix


@dataclass
class _Read:
    doc: Document
    journal: store.JournalRead
    lines: JournalPrefix
    pending: dict[str, Path]


class DatasetReader:
    """Reads ``root``'s files into ``copy``, with the image-size and parse caches."""

    def __init__(self, root: Path, copy: LocalCopy, parse_cache: ParseCache | None):
        self.root = root
        self.copy = copy
        self.parse_cache = parse_cache
        self.header_cache = HeaderCache()

    def load(self, *, check_images: bool) -> bool:
        """Read the files into the copy; False when there is no annotations.json. Image files are
        checked with ``check_images`` (not by a writer catching up: an unrelated missing file must
        not block saving)."""
        with _no_collection_pauses():
            return self._load(check_images=check_images)

    def _load(self, *, check_images: bool) -> bool:
        path = store.annotations_path(self.root)
        for attempt in range(_ATTEMPTS):
            last_try = attempt == _ATTEMPTS - 1
            snapshot = file_stat(path)
            data = store.read_bytes(self.root)
            if data is None:
                self.copy.doc, self.copy.disk, self.copy.pending, self.copy.from_cache = Document(), None, {}, False
                return False
            source = self._source(data, path)
            del data
            try:
                read = self._read(source, check_images)
            except DatasetError:
                # a writer committed or compacted between our reads (images moved, lines cut): read again
                if not last_try and file_stat(path) != snapshot:
                    continue
                raise
            if file_stat(path) != snapshot and not last_try:
                continue  # compacted while we read: the journal may belong to the new snapshot
            self._keep(read, snapshot, source, check_images)
            return True
        raise AssertionError("unreachable")  # pragma: no cover

    def _source(self, data: bytes, path: Path) -> _Source:
        # what the reader makes of the files depends on their bytes alone: the parse cache holds it
        # under the hash of annotations.json, for a journal that begins as it did
        cache = self.parse_cache
        digest = None if cache is None else hashlib.sha256(data).hexdigest()
        cached = None if digest is None else cache.load(self.root, digest)
        if cached is not None:
            journal_data, journal_ino = store.read_journal_bytes(self.root)
            if not cached.journal.matches(journal_data):
                cached = None
        if cached is not None:
            return _Source(
                digest, len(data), cached, None, cached.document.snapshot_id, journal_data, journal_ino, cached.journal
            )
        obj = parse_json_text(store.decode(data, path), path)
        info = obj.get("info") if isinstance(obj, dict) else None
        snapshot_id = info.get("write_id") if isinstance(info, dict) else None
        journal_data, journal_ino = store.read_journal_bytes(self.root)
        return _Source(digest, len(data), None, obj, snapshot_id, journal_data, journal_ino, JournalPrefix())

    def _read(self, source: _Source, check_images: bool) -> _Read:
        """The document: the snapshot and the journal lines that extend it, checked."""
        known = source.known
        # the lines after those the cache holds (all of them without one), checked
        journal = store.parse_journal(
            self.root, source.journal_data[known.end :], source.journal_ino, known.end, known.lines + 1
        )
        current = [e for e in journal.entries if source.snapshot_id and e.snapshot == source.snapshot_id]
        lines = known.then(journal.end, journal.entries, current)
        pending = store.pending_images(self.root, lines.moves)
        # the journal's paintings' image files are checked once it is replayed: a line may delete a
        # file that an earlier line or the snapshot names
        later = set(lines.written) | set(lines.removed)
        doc = self._snapshot_document(source, check_images, pending, later)
        replay(self.root, doc, current)
        if check_images:
            check_image_files(doc, self.root, later, header_cache=self.header_cache, pending=pending)
        return _Read(doc, journal, lines, pending)

    def _snapshot_document(
        self, source: _Source, check_images: bool, pending: dict[str, Path], later: set[str]
    ) -> Document:
        if source.cached is None:
            return parse_document(
                source.obj, self.root, check_images=check_images, header_cache=self.header_cache,
                pending=pending, later=later,
            )  # fmt: skip
        doc = source.cached.document
        if check_images:  # what parse_document checks besides the JSON: every time
            check_image_files(
                doc, self.root, [i for i in doc.paintings if i not in later],
                header_cache=self.header_cache, pending=pending, file=store.ANNOTATIONS,
            )  # fmt: skip
        return doc

    def _keep(self, read: _Read, snapshot: tuple[int, int, int] | None, source: _Source, check_images: bool) -> None:
        """Hold what was read; after a full read (``check_images``) remember it in the caches."""
        copy = self.copy
        copy.doc, copy.pending, copy.from_cache = read.doc, read.pending, source.cached is not None
        copy.disk = DiskState(
            snapshot, read.journal.ino, read.journal.end, read.lines.lines, read.lines.last, stale=read.lines.stale
        )  # fmt: skip
        if not check_images:
            return
        self.header_cache.save(self.root, read.doc.index.by_name)
        # kept when new, and again once a megabyte of journal has been read past it (not while a
        # writer holds the lock: check_images=False)
        cache, end = self.parse_cache, read.journal.end
        if (
            cache is not None
            and source.snapshot_bytes + end >= cache.min_bytes
            and (source.cached is None or end - source.known.end >= cache.min_bytes)
        ):
            cache.save(self.root, source.digest, CachedParse(read.doc, read.lines.sealed(source.journal_data)))


def replay(root: Path, doc: Document, entries: list[store.Entry]) -> None:
    """Apply journal lines to ``doc`` (read and checked already)."""
    journal = store.journal_path(root)
    for entry in entries:
        apply_entry(
            doc, {"paintings": entry.paintings, "removed": entry.removed}, root,
            where=f"{journal} line {entry.line}", check_images=False,
        )  # fmt: skip


def file_stat(path: Path) -> tuple[int, int, int] | None:
    """(inode, mtime_ns, size) of ``path``; None when it does not exist."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def journal_ino(root: Path) -> int | None:
    try:
        return store.journal_path(root).stat().st_ino
    except FileNotFoundError:
        return None


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
