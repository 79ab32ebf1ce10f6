"""Several annotators, data layer: three generated annotators (each perturbs the true masks their
own way) annotate copies of one campaign; `emosem merge` joins them (paintings matched by their
pixels, conflicts listed), `emosem agreement` gives the figures a hand computation gives, and
`emosem export --consensus` writes consensus maps pixel for pixel. Definitions: docs/annotators.md.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from napari_emosem.cli import main as emosem
from napari_emosem.data import Stimulus, StimulusDataset

H, W = 60, 80
EMOTIONS = ("awe", "fear")
NAMES = ("p0.png", "p1.png", "p2.png", "p3.png")


def rgb(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def truth(painting: int, emotion: str) -> np.ndarray:
    """The stimulus every annotator sees, each in their own way: an ellipse."""
    yy, xx = np.mgrid[:H, :W]
    cy, cx = 20 + 6 * painting, 25 + 10 * EMOTIONS.index(emotion) + 3 * painting
    return ((yy - cy) / 12) ** 2 + ((xx - cx) / 16) ** 2 < 1


# how each annotator draws a stimulus (None: they say "no stimulus"; absent: they skip the pair)
def ana(painting: int, emotion: str) -> np.ndarray | None:
    return ndimage.binary_dilation(truth(painting, emotion), iterations=2)


def bo(painting: int, emotion: str) -> np.ndarray | None:
    if (painting, emotion) == (2, "fear"):
        return None  # bo sees no fear in painting 2
    return np.roll(truth(painting, emotion), 4, axis=1)


def chen(painting: int, emotion: str) -> np.ndarray | None:
    if (painting, emotion) == (1, "awe"):
        return None
    return ndimage.binary_erosion(truth(painting, emotion), iterations=3)


ANNOTATORS = {"ana": ana, "bo": bo, "chen": chen}
#: pairs an annotator did not annotate at all
SKIPPED = {("chen", 3, "fear"), ("bo", 0, "awe")}


def votes(painting: int, emotion: str) -> dict[str, np.ndarray]:
    """Every annotator's vote on a pair, as the test knows it: mask (empty for no stimulus)."""
    out = {}
    for name, draw in ANNOTATORS.items():
        if (name, painting, emotion) in SKIPPED:
            continue
        mask = draw(painting, emotion)
        out[name] = np.zeros((H, W), bool) if mask is None else mask
    return out


@pytest.fixture(scope="module")
def copies(tmp_path_factory) -> dict[str, Path]:
    """The campaign (four paintings, the model's drafts), and each annotator's copy of it."""
    from napari_emosem.data import PaintingUpdate

    base = tmp_path_factory.mktemp("annotators")
    campaign = StimulusDataset.open(base / "campaign", create=True)
    drafts = [Stimulus(e, np.ones((H, W), bool), ["a draft"], source="model:m", score=0.3) for e in EMOTIONS]
    campaign.write_paintings(PaintingUpdate(rgb(i), name, drafts) for i, name in enumerate(NAMES))
    out = {"campaign": campaign.root}
    for name, draw in ANNOTATORS.items():
        root = base / name
        shutil.copytree(campaign.root, root)
        ds = StimulusDataset.open(root)
        for i, painting in enumerate(NAMES):
            records = []
            for emotion in EMOTIONS:
                if (name, i, emotion) in SKIPPED:
                    continue
                mask = draw(i, emotion)
                text = [f"{name}: {emotion} in painting {i}"]
                records.append(
                    Stimulus(emotion, no_stimulus=True, annotator=name, annotation_seconds=5)
                    if mask is None
                    else Stimulus(emotion, mask, text, annotator=name, annotation_seconds=20)
                )
            ds.write_painting(None, painting, records, writer=name, records="merge")
        out[name] = root
    # bo's laptop stored painting 1 as another PNG under another name (same pixels, other bytes),
    # and holds a painting of its own under a name the campaign uses for another one
    bo_root = out["bo"]
    ds = StimulusDataset.open(bo_root)
    kept = ds.records("p1.png")
    Image.fromarray(rgb(1)).save(base / "p1-again.png", compress_level=0)
    ds.remove_painting("p1.png")
    ds.write_painting(base / "p1-again.png", "bo-p1.png", kept)
    ds.write_painting(rgb(99), "p3-bo.png", [])
    Image.fromarray(rgb(42)).save(base / "x2.png")
    ds.write_painting(
        base / "x2.png", "elsewhere/x2.png", [Stimulus("awe", truth(0, "awe"), ["other"], annotator="bo")]
    )
    assert (bo_root / "images" / "bo-p1.png").read_bytes() != (out["ana"] / "images" / "p1.png").read_bytes()
    # ana also annotated on a second machine: one pair again, later, differently
    ana2 = base / "ana2"
    shutil.copytree(out["ana"], ana2)
    ds = StimulusDataset.open(ana2)
    later = Stimulus("fear", truth(3, "fear"), ["ana, second thoughts"], annotator="ana")
    ds.write_painting(None, "p3.png", [later], writer="ana", records="merge")
    ds.compact()  # and her clock says so (both copies may be saved within one second here)
    doc = json.loads((ana2 / "annotations.json").read_text())
    for ann in doc["annotations"]:
        if ann["explanations"] == ["ana, second thoughts"]:
            ann["modified"] = "2099-01-01T00:00:00+00:00"
    (ana2 / "annotations.json").write_text(json.dumps(doc))
    out["ana2"] = ana2
    return out


