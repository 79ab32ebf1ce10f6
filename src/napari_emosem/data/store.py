"""``annotations.json`` and its journal on disk: reading them, and writing without ever losing data.

A dataset is a *snapshot*, ``annotations.json`` (a complete COCO file carrying its id in
``info.write_id``), and a *journal*, ``annotations.json.journal``: JSON Lines, one line per
committed write since the snapshot, each naming the snapshot it extends. Saving a painting appends
one line (O(that painting)); *compaction* folds the journal into a new snapshot and empties it.

- Appending is the commit: a line counts once its newline is on disk (the file is fsync'd). A torn
  last line (a writer killed mid-append) is ignored by readers and cut by the next writer.
- A write that adds or replaces image files first *stages* their bytes under
  ``images/.emosem-staging/<write id>/``; its line names where each goes (``moves``) and which
  files it deletes (``remove``). After the append the staged files are moved into place. Killed
  before the append, the dataset is the old one (the next writer deletes the staging folder);
  after it, the new one: readers find the images through the line (:func:`pending_images`) until
  the next writer finishes the moves (:func:`recover`).
- Compaction writes the new snapshot atomically (a temporary file renamed over the old one), then
  deletes the journal. Killed in between, the journal's lines name the old snapshot's id: readers
  ignore them (the new snapshot holds them) and the next writer removes them, so nothing is
  replayed twice.
- Writers take a cross-process lock (``annotations.json.lock``, via filelock) and catch up with
  the file under it before changing it, so two windows or processes never drop each other's work.
  Readers need no lock.
- Only the lock holder creates temporary files in the dataset (``.annotations.json.*.tmp``, the
  staging folder), so whatever of them a writer finds while holding the lock belongs to a writer
  that was killed, and :func:`recover` deletes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import (
    atomic_open,
    describe_os_error,
    fsync_dir,
    remove_stale_temp_files,
)
from ..errors import DatasetError

ANNOTATIONS = "annotations.json"
#: Folder of the image files
IMAGES = "images"
LOCK_SUFFIX = ".lock"
JOURNAL = "annotations.json.journal"
#: Folder under images/ where a write stages new image files before its commit.
STAGING = ".emosem-staging"
#: Seconds a writer waits for another writer before giving up.
DEFAULT_LOCK_TIMEOUT = 60.0


def annotations_path(root: Path) -> Path:
    return root / ANNOTATIONS


def lock_path(root: Path) -> Path:
    return root / (ANNOTATIONS + LOCK_SUFFIX)


@contextlib.contextmanager
def write_lock(root: Path, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the dataset's cross-process write lock for the duration of the block."""
    from filelock import FileLock, Timeout

    path = lock_path(root)
    lock = FileLock(str(path), timeout=timeout)
    try:
        lock.acquire()
    except Timeout:
        raise DatasetError(
            f"{root}: another writer has held the lock {path} for more than {timeout:g} s "
            "(another napari window or emosem command saving to this dataset); wait for it to "
            "finish and save again. The lock is released when that process ends"
        ) from None
    except OSError as exc:
        raise DatasetError(
            f"{root}: cannot create the lock file {path} ({exc.strerror or exc}); the dataset folder must be writable"
        ) from None
    try:
        yield
    finally:
        lock.release()


def read_text(root: Path) -> str | None:
    """The text of ``annotations.json``, or None when there is none."""
    data = read_bytes(root)
    return None if data is None else decode(data, annotations_path(root))


