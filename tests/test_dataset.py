"""StimulusDataset: writing, reading back, upserting, pairs, summary, hash, COCO compatibility."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_emosem.data import Painting, PaintingUpdate, Stimulus, StimulusDataset
from napari_emosem.emotions import EMOTIONS, SOMETHING_ELSE
from napari_emosem.errors import DatasetError, UnknownEmotionError
from napari_emosem.image_io import load_image
from napari_emosem.paintings import FOLDER as PAINTINGS


def painting_path(index: int = 0) -> Path:
    return sorted(PAINTINGS.glob("*.jpg"))[index]


def rgb(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def box(shape, top, left, height, width) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + height, left : left + width] = True
    return mask


@pytest.fixture
def ds(tmp_path) -> StimulusDataset:
    return StimulusDataset.open(tmp_path / "ds", create=True)


def test_round_trip_array_and_file(ds, tmp_path):
    image = rgb()
    fear = box((48, 64), 5, 6, 10, 20)
    p = ds.write_painting(
        image,
        "study.jpg",
        [
            Stimulus("Fear", fear, ["dark corner", "the shadow"], annotator="ann"),
            Stimulus("awe", no_stimulus=True),
            Stimulus(SOMETHING_ELSE, explanations="it reminds me of home"),
            Stimulus("sadness", explanations=["grey"], source="model:tiny", score=0.25, edited=True),
        ],
        metadata={"artist": "A. Painter", "title": "Study", "style": "Realism"},
    )
    # an array is stored as PNG: the name follows
    assert p.file_name == "study.png" and (p.width, p.height) == (64, 48)
    source = painting_path(0)
    q = ds.write_painting(source, stimuli=[Stimulus("contentment", explanations=["calm"])])
    assert q.file_name == source.name
    assert (ds.root / "images" / source.name).read_bytes() == source.read_bytes()

    again = StimulusDataset.open(ds.root)
    assert [x.file_name for x in again.paintings] == ["study.png", source.name]
    assert again.painting("study.png").metadata == {"artist": "A. Painter", "title": "Study", "style": "Realism"}
    assert np.array_equal(again.image("study.png"), image)
    records = {s.emotion: s for s in again.stimuli("study.png")}
    assert set(records) == {"fear", "awe", SOMETHING_ELSE, "sadness"}
    assert np.array_equal(records["fear"].mask, fear)
    assert records["fear"].explanations == ["dark corner", "the shadow"]
    assert records["fear"].explanation == "dark corner"
    assert records["fear"].annotator == "ann" and records["fear"].source == "human"
    assert records["fear"].created and records["fear"].modified
    assert records["awe"].no_stimulus and records["awe"].mask.shape == (48, 64)
    assert not records["awe"].mask.any()
    assert records[SOMETHING_ELSE].mask is None and records[SOMETHING_ELSE].has_mask is False
    assert records["sadness"].mask is None
    assert records["sadness"].source == "model:tiny" and records["sadness"].score == 0.25
    assert records["sadness"].edited
    assert again.stimuli(source.name)[0].explanations == ["calm"]


def test_stimulus_record():
    s = Stimulus("FEAR", np.ones((3, 4), np.uint8), "one")
    assert s.emotion == "fear" and s.mask.dtype == bool and s.explanations == ["one"]
    assert Stimulus("awe").explanation == ""
    assert Stimulus("something_else").emotion == SOMETHING_ELSE
    with pytest.raises(UnknownEmotionError):
        Stimulus("joy")
    with pytest.raises(ValueError):
        Stimulus("awe", np.ones((2, 2, 2)))


def test_stimuli_are_copies(ds):
    ds.write_painting(rgb(), "a.png", [Stimulus("awe", box((48, 64), 0, 0, 4, 4), ["x"])])
    s = ds.stimuli("a.png")[0]
    s.explanations.append("changed")
    s.mask = np.ones((48, 64), bool)
    assert ds.stimuli("a.png")[0].explanations == ["x"]
    assert ds.stimuli("a.png")[0].area == 16


def test_upsert_replaces_records_and_keeps_ids(ds):
    shape = (48, 64)
    image = rgb()
    first = ds.write_painting(
        image,
        "a.png",
        [Stimulus("fear", box(shape, 0, 0, 5, 5), ["one"]), Stimulus("awe", box(shape, 9, 9, 3, 3))],
    )
    ds.write_painting(rgb(seed=1), "b.png", [Stimulus("anger", box(shape, 1, 1, 2, 2))])
    ann_before = {a["category_id"]: a for a in _annotations(ds)["annotations"] if a["image_id"] == first.id}
    fear_before = ann_before[EMOTIONS.index("fear") + 1]

    # same file name: records replaced; fear unchanged, awe dropped, sadness added
    again = ds.write_painting(
        image,
        "a.png",
        [Stimulus("fear", box(shape, 0, 0, 5, 5), ["one"]), Stimulus("sadness", box(shape, 2, 2, 2, 2))],
    )
    assert again.id == first.id
    doc = _annotations(ds)
    assert [img["file_name"] for img in doc["images"]] == ["a.png", "b.png"]
    mine = {a["category_id"]: a for a in doc["annotations"] if a["image_id"] == first.id}
    fear = mine[EMOTIONS.index("fear") + 1]
    assert fear["id"] == fear_before["id"]
    assert fear["created"] == fear_before["created"] and fear["modified"] == fear_before["modified"]
    assert EMOTIONS.index("awe") + 1 not in mine
    assert mine[EMOTIONS.index("sadness") + 1]["id"] > max(a["id"] for a in ann_before.values())
    assert {s.emotion for s in ds.stimuli("a.png")} == {"fear", "sadness"}

    # a changed mask keeps the id and creation time but refreshes "modified"
    import time

    time.sleep(1.1)
    ds.write_painting(image, "a.png", [Stimulus("fear", box(shape, 0, 0, 6, 6), ["one"])])
    fear_after = [a for a in _annotations(ds)["annotations"] if a["image_id"] == first.id][0]
    assert fear_after["id"] == fear["id"] and fear_after["created"] == fear["created"]
    assert fear_after["modified"] > fear["modified"]
    assert fear_after["area"] == 36


def test_new_painting_appends(ds):
    for i in range(3):
        ds.write_painting(rgb(seed=i), f"p{i}.png", [Stimulus("awe", explanations=[str(i)])])
    assert [p.file_name for p in ds.paintings] == ["p0.png", "p1.png", "p2.png"]
    assert [p.id for p in ds.paintings] == [1, 2, 3]


def test_different_pixels_under_same_name_are_refused_unless_replace(ds):
    ds.write_painting(rgb(seed=0), "a.png", [Stimulus("awe", explanations=["x"])])
    with pytest.raises(DatasetError, match=r"already holds a different image.*replace=True"):
        ds.write_painting(rgb(seed=1), "a.png", [])
    assert np.array_equal(ds.image("a.png"), rgb(seed=0))
    ds.write_painting(rgb(seed=1), "a.png", [Stimulus("fear", explanations=["y"])], replace=True)
    assert np.array_equal(ds.image("a.png"), rgb(seed=1))
    assert [s.emotion for s in ds.stimuli("a.png")] == ["fear"]


def test_array_of_an_imported_jpeg_updates_that_painting(ds):
    # import-then-correct: a painting copied as JPEG, later saved from napari as an array
    source = painting_path(1)
    p = ds.write_painting(source, stimuli=[Stimulus("awe", explanations=["vast"])])
    pixels = load_image(source)
    q = ds.write_painting(pixels, source.name, [Stimulus("fear", explanations=["dark"])])
    assert q.id == p.id and q.file_name == source.name
    assert len(ds.paintings) == 1
    assert (ds.root / "images" / source.name).read_bytes() == source.read_bytes()
    # new pixels from an array replace the JPEG by a PNG (never PNG bytes under .jpg)
    changed = pixels.copy()
    changed[0, 0] ^= 255
    r = ds.write_painting(changed, source.name, [], replace=True)
    assert r.id == p.id and r.file_name == Path(source.name).with_suffix(".png").name
    assert not (ds.root / "images" / source.name).exists()
    assert np.array_equal(StimulusDataset.open(ds.root).image(r), changed)


def test_bad_writes_are_refused_and_write_nothing(ds):
    shape = (48, 64)
    cases = [
        ([Stimulus("fear", np.ones((10, 10), bool))], "mask is 10 × 10 px but the painting is 64 × 48"),
        ([Stimulus("fear"), Stimulus("fear")], "two records for 'fear'"),
        ([Stimulus(SOMETHING_ELSE, box(shape, 0, 0, 2, 2))], "never a mask"),
        ([Stimulus("awe", box(shape, 0, 0, 2, 2), no_stimulus=True)], "no_stimulus is set but the mask is not empty"),
    ]
    for stimuli, message in cases:
        with pytest.raises(DatasetError, match=message):
            ds.write_painting(rgb(), "a.png", stimuli)
    for name in ("../a.png", "/tmp/a.png", "sub\\a.png", "notes.txt"):
        with pytest.raises(DatasetError):
            ds.write_painting(painting_path(0), name, [])
    assert not (ds.root / "annotations.json").exists()
    assert not any((ds.root / "images").glob("*")) if (ds.root / "images").exists() else True


def test_pairs_filters_and_decodes_lazily(ds):
    shape = (48, 64)
    ds.write_painting(
        rgb(),
        "a.png",
        [
            Stimulus("fear", box(shape, 0, 0, 4, 4), ["f"]),
            Stimulus("awe", no_stimulus=True),
            Stimulus("sadness", explanations=["s"]),
            Stimulus(SOMETHING_ELSE, explanations=["e"]),
        ],
    )
    ds.write_painting(rgb(seed=2), "b.png", [Stimulus("fear", box(shape, 1, 1, 2, 2))])
    pairs = ds.pairs()
    assert [(p.file_name, s.emotion) for p, s in pairs] == [
        ("a.png", "fear"), ("a.png", "awe"), ("a.png", "sadness"), ("b.png", "fear")
    ]
    assert [s.emotion for _, s in ds.pairs("fear")] == ["fear", "fear"]
    assert [s.emotion for _, s in ds.pairs(with_masks_only=True)] == ["fear", "awe", "fear"]
    assert SOMETHING_ELSE in [s.emotion for _, s in ds.pairs(include_something_else=True)]
    stored = pairs[0][1]
    first, second = stored.mask, stored.mask
    assert np.array_equal(first, box(shape, 0, 0, 4, 4)) and first is not second
    assert isinstance(pairs[0][0], Painting)


def test_summary_and_content_hash(ds, tmp_path):
    shape = (48, 64)
    ds.write_painting(
        rgb(),
        "a.png",
        [Stimulus("fear", box(shape, 0, 0, 4, 4), ["f", "g"]), Stimulus("awe", no_stimulus=True),
         Stimulus("sadness", explanations=["s"], source="model:x", edited=True)],
    )
    summary = ds.summary()
    assert summary["paintings"] == 1 and summary["pairs"] == 3
    assert summary["with_mask"] == 1 and summary["no_stimulus"] == 1 and summary["text_only"] == 1
    assert summary["per_emotion"]["fear"] == {"pairs": 1, "with_mask": 1, "no_stimulus": 0, "explained": 1}
    assert summary["sources"] == {"human": 2, "model:x": 1} and summary["edited"] == 1
    json.dumps(summary)

    h = ds.content_hash()
    assert h == StimulusDataset.open(ds.root).content_hash()
    # the same content written again (new "modified" time in the file) keeps the hash
    copy = tmp_path / "copy"
    shutil.copytree(ds.root, copy)
    assert StimulusDataset.open(copy).content_hash() == h
    ds.write_painting(rgb(), "a.png", [Stimulus("fear", box(shape, 0, 0, 5, 4), ["f", "g"])])
    assert ds.content_hash() != h


def test_open_errors_and_create(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        StimulusDataset.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no annotations.json"):
        StimulusDataset.open(tmp_path / "empty")
    ds = StimulusDataset.open(tmp_path / "empty", create=True)
    assert ds.paintings == [] and len(ds) == 0
    assert not (tmp_path / "empty" / "annotations.json").exists()
    ds.write_painting(rgb(), "a.png", [])
    # the path of the JSON file itself works too
    assert len(StimulusDataset.open(tmp_path / "empty" / "annotations.json")) == 1
    assert ds.painting("nope") is None
    assert ds.painting("a").file_name == "a.png"  # by name (file stem)
    assert ds.painting(1).file_name == "a.png"


def test_remove_painting(ds):
    ds.write_painting(rgb(), "a.png", [Stimulus("awe", explanations=["x"])])
    ds.write_painting(rgb(seed=1), "b.png", [])
    assert ds.remove_painting("a.png")
    assert not (ds.root / "images" / "a.png").exists()
    assert [p.file_name for p in StimulusDataset.open(ds.root).paintings] == ["b.png"]
    assert not ds.remove_painting("a.png")


def test_coco_tools_read_the_file(ds):
    from pycocotools.coco import COCO

    shape = (48, 64)
    fear = box(shape, 3, 4, 10, 12)
    ds.write_painting(rgb(), "a.png", [Stimulus("fear", fear, ["x"]), Stimulus("awe", no_stimulus=True)])
    coco = COCO(str(ds.root / "annotations.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == [*EMOTIONS, SOMETHING_ELSE]
    [ann] = coco.loadAnns(coco.getAnnIds(catIds=[EMOTIONS.index("fear") + 1]))
    assert np.array_equal(coco.annToMask(ann).astype(bool), fear)
    assert ann["area"] == fear.sum() and ann["bbox"] == [4.0, 3.0, 12.0, 10.0]
    assert ann["explanation"] == "x" and ann["iscrowd"] == 0
    info = _annotations(ds)["info"]
    assert info["format"] == "napari-emosem stimulus dataset" and info["format_version"] == 2


def test_foreign_coco_file_with_minimal_fields_loads(tmp_path):
    from pycocotools import mask as mask_utils

    root = tmp_path / "foreign"
    (root / "images").mkdir(parents=True)
    Image.fromarray(rgb(40, 50)).save(root / "images" / "x.png")
    m1 = box((40, 50), 2, 3, 10, 10)
    compressed = mask_utils.encode(np.asfortranarray(m1.astype(np.uint8)))
    compressed["counts"] = compressed["counts"].decode()
    m2 = box((40, 50), 20, 20, 5, 7)
    flat = m2.T.ravel().astype(np.int8)  # column-major, as COCO
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate(([0], edges, [flat.size]))).tolist()
    if flat[0]:
        runs = [0] + runs
    doc = {
        "images": [{"id": 7, "file_name": "x.png", "width": 50, "height": 40}],
        "categories": [{"id": 42, "name": "fear"}, {"id": 3, "name": "Awe"}, {"id": 5, "name": "sadness"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 42, "segmentation": compressed, "explanation": "a"},
            {"id": 2, "image_id": 7, "category_id": 3, "segmentation": {"size": [40, 50], "counts": runs},
             "explanation": "b"},
            {"id": 3, "image_id": 7, "category_id": 5, "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]],
             "explanation": "c"},
        ],
    }
    (root / "annotations.json").write_text(json.dumps(doc))
    ds = StimulusDataset.open(root)
    records = {s.emotion: s for s in ds.stimuli("x.png")}
    assert np.array_equal(records["fear"].mask, m1) and records["fear"].explanations == ["a"]
    assert np.array_equal(records["awe"].mask, m2)
    assert records["sadness"].area > 0 and records["sadness"].explanation == "c"
    assert records["fear"].source == "human" and not records["fear"].edited
    # rewriting puts categories in the project's order and keeps the image id
    ds.write_painting(root / "images" / "x.png", "x.png", ds.stimuli("x.png"))
    out = _annotations(ds)
    assert out["images"][0]["id"] == 7
    assert {a["category_id"] for a in out["annotations"]} == {7, 2, 8}
    assert np.array_equal(StimulusDataset.open(root).stimulus("x.png", "awe").mask, m2)


def test_exif_rotated_jpeg_is_checked_at_its_displayed_size(ds, tmp_path):
    source = tmp_path / "rotated.jpg"
    img = Image.fromarray(rgb(40, 60))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° on display: load_image returns 60 × 40 -> 40 wide, 60 high
    img.save(source, exif=exif)
    shown = load_image(source)
    assert shown.shape[:2] == (60, 40)
    p = ds.write_painting(source, stimuli=[Stimulus("awe", box((60, 40), 0, 0, 5, 5))])
    assert (p.width, p.height) == (40, 60)
    again = StimulusDataset.open(ds.root)
    assert again.image(p).shape == (60, 40, 3)


def _annotations(ds) -> dict:
    return json.loads((ds.root / "annotations.json").read_text())


def test_the_documented_examples_load(tmp_path):
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "dataset-format.md").read_text()
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", doc, re.S)]
    assert len(blocks) == 2
    for i, block in enumerate(blocks):
        root = tmp_path / f"example{i}"
        (root / "images").mkdir(parents=True)
        for img in block["images"]:
            Image.fromarray(rgb(img["height"], img["width"])).save(root / "images" / img["file_name"], format="PNG")
        (root / "annotations.json").write_text(json.dumps(block))
        ds = StimulusDataset.open(root)
        assert len(ds.pairs(include_something_else=True)) == len(block["annotations"])


def test_a_refused_painting_in_a_batch_writes_nothing(ds, tmp_path):
    from napari_emosem.data import PaintingUpdate

    ds.write_painting(rgb(seed=0), "a.png", [Stimulus("awe", explanations=["a"])])
    ds.write_painting(rgb(seed=1), "b.png", [])
    before = (ds.root / "annotations.json").read_bytes()
    with pytest.raises(DatasetError, match="images/b.png already holds a different image"):
        ds.write_paintings([
            PaintingUpdate(rgb(seed=5), "a.png", [], replace=True),  # allowed on its own
            PaintingUpdate(rgb(seed=6), "b.png", []),  # refused: so is the whole write
        ])
    assert np.array_equal(ds.image("a.png"), rgb(seed=0))
    assert (ds.root / "annotations.json").read_bytes() == before
    small = tmp_path / "small.png"
    Image.fromarray(rgb(8, 8)).save(small)
    with pytest.raises(DatasetError, match="too small"):
        ds.write_painting(small)


def test_reviewed_is_written_explicitly_and_derived_for_older_files(ds):
    shape = (48, 64)
    ds.write_painting(rgb(), "a.png", [
        Stimulus("awe", box(shape, 0, 0, 5, 5), ["drafted"], source="model:m1"),               # a draft
        Stimulus("fear", box(shape, 0, 0, 5, 5), ["drafted"], source="model:m1", reviewed=True),  # accepted
        Stimulus("anger", box(shape, 0, 0, 5, 5), ["fixed"], source="model:m1", edited=True),
        Stimulus("sadness", no_stimulus=True, source="model:m1"),
        Stimulus("amusement", box(shape, 0, 0, 5, 5), ["mine"]),                              # drawn by hand
    ])  # fmt: skip
    doc = json.loads((ds.root / "annotations.json").read_text())
    by_category = {a["category_id"]: a["reviewed"] for a in doc["annotations"]}
    names = {c["id"]: c["name"] for c in doc["categories"]}
    assert {names[c]: r for c, r in by_category.items()} == {
        "awe": False, "fear": True, "anger": True, "sadness": True, "amusement": True,
    }
    # a file written before the field existed: an accepted draft was told apart by its annotator
    for a in doc["annotations"]:
        del a["reviewed"]
        if names[a["category_id"]] == "fear":
            a["annotator"] = "maria"
    (ds.root / "annotations.json").write_text(json.dumps(doc))
    again = StimulusDataset.open(ds.root)
    assert {s.emotion: s.reviewed for s in again.stimuli("a.png")} == {
        "awe": False, "fear": True, "anger": True, "sadness": True, "amusement": True,
    }


# ----------------------------------------------------------------------------- nothing a person wrote is lost
def _draft(emotion: str, seed: int, shape=(48, 64)) -> Stimulus:
    mask = box(shape, seed, seed, 6, 8)
    return Stimulus(emotion, mask, [f"draft {seed}"], source="model:m2", score=0.5)


def test_replaces_is_the_one_rule():
    from napari_emosem.data.records import replaces

    person = Stimulus("fear", explanations=["mine"])
    accepted = Stimulus("fear", explanations=["ok"], source="model:m1", reviewed=True)
    nothing_here = Stimulus("fear", no_stimulus=True, source="model:m1")
    draft = _draft("fear", 1)
    for reviewed in (person, accepted, nothing_here):
        assert reviewed.reviewed
        assert not replaces(reviewed, draft)
        assert replaces(reviewed, draft, overwrite_reviewed=True)
        assert replaces(reviewed, Stimulus("fear", explanations=["a person's new version"]))
    assert replaces(_draft("fear", 2), draft) and replaces(None, draft)


def test_a_proposal_never_replaces_reviewed_records_unless_asked(ds):
    from napari_emosem.data import PaintingUpdate

    image = rgb()
    ds.write_painting(image, "a.png", [
        Stimulus("fear", box((48, 64), 0, 0, 5, 5), ["a person drew this"]),
        Stimulus("awe", no_stimulus=True, source="model:m1"),  # a person said: no stimulus
        Stimulus("anger", box((48, 64), 1, 1, 5, 5), ["edited"], source="model:m1", edited=True),
        _draft("sadness", 3),  # an unreviewed draft
        Stimulus("disgust", explanations=["text a person wrote"]),  # not proposed again: stays
    ])  # fmt: skip
    before = {s.emotion: s for s in ds.stimuli("a.png")}
    proposals = [_draft(e, 9) for e in ("fear", "awe", "anger", "sadness", "amusement")]

    report = ds.write_paintings([PaintingUpdate(image, "a.png", proposals, records="merge")])
    after = {s.emotion: s for s in ds.stimuli("a.png")}
    assert sorted(report.kept_reviewed) == [("a.png", "anger"), ("a.png", "awe"), ("a.png", "fear")]
    assert report.replaced_reviewed == []
    for emotion in ("fear", "awe", "anger", "disgust"):  # exactly as they were
        assert after[emotion].explanations == before[emotion].explanations
        assert np.array_equal(after[emotion].mask, before[emotion].mask)
        assert after[emotion].reviewed and after[emotion].modified == before[emotion].modified
    assert after["sadness"].explanations == ["draft 9"]  # a draft replaces a draft
    assert after["amusement"].source == "model:m2"  # a new emotion is added
    assert StimulusDataset.open(ds.root).stimulus("a.png", "fear").explanations == ["a person drew this"]

    report = ds.write_paintings(
        [PaintingUpdate(image, "a.png", proposals[:1], records="merge", overwrite_reviewed=True)]
    )
    assert report.replaced_reviewed == [("a.png", "fear")] and report.kept_reviewed == []
    assert ds.stimulus("a.png", "fear").explanations == ["draft 9"]
    assert ds.stimulus("a.png", "awe").no_stimulus  # merge: the others stay


def test_an_exact_write_removes_what_is_not_given_but_keeps_reviewed_records_it_drafts_over(ds):
    image = rgb()
    ds.write_painting(image, "a.png", [Stimulus("fear", explanations=["mine"]), _draft("awe", 1), _draft("anger", 2)])
    # an annotator's export: fear came back as a draft (kept), awe dropped (rejected), anger kept
    kept = ds.write_painting(image, "a.png", [_draft("fear", 5), _draft("anger", 2)])
    assert kept.file_name == "a.png"
    assert {s.emotion: s.explanations for s in ds.stimuli("a.png")} == {"fear": ["mine"], "anger": ["draft 2"]}
    with pytest.raises(DatasetError, match="records='upsert'; choose 'exact' or 'merge'"):
        ds.write_painting(image, "a.png", [], records="upsert")


def test_new_pixels_do_not_silently_drop_reviewed_records(ds):
    ds.write_painting(rgb(seed=0), "a.png", [Stimulus("fear", explanations=["mine"]), _draft("awe", 1)])
    with pytest.raises(DatasetError, match=r"reviewed records \(fear\) describe the old pixels"):
        ds.write_painting(rgb(seed=1), "a.png", [_draft("fear", 2)], replace=True, records="merge")
    assert np.array_equal(ds.image("a.png"), rgb(seed=0))
    report_painting = ds.write_painting(
        rgb(seed=1), "a.png", [_draft("fear", 2)], replace=True, overwrite_reviewed=True
    )
    assert report_painting.file_name == "a.png"
    assert [s.explanations for s in ds.stimuli("a.png")] == [["draft 2"]]


def test_non_json_values_are_never_written(ds):
    before = ds.root / "annotations.json"
    ds.write_painting(rgb(), "a.png", [])
    content = before.read_bytes()
    for stimulus, needle in (
        (Stimulus("fear", explanations=["x"], score=float("nan")), "score nan is not a number"),
        (Stimulus("fear", explanations=["x"], extra={"weight": float("inf")}), "cannot be written as JSON"),
        (Stimulus("fear", explanations=["x"], extra={"when": object()}), "cannot be written as JSON"),
    ):
        with pytest.raises(DatasetError, match=needle):
            ds.write_painting(rgb(), "a.png", [stimulus])
    with pytest.raises(DatasetError, match="metadata cannot be written as JSON"):
        ds.write_painting(rgb(), "a.png", [], metadata={"year": float("nan")})
    assert before.read_bytes() == content


def test_files_follow_the_umask_and_a_replaced_file_keeps_its_mode(tmp_path):
    import os
    import stat

    previous = os.umask(0o002)  # a team's shared folder: group-writable
    try:
        ds = StimulusDataset.open(tmp_path / "ds", create=True)
        ds.write_painting(rgb(), "a.png", [Stimulus("fear", explanations=["x"])])

        def mode(p):
            return stat.S_IMODE(os.stat(p).st_mode)

        assert mode(ds.root / "annotations.json") == 0o664
        assert mode(ds.root / "images" / "a.png") == 0o664
        assert mode(ds.root / "images") == 0o775
        os.chmod(ds.root / "annotations.json", 0o644)  # chosen by the team: kept on rewrite
        ds.write_painting(rgb(), "a.png", [Stimulus("fear", explanations=["y"])])
        assert mode(ds.root / "annotations.json") == 0o644
    finally:
        os.umask(previous)


def test_opening_images_never_switches_off_pils_bomb_guard(tmp_path, monkeypatch):
    """PIL's guard is a process-wide setting; toggling it races between threads (issue 10)."""
    import types

    import PIL.Image

    writes = []

    class Watched(types.ModuleType):
        def __setattr__(self, name, value):
            if name == "MAX_IMAGE_PIXELS":
                writes.append(value)
            super().__setattr__(name, value)

    monkeypatch.setattr(PIL.Image, "__class__", Watched)
    ds = StimulusDataset.open(tmp_path / "ds", create=True)
    ds.write_painting(painting_path(0), stimuli=[])
    assert load_image(ds.image_path(painting_path(0).name)).shape[2] == 3
    StimulusDataset.open(ds.root)  # header checks
    assert writes == []


