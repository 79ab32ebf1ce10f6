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
    ids = model.emotion_index(EMOTIONS)
    with torch.no_grad():
        tokens = model.emotion_tokens(ids)
        logits = model.propose(embedding, ids).logits[:, 0]
    scale = float(logits.std())
    for i in range(len(EMOTIONS)):
        for j in range(i + 1, len(EMOTIONS)):
            pair = (EMOTIONS[i], EMOTIONS[j])
            # the decoder's prompt tokens tell the emotions apart clearly (LayerNorm'd words) ...
            assert float((tokens[i] - tokens[j]).norm() / tokens[i].norm()) > 0.05, pair
            # ... and so do the masks: untrained, by a few percent of the logits' spread (measured
            # 4-26% for this seed); a decoder that ignored the emotion would give exactly 0
            assert float((logits[i] - logits[j]).abs().mean()) > 0.02 * scale, pair


def test_the_prefix_depends_on_the_emotion_and_the_mask(tiny):
    """What the language model is told: a prefix adapter that ignored the emotion (or the mask)
    would give every emotion (every stimulus) the same prefix, and the same explanation."""
    model, _ = tiny
    torch.manual_seed(2)
    n = len(EMOTIONS)
    embedding = torch.randn(1, model.config.encoder.out_chans, 16, 16)
    lowres = model.image_encoder.lowres
    mask = torch.zeros(n, lowres, lowres)
    mask[:, 10:30, 20:40] = 1
    extent = torch.ones(n, 2)
    with torch.no_grad():
        prefix = model.prefix(embedding, model.emotion_index(EMOTIONS), mask, extent)
        elsewhere = torch.zeros_like(mask)
        elsewhere[:, 40:60, 5:25] = 1
        moved = model.prefix(embedding, model.emotion_index(EMOTIONS), elsewhere, extent)
    assert prefix.shape == (n, model.config.prefix_length, model.word_embeddings.embedding_dim)
    for i in range(n):
        for j in range(i + 1, n):
            difference = float((prefix[i] - prefix[j]).norm() / prefix[i].norm())
            assert difference > 0.1, (EMOTIONS[i], EMOTIONS[j], difference)  # measured ≥ 0.31
        assert float((prefix[i] - moved[i]).norm() / prefix[i].norm()) > 0.05, EMOTIONS[i]


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


def test_the_loss_is_the_weighted_sum_of_bce_dice_iou_and_text(tiny):
    """Each term as the README states it (LISA's weights), recomputed here from the model's own
    logits: a term left out of the total, or computed on the wrong tensor, fails."""
    from torch.nn import functional as F

    model, _ = tiny
    batch = _batch(model)
    with torch.no_grad():
        losses = model.loss(batch)
        embeddings = model.encode(batch.images)
        logits = model.propose(embeddings, batch.emotion_ids, batch.image_index, points=batch.points).logits[:, 0]
    weights = model.config.loss
    assert (weights.mask_bce, weights.mask_dice, weights.text, weights.iou) == (2.0, 0.5, 1.0, 1.0)
    expected = {k: float(weights.__getattribute__(k) * losses[k]) for k in ("mask_bce", "mask_dice", "iou", "text")}
    assert float(losses["loss"]) == pytest.approx(sum(expected.values()), rel=1e-6)
    assert all(float(losses[k]) > 0 for k in expected), losses
    target = batch.masks
    assert float(losses["mask_bce"]) == pytest.approx(
        float(F.binary_cross_entropy_with_logits(logits, target)), rel=1e-5
    )
    prob = logits.sigmoid()
    dice = 1 - (2 * (prob * target).sum((1, 2)) + 1) / (prob.sum((1, 2)) + target.sum((1, 2)) + 1)
    assert float(losses["mask_dice"]) == pytest.approx(float(dice.mean()), rel=1e-5)


