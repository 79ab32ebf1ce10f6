"""Several annotators, model side: training learns each pair's target (the adjudicated mask, else
the consensus map as a soft target), every annotator's explanation is a reference, and
`emosem evaluate` reports the human ceiling. Definitions: docs/annotators.md ("Training and
evaluation"). Three generated annotators draw the toy paintings' true stimuli each their own way.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_emosem.checkpoint import read_checkpoint
from napari_emosem.cli import main as emosem
from napari_emosem.config import LossWeights
from napari_emosem.data import Stimulus, StimulusDataset
from napari_emosem.emotions import EMOTIONS
from napari_emosem.evaluate import evaluate_report, format_table, predictions_from_dataset
from napari_emosem.modeling.emosem import soft_dice_loss
from napari_emosem.modeling.transforms import geometry_for, mask_to_lowres
from napari_emosem.reporting import training_data_line
from napari_emosem.toy import toy_paintings
from napari_emosem.training import from_datasets
from napari_emosem.training.trainer import _bleu4

SIZE = (96, 128)


# how each annotator draws a true stimulus (None: "no stimulus")
def ana(truth: np.ndarray, painting: int, emotion_index: int) -> np.ndarray | None:
    return ndimage.binary_dilation(truth, iterations=3)


def bo(truth: np.ndarray, painting: int, emotion_index: int) -> np.ndarray | None:
    return np.roll(truth, 5, axis=1)


def chen(truth: np.ndarray, painting: int, emotion_index: int) -> np.ndarray | None:
    if (painting, emotion_index) == (0, 0):
        return None  # chen sees no such stimulus in painting 0
    return ndimage.binary_erosion(truth, iterations=2)


ANNOTATORS = {"ana": ana, "bo": bo, "chen": chen}
SKIPPED = {("bo", 2, 1)}  # bo did not annotate painting 2's second emotion
ADJUDICATED = (1, 0)  # painting 1's first emotion: the reviewer chose the true mask
DRAFT_PAINTING = 3  # and a model draft on an emotion nobody annotated


def explanation(name: str, toy, emotion: str) -> str:
    return f"{name} says {toy.explanations[emotion]}"


@pytest.fixture(scope="module")
def toys():
    return toy_paintings(4, seed=11, size=SIZE, n_stimuli=(2, 3))


@pytest.fixture(scope="module")
def annotated(toys, tmp_path_factory):
    """A dataset where three annotators annotated every toy painting (written in their order, so
    chen's record is each pair's newest: its effective record)."""
    root = tmp_path_factory.mktemp("three") / "ds"
    ds = StimulusDataset.open(root, create=True)
    for i, toy in enumerate(toys):
        ds.write_painting(toy.image, f"toy-{i}.png", [])
    absent = next(e for e in EMOTIONS if e not in toys[DRAFT_PAINTING].emotions)
    draft = np.zeros(SIZE, bool)
    draft[10:40, 10:50] = True
    ds.write_painting(
        None, f"toy-{DRAFT_PAINTING}.png", [Stimulus(absent, draft, ["a draft"], source="model:tiny")], records="merge"
    )
    for name, draw in ANNOTATORS.items():
        for i, toy in enumerate(toys):
            records = []
            for j, emotion in enumerate(toy.emotions):
                if (name, i, j) in SKIPPED:
                    continue
                mask = draw(toy.masks[emotion], i, j)
                records.append(
                    Stimulus(emotion, no_stimulus=True, annotator=name)
                    if mask is None
                    else Stimulus(emotion, mask, [explanation(name, toy, emotion)], annotator=name)
                )
            ds.write_painting(None, f"toy-{i}.png", records, writer=name, records="merge")
    i, j = ADJUDICATED
    emotion = toys[i].emotions[j]
    adjudicated = Stimulus(
        emotion, toys[i].masks[emotion], ["the reviewer's reading"], annotator="rev", adjudicated=True
    )
    ds.write_painting(None, f"toy-{i}.png", [adjudicated], records="merge")
    return root, absent


def votes_by_hand(toys, i: int, j: int) -> list[np.ndarray]:
    """The annotators' votes on a pair as the test knows them (empty mask for "no stimulus")."""
    truth = toys[i].masks[toys[i].emotions[j]]
    out = []
    for name, draw in ANNOTATORS.items():
        if (name, i, j) not in SKIPPED:
            mask = draw(truth, i, j)
            out.append(np.zeros(SIZE, bool) if mask is None else mask)
    return out


