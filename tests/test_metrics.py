"""APOLO segmentation protocol and captioning metrics, against hand-computed cases and the
reference implementations (pycocotools, pycocoevalcap, torch's bilinear resize)."""

from __future__ import annotations

import gc
import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from napari_emosem.errors import EmoSEMError
from napari_emosem.metrics import (
    apolo_binarise,
    apolo_iou,
    caption_scores,
    foreground_iou,
    minmax_normalise,
    ptb_tokenize,
    resize_bilinear,
    summarise_ious,
)


def rect(shape, top, left, h, w) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[top : top + h, left : left + w] = True
    return m


# ----------------------------------------------------------------------------- segmentation
def test_iou_of_two_rectangles():
    truth = rect((20, 30), 0, 0, 10, 10)
    prediction = rect((20, 30), 0, 5, 10, 10)  # overlap 10 × 5 = 50, union 150
    assert foreground_iou(prediction, truth) == pytest.approx(1 / 3)
    assert apolo_iou(prediction, truth) == pytest.approx(1 / 3)  # a bool mask is its own map
    assert apolo_iou(prediction.astype(np.float32) * 0.8 + 0.1, truth) == pytest.approx(1 / 3)


def test_acc_thresholds_count_the_boundary():
    shape = (10, 10)
    quarter = apolo_iou(rect(shape, 0, 0, 1, 1), rect(shape, 0, 0, 2, 2))  # 1 / 4
    half = apolo_iou(rect(shape, 0, 0, 1, 1), rect(shape, 0, 0, 1, 2))  # 1 / 2
    fifth = apolo_iou(rect(shape, 0, 0, 1, 1), rect(shape, 0, 0, 1, 5))  # 1 / 5
    assert (quarter, half, fifth) == (0.25, 0.5, 0.2)
    summary = summarise_ious([quarter, half, fifth])
    assert summary == {"miou": pytest.approx(0.95 / 3), "acc_25": pytest.approx(2 / 3),
                       "acc_50": pytest.approx(1 / 3), "pairs": 3}  # fmt: skip
    assert summarise_ious([0.2499999])["acc_25"] == 0.0
    assert summarise_ious([]) == {"miou": None, "acc_25": None, "acc_50": None, "pairs": 0}


def test_min_max_normalisation_decides_the_threshold():
    shape = (10, 10)
    soft = np.full(shape, 0.10, np.float32)
    soft[0:4, 0:5] = 0.30  # normalised 1.0: foreground
    soft[4:6, 0:5] = 0.20  # normalised 0.5: foreground (raw 0.2 would be background)
    soft[6:8, 0:5] = 0.14  # normalised 0.2: background
    truth = rect(shape, 0, 0, 4, 5)
    assert not (soft > 0.35).any()  # without normalisation nothing passes the threshold
    assert np.array_equal(apolo_binarise(soft, shape), rect(shape, 0, 0, 6, 5))
    assert apolo_iou(soft, truth) == pytest.approx(20 / 30)
    assert np.allclose(minmax_normalise(soft)[[0, 4, 6, 9], 0], [1.0, 0.5, 0.2, 0.0])


def test_threshold_is_strict():
    shape = (4, 4)
    soft = np.zeros(shape, np.float32)
    soft[0, 0] = 1.0
    soft[1, 1] = 0.35  # exactly at the threshold: background, as in APOLO's "> threshold"
    assert np.array_equal(apolo_binarise(soft, shape), rect(shape, 0, 0, 1, 1))


def test_constant_maps_do_not_divide_by_zero():
    truth = rect((10, 10), 2, 2, 5, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert apolo_iou(np.full((10, 10), 0.7), truth) == pytest.approx(25 / 100)  # all foreground
        assert apolo_iou(np.zeros((10, 10)), truth) == 0.0  # nothing
        assert apolo_iou(np.full((3, 3), 0.2), truth) == pytest.approx(25 / 100)  # resized too
        assert apolo_iou(np.full((10, 10), np.nan), truth) == 0.0


def test_bilinear_resize_matches_torch_and_opencv_convention():
    import torch

    rng = np.random.default_rng(0)
    for src, dst in (((7, 7), (120, 90)), ((5, 9), (3, 4)), ((64, 48), (64, 48)), ((2, 3), (17, 5))):
        a = rng.random(src).astype(np.float32)
        ref = torch.nn.functional.interpolate(
            torch.from_numpy(a)[None, None], size=dst, mode="bilinear", align_corners=False
        )[0, 0].numpy()
        assert np.allclose(resize_bilinear(a, dst), ref, atol=1e-6)
    # a 7 × 7 map (APOLO's baselines predict on a 7 × 7 grid) scored on a full-size mask
    coarse = np.zeros((7, 7), np.float32)
    coarse[1:3, 2:5] = 1.0
    truth = rect((63, 77), 10, 20, 20, 30)  # not a multiple of 7: no value lands exactly on 0.35
    up = torch.nn.functional.interpolate(torch.from_numpy(coarse)[None, None], size=(63, 77),
                                         mode="bilinear", align_corners=False)[0, 0].numpy()  # fmt: skip
    expected = ((up > 0.35) & truth).sum() / ((up > 0.35) | truth).sum()
    assert apolo_iou(coarse, truth) == pytest.approx(expected)


def test_iou_matches_pycocotools():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(1)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(8, 50, 2))
        a = rng.random((h, w)) < rng.random()
        b = rng.random((h, w)) < rng.random()
        if not (a | b).any():
            continue
        ra = mask_utils.encode(np.asfortranarray(a.astype(np.uint8)))
        rb = mask_utils.encode(np.asfortranarray(b.astype(np.uint8)))
        reference = float(mask_utils.iou([ra], [rb], [0])[0, 0])
        assert foreground_iou(a, b) == pytest.approx(reference)
        if b.any() and a.any() and not a.all():
            assert apolo_iou(a, b) == pytest.approx(reference)


