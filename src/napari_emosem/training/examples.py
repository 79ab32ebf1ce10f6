"""What training learns from: paintings with (emotion, target, explanations) pairs.

Built from stimulus datasets (what annotators export) or from generated toy paintings. Only
reviewed pairs are used unless asked otherwise: a person wrote the record, or accepted or edited a
model's proposal (``Stimulus.reviewed``); a model's unreviewed draft would teach the model its own
mistakes. Only pairs with a real stimulus are used: "no stimulus" records and text-only records
are counted and reported, not trained on (APOLO's protocol skips empty masks too).

A pair's target (``docs/annotators.md``): the adjudicated mask when there is one, else the
consensus map of its annotators' votes (soft when they differ; one annotator's mask when there is
one vote), else, only with ``include_unreviewed``, the model's draft. Its explanations are every
person's explanation of the pair.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import TrainingError


@dataclass
class TrainingPair:
    emotion: str
    #: returns the (H, W) target: a bool mask, or a float32 consensus map in [0, 1]; lazy so large
    #: datasets are not decoded all at once
    target: Callable[[], np.ndarray]
    explanations: list[str]


@dataclass
class TrainingPainting:
    #: unique across datasets: "<dataset>/<file name>"
    key: str
    load: Callable[[], np.ndarray]
    pairs: list[TrainingPair]


@dataclass
class TrainingData:
    paintings: list[TrainingPainting]
    #: provenance for checkpoint metadata
    summary: dict = field(default_factory=dict)
    data_hash: str = ""

    @property
    def n_pairs(self) -> int:
        return sum(len(p.pairs) for p in self.paintings)


def from_datasets(roots: Sequence[str | os.PathLike], *, include_unreviewed: bool = False) -> TrainingData:
    """Training pairs from one or more stimulus dataset folders (validated on open): the reviewed
    ones, and the unreviewed drafts too when ``include_unreviewed``. ``summary`` counts what was
    used and what was left out (see :func:`napari_emosem.reporting.training_data_line`)."""
    from ..data import StimulusDataset

    if not roots:
        raise TrainingError("no dataset given: pass at least one --data DATASET folder")
    paintings: list[TrainingPainting] = []
    summaries, hashes = [], []
    counts = _Counts()
    for root in roots:
        ds = StimulusDataset.open(root)
        paintings.extend(_paintings_of(ds, include_unreviewed, counts))
        summary = ds.summary()
        summaries.append(
            {"root": str(Path(ds.root).resolve()), "paintings": summary["paintings"], "pairs": summary["pairs"]}
        )
        hashes.append(ds.content_hash())
    n_pairs = sum(len(p.pairs) for p in paintings)
    skipped, targets, unreviewed_used = counts.skipped, counts.targets, counts.unreviewed_used
    if n_pairs == 0:
        _refuse_empty(", ".join(str(r) for r in roots), skipped)
    # which datasets, in which state (every record of every annotator: a changed vote changes the
    # consensus); and whether the run learns from drafts that are in them
    content = "\n".join(sorted(hashes)) + ("\nwith unreviewed drafts" if unreviewed_used else "")
    digest = hashlib.sha256(content.encode()).hexdigest()
    return TrainingData(
        paintings,
        summary={
            "datasets": summaries,
            "paintings": len(paintings),
            "pairs": n_pairs,
            "reviewed_pairs": n_pairs - unreviewed_used,
            "unreviewed_pairs": unreviewed_used,
            "include_unreviewed": include_unreviewed,
            "skipped": skipped,
            # pairs trained on an adjudicated mask / on the consensus of two or more votes
            "targets": targets,
        },
        data_hash=digest,
    )


@dataclass
class _Counts:
    """What :func:`from_datasets` used and left out, over all its datasets."""

    skipped: dict[str, int] = field(default_factory=lambda: {"no_stimulus": 0, "text_only": 0, "unreviewed": 0})
    targets: dict[str, int] = field(default_factory=lambda: {"adjudicated": 0, "consensus": 0})
    unreviewed_used: int = 0


def _paintings_of(ds, include_unreviewed: bool, counts: _Counts) -> list[TrainingPainting]:
    """One dataset's paintings with the pairs to learn from; counts what was used and skipped."""
    by_painting: dict[int, TrainingPainting] = {}
    for pair in ds.every_pair():
        found = _target_of(pair, include_unreviewed)
        if isinstance(found, str):
            counts.skipped[found] += 1
            continue
        target, kind, explanations = found
        counts.unreviewed_used += kind == "draft"
        if kind in counts.targets:
            counts.targets[kind] += 1
        painting = pair.painting
        tp = by_painting.get(painting.id)
        if tp is None:
            tp = by_painting[painting.id] = TrainingPainting(
                key=f"{Path(ds.root).name}/{painting.file_name}",
                load=_loader(ds, painting.file_name),
                pairs=[],
            )
        tp.pairs.append(TrainingPair(pair.emotion, target, [e for e in explanations if e.strip()]))
    return list(by_painting.values())


