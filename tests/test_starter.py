"""The cold-start ``starter`` model on the shared Cézanne paintings and on generated images."""

from __future__ import annotations

import numpy as np
import pytest

from napari_emosem.emotions import EMOTIONS
from napari_emosem.errors import EmoSEMError, ImageError, UnknownEmotionError
from napari_emosem.image_io import load_image, to_rgb_uint8
from napari_emosem.paintings import FOLDER as PAINTINGS
from napari_emosem.predictor import Predictor
from napari_emosem.starter import StarterConfig, StarterPredictor

PAINTING_FILES = sorted(PAINTINGS.glob("*.jpg"))

# a word of each emotion that its drafts must contain
EMOTION_WORDS = {
    "amusement": ("amus", "smile", "funny"),
    "awe": ("awe",),
    "contentment": ("content",),
    "excitement": ("excit",),
    "anger": ("anger", "angry"),
    "disgust": ("disgust", "repulsive"),
    "fear": ("fear", "afraid", "frighten"),
    "sadness": ("sad",),
}


@pytest.fixture(scope="module")
def painted():
    """{file name: (rgb, predictor after set_image, proposals for all 8 emotions)}."""
    if not PAINTING_FILES:
        pytest.fail(f"no test paintings in {PAINTINGS}")
    result = {}
    for path in PAINTING_FILES:
        rgb = load_image(path)
        predictor = StarterPredictor()
        predictor.set_image(rgb)
        result[path.name] = (rgb, predictor, predictor.propose(EMOTIONS, with_probability=True))
    return result


def test_identity_says_cold_start():
    predictor = StarterPredictor()
    assert isinstance(predictor, Predictor)
    assert predictor.name == "starter"
    assert predictor.cold_start is True
    assert predictor.source == "model:starter"
    assert "cold-start" in predictor.description
    assert "no learned weights" in predictor.description


def test_every_emotion_gets_a_non_empty_full_resolution_mask_and_a_draft(painted):
    for name, (rgb, _, proposals) in painted.items():
        assert [p.emotion for p in proposals] == list(EMOTIONS), name
        for p in proposals:
            assert p.mask.dtype == bool and p.mask.shape == rgb.shape[:2], (name, p.emotion)
            assert p.mask.any(), (name, p.emotion)
            assert not p.mask.all(), (name, p.emotion)
            assert 0.0 <= p.score <= 1.0
            assert p.explanation.endswith(".") and p.explanation[0].isupper()
            assert any(w in p.explanation.lower() for w in EMOTION_WORDS[p.emotion]), p.explanation


def test_eight_distinct_drafts_per_painting(painted):
    for name, (_, _, proposals) in painted.items():
        texts = [p.explanation for p in proposals]
        assert len(set(texts)) == 8, (name, texts)


def test_drafts_differ_between_paintings(painted):
    per_painting = {name: [p.explanation for p in props] for name, (_, _, props) in painted.items()}
    names = list(per_painting)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            same = sum(x == y for x, y in zip(per_painting[a], per_painting[b], strict=True))
            assert same == 0, (a, b, per_painting[a], per_painting[b])


def test_emotions_pick_different_regions_on_a_real_painting(painted):
    for name, (_, _, proposals) in painted.items():
        distinct = {p.mask.tobytes() for p in proposals}
        assert len(distinct) >= 4, name


def test_two_fresh_predictors_give_identical_output():
    rgb = load_image(PAINTING_FILES[0])
    results = []
    for _ in range(2):
        predictor = StarterPredictor()
        predictor.set_image(rgb)
        results.append(predictor.propose(EMOTIONS, with_probability=True))
    for a, b in zip(*results, strict=True):
        assert np.array_equal(a.mask, b.mask)
        assert a.score == b.score
        assert a.explanation == b.explanation
        assert np.array_equal(a.probability, b.probability)


def test_explain_of_a_proposal_mask_is_the_proposal_draft(painted):
    for _, predictor, proposals in painted.values():
        for p in proposals:
            assert predictor.explain(p.emotion, p.mask) == p.explanation


def test_probability_map_is_the_normalised_region_score(painted):
    for rgb, _, proposals in painted.values():
        for p in proposals:
            prob = p.probability
            assert prob.dtype == np.float32 and prob.shape == rgb.shape[:2]
            assert prob.min() == 0.0 and prob.max() == 1.0
            # the best region is in the mask, and nothing outside the mask beats the mask
            assert prob[p.mask].max() == 1.0
            assert prob[~p.mask].max() <= prob[p.mask].min()


def test_propose_follows_the_given_order_and_names():
    predictor = StarterPredictor()
    predictor.set_image(load_image(PAINTING_FILES[1]))
    proposals = predictor.propose(["Sadness", "awe"], explain=False)
    assert [p.emotion for p in proposals] == ["sadness", "awe"]
    assert all(p.explanation == "" and p.probability is None for p in proposals)
    assert predictor.propose([]) == []