@pytest.mark.parametrize("shape", [(300, 500), (500, 300), (37, 211)])
def test_masks_go_into_the_encoders_frame_and_come_back_aligned(tiny, shape):
    """A non-square painting is padded at the bottom or right of the square frame: logits of a
    mask must come back over the same pixels (not stretched over the padding)."""
    from napari_emosem.modeling.transforms import geometry_for, lowres_to_painting, mask_to_lowres

    model, _ = tiny
    h, w = shape
    geometry = geometry_for(h, w, model.config.encoder.img_size)
    mask = np.zeros(shape, bool)
    mask[h // 2 :, w // 2 :] = True  # the bottom-right quarter: next to the padding
    mask[: h // 5, : w // 5] = True  # and the top-left corner
    soft = mask_to_lowres(mask, geometry, model.image_encoder.lowres)
    logits = torch.logit(soft.clamp(1e-4, 1 - 1e-4))[None, None]
    back = lowres_to_painting(logits, geometry)[0, 0].numpy() > 0
    assert back.shape == shape
    iou = (back & mask).sum() / (back | mask).sum()
    assert iou > 0.9, iou
    # nothing of the padding comes back: the frame beside the painting is empty
    ph, pw = geometry.input_size
    assert float(soft[round(ph / geometry.img_size * soft.shape[0]) + 1 :, :].sum()) == 0
    assert float(soft[:, round(pw / geometry.img_size * soft.shape[1]) + 1 :].sum()) == 0


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
    from napari_emosem.modeling.transforms import mask_to_lowres

    model = predictor.model
    predictor.set_image(load_image(paintings[1]))
    geometry = predictor._geometry
    mask = np.zeros(geometry.original_size, bool)
    mask[100:300, 50:200] = True
    # by hand: the painting's embedding, the mask in the encoder's frame, the emotion's id
    x, _ = model.image_encoder.preprocess(load_image(paintings[1]))
    with torch.no_grad():
        embedding = model.encode(x[None])
    soft = mask_to_lowres(mask, geometry, model.image_encoder.lowres)[None]
    extent = torch.tensor([geometry.extent])
    ids = model.emotion_index(["sadness"])
    tokens = lambda text: len(model.tokenizer(text, add_special_tokens=False).input_ids)  # noqa: E731

    greedy = predictor.explain("sadness", mask)
    assert greedy and tokens(greedy) <= model.config.language.max_new_tokens
    assert greedy == model.explain(embedding, ids, soft, extent)[0] == predictor.explain("sadness", mask)
    predictor.num_beams, predictor.max_new_tokens = 3, 40
    beam = predictor.explain("sadness", mask)
    assert tokens(beam) <= 40
    assert beam == model.explain(embedding, ids, soft, extent, num_beams=3, max_new_tokens=40)[0]
    # the beam width is honoured: here (untrained, seed 0) beam search finds another draft than greedy
    assert beam != model.explain(embedding, ids, soft, extent, num_beams=1, max_new_tokens=40)[0]
    with pytest.raises(ValueError, match="mask shape"):
        predictor.explain("sadness", mask[:-1])


def test_refine_combines_the_emotion_with_clicks(predictor, paintings):
    image = load_image(paintings[2])
    predictor.set_image(image)
    plain = predictor.propose(["fear"], explain=False)[0]
    clicks, labels = np.array([[100, 100], [400, 300]]), np.array([1, 0])
    refined = predictor.refine("fear", clicks, labels)
    assert refined.mask.shape == image.shape[:2] and refined.emotion == "fear"
    # no clicks: exactly the emotion's own proposal
    unclicked = predictor.refine("fear", np.zeros((0, 2)), np.zeros(0))
    assert np.array_equal(unclicked.mask, plain.mask) and unclicked.score == plain.score
    # clicks change it (measured: 2% of the pixels, the score 0.041 -> 0.071) ...
    assert (refined.mask != plain.mask).mean() > 0.005 and abs(refined.score - plain.score) > 0.01
    # ... and the emotion still counts beside the clicks
    other = predictor.refine("awe", clicks, labels)
    assert not np.array_equal(other.mask, refined.mask) and abs(other.score - refined.score) > 1e-4
    # the same clicks give the same result: nothing random in a refinement
    again = predictor.refine("fear", clicks, labels)
    assert np.array_equal(again.mask, refined.mask) and again.score == refined.score


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
