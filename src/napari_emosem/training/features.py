"""Per-painting tensors, computed once per run: the expensive part of training made cheap.

With a frozen encoder each painting is encoded once, through the same on-disk embedding cache the
annotator uses, so embeddings are shared across epochs, runs and the widget. A trainable encoder
(the ``tiny`` preset) gets the preprocessed image instead and encodes it every step.
Targets (masks, or annotators' consensus maps) become low-resolution soft targets in the encoder's
frame, stored as uint8.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..embedding_cache import CachedEmbedding, EmbeddingCache
from ..image_io import image_digest
from ..modeling.transforms import Geometry, mask_to_lowres
from .examples import TrainingPainting


@dataclass
class PairFeatures:
    emotion_id: int
    target: torch.Tensor  # (L, L) uint8: soft target × 255 in the padded frame
    explanations: list[str]
    #: the full-resolution target (bool mask or float consensus map), for validation metrics
    truth: Callable[[], np.ndarray]


@dataclass
class PaintingFeatures:
    key: str
    geometry: Geometry
    #: (C, h, w) float32 when the encoder is frozen and RAM allows, else None
    embedding: torch.Tensor | None
    #: (3, S, S) preprocessed image when the encoder trains, else None
    image: torch.Tensor | None
    pairs: list[PairFeatures]
    #: image digest: the embedding's key in the cache (when it is not held in RAM)
    digest: str = ""

    def get_embedding(self, cache: EmbeddingCache, encoder_key: str) -> torch.Tensor:
        if self.embedding is not None:
            return self.embedding
        cached = cache.get(encoder_key, self.digest)
        if cached is None:
            raise RuntimeError(
                f"embedding of {self.key} left the cache during training; enlarge EMOSEM_EMBEDDING_CACHE_MB"
            )
        return cached.embedding


def prepare(
    model,
    paintings: list[TrainingPainting],
    *,
    encoder_key: str,
    cache: EmbeddingCache,
    device: str,
    encode: bool,
    keep_in_memory: bool = True,
) -> Iterator[tuple[int, int, PaintingFeatures | None]]:
    """Yield ``(done, total, features)`` per painting (a generator, so callers can show progress).

    ``encode=False`` only warms the cache (distributed runs split encoding between processes).
    ``keep_in_memory=False`` leaves embeddings on disk (read per batch): for datasets whose
    embeddings do not fit in RAM (4 MB per painting at ViT size).
    """
    frozen = model.config.encoder.frozen
    lowres = model.image_encoder.lowres
    emotions = model.config.emotions
    total = len(paintings)
    for done, painting in enumerate(paintings, 1):
        rgb = painting.load()
        geometry = model.image_encoder.geometry(*rgb.shape[:2])
        embedding = image = None
        digest = ""
        if frozen:
            digest = image_digest(rgb)
            cached = cache.get(encoder_key, digest)
            if cached is None:
                x, geometry = model.image_encoder.preprocess(rgb)
                with torch.no_grad():
                    emb = model.encode(x[None].to(device))[0].float().cpu()
                cached = CachedEmbedding(emb, geometry.input_size, geometry.original_size)
                cache.put(encoder_key, digest, cached)
            embedding = cached.embedding if keep_in_memory else None
        elif encode:
            image, geometry = model.image_encoder.preprocess(rgb)
        if not encode:
            yield done, total, None
            continue
        pairs = [
            PairFeatures(
                emotions.index(p.emotion),
                (mask_to_lowres(p.target(), geometry, lowres) * 255 + 0.5).to(torch.uint8),
                p.explanations,
                p.target,
            )
            for p in painting.pairs
        ]
        yield done, total, PaintingFeatures(painting.key, geometry, embedding, image, pairs, digest)
