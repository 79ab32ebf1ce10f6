"""Refine with clicks: inside/outside clicks on the painting re-draw the selected emotion's mask.

The clicks layer (:class:`~napari_emosem._qt.clicks.ClicksLayer`) shows the selected emotion's
clicks; each emotion keeps its own in the session. A burst of clicks makes one refinement: the
model re-decodes the mask ``REFINE_DELAY_MS`` after the last click.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import QTimer

if TYPE_CHECKING:
    from .controller import AnnotatorController

#: clicks are collected for this long before a refinement starts (several quick clicks, one decode)
REFINE_DELAY_MS = 150


class ClickRefinement:
    """The click mode of one annotator: on or off, the clicks shown, the refinement they start."""

    def __init__(self, controller: AnnotatorController):
        self.controller = controller
        self.layer = controller.binder.clicks
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(REFINE_DELAY_MS)
        self._timer.timeout.connect(self._refine)
        self._showing: str | None = None
        #: clicks on the painting refine the selected emotion's mask
        self.active = False
        self.layer.events.changed.connect(self._on_clicked)
        self.layer.events.removed.connect(self._on_removed)
        controller.events.selection.connect(self._on_selection)

    def _on_removed(self) -> None:
        self.active = False
        self.controller.events.clicking.emit(False)

    def start(self) -> bool:
        """Clicks on the painting refine the selected emotion's mask; False (and why) if they cannot."""
        controller = self.controller
        emotion = controller.selected_emotion
        if controller.session is None or emotion is None:
            controller.error("select an emotion first: clicks refine the selected emotion's mask")
            controller.events.clicking.emit(False)
            return False
        self._ensure_layer()
        self.show(emotion)
        with controller.binder.quiet():
            self.layer.start()
        self.active = True
        controller.status(f"click on the {emotion} stimulus (green: inside) or around it (red: outside)")
        controller.events.clicking.emit(True)
        return True

    def stop(self) -> None:
        self.active = False
        self.layer.stop()
        if self.controller.selected_emotion is not None:
            self.controller.binder.activate(self.controller.selected_emotion)
        self.controller.events.clicking.emit(False)

    def add(self, row: float, col: float, *, inside: bool = True) -> None:
        """Add a click at painting pixel (row, col), as a click on the canvas would."""
        self.layer.set_inside(inside)
        self._ensure_layer()
        self.layer.add(row, col)

    def clear(self) -> None:
        """Remove the selected emotion's clicks (the mask stays as it is)."""
        session, emotion = self.controller.session, self.controller.selected_emotion
        if session is not None and emotion in session:
            session.set_clicks(emotion, np.zeros((0, 2)), np.zeros((0,), np.int64))
        self.show(emotion)

    def clicks(self, emotion: str) -> tuple[np.ndarray, np.ndarray]:
        """The clicks to refine ``emotion`` with: those shown, else those the session kept."""
        session = self.controller.session
        item = session.get(emotion) if session is not None else None
        if item is not None and self.layer.layer is None:
            return item.clicks, item.click_labels
        return self.layer.clicks()

    def show(self, emotion: str | None) -> None:
        """Show ``emotion``'s clicks (without refining)."""
        session = self.controller.session
        item = session.get(emotion) if (session is not None and emotion) else None
        if item is None:
            self.layer.show(np.zeros((0, 2)), np.zeros((0,), np.int64))
        else:
            self.layer.show(item.clicks, item.click_labels)
        self._showing = emotion

    def stop_timer(self) -> None:
        self._timer.stop()

    def _ensure_layer(self):
        session = self.controller.session
        size = max(6, int(0.012 * max(session.shape))) if session is not None else 10
        return self.layer.ensure(size=size, image_layer=self.controller.paintings.image_layer)

    def _on_selection(self, emotion: str | None) -> None:
        if emotion != self._showing:
            self.show(emotion)

    def _on_clicked(self, points: np.ndarray, labels: np.ndarray) -> None:
        session, emotion = self.controller.session, self.controller.selected_emotion
        if session is None or emotion is None:
            return
        if emotion in session:
            session.set_clicks(emotion, points, labels)
        if len(points):
            self._timer.start()

    def _refine(self) -> None:
        if self.controller.selected_emotion is not None and self.controller.session is not None:
            self.controller.refine(self.controller.selected_emotion)

    def refine_soon(self) -> None:
        """Refine once the running job has finished (its clicks are kept meanwhile)."""
        self._timer.start()
