"""Agreement between annotators on (painting, emotion) pairs: ``mask_iou`` (mean, per emotion,
per annotator pair) and ``presence`` (percent, Krippendorff's alpha), over the pairs with at least
two votes. The definitions are in ``docs/annotators.md`` (one place); :func:`agreement` computes
exactly those.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..metrics import foreground_iou


@dataclass(frozen=True)
class Vote:
    """One annotator's decision on one pair: a mask, or *no stimulus* (``mask`` None or empty)."""

    annotator: str
    mask: np.ndarray | None

    @property
    def present(self) -> bool:
        return self.mask is not None and bool(np.any(self.mask))


@dataclass(frozen=True)
class PairVotes:
    """Every annotator's vote on one (painting, emotion) pair."""

    painting: str
    emotion: str
    votes: Sequence[Vote]


@dataclass
class AgreementReport:
    annotators: list[str]
    pairs_compared: int
    mask_iou_mean: float | None
    mask_iou_per_emotion: dict[str, float]
    mask_iou_per_annotator_pair: dict[str, float]
    presence_percent: float | None
    presence_alpha: float | None
    #: annotator pairs compared, for the report's reader
    annotator_pairs_compared: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The ``emosem agreement --json`` document."""
        return {
            "annotators": list(self.annotators),
            "pairs_compared": self.pairs_compared,
            "mask_iou": {
                "mean": _round(self.mask_iou_mean),
                "per_emotion": {k: _round(v) for k, v in self.mask_iou_per_emotion.items()},
                "per_annotator_pair": {k: _round(v) for k, v in self.mask_iou_per_annotator_pair.items()},
            },
            "presence": {"percent": _round(self.presence_percent, 2), "alpha": _round(self.presence_alpha)},
        }


def agreement(pairs: Iterable[PairVotes]) -> AgreementReport:
    """Agreement over ``pairs`` (those with fewer than two votes are ignored); see the module."""
    annotators: set[str] = set()
    compared = 0
    pair_means: list[float] = []
    by_emotion: dict[str, list[float]] = defaultdict(list)
    by_annotators: dict[str, list[float]] = defaultdict(list)
    presence_agree = presence_total = 0
    # reliability data for alpha: one column per pair, one row per annotator (NaN = not coded)
    columns: list[dict[str, float]] = []
    for pair in pairs:
        votes = _one_vote_each(pair.votes)
        if len(votes) < 2:
            continue
        compared += 1
        annotators.update(v.annotator for v in votes)
        columns.append({v.annotator: float(v.present) for v in votes})
        ious = []
        for a, b in itertools.combinations(sorted(votes, key=lambda v: v.annotator), 2):
            presence_total += 1
            presence_agree += a.present == b.present
            if a.present and b.present:
                iou = foreground_iou(a.mask, b.mask)
                ious.append(iou)
                by_annotators[f"{a.annotator}|{b.annotator}"].append(iou)
        if ious:
            mean = float(np.mean(ious))
            pair_means.append(mean)
            by_emotion[pair.emotion].append(mean)
    names = sorted(annotators)
    return AgreementReport(
        annotators=names,
        pairs_compared=compared,
        mask_iou_mean=float(np.mean(pair_means)) if pair_means else None,
        mask_iou_per_emotion={e: float(np.mean(v)) for e, v in sorted(by_emotion.items())},
        mask_iou_per_annotator_pair={k: float(np.mean(v)) for k, v in sorted(by_annotators.items())},
        presence_percent=100.0 * presence_agree / presence_total if presence_total else None,
        presence_alpha=_nominal_alpha(names, columns),
        annotator_pairs_compared=presence_total,
    )


def _one_vote_each(votes: Sequence[Vote]) -> list[Vote]:
    seen: dict[str, Vote] = {}
    for vote in votes:
        seen[vote.annotator] = vote  # one vote per annotator and pair: the data layer keeps one
    return list(seen.values())


def _nominal_alpha(names: list[str], columns: list[dict[str, float]]) -> float | None:
    if not columns:
        return None
    data = np.full((len(names), len(columns)), np.nan)
    row = {name: i for i, name in enumerate(names)}
    for j, column in enumerate(columns):
        for name, value in column.items():
            data[row[name], j] = value
    values = data[~np.isnan(data)]
    if np.unique(values).size < 2:
        return None  # everyone gave the same answer everywhere: alpha is 0/0, undefined
    import krippendorff

    return float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)
