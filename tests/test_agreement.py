"""Agreement and consensus between annotators, checked against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from napari_emosem.annotators import PairVotes, Vote, agreement, consensus_map, majority_mask

SHAPE = (20, 20)


def box(rows, cols):
    mask = np.zeros(SHAPE, bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


A = box((0, 10), (0, 10))        # 100 px
B = box((0, 10), (5, 15))        # 100 px, 50 shared with A: IoU 1/3
C = box((0, 10), (0, 5))         # 50 px inside A: IoU 1/2


def test_agreement_matches_a_hand_computation():
    pairs = [
        # awe: a and b drew overlapping masks, c said no stimulus
        PairVotes("p1", "awe", [Vote("a", A), Vote("b", B), Vote("c", None)]),
        # fear: all three drew; a and b identical, c half of them
        PairVotes("p1", "fear", [Vote("a", A), Vote("b", A.copy()), Vote("c", C)]),
        # sadness: a and b both said no stimulus (an empty mask is no stimulus too)
        PairVotes("p2", "sadness", [Vote("a", None), Vote("b", np.zeros(SHAPE, bool))]),
        # anger: a drew, c said no stimulus
        PairVotes("p2", "anger", [Vote("a", A), Vote("c", None)]),
        # one annotator only: not compared
        PairVotes("p3", "awe", [Vote("a", A)]),
    ]
    report = agreement(pairs).to_json()
    assert report["annotators"] == ["a", "b", "c"]
    assert report["pairs_compared"] == 4
    # awe: only a|b both drew (1/3); fear: a|b 1, a|c 1/2, b|c 1/2 -> 2/3; others have no mask pair
    assert report["mask_iou"]["mean"] == pytest.approx((1 / 3 + 2 / 3) / 2, abs=1e-4)
    assert report["mask_iou"]["per_emotion"] == pytest.approx({"awe": 1 / 3, "fear": 2 / 3}, abs=1e-4)
    assert report["mask_iou"]["per_annotator_pair"] == pytest.approx(
        {"a|b": (1 / 3 + 1) / 2, "a|c": 0.5, "b|c": 0.5}, abs=1e-4
    )
    # annotator pairs agreeing on presence: awe 1 of 3, fear 3 of 3, sadness 1 of 1, anger 0 of 1
    assert report["presence"]["percent"] == pytest.approx(100 * 5 / 8)
    # Krippendorff's alpha by hand: coincidences o11=4, o10=o01=2, o00=2; n=10, n1=6, n0=4;
    # D_o = 4/10, D_e = 2*6*4/(10*9); alpha = 1 - D_o/D_e = 0.25
    assert report["presence"]["alpha"] == pytest.approx(0.25, abs=1e-6)


def test_alpha_is_undefined_when_everyone_always_agrees():
    pairs = [PairVotes("p", "awe", [Vote("a", A), Vote("b", B)]), PairVotes("q", "awe", [Vote("a", A), Vote("b", A)])]
    report = agreement(pairs).to_json()
    assert report["presence"] == {"percent": 100.0, "alpha": None}
    assert report["mask_iou"]["mean"] == pytest.approx((1 / 3 + 1) / 2, abs=1e-4)


def test_consensus_map_is_the_fraction_of_annotators_pixel_by_pixel():
    votes = [A, B, None, C]  # the third annotator said no stimulus: counts as an empty mask
    consensus = consensus_map(votes, SHAPE)
    assert consensus.dtype == np.float32 and consensus.shape == SHAPE
    expected = (A.astype(np.float32) + B + C) / 4
    assert np.array_equal(consensus, expected)
    assert consensus[0, 0] == 0.5 and consensus[0, 7] == 0.5 and consensus[0, 12] == 0.25 and consensus[15, 15] == 0
    assert np.array_equal(majority_mask(consensus), expected >= 0.5)
    assert not consensus_map([], SHAPE).any()
