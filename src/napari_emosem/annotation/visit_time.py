"""The active time of one visit to a painting, which an export adds to what earlier visits stored.

The plugin's ``ActivityClock`` measures it and tells the session after each tick; the records keep
each pair's time, the painting's metadata the painting's. Telling the time is not a change of the
annotation: only what an export has not written yet counts as unsaved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..emotions import normalise_emotion
from . import dataset as _dataset
from .records import as_seconds


@dataclass
class VisitTime:
    """This visit's active seconds: the painting's, and per emotion; and how much is exported."""

    painting: float = 0.0
    pairs: dict[str, float] = field(default_factory=dict)
    exported: float = 0.0

    def set(self, painting_seconds: float, pair_seconds: dict[str, float]) -> None:
        """The visit's time so far (not added: the clock counts from the visit's start)."""
        self.painting = float(painting_seconds)
        self.pairs = {normalise_emotion(e): float(s) for e, s in pair_seconds.items()}

    @property
    def unsaved(self) -> float:
        return self.painting - self.exported

    def saved(self) -> None:
        """An export wrote the visit's time so far."""
        self.exported = self.painting

    def painting_metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """``metadata`` with the painting's active time: earlier visits' and this one's."""
        metadata = dict(metadata)
        total = round(as_seconds(metadata.get(_dataset.ANNOTATION_SECONDS)) + self.painting, 1)
        if total > 0:
            metadata[_dataset.ANNOTATION_SECONDS] = total
        return metadata