def test_a_pairs_training_target_is_its_consensus_map_or_adjudicated_mask(toys, annotated):
    root, absent = annotated
    data = from_datasets([root])
    pairs = {(p.key.split("/")[1], pair.emotion): pair for p in data.paintings for pair in p.pairs}
    expected_keys = {(f"toy-{i}.png", e) for i, toy in enumerate(toys) for e in toy.emotions}
    assert set(pairs) == expected_keys  # the draft is not trained on: it is unreviewed
    soft_levels = set()
    for i, toy in enumerate(toys):
        for j, emotion in enumerate(toy.emotions):
            target = pairs[(f"toy-{i}.png", emotion)].target()
            if (i, j) == ADJUDICATED:
                np.testing.assert_array_equal(target, toy.masks[emotion].astype(np.float32))
                continue
            votes = votes_by_hand(toys, i, j)
            by_hand = np.sum(votes, axis=0, dtype=np.float32) / np.float32(len(votes))
            assert target.dtype == np.float32
            np.testing.assert_array_equal(target, by_hand)
            soft_levels |= {round(float(v), 4) for v in np.unique(target)} - {0.0, 1.0}
    assert soft_levels == {0.3333, 0.5, 0.6667}  # three voters, and two where bo skipped
    # every person's explanation, the adjudicator's first; the draft's nowhere
    i, j = ADJUDICATED
    adjudicated = pairs[(f"toy-{i}.png", toys[i].emotions[j])]
    assert adjudicated.explanations == ["the reviewer's reading"] + [
        explanation(n, toys[i], toys[i].emotions[j]) for n in ANNOTATORS
    ]
    n_pairs = len(expected_keys)
    assert data.summary["targets"] == {"adjudicated": 1, "consensus": n_pairs - 1}
    assert training_data_line(data.summary) == (
        f"training on {n_pairs} reviewed pairs from 4 paintings; 1 unreviewed draft left out "
        f"(targets: {n_pairs - 1} consensus maps, 1 adjudicated mask)"
    )
    # drafts count only when asked for, and then only where nobody voted
    everything = from_datasets([root], include_unreviewed=True)
    extra = {(p.key.split("/")[1], pair.emotion): pair for p in everything.paintings for pair in p.pairs}
    assert set(extra) == expected_keys | {(f"toy-{DRAFT_PAINTING}.png", absent)}
    assert extra[(f"toy-{DRAFT_PAINTING}.png", absent)].target().sum() == 30 * 40
    assert everything.summary["unreviewed_pairs"] == 1


def test_soft_targets_reach_the_low_resolution_frame_as_fractions():
    geometry = geometry_for(64, 64, 64)
    third = np.full((64, 64), 1 / 3, np.float32)
    assert torch.allclose(mask_to_lowres(third, geometry, 16), torch.full((16, 16), 85 / 255))
    # one annotator: the float 0/1 consensus gives exactly what the bool mask always gave
    mask = np.zeros((50, 64), bool)
    mask[5:30, 7:40] = True
    geometry = geometry_for(50, 64, 64)
    assert torch.equal(mask_to_lowres(mask, geometry, 16), mask_to_lowres(mask.astype(np.float32), geometry, 16))


def test_the_mask_loss_learns_a_soft_target_as_it_is():
    target = torch.full((1, 8, 8), 0.5)
    target[0, :3] = 1.0
    target[0, 6:] = 0.0

    def fit(dice, bce_weight):
        logits = torch.zeros(1, 8, 8, requires_grad=True)
        opt = torch.optim.Adam([logits], lr=0.05)
        for _ in range(1000):
            opt.zero_grad()
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
            (bce_weight * bce + LossWeights().mask_dice * dice(logits.sigmoid(), target)).backward()
            opt.step()
        return logits.detach().sigmoid()

    def usual_dice(prob, t):
        return (1 - (2 * (prob * t).sum((1, 2)) + 1) / (prob.sum((1, 2)) + t.sum((1, 2)) + 1)).mean()

    # the Dice term alone, and with BCE as the model weighs them: the prediction becomes the target
    assert (fit(soft_dice_loss, 0.0) - target).abs().max() < 0.005
    assert (fit(soft_dice_loss, LossWeights().mask_bce) - target).abs().max() < 0.005
    # the usual soft Dice alone makes a hard mask of a consensus of 0.5 (why it was replaced)
    assert fit(usual_dice, 0.0)[0, 4].min() > 0.99
    # on 0/1 targets the two are the same
    prob = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    hard = (torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1)) > 0.6).float()
    assert torch.allclose(soft_dice_loss(prob, hard), usual_dice(prob, hard), atol=1e-6)


