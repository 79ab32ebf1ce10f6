"""The annotator's autosaves: saved on a timer, offered back when a painting opens, restored or
discarded on request.

:class:`Autosaving` (the controller's ``autosaves``) drives what
:class:`~napari_emosem.annotation.AnnotationSession` and
:class:`~napari_emosem._qt.paintings.Paintings` know how to do: every few seconds it lets each
session with unexported edits save (each at most every ``autosave_seconds``); the autosave of a
painting just shown is offered on the controller's ``events.autosave_offer``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtCore import QTimer

from ..annotation import AnnotationSession
from ..errors import EmoSEMError
from .paintings import describe

if TYPE_CHECKING:
    from .controller import AnnotatorController

#: how often the autosave timer looks for unsaved edits (each session saves at most every
#: ``autosave_seconds``)
AUTOSAVE_TICK_MS = 5000


class Autosaving:
    """The autosave timer and the offer of a painting's autosave; see the module docstring."""

    def __init__(self, controller: AnnotatorController):
        self.controller = controller
        self.timer = QTimer()
        self.timer.setInterval(AUTOSAVE_TICK_MS)
        self.timer.timeout.connect(self.save_all)

    def offer(self) -> None:
        """Offer the current painting's autosave, if it has one (called when a painting is shown)."""
        controller = self.controller
        try:
            controller.events.autosave_offer.emit(controller.paintings.autosave_offer())
        except EmoSEMError as exc:
            controller.error(str(exc))

    def restore(self) -> AnnotationSession | None:
        """Replace the current painting's annotation by its autosave."""
        controller = self.controller
        if controller.session is None:
            return None
        try:
            restored = controller.paintings.restore()
        except EmoSEMError as exc:
            controller.error(str(exc))
            return None
        controller.events.autosave_offer.emit(None)
        if restored is None:
            controller.status("there is no autosave for this painting any more")
            return None
        controller.status(f"restored the autosave: {describe(restored)}")
        return restored

    def discard(self) -> None:
        """Delete the current painting's autosave (keeps what is on screen)."""
        controller = self.controller
        if controller.session is not None:
            controller.session.discard_autosave()
        controller.events.autosave_offer.emit(None)
        controller.status("autosave discarded")

    def save_all(self, *, force: bool = False) -> None:
        """Autosave every painting with unexported edits (the timer calls this)."""
        for problem in self.controller.paintings.autosave_all(force=force):
            self.controller.error(problem)
