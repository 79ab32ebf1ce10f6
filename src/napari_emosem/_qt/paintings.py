"""The paintings open in the viewer, each with its :class:`AnnotationSession`, and the current one.

A session is made when a painting (an Image layer) is first chosen, from what the layer's metadata
says about it (:func:`napari_emosem._layers.painting_info`), and lives as long as the layer. Only
the current painting's layers are bound (:class:`~napari_emosem._qt.binder.LayerBinder`); the
others keep their sessions, and their unexported work is autosaved when they go.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from napari.layers import Image
from psygnal import Signal, SignalGroup

from .._layers import painting_info
from ..annotation import AnnotationSession, AutosaveInfo, Status
from ..errors import EmoSEMError
from ..image_io import to_rgb_uint8
from .binder import LayerBinder
from .settings import Settings


class PaintingsEvents(SignalGroup):
    #: the current session changed (another painting, a restored autosave); None: no painting
    painting = Signal(object)
    #: the viewer's Image layers changed (added, removed, renamed)
    paintings = Signal()
    #: the current session's annotations of these emotions changed
    items = Signal(tuple)
    #: the current session was exported (an ``ExportResult``)
    exported = Signal(object)


class Paintings:
    """Sessions by Image layer; switching the current painting binds its layers."""

    def __init__(self, viewer, binder: LayerBinder, settings: Settings):
        self.viewer = viewer
        self.binder = binder
        self.settings = settings
        self.events = PaintingsEvents()
        #: id(Image layer) -> (layer, session): layers are not hashable by value
        self._sessions: dict[int, tuple[object, AnnotationSession]] = {}
        self.image_layer = None

    @property
    def session(self) -> AnnotationSession | None:
        """The annotation of the current painting."""
        entry = self._sessions.get(id(self.image_layer)) if self.image_layer is not None else None
        return entry[1] if entry else None

    def image_layers(self) -> list:
        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def sessions(self) -> list[tuple[object, AnnotationSession]]:
        return list(self._sessions.values())

    def switch(self, layer) -> AnnotationSession | None:
        """Make Image ``layer`` the current painting (None: none). A layer that is no painting
        (e.g. a 3-D stack) raises EmoSEMError and leaves no painting current."""
        self.image_layer = layer
        session = None
        if layer is not None:
            if id(layer) not in self._sessions:
                try:
                    self._add(layer, self._new_session(layer))
                except EmoSEMError:
                    self.image_layer = None
                    self.binder.attach(None, None)
                    self.events.painting.emit(None)
                    raise
            session = self.session
        self.binder.attach(layer, session)
        self.events.painting.emit(session)
        return session

    def put(self, layer, session: AnnotationSession) -> None:
        """``session`` is the annotation of Image ``layer`` from now on: a campaign shows its
        paintings one after the other in one layer. When ``layer`` is the current painting's, its
        stimulus layers carry over to the new painting; otherwise the session waits for the layer
        to be chosen (or added to the viewer)."""
        entry = self._sessions.get(id(layer))
        if entry is not None and entry[1] is not session:
            entry[1].autosave(force=True)  # its unexported work stays restorable
        self._add(layer, session)
        if layer is self.image_layer:
            self.binder.repaint(session)
            self.events.painting.emit(session)

    def _add(self, layer, session: AnnotationSession) -> None:
        self._sessions[id(layer)] = (layer, session)
        session.events.changed.connect(lambda emotions: self._tell(session, self.events.items, emotions))
        session.events.exported.connect(lambda result: self._tell(session, self.events.exported, result))

    def _tell(self, session: AnnotationSession, signal, value) -> None:
        if session is self.session:
            signal.emit(value)

    def _new_session(self, layer) -> AnnotationSession:
        data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
        rgb = to_rgb_uint8(np.asarray(data), layer.name)
        info = painting_info(layer.metadata)
        source_path = info.source_path or getattr(getattr(layer, "source", None), "path", None)
        file_name = info.file_name
        if not file_name:
            file_name = Path(source_path).name if source_path else f"{_safe_name(layer.name)}.png"
        return AnnotationSession(
            rgb,
            file_name=file_name,
            source_path=source_path,
            annotator=(self.settings.annotator or None),
            metadata=info.metadata or None,
            passthrough=info.passthrough,
            exported_to=info.dataset,
            autosave_interval=self.settings.autosave_seconds,
        )

    def drop(self, layer) -> None:
        """Image ``layer`` left the viewer: its session goes (unexported work stays restorable)."""
        entry = self._sessions.pop(id(layer), None)
        if entry is not None:
            entry[1].autosave(force=True)
        if layer is self.image_layer:
            self.image_layer = None
            self.events.painting.emit(None)

    def is_open(self, layer, session: AnnotationSession) -> bool:
        """Is ``session`` still the session of ``layer``, and ``layer`` still in the viewer?"""
        entry = self._sessions.get(id(layer))
        return layer in self.viewer.layers and entry is not None and entry[1] is session

    # Autosave -----------------------------------------------------------------------------------

    def autosave_offer(self) -> AutosaveInfo | None:
        """The current painting's autosave, when there is one to offer (its work is not on screen)."""
        session = self.session
        if session is None or session.dirty:
            return None
        return AnnotationSession.autosave_info(session.digest)

    def restore(self) -> AnnotationSession | None:
        """Replace the current painting's session by its autosave (None if there is none any more)."""
        layer, old = self.image_layer, self.session
        if old is None:
            return None
        restored = AnnotationSession.restore(
            old.image,
            annotator=old.annotator,
            autosave_interval=old.autosave_interval,
            passthrough=old.passthrough,
            exported_to=old.exported_to,
        )
        if restored is None:
            return None
        self._add(layer, restored)
        self.binder.replace(restored)
        self.events.painting.emit(restored)
        return restored

    def autosave_all(self, *, force: bool = False) -> list[str]:
        """Autosave every painting with unexported edits; returns what failed."""
        self.binder.flush()
        problems = []
        for _, session in self.sessions():
            try:
                session.autosave(force=force)
            except (OSError, EmoSEMError) as exc:
                problems.append(f"autosave failed: {exc}")
        return problems

    def unexported(self) -> list[AnnotationSession]:
        """Sessions with edits that are not in a dataset yet."""
        self.binder.flush()
        return [session for _, session in self.sessions() if session.dirty]


def _safe_name(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.strip())
    return keep.strip("-.") or "painting"


def describe(session: AnnotationSession) -> str:
    """One line for the status bar: what is annotated, by whom, what needs review."""
    if not session.items:
        return "nothing annotated yet"
    by_model: dict[str, list[str]] = {}
    for item in session.items.values():
        who = item.model or item.source if item.from_model else "you"
        by_model.setdefault(who, []).append(item.emotion)
    line = "; ".join(f"{', '.join(es)} by {who}" for who, es in by_model.items())
    todo = [item for item in session.items.values() if item.status == Status.PROPOSED]
    if todo:
        line += f" — {len(todo)} to review"
    if session.dirty:
        line += " — not exported"
    return line
