"""The human ceiling: each annotator scored against the consensus of the others, as a model is
scored against the consensus of all. Defined in ``docs/annotators.md`` ("The human ceiling").

Masks: on every pair with two or more votes, each voter's mask (empty for *no stimulus*) is scored
by the APOLO protocol against the majority mask of the other votes
(``PairRecords.consensus_map(without=name) >= 0.5``); a pair where the others' majority mask is
empty gives that voter no score. Every (annotator, pair) score counts once in the means.
Explanations: each annotator's first explanation of a pair is a candidate, every explanation of
the pair's *other* annotators its references; BLEU/METEOR/ROUGE-L/CIDEr over all those candidates
as one set, and per annotator over theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .annotators.consensus import majority_mask
from .metrics import CAPTION_METRICS, apolo_iou, caption_scores, summarise_ious

#: a (painting id, emotion) pair of the ground truth, as :mod:`napari_emosem.evaluate` keys them
PairKey = tuple[int, str]


@dataclass
class HumanCeiling:
    """The ``"human"`` part of the evaluation metrics, and which pairs it scored (so the model can
    be shown on the same pairs)."""

    metrics: dict
    #: pairs where at least one annotator's mask was scored
    mask_pairs: set[PairKey] = field(default_factory=set)
    #: pairs where at least one annotator's explanation was scored
    explanation_pairs: set[PairKey] = field(default_factory=set)


def human_ceiling(pairs, emotions: list[str], *, explanations: bool = True) -> HumanCeiling | None:
    """The ceiling over ``pairs`` (:class:`~napari_emosem.data.records.PairRecords` of the chosen
    ``emotions``); None when no pair has two annotators (a vote each, or an explanation each).
    ``explanations=False`` leaves the caption metrics None (they need Java)."""
    ious: dict[tuple[str, PairKey], float] = {}  # (annotator, pair) -> IoU
    references: dict[tuple[str, PairKey], list[str]] = {}
    candidates: dict[tuple[str, PairKey], str] = {}
    annotators: set[str] = set()
    compared = 0
    for pair in pairs:
        key = (pair.painting.id, pair.emotion)
        votes = pair.votes
        if len(votes) >= 2:
            compared += 1
            for vote in votes:
                name = vote.slot.label
                annotators.add(name)
                truth = majority_mask(pair.consensus_map(without=name))
                if not truth.any():
                    continue  # the others see no stimulus here, or no majority of them does
                drawn = np.zeros(truth.shape, bool) if vote.no_stimulus else vote.mask
                ious[(name, key)] = apolo_iou(drawn.astype(np.float32), truth)
        said = {r.slot.label: [e for e in r.explanations if e.strip()] for r in pair.reviewed}
        said = {name: texts for name, texts in said.items() if texts}
        if len(said) >= 2:
            for name, texts in said.items():
                others: list[str] = []
                for other, their in said.items():
                    others.extend(t for t in their if other != name and t not in others)
                annotators.add(name)
                candidates[(name, key)] = texts[0]
                references[(name, key)] = others
    if not compared and not candidates:
        return None

    names = sorted(annotators)
    segmentation = _scores(summarise_ious(ious.values()))
    segmentation["per_emotion"] = {
        e: _scores(summarise_ious(v for (_, (_, emotion)), v in ious.items() if emotion == e)) for e in emotions
    }
    segmentation["per_annotator"] = {
        a: _scores(summarise_ious(v for (name, _), v in ious.items() if name == a)) for a in names
    }

    explanation: dict = {k: None for k in CAPTION_METRICS} | {"scores": 0}
    explanation["per_annotator"] = {a: {k: None for k in CAPTION_METRICS} | {"scores": 0} for a in names}
    if explanations and candidates:
        scores = caption_scores(references, candidates, groups={k: k[0] for k in candidates})
        explanation.update({k: scores[k] for k in CAPTION_METRICS}, scores=scores["pairs"])
        for name, group in scores["per_group"].items():
            explanation["per_annotator"][name] = {k: group[k] for k in CAPTION_METRICS} | {"scores": group["pairs"]}
    return HumanCeiling(
        metrics={"annotators": names, "pairs": compared, "segmentation": segmentation, "explanation": explanation},
        mask_pairs={k for _, k in ious},
        explanation_pairs={k for _, k in candidates} if explanations else set(),
    )


def _scores(summary: dict) -> dict:
    """:func:`summarise_ious`'s dict with its count named for what it counts here: (annotator,
    pair) scores, not pairs."""
    out = dict(summary)
    out["scores"] = out.pop("pairs")
    return out
