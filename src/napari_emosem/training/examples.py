"""What training learns from: paintings with (emotion, mask, explanations) pairs.

Built from stimulus datasets (what annotators export) or from generated toy paintings. Only
reviewed pairs are used unless asked otherwise: a person wrote the record, or accepted or edited a
model's proposal (``Stimulus.reviewed``); a model's unreviewed draft would teach the model its own
mistakes. Only pairs with a real stimulus mask are used: "no stimulus" records and text-only
records are counted and reported, not trained on (APOLO's protocol skips empty masks too).
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
    #: returns the bool (H, W) mask; lazy so large datasets are not decoded all at once
    mask: Callable[[], np.ndarray]
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
    skipped = {"no_stimulus": 0, "text_only": 0, "unreviewed": 0}
    unreviewed_used = 0
    for root in roots:
        ds = StimulusDataset.open(root)
        by_painting: dict[int, TrainingPainting] = {}
        for painting, s in ds.pairs():
            if s.no_stimulus:
                skipped["no_stimulus"] += 1
                continue
            if not s.reviewed and not include_unreviewed:
                skipped["unreviewed"] += 1
                continue
            if not s.has_mask or s.area == 0:
                skipped["text_only"] += 1
                continue
            unreviewed_used += not s.reviewed
            tp = by_painting.get(painting.id)
            if tp is None:
                tp = by_painting[painting.id] = TrainingPainting(
                    key=f"{Path(ds.root).name}/{painting.file_name}",
                    load=_loader(ds, painting.file_name),
                    pairs=[],
                )
            tp.pairs.append(TrainingPair(s.emotion, _mask_of(s), [e for e in s.explanations if e.strip()]))
        paintings.extend(by_painting.values())
        summary = ds.summary()
        summaries.append({"root": str(Path(ds.root).resolve()), "paintings": summary["paintings"], "pairs": summary["pairs"]})
        hashes.append(ds.content_hash())
    n_pairs = sum(len(p.pairs) for p in paintings)
    where = ", ".join(str(r) for r in roots)
    if n_pairs == 0:
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
    # which datasets, in which state; and whether the run learns from drafts that are in them
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
        },
        data_hash=digest,
    )


def _loader(ds, file_name: str) -> Callable[[], np.ndarray]:
    return lambda: ds.image(file_name)


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
