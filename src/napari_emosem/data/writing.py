"""Writing: locked transactions that append to the journal, and compaction.

A write takes the cross-process lock, catches up with the files (another writer's lines), finishes
or undoes what killed writers left (:func:`.store.recover`), plans and applies its paintings
(:mod:`.transaction`), stages their image files, and commits by appending one journal line; the
image files are moved into place after the commit. A kill at any point leaves the old dataset or
the new one (see :mod:`.store` and ``docs/dataset-format.md``). When the journal has grown enough
(:class:`Compaction`) it is folded into ``annotations.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .._io import create_new, describe_os_error, fsync_dir
from ..errors import DatasetError, EmoSEMError
from . import store
from .coco_json import document_json, painting_json
from .prepare import Prepared, prepare
from .reading import DatasetReader, DiskState, LocalCopy, file_stat, journal_ino, replay
from .records import Painting, copy_painting
from .transaction import Transaction
from .updates import PaintingUpdate, WriteReport
from .validate import Document


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


class DatasetWriter:
    """Writes to ``root`` under its lock, keeping ``copy`` (shared with the reader) current."""

    def __init__(
        self, root: Path, copy: LocalCopy, reader: DatasetReader, *, lock_timeout: float, compaction: Compaction
    ):
        self.root = root
        self.copy = copy
        self.reader = reader
        self.lock_timeout = lock_timeout
        self.compaction = compaction
        self.thread_lock = threading.Lock()

    # ------------------------------------------------------------------ the writes
    def write(self, updates: Iterable[PaintingUpdate]) -> WriteReport:
        """Several paintings in one transaction: every one written, or none (see
        :meth:`.StimulusDataset.write_paintings`)."""
        prepared = self._prepare_all(updates)
        if not prepared:
            return WriteReport()
        try:
            with self.thread_lock, store.write_lock(self.root, self.lock_timeout):
                store.images_dir(self.root).mkdir(exist_ok=True)
                doc = self._begin()
                tx = Transaction(doc.copy(), self.root)
                plans = [tx.plan(item) for item in prepared]  # may refuse: nothing written yet
                tx.report.paintings = [tx.apply(plan) for plan in plans]
                self._commit(tx.doc, tx.report.paintings, [], tx.stage, tx.remove)
        except OSError as exc:
            raise DatasetError(f"{self.root}: nothing was written ({describe_os_error(exc)})") from None
        tx.report.paintings = [copy_painting(p) for p in tx.report.paintings]
        return tx.report

    def _prepare_all(self, updates: Iterable[PaintingUpdate]) -> list[Prepared]:
        """Every update checked and encoded (outside the lock); every problem of them at once."""
        prepared, problems = [], []
        for index, update in enumerate(updates):
            try:
                prepared.append(prepare(update))
            except DatasetError as exc:
                problems.extend(exc.problems or [str(exc)])
            except EmoSEMError as exc:
                problems.append(f"painting {index + 1}: {exc}")
        names = Counter(p.file_name for p in prepared)
        problems.extend(f"{n!r} is given {c} times in one write" for n, c in names.items() if c > 1)
        if problems:
            raise DatasetError(f"{self.root}: nothing was written", problems)
        return prepared

    def remove(self, key: str | int, find: Callable[[str | int], Painting | None], *, delete_image: bool) -> bool:
        """Remove the painting ``find`` finds under ``key`` once caught up; False when none."""
        try:
            with self.thread_lock, store.write_lock(self.root, self.lock_timeout):
                doc = self._begin()
                target = find(key)
                if target is None:
                    return False
                new_doc = doc.copy()
                new_doc.drop(target.id)
                self._commit(new_doc, [], [target.id], [], [target.file_name] if delete_image else [])
        except OSError as exc:
            raise DatasetError(f"{self.root}: nothing was written ({describe_os_error(exc)})") from None
        return True

    def compact(self) -> bool:
        """Fold the journal into ``annotations.json`` now; False when there was nothing to fold."""
        try:
            with self.thread_lock, store.write_lock(self.root, self.lock_timeout):
                doc = self._begin()
                disk = self.copy.disk
                if disk is not None and disk.journal_end == 0 and not journal_bytes(self.root):
                    return False
                self._write_snapshot(doc)
        except OSError as exc:
            raise DatasetError(
                f"{self.root}: not compacted ({describe_os_error(exc)}); the dataset is unchanged"
            ) from None
        return True

    # ------------------------------------------------------------------ under the lock
    def _begin(self) -> Document:
        """Under the lock: catch up with the files, finish or undo what killed writers left, and
        make sure ``annotations.json`` exists and carries an id for journal lines to name."""
        doc, journal, stale = self._catch_up()
        copy = self.copy
        last = copy.disk.last if copy.disk is not None else None
        store.recover(self.root, journal.end, journal.size, last, doc.index.by_name)
        if doc.snapshot_id is None or copy.disk is None or (stale and last is not None):
            # a new dataset, a COCO file from elsewhere, or a journal that mixes snapshots: start
            # a new snapshot (it holds everything; the journal goes)
            self._write_snapshot(doc)
        elif stale:  # only lines an earlier compaction folded in already: drop them
            store.truncate_journal(self.root, 0)
            copy.disk = DiskState(copy.disk.snapshot)
        return copy.doc

    def _catch_up(self) -> tuple[Document, store.JournalRead, bool]:
        """The dataset as it is now (our copy, plus the journal lines appended since we read it,
        or everything re-read when annotations.json changed), the journal as read, and whether it
        holds lines of another snapshot."""
        copy = self.copy
        snapshot = file_stat(store.annotations_path(self.root))
        if snapshot is None:
            if copy.disk is not None:
                self._doc_missing_error()
            journal = store.read_journal(self.root)
            copy.doc = Document()
            return copy.doc, journal, bool(journal.entries) or journal.size > 0
        if copy.disk is not None and snapshot == copy.disk.snapshot:
            caught_up = self._replay_new_lines()
            if caught_up is not None:
                return caught_up
        # annotations.json changed (compacted, replaced): read it all again. Image files of other
        # paintings are not checked here: an unrelated missing file must not block saving;
        # open() reports it.
        self.reader.load(check_images=False)
        journal = store.read_journal(self.root)
        return copy.doc, journal, copy.disk.stale

    def _replay_new_lines(self) -> tuple[Document, store.JournalRead, bool] | None:
        """The same annotations.json as ours: replay the journal lines appended since we read it;
        None when the journal is not the one we read (then everything is read again)."""
        copy, disk = self.copy, self.copy.disk
        ino = journal_ino(self.root)
        same_journal = ino == disk.journal_ino or (disk.journal_ino is None and disk.journal_end == 0)
        if not same_journal:
            return None
        journal = store.read_journal(self.root, disk.journal_end, disk.journal_lines + 1)
        if journal.end < disk.journal_end or not all(e.snapshot == copy.doc.snapshot_id for e in journal.entries):
            return None
        doc = copy.doc
        if journal.entries:  # only the journal grew: replay the new lines
            doc = doc.copy()
            replay(self.root, doc, journal.entries)
        copy.doc = doc
        copy.disk = dataclasses.replace(
            disk, journal_ino=journal.ino, journal_end=journal.end,
            journal_lines=disk.journal_lines + len(journal.entries),
            last=journal.entries[-1] if journal.entries else disk.last,
        )  # fmt: skip
        return doc, journal, disk.stale

    def _doc_missing_error(self) -> Document:
        raise DatasetError(
            f"{store.annotations_path(self.root)} was deleted while this dataset was open; "
            "nothing was written. Restore it, or open the folder again to start afresh"
        )

    def _commit(
        self,
        doc: Document,
        written: list[Painting],
        removed: list[int],
        stage: list[tuple[Prepared, str]],
        remove: list[str],
    ) -> None:
        """Append one journal line for this write, with its image files staged first, so that a
        kill at any point leaves the old dataset or the new one (see :mod:`.store`); then compact
        when it is due. Call under the lock, after :meth:`_begin`."""
        write = secrets.token_hex(8)
        entry = store.Entry(
            doc.snapshot_id, write,
            paintings=[painting_json(p, doc.records.get(p.id, [])) for p in written],
            removed=list(removed), remove=list(remove),
        )  # fmt: skip
        entry.moves = [(entry.staged(i), name) for i, (_, name) in enumerate(stage)]
        size = self._stage_and_append(entry, stage)
        copy = self.copy
        copy.doc = doc
        copy.disk = dataclasses.replace(
            copy.disk, journal_ino=journal_ino(self.root), journal_end=size,
            journal_lines=copy.disk.journal_lines + 1, last=entry,
        )  # fmt: skip
        self._move_images_in(entry, doc)
        if self.compaction.due(copy.disk.snapshot[2], copy.disk.journal_end):
            with contextlib.suppress(OSError):  # the journal holds the write: the next one retries
                self._write_snapshot(doc)

    def _stage_and_append(self, entry: store.Entry, stage: list[tuple[Prepared, str]]) -> int:
        """Stage the write's image files (fsync'd), then append its line: the commit. A failure
        before the commit removes what was staged. Returns the journal's new size."""
        try:
            if stage:
                folder = store.staging_dir(self.root) / entry.write
                folder.mkdir(parents=True)
                images = store.images_dir(self.root)
                for (item, _), (staged, _) in zip(stage, entry.moves, strict=True):
                    _write_image_file(images / staged, item)
                fsync_dir(folder)
            return store.append_entry(self.root, entry)  # the commit
        except BaseException:
            store.remove_staging(self.root, entry.write)
            raise

    def _move_images_in(self, entry: store.Entry, doc: Document) -> None:
        """After the commit: the staged images into place, replaced ones deleted."""
        try:
            store.complete(self.root, entry, doc.index.by_name)
        except OSError as exc:
            images = store.images_dir(self.root)
            self.copy.pending = {name: images / staged for staged, name in entry.moves}
            raise DatasetError(
                f"{self.root}: the records were written, but moving their images into place "
                f"failed ({describe_os_error(exc)}); the dataset opens as it is, and the next "
                "write to it finishes the move"
            ) from None
        self.copy.pending = {}

    def _write_snapshot(self, doc: Document) -> None:
        """Write ``doc`` as ``annotations.json`` with a new id, then delete the journal it folds
        in. Call under the lock, with nothing unfinished in the journal."""
        doc = doc.copy()
        doc.info["write_id"] = secrets.token_hex(8)
        store.write_json(self.root, document_json(doc))  # the commit: from here the journal's lines are stale
        store.truncate_journal(self.root, 0)
        self.copy.doc = doc
        self.copy.disk = DiskState(file_stat(store.annotations_path(self.root)))


def journal_bytes(root: Path) -> int:
    """Bytes of journal not yet folded into ``annotations.json`` (0: the file is complete)."""
    try:
        return store.journal_path(root).stat().st_size
    except FileNotFoundError:
        return 0


def _write_image_file(target: Path, item: Prepared) -> None:
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
