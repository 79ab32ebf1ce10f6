"""Compare predictions with a ground-truth stimulus dataset.

One core, :func:`evaluate_report`, takes the ground truth and an iterable (or dict) of
:class:`PairPrediction`; two sources feed it:

- :func:`predictions_from_dataset`: another dataset of the same paintings (a model's saved
  proposals, or a second annotator: then the numbers measure agreement);
- :func:`predictions_from_predictor`: a live :class:`~napari_emosem.predictor.Predictor`, whose
  soft ``probability`` maps are what the APOLO protocol normalises.

The result is shaped like the JSON ``emosem evaluate`` writes::

    {"segmentation": {"miou", "acc_25", "acc_50", "pairs", "per_emotion": {e: {same keys}}},
     "explanation": {"bleu_1", ..., "bleu_4", "meteor", "rouge_l", "cider",
                     "per_emotion": {e: {same keys}}}}

Values are fractions in [0, 1] (CIDEr can exceed 1); None where there was nothing to measure.

Which pairs count: segmentation uses every ground-truth pair of the chosen emotions whose truth
mask is not empty (empty masks and ``no_stimulus`` records are skipped, as APOLO does); a pair the
predictions do not cover scores IoU 0. Explanations use every ground-truth pair with at least one
explanation, against the predicted explanation of that pair; pairs without a predicted
explanation are left out (their count is reported), since captioning metrics have no "empty
candidate" score.

With several annotators (``docs/annotators.md``): a pair's truth mask is the majority mask of its
target (the adjudicated mask, else the consensus of the votes: pixels marked by at least half the
annotators; one annotator's mask when there is one), else the pair's effective record's mask (a
draft, as for one annotator); its references are every person's explanation. When some pair has
two or more annotators the metrics gain ``"human"``: the human ceiling
(:mod:`napari_emosem.human_ceiling`) and, under ``"model"``, the model on the pairs the ceiling
scored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from .annotators.consensus import majority_mask
from .data import Painting, StimulusDataset
from .data.records import PairRecords
from .emotions import EMOTIONS, parse_emotions
from .human_ceiling import human_ceiling
from .metrics import CAPTION_METRICS, apolo_iou, caption_scores, summarise_ious


@dataclass
class PairPrediction:
    """A prediction for one (painting, emotion) pair of the ground truth."""

    #: the ground-truth painting's file name (or its name, the file stem)
    painting: str
    emotion: str
    #: soft map (any size; min-max normalised by the protocol) — preferred when present
    probability: np.ndarray | None = None
    #: bool mask, used when there is no probability map
    mask: np.ndarray | None = None
    explanation: str = ""


@dataclass
class EvaluationReport:
    """The metrics dict plus what a reader of the numbers should know."""

    metrics: dict
    #: "painting/emotion" of ground-truth masks no prediction covered (scored IoU 0)
    missing_masks: list[str] = field(default_factory=list)
    #: ground-truth pairs with explanations but no predicted explanation (left out)
    missing_explanations: int = 0
    #: ground-truth records with an empty mask (skipped by the protocol)
    skipped_empty: int = 0
    #: predictions for pairs the ground truth does not have (ignored)
    unmatched_predictions: int = 0
    #: explanation pairs scored, overall and per emotion
    explanation_pairs: dict[str, int] = field(default_factory=dict)


def evaluate(
    ground_truth: StimulusDataset,
    predictions: Iterable[PairPrediction] | Mapping[tuple[str, str], PairPrediction],
    *,
    emotions=None,
    explanations: bool = True,
) -> dict:
    """The metrics dict of :func:`evaluate_report`."""
    return evaluate_report(ground_truth, predictions, emotions=emotions, explanations=explanations).metrics


def evaluate_report(
    ground_truth: StimulusDataset,
    predictions: Iterable[PairPrediction] | Mapping[tuple[str, str], PairPrediction],
    *,
    emotions=None,
    explanations: bool = True,
) -> EvaluationReport:
    """Score ``predictions`` against ``ground_truth`` (see the module docstring for the rules).

    ``predictions`` is consumed once, pair by pair (masks are scored on arrival and dropped, so a
    generator over thousands of paintings runs in constant memory). ``explanations=False`` skips
    the captioning metrics (which need Java); their values are then None.
    """
    chosen = parse_emotions(emotions)
    pairs = ground_truth.every_pair(chosen)
    seg_truth, references, skipped_empty = _truths(pairs)
    items = predictions.values() if isinstance(predictions, Mapping) else predictions
    ious, candidates, unmatched = _score_predictions(ground_truth, items, set(chosen), seg_truth, references)
    missing = [name for key, name in seg_truth.items() if key not in ious]
    for key in seg_truth:
        ious.setdefault(key, 0.0)

    segmentation = summarise_ious(ious.values())
    segmentation["per_emotion"] = {
        e: summarise_ious(v for k, v in ious.items() if k[1] == e) for e in chosen
    }
    scores = caption_scores(references, candidates, groups={k: k[1] for k in candidates}) if (
        explanations and candidates
    ) else None
    explanation, pair_counts = _explanation_metrics(scores, chosen)
    metrics = {"segmentation": segmentation, "explanation": explanation}
    ceiling = human_ceiling(pairs, chosen, explanations=explanations)
    if ceiling is not None:
        metrics["human"] = ceiling.metrics
        metrics["human"]["model"] = _model_on_ceiling_pairs(ceiling, ious, references, candidates, scores)
    return EvaluationReport(
        metrics=metrics,
        missing_masks=missing,
        missing_explanations=sum(1 for k in references if k not in candidates) if explanations else 0,
        skipped_empty=skipped_empty,
        unmatched_predictions=unmatched,
        explanation_pairs=pair_counts,
    )


Key = tuple[int, str]  # (painting id, emotion)


def _truths(pairs) -> tuple[dict[Key, str], dict[Key, list[str]], int]:
    """The pairs with a stimulus to segment ("name/emotion"), the reference explanations, and how
    many pairs were skipped for an empty truth."""
    seg_truth: dict[Key, str] = {}
    references: dict[Key, list[str]] = {}
    skipped_empty = 0
    for pair in pairs:
        key = (pair.painting.id, pair.emotion)
        present = truth_present(pair)
        if present:
            seg_truth[key] = f"{pair.painting.file_name}/{pair.emotion}"
        elif present is not None:
            skipped_empty += 1
        refs = reference_explanations(pair)
        if refs:
            references[key] = refs
    return seg_truth, references, skipped_empty


def _score_predictions(ground_truth, items, wanted: set[str], seg_truth, references):
    """Each matched prediction's APOLO IoU (scored on arrival, mask dropped) and explanation; how
    many predictions matched no pair of the truth."""
    ious: dict[Key, float] = {}
    candidates: dict[Key, str] = {}
    unmatched = 0
    for prediction in items:
        painting = ground_truth.painting(prediction.painting)
        emotion = prediction.emotion
        if painting is None or emotion not in wanted:
            unmatched += 1
            continue
        key = (painting.id, emotion)
        if key not in seg_truth and key not in references:
            unmatched += 1
            continue
        if key in seg_truth:
            soft = prediction.probability if prediction.probability is not None else prediction.mask
            if soft is not None:
                ious[key] = apolo_iou(soft, truth_mask(ground_truth.pair(painting, emotion)))
        if key in references and prediction.explanation and prediction.explanation.strip():
            candidates[key] = prediction.explanation
    return ious, candidates, unmatched


def _explanation_metrics(scores: dict | None, chosen) -> tuple[dict, dict[str, int]]:
    """The captioning metrics, overall and per emotion (None where not scored), and pair counts."""
    explanation: dict = {k: None for k in CAPTION_METRICS}
    explanation["per_emotion"] = {e: {k: None for k in CAPTION_METRICS} for e in chosen}
    pair_counts = {"all": 0} | {e: 0 for e in chosen}
    if scores is not None:
        for k in CAPTION_METRICS:
            explanation[k] = scores[k]
        pair_counts["all"] = scores["pairs"]
        for e, group in scores["per_group"].items():
            explanation["per_emotion"][e] = {k: group[k] for k in CAPTION_METRICS}
            pair_counts[e] = group["pairs"]
    return explanation, pair_counts


def _model_on_ceiling_pairs(ceiling, ious, references, candidates, scores: dict | None) -> dict:
    """The model's figures on the pairs the human ceiling was computed on, to put beside it."""
    same = {"segmentation": summarise_ious(v for k, v in ious.items() if k in ceiling.mask_pairs)}
    same["explanation"] = {k: None for k in CAPTION_METRICS} | {"pairs": 0}
    chosen_candidates = {k: c for k, c in candidates.items() if k in ceiling.explanation_pairs}
    if chosen_candidates:
        if scores is not None and len(chosen_candidates) == len(candidates):
            same_scores = scores  # the same set: no second Java run
        else:
            same_scores = caption_scores(references, chosen_candidates)
        same["explanation"] = {k: same_scores[k] for k in CAPTION_METRICS} | {"pairs": same_scores["pairs"]}
    return same


