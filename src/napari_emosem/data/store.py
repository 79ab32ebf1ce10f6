"""``annotations.json`` on disk: reading it, and writing it without ever losing data.

- Writes stream the JSON into a temporary file beside the target and rename it over the old one
  (:func:`napari_emosem._io.atomic_open`): a crash or an error half-way leaves the previous
  version in place.
- Writers take a cross-process lock (``annotations.json.lock``, via filelock) and re-read the
  file under it before changing it, so two windows or processes never drop each other's work.
  Readers need no lock: they see the old file or the new one, never a mix.
- A write that also adds, replaces or deletes image files is made crash-safe by a journal
  (:class:`Journal`, ``annotations.json.journal``): new image bytes are first *staged* under
  ``images/.emosem-staging/<write id>/``, the journal names where each goes, then the JSON is
  replaced (the commit: it carries the write id in ``info.write_id``), then the staged files are
  moved into place and the journal removed. A kill before the commit leaves the old dataset; a
  kill after it leaves the new one, whose images readers find through the journal
  (:func:`pending_images`) until the next writer finishes the moves (:func:`recover`).
- Only the lock holder creates temporary files in the dataset (``.annotations.json.*.tmp``, the
  staging folder), so whatever of them a writer finds while holding the lock belongs to a writer
  that was killed, and :func:`recover` deletes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import (
    atomic_open,
    atomic_write_json,
    describe_os_error,
    fsync_dir,
    remove_stale_temp_files,
)
from ..errors import DatasetError

ANNOTATIONS = "annotations.json"
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
            f"{root}: cannot create the lock file {path} ({exc.strerror or exc}); the dataset "
            "folder must be writable"
        ) from None
    try:
        yield
    finally:
        lock.release()


def read_text(root: Path) -> str | None:
    """The text of ``annotations.json``, or None when there is none."""
    path = annotations_path(root)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise DatasetError(f"{path} is a folder; it must be the dataset's JSON file") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{path}: not UTF-8 text (byte {exc.start}); a COCO file must be UTF-8 JSON"
        ) from None


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


def staging_dir(root: Path) -> Path:
    return root / "images" / STAGING


@dataclass
class Journal:
    """What one write does to image files, written before its commit (paths relative to images/)."""

    #: the id the committed annotations.json carries in ``info.write_id``
    write_id: str
    #: (staged file, final file name): moved into place after the commit
    moves: list[tuple[str, str]] = field(default_factory=list)
    #: image files that the committed JSON no longer names: deleted after the commit
    remove: list[str] = field(default_factory=list)

    def staged(self, index: int) -> str:
        return f"{STAGING}/{self.write_id}/{index}"

    def to_json(self) -> dict[str, Any]:
        return {"write_id": self.write_id, "moves": [list(m) for m in self.moves], "remove": self.remove}


def read_journal(root: Path) -> Journal | None:
    """The journal of an unfinished write, or None. It is written atomically, so it is whole or
    absent; anything else (edited by hand) is ignored."""
    try:
        obj = json.loads(journal_path(root).read_text(encoding="utf-8"))
        moves = [(str(a), str(b)) for a, b in obj["moves"]]
        return Journal(str(obj["write_id"]), moves, [str(r) for r in obj["remove"]])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_journal(root: Path, journal: Journal) -> None:
    atomic_write_json(journal_path(root), journal.to_json(), indent=None)


def pending_images(root: Path, write_id: Any) -> dict[str, Path]:
    """file name -> staged file, for the images of the committed write ``write_id`` (the JSON's
    ``info.write_id``) that are not moved into place yet: where readers find them meanwhile."""
    journal = read_journal(root)
    if journal is None or write_id is None or journal.write_id != write_id:
        return {}
    images = root / "images"
    return {final: images / staged for staged, final in journal.moves}


def complete(root: Path, journal: Journal) -> None:
    """After the commit: move the staged images into place, delete the replaced ones, drop the
    journal. Idempotent: a writer killed half-way is finished by the next one."""
    images = root / "images"
    for staged, final in journal.moves:
        source, target = images / staged, images / final
        if source.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
    for name in journal.remove:
        with contextlib.suppress(FileNotFoundError):
            (images / name).unlink()
    fsync_dir(images)
    _remove_staging(root, journal)
    journal_path(root).unlink(missing_ok=True)


def discard(root: Path, journal: Journal) -> None:
    """Before the commit: undo a write (its staged files and journal); the dataset is unchanged."""
    _remove_staging(root, journal)
    journal_path(root).unlink(missing_ok=True)


def _remove_staging(root: Path, journal: Journal) -> None:
    shutil.rmtree(staging_dir(root) / journal.write_id, ignore_errors=True)
    with contextlib.suppress(OSError):  # left only when not empty: a killed writer's, for recover()
        staging_dir(root).rmdir()


def recover(root: Path, committed_write_id: Any) -> None:
    """Under the write lock, before writing: finish (committed) or undo (not committed) the write
    of a writer that was killed, and delete the temporary files killed writers left.

    Safe because only the lock holder creates these files: holding the lock, nobody else is
    writing them. ``committed_write_id`` is ``info.write_id`` of the current annotations.json.
    """
    journal = read_journal(root)
    try:
        if journal is not None:
            if journal.write_id == committed_write_id:
                complete(root, journal)
            else:
                discard(root, journal)
        journal_path(root).unlink(missing_ok=True)  # an unreadable one
        staging = staging_dir(root)
        if staging.exists():
            shutil.rmtree(staging)
        for entry in os.scandir(root):
            name = entry.name
            if name.startswith((f".{ANNOTATIONS}.", f".{JOURNAL}.")) and name.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
        # others, e.g. the probe of a writability check, are made outside the lock: only a dead
        # process's are deleted
        remove_stale_temp_files(root)
    except OSError as exc:
        raise DatasetError(
            f"{root}: cannot tidy up after an interrupted write ({describe_os_error(exc)}); "
            "nothing was written"
        ) from None