def test_a_changed_vote_changes_the_data_hash(toys, annotated, tmp_path):
    root, _ = annotated
    recorded = from_datasets([root]).data_hash
    changed = tmp_path / root.name
    shutil.copytree(root, changed)
    ds = StimulusDataset.open(changed)
    toy, emotion = toys[2], toys[2].emotions[0]
    moved = np.roll(bo(toy.masks[emotion], 2, 0), 3, axis=0)
    ds.write_painting(None, "toy-2.png", [Stimulus(emotion, moved, [explanation("bo", toy, emotion)], annotator="bo")],
                      writer="bo", records="merge")  # fmt: skip
    data = from_datasets([changed])
    assert data.data_hash != recorded
    pair = next(
        pair for p in data.paintings if p.key.endswith("toy-2.png") for pair in p.pairs if pair.emotion == emotion
    )
    votes = votes_by_hand(toys, 2, 0)
    votes[1] = moved
    np.testing.assert_array_equal(pair.target(), np.sum(votes, axis=0, dtype=np.float32) / np.float32(3))


def test_training_on_soft_consensus_targets_end_to_end(annotated, tmp_path, capsys):
    root, _ = annotated
    run = tmp_path / "run"
    args = ["train", "--data", str(root), "--base", "tiny", "--epochs", "2", "--val-fraction", "0.25",
            "--no-text-metrics", "--device", "cpu", "--out", str(run)]  # fmt: skip
    assert emosem(args) == 0
    assert "consensus maps, 1 adjudicated mask)" in capsys.readouterr().err
    meta = read_checkpoint(run).metadata
    assert meta["training"]["targets"]["consensus"] > 0
    assert meta["training"]["data_hash"] == from_datasets([root]).data_hash
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in log] == [1, 2]
    for epoch in log:
        assert all(math.isfinite(v) for v in epoch["losses"].values())
        assert epoch["losses"]["mask_dice"] > 0
    assert meta["metrics"]["validation"]["pairs"] > 0 and meta["metrics"]["validation"]["miou"] is not None


def test_validation_drafts_are_scored_against_every_annotators_explanation(toys, annotated):
    root, _ = annotated
    data = from_datasets([root])
    pair = next(pair for p in data.paintings if p.key.endswith("toy-2.png") for pair in p.pairs)
    bo_says = explanation("bo", toys[2], pair.emotion)
    assert pair.explanations[0] != bo_says and bo_says in pair.explanations
    # what Trainer._validate_main scores: the draft against the pair's explanations
    assert _bleu4({"k": pair.explanations}, {"k": bo_says}) == pytest.approx(1.0, abs=1e-6)


# ---------------------------------------------------------------------------- the human ceiling
def rect(top, left, h=20, w=20) -> np.ndarray:
    m = np.zeros((64, 64), bool)
    m[top : top + h, left : left + w] = True
    return m


ANA, BO, CHEN = rect(10, 10), rect(10, 20), rect(20, 10)
SAYS = {"ana": "the dark corner looks like a threat", "bo": "the dark corner looks like a threat",
        "chen": "the long shadow frightens me a lot"}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_case(tmp_path_factory):
    base = tmp_path_factory.mktemp("ceiling")
    gt = StimulusDataset.open(base / "gt", create=True)
    rng = np.random.default_rng(0)
    gt.write_painting(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "a.png", [])
    gt.write_painting(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "b.png", [])
    votes = {
        "ana": {"a.png": [Stimulus("fear", ANA, [SAYS["ana"]], annotator="ana"),
                          Stimulus("awe", rect(40, 40), annotator="ana")],
                "b.png": [Stimulus("sadness", rect(5, 5, 30, 30), annotator="ana"),
                          Stimulus("anger", rect(30, 30), annotator="ana"),
                          Stimulus("disgust", rect(0, 0, 10, 10), annotator="ana")]},
        "bo": {"a.png": [Stimulus("fear", BO, [SAYS["bo"]], annotator="bo"),
                         Stimulus("awe", no_stimulus=True, annotator="bo")],
               "b.png": [Stimulus("disgust", rect(20, 20, 10, 10), annotator="bo")]},
        "chen": {"a.png": [Stimulus("fear", CHEN, [SAYS["chen"]], annotator="chen")],
                 "b.png": [Stimulus("sadness", rect(5, 5, 30, 30), annotator="chen"),
                           Stimulus("disgust", rect(40, 40, 10, 10), annotator="chen")]},
    }  # fmt: skip
    for name in ("chen", "bo", "ana"):  # ana writes last: her records are the effective ones
        for painting, records in votes[name].items():
            gt.write_painting(None, painting, records, writer=name, records="merge")
    # the model: ana's masks as they are, and chen's sentence for fear
    pred = StimulusDataset.open(base / "pred", create=True)
    pred.write_painting(
        gt.image("a.png"), "a.png", [Stimulus("fear", ANA, [SAYS["chen"]]), Stimulus("awe", rect(40, 40))]
    )
    pred.write_painting(
        gt.image("b.png"), "b.png", [Stimulus("sadness", rect(5, 5, 30, 30)), Stimulus("anger", rect(30, 30))]
    )
    return gt, pred


