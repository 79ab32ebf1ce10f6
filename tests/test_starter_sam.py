"""The starter's SAM path: regions from segment_anything's automatic mask generator.

A real SAM checkpoint is 375 MB–2.5 GB and cannot be downloaded here, so these tests build a
tiny, randomly initialised Sam from segment_anything's own modules: enough to run the generator
end to end (its masks mean nothing, but the path that uses them is real).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

torch = pytest.importorskip("torch")
segment_anything = pytest.importorskip("segment_anything")

from segment_anything import SamAutomaticMaskGenerator  # noqa: E402
from segment_anything.modeling import (  # noqa: E402
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

from napari_emosem.emotions import EMOTIONS  # noqa: E402
from napari_emosem.errors import EmoSEMError, WeightsError  # noqa: E402
from napari_emosem.image_io import load_image  # noqa: E402
from napari_emosem.paintings import FOLDER as PAINTINGS  # noqa: E402 (after the importorskip guards)
from napari_emosem.starter import (  # noqa: E402
    SOURCE_SAM,
    SOURCE_SUPERPIXELS,
    StarterConfig,
    StarterPredictor,
    load_sam,
)
from napari_emosem.starter.regions import Grid, downscale  # noqa: E402


def tiny_sam(seed: int = 0) -> Sam:
    """A 256-px SAM with a 2-block, 96-wide ViT and a 64-wide decoder, random weights."""
    torch.manual_seed(seed)
    image_size, patch, width = 256, 16, 64
    encoder = ImageEncoderViT(
        img_size=image_size, patch_size=patch, in_chans=3, embed_dim=96, depth=2, num_heads=2,
        mlp_ratio=2.0, out_chans=width, qkv_bias=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
        global_attn_indexes=(1,), window_size=0,
    )
    prompts = PromptEncoder(
        embed_dim=width, image_embedding_size=(image_size // patch, image_size // patch),
        input_image_size=(image_size, image_size), mask_in_chans=8,
    )
    decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=width, mlp_dim=128, num_heads=2),
        transformer_dim=width, iou_head_depth=2, iou_head_hidden_dim=64,
    )
    return Sam(image_encoder=encoder, prompt_encoder=prompts, mask_decoder=decoder).eval()


@pytest.fixture(scope="module")
def painting():
    return load_image(PAINTINGS / "boy-in-a-red-vest-1888.jpg")


def test_generator_masks_become_the_regions(painting):
    # thresholds at 0 switch the generator's filters off, so a random model's masks come through
    config = StarterConfig(sam_points_per_side=4, sam_pred_iou_thresh=0.0, sam_stability_score_thresh=0.0)
    sam = tiny_sam()
    small = downscale(painting, config.working_side)
    generated = SamAutomaticMaskGenerator(
        sam, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0
    ).generate(small)
    assert generated, "precondition: the tiny random SAM yields at least one mask unfiltered"

    predictor = StarterPredictor(config, sam=sam)
    assert predictor.uses_sam and "SAM" in predictor.description
    predictor.set_image(painting)
    assert predictor.region_source == SOURCE_SAM
    # every region lies inside or outside the largest generated mask: SAM drew the borders
    biggest = max(generated, key=lambda r: r["area"])["segmentation"]
    biggest = Grid.between(painting.shape, small.shape).upsample(biggest)
    labels = predictor.region_labels
    assert labels.max() >= 1
    for region in range(labels.max() + 1):
        share = biggest[labels == region].mean()
        assert share < 0.05 or share > 0.95, (region, share)
    proposals = predictor.propose(EMOTIONS, with_probability=True)
    assert all(p.mask.shape == painting.shape[:2] and p.mask.any() for p in proposals)
    assert len({p.explanation for p in proposals}) == 8


def test_no_mask_above_the_thresholds_falls_back_to_scikit_image_regions(painting):
    # no IoU prediction of this model reaches 10: the generator returns nothing
    config = StarterConfig(sam_points_per_side=4, sam_pred_iou_thresh=10.0)
    sam = tiny_sam()
    small = downscale(painting, config.working_side)
    assert SamAutomaticMaskGenerator(sam, points_per_side=4, pred_iou_thresh=10.0).generate(small) == []

    predictor = StarterPredictor(config, sam=sam)
    predictor.set_image(painting)
    assert predictor.region_source == SOURCE_SUPERPIXELS
    plain = StarterPredictor(config)
    plain.set_image(painting)
    # the fallback is exactly the scikit-image path
    assert np.array_equal(predictor.region_labels, plain.region_labels)
    for a, b in zip(predictor.propose(EMOTIONS), plain.propose(EMOTIONS), strict=True):
        assert np.array_equal(a.mask, b.mask) and a.explanation == b.explanation


def test_sam_path_refines_clicks(painting):
    config = StarterConfig(sam_points_per_side=4, sam_pred_iou_thresh=0.0, sam_stability_score_thresh=0.0)
    predictor = StarterPredictor(config, sam=tiny_sam())
    predictor.set_image(painting)
    refined = predictor.refine("fear", np.array([[300, 200], [50, 50]]), np.array([1, 0]))
    assert refined.mask[300, 200] and not refined.mask[50, 50]


def test_checkpoint_errors_are_clear(tmp_path):
    with pytest.raises(WeightsError, match="no SAM checkpoint"):
        StarterPredictor(sam_checkpoint=tmp_path / "missing.pth")
    with pytest.raises(EmoSEMError, match="unknown SAM model type"):
        load_sam(tmp_path / "missing.pth", "vit_x")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError):
        StarterPredictor(sam_checkpoint=garbage)
    with pytest.raises(EmoSEMError, match="not both"):
        StarterPredictor(sam_checkpoint=garbage, sam=tiny_sam())


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save(tiny_sam().state_dict(), path)
    with pytest.raises(WeightsError, match="do not fit a SAM vit_b"):
        StarterPredictor(sam_checkpoint=path, sam_model_type="vit_b")
