"""The wiring learns: the tiny EmoSEM, trained from scratch on a CPU, finds each emotion's stimulus.

Toy paintings (napari_emosem.toy) hide two to four coloured shapes, one per emotion (fear is a
purple triangle, sadness a blue ellipse, ...). Only a model whose mask decoder is conditioned on
the emotional prompt, and whose language model is conditioned on the prefix adapter, can find the
right shape on paintings it has never seen and name it.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_emosem.build import build_emosem
from napari_emosem.config import get_preset
from napari_emosem.embedding_cache import EmbeddingCache
from napari_emosem.loading import load_predictor
from napari_emosem.metrics import foreground_iou
from napari_emosem.toy import TOY_STIMULI, toy_paintings
from napari_emosem.training import TrainConfig, Trainer, from_toy


@pytest.mark.slow
def test_tiny_model_learns_each_emotions_stimulus_and_names_it(tmp_path):
    data = from_toy(toy_paintings(64, seed=1))
    model, identity = build_emosem(get_preset("tiny"))
    # about 500 steps of ~15 pairs (whole paintings per step)
    config = TrainConfig(epochs=40, batch_size=15, val_fraction=0.0, seed=0, validate_explanations=False)
    steps = []
    result = Trainer(model, identity, data, config, tmp_path / "run", cache=EmbeddingCache(tmp_path / "cache")).fit(
        lambda e: steps.append(e) if e.stage == "train" else None
    )
    assert result.checkpoint is not None and 400 <= len(steps) <= 600

    predictor = load_predictor(tmp_path / "run", device="cpu", cache=EmbeddingCache(tmp_path / "cache2"))
    ious, named, coloured, own_best = [], [], [], []
    for toy in toy_paintings(16, seed=2):  # paintings it has never seen
        predictor.set_image(toy.image)
        for proposal in predictor.propose(toy.emotions):
            truth = toy.masks[proposal.emotion]
            ious.append(foreground_iou(proposal.mask, truth))
            others = [foreground_iou(proposal.mask, m) for e, m in toy.masks.items() if e != proposal.emotion]
            own_best.append(ious[-1] > max(others, default=0.0))
            stimulus = TOY_STIMULI[proposal.emotion]
            named.append(stimulus.shape in proposal.explanation)
            coloured.append(stimulus.colour in proposal.explanation)
    assert len(ious) >= 40
    assert np.mean(ious) >= 0.75, f"held-out mean IoU {np.mean(ious):.3f}"
    assert np.mean(named) >= 0.9 and np.mean(coloured) >= 0.9
    # and the conditioning is real: each proposal overlaps its own emotion's shape more than any other
    # shape in the same painting (a model that ignored the emotion would find the same shape for all)
    assert np.mean(own_best) >= 0.9, f"own shape best in {np.mean(own_best):.0%} of proposals"
