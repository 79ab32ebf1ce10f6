"""Where a campaign stands, derived from the records each time (never stored twice).

A painting is

* *not started*: no record for any of the campaign's emotions;
* *proposed*: only unreviewed model drafts;
* *in progress*: some of the campaign's (painting, emotion) pairs are reviewed, not all;
* *done*: every emotion of the campaign has a reviewed record (accepted, edited, drawn by hand or
  marked no stimulus — ``Stimulus.reviewed``);
* *skipped*: the annotator skipped it, with a reason (painting metadata ``skipped``), whatever its
  records say.

Counts are of (painting, emotion) pairs of the campaign's emotions; records of other emotions
(and "something else") do not count.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..data import Painting, Stimulus

# painting fields of the format: skipped {"reason", "annotator", "at"}; active annotation time in
# seconds (see .timing), also a record field (Stimulus.annotation_seconds)
from ..data.records import ANNOTATION_SECONDS, SKIPPED
from .settings import CampaignSettings, read_settings


class PaintingStatus(StrEnum):
    NOT_STARTED = "not started"
    PROPOSED = "proposed"
    IN_PROGRESS = "in progress"
    DONE = "done"
    SKIPPED = "skipped"

    @property
    def key(self) -> str:
        """The JSON key (``not_started``)."""
        return self.value.replace(" ", "_")


@dataclass(frozen=True)
class PaintingProgress:
    """One painting's place in the campaign."""

    painting: Painting
    status: PaintingStatus
    #: the campaign's emotions with a reviewed record / with only a draft / marked no stimulus
    reviewed: tuple[str, ...]
    drafts: tuple[str, ...]
    no_stimulus: tuple[str, ...]
    #: active annotation time on this painting (0 when none was recorded)
    seconds: float
    skip_reason: str | None = None

    @property
    def name(self) -> str:
        return self.painting.name

    @property
    def label(self) -> str:
        """"Artist — Title" when known, else the file name (for lists and search)."""
        meta = self.painting.metadata
        known = [str(meta[k]) for k in ("artist", "title") if meta.get(k)]
        return " — ".join(known) if known else self.painting.file_name


def painting_status(
    painting: Painting, records: Iterable[Stimulus], emotions: Sequence[str]
) -> PaintingProgress:
    """The status of one painting from its records (see the module docstring)."""
    wanted = set(emotions)
    reviewed, drafts, no_stimulus = set(), set(), set()
    seconds = 0.0
    for record in records:
        seconds += record.annotation_seconds
        if record.emotion not in wanted:
            continue
        if record.reviewed:
            reviewed.add(record.emotion)
            if record.no_stimulus:
                no_stimulus.add(record.emotion)
        else:
            drafts.add(record.emotion)
    drafts -= reviewed
    # the painting's own clock also counts time spent between pairs; never less than its pairs'
    seconds = max(seconds, _seconds(painting.metadata.get(ANNOTATION_SECONDS)))
    skipped = painting.metadata.get(SKIPPED)
    if skipped:
        status = PaintingStatus.SKIPPED
    elif wanted and reviewed >= wanted:
        status = PaintingStatus.DONE
    elif reviewed:
        status = PaintingStatus.IN_PROGRESS
    elif drafts:
        status = PaintingStatus.PROPOSED
    else:
        status = PaintingStatus.NOT_STARTED
    order = [e for e in emotions]
    return PaintingProgress(
        painting=painting,
        status=status,
        reviewed=tuple(e for e in order if e in reviewed),
        drafts=tuple(e for e in order if e in drafts),
        no_stimulus=tuple(e for e in order if e in no_stimulus),
        seconds=seconds,
        skip_reason=_skip_reason(skipped),
    )