def read_bytes(root: Path) -> bytes | None:
    """The bytes of ``annotations.json``, or None when there is none."""
    path = annotations_path(root)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise DatasetError(f"{path} is a folder; it must be the dataset's JSON file") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def decode(data: bytes, path: Path) -> str:
    """The text of ``annotations.json`` read as ``data``."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text (byte {exc.start}); a COCO file must be UTF-8 JSON") from None


def encode_chunks(obj: dict[str, Any]) -> Iterator[str]:
    """The JSON text of ``obj`` in pieces, one line per image, category and annotation (easy to
    read and diff, and a large file is never held twice in memory)."""
    # allow_nan=False: NaN and Infinity are not JSON, and COCO tools could not read the file
    compact = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": "), allow_nan=False)
    yield "{"
    for index, (key, value) in enumerate(obj.items()):
        yield ("\n " if index == 0 else ",\n ") + json.dumps(key) + ": "
        if isinstance(value, list):
            if not value:
                yield "[]"
                continue
            yield "["
            for i, item in enumerate(value):
                yield ("\n  " if i == 0 else ",\n  ") + compact.encode(item)
            yield "\n ]"
        else:
            yield compact.encode(value)
    yield "\n}\n"


def write_json(root: Path, obj: Any) -> None:
    """Replace ``annotations.json`` atomically with ``obj``. Call under :func:`write_lock`."""
    path = annotations_path(root)
    buffer: list[str] = []
    size = 0
    with atomic_open(path) as handle:
        for chunk in encode_chunks(obj):
            buffer.append(chunk)
            size += len(chunk)
            if size > 1 << 16:
                handle.write("".join(buffer).encode("utf-8"))
                buffer, size = [], 0
        handle.write("".join(buffer).encode("utf-8"))


# ----------------------------------------------------------------------------- the journal
def journal_path(root: Path) -> Path:
    return root / JOURNAL


def images_dir(root: Path) -> Path:
    return root / IMAGES


def staging_dir(root: Path) -> Path:
    return images_dir(root) / STAGING


@dataclass
class Entry:
    """One committed write: a line of the journal (paths relative to images/)."""

    #: ``info.write_id`` of the snapshot this line extends
    snapshot: str
    #: this write's id (names its staging folder)
    write: str
    #: the state of each painting written: ``{"image": {...}, "annotations": [...]}``
    paintings: list[dict[str, Any]] = field(default_factory=list)
    #: ids of the paintings removed
    removed: list[int] = field(default_factory=list)
    #: (staged file, final file name): moved into place after the line is appended
    moves: list[tuple[str, str]] = field(default_factory=list)
    #: image files no painting names any more: deleted after the line is appended
    remove: list[str] = field(default_factory=list)
    #: line number in the journal (1-based), for messages
    line: int = 0

    def staged(self, index: int) -> str:
        return f"{STAGING}/{self.write}/{index}"

    def to_line(self) -> bytes:
        obj = {
            "snapshot": self.snapshot,
            "write": self.write,
            "paintings": self.paintings,
            "removed": self.removed,
            "moves": [list(m) for m in self.moves],
            "remove": self.remove,
        }
        # allow_nan=False: NaN is not JSON; one line, so a torn write is a torn last line
        return (json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")


@dataclass
class JournalRead:
    """The complete lines of the journal from some byte offset on."""

    entries: list[Entry]
    #: byte offset just after the last complete line
    end: int
    #: the file's size when read (more than ``end``: a torn last line)
    size: int
    #: the file's inode (None: no journal)
    ino: int | None


def read_journal(root: Path, start: int = 0, first_line: int = 1) -> JournalRead:
    """The journal's complete lines from byte ``start`` (line number ``first_line``) on.

    A last line without its newline is a write that was cut short: it is not part of the dataset.
    A complete line that is not a journal entry (edited by hand, a damaged disk) is an error:
    skipping it could drop a save silently.
    """
    path = journal_path(root)
    try:
        with open(path, "rb") as handle:
            ino = os.fstat(handle.fileno()).st_ino
            handle.seek(start)
            data = handle.read()
    except FileNotFoundError:
        return JournalRead([], 0, 0, None)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    return parse_journal(root, data, ino, start, first_line)


def read_journal_bytes(root: Path) -> tuple[bytes, int | None]:
    """The whole journal and its inode (``b""`` and None when there is none)."""
    path = journal_path(root)
    try:
        with open(path, "rb") as handle:
            return handle.read(), os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return b"", None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def parse_journal(root: Path, data: bytes, ino: int | None, start: int = 0, first_line: int = 1) -> JournalRead:
    """:func:`read_journal` of ``data``, the journal's bytes from byte ``start`` on."""
    from .validate import parse_json_text

    path = journal_path(root)
    complete = data.rfind(b"\n") + 1
    entries = []
    line = first_line
    for raw in data[:complete].splitlines():
        where = f"{path} line {line}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DatasetError(f"{where}: not UTF-8 text; {_JOURNAL_FIX}") from None
        obj = parse_json_text(text, where)
        entries.append(_entry(obj, where, line))
        line += 1
    return JournalRead(entries, start + complete, start + len(data), ino)


_JOURNAL_FIX = (
    "remove the line (the saves it and the lines after it hold are lost) or restore the journal from a backup"
)


