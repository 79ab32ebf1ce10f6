"""The journal: saving a painting costs O(that painting), readers replay what annotations.json does
not hold yet, compaction folds it in, and nothing a crash leaves is replayed twice or trusted
blindly. Also the persisted image-size cache and the fields issue 12 made first-class
(``annotation_seconds``, ``skipped``)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_emosem.cli import main
from napari_emosem.data import PaintingUpdate, Stimulus, StimulusDataset
from napari_emosem.data.dataset import Compaction
from napari_emosem.data.validate import HeaderCache
from napari_emosem.errors import DatasetError

#: never compacted by size in these tests: every save stays a journal line
JOURNAL_ONLY = Compaction(small=0)


def rgb(seed: int = 0, h: int = 48, w: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def box(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    mask[seed % 20 : seed % 20 + 15, seed % 30 : seed % 30 + 20] = True
    return mask


def fill(ds: StimulusDataset, n: int, start: int = 0) -> None:
    ds.write_paintings(
        PaintingUpdate(
            rgb(i),
            f"p{i:03d}.png",
            [Stimulus(e, box(i + k), [f"{e} {i}"], annotator="ana") for k, e in enumerate(("awe", "fear"))],
        )  # fmt: skip
        for i in range(start, start + n)
    )


@pytest.fixture
def journal_ds(tmp_path) -> StimulusDataset:
    ds = StimulusDataset.open(tmp_path / "ds", create=True, compaction=JOURNAL_ONLY)
    fill(ds, 6)
    ds.compact()
    return ds


def lines(root: Path) -> list[dict]:
    path = root / "annotations.json.journal"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_save_is_one_journal_line_and_leaves_annotations_json_alone(journal_ds):
    root = journal_ds.root
    snapshot = (root / "annotations.json").read_bytes()
    snapshot_id = json.loads(snapshot)["info"]["write_id"]
    journal_ds.write_painting(
        None, "p002.png", [Stimulus("awe", box(9), ["changed"], annotator="ana")], records="merge"
    )
    assert (root / "annotations.json").read_bytes() == snapshot
    [line] = lines(root)
    assert line["snapshot"] == snapshot_id and [p["image"]["file_name"] for p in line["paintings"]] == ["p002.png"]
    # the painting's whole state: its awe record changed, its fear record as it was
    assert sorted((a["category_id"], a["explanation"]) for a in line["paintings"][0]["annotations"]) == [
        (2, "changed"), (7, "fear 2")]  # fmt: skip
    again = StimulusDataset.open(root)
    assert again.stimulus("p002.png", "awe").explanations == ["changed"]
    assert again.stimulus("p001.png", "awe").explanations == ["awe 1"]


def test_a_save_costs_the_same_whatever_the_size_of_the_dataset(tmp_path):
    grown = []
    for n in (3, 60):
        ds = StimulusDataset.open(tmp_path / f"ds{n}", create=True, compaction=JOURNAL_ONLY)
        fill(ds, n)
        ds.compact()
        ds.write_painting(None, "p001.png", [Stimulus("sadness", box(4), ["grey"], annotator="ana")], records="merge")
        grown.append(ds.journal_bytes)
    # the same painting's state, nothing of the other paintings (ids may take a digit more)
    assert abs(grown[0] - grown[1]) < 16


def test_a_writer_that_finds_the_journal_grown_replays_only_the_new_lines(journal_ds):
    root = journal_ds.root
    other = StimulusDataset.open(root, compaction=JOURNAL_ONLY)
    other.write_painting(None, "p003.png", [Stimulus("anger", box(2), ["theirs"], annotator="bo")], records="merge")
    # annotations.json now holds garbage of the same size and time: catching up must not read it
    path = root / "annotations.json"
    st = path.stat()
    with open(path, "r+b") as handle:
        handle.write(b"X" * 64)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    journal_ds.write_painting(None, "p004.png", [Stimulus("fear", box(5), ["mine"], annotator="ana")], records="merge")
    assert journal_ds.stimulus("p003.png", "anger").explanations == ["theirs"]  # their line, replayed
    assert journal_ds.stimulus("p004.png", "fear").explanations == ["mine"]
    assert [p["image"]["file_name"] for line in lines(root) for p in line["paintings"]] == ["p003.png", "p004.png"]
    with pytest.raises(DatasetError, match="not valid JSON"):
        StimulusDataset.open(root)  # a fresh reader does read it


def test_a_torn_last_line_is_ignored_and_cut_by_the_next_writer(journal_ds):
    root = journal_ds.root
    journal_ds.write_painting(None, "p001.png", [Stimulus("awe", box(1), ["one"], annotator="ana")], records="merge")
    whole = (root / "annotations.json.journal").read_bytes()
    with open(root / "annotations.json.journal", "ab") as handle:
        handle.write(whole[: len(whole) // 2].replace(b'"one"', b'"half"'))  # a writer killed mid-append
    reader = StimulusDataset.open(root)
    assert reader.stimulus("p001.png", "awe").explanations == ["one"]
    writer = StimulusDataset.open(root, compaction=JOURNAL_ONLY)
    writer.write_painting(None, "p002.png", [Stimulus("awe", box(2), ["two"], annotator="ana")], records="merge")
    text = (root / "annotations.json.journal").read_text()
    assert text.endswith("\n") and len(text.splitlines()) == 2 and '"half"' not in text
    assert StimulusDataset.open(root).stimulus("p002.png", "awe").explanations == ["two"]


def test_lines_a_killed_compaction_left_are_never_replayed_twice(journal_ds):
    root = journal_ds.root
    journal_ds.remove_painting("p005.png")
    journal_ds.write_painting(None, "p001.png", [Stimulus("awe", box(3), ["after"], annotator="ana")], records="merge")
    old_journal = (root / "annotations.json.journal").read_bytes()
    journal_ds.compact()
    # killed between renaming the new annotations.json into place and deleting the journal
    (root / "annotations.json.journal").write_bytes(old_journal)
    ds = StimulusDataset.open(root)  # replaying the removal again would fail: it is not replayed
    assert ds.painting("p005.png") is None and len(ds) == 5
    assert ds.stimulus("p001.png", "awe").explanations == ["after"]
    writer = StimulusDataset.open(root, compaction=JOURNAL_ONLY)
    writer.write_painting(None, "p002.png", [Stimulus("fear", box(3), ["new"], annotator="ana")], records="merge")
    assert [p["image"]["file_name"] for line in lines(root) for p in line["paintings"]] == ["p002.png"]
    assert len(StimulusDataset.open(root)) == 5


def test_a_line_nobody_wrote_is_refused_with_its_line_number(journal_ds):
    root = journal_ds.root
    journal_ds.write_painting(None, "p001.png", [Stimulus("awe", box(1), ["one"], annotator="ana")], records="merge")
    snapshot = lines(root)[0]["snapshot"]
    path = root / "annotations.json.journal"
    good = path.read_text()
    line = {"snapshot": snapshot, "write": "ab" * 8}
    image = {"id": 1, "file_name": "p000.png", "width": 64, "height": 48}
    bad_mask = {"id": 1, "image_id": 1, "category_id": 2, "segmentation": {"size": [48, 64], "counts": "0"}}
    cases = {
        "not json": "line 2: not valid JSON",
        json.dumps(line | {"moves": [["../../x", "a.png"]]}): "line 2: not a journal entry",
        json.dumps(line | {"remove": ["../annotations.json"]}): "line 2: not a journal entry",
        json.dumps(line | {"removed": [999]}): "removes image id 999",
        json.dumps(line | {"paintings": [{"image": image, "annotations": [bad_mask]}]}): "undecodable segmentation",
    }
    for text, message in cases.items():
        path.write_text(good + text + "\n")
        with pytest.raises(DatasetError, match=message):
            StimulusDataset.open(root)
    path.write_text(good)
    assert StimulusDataset.open(root).stimulus("p001.png", "awe").explanations == ["one"]


def test_the_journal_of_version_0_1_is_finished_or_undone(journal_ds):
    """napari-emosem 0.1 wrote one JSON object, before its commit (annotations.json carrying the
    same id): committed, its staged image is moved into place; not committed, it is dropped."""
    root = journal_ds.root
    write_id = json.loads((root / "annotations.json").read_text())["info"]["write_id"]
    staged = root / "images" / ".emosem-staging" / write_id
    staged.mkdir(parents=True)
    Image.fromarray(rgb(0)).save(staged / "0", format="PNG")
    (root / "images" / "p000.png").unlink()  # committed, not moved yet
    legacy = {"write_id": write_id, "moves": [[f".emosem-staging/{write_id}/0", "p000.png"]], "remove": []}
    (root / "annotations.json.journal").write_text(json.dumps(legacy) + "\n")
    ds = StimulusDataset.open(root, compaction=JOURNAL_ONLY)
    assert np.array_equal(ds.image("p000.png"), rgb(0))  # read from the staging folder meanwhile
    ds.write_painting(None, "p001.png", [], metadata={"title": "x"})
    assert (root / "images" / "p000.png").exists() and not (root / "images" / ".emosem-staging").exists()
    assert [line.get("write") for line in lines(root)] != [write_id]


def test_small_datasets_are_compacted_after_every_write_large_ones_when_the_journal_has_grown(tmp_path):
    small = StimulusDataset.open(tmp_path / "small", create=True)
    fill(small, 3)
    small.write_painting(None, "p001.png", [Stimulus("awe", box(1), ["x"], annotator="ana")], records="merge")
    assert small.journal_bytes == 0  # annotations.json alone is the dataset
    assert any(
        a["annotator"] == "ana" for a in json.loads((small.root / "annotations.json").read_text())["annotations"]
    )

    policy = Compaction(small=0, min_journal=20_000, fraction=0.25)
    big = StimulusDataset.open(tmp_path / "big", create=True, compaction=policy)
    fill(big, 40)
    big.compact()
    snapshot = (big.root / "annotations.json").stat().st_size
    sizes = []
    for i in range(60):
        big.write_painting(
            None, f"p{i % 40:03d}.png", [Stimulus("awe", box(i), [f"v{i}"], annotator="ana")], records="merge"
        )
        sizes.append(big.journal_bytes)
    bound = max(policy.min_journal, policy.fraction * snapshot)
    line = sizes[0]
    assert 0 in sizes and max(sizes) <= bound  # never left above the bound after a write
    assert sizes[sizes.index(0) - 1] > bound - 2 * line  # compacted as soon as it outgrew it
    assert StimulusDataset.open(big.root).stimulus("p019.png", "awe").explanations == ["v59"]


def test_emosem_compact_and_export_leave_a_complete_annotations_json(journal_ds, tmp_path, capsys):
    from pycocotools.coco import COCO

    root = journal_ds.root
    journal_ds.write_painting(rgb(50), "new.png", [Stimulus("awe", box(4), ["new"], annotator="ana")])
    assert main(["compact", str(root)]) == 0
    assert "bytes of journal folded in" in capsys.readouterr().out
    assert not (root / "annotations.json.journal").exists()
    coco = COCO(str(root / "annotations.json"))
    assert "new.png" in {img["file_name"] for img in coco.dataset["images"]}
    assert main(["compact", str(root)]) == 0 and "already complete" in capsys.readouterr().out

    journal_ds.write_painting(None, "new.png", [Stimulus("fear", box(5), ["later"], annotator="ana")], records="merge")
    assert main(["export", str(root), "--format", "png", "--out", str(tmp_path / "png")]) == 0
    assert not (root / "annotations.json.journal").exists()
    assert any(a["explanation"] == "later" for a in json.loads((root / "annotations.json").read_text())["annotations"])


def test_image_sizes_are_remembered_by_file_time_and_size(journal_ds):
    root = journal_ds.root
    StimulusDataset.open(root)  # opening reads the headers and keeps their sizes
    cache = json.loads((root / HeaderCache.CACHE_FILE).read_text())["sizes"]
    assert set(cache) == {p.file_name for p in journal_ds.paintings} and cache["p000.png"][2:] == [64, 48]
    # a file replaced by one of another size but the same byte count and time: the cache answers
    # (that is what makes a re-open cost a stat per image); touched, it is read again
    path = root / "images" / "p000.png"
    st = path.stat()
    Image.fromarray(rgb(0, 64, 48)).save(path, format="PNG")
    data = path.read_bytes()
    path.write_bytes(data[: st.st_size].ljust(st.st_size, b"\0"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    StimulusDataset.open(root)
    os.utime(path)
    with pytest.raises(DatasetError, match="p000.png"):
        StimulusDataset.open(root)
    # an unreadable cache is only a cache
    (root / HeaderCache.CACHE_FILE).write_text('{"sizes": {"p000.png": "nonsense"}')
    shutil.copy(root / "images" / "p001.png", path)
    StimulusDataset.open(root)


def test_annotation_seconds_and_skipped_are_checked_fields(journal_ds):
    root = journal_ds.root
    timed = Stimulus("awe", box(1), ["x"], annotator="ana", annotation_seconds=12.5)
    journal_ds.write_painting(None, "p001.png", [timed], records="merge")
    assert StimulusDataset.open(root).pair("p001.png", "awe").reviewed[0].annotation_seconds == 12.5
    with pytest.raises(DatasetError, match="annotation_seconds -3.0 is not a time"):
        journal_ds.write_painting(
            None, "p001.png", [Stimulus("awe", annotator="ana", annotation_seconds=-3)], records="merge"
        )
    with pytest.raises(DatasetError, match="'skipped' must be null or"):
        journal_ds.update_metadata("p001.png", {"skipped": {"reason": " "}})
    with pytest.raises(DatasetError, match="'annotation_seconds' must be a number of seconds"):
        journal_ds.update_metadata("p001.png", {"annotation_seconds": "ten"})
    journal_ds.compact()
    doc = json.loads((root / "annotations.json").read_text())
    doc["annotations"][0]["annotation_seconds"] = -1
    doc["images"][1]["skipped"] = "yes"
    (root / "annotations.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetError) as error:
        StimulusDataset.open(root)
    assert "'annotation_seconds' must be a number of seconds >= 0; found -1" in str(error.value)
    assert "'skipped' must be null or" in str(error.value)


def test_a_metadata_update_touches_no_record_and_no_image(journal_ds):
    root = journal_ds.root
    before = {(s.emotion, s.slot): (s.explanations, s.modified) for s in journal_ds.records("p001.png")}
    image = root / "images" / "p001.png"
    mtime = image.stat().st_mtime_ns
    skipped = {"reason": "a photograph", "annotator": "ana", "at": None}
    painting = journal_ds.update_metadata("p001.png", {"skipped": skipped, "annotation_seconds": 75.0})
    assert painting.skipped["reason"] == "a photograph" and painting.annotation_seconds == 75.0
    [line] = lines(root)
    assert line["moves"] == [] and line["remove"] == []
    again = StimulusDataset.open(root)
    assert {(s.emotion, s.slot): (s.explanations, s.modified) for s in again.records("p001.png")} == before
    assert image.stat().st_mtime_ns == mtime
    again.update_metadata("p001.png", {"skipped": None})
    assert StimulusDataset.open(root).painting("p001.png").skipped is None
