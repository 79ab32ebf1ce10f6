"""evaluate: a live Predictor and a predictions dataset against ground truth, core and CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from napari_emosem.cli import main
from napari_emosem.data import Stimulus, StimulusDataset
from napari_emosem.evaluate import (
    PairPrediction,
    evaluate,
    evaluate_report,
    format_table,
    predictions_from_dataset,
    predictions_from_predictor,
)
from napari_emosem.image_io import image_digest, load_image
from napari_emosem.paintings import painting_paths
from napari_emosem.predictor import Predictor, Proposal

PAINTINGS = painting_paths()
SHIFT = {"fear": 12, "awe": 4}
CANDIDATES = {"fear": "the dark shadows scare me", "sadness": "the grey sky is sad", "awe": "huge mountains"}


def rect(shape, top, left, h, w) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[top : top + h, left : left + w] = True
    return m


def shifted(mask: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros_like(mask)
    out[:, k:] = mask[:, :-k]
    return out


@pytest.fixture(scope="module")
def truth(tmp_path_factory) -> StimulusDataset:
    root = tmp_path_factory.mktemp("gt") / "gt"
    ds = StimulusDataset.open(root, create=True)
    s0 = load_image(PAINTINGS[0]).shape[:2]
    s1 = load_image(PAINTINGS[1]).shape[:2]
    ds.write_painting(PAINTINGS[0], stimuli=[
        Stimulus("fear", rect(s0, 10, 10, 50, 40), ["dark shadows scare me", "the black corner is scary"]),
        Stimulus("awe", no_stimulus=True),  # empty mask: skipped by the protocol
        Stimulus("sadness", explanations=["the grey sky is sad"]),  # text only
    ])  # fmt: skip
    ds.write_painting(PAINTINGS[1], stimuli=[
        Stimulus("awe", rect(s1, 100, 50, 30, 60), ["the huge mountains"]),
        Stimulus("fear", rect(s1, 0, 0, 20, 20)),
    ])  # fmt: skip
    return ds


# Hand-computed IoUs of the ground-truth rectangles shifted right by SHIFT[emotion] pixels:
# IoU = (w - k) / (w + k) for a rectangle of width w.
EXPECTED = {
    (0, "fear"): (40 - 12) / (40 + 12),  # 0.538
    (1, "awe"): (60 - 4) / (60 + 4),  # 0.875
    (1, "fear"): (20 - 12) / (20 + 12),  # 0.25 exactly: counts for Acc@0.25, not Acc@0.5
}


class ShiftingPredictor(Predictor):
    """A real Predictor: proposes the ground-truth mask moved right by SHIFT[emotion] pixels, as a
    soft map (0.2 outside, 0.8 inside, so min-max normalisation matters), with fixed drafts."""

    name = "shift-test"

    def __init__(self, truth: StimulusDataset):
        self.truth = truth
        self.by_digest = {image_digest(truth.image(p)): p for p in truth.paintings}
        self._image = None
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def set_image(self, image):
        self._image = image
        self.painting = self.by_digest[image_digest(image)]

    def propose(self, emotions, *, explain=True, with_probability=False):
        self._require_image()
        self.calls.append((self.painting.file_name, tuple(emotions)))
        out = []
        for emotion in emotions:
            record = self.truth.stimulus(self.painting, emotion)
            mask = np.zeros(self.painting.shape, bool)
            if record is not None and record.has_mask and emotion in SHIFT:
                mask = shifted(record.mask, SHIFT[emotion])
            probability = (0.2 + 0.6 * mask).astype(np.float32) if with_probability else None
            text = CANDIDATES.get(emotion, "") if explain else ""
            out.append(Proposal(emotion, mask, 0.5, text, probability))
        return out

    def refine(self, emotion, points, labels, *, explain=False):
        return self.propose([emotion], explain=explain)[0]

    def explain(self, emotion, mask):
        return CANDIDATES.get(emotion, "")


def _expected_ious(truth):
    names = [p.file_name for p in truth.paintings]
    return {(names[i], e): v for (i, e), v in EXPECTED.items()}


def test_predictor_segmentation_and_explanations(truth):
    predictor = ShiftingPredictor(truth)
    report = evaluate_report(truth, predictions_from_predictor(predictor, truth))
    names = [p.file_name for p in truth.paintings]
    # asked once per painting, for the emotions that have ground truth (text-only ones too)
    assert predictor.calls == [(names[0], ("fear", "sadness")), (names[1], ("awe", "fear"))]

    seg = report.metrics["segmentation"]
    ious = list(EXPECTED.values())
    assert seg["pairs"] == 3
    assert seg["miou"] == pytest.approx(np.mean(ious))
    assert seg["acc_25"] == pytest.approx(1.0) and seg["acc_50"] == pytest.approx(2 / 3)
    fear = seg["per_emotion"]["fear"]
    assert fear == {"miou": pytest.approx((EXPECTED[(0, "fear")] + 0.25) / 2), "acc_25": 1.0,
                    "acc_50": 0.5, "pairs": 2}  # fmt: skip
    assert seg["per_emotion"]["awe"]["miou"] == pytest.approx(0.875)
    assert seg["per_emotion"]["sadness"]["pairs"] == 0 and seg["per_emotion"]["sadness"]["miou"] is None
    assert report.skipped_empty == 1 and report.missing_masks == []

    exp = report.metrics["explanation"]
    assert report.explanation_pairs["all"] == 3
    assert exp["per_emotion"]["sadness"]["bleu_4"] == pytest.approx(1.0, abs=1e-6)  # identical
    # "the dark shadows scare me" vs its references: unigrams 5/5, bigrams 3/4, closest length 5
    assert exp["per_emotion"]["fear"]["bleu_1"] == pytest.approx(1.0, abs=1e-6)
    assert exp["per_emotion"]["fear"]["bleu_2"] == pytest.approx(math.sqrt(3 / 4), abs=1e-6)
    assert all(exp[k] is not None for k in ("bleu_1", "meteor", "rouge_l", "cider"))
    assert exp["per_emotion"]["anger"]["bleu_1"] is None

    table = format_table(report)
    assert "overall" in table and "fear" in table and "1 ground-truth records with an empty mask" in table


def test_metrics_dict_has_exactly_the_documented_shape(truth):
    metrics = evaluate(truth, predictions_from_predictor(ShiftingPredictor(truth), truth, explain=False),
                       explanations=False)  # fmt: skip
    assert set(metrics) == {"segmentation", "explanation"}
    assert set(metrics["segmentation"]) == {"miou", "acc_25", "acc_50", "pairs", "per_emotion"}
    assert set(metrics["explanation"]) == {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor",
                                           "rouge_l", "cider", "per_emotion"}  # fmt: skip
    assert list(metrics["segmentation"]["per_emotion"]) == [
        "amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness"
    ]
    assert metrics["explanation"]["bleu_1"] is None
    json.dumps(metrics)


def test_missing_and_unmatched_predictions(truth):
    names = [p.file_name for p in truth.paintings]
    p1 = truth.painting(names[1])
    awe = truth.stimulus(p1, "awe").mask
    predictions = {
        (names[1], "awe"): PairPrediction(p1.name, "awe", mask=awe),  # by file stem; exact
        ("x", "fear"): PairPrediction("not-in-gt.png", "fear", mask=awe),
        (names[1], "anger"): PairPrediction(names[1], "anger", mask=awe),  # no such GT pair
    }
    report = evaluate_report(truth, predictions, explanations=False)
    seg = report.metrics["segmentation"]
    assert seg["pairs"] == 3 and seg["miou"] == pytest.approx(1 / 3)  # two masks missing: IoU 0
    assert sorted(report.missing_masks) == sorted([f"{names[0]}/fear", f"{names[1]}/fear"])
    assert report.unmatched_predictions == 2
    only_awe = evaluate(truth, predictions, emotions="awe", explanations=False)
    assert list(only_awe["segmentation"]["per_emotion"]) == ["awe"]
    assert only_awe["segmentation"]["miou"] == 1.0


def _prediction_dataset(truth, root: Path) -> StimulusDataset:
    """A second annotator: the same paintings saved from arrays (so as .png), masks shifted,
    and P1's fear pair not annotated."""
    pred = StimulusDataset.open(root, create=True)
    for i, p in enumerate(truth.paintings):
        stimuli = []
        for s in truth.stimuli(p):
            if s.emotion in SHIFT and s.has_mask and not s.no_stimulus and not (i == 1 and s.emotion == "fear"):
                stimuli.append(Stimulus(s.emotion, shifted(s.mask, SHIFT[s.emotion]), [CANDIDATES[s.emotion]]))
        pred.write_painting(truth.image(p), p.file_name, stimuli)
    return pred