@pytest.fixture(scope="module")
def merged(copies, tmp_path_factory) -> tuple[Path, str, str]:
    import contextlib
    import io

    root = tmp_path_factory.mktemp("merged") / "ds"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = emosem(["merge", str(copies["ana"]), str(copies["bo"]), str(copies["chen"]), str(copies["ana2"]),
                       "--out", str(root)])  # fmt: skip
    assert code == 0, err.getvalue()
    return root, out.getvalue(), err.getvalue()


def test_merge_matches_paintings_by_pixels_and_keeps_every_annotator(copies, merged):
    root, out, err = merged
    ds = StimulusDataset.open(root)
    # bo's bo-p1.png is p1.png (same pixels, other bytes); bo's elsewhere/x2.png is a painting of its
    # own; p3-bo.png too
    assert sorted(p.file_name for p in ds.paintings) == sorted([*NAMES, "elsewhere/x2.png", "p3-bo.png"])
    assert f"{copies['bo']}: bo-p1.png shows the same pixels as p1.png: merged into it" in out
    for i, name in enumerate(NAMES):
        for emotion in EMOTIONS:
            pair = ds.pair(name, emotion)
            assert pair.draft is None  # every pair was reviewed by somebody: the drafts are gone
            assert pair.annotators == sorted(votes(i, emotion)), (name, emotion)
    assert np.array_equal(ds.pair("p1.png", "fear").votes[1].mask, bo(1, "fear"))  # bo's, from the renamed file


def test_same_name_other_pixels_is_another_painting(copies, tmp_path):
    ds = StimulusDataset.open(copies["chen"])
    other = tmp_path / "p2.png"
    Image.fromarray(rgb(7)).save(other)
    chen_other = tmp_path / "chen-other"
    shutil.copytree(copies["chen"], chen_other)
    mine = StimulusDataset.open(chen_other)
    mine.remove_painting("p2.png")
    mine.write_painting(other, "p2.png", [Stimulus("awe", truth(2, "awe"), ["different picture"], annotator="chen")])
    assert ds.painting("p2.png") is not None
    assert emosem(["merge", str(copies["ana"]), str(chen_other), "--out", str(tmp_path / "m")]) == 0
    merged = StimulusDataset.open(tmp_path / "m")
    assert {p.file_name for p in merged.paintings} == {*NAMES, "p2-2.png"}
    assert np.array_equal(merged.image("p2-2.png"), np.asarray(Image.open(other).convert("RGB")))
    assert [s.explanations for s in merged.records("p2-2.png")] == [["different picture"]]
    assert [s.annotator for s in merged.records("p2.png")] == ["ana", "ana"]  # chen's p2 went with its pixels