def test_unknown_emotions_and_order_of_calls_give_clear_errors():
    predictor = StarterPredictor()
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.propose(["fear"])
    predictor.set_image(load_image(PAINTING_FILES[0]))
    with pytest.raises(UnknownEmotionError, match="joy"):
        predictor.propose(["joy"])
    with pytest.raises(UnknownEmotionError, match="something else"):
        predictor.propose(["something else"])
    mask = np.ones(predictor.region_labels.shape, bool)
    with pytest.raises(UnknownEmotionError):
        predictor.explain("boredom", mask)


def test_bad_images_give_image_errors():
    predictor = StarterPredictor()
    with pytest.raises(ImageError, match="too small"):
        predictor.set_image(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ImageError, match="not a 2-D"):
        predictor.set_image(np.zeros((64, 64, 5), np.uint8))
    with pytest.raises(ImageError, match="NaN"):
        predictor.set_image(np.full((64, 64), np.nan))


def test_grayscale_and_rgba_inputs_work():
    rgb = load_image(PAINTING_FILES[2])
    gray = rgb.mean(axis=2).astype(np.uint8)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])
    for image in (gray, rgba, rgb.astype(np.float32) / 255.0):
        predictor = StarterPredictor()
        predictor.set_image(image)
        proposals = predictor.propose(EMOTIONS)
        assert all(p.mask.shape == rgb.shape[:2] and p.mask.any() for p in proposals)
        assert len({p.explanation for p in proposals}) == 8
    # set_image converts exactly as image_io does: same input, same result
    a, b = StarterPredictor(), StarterPredictor()
    a.set_image(rgba)
    b.set_image(to_rgb_uint8(rgba))
    assert [p.explanation for p in a.propose(EMOTIONS)] == [p.explanation for p in b.propose(EMOTIONS)]


def _two_patch_painting(height=480, width=640) -> np.ndarray:
    """Neutral grey ground; a dark, desaturated blue block on the left, a bright, saturated warm
    (orange) block on the right."""
    rgb = np.full((height, width, 3), (128, 126, 122), np.uint8)
    rgb[100:380, 40:260] = (45, 55, 80)
    rgb[120:360, 380:600] = (250, 160, 40)
    rng = np.random.default_rng(0)  # a little paint texture
    noise = rng.integers(-6, 7, size=rgb.shape)
    return np.clip(rgb.astype(int) + noise, 0, 255).astype(np.uint8)


def test_documented_weights_pick_the_expected_patches():
    rgb = _two_patch_painting()
    predictor = StarterPredictor()
    predictor.set_image(rgb)
    by_emotion = {p.emotion: p for p in predictor.propose(EMOTIONS)}
    blue = np.zeros(rgb.shape[:2], bool)
    blue[100:380, 40:260] = True
    warm = np.zeros(rgb.shape[:2], bool)
    warm[120:360, 380:600] = True

    def inside(mask, patch):
        return (mask & patch).sum() / mask.sum()

    assert inside(by_emotion["sadness"].mask, blue) > 0.9
    assert "blue" in by_emotion["sadness"].explanation
    for emotion in ("amusement", "excitement"):
        assert inside(by_emotion[emotion].mask, warm) > 0.9, emotion
        assert "orange" in by_emotion[emotion].explanation, by_emotion[emotion].explanation
    assert by_emotion["sadness"].score > 0.7
    assert by_emotion["excitement"].score > 0.7


