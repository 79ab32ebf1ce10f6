"""The embedding cache: one encode per painting and encoder, exact reuse, a size bound."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from napari_emosem.build import build_emosem
from napari_emosem.config import get_preset
from napari_emosem.embedding_cache import CachedEmbedding, EmbeddingCache
from napari_emosem.emosem_predictor import EmoSEMPredictor, encoder_key


@pytest.fixture(scope="module")
def tiny():
    return build_emosem(get_preset("tiny"))


def _image(seed, shape=(200, 150)):
    return np.random.default_rng(seed).integers(0, 255, (*shape, 3), dtype=np.uint8)


def test_a_painting_is_encoded_once_and_reused_exactly(tiny, tmp_path):
    model, identity = tiny
    cache = EmbeddingCache(tmp_path)
    first = EmoSEMPredictor(model, identity, cache=cache)
    first.set_image(_image(0))
    assert not first.from_cache
    a = first.propose(["fear", "awe"], explain=False, with_probability=True)
    # a fresh predictor (a reopened napari) reads the file instead of encoding
    second = EmoSEMPredictor(model, identity, cache=EmbeddingCache(tmp_path))
    calls = []
    handle = model.image_encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        second.set_image(_image(0))
    finally:
        handle.remove()
    assert second.from_cache and calls == []
    b = second.propose(["fear", "awe"], explain=False, with_probability=True)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.probability, y.probability)


def test_the_key_separates_paintings_and_encoders(tiny, tmp_path):
    model, identity = tiny
    other, other_identity = build_emosem(get_preset("tiny").replace(seed=1))
    assert encoder_key(model, identity) != encoder_key(other, other_identity)
    cache = EmbeddingCache(tmp_path)
    p = EmoSEMPredictor(model, identity, cache=cache)
    p.set_image(_image(0))
    p.set_image(_image(1))
    q = EmoSEMPredictor(other, other_identity, cache=cache)
    q.set_image(_image(0))
    assert not q.from_cache  # same painting, different encoder: encoded again
    assert len(cache.files()) == 3


def test_size_bound_evicts_least_recently_used(tmp_path):
    one = CachedEmbedding(torch.zeros(64, 16, 16), (100, 128), (200, 256))
    size = 64 * 16 * 16 * 4
    cache = EmbeddingCache(tmp_path, max_bytes=int(2.5 * (size + 200)), memory_items=0)
    cache.put("enc", "a", one)
    time.sleep(0.01)
    cache.put("enc", "b", one)
    time.sleep(0.01)
    assert cache.get("enc", "a") is not None  # touch a: b is now the oldest
    time.sleep(0.01)
    cache.put("enc", "c", one)
    names = sorted(p.stem for p in cache.files())
    assert names == ["a", "c"]
    assert cache.size_bytes() <= cache.max_bytes


def test_a_damaged_file_is_a_miss_not_a_crash(tmp_path):
    cache = EmbeddingCache(tmp_path, memory_items=0)
    cache.put("enc", "a", CachedEmbedding(torch.ones(4, 2, 2), (8, 8), (8, 8)))
    path = cache.files()[0]
    path.write_bytes(b"garbage")
    assert cache.get("enc", "a") is None


def test_size_bound_from_environment(monkeypatch):
    monkeypatch.setenv("EMOSEM_EMBEDDING_CACHE_MB", "5")
    assert EmbeddingCache().max_bytes == 5 * 1024**2
    assert str(EmbeddingCache().root).startswith(os.environ["EMOSEM_CACHE_DIR"])
