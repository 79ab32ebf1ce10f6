"""Active annotation time: an :class:`~napari_emosem.campaign.ActivityClock` per open painting.

Every action of the annotator on the current painting (a brush stroke, a decision, typing, choosing
an emotion, a key) ticks its clock; the time since the previous action counts, unless it is over a
minute (they were away), and goes to the painting and to the emotion that was selected meanwhile.
The session is told after each tick (``set_active_time``), so that whenever it is saved, its
records carry ``annotation_seconds``: what earlier visits stored plus this visit's time.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..annotation import AnnotationSession
from ..campaign import ActivityClock

if TYPE_CHECKING:
    from .controller import AnnotatorController


class ActiveTime:
    """The clocks of one annotator's open paintings; ``clock``: monotonic seconds (tests pass theirs)."""

    def __init__(self, controller: AnnotatorController, clock: Callable[[], float] = time.monotonic):
        self.controller = controller
        self._time = clock
        # a session's clock lives as long as the session (a campaign opens thousands, one at a time)
        self._clocks: weakref.WeakKeyDictionary[AnnotationSession, ActivityClock] = weakref.WeakKeyDictionary()
        self._running: AnnotationSession | None = None
        controller.paintings.events.painting.connect(self._on_painting)
        controller.paintings.events.items.connect(self.tick)
        controller.events.selection.connect(self.tick)

    def clock(self, session: AnnotationSession) -> ActivityClock:
        found = self._clocks.get(session)
        if found is None:
            found = self._clocks[session] = ActivityClock(clock=self._time)
        return found

    def tick(self, *_) -> None:
        """The annotator did something on the current painting."""
        session = self.controller.session
        if session is None:
            return
        clock = self.clock(session)
        clock.activity(self.controller.selected_emotion)
        session.set_active_time(clock.painting_seconds, clock.pairs)

    def _on_painting(self, session: AnnotationSession | None) -> None:
        previous = self._running
        if previous is not None and previous is not session and previous in self._clocks:
            self._clocks[previous].pause()  # the time away from it does not count
        self._running = session
        if session is not None:
            self.tick()
