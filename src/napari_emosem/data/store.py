"""``annotations.json`` on disk: reading it, and writing it without ever losing data.

- Writes stream the JSON into a temporary file beside the target and rename it over the old one
  (:func:`napari_emosem._io.atomic_open`): a crash or an error half-way leaves the previous
  version in place.
- Writers take a cross-process lock (``annotations.json.lock``, via filelock) and re-read the
  file under it before changing it, so two windows or processes never drop each other's work.
  Readers need no lock: they see the old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._io import atomic_open
from ..errors import DatasetError

ANNOTATIONS = "annotations.json"
LOCK_SUFFIX = ".lock"
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
    compact = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": "))
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
