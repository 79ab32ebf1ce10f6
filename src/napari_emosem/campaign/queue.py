"""What to annotate next: the paintings that would teach the model most, first.

Three orders over the paintings that are not done (nor skipped):

* ``uncertainty``: the model's own doubt about its proposals for the campaign's emotions, the
  mean over emotions of ½ (1 − predicted IoU) + ½ mean per-pixel binary entropy (in bits) of the
  soft mask: high when the IoU head distrusts the mask or the mask is blurry.
* ``diversity``: core-set selection (k-center greedy, Sener & Savarese 2018) over image features:
  each next painting is the one farthest from everything annotated or already queued, so the
  queue covers the collection instead of circling one kind of painting.
* ``random``: a seeded shuffle, the baseline any other order must beat (see
  ``benchmarks/bench_queue.py`` and ``docs/queue.md`` for how they compare).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from ..data import Painting
from ..predictor import Proposal


class QueueOrder(StrEnum):
    UNCERTAINTY = "uncertainty"
    DIVERSITY = "diversity"
    RANDOM = "random"


@dataclass(frozen=True)
class Candidate:
    """A painting that is not done, with what the model made of it."""

    painting: Painting
    #: the model's uncertainty about the painting (see :func:`uncertainty`)
    uncertainty: float
    #: a feature vector of the image (for ``diversity``); any length, compared by cosine distance
    features: np.ndarray


@dataclass(frozen=True)
class QueueEntry:
    painting: Painting
    rank: int
    uncertainty: float
    #: distance to the nearest annotated/queued painting when it was chosen (``diversity`` only)
    novelty: float | None = None

    def to_json(self) -> dict:
        return {
            "rank": self.rank,
            "painting": self.painting.file_name,
            "uncertainty": round(float(self.uncertainty), 4),
            "novelty": None if self.novelty is None else round(float(self.novelty), 4),
        }


def uncertainty(proposals: Sequence[Proposal]) -> float:
    """½ (1 − predicted IoU) + ½ mean binary entropy of the soft mask, averaged over emotions.

    Each proposal needs its ``probability`` map (``propose(..., with_probability=True)``); a
    proposal without one counts by its IoU score alone.
    """
    if not proposals:
        return 0.0
    values = []
    for p in proposals:
        doubt = 1.0 - float(np.clip(p.score, 0.0, 1.0))
        if p.probability is None:
            values.append(doubt)
            continue
        q = np.clip(np.asarray(p.probability, np.float64), 1e-7, 1 - 1e-7)
        entropy = float(np.mean(-(q * np.log2(q) + (1 - q) * np.log2(1 - q))))
        values.append(0.5 * doubt + 0.5 * entropy)
    return float(np.mean(values))


def rank(
    candidates: Sequence[Candidate],
    order: QueueOrder | str,
    *,
    annotated: np.ndarray | None = None,
    top: int | None = None,
    seed: int = 0,
) -> list[QueueEntry]:
    """The candidates in ``order``, best first (the first ``top`` of them).

    ``annotated`` holds feature vectors (rows) of paintings already annotated: ``diversity``
    starts far from them.
    """
    order = QueueOrder(order)
    n = len(candidates)
    k = n if top is None else max(0, min(int(top), n))
    if order is QueueOrder.RANDOM:
        picks = np.random.default_rng(seed).permutation(n)[:k]
        return [QueueEntry(candidates[i].painting, r + 1, candidates[i].uncertainty) for r, i in enumerate(picks)]
    if order is QueueOrder.UNCERTAINTY:
        # stable: ties keep the campaign's order
        picks = sorted(range(n), key=lambda i: -candidates[i].uncertainty)[:k]
        return [QueueEntry(candidates[i].painting, r + 1, candidates[i].uncertainty) for r, i in enumerate(picks)]
    return _core_set(candidates, annotated, k)


def _core_set(candidates: Sequence[Candidate], annotated: np.ndarray | None, k: int) -> list[QueueEntry]:
    if not candidates or k == 0:
        return []
    x = _unit_rows(np.stack([np.asarray(c.features, np.float64).ravel() for c in candidates]))
    chosen = np.zeros(len(x), bool)
    entries: list[QueueEntry] = []

    def take(i: int, novelty: float | None) -> None:
        entries.append(QueueEntry(candidates[i].painting, len(entries) + 1, candidates[i].uncertainty, novelty))
        chosen[i] = True

    if annotated is not None and len(annotated):
        a = _unit_rows(np.asarray(annotated, np.float64).reshape(len(annotated), -1))
        nearest = (1.0 - x @ a.T).min(axis=1)  # cosine distance to the nearest annotated painting
    else:
        # nothing annotated yet: start from the most typical painting, then spread out
        first = int(np.argmax(x @ _unit_rows(x.mean(axis=0, keepdims=True)).ravel()))
        take(first, None)
        nearest = 1.0 - x @ x[first]
    while len(entries) < k:
        i = int(np.argmax(np.where(chosen, -np.inf, nearest)))
        take(i, float(nearest[i]))
        nearest = np.minimum(nearest, 1.0 - x @ x[i])
    return entries


def _unit_rows(a: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return a / np.where(norms > 0, norms, 1.0)


def colour_features(image: np.ndarray) -> np.ndarray:
    """A model-free image descriptor for ``diversity``: a 4×4×4 RGB histogram and an 8×8 grey
    thumbnail, for predictors that have no image embedding of their own."""
    from skimage.transform import resize

    rgb = np.asarray(image)[..., :3]
    bins = (rgb // 64).reshape(-1, 3).astype(np.int64)
    hist = np.bincount(bins[:, 0] * 16 + bins[:, 1] * 4 + bins[:, 2], minlength=64).astype(np.float64)
    hist /= max(1.0, hist.sum())
    grey = resize(rgb.mean(axis=2), (8, 8), anti_aliasing=True) / 255.0
    return np.concatenate([hist, grey.ravel() - grey.mean()])


def score_candidates(
    paintings: Sequence[Painting],
    load_image: Callable[[Painting], np.ndarray],
    predictor,
    emotions: Sequence[str],
    *,
    on_painting: Callable[[int, int, Painting], None] | None = None,
) -> list[Candidate]:
    """Run ``predictor`` on each painting and measure its uncertainty and features
    (``Predictor.image_features``)."""
    out = []
    for index, painting in enumerate(paintings):
        image = load_image(painting)
        predictor.set_image(image)
        proposals = predictor.propose(emotions, explain=False, with_probability=True)
        vector = np.asarray(predictor.image_features(), np.float64)
        out.append(Candidate(painting, uncertainty(proposals), vector))
        if on_painting:
            on_painting(index + 1, len(paintings), painting)
    return out