@dataclass
class CampaignProgress:
    """Every painting's progress, in dataset order, and the totals ``emosem status`` prints."""

    emotions: tuple[str, ...]
    paintings: list[PaintingProgress]
    #: annotator -> {"pairs": reviewed pairs, "seconds": active time on them}
    annotators: dict[str, dict[str, float]] = field(default_factory=dict)

    def count(self, status: PaintingStatus) -> int:
        return sum(p.status is status for p in self.paintings)

    @property
    def pairs_total(self) -> int:
        return len(self.paintings) * len(self.emotions)

    @property
    def pairs_reviewed(self) -> int:
        return sum(len(p.reviewed) for p in self.paintings)

    @property
    def median_seconds(self) -> float | None:
        """Median active time of the paintings that are done (None before the first)."""
        times = [p.seconds for p in self.paintings if p.status is PaintingStatus.DONE and p.seconds > 0]
        return statistics.median(times) if times else None

    @property
    def remaining(self) -> int:
        """Paintings still to annotate (neither done nor skipped)."""
        return sum(p.status not in (PaintingStatus.DONE, PaintingStatus.SKIPPED) for p in self.paintings)

    @property
    def eta_seconds(self) -> float | None:
        """Time left at the median pace (None before a painting is done)."""
        median = self.median_seconds
        return None if median is None else median * self.remaining

    def first_open(self) -> PaintingProgress | None:
        """Where to start: the first painting that is neither done nor skipped."""
        return next((p for p in self.paintings if p.status not in (PaintingStatus.DONE, PaintingStatus.SKIPPED)), None)

    def summary_line(self) -> str:
        """``37 of 400 paintings done · 2,212 of 3,200 pairs reviewed``, and the pace when known."""
        line = (
            f"{self.count(PaintingStatus.DONE):,} of {len(self.paintings):,} paintings done · "
            f"{self.pairs_reviewed:,} of {self.pairs_total:,} pairs reviewed"
        )
        median, eta = self.median_seconds, self.eta_seconds
        if median is not None and eta is not None:
            line += f" · median {format_duration(median)} per painting, about {format_duration(eta)} left"
        return line

    def to_json(self) -> dict[str, Any]:
        """The ``emosem status --json`` document."""
        drafts = sum(len(p.drafts) for p in self.paintings)
        median = self.median_seconds
        return {
            "emotions": list(self.emotions),
            "paintings": {"total": len(self.paintings), **{s.key: self.count(s) for s in PaintingStatus}},
            "pairs": {
                "total": self.pairs_total,
                "reviewed": self.pairs_reviewed,
                "unreviewed_drafts": drafts,
                "no_stimulus": sum(len(p.no_stimulus) for p in self.paintings),
            },
            "annotators": {name: dict(v) for name, v in sorted(self.annotators.items())},
            "seconds_per_painting": {"median": None if median is None else round(median, 1)},
            "eta_seconds": None if self.eta_seconds is None else round(self.eta_seconds),
        }


def campaign_progress(dataset, settings: CampaignSettings | None = None) -> CampaignProgress:
    """Every painting's status in ``dataset`` (a :class:`~napari_emosem.data.StimulusDataset`)."""
    settings = settings or read_settings(dataset.root)
    emotions = settings.emotions
    wanted = set(emotions)
    paintings, annotators = [], defaultdict(lambda: {"pairs": 0, "seconds": 0.0})
    for painting in dataset.paintings:
        records = dataset.records(painting)  # every annotator's, so that each is counted
        paintings.append(painting_status(painting, records, emotions))
        for record in records:
            if record.reviewed and record.emotion in wanted:
                row = annotators[record.annotator or "(unnamed)"]
                row["pairs"] += 1
                row["seconds"] = round(row["seconds"] + record.annotation_seconds, 1)
    return CampaignProgress(emotions=emotions, paintings=paintings, annotators=dict(annotators))


def format_duration(seconds: float) -> str:
    """``45 s``, ``3 min``, ``2 h 05 min``."""
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _seconds(value: Any) -> float:
    # a hand-edited file may hold anything here; time is a report, not worth refusing a dataset
    try:
        value = float(value)
    except (TypeError, ValueError):
        return 0.0
    return value if value > 0 and value == value and value != float("inf") else 0.0


def _skip_reason(skipped: Any) -> str | None:
    if not skipped:
        return None
    if isinstance(skipped, dict):
        return str(skipped.get("reason") or "")
    return str(skipped)