def truth_mask(pair: PairRecords) -> np.ndarray | None:
    """The bool mask a pair's predictions are scored against (see the module docstring), or None
    when the pair has no mask (text only). Empty for *no stimulus*."""
    target = pair.target()
    if target is not None:
        return majority_mask(target)
    record = pair.effective
    if record is None or not record.has_mask:
        return None
    if record.no_stimulus:
        return np.zeros(pair.painting.shape, bool)
    return record.mask


def truth_present(pair: PairRecords) -> bool | None:
    """Whether the pair's truth mask marks any pixel (None: it has no mask); without decoding
    masks where one record decides it."""
    adjudicated, votes = pair.adjudicated, pair.votes
    if adjudicated is not None and adjudicated.has_mask:
        record = adjudicated
    elif len(votes) >= 2:
        return bool(truth_mask(pair).any())  # the majority of several masks: decode them
    else:
        record = votes[0] if votes else pair.effective
    if record is None or not record.has_mask:
        return None
    return record.area > 0 and not record.no_stimulus


def reference_explanations(pair: PairRecords) -> list[str]:
    """Every person's explanation of the pair (as ArtEmis evaluates); a draft's when nobody
    wrote one and the draft is the pair's record."""
    if pair.explanations:
        return pair.explanations
    record = pair.effective
    return list(record.explanations) if record is not None and not record.reviewed else []


