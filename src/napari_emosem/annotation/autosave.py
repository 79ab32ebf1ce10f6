"""Autosave: unexported work of one painting in one file, so that a crash loses at most seconds.

One ``<image digest>.npz`` per painting in :func:`napari_emosem.paths.autosave_dir`, written
atomically: a JSON ``state`` (the session's fields and every annotation but its mask) and one
bit-packed mask per emotion. Significant actions (proposals, decisions, refinements, export) save
at once; brush strokes and typing wait for the interval (:class:`AutosaveSchedule`). Exporting
removes the file: an autosave exists exactly when there is unexported work.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import paths
from .._io import atomic_write_bytes
from ..data.records import now_iso
from ..errors import EmoSEMError
from ..image_io import image_digest, to_rgb_uint8
from .records import EmotionAnnotation

if TYPE_CHECKING:
    from .session import AnnotationSession

#: Autosave file format version.
AUTOSAVE_FORMAT = 1


@dataclass(frozen=True)
class AutosaveInfo:
    """What an autosave holds, for the "restore unexported work?" question."""

    path: Path
    saved_at: str
    file_name: str | None
    emotions: tuple[str, ...]


class AutosaveSchedule:
    """Where a session autosaves, and whether a save is due now.

    ``directory``: a folder, None/True for :func:`napari_emosem.paths.autosave_dir`, False for no
    autosaving. ``interval``: minimum seconds between saves of minor edits. ``clock``: monotonic
    seconds (tests pass their own).
    """

    def __init__(
        self,
        directory: str | Path | bool | None = None,
        interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.directory = directory
        self.interval = float(interval)
        self._clock = clock
        self._last = clock()
        self.saved_revision = 0

    def path(self, digest: str) -> Path | None:
        if self.directory is False:
            return None
        return autosave_file(digest, None if self.directory is True else self.directory)

    def due(self, revision: int, *, force: bool) -> bool:
        if revision == self.saved_revision:
            return False
        return force or self._clock() - self._last >= self.interval

    def saved(self, revision: int) -> None:
        self.saved_revision = revision
        self._last = self._clock()

    def save(self, session: AnnotationSession, *, force: bool) -> Path | None:
        """Write ``session``'s unexported work if a save is due (or ``force``): the file, or None."""
        path = self.path(session.digest)
        if path is None or not session.dirty or not self.due(session.revision, force=force):
            return None
        write_autosave(path, session)
        self.saved(session.revision)
        return path

    def discard(self, session: AnnotationSession) -> None:
        """Delete ``session``'s autosave, if any: what it holds now needs no autosave."""
        path = self.path(session.digest)
        if path is not None:
            path.unlink(missing_ok=True)
        self.saved_revision = session.revision


def autosave_file(image_or_digest: np.ndarray | str, autosave_dir: str | Path | None = None) -> Path:
    """The autosave file of a painting (given as pixels or digest)."""
    if isinstance(image_or_digest, str):
        digest = image_or_digest
    else:
        digest = image_digest(to_rgb_uint8(image_or_digest))
    if autosave_dir is None:
        autosave_dir = paths.autosave_dir()
    return Path(autosave_dir) / f"{digest}.npz"


def write_autosave(path: Path, session: AnnotationSession) -> None:
    """Write the session's fields and annotations (1 bit per mask pixel) to ``path``."""
    items = list(session.items.values())
    state = {
        "format": AUTOSAVE_FORMAT,
        "digest": session.digest,
        "shape": list(session.shape),
        "file_name": session.file_name,
        "source_path": str(session.source_path) if session.source_path else None,
        "annotator": session.annotator,
        "metadata": session.metadata,
        "exported_to": str(session.exported_to) if session.exported_to else None,
        "passthrough": list(session.passthrough),
        "saved_at": now_iso(),
        "items": [item.to_state() for item in items],
    }
    arrays = {"state": np.frombuffer(json.dumps(state).encode("utf-8"), np.uint8)}
    for item in items:
        if item.mask.any():
            # 1 bit per pixel: fast to write even for very large paintings
            arrays[f"mask:{item.emotion}"] = np.packbits(item.mask.reshape(-1))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def read_autosave(path: Path, shape: tuple[int, int] | None = None) -> tuple[dict[str, Any], list[EmotionAnnotation]]:
    """The state and annotations of an autosave; masks only when ``shape`` is given."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        state = json.loads(arrays.pop("state").tobytes().decode("utf-8"))
    except Exception as exc:  # any corruption: zip, npy header, JSON
        raise EmoSEMError(
            f"{path}: the autosave cannot be read ({type(exc).__name__}: {exc}); delete it to start afresh"
        ) from None
    if state.get("format") != AUTOSAVE_FORMAT:
        raise EmoSEMError(f"{path}: autosave format {state.get('format')!r} is not supported; delete it")
    if shape is None:
        return state, []
    if tuple(state.get("shape", ())) != tuple(shape):
        raise EmoSEMError(f"{path}: this autosave is for a painting of another size; discard it")
    n = shape[0] * shape[1]
    items = []
    for item_state in state.get("items", []):
        key = f"mask:{item_state.get('emotion')}"
        if key in arrays:
            mask = np.unpackbits(arrays[key], count=n).astype(bool).reshape(shape)
        else:
            mask = np.zeros(shape, bool)
        items.append(EmotionAnnotation.from_state(item_state, mask))
    return state, items


def read_session(
    rgb: np.ndarray, autosave_dir: str | Path | None, kwargs: dict[str, Any]
) -> tuple[list[EmotionAnnotation], dict[str, Any]] | None:
    """The annotations autosaved for the painting ``rgb`` and the session's keyword arguments
    (``kwargs`` win where given, but the autosave's records and dataset); None without an autosave."""
    path = autosave_file(rgb, autosave_dir)
    if not path.exists():
        return None
    state, items = read_autosave(path, rgb.shape[:2])
    kwargs = dict(kwargs)
    for key in ("file_name", "source_path", "annotator", "metadata"):
        kwargs.setdefault(key, state.get(key))
    kwargs["passthrough"] = state.get("passthrough") or kwargs.get("passthrough") or ()
    kwargs["exported_to"] = state.get("exported_to") or kwargs.get("exported_to")
    return items, kwargs


def autosave_info(image_or_digest: np.ndarray | str, autosave_dir: str | Path | None = None) -> AutosaveInfo | None:
    """Describe the autosave of a painting (given as pixels or digest), or None if there is none."""
    path = autosave_file(image_or_digest, autosave_dir)
    if not path.exists():
        return None
    state, _ = read_autosave(path)
    return AutosaveInfo(
        path=path,
        saved_at=state.get("saved_at", "?"),
        file_name=state.get("file_name"),
        emotions=tuple(i["emotion"] for i in state.get("items", [])),
    )