# ----------------------------------------------------------------------------- captions
REFS = {
    "h1": ["the cat sat on the mat"],
    "s1": ["a quiet lake under a pale morning sky"],
    "s2": ["the dark storm clouds feel threatening and heavy"],
    "m1": ["The woman looks tired, and the grey room feels empty.", "She seems lonely in that room."],
    "m2": ["Bright colours and dancing people: what a party!", "the dancers look joyful"],
    "m3": ["The shadows hide something frightening.", "a dark figure lurks in the corner", "it is gloomy"],
}
CANDS = {
    "h1": "the cat sat",
    "s1": "a quiet lake under a pale morning sky",
    "s2": "the dark storm clouds feel threatening and heavy",
    "m1": "the woman looks lonely in the empty room",
    "m2": "the people are dancing in bright colours",
    "m3": "a dark shadow in the corner",
}
GROUPS = {"h1": "hand", "s1": "same", "s2": "same", "m1": "mixed", "m2": "mixed", "m3": "mixed"}


def _java_children() -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            name = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and "java" in name:
            found.append(int(stat.parent.name))
    return found


@pytest.fixture(scope="module")
def wrapper_scores():
    return caption_scores(REFS, CANDS, GROUPS)


def test_bleu_1_hand_computed(wrapper_scores):
    # unigram precision 3/3; brevity penalty exp(1 - 6/3)
    assert wrapper_scores["per_group"]["hand"]["bleu_1"] == pytest.approx(math.exp(-1), abs=1e-6)


def test_identical_candidates_score_one(wrapper_scores):
    same = wrapper_scores["per_group"]["same"]
    for key in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l"):
        assert same[key] == pytest.approx(1.0, abs=1e-6), key
    assert same["meteor"] > 0.99
    assert same["pairs"] == 2


def test_wrapper_equals_direct_pycocoevalcap(wrapper_scores):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in v] for k, v in REFS.items()})
    res = tokenizer.tokenize({k: [{"caption": c}] for k, c in CANDS.items()})
    assert ptb_tokenize(REFS) == gts  # our copy of the tokenizer call gives the same tokens
    mixed = [k for k, g in GROUPS.items() if g == "mixed"]
    meteor = Meteor()
    try:
        expected_meteor = meteor.compute_score(gts, res)[0]
        expected_mixed_meteor = meteor.compute_score({k: gts[k] for k in mixed}, {k: res[k] for k in mixed})[0]
    finally:
        del meteor
        gc.collect()
    bleu = Bleu(4).compute_score(gts, res, verbose=0)[0]
    expected = {
        "bleu_1": bleu[0], "bleu_2": bleu[1], "bleu_3": bleu[2], "bleu_4": bleu[3],
        "meteor": expected_meteor,
        "rouge_l": Rouge().compute_score(gts, res)[0],
        "cider": Cider().compute_score(gts, res)[0],
    }  # fmt: skip
    for key, value in expected.items():
        assert wrapper_scores[key] == pytest.approx(value, abs=1e-12), key
    sub_g, sub_r = {k: gts[k] for k in mixed}, {k: res[k] for k in mixed}
    group = wrapper_scores["per_group"]["mixed"]
    assert group["bleu_4"] == pytest.approx(Bleu(4).compute_score(sub_g, sub_r, verbose=0)[0][3], abs=1e-12)
    assert group["cider"] == pytest.approx(Cider().compute_score(sub_g, sub_r)[0], abs=1e-12)
    assert group["meteor"] == pytest.approx(expected_mixed_meteor, abs=1e-12)
    assert wrapper_scores["pairs"] == 6


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_no_java_process_is_left_running(wrapper_scores):
    assert wrapper_scores["meteor"] is not None
    assert _java_children() == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("fails", [False, True])
def test_the_meteor_jvm_ends_with_its_block_error_or_not(fails):
    """The JVM must end when the block does, not when the garbage collector reaches pycocoevalcap's
    Meteor.__del__: the object is still referenced here, so only _meteor's own cleanup can end it."""
    from napari_emosem.metrics import _meteor

    try:
        with _meteor() as meteor:
            held = meteor
            process = meteor.meteor_p
            assert process.pid in _java_children()  # a real JVM, a child of this process
            if fails:
                raise RuntimeError("scoring failed")
    except RuntimeError:
        assert fails
    assert held.meteor_p is process and process.returncode is not None  # ended and reaped
    assert process.pid not in _java_children()


def test_empty_inputs_and_pairs_without_references():
    out = caption_scores({"a": ["x"]}, {"a": "   ", "b": "text"})
    assert out["pairs"] == 0 and out["bleu_1"] is None and out["per_group"] == {}


def test_missing_java_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EmoSEMError, match="apt install default-jre-headless"):
        caption_scores({"a": ["the sky"]}, {"a": "the sky"})
