"""The EmoSEM model (tiny preset, random weights): shapes, batching, conditioning, gradients."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from napari_emosem import EMOTIONS
from napari_emosem.build import build_emosem
from napari_emosem.config import EmoSEMConfig, get_preset
from napari_emosem.embedding_cache import EmbeddingCache
from napari_emosem.emosem_predictor import EmoSEMPredictor
from napari_emosem.image_io import load_image
from napari_emosem.modeling import PairBatch


@pytest.fixture(scope="module")
def tiny():
    model, identity = build_emosem(get_preset("tiny"))
    return model.eval(), identity


@pytest.fixture()
def predictor(tiny, tmp_path):
    model, identity = tiny
    return EmoSEMPredictor(model, identity, device="cpu", cache=EmbeddingCache(tmp_path / "cache"))


@pytest.mark.parametrize("shape", [(600, 470), (551, 750), (37, 41), (1024, 1024), (130, 2000)])
def test_masks_come_back_at_the_paintings_resolution(predictor, shape):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, size=(*shape, 3), dtype=np.uint8)
    predictor.set_image(image)
    proposals = predictor.propose(["fear", "awe"], explain=False, with_probability=True)
    assert [p.emotion for p in proposals] == ["fear", "awe"]
    for p in proposals:
        assert p.mask.shape == shape and p.mask.dtype == bool
        assert p.probability.shape == shape and p.probability.dtype == np.float32
        assert 0.0 <= p.probability.min() <= p.probability.max() <= 1.0
        assert 0.0 <= p.score <= 1.0
        # the mask is the thresholded soft map (float32 sigmoid rounds tiny logits to exactly 0.5)
        decided = np.abs(p.probability - 0.5) > 1e-6
        assert np.array_equal(p.mask[decided], p.probability[decided] > 0.5)


def test_embedding_shape_follows_the_config(tiny):
    model, _ = tiny
    cfg = model.config.encoder
    x, geometry = model.image_encoder.preprocess(np.zeros((300, 200, 3), np.uint8))
    assert x.shape == (3, cfg.img_size, cfg.img_size)
    assert geometry.input_size == (cfg.img_size, round(200 * cfg.img_size / 300))
    emb = model.encode(x[None])
    assert emb.shape == (1, cfg.out_chans, cfg.embedding_size, cfg.embedding_size)


def test_all_eight_emotions_in_one_call_equal_eight_single_calls(tiny):
    model, _ = tiny
    torch.manual_seed(0)
    embedding = torch.randn(1, model.config.encoder.out_chans, 16, 16)
    ids = model.emotion_index(EMOTIONS)
    with torch.no_grad():
        together = model.propose(embedding, ids)
        alone = [model.propose(embedding, ids[i : i + 1]) for i in range(len(ids))]
    torch.testing.assert_close(together.logits, torch.cat([a.logits for a in alone]), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(together.iou, torch.cat([a.iou for a in alone]), rtol=1e-4, atol=1e-5)


def test_predictor_batch_equals_single_emotion_calls(predictor, paintings):
    predictor.set_image(load_image(paintings[0]))
    together = predictor.propose(EMOTIONS, explain=False, with_probability=True)
    for p in together:
        alone = predictor.propose([p.emotion], explain=False, with_probability=True)[0]
        np.testing.assert_allclose(alone.probability, p.probability, atol=1e-5)
        assert alone.score == pytest.approx(p.score, abs=1e-5)


def test_a_different_emotion_gives_a_different_mask(tiny):
    model, _ = tiny
    torch.manual_seed(1)
    embedding = torch.randn(1, model.config.encoder.out_chans, 16, 16)
    with torch.no_grad():
        logits = model.propose(embedding, model.emotion_index(EMOTIONS)).logits
    for i in range(len(EMOTIONS)):
        for j in range(i + 1, len(EMOTIONS)):
            # untrained, the differences are small but real (the trained model: test_learnability)
            assert float((logits[i] - logits[j]).abs().max()) > 1e-5, (EMOTIONS[i], EMOTIONS[j])


def _batch(model, n_images=2):
    torch.manual_seed(0)
    s = model.config.encoder.img_size
    lowres = model.image_encoder.lowres
    masks = torch.zeros(3, lowres, lowres)
    masks[:, 10:30, 10:30] = 1
    return PairBatch(
        embeddings=None,
        images=torch.randn(n_images, 3, s, s),
        image_index=torch.tensor([0, 0, 1]),
        emotion_ids=torch.tensor([0, 6, 7]),
        masks=masks,
        extent=torch.ones(3, 2),
        text_ids=model.tokenize_explanations(["the red circle feels lively", None, "a dark blue ellipse"]),
        points=(torch.tensor([[[20.0, 20.0]], [[5.0, 5.0]], [[0.0, 0.0]]]), torch.tensor([[1], [0], [-1]])),
    )


def test_gradients_reach_prompt_projector_decoder_adapter_but_not_a_frozen_encoder():
    base = get_preset("tiny")
    config = dataclasses.replace(base, encoder=dataclasses.replace(base.encoder, frozen=True))
    model, _ = build_emosem(config)
    model.train()
    batch = _batch(model)
    with torch.no_grad():
        batch.embeddings = model.encode(batch.images)
    batch.images = None
    losses = model.loss(batch)
    assert set(losses) == {"loss", "mask_bce", "mask_dice", "iou", "text"}
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()

    def grad_norm(module):
        return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)

    for name in ("emotional_prompt", "emotion_projector", "mask_decoder", "prefix_adapter", "language_model"):
        assert grad_norm(getattr(model, name)) > 0, name
    assert model.emotional_prompt.mask_token.grad is not None
    assert all(p.grad is None and not p.requires_grad for p in model.image_encoder.parameters())
    assert "image_encoder" not in model.trainable_modules()


def test_tiny_trains_its_encoder_too():
    model, _ = build_emosem(get_preset("tiny"))
    model.train()
    model.loss(_batch(model))["loss"].backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.image_encoder.parameters())


def test_text_loss_counts_explanation_tokens_only(tiny):
    model, _ = tiny
    ids = model.tokenize_explanations(["abc", None])
    eos = model.tokenizer.eos_token_id
    assert ids[0, :4].tolist() == [*model.tokenizer("abc", add_special_tokens=False).input_ids, eos]
    assert (ids[1] == -100).all()


def test_explain_decodes_greedy_and_beam_within_the_token_limit(predictor, paintings):
    predictor.set_image(load_image(paintings[1]))
    mask = np.zeros(predictor._geometry.original_size, bool)
    mask[100:300, 50:200] = True
    greedy = predictor.explain("sadness", mask)
    assert isinstance(greedy, str)
    predictor.num_beams, predictor.max_new_tokens = 3, 5
    beam = predictor.explain("sadness", mask)
    assert len(predictor.model.tokenizer(beam, add_special_tokens=False).input_ids) <= 5


def test_refine_combines_the_emotion_with_clicks(predictor, paintings):
    image = load_image(paintings[2])
    predictor.set_image(image)
    plain = predictor.propose(["fear"], explain=False, with_probability=True)[0]
    refined = predictor.refine("fear", np.array([[100, 100], [400, 300]]), np.array([1, 0]))
    assert refined.mask.shape == image.shape[:2]
    assert not np.array_equal(refined.mask, plain.mask) or refined.score != pytest.approx(plain.score)


def test_config_round_trips_through_json():
    for name in ("tiny", "vit_b", "vit_l", "vit_h"):
        config = get_preset(name)
        assert EmoSEMConfig.from_dict(config.to_dict()) == config


def test_fused_attention_matches_segment_anythings_own(tiny):
    from segment_anything.modeling.transformer import Attention

    model, _ = tiny
    torch.manual_seed(0)
    for module in model.mask_decoder.mask_decoder.modules():
        if isinstance(module, Attention):
            q, k = torch.randn(3, 7, module.embedding_dim), torch.randn(3, 50, module.embedding_dim)
            with torch.no_grad():
                ours = module(q, k, k)
                theirs = Attention.forward(module, q, k, k)
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_upscaling_as_matrix_products_matches_segment_anythings_own(tiny):
    from napari_emosem.modeling.mask_decoder import upscaled_logits

    model, _ = tiny
    md = model.mask_decoder.mask_decoder
    torch.manual_seed(0)
    for module in md.output_upscaling.modules():  # random, not initial, norm weights
        if hasattr(module, "bias") and module.bias is not None:
            torch.nn.init.normal_(module.bias)
    n, h, w = 3, 5, 7
    c = md.transformer_dim
    tokens, hyper = torch.randn(n, h * w, c), torch.randn(n, c // 8)
    with torch.no_grad():
        ours = upscaled_logits(md.output_upscaling, tokens, hyper, h, w)
        upscaled = md.output_upscaling(tokens.transpose(1, 2).reshape(n, c, h, w))
        theirs = (hyper.unsqueeze(1) @ upscaled.flatten(2)).reshape(n, 1, 4 * h, 4 * w)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
