"""The mask decoder's inference path computes what segment_anything computes, to float rounding.

EmotionMaskDecoder shares a painting's image-side work between its emotions and folds projections
into the few prompt tokens (modeling/shared_image_decoding.py); full-size masks upsample only the
painting's part of the frame (modeling/transforms.py). These tests hold both to the plain path and
to segment_anything's own modules.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from napari_emosem import EMOTIONS
from napari_emosem.build import build_emosem
from napari_emosem.config import get_preset
from napari_emosem.modeling import EmotionMaskDecoder
from napari_emosem.modeling.transforms import geometry_for, lowres_to_painting


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    """Random (not initial) weights everywhere, LayerNorms included: identity-like norms hide bugs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.5 if p.ndim == 1 else p.shape[-1] ** -0.5))


@pytest.fixture(scope="module")
def tiny():
    model, _ = build_emosem(get_preset("tiny"))
    _randomise(model.mask_decoder)
    return model.eval()


@pytest.mark.parametrize("per_pass", [1, 3, 8])
def test_shared_image_path_equals_the_plain_path(tiny, per_pass):
    decoder = tiny.mask_decoder
    torch.manual_seed(0)
    embeddings = torch.randn(3, tiny.config.encoder.out_chans, 16, 16)
    ids = tiny.emotion_index(EMOTIONS)
    image_index = torch.tensor([2, 0, 0, 1, 2, 0, 1, 0])
    with torch.no_grad():
        sparse = tiny.emotion_tokens(ids)
        decoder.prompt_sets_per_pass = per_pass
        try:
            fast = decoder(embeddings, sparse, image_index)
        finally:
            decoder.prompt_sets_per_pass = 1
        plain = decoder.decode_reference(embeddings, sparse, image_index)
    torch.testing.assert_close(fast.logits, plain.logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast.iou, plain.iou, rtol=1e-4, atol=1e-5)


def test_clicks_take_the_shared_path_and_a_mask_input_the_plain_one(tiny):
    torch.manual_seed(1)
    embedding = torch.randn(1, tiny.config.encoder.out_chans, 16, 16)
    ids = tiny.emotion_index(["fear"])
    clicks = (torch.tensor([[[20.0, 30.0], [90.0, 60.0]]]), torch.tensor([[1, 0]]))
    decoder = tiny.mask_decoder
    with torch.no_grad():
        sparse = torch.cat([tiny.emotion_tokens(ids), decoder.prompt_tokens(clicks, 1, "cpu")], dim=1)
        fast = decoder(embedding, sparse, torch.zeros(1, dtype=torch.long))
        plain = decoder.decode_reference(embedding, sparse, torch.zeros(1, dtype=torch.long))
        torch.testing.assert_close(fast.logits, plain.logits, rtol=1e-4, atol=1e-5)
        previous = fast.logits
        refined = decoder(embedding, sparse, torch.zeros(1, dtype=torch.long), mask_input=previous)
        reference = decoder.decode_reference(embedding, sparse, torch.zeros(1, dtype=torch.long), mask_input=previous)
    torch.testing.assert_close(refined.logits, reference.logits, rtol=0, atol=0)


def test_training_keeps_the_plain_path_and_its_gradients(tiny):
    torch.manual_seed(2)
    embedding = torch.randn(1, tiny.config.encoder.out_chans, 16, 16)
    ids = tiny.emotion_index(EMOTIONS[:3])
    with torch.enable_grad():
        pred = tiny.propose(embedding, ids)
        pred.logits.sum().backward()
    assert tiny.mask_decoder.mask_decoder.output_upscaling[0].weight.grad is not None
    tiny.zero_grad(set_to_none=True)


def test_eight_emotions_at_sams_size_match_segment_anythings_own_decoder():
    """SAM's real decoder size (256 wide, 8 heads, 64 × 64 tokens) and an EmoSEM-length prompt,
    against segment_anything's MaskDecoder with the same weights, single-mask output."""
    from segment_anything.modeling import MaskDecoder, TwoWayTransformer

    config = get_preset("vit_b")
    ours = EmotionMaskDecoder(config.encoder, config.decoder).eval()
    _randomise(ours, seed=3)
    theirs = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
        transformer_dim=256,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    ).eval()
    theirs.load_state_dict(ours.mask_decoder.state_dict())
    gen = torch.Generator().manual_seed(4)
    embedding = torch.randn(1, 256, 64, 64, generator=gen)
    sparse = torch.randn(8, 9, 256, generator=gen)
    pe = ours.prompt_encoder.get_dense_pe()
    dense = ours.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(8, -1, 64, 64)
    with torch.no_grad():
        fast = ours(embedding, sparse, torch.zeros(8, dtype=torch.long))
        masks, iou = theirs.predict_masks(embedding, pe, sparse, dense)
    torch.testing.assert_close(fast.logits, masks[:, :1], rtol=1e-3, atol=2e-4)
    torch.testing.assert_close(fast.iou, iou[:, 0], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    "shape", [(1024, 768), (768, 1024), (1024, 1024), (600, 470), (37, 41), (130, 2000), (3000, 2999)]
)
def test_full_size_masks_equal_segment_anythings_postprocessing(shape):
    from segment_anything.modeling import Sam

    geometry = geometry_for(*shape, 1024)
    logits = torch.randn(2, 1, 256, 256, generator=torch.Generator().manual_seed(5))
    sam = SimpleNamespace(image_encoder=SimpleNamespace(img_size=1024))
    theirs = Sam.postprocess_masks(sam, logits, geometry.input_size, geometry.original_size)
    ours = lowres_to_painting(logits, geometry)
    assert ours.shape == theirs.shape == (2, 1, *shape)
    assert torch.equal(ours, theirs)


def test_the_shared_path_handles_a_one_layer_transformer():
    base = get_preset("tiny")
    config = dataclasses.replace(base, decoder=dataclasses.replace(base.decoder, transformer_depth=1))
    model, _ = build_emosem(config)
    _randomise(model.mask_decoder, seed=6)
    model.eval()
    embedding = torch.randn(1, config.encoder.out_chans, 16, 16)
    ids = model.emotion_index(EMOTIONS)
    with torch.no_grad():
        sparse = model.emotion_tokens(ids)
        fast = model.mask_decoder(embedding, sparse, torch.zeros(8, dtype=torch.long))
        plain = model.mask_decoder.decode_reference(embedding, sparse, torch.zeros(8, dtype=torch.long))
    torch.testing.assert_close(fast.logits, plain.logits, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_shared_image_path_on_the_gpu_matches_the_plain_path():
    config = get_preset("vit_b")
    decoder = EmotionMaskDecoder(config.encoder, config.decoder).eval().cuda()
    _randomise(decoder, seed=7)
    gen = torch.Generator().manual_seed(8)
    embedding = torch.randn(1, 256, 64, 64, generator=gen).cuda()
    sparse = torch.randn(8, 9, 256, generator=gen).cuda()
    index = torch.zeros(8, dtype=torch.long, device="cuda")
    with torch.no_grad():
        fast, plain = decoder(embedding, sparse, index), decoder.decode_reference(embedding, sparse, index)
    agree = ((fast.logits > 0) == (plain.logits > 0)).float().mean()
    assert agree > 0.999 and torch.allclose(fast.iou, plain.iou, atol=1e-2)
