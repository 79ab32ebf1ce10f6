"""Replace a whole folder (a checkpoint, a run's training state) so that a kill at any moment leaves
the old folder or the new one under its name, never neither, and nothing the next save keeps.

The new folder is written beside the target under a scratch name, then swapped in:

* on Linux with one ``renameat2(RENAME_EXCHANGE)`` call, which exchanges the two names atomically
  (the scratch name then holds the old folder, which is deleted);
* elsewhere, or on a file system without it (NFS, SMB), with two renames, the old folder moved
  aside under a scratch name first. A kill between them leaves neither under the name;
  :func:`clean_interrupted` puts the new (complete) folder in place the next time anyone saves or
  reads it.

Scratch names are ``.<name>.<host>-<pid>-<random>.saving`` (being written, or the old folder after
an exchange) and ``….old`` (the old folder moved aside), like the data layer's temporary files
(see ``_io``): a leftover is removed only when it was made on this machine by a process that no
longer runs, so a live writer's folder is never touched, nor one from another machine sharing the
folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import re
import secrets
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

# the same host tag and liveness test as the data layer's temporary files: one rule for both
from ._io import _HOST, _process_alive, fsync_dir

SAVING, OLD = "saving", "old"
_SCRATCH_RE = re.compile(r"^\.(?P<name>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{8}\.(?P<role>saving|old)$")


@contextlib.contextmanager
def replacing_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty scratch folder beside ``folder``; when the block succeeds it replaces
    ``folder`` atomically (see the module docstring), when it raises it is removed.

    Files written into it must be complete when the block ends (they are fsynced here)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    clean_interrupted(folder.parent)
    tmp = _scratch(folder, SAVING)
    os.mkdir(tmp)  # 0o777 minus the umask: a team's shared checkpoints stay readable to the team
    try:
        yield tmp
        _sync_tree(tmp)
        _swap_into_place(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _scratch(folder: Path, role: str) -> Path:
    return folder.with_name(f".{folder.name}.{_HOST}-{os.getpid()}-{secrets.token_hex(4)}.{role}")


def _sync_tree(folder: Path) -> None:
    for entry in os.scandir(folder):
        if entry.is_file(follow_symlinks=False):
            fd = os.open(entry.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fsync_dir(folder)


def _swap_into_place(tmp: Path, folder: Path) -> None:
    if not os.path.lexists(folder):
        try:
            os.rename(tmp, folder)
        except OSError as exc:
            # another writer put one there meanwhile: replace it like any existing folder
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not folder.is_dir():
                raise
        else:
            fsync_dir(folder.parent)
            return
    if _exchange(tmp, folder):
        shutil.rmtree(tmp, ignore_errors=True)  # now the old folder
        fsync_dir(folder.parent)
        return
    old = _scratch(folder, OLD)
    os.rename(folder, old)
    try:
        os.rename(tmp, folder)
    except BaseException:
        os.rename(old, folder)
        raise
    fsync_dir(folder.parent)
    shutil.rmtree(old, ignore_errors=True)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@functools.cache
def _renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2  # glibc ≥ 2.28, musl ≥ 1.2.5
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names ``a`` and ``b`` in one atomic step; False where the system cannot."""
    function = _renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False  # the kernel or the file system does not exchange: two renames instead
    raise OSError(code, os.strerror(code), str(b))


def clean_interrupted(parent: str | os.PathLike) -> None:
    """Finish or undo the saves into ``parent`` whose writers were killed, then remove their
    scratch folders (only those of ended processes on this machine; never a live writer's).

    A writer killed between the two renames of the fallback left the folder's name empty, its old
    folder under ``….old`` and its complete new one under ``….saving``: the new one is put in
    place (the old one if the new one is gone). Best effort: a folder that cannot be written to is
    left as it is."""
    writers: dict[tuple[str, str], dict[str, Path]] = {}
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    for entry in entries:
        match = _SCRATCH_RE.match(entry.name)
        if not match or match["host"] != _HOST or not entry.is_dir(follow_symlinks=False):
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or _process_alive(pid):
            continue
        writers.setdefault((match["name"], match["pid"]), {})[match["role"]] = Path(entry.path)
    for (name, _), scratch in sorted(writers.items()):
        target = Path(parent) / name
        with contextlib.suppress(OSError):
            # an .old exists only between the two renames, when .saving is already complete
            if OLD in scratch and not os.path.lexists(target):
                os.rename(scratch.pop(SAVING, None) or scratch.pop(OLD), target)
                fsync_dir(Path(parent))
        for path in scratch.values():
            shutil.rmtree(path, ignore_errors=True)
