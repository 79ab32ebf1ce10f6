"""The whole loop on generated toy paintings, on a CPU: every round of annotation makes the next
proposals better.

propose with the model → an annotator replaces the proposals with the truth (the same
AnnotationSession the widget uses) → export → fine-tune from the current model → propose again.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_emosem.annotation import AnnotationSession
from napari_emosem.data import StimulusDataset
from napari_emosem.embedding_cache import EmbeddingCache
from napari_emosem.finetune import fine_tune
from napari_emosem.loading import load_predictor
from napari_emosem.toy import toy_paintings
from napari_emosem.training import TrainConfig

HELD_OUT = toy_paintings(12, seed=500)


def held_out_miou(predictor) -> float:
    ious = []
    for toy in HELD_OUT:
        predictor.set_image(toy.image)
        for p in predictor.propose(toy.emotions, explain=False):
            truth = toy.masks[p.emotion]
            ious.append((p.mask & truth).sum() / (p.mask | truth).sum())
    return float(np.mean(ious))


@pytest.mark.slow
def test_each_round_of_corrections_improves_the_proposals(tmp_path):
    dataset = tmp_path / "annotations"
    cache = EmbeddingCache(tmp_path / "cache")
    model = "tiny"  # untrained: its proposals are noise, as a new architecture's would be
    predictor = load_predictor(model, device="cpu", cache=cache)
    history = [held_out_miou(predictor)]
    for round_ in range(3):
        for i, toy in enumerate(toy_paintings(24, seed=100 + round_)):
            session = AnnotationSession(
                toy.image, file_name=f"round{round_}-{i:02d}.png", annotator="tester", autosave_dir=False
            )
            predictor.set_image(toy.image)
            session.apply_proposals(
                predictor.propose(toy.emotions), source=predictor.source, model=predictor.description
            )
            for emotion in toy.emotions:  # the annotator corrects every proposal
                session.set_mask(emotion, toy.masks[emotion])
                session.set_explanation(emotion, toy.explanations[emotion])
                session.accept(emotion)
            session.export(dataset)
        records = [s for _, s in StimulusDataset.open(dataset).pairs()]
        assert all(s.edited and s.source == predictor.source for s in records[-3:])

        config = TrainConfig(epochs=30, batch_size=15, val_fraction=0.15, seed=round_, validate_explanations=False)
        events = list(
            fine_tune([dataset], model, run_dir=tmp_path / f"round{round_}", config=config, device="cpu", cache=cache)
        )
        result = events[-1].metrics["result"]
        assert result.checkpoint.metadata["parent"] == (
            None if round_ == 0 else {"id": predictor.name, "path": str(model)}
        )
        model = str(result.checkpoint.path)
        predictor = load_predictor(model, device="cpu", cache=cache)
        assert predictor.checkpoint.version == round_ + 1
        history.append(held_out_miou(predictor))
        if history[-1] >= 0.7 and history[-1] - history[0] >= 0.3:
            break
    print("held-out mIoU by round:", [round(h, 3) for h in history])
    assert history[-1] >= 0.7, history
    assert history[-1] - history[0] >= 0.3, history