def test_predictions_dataset_matches_by_stem(truth, tmp_path):
    pred = _prediction_dataset(truth, tmp_path / "pred")
    assert all(p.file_name.endswith(".png") for p in pred.paintings)
    report = evaluate_report(truth, predictions_from_dataset(pred, truth), explanations=False)
    seg = report.metrics["segmentation"]
    assert seg["pairs"] == 3
    assert seg["miou"] == pytest.approx((EXPECTED[(0, "fear")] + EXPECTED[(1, "awe")] + 0.0) / 3)
    assert len(report.missing_masks) == 1


def test_cli_with_predictions(truth, tmp_path, capsys):
    pred = _prediction_dataset(truth, tmp_path / "pred")
    out = tmp_path / "metrics.json"
    code = main(["evaluate", "--data", str(truth.root), "--predictions", str(pred.root),
                 "--json", str(out), "--no-explanations"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    written = json.loads(out.read_text())
    assert written == evaluate(truth, predictions_from_dataset(pred, truth), explanations=False)
    assert "overall" in printed and "scored 0" in printed


def test_cli_with_a_model(truth, tmp_path, capsys, monkeypatch):
    from napari_emosem.cli import evaluate as cli_evaluate

    loaded = []

    def load(spec, device):
        loaded.append((spec, device))
        return ShiftingPredictor(truth)

    monkeypatch.setattr(cli_evaluate, "_load_predictor", load)
    out = tmp_path / "m.json"
    code = main(["evaluate", "--data", str(truth.root), "--model", "anything", "--device", "cpu",
                 "--json", str(out), "--no-explanations", "--emotions", "fear,awe"])  # fmt: skip
    assert code == 0 and loaded == [("anything", "cpu")]
    seg = json.loads(out.read_text())["segmentation"]
    assert seg["miou"] == pytest.approx(np.mean(list(EXPECTED.values())))
    assert list(seg["per_emotion"]) == ["awe", "fear"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    code = main(["evaluate", "--data", str(tmp_path / "nope"), "--predictions", str(tmp_path), "--no-explanations"])
    assert code == 2
    assert "no such folder" in capsys.readouterr().err
    code = main(["evaluate", "--data", str(tmp_path), "--predictions", str(tmp_path), "--emotions", "joy"])
    assert code == 2
    assert "unknown emotion 'joy'" in capsys.readouterr().err


def test_cli_with_the_real_starter_model(tmp_path, monkeypatch, capsys):
    from napari_emosem import toy
    from napari_emosem.loading import load_predictor
    from napari_emosem.metrics import apolo_iou

    monkeypatch.setenv("EMOSEM_CACHE_DIR", str(tmp_path / "cache"))  # no SAM weights: regions only
    gt = StimulusDataset.open(tmp_path / "toy", create=True)
    for i, painting in enumerate(toy.toy_paintings(2, seed=3)):
        gt.write_painting(
            painting.image,
            f"toy{i}.png",
            [Stimulus(e, painting.masks[e], [painting.explanations[e]]) for e in painting.emotions],
        )
    out = tmp_path / "starter.json"
    code = main(["evaluate", "--data", str(gt.root), "--model", "starter", "--device", "cpu",
                 "--json", str(out), "--no-explanations"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    seg = json.loads(out.read_text())["segmentation"]
    # the same starter model, pair by pair: the CLI scores each painting's own soft maps
    predictor = load_predictor("starter", device="cpu")
    expected: dict[str, list[float]] = {}
    for painting, s in gt.pairs(with_masks_only=True):
        predictor.set_image(gt.image(painting))
        (proposal,) = predictor.propose([s.emotion], explain=False, with_probability=True)
        expected.setdefault(s.emotion, []).append(apolo_iou(proposal.probability, s.mask))
    everything = [v for values in expected.values() for v in values]
    assert seg["pairs"] == len(everything) == len(gt.pairs(with_masks_only=True))
    assert seg["miou"] == pytest.approx(np.mean(everything), abs=1e-9)
    assert seg["acc_25"] == pytest.approx(np.mean(np.array(everything) >= 0.25), abs=1e-9)
    for emotion, values in expected.items():
        assert seg["per_emotion"][emotion]["miou"] == pytest.approx(np.mean(values), abs=1e-9)
