"""The starter model's parts: working copy, regions, features, scores, colour words."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import rgb2lab

from napari_emosem.emotions import EMOTIONS
from napari_emosem.starter.describe import (
    FAMILIES,
    QUALITIES,
    TEMPLATES,
    colour_families,
    colour_name,
    describe_mask,
    draft_explanation,
)
from napari_emosem.starter.features import FEATURES, PixelTable, affective_features, standardise
from napari_emosem.starter.regions import Grid, downscale, merge_regions, working_shape
from napari_emosem.starter.scoring import (
    PROFILES,
    VALDEZ_MEHRABIAN,
    choose_regions,
    emotion_scores,
    pleasure_arousal_dominance,
)

F = {name: i for i, name in enumerate(FEATURES)}


# Working copy and grid ---------------------------------------------------------------------------


def test_downscale_averages_areas_and_keeps_small_images():
    rgb = np.zeros((900, 1200, 3), np.uint8)
    rgb[::2] = 200  # fine stripes: an area average is mid grey, a nearest pick would be 0 or 200
    small = downscale(rgb, 300)
    assert small.shape == (225, 300, 3)
    assert abs(float(small.mean()) - 100) < 3
    tiny = np.full((40, 50, 3), 7, np.uint8)
    assert downscale(tiny, 448) is not None and downscale(tiny, 448).shape == (40, 50, 3)


def test_downscale_of_a_huge_painting_uses_the_box_pre_reduction():
    rgb = np.zeros((6000, 4500, 3), np.uint8)
    rgb[:, 2250:] = (255, 0, 0)  # right half red
    small = downscale(rgb, 448)
    assert small.shape == (448, 336, 3)
    assert small[:, :160, 0].max() == 0 and small[:, 176:, 0].min() == 255


def test_grid_upsample_and_coverage_are_inverse():
    grid = Grid.between((1003, 777), working_shape((1003, 777), 200))
    rng = np.random.default_rng(1)
    small = rng.random(grid.small_shape) > 0.5
    big = grid.upsample(small)
    assert big.shape == (1003, 777)
    assert np.array_equal(grid.coverage(big), small.astype(np.float32))
    one = np.zeros((1003, 777), bool)
    one[500, 300] = True
    coverage = grid.coverage(one)
    r, c = grid.to_small(np.array([[500, 300]]))[0]
    assert coverage[r, c] > 0 and np.count_nonzero(coverage) == 1


# Regions -----------------------------------------------------------------------------------------


def test_merge_regions_joins_similar_neighbours_into_connected_regions():
    # a 4×4 grid of labels: left half blue-ish, right half two reds; colour noise per cell
    labels = np.repeat(np.repeat(np.arange(16).reshape(4, 4), 10, axis=0), 10, axis=1)
    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[:, :20] = (40, 60, 160)
    rgb[:, 20:] = (200, 40, 40)
    rgb[20:, 20:] = (230, 200, 60)
    lab = rgb2lab(rgb) + np.random.default_rng(0).normal(0, 0.5, (40, 40, 3))
    mapping = merge_regions(
        labels, lab, 16, min_regions=2, max_regions=5, merge_delta_e=8.0, min_pixels=0
    )
    regions = mapping[labels]
    assert regions.max() + 1 == 3
    assert len(np.unique(regions[:, :20])) == 1
    assert regions[0, 30] != regions[30, 30] != regions[0, 0]
    assert regions[0, 0] == 0  # numbered in raster order


def test_merge_regions_absorbs_specks():
    labels = np.zeros((30, 30), int)
    labels[10:12, 10:12] = 1  # a 4-pixel speck of another colour
    labels[:, 20:] = 2
    lab = np.zeros((30, 30, 3))
    lab[labels == 1] = (50, 60, 0)
    lab[labels == 2] = (80, 0, 0)
    mapping = merge_regions(labels, lab, 3, min_regions=1, max_regions=3, merge_delta_e=0.0, min_pixels=10)
    assert mapping[1] == mapping[0] and mapping[2] != mapping[0]


# Features ----------------------------------------------------------------------------------------


def _table(rgb):
    return PixelTable.from_image(rgb, rgb2lab(rgb))


def test_features_follow_their_definitions():
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:, :20] = (128, 128, 128)  # grey, left
    rgb[:, 20:] = (230, 120, 30)  # orange, right
    table = _table(rgb)
    left = np.zeros((20, 40))
    left[:, :20] = 1
    features = affective_features(table, np.stack([left.ravel(), 1 - left.ravel()]))
    grey, orange = features
    assert grey[F["saturation"]] < 0.01 and orange[F["saturation"]] > 0.6
    assert grey[F["colourfulness"]] < 0.01  # Hasler & Süsstrunk: a flat grey has none
    assert orange[F["warmth"]] > 0.7 and abs(grey[F["warmth"]]) < 0.01
    assert grey[F["size"]] == pytest.approx(0.5)
    assert orange[F["contrast"]] == pytest.approx(0.0, abs=1e-6)
    assert grey[F["contrast_rest"]] == pytest.approx(orange[F["contrast_rest"]])
    assert orange[F["centrality"]] < 1.0 and grey[F["height"]] == pytest.approx(0.5)
    empty = affective_features(table, np.zeros((1, 800)))[0]
    assert empty[F["size"]] == 0.0 and np.isnan(np.delete(empty, F["size"])).all()


def test_standardise_compares_with_the_painting_and_is_bounded():
    rgb = np.full((20, 20, 3), 120, np.uint8)
    table = _table(rgb)
    painting = affective_features(table, np.ones((1, 400)))[0]
    features = np.tile(painting, (2, 1))
    features[1, F["brightness"]] += 10.0
    z = standardise(features, painting)
    assert z[0, F["brightness"]] == 0.0 and z[1, F["brightness"]] == 3.0


# Scores ------------------------------------------------------------------------------------------


def test_valdez_mehrabian_weights_are_the_published_ones():
    assert VALDEZ_MEHRABIAN.tolist() == [[0.69, 0.22], [-0.31, 0.60], [-0.76, 0.32]]
    z = np.zeros((2, len(FEATURES)))
    z[0, F["brightness"]] = 1.0
    z[1, F["saturation"]] = 1.0
    pad = pleasure_arousal_dominance(z)
    assert pad[0].tolist() == pytest.approx([0.69, -0.31, -0.76])
    assert pad[1].tolist() == pytest.approx([0.22, 0.60, 0.32])


def test_circumplex_places_emotions_in_their_quadrants():
    pleasant = [e for e in EMOTIONS if np.cos(np.deg2rad(PROFILES[e].angle)) > 0]
    assert set(pleasant) == {"amusement", "awe", "contentment", "excitement"}
    assert np.sin(np.deg2rad(PROFILES["contentment"].angle)) < 0  # calm
    assert np.sin(np.deg2rad(PROFILES["sadness"].angle)) < 0  # calm
    assert np.sin(np.deg2rad(PROFILES["fear"].angle)) > 0  # aroused


def test_scores_are_in_the_unit_interval_and_neutral_at_zero():
    rng = np.random.default_rng(3)
    z = np.clip(rng.normal(0, 2, (50, len(FEATURES))), -3, 3)
    scores = emotion_scores(z, EMOTIONS)
    assert scores.shape == (8, 50) and (scores > 0).all() and (scores < 1).all()
    neutral = emotion_scores(np.zeros((1, len(FEATURES))), EMOTIONS)
    assert np.allclose(neutral, 0.5)


def test_red_reads_as_anger_and_dark_blue_as_sadness():
    z = np.zeros((2, len(FEATURES)))
    z[0, [F["red"], F["warmth"], F["saturation"]]] = 2.0  # a red region
    z[1, [F["brightness"], F["saturation"], F["warmth"]]] = -2.0  # dark, grey-blue
    z[1, F["blue"]] = 1.5
    scores = dict(zip(EMOTIONS, emotion_scores(z, EMOTIONS), strict=True))
    assert scores["anger"][0] > scores["anger"][1]
    assert scores["sadness"][1] > scores["sadness"][0]


def test_choose_regions_is_never_empty_and_joins_close_scores():
    assert choose_regions(np.array([0.2, 0.9, 0.88, 0.1]), margin=0.03, max_regions=2).tolist() == [1, 2]
    assert choose_regions(np.array([0.2, 0.9, 0.8]), margin=0.03, max_regions=2).tolist() == [1]
    assert choose_regions(np.array([0.5, 0.5, 0.5]), margin=0.0, max_regions=1).tolist() == [0]


# Words -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rgb", "expected"),
    [
        ((45, 55, 80), "dark, muted blue"),
        ((180, 135, 80), "warm ochre"),
        ((140, 150, 138), "grey-green"),
        ((150, 165, 145), "muted green"),
        ((20, 20, 20), "black"),
        ((110, 70, 40), "brown"),
        ((220, 30, 30), "vivid red"),
        ((240, 170, 180), "pink"),
        ((135, 206, 235), "pale blue"),
    ],
)
def test_colour_names(rgb, expected):
    L, a, b = rgb2lab(np.array([[rgb]], np.uint8))[0, 0]
    chroma, hue = np.hypot(a, b), np.arctan2(b, a)
    family = int(colour_families(np.array([L]), np.array([chroma]), np.array([hue]))[0])
    assert colour_name(L, chroma, np.degrees(hue), family) == expected


def test_every_emotion_has_several_templates_and_a_default_quality():
    for emotion in EMOTIONS:
        assert len(TEMPLATES[emotion]) >= 4
        assert QUALITIES[emotion][-1][0] == ""  # the default comes last
        for feature, _, phrases in QUALITIES[emotion][:-1]:
            assert feature in FEATURES and len(phrases) >= 2


def test_drafts_are_grammatical_for_plural_subjects_and_depend_on_the_key():
    rgb = np.full((60, 80, 3), (60, 70, 110), np.uint8)
    table = _table(rgb)
    families = colour_families(table.L, table.chroma, table.hue)
    lab = rgb2lab(rgb).reshape(-1, 3)
    spots = np.zeros((60, 80))
    spots[5:8, 5:8] = spots[50:53, 70:73] = spots[30:33, 10:13] = 1
    description = describe_mask(spots.ravel(), (60, 80), families, lab)
    assert description.plural and description.subject.startswith("the scattered")
    z = np.zeros(len(FEATURES))
    texts = {draft_explanation("sadness", description, z, key=str(k)) for k in range(40)}
    assert len(texts) >= 4  # several templates and phrases, picked by the key's hash
    for text in texts:
        assert " feels " not in text and " is " not in text.replace("There is", "")
    assert FAMILIES[0] == "grey"