# By hand. fear: ana vs bo ∪ chen (either of two is a majority of two): 300 / 800; bo vs ana ∪ chen:
# 200 / 800; chen vs ana ∪ bo: 200 / 800. awe: ana's others (bo) say no stimulus, no score; bo
# (empty) vs ana: 0. sadness: ana and chen drew the same square: 1 each. anger: one voter, no
# ceiling. disgust: three disjoint squares: each against the union of the other two: 0.
CEILING = {("ana", "fear"): 0.375, ("bo", "fear"): 0.25, ("chen", "fear"): 0.25, ("bo", "awe"): 0.0,
           ("ana", "sadness"): 1.0, ("chen", "sadness"): 1.0,
           ("ana", "disgust"): 0.0, ("bo", "disgust"): 0.0, ("chen", "disgust"): 0.0}  # fmt: skip
# The model against the majority of all: fear's pixels marked by two of three (300, all inside
# ana's 400): 0.75; awe: ana's square (one of two is half): 1; sadness, anger: 1; disgust has no
# majority pixel: skipped.
MODEL = {"fear": 0.75, "awe": 1.0, "sadness": 1.0, "anger": 1.0}


def test_human_ceiling_against_a_hand_computation(tiny_case, tmp_path, capsys):
    gt, pred = tiny_case
    report = evaluate_report(gt, predictions_from_dataset(pred, gt), explanations=False)
    seg = report.metrics["segmentation"]
    assert seg["pairs"] == 4 and seg["miou"] == pytest.approx(np.mean(list(MODEL.values())))
    assert report.skipped_empty == 1  # disgust
    human = report.metrics["human"]
    assert human["annotators"] == ["ana", "bo", "chen"] and human["pairs"] == 4
    hs = human["segmentation"]
    scores = list(CEILING.values())
    assert hs["scores"] == 9 and hs["miou"] == pytest.approx(np.mean(scores))
    assert hs["acc_25"] == pytest.approx(5 / 9) and hs["acc_50"] == pytest.approx(2 / 9)
    for name in ("ana", "bo", "chen"):
        mine = [v for (a, _), v in CEILING.items() if a == name]
        assert hs["per_annotator"][name]["miou"] == pytest.approx(np.mean(mine))
        assert hs["per_annotator"][name]["scores"] == len(mine)
    assert hs["per_emotion"]["fear"]["miou"] == pytest.approx(0.875 / 3)
    assert hs["per_emotion"]["anger"]["scores"] == 0 and hs["per_emotion"]["anger"]["miou"] is None
    same = human["model"]["segmentation"]  # fear, awe, sadness (disgust has no truth; anger no ceiling)
    assert same["pairs"] == 3 and same["miou"] == pytest.approx((0.75 + 1 + 1) / 3)
    assert human["explanation"]["bleu_4"] is None  # --no-explanations

    out = tmp_path / "m.json"
    assert emosem(["evaluate", "--data", str(gt.root), "--predictions", str(pred.root), "--no-explanations",
                   "--json", str(out)]) == 0  # fmt: skip
    table = capsys.readouterr().out
    assert json.loads(out.read_text())["human"] == json.loads(json.dumps(human))
    assert "human ceiling" in table
    rows = {line.split()[0]: line.split() for line in table.splitlines() if line.strip()}
    assert rows["human"][1:3] == ["9", f"{100 * np.mean(scores):.1f}"]
    assert rows["ana"][1:3] == ["3", f"{100 * (0.375 + 1) / 3:.1f}"]
    assert rows["model,"][3:5] == ["3", f"{100 * 2.75 / 3:.1f}"]


def test_every_annotators_explanation_is_a_reference(tiny_case):
    gt, pred = tiny_case
    report = evaluate_report(gt, predictions_from_dataset(pred, gt))
    # the model's sentence is chen's, and ana's record is the pair's effective one: still BLEU-4 = 1
    assert gt.stimulus("a.png", "fear").annotator == "ana"
    exp = report.metrics["explanation"]
    assert report.explanation_pairs["all"] == 1 and exp["bleu_4"] == pytest.approx(1.0, abs=1e-6)
    # the ceiling: ana's sentence is bo's, word for word (BLEU-4 = 1), and bo's is ana's; chen's
    # shares "the" and "a" with theirs (one text, said twice): scored, lower
    human = report.metrics["human"]["explanation"]
    assert human["scores"] == 3
    assert human["per_annotator"]["ana"]["bleu_4"] == pytest.approx(1.0, abs=1e-6)
    assert human["per_annotator"]["bo"]["bleu_4"] == pytest.approx(1.0, abs=1e-6)
    assert human["per_annotator"]["chen"]["bleu_1"] < 0.5
    assert report.metrics["human"]["model"]["explanation"]["pairs"] == 1
    assert "human" in format_table(report)