def test_a_painting_above_pils_bomb_limit_but_within_ours_opens(tmp_path):
    """179–200 MP: PIL refuses them by default; we allow 200 MP (MAX_PIXELS)."""
    from napari_emosem.data.validate import image_header_size
    from napari_emosem.propose import _stored_size

    path = tmp_path / "big.png"
    Image.new("1", (14_000, 13_000)).save(path)  # 182 MP, 1 bit per pixel: small to write
    assert image_header_size(path) == (14_000, 13_000)
    assert _stored_size(path) == (13_000, 14_000)
    rgb_pixels = load_image(path)
    assert rgb_pixels.shape == (13_000, 14_000, 3)


# ----------------------------------------------------------------------------- several annotators
def _by(annotator: str, emotion: str = "awe", seed: int = 0, **kw) -> Stimulus:
    mask = box((48, 64), seed, seed, 10, 12)
    return Stimulus(emotion, mask, [f"{annotator} says {emotion}"], annotator=annotator, **kw)


def test_each_annotator_has_a_slot_and_a_save_replaces_only_its_own(ds):
    image = rgb()
    ds.write_painting(image, "a.png", [_draft("awe", 1), _draft("fear", 2)])
    draft_id = {a["category_id"]: a["id"] for a in _coco(ds)["annotations"]}[2]
    ds.write_painting(image, "a.png", [_by("ana"), _by("ana", "fear", no_stimulus=False)], writer="ana")
    ds.write_painting(image, "a.png", [_by("bo", seed=3)], writer="bo")  # bo's save says nothing of fear
    awe = ds.pair("a.png", "awe")
    assert [r.annotator for r in awe.reviewed] == ["ana", "bo"] and awe.draft is None  # the draft was consumed
    assert {(r.emotion, r.annotator) for r in ds.records("a.png")} == {("awe", "ana"), ("awe", "bo"), ("fear", "ana")}
    ids = {(a["category_id"], a["annotator"]): a["id"] for a in _coco(ds)["annotations"]}
    assert ids[(2, "ana")] == draft_id  # the record that consumed the draft took its id
    # bo rejects awe: bo's record goes, ana's stays; a draft never lands on a reviewed pair
    ds.write_painting(image, "a.png", [], writer="bo")
    assert [r.annotator for r in ds.pair("a.png", "awe").reviewed] == ["ana"]
    report = ds.write_paintings([PaintingUpdate(image, "a.png", [_draft("awe", 9)], records="merge")])
    assert report.kept_reviewed == [("a.png", "awe")] and ds.pair("a.png", "awe").draft is None
    with pytest.raises(DatasetError, match="two records for 'awe' in one slot"):
        ds.write_painting(image, "a.png", [_by("ana"), _by("ana", seed=2)])