def test_merge_lists_each_conflict_and_keeps_the_newer_record(merged):
    root, _, err = merged
    lines = [line for line in err.splitlines() if "conflict:" in line]
    assert len(lines) == 1, err
    assert (
        "p3.png, fear, annotator ana: the two copies differ; kept" in lines[0]
        and "ana2's (modified 2099-01-01" in lines[0]
    )
    ds = StimulusDataset.open(root)
    [record] = [r for r in ds.records("p3.png", "fear") if r.annotator == "ana"]
    assert record.explanations == ["ana, second thoughts"]


def texts(i: int, emotion: str, voters: dict) -> set[str]:
    """What the annotators who drew a mask on the pair wrote."""
    out = {f"{n}: {emotion} in painting {i}" for n in voters if voters[n].any()}
    if (i, emotion) == (3, "fear"):
        out = out - {"ana: fear in painting 3"} | {"ana, second thoughts"}
    return out


def _hand_agreement() -> dict:
    """The agreement figures, computed here from the masks the annotators drew (not from the
    dataset), following docs/annotators.md word by word."""
    pair_means, per_emotion, per_names = [], {e: [] for e in EMOTIONS}, {}
    agree = total = 0
    units = []
    for i in range(len(NAMES)):
        for emotion in EMOTIONS:
            v = votes(i, emotion)
            if i == 3 and emotion == "fear":
                v["ana"] = truth(3, "fear")  # the newer of ana's two records
            if len(v) < 2:
                continue
            units.append({name: int(mask.any()) for name, mask in v.items()})
            ious = []
            for a, b in itertools.combinations(sorted(v), 2):
                total += 1
                agree += v[a].any() == v[b].any()
                if v[a].any() and v[b].any():
                    iou = (v[a] & v[b]).sum() / (v[a] | v[b]).sum()
                    ious.append(iou)
                    per_names.setdefault(f"{a}|{b}", []).append(iou)
            if ious:
                pair_means.append(np.mean(ious))
                per_emotion[emotion].append(np.mean(ious))
    return {
        "pairs_compared": len(units),
        "mean": np.mean(pair_means),
        "per_emotion": {e: np.mean(v) for e, v in per_emotion.items()},
        "per_names": {k: np.mean(v) for k, v in per_names.items()},
        "percent": 100 * agree / total,
        "alpha": _nominal_alpha(units),
    }