# ----------------------------------------------------------------------------- sources
def predictions_from_dataset(
    predicted: StimulusDataset, ground_truth: StimulusDataset, *, emotions=None
) -> Iterator[PairPrediction]:
    """Every record of ``predicted`` whose painting is in ``ground_truth`` (matched by file name,
    else by file stem: a model's proposals saved from an array are ``.png``)."""
    wanted = set(parse_emotions(emotions))
    for painting in predicted.paintings:
        gt = ground_truth.painting(painting.file_name) or ground_truth.painting(painting.name)
        if gt is None:
            continue
        for s in predicted.stimuli(painting):
            if s.emotion not in wanted:
                continue
            mask = None
            if s.has_mask and not s.no_stimulus:
                mask = s.mask
            elif s.no_stimulus:
                mask = np.zeros((painting.height, painting.width), dtype=bool)
            yield PairPrediction(gt.file_name, s.emotion, None, mask, s.explanation)


def predictions_from_predictor(
    predictor,
    ground_truth: StimulusDataset,
    *,
    emotions=None,
    explain: bool = True,
    progress: Callable[[int, int, Painting], None] | None = None,
) -> Iterator[PairPrediction]:
    """Run ``predictor`` on each ground-truth painting that has records of the chosen emotions:
    ``set_image(ds.image(p))`` then ``propose(emotions with ground truth, explain=...,
    with_probability=True)``."""
    have: dict[int, set[str]] = {}
    for pair in ground_truth.every_pair(emotions):
        if truth_present(pair) or (explain and reference_explanations(pair)):
            have.setdefault(pair.painting.id, set()).add(pair.emotion)
    todo: list[tuple[Painting, list[str]]] = [
        (painting, [e for e in EMOTIONS if e in have[painting.id]])
        for painting in ground_truth.paintings
        if painting.id in have
    ]
    for index, (painting, wanted) in enumerate(todo):
        if progress is not None:
            progress(index, len(todo), painting)
        predictor.set_image(ground_truth.image(painting))
        for proposal in predictor.propose(wanted, explain=explain, with_probability=True):
            yield PairPrediction(
                painting.file_name,
                proposal.emotion,
                proposal.probability,
                proposal.mask,
                proposal.explanation if explain else "",
            )