def _refuse_empty(where: str, skipped: dict[str, int]) -> None:
    """Nothing to learn from: say why, and what to do."""
    if skipped["unreviewed"]:
        raise TrainingError(
            f"{where} has no reviewed pair to learn from, only {skipped['unreviewed']} unreviewed model "
            f"draft{'s' if skipped['unreviewed'] != 1 else ''}: review them first (accept or edit each "
            "emotion in the annotator, `emosem view DATASET`, then Export), or train on the drafts as "
            "they are with --include-unreviewed"
        )
    if skipped["no_stimulus"]:
        raise TrainingError(
            f"{where} holds only 'no stimulus' records ({skipped['no_stimulus']}); the model learns "
            "from stimulus masks: annotate at least one painting's stimulus, then train"
        )
    raise TrainingError(
        f"{where} has no (painting, emotion) pair with a stimulus mask to learn from; propose, "
        "correct and export some paintings first"
    )


def _target_of(pair, include_unreviewed: bool):
    """``(target loader, kind, explanations)`` of a :class:`~napari_emosem.data.records.PairRecords`,
    kind one of "adjudicated", "consensus" (two or more votes), "single" (one vote), "draft"; or
    why the pair is left out: "no_stimulus", "text_only" or "unreviewed"."""
    adjudicated = pair.adjudicated
    if adjudicated is not None and adjudicated.no_stimulus:
        return "no_stimulus"
    if adjudicated is not None and adjudicated.has_mask:
        if adjudicated.area == 0:
            return "text_only"
        return _target_loader(pair), "adjudicated", pair.explanations
    votes = pair.votes
    if votes:
        if all(v.no_stimulus or v.area == 0 for v in votes):
            return "no_stimulus" if any(v.no_stimulus for v in votes) else "text_only"
        # one vote: the consensus is that annotator's mask (0/1), as a single-annotator dataset trains
        return _target_loader(pair), "consensus" if len(votes) > 1 else "single", pair.explanations
    if any(r.no_stimulus for r in pair.reviewed):
        return "no_stimulus"
    draft = pair.draft
    if pair.reviewed or adjudicated is not None or draft is None:
        return "text_only"  # people wrote explanations only
    if draft.no_stimulus:
        return "no_stimulus"
    if not include_unreviewed:
        return "unreviewed"
    if not draft.has_mask or draft.area == 0:
        return "text_only"
    return _mask_of(draft), "draft", draft.explanations


def _loader(ds, file_name: str) -> Callable[[], np.ndarray]:
    return lambda: ds.image(file_name)


def _target_loader(pair) -> Callable[[], np.ndarray]:
    return lambda: pair.target()


def _mask_of(stimulus) -> Callable[[], np.ndarray]:
    return lambda: stimulus.mask


def from_toy(toys) -> TrainingData:
    """Training pairs from :mod:`napari_emosem.toy` paintings (tests, demos)."""
    paintings = []
    h = hashlib.sha256()
    for i, toy in enumerate(toys):
        h.update(toy.image.tobytes())
        pairs = [
            TrainingPair(e, (lambda m=toy.masks[e]: m), [toy.explanations[e]])
            for e in toy.emotions
        ]
        paintings.append(TrainingPainting(f"toy/{i:05d}", (lambda im=toy.image: im), pairs))
    data = TrainingData(paintings, data_hash=h.hexdigest())
    data.summary = {
        "datasets": [{"root": "toy"}],
        "paintings": len(paintings),
        "pairs": data.n_pairs,
        "reviewed_pairs": data.n_pairs,  # generated with their true masks
        "unreviewed_pairs": 0,
        "include_unreviewed": False,
        "skipped": {"no_stimulus": 0, "text_only": 0, "unreviewed": 0},
    }
    return data


def split_by_painting(data: TrainingData, val_fraction: float, seed: int) -> tuple[list, list]:
    """Deterministic split of paintings (never of pairs: a painting's emotions stay together)."""
    paintings = sorted(data.paintings, key=lambda p: p.key)
    if val_fraction <= 0 or len(paintings) < 2:
        return paintings, []
    order = np.random.default_rng(seed).permutation(len(paintings))
    n_val = min(len(paintings) - 1, max(1, round(val_fraction * len(paintings))))
    val = [paintings[i] for i in sorted(order[:n_val])]
    train = [paintings[i] for i in sorted(order[n_val:])]
    return train, val