def _entry(obj: Any, where: str, line: int) -> Entry:
    from .validate import check_file_name

    try:
        if "snapshot" not in obj and "write_id" in obj:
            # the journal of napari-emosem 0.1: one write, written before its commit, which was
            # annotations.json carrying the same id
            obj = {
                "snapshot": obj["write_id"],
                "write": obj["write_id"],
                "moves": obj["moves"],
                "remove": obj["remove"],
            }
        snapshot, write = obj["snapshot"], obj["write"]
        paintings, removed = obj.get("paintings", []), obj.get("removed", [])
        moves = [(str(a), str(b)) for a, b in obj.get("moves", [])]
        remove = [str(r) for r in obj.get("remove", [])]
        # the files it moves and deletes must be where this project puts them: a hand-made line
        # must not move or delete anything outside images/
        if not (
            isinstance(snapshot, str)
            and isinstance(write, str)
            and re.fullmatch(r"[0-9a-f]{8,64}", write)
            and isinstance(paintings, list)
            and isinstance(removed, list)
            and all(re.fullmatch(rf"{re.escape(STAGING)}/{write}/[0-9]+", a) for a, _ in moves)
            and not any(check_file_name(name) for name in [*(b for _, b in moves), *remove])
        ):
            raise TypeError
    except (KeyError, TypeError, ValueError, AttributeError):
        raise DatasetError(f"{where}: not a journal entry; {_JOURNAL_FIX}") from None
    return Entry(snapshot, write, paintings, removed, moves, remove, line)


def append_entry(root: Path, entry: Entry) -> int:
    """Append ``entry`` as one line and make it durable: the commit of a write. Returns the
    journal's size after it. Call under :func:`write_lock`, after :func:`recover` (which cuts a
    torn last line). If writing or syncing fails, the line is cut off again: a write reported as
    failed must not appear later."""
    path = journal_path(root)
    data = entry.to_line()
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)
    if created:
        fsync_dir(root)
    return start + len(data)


def pending_images(root: Path, moves: list[tuple[str, str]]) -> dict[str, Path]:
    """file name -> staged file, for the images of committed writes (``moves``: those of the lines
    that extend the current snapshot, in order) that may not be moved into place yet: where
    readers find them meanwhile (a staged file that is gone has been moved)."""
    images = images_dir(root)
    return {final: images / staged for staged, final in moves}


def complete(root: Path, entry: Entry, named: set[str] | dict[str, Any]) -> None:
    """After the line of ``entry`` is appended: move its staged images into place and delete
    the files it replaced (unless a painting names them: ``named``). Idempotent: a writer killed
    half-way is finished by the next one."""
    images = images_dir(root)
    for staged, final in entry.moves:
        source, target = images / staged, images / final
        if source.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
    for name in entry.remove:
        if name not in named:
            with contextlib.suppress(FileNotFoundError):
                (images / name).unlink()
    fsync_dir(images)
    remove_staging(root, entry.write)


def remove_staging(root: Path, write: str) -> None:
    """Delete one write's staging folder (and the staging folder, once empty)."""
    shutil.rmtree(staging_dir(root) / write, ignore_errors=True)
    with contextlib.suppress(OSError):  # left only when not empty: a killed writer's, for recover()
        staging_dir(root).rmdir()


def truncate_journal(root: Path, size: int) -> None:
    """Cut the journal to ``size`` bytes (a torn last line), or delete it (``size`` 0)."""
    path = journal_path(root)
    if size == 0:
        path.unlink(missing_ok=True)
        fsync_dir(root)
        return
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def recover(
    root: Path, journal_end: int, journal_size: int, last: Entry | None, named: set[str] | dict[str, Any]
) -> None:
    """Under the write lock, before writing: cut a torn last line off the journal (a writer
    killed mid-append: ``journal_size`` > ``journal_end``, the end of its last complete line),
    finish the last write if its writer was killed after its commit (``last``: the journal's last
    line that extends the current snapshot; ``named``: the image file names the dataset uses
    now), and delete the temporary files killed writers left.

    Only the last line can be unfinished: every writer finishes its own moves, or the next one
    does (here) before it appends. Safe because only the lock holder creates these files.
    """
    try:
        if journal_size > journal_end:
            truncate_journal(root, journal_end)
        staging = staging_dir(root)
        images = images_dir(root)
        if last is not None and (
            staging.exists() or any(n not in named and (images / n).exists() for n in last.remove)
        ):
            complete(root, last, named)
        if staging.exists():
            shutil.rmtree(staging)
        for entry in os.scandir(root):
            name = entry.name
            if name.startswith((f".{ANNOTATIONS}.", f".{JOURNAL}.")) and name.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
        # others, e.g. an overlay or the image-size cache, are made outside the lock: only a dead
        # process's are deleted
        remove_stale_temp_files(root)
    except OSError as exc:
        raise DatasetError(
            f"{root}: cannot tidy up after an interrupted write ({describe_os_error(exc)}); nothing was written"
        ) from None