# ----------------------------------------------------------------------------- printing
def format_table(report: EvaluationReport) -> str:
    """A plain-text table: overall and per emotion, metrics ×100 as papers print them."""
    seg = report.metrics["segmentation"]
    exp = report.metrics["explanation"]
    header = ["", "pairs", "mIoU", "Acc@.25", "Acc@.5", "expl.", "BLEU-1", "BLEU-2", "BLEU-3",
              "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"]  # fmt: skip
    rows = [_row("overall", seg, exp, report.explanation_pairs.get("all", 0))]
    for emotion, s in seg["per_emotion"].items():
        n_exp = report.explanation_pairs.get(emotion, 0)
        if s["pairs"] or n_exp:
            rows.append(_row(emotion, s, exp["per_emotion"][emotion], n_exp))
    human = report.metrics.get("human")
    ceiling_rows = _ceiling_rows(human) if human else []
    widths = [max(len(str(r[i])) for r in [header, *rows, *ceiling_rows]) for i in range(len(header))]

    def line(r):
        return "  ".join(
            str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )

    lines = [line(r) for r in [header, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    if ceiling_rows:
        lines.append("-" * len(lines[0]))
        lines.append(
            f"human ceiling: each annotator against the others' consensus, on the {human['pairs']} pairs "
            "with 2+ annotators (docs/annotators.md)"
        )
        lines.extend(line(r) for r in ceiling_rows)
    notes = ["(segmentation: APOLO protocol; values ×100; 'pairs' = masks scored, 'expl.' = explanations scored)"]
    if ceiling_rows:
        notes.append("(human ceiling: 'pairs' and 'expl.' count scores, one per annotator and pair)")
    if report.missing_masks:
        shown = ", ".join(report.missing_masks[:5]) + (", …" if len(report.missing_masks) > 5 else "")
        notes.append(f"{len(report.missing_masks)} ground-truth masks had no prediction and scored 0: {shown}")
    if report.skipped_empty:
        notes.append(f"{report.skipped_empty} ground-truth records with an empty mask were skipped")
    if report.missing_explanations:
        notes.append(f"{report.missing_explanations} explained pairs had no predicted explanation (left out)")
    if report.unmatched_predictions:
        notes.append(f"{report.unmatched_predictions} predictions matched no ground-truth pair (ignored)")
    return "\n".join(lines + notes)


def _ceiling_rows(human: dict) -> list[list[str]]:
    """The human ceiling overall and per annotator, then the model on the same pairs."""
    seg, exp = human["segmentation"], human["explanation"]
    rows = [_row("human", _as_pairs(seg), exp, exp["scores"])]
    for name in human["annotators"]:
        a_exp = exp["per_annotator"][name]
        rows.append(_row(f"  {name}", _as_pairs(seg["per_annotator"][name]), a_exp, a_exp["scores"]))
    model = human["model"]
    rows.append(_row("model, same pairs", model["segmentation"], model["explanation"], model["explanation"]["pairs"]))
    return rows


def _as_pairs(scores: dict) -> dict:
    return scores | {"pairs": scores["scores"]}


def _fmt(value) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _row(name: str, seg: dict, exp: dict, n_exp: int) -> list[str]:
    return [name, str(seg["pairs"]), _fmt(seg["miou"]), _fmt(seg["acc_25"]), _fmt(seg["acc_50"]),
            str(n_exp)] + [_fmt(exp[k]) for k in CAPTION_METRICS]  # fmt: skip