def test_the_effective_record_is_the_adjudicated_then_the_latest_reviewed_then_the_draft(ds):
    image = rgb()
    ds.write_painting(image, "a.png", [_draft("awe", 1)])
    assert ds.stimulus("a.png", "awe").reviewed is False
    ds.write_painting(image, "a.png", [_by("bo", modified="2025-01-02T00:00:00+00:00")], records="merge")
    ds.write_painting(image, "a.png", [_by("ana", modified="2025-01-01T00:00:00+00:00")], records="merge")
    assert ds.stimulus("a.png", "awe").annotator == "bo"  # modified last
    assert [s.annotator for s in ds.stimuli("a.png")] == ["bo"]  # one record per emotion
    assert [a for _, s in ds.pairs() for a in [s.annotator]] == ["bo"]
    decision = Stimulus("awe", box((48, 64), 0, 0, 5, 5), ["we agreed"], annotator="rev", adjudicated=True)
    ds.write_painting(image, "a.png", [decision], records="merge")
    again = StimulusDataset.open(ds.root)
    pair = again.pair("a.png", "awe")
    assert pair.effective.adjudicated and pair.effective.annotator == "rev" and pair.effective.reviewed
    assert [r.annotator for r in pair.votes] == ["ana", "bo"]  # the reviewer's decision is not a vote
    assert pair.explanations == ["we agreed", "ana says awe", "bo says awe"]
    assert again.annotators() == ["ana", "bo", "rev"]
    assert again.summary()["records"] == 3 and again.summary()["pairs"] == 1


def test_a_version_1_file_reads_as_before_and_is_written_as_version_2(ds):
    ds.write_painting(rgb(), "a.png", [Stimulus("awe", box((48, 64), 1, 1, 5, 5), ["one"])])
    doc = _coco(ds)
    doc["info"]["format_version"] = 1
    for ann in doc["annotations"]:
        del ann["adjudicated"], ann["annotation_seconds"], ann["reviewed"]
    (ds.root / "annotations.json").write_text(json.dumps(doc))
    old = StimulusDataset.open(ds.root)
    assert old.stimulus("a.png", "awe").explanations == ["one"] and old.stimulus("a.png", "awe").reviewed
    old.write_painting(None, "a.png", [], metadata={"title": "t"})
    assert _coco(old)["info"]["format_version"] == 2


def _coco(ds) -> dict:
    ds.compact()
    return json.loads((ds.root / "annotations.json").read_text())