def test_refine_includes_positive_and_excludes_negative_clicks(painted):
    _, predictor, proposals = painted["boy-in-a-red-vest-1888.jpg"]
    labels_map = predictor.region_labels
    fear = proposals[EMOTIONS.index("fear")]
    # a positive click in a region fear did not pick, a negative one inside fear's own proposal
    outside = np.argwhere(~fear.mask)
    inside = np.argwhere(fear.mask)
    pos, neg = outside[len(outside) // 2], inside[len(inside) // 2]
    refined = predictor.refine("fear", np.array([pos, neg]), np.array([1, 0]), explain=True)
    assert refined.mask.shape == fear.mask.shape
    assert refined.mask[tuple(pos)] and not refined.mask[tuple(neg)]
    assert refined.mask[labels_map == labels_map[tuple(pos)]].mean() > 0.5
    assert refined.explanation == predictor.explain("fear", refined.mask)
    assert 0.0 <= refined.score <= 1.0


def test_refine_splits_a_region_clicked_both_ways(painted):
    _, predictor, _ = painted["madame-cezanne-in-blue-1890.jpg"]
    labels_map = predictor.region_labels
    biggest = np.argmax(np.bincount(labels_map.ravel()))
    cells = np.argwhere(labels_map == biggest)
    a, b = cells[0], cells[-1]  # far apart in the same region
    refined = predictor.refine("sadness", np.array([a, b]), np.array([1, 0]))
    assert refined.mask[tuple(a)] and not refined.mask[tuple(b)]
    # neighbouring pixels clicked both ways (same superpixel, even the same working pixel)
    r, c = cells[len(cells) // 2]
    refined = predictor.refine("sadness", np.array([[r, c], [r, c + 1]]), np.array([1, 0]))
    assert refined.mask[r, c] and not refined.mask[r, c + 1]


def test_refine_with_only_negative_clicks_keeps_the_best_remaining_region(painted):
    _, predictor, proposals = painted["fortune-mation.jpg"]
    awe = proposals[EMOTIONS.index("awe")]
    clicks = np.argwhere(awe.mask)[:: max(1, int(awe.mask.sum()) // 5)][:5]
    refined = predictor.refine("awe", clicks, np.zeros(len(clicks), int))
    assert refined.mask.any()
    assert not refined.mask[clicks[:, 0], clicks[:, 1]].any()


def test_refine_ignores_clicks_outside_and_checks_labels(painted):
    rgb, predictor, proposals = painted["a-painter-at-work-1875.jpg"]
    outside = np.array([[-5.0, 10.0], [rgb.shape[0] + 3, 4.0]])
    refined = predictor.refine("fear", outside, np.array([1, 0]))
    assert np.array_equal(refined.mask, proposals[EMOTIONS.index("fear")].mask)
    with pytest.raises(EmoSEMError, match="labels"):
        predictor.refine("fear", np.array([[5, 5]]), np.array([1, 0]))
    with pytest.raises(EmoSEMError, match="1 .inside"):
        predictor.refine("fear", np.array([[5, 5]]), np.array([2]))


def test_explain_works_for_any_mask(painted):
    rgb, predictor, _ = painted["boy-in-a-red-vest-1888.jpg"]
    h, w = rgb.shape[:2]
    one_pixel = np.zeros((h, w), bool)
    one_pixel[h // 2, w // 3] = True
    corner = np.zeros((h, w), bool)
    corner[:4, :4] = True
    everything = np.ones((h, w), bool)
    scattered = np.zeros((h, w), bool)
    scattered[::37, ::41] = True
    line = np.zeros((h, w), bool)
    line[h - 6 : h - 3, :] = True
    as_labels = corner.astype(np.uint8) * 3  # a napari Labels layer: nonzero is inside
    masks = {"pixel": one_pixel, "corner": corner, "all": everything, "scattered": scattered,
             "line": line, "labels": as_labels}
    texts = {}
    for name, mask in masks.items():
        for emotion in EMOTIONS:
            text = predictor.explain(emotion, mask)
            assert text.endswith(".") and len(text.split()) >= 6, (name, emotion, text)
            texts[name, emotion] = text
    assert "most of the canvas" in texts["all", "awe"]
    assert "scattered" in texts["scattered", "fear"]
    assert "band" in texts["line", "sadness"] and "bottom" in texts["line", "sadness"]
    assert "upper left" in texts["corner", "anger"]
    assert texts["labels", "anger"] == texts["corner", "anger"]


def test_explain_rejects_empty_and_misshapen_masks(painted):
    rgb, predictor, _ = painted["boy-in-a-red-vest-1888.jpg"]
    with pytest.raises(EmoSEMError, match="empty"):
        predictor.explain("fear", np.zeros(rgb.shape[:2], bool))
    with pytest.raises(EmoSEMError, match="painting is"):
        predictor.explain("fear", np.ones((10, 10), bool))


def test_large_painting_gets_full_resolution_masks():
    height, width = 4500, 6000
    rows = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    cols = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[..., 0] = rows.astype(np.uint8)
    rgb[..., 1] = cols.astype(np.uint8)
    rgb[..., 2] = 90
    rgb[1000:2500, 2000:4000] = (210, 40, 35)  # a red panel
    predictor = StarterPredictor()
    predictor.set_image(rgb)
    proposals = predictor.propose(EMOTIONS, with_probability=True)
    for p in proposals:
        assert p.mask.shape == (height, width) and p.mask.any()
        assert p.probability.shape == (height, width)
    anger = proposals[EMOTIONS.index("anger")]
    assert anger.mask[1000:2500, 2000:4000].mean() > 0.9
    refined = predictor.refine("anger", np.array([[10, 10]]), np.array([1]))
    assert refined.mask[10, 10] and refined.mask.shape == (height, width)
    tiny = np.zeros((height, width), bool)
    tiny[4400, 5900] = True
    assert "lower right" in predictor.explain("fear", tiny)


def test_regions_are_parts_of_the_painting(painted):
    from scipy import ndimage

    config = StarterConfig()
    for name, (rgb, predictor, _) in painted.items():
        labels_map = predictor.region_labels
        assert labels_map.shape == rgb.shape[:2]
        n = labels_map.max() + 1
        assert config.min_regions <= n <= config.max_regions, name
        areas = np.bincount(labels_map.ravel()) / labels_map.size
        assert areas.min() >= config.min_region_fraction * 0.9, name
        for region in range(n):
            _, parts = ndimage.label(labels_map == region)
            assert parts == 1, (name, region)  # merging only joins neighbours


def test_config_is_checked():
    with pytest.raises(EmoSEMError, match="min_regions"):
        StarterConfig(min_regions=8, max_regions=4)
    with pytest.raises(EmoSEMError, match="working_side"):
        StarterConfig(working_side=8)
    predictor = StarterPredictor(StarterConfig(working_side=256, max_regions=6, min_regions=3))
    predictor.set_image(load_image(PAINTING_FILES[0]))
    assert predictor.region_labels.max() + 1 <= 6
