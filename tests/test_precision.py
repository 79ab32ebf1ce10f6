"""Reduced precision on the CPU: chosen by measurement, cached per machine, and it keeps the
proposals (bf16 encoder and decoder: mask IoU ≥ 0.98 against fp32) and the drafts (int8 language
model: BLEU-4 within 0.02) of a trained toy checkpoint."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch

from napari_emosem import precision as prec
from napari_emosem.build import build_emosem
from napari_emosem.config import get_preset
from napari_emosem.embedding_cache import EmbeddingCache
from napari_emosem.emosem_predictor import EmoSEMPredictor
from napari_emosem.errors import EmoSEMError
from napari_emosem.loading import load_predictor
from napari_emosem.metrics import foreground_iou
from napari_emosem.toy import toy_paintings
from napari_emosem.training import TrainConfig, Trainer, from_toy

FAST = {"fp32_gflops": 100.0, "bf16_gflops": 300.0, "lm_fp32_ms": 1.0, "lm_int8_ms": 0.3,
        "bf16_faster": True, "int8_lm_faster": True, "measured": "then"}


@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOSEM_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_auto_measures_once_per_machine_and_keeps_the_verdict(fresh_cache, monkeypatch):
    calls = []
    monkeypatch.setattr(prec, "measure_cpu", lambda: calls.append(1) or dict(FAST))
    assert prec.resolve_precision("auto", "cpu") == prec.ComputePlan("bf16", True)
    assert prec.resolve_precision("auto", "cpu").precision == "bf16"
    assert len(calls) == 1
    stored = json.loads((fresh_cache / prec.VERDICT_FILE).read_text())
    assert list(stored) == [prec.machine_key()] and "torch" in prec.machine_key()
    # another processor (or torch build) has its own verdict
    monkeypatch.setattr(prec, "machine_key", lambda: "another CPU | AVX2 | torch 0")
    monkeypatch.setattr(
        prec, "measure_cpu", lambda: calls.append(1) or dict(FAST, bf16_faster=False, int8_lm_faster=False)
    )
    assert prec.resolve_precision("auto", "cpu") == prec.ComputePlan("fp32", False)
    assert len(calls) == 2 and len(json.loads((fresh_cache / prec.VERDICT_FILE).read_text())) == 2


def test_a_damaged_verdict_file_is_measured_again(fresh_cache, monkeypatch):
    fresh_cache.mkdir(parents=True)
    (fresh_cache / prec.VERDICT_FILE).write_text("{not json")
    monkeypatch.setattr(prec, "measure_cpu", lambda: dict(FAST))
    assert prec.machine_verdict()["bf16_faster"] is True


def test_explicit_choices_and_devices(fresh_cache, monkeypatch):
    monkeypatch.setattr(prec, "measure_cpu", lambda: pytest.fail("explicit choices measure nothing"))
    assert prec.resolve_precision("fp32", "cpu") == prec.ComputePlan()
    assert prec.resolve_precision("bf16", "cpu").precision == "bf16"
    assert prec.resolve_precision("auto", "cuda") == prec.ComputePlan()  # GPUs run as they always have
    assert prec.resolve_precision("bf16", "cuda:0") == prec.ComputePlan()
    with pytest.raises(EmoSEMError, match="unknown precision 'fp16'"):
        prec.resolve_precision("fp16", "cpu")
    with pytest.raises(EmoSEMError, match="unknown precision"):
        load_predictor("tiny", device="cpu", precision="half")


def test_the_real_measurement_is_short_and_says_what_it_found(fresh_cache):
    verdict = prec.machine_verdict()
    assert verdict["fp32_gflops"] > 0 and isinstance(verdict["bf16_faster"], bool)
    assert prec.machine_verdict() == verdict  # read back, not measured again


def test_the_embedding_cache_key_names_the_precision(tmp_path):
    model, identity = build_emosem(get_preset("tiny"))
    keys = {}
    for name in ("fp32", "bf16"):
        cache = EmbeddingCache(tmp_path / "cache")
        predictor = EmoSEMPredictor(model, identity, cache=cache, precision=name)
        predictor.set_image(toy_paintings(1, seed=0)[0].image)
        keys[name] = predictor.encoder_key
        assert not predictor.from_cache  # a bf16 embedding never stands in for the fp32 one
    assert keys["bf16"] == keys["fp32"] + "-bf16"
    assert sorted(p.parent.name for p in (tmp_path / "cache").glob("*/*.safetensors")) == sorted(keys.values())


def test_the_int8_drafting_copy_leaves_the_language_model_alone():
    from transformers.pytorch_utils import Conv1D

    from napari_emosem.modeling.language_model import int8_language_model

    model, _ = build_emosem(get_preset("tiny"))
    lm = model.language_model.eval()
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    drafting = int8_language_model(lm)
    assert isinstance(lm.transformer.h[0].attn.c_attn, Conv1D)
    assert all(torch.equal(v, lm.state_dict()[k]) for k, v in before.items())
    quantized = [m for m in drafting.modules() if type(m).__module__.startswith("torch.ao.nn.quantized.dynamic")]
    assert len(quantized) == 4 * len(lm.transformer.h) + 1  # attention in/out, MLP in/out per block, output layer
    assert drafting.get_input_embeddings().weight is lm.get_input_embeddings().weight  # shared, not copied
    x = torch.randn(2, 5, lm.config.n_embd)
    with torch.no_grad():
        a, b = lm(inputs_embeds=x).logits, drafting(inputs_embeds=x).logits
    assert float((a - b).abs().max()) < 0.05 * float(a.abs().max())


# A trained toy checkpoint: the agreement that matters is on a model that has learned something ----


@pytest.fixture(scope="module")
def trained_toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained-toy")
    model, identity = build_emosem(get_preset("tiny"))
    config = TrainConfig(epochs=20, batch_size=15, val_fraction=0.0, seed=0, validate_explanations=False)
    Trainer(model, identity, from_toy(toy_paintings(32, seed=1)), config, root / "run",
            cache=EmbeddingCache(root / "cache")).fit()
    return root / "run"


def _propose_held_out(run, precision, paintings):
    predictor = load_predictor(run, device="cpu", precision=precision, cache=EmbeddingCache(max_bytes=0))
    out = []
    for toy in paintings:
        predictor.set_image(toy.image)
        out.append(predictor.propose(toy.emotions))
    return predictor, out


def _bleu4(references, candidates) -> float:
    from pycocoevalcap.bleu.bleu import Bleu

    gts = {i: [r] for i, r in enumerate(references)}
    res = {i: [c or "-"] for i, c in enumerate(candidates)}
    with contextlib.redirect_stdout(io.StringIO()):
        scores, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return float(scores[3])


@pytest.mark.slow
def test_bf16_and_int8_keep_the_proposals_and_drafts_of_a_trained_checkpoint(trained_toy):
    held_out = toy_paintings(16, seed=2)
    reference, fp32 = _propose_held_out(trained_toy, "fp32", held_out)
    reduced, low = _propose_held_out(trained_toy, "bf16", held_out)
    assert reference.plan == prec.ComputePlan() and reduced.plan.precision == "bf16"
    ious, truths, drafts_fp32, drafts_low = [], [], [], []
    for toy, a, b in zip(held_out, fp32, low, strict=True):
        for pa, pb in zip(a, b, strict=True):
            assert pa.emotion == pb.emotion
            ious.append(foreground_iou(pa.mask, pb.mask) if (pa.mask.any() or pb.mask.any()) else 1.0)
            truths.append(toy.explanations[pa.emotion])
            drafts_fp32.append(pa.explanation)
            drafts_low.append(pb.explanation)
            assert abs(pa.score - pb.score) < 0.02
    assert len(ious) >= 40
    assert np.mean(ious) >= 0.98 and min(ious) >= 0.95, (np.mean(ious), min(ious))
    bleu_fp32, bleu_low = _bleu4(truths, drafts_fp32), _bleu4(truths, drafts_low)
    assert bleu_fp32 > 0.1, "the toy checkpoint should have learned to name some stimuli"
    if reduced.plan.int8_language_model:
        assert abs(bleu_fp32 - bleu_low) <= 0.02, (bleu_fp32, bleu_low)
