"""Questions about the paintings and records the dataset holds: lookups, pairs, counts.

Answers are read from the document of a :class:`~.reading.LocalCopy` and are copies: changing
them changes nothing until written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..emotions import EMOTIONS, SOMETHING_ELSE, normalise_emotion, parse_emotions
from .reading import LocalCopy
from .records import UNNAMED, Painting, PairRecords, Stimulus, copy_painting, effective_record
from .validate import Document


class RecordQueries:
    """Lookups of paintings (by id, file name or stem) and of their records, pair by pair."""

    def __init__(self, copy: LocalCopy):
        self.copy = copy
        self._index_for: Document | None = None
        self._stems: dict[str, list[Painting]] = {}

    # -- paintings --
    def find(self, key: str | int | Painting) -> Painting | None:
        """The stored painting (not a copy) with this id, file name, or unique stem; else None."""
        if isinstance(key, Painting):
            key = key.id
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            return self.copy.doc.paintings.get(int(key))
        if isinstance(key, str):
            doc = self.copy.doc
            found = doc.index.by_name.get(key)
            if found is None:
                stems = self._stem_index(doc).get(key, [])
                found = stems[0] if len(stems) == 1 else None
            return found
        return None

    def _stem_index(self, doc: Document) -> dict[str, list[Painting]]:
        # rebuilt whenever the document object changes (every read or write replaces it)
        if self._index_for is not doc:
            stems: dict[str, list[Painting]] = {}
            for p in doc.paintings.values():
                stems.setdefault(p.name, []).append(p)
            self._stems, self._index_for = stems, doc
        return self._stems

    def by_emotion(self, painting: Painting) -> dict[str, list[Stimulus]]:
        """The painting's stored records by emotion (emotions in order of first appearance)."""
        out: dict[str, list[Stimulus]] = {}
        for r in self.copy.doc.records.get(painting.id, []):
            out.setdefault(r.stimulus.emotion, []).append(r.stimulus)
        return out

    # -- records --
    def stimuli(self, p: Painting) -> list[Stimulus]:
        return [effective_record(rs).copy() for rs in self.by_emotion(p).values()]

    def records(self, p: Painting, emotion: str | None) -> list[Stimulus]:
        wanted = None if emotion is None else normalise_emotion(emotion)
        return [
            r.stimulus.copy()
            for r in self.copy.doc.records.get(p.id, [])
            if wanted is None or r.stimulus.emotion == wanted
        ]

    def pair(self, p: Painting, emotion: str) -> PairRecords | None:
        records = self.by_emotion(p).get(normalise_emotion(emotion))
        return None if not records else PairRecords(copy_painting(p), records[0].emotion, [r.copy() for r in records])

    def every_pair(self, emotions: str | Iterable[str] | None, include_something_else: bool) -> list[PairRecords]:
        chosen = _chosen(emotions, include_something_else)
        out = []
        for p in self.copy.doc.paintings.values():
            painting = None
            for emotion, records in self.by_emotion(p).items():
                if emotion in chosen:
                    painting = painting or copy_painting(p)
                    out.append(PairRecords(painting, emotion, [r.copy() for r in records]))
        return out

    def pairs(
        self, emotions: str | Iterable[str] | None, with_masks_only: bool, include_something_else: bool
    ) -> list[tuple[Painting, Stimulus]]:
        chosen = _chosen(emotions, include_something_else)
        out = []
        for p in self.copy.doc.paintings.values():
            painting = None
            for emotion, records in self.by_emotion(p).items():
                s = effective_record(records)
                if emotion not in chosen or (with_masks_only and not s.has_mask):
                    continue
                painting = painting or copy_painting(p)
                out.append((painting, s.copy()))
        return out

    def annotators(self) -> list[str]:
        names = {
            r.stimulus.annotator if r.stimulus.annotator is not None else UNNAMED
            for records in self.copy.doc.records.values()
            for r in records
            if r.stimulus.reviewed
        }
        return sorted(names)

    # -- counts --
    def summary(self) -> dict[str, Any]:
        """Counts of pairs by their effective record (see :meth:`.StimulusDataset.summary`),
        without the dataset's root."""
        per_emotion = {e: {"pairs": 0, "with_mask": 0, "no_stimulus": 0, "explained": 0} for e in EMOTIONS}
        sources: Counter[str] = Counter()
        totals = Counter()
        for p in self.copy.doc.paintings.values():
            for records in self.by_emotion(p).values():
                totals["records"] += len(records)
                s = effective_record(records)
                sources[s.source] += 1
                totals["edited"] += s.edited
                if s.emotion == SOMETHING_ELSE:
                    totals["something_else"] += 1
                    continue
                row = per_emotion[s.emotion]
                row["pairs"] += 1
                row["with_mask"] += s.has_mask and not s.no_stimulus
                row["no_stimulus"] += s.no_stimulus
                row["explained"] += bool(s.explanations)
        return {
            "paintings": len(self.copy.doc.paintings),
            "pairs": sum(r["pairs"] for r in per_emotion.values()),
            "with_mask": sum(r["with_mask"] for r in per_emotion.values()),
            "no_stimulus": sum(r["no_stimulus"] for r in per_emotion.values()),
            "text_only": sum(r["pairs"] - r["with_mask"] - r["no_stimulus"] for r in per_emotion.values()),
            "explained": sum(r["explained"] for r in per_emotion.values()),
            "something_else": totals["something_else"],
            "edited": totals["edited"],
            "records": totals["records"],
            "annotators": self.annotators(),
            "sources": dict(sorted(sources.items())),
            "per_emotion": per_emotion,
        }


def _chosen(emotions: str | Iterable[str] | None, include_something_else: bool) -> set[str]:
    """The emotions asked for (default: all eight), with "something else" when asked."""
    chosen = set(parse_emotions(emotions))
    if include_something_else:
        chosen.add(SOMETHING_ELSE)
    return chosen
