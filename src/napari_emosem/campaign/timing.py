"""Active annotation time, as CVAT and Label Studio report it: what a painting and each of its
(painting, emotion) pairs cost a person.

The time between two of the annotator's actions counts, unless it is longer than ``idle_after``
(a minute: they were away, or thinking about something else); it goes to the painting and to the
pair that was selected while it passed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: gaps between actions longer than this are not annotation time
IDLE_AFTER_SECONDS = 60.0


class ActivityClock:
    """Counts one painting's active time; call :meth:`activity` on every action of the annotator."""

    def __init__(self, *, idle_after: float = IDLE_AFTER_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.idle_after = float(idle_after)
        self._clock = clock
        self._last: float | None = None
        self._pair: str | None = None
        self.painting_seconds = 0.0
        self._pairs: dict[str, float] = {}

    def activity(self, pair: str | None = None) -> None:
        """The annotator did something (on ``pair``, when given: it becomes the selected pair)."""
        now = self._clock()
        if self._last is not None:
            gap = now - self._last
            if 0 < gap <= self.idle_after:
                self.painting_seconds += gap
                if self._pair is not None:
                    self._pairs[self._pair] = self._pairs.get(self._pair, 0.0) + gap
        self._last = now
        if pair is not None:
            self._pair = pair

    def pause(self) -> None:
        """The painting was left: time until the next action does not count."""
        self._last = None

    def pair_seconds(self, pair: str) -> float:
        return self._pairs.get(pair, 0.0)

    @property
    def pairs(self) -> dict[str, float]:
        return dict(self._pairs)
