"""Turning (painting, pair) items into a :class:`PairBatch`: one decoder call per batch."""

from __future__ import annotations

import numpy as np
import torch

from ..modeling import PairBatch
from .features import PaintingFeatures, PairFeatures


def epoch_batches(
    groups: list[int], batch_size: int, rng: np.random.Generator, rank: int = 0, world: int = 1
) -> list[list[int]]:
    """This process's batches of one epoch, as lists of item indices.

    ``groups[i]`` is the painting of item ``i``. A batch takes whole paintings, in a shuffled
    order, until it holds ``batch_size`` pairs: every emotion of a painting is decoded in the
    same step, so the decoder learns what tells the emotions of one painting apart (and a
    trainable encoder runs once per painting, not once per pair). The order is shared by all
    processes; the batch list wraps around so each process takes the same number of steps
    (as DistributedSampler does).
    """
    by_group: dict[int, list[int]] = {}
    for index, group in enumerate(groups):
        by_group.setdefault(group, []).append(index)
    keys = sorted(by_group)
    batches, current = [], []
    for k in rng.permutation(len(keys)):
        current.extend(by_group[keys[k]])
        if len(current) >= batch_size:
            batches.append(current)
            current = []
    if current:
        batches.append(current)
    n_steps = max(1, -(-len(batches) // world))
    padded = [batches[i % len(batches)] for i in range(n_steps * world)]
    return padded[rank::world]


def sample_clicks(target: torch.Tensor, extent: tuple[float, float], img_size: int, rng: np.random.Generator, k: int):
    """Up to ``k`` simulated clicks from a soft target: inside the stimulus (1) and outside (0).

    Returns (coords (k, 2) x, y in input pixels, labels (k,)), padded with label -1.
    """
    lowres = target.shape[-1]
    soft = target.float() / 255.0
    h = max(1, int(round(extent[0] * lowres)))
    w = max(1, int(round(extent[1] * lowres)))
    inside = np.argwhere(soft[:h, :w].numpy() > 0.5)
    outside = np.argwhere(soft[:h, :w].numpy() < 0.5)
    coords = np.zeros((k, 2), np.float32)
    labels = -np.ones(k, np.int64)
    n = int(rng.integers(1, k + 1))
    for i in range(n):
        positive = (i == 0 or rng.random() < 0.6) and len(inside)
        pool = inside if positive else outside
        if not len(pool):
            continue
        r, c = pool[rng.integers(len(pool))]
        scale = img_size / lowres
        coords[i] = ((c + 0.5) * scale, (r + 0.5) * scale)
        labels[i] = 1 if positive else 0
    return coords, labels


def collate(
    model,
    items: list[tuple[PaintingFeatures, PairFeatures]],
    rng: np.random.Generator,
    *,
    embeddings_for,
    clicks: bool = False,
    max_clicks: int = 3,
) -> PairBatch:
    """``embeddings_for(painting_features)`` returns the (C, h, w) embedding of a frozen encoder."""
    paintings: dict[str, int] = {}
    order: list[PaintingFeatures] = []
    for pf, _ in items:
        if pf.key not in paintings:
            paintings[pf.key] = len(order)
            order.append(pf)
    frozen = model.config.encoder.frozen
    embeddings = torch.stack([embeddings_for(pf) for pf in order]) if frozen else None
    images = None if frozen else torch.stack([pf.image for pf in order])
    texts = [
        pair.explanations[rng.integers(len(pair.explanations))] if pair.explanations else None for _, pair in items
    ]
    points = None
    if clicks:
        sampled = [
            sample_clicks(pair.target, pf.geometry.extent, model.config.encoder.img_size, rng, max_clicks)
            for pf, pair in items
        ]
        points = (
            torch.from_numpy(np.stack([c for c, _ in sampled])),
            torch.from_numpy(np.stack([lab for _, lab in sampled])),
        )
    return PairBatch(
        embeddings=embeddings,
        images=images,
        image_index=torch.tensor([paintings[pf.key] for pf, _ in items]),
        emotion_ids=torch.tensor([pair.emotion_id for _, pair in items]),
        masks=torch.stack([pair.target for _, pair in items]).float() / 255.0,
        extent=torch.tensor([pf.geometry.extent for pf, _ in items], dtype=torch.float32),
        text_ids=model.tokenize_explanations(texts),
        points=points,
    )