def _nominal_alpha(units: list[dict[str, int]]) -> float:
    """Krippendorff's alpha for nominal data from its coincidence matrix (Krippendorff 2011,
    "Computing Krippendorff's alpha-reliability"): 1 - (n - 1) (o_01 + o_10) / (2 n_0 n_1)."""
    o = np.zeros((2, 2))
    for unit in units:
        values = list(unit.values())
        m = len(values)
        for a, b in itertools.permutations(range(m), 2):
            o[values[a], values[b]] += 1 / (m - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    observed = o[0, 1] + o[1, 0]
    expected = (n_c[0] * n_c[1] * 2) / (n - 1)
    return 1 - observed / expected


def test_agreement_figures_are_the_hand_computed_ones(merged, tmp_path, capsys):
    root, _, _ = merged
    path = tmp_path / "agreement.json"
    assert emosem(["agreement", str(root), "--json", str(path)]) == 0
    doc = json.loads(path.read_text())
    hand = _hand_agreement()
    assert doc["annotators"] == ["ana", "bo", "chen"]
    assert doc["pairs_compared"] == hand["pairs_compared"] == 8
    assert doc["mask_iou"]["mean"] == pytest.approx(hand["mean"], abs=1e-4)
    assert doc["mask_iou"]["per_emotion"] == pytest.approx(hand["per_emotion"], abs=1e-4)
    assert doc["mask_iou"]["per_annotator_pair"] == pytest.approx(hand["per_names"], abs=1e-4)
    assert doc["presence"]["percent"] == pytest.approx(hand["percent"], abs=1e-2)
    assert doc["presence"]["alpha"] == pytest.approx(hand["alpha"], abs=1e-4)
    assert 0.3 < doc["mask_iou"]["mean"] < 0.9 and doc["presence"]["percent"] < 100  # they do disagree
    assert "mask IoU:" in capsys.readouterr().out
    # an adjudicated record is not a vote: the figures stay
    ds = StimulusDataset.open(root)
    decision = Stimulus("fear", truth(0, "fear"), ["agreed"], annotator="rev", adjudicated=True)
    ds.write_painting(None, "p0.png", [decision], records="merge")
    assert emosem(["agreement", str(root), "--json", str(path)]) == 0
    assert json.loads(path.read_text()) == doc
    ds.write_painting(None, "p0.png", [], records="exact", writer="rev")  # rev has no own record: nothing goes
    assert StimulusDataset.open(root).pair("p0.png", "fear").adjudicated is not None


def test_consensus_maps_pixel_for_pixel_through_export(merged, tmp_path):
    root, _, _ = merged
    ds = StimulusDataset.open(root)
    adjudicated = ds.pair("p0.png", "fear").adjudicated  # from the agreement test, if it ran first
    out = tmp_path / "apolo"
    assert emosem(["export", str(root), "--format", "apolo", "--consensus", "--out", str(out)]) == 0
    rows = {(r["painting"], r["emotion"]): r for r in json.loads((out / "apolo.json").read_text())}
    for i, name in enumerate(NAMES):
        for emotion in EMOTIONS:
            got = np.load(out / "apolo_pixel_map" / f"p{i}_{emotion}.npy")
            assert got.dtype == np.float32 and got.shape == (H, W)
            v = votes(i, emotion)
            if i == 3 and emotion == "fear":
                v["ana"] = truth(3, "fear")
            expected = sum(m.astype(np.float32) for m in v.values()) / np.float32(len(v))
            if (name, emotion) == ("p0.png", "fear") and adjudicated is not None:
                expected = truth(0, "fear").astype(np.float32)
            assert np.array_equal(got, expected), (name, emotion)
            row = rows[(f"p{i}", emotion)]
            assert row["annotators"] == sorted(v)
            assert texts(i, emotion, v) <= set(row["utterances"])

    coco = tmp_path / "coco"
    assert emosem(["export", str(root), "--format", "coco", "--consensus", "--out", str(coco)]) == 0
    from pycocotools.coco import COCO

    api = COCO(str(coco / "annotations.json"))
    by_name = {img["file_name"]: img["id"] for img in api.dataset["images"]}
    categories = {c["name"]: c["id"] for c in api.dataset["categories"]}
    for i, name in enumerate(NAMES):
        for emotion in EMOTIONS:
            [ann] = api.loadAnns(api.getAnnIds(imgIds=[by_name[name]], catIds=[categories[emotion]]))
            v = votes(i, emotion)
            if i == 3 and emotion == "fear":
                v["ana"] = truth(3, "fear")
            majority = sum(m.astype(np.float32) for m in v.values()) / np.float32(len(v)) >= 0.5
            if (name, emotion) == ("p0.png", "fear") and adjudicated is not None:
                majority = truth(0, "fear")
            assert np.array_equal(api.annToMask(ann).astype(bool), majority), (name, emotion)
            assert ann["annotators"] == sorted(v) and not ann["adjudicated"]
            assert texts(i, emotion, v) <= set(ann["explanations"])
    assert emosem(["export", str(root), "--format", "png", "--consensus", "--out", str(tmp_path / "png")]) == 2


def test_the_consensus_of_the_others_for_the_human_ceiling(merged):
    root, _, _ = merged
    pair = StimulusDataset.open(root).pair("p2.png", "awe")
    v = votes(2, "awe")
    for name in v:
        others = [m for n, m in v.items() if n != name]
        expected = sum(m.astype(np.float32) for m in others) / np.float32(len(others))
        assert np.array_equal(pair.consensus_map(without=name), expected)
