"""Crash-safe file writes: write a temporary file beside the target, fsync, then rename.

``os.replace`` is atomic on POSIX and Windows, so a reader sees either the old file or the new
one, never a half-written one, and a crash mid-write leaves the previous version in place.

Files are created with mode 0o666 filtered by the umask (as ``open()`` does), and a replaced
file keeps the permission bits it had: a team's shared dataset stays readable to the team.

A writer killed mid-write (kill -9, power loss) leaves its temporary file behind. Temporary
files are named ``.<name>.<host>-<pid>-<random>.tmp``, so :func:`remove_stale_temp_files` can
tell which ones belong to a writer that no longer runs on this machine and delete only those.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

#: Longest part of the target's name kept in a temporary file's name (NAME_MAX is 255 bytes).
_NAME_KEPT = 80
_HOST = hashlib.blake2b(socket.gethostname().encode("utf-8", "replace"), digest_size=4).hexdigest()
_TEMP_RE = re.compile(r"^\..*\.([0-9a-f]{8})-(\d+)-[0-9a-f]{8}\.tmp$")


def temp_path(path: Path) -> Path:
    """A fresh temporary name beside ``path`` that :func:`remove_stale_temp_files` recognises."""
    name = path.name.encode("utf-8", "surrogateescape")[:_NAME_KEPT].decode("utf-8", "ignore")
    return path.parent / f".{name}.{_HOST}-{os.getpid()}-{secrets.token_hex(4)}.tmp"


def create_new(path: Path, mode: int | None = None) -> int:
    """Create ``path`` exclusively and return a write descriptor. New files get 0o666 minus the
    umask (the kernel applies it); ``mode`` (e.g. the replaced file's bits) is set exactly."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    if mode is not None:
        # not our file system's business (e.g. some network mounts): keep the umask's bits
        with contextlib.suppress(OSError):
            os.fchmod(fd, mode)
    return fd


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file for binary writing that replaces ``path`` when the block succeeds.

    If the block raises, the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        keep = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        keep = None
    tmp = temp_path(path)
    fd = create_new(tmp, keep)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path) as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 1) -> None:
    """Write ``obj`` as JSON. NaN and infinities are refused (ValueError): they are not JSON."""
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False) + "\n")


def fsync_dir(directory: Path) -> None:
    """Make renames in ``directory`` durable; best effort (not supported everywhere, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, it is someone else's
        return True
    return True


def remove_stale_temp_files(directory: str | os.PathLike) -> int:
    """Delete the temporary files in ``directory`` that writers killed mid-write left behind.

    Only files named by :func:`temp_path` on this machine whose process has ended are removed:
    a live writer's file (this process's included) is never touched, nor is one written from
    another machine (a shared network folder), whose process ids mean nothing here. Returns
    how many were removed.
    """
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        match = _TEMP_RE.match(entry.name)
        if not match or match.group(1) != _HOST:
            continue
        pid = int(match.group(2))
        if pid == os.getpid() or _process_alive(pid):
            continue
        with contextlib.suppress(OSError):
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed += 1
    return removed


class NotRegularFileError(OSError):
    """A pipe, socket or device given where a file is read."""


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open ``path`` for binary reading, refusing anything but a regular file: reading a FIFO
    blocks until something writes to it, a device can be endless. Raises OSError
    (:class:`NotRegularFileError`, IsADirectoryError, FileNotFoundError, …)."""
    # O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer, so that fstat
    # can refuse it; a regular file ignores the flag
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(errno.EINVAL, "not a regular file (a pipe, socket or device)", str(path))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def describe_os_error(exc: OSError) -> str:
    """``"No space left on device: /data/x.png"``: the reason and the file, for one-line errors."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        reason += " (free some space and run it again)"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        reason += " (the folder must be writable)"
    elif exc.errno == errno.ENAMETOOLONG:
        reason += " (use a shorter name)"
    return f"{reason}: {exc.filename}" if exc.filename else reason


def check_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and prove it is writable, or raise a clear EmoSEMError."""
    from .errors import EmoSEMError

    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = temp_path(path / "write-test")
        os.close(create_new(probe))
        os.unlink(probe)
    except OSError as exc:
        raise EmoSEMError(
            f"{path}: cannot write there ({exc.strerror or exc}); choose another output folder"
        ) from None
    return path


def check_writable_file(path: str | os.PathLike) -> Path:
    """Prove that ``path`` can be written (its folder writable, itself not a folder) before the
    work that produces it, or raise a clear EmoSEMError."""
    from .errors import EmoSEMError

    path = Path(path).expanduser()
    if path.is_dir():
        raise EmoSEMError(f"{path} is a folder; give the name of a file to write")
    check_writable_dir(path.parent if str(path.parent) else Path("."))
    return path
