"""APOLO import (apolo.json + maps + ArtEmis CSV + WikiArt images) and the three export formats."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from napari_emosem.cli import main
from napari_emosem.data import StimulusDataset
from napari_emosem.data.apolo import import_apolo, read_apolo_rows
from napari_emosem.data.artemis import parse_wikiart_name
from napari_emosem.errors import DatasetError
from napari_emosem.image_io import load_image
from napari_emosem.paintings import painting_paths

PAINTINGS = painting_paths()

MONET = "claude-monet_water-lilies-1919"
GOGH = "vincent-van-gogh_starry-night-1889"
CEZANNE = "paul-cezanne_madame-cezanne"
JACKSON = "a.y.-jackson_winter"

ARTEMIS_ROWS = [
    ("Impressionism", MONET, "contentment", "calm water"),
    ("Impressionism", MONET, "awe", "so many flowers"),
    ("Impressionism", MONET, "contentment", "peaceful pond"),
    ("Post_Impressionism", GOGH, "awe", "the swirling sky"),
    ("Post_Impressionism", GOGH, "fear", "dark cypress"),
    ("Impressionism", "someone_else-1900", "fear", "unrelated"),
    ("Post_Impressionism", CEZANNE, "sadness", "tired face"),
    ("Group_of_Seven", JACKSON, "something else", "hmm"),
    ("Group_of_Seven", JACKSON, "sadness", "cold snow"),
    ("Impressionism", MONET, "contentment", "soft colours, quiet"),
]


def rect(shape, top, left, h, w) -> np.ndarray:
    m = np.zeros(shape, np.int64)  # APOLO's maps are integer 0/1 arrays
    m[top : top + h, left : left + w] = 1
    return m


@pytest.fixture
def release(tmp_path):
    """A small APOLO-shaped release: images (flat and in style folders), maps, CSV, apolo.json."""
    images = tmp_path / "wikiart"
    (images / "Impressionism").mkdir(parents=True)
    shutil.copy(PAINTINGS[0], images / "Impressionism" / f"{MONET}.jpg")
    shutil.copy(PAINTINGS[1], images / f"{GOGH}.jpg")
    shutil.copy(PAINTINGS[2], images / f"{JACKSON}.jpg")
    shapes = {n: load_image(p).shape[:2] for n, p in
              ((MONET, PAINTINGS[0]), (GOGH, PAINTINGS[1]), (JACKSON, PAINTINGS[2]))}  # fmt: skip

    maps = tmp_path / "apolo_pixel_map"
    maps.mkdir()
    truth = {
        (MONET, "contentment"): rect(shapes[MONET], 10, 20, 100, 80),
        (MONET, "awe"): rect(shapes[MONET], 200, 30, 50, 200),
        (GOGH, "awe"): np.zeros(shapes[GOGH], np.int64),  # nothing to label
    }
    for (name, emotion), m in truth.items():
        np.save(maps / f"{name}_{emotion}.npy", m)
    h, w = shapes[JACKSON]
    full = rect((h, w), 40, 40, 120, 90)
    half = full[::2, ::2]  # stored at half resolution: imported by resizing
    np.save(maps / f"{JACKSON}_sadness.npy", half)

    artemis = tmp_path / "artemis_dataset_release_v0.csv"
    with open(artemis, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["art_style", "painting", "emotion", "utterance", "repetition"])
        for row in ARTEMIS_ROWS:
            writer.writerow([*row, 5])

    rows = [
        {"painting": MONET, "artemis_id": [2, 0], "split": "test"},
        {"painting": MONET, "artemis_id": 1, "split": "test"},  # an int, not a list
        {"painting": GOGH, "artemis_id": [3], "split": "val"},
        {"painting": GOGH, "artemis_id": [4], "split": "val"},  # its map is missing
        {"painting": CEZANNE, "artemis_id": [6], "split": "test"},  # its image is missing
        {"painting": f"{JACKSON}.jpg", "emotion": "Sadness", "split": "test"},  # no artemis_id
        {"painting": JACKSON, "artemis_id": [5], "split": "test"},  # a row of another painting
        {"painting": 5},
    ]
    apolo = tmp_path / "apolo.json"
    apolo.write_text(json.dumps(rows))
    return {
        "root": tmp_path, "images": images, "maps": maps, "artemis": artemis, "apolo": apolo,
        "truth": truth, "jackson_half": half, "shapes": shapes, "rows": rows,
    }  # fmt: skip


def test_import_apolo(release, tmp_path):
    out = tmp_path / "imported"
    report = import_apolo(
        release["apolo"], release["maps"], release["images"], out, artemis_csv=release["artemis"]
    )
    assert (report.paintings, report.pairs, report.no_stimulus) == (3, 4, 1)
    assert report.missing_images == [CEZANNE]
    assert report.missing_maps == [f"{GOGH}_fear"]
    assert report.resized_masks == [f"{JACKSON}_sadness"]
    assert any("row 7" in r for r in report.bad_rows)
    assert any("belong to another painting" in r for r in report.bad_rows)
    assert report.rows == 8

    ds = StimulusDataset.open(out)
    assert sorted(p.file_name for p in ds.paintings) == sorted(f"{n}.jpg" for n in (MONET, GOGH, JACKSON))
    monet = ds.painting(f"{MONET}.jpg")
    assert monet.metadata == {"artist": "Claude Monet", "title": "Water Lilies", "year": "1919",
                              "style": "Impressionism", "split": "test", "source_dataset": "APOLO"}  # fmt: skip
    assert (out / "images" / f"{MONET}.jpg").read_bytes() == PAINTINGS[0].read_bytes()
    records = {s.emotion: s for s in ds.stimuli(monet)}
    # artemis_id rows first (in the given order), then the pair's other ArtEmis rows
    assert records["contentment"].explanations == ["peaceful pond", "calm water", "soft colours, quiet"]
    assert np.array_equal(records["contentment"].mask, release["truth"][(MONET, "contentment")] > 0)
    assert records["awe"].explanations == ["so many flowers"]
    assert records["contentment"].extra == {"artemis_id": [2, 0], "split": "test"}
    assert records["contentment"].source == "human"

    [gogh] = ds.stimuli(f"{GOGH}.jpg")
    assert gogh.emotion == "awe" and gogh.no_stimulus and gogh.explanations == ["the swirling sky"]

    [jackson] = ds.stimuli(f"{JACKSON}.jpg")
    assert jackson.explanations == ["cold snow"]
    h, w = release["shapes"][JACKSON]
    expected = np.asarray(
        Image.fromarray(release["jackson_half"].astype(np.uint8) * 255).resize((w, h), Image.NEAREST)
    ) > 127
    assert np.array_equal(jackson.mask, expected)
    assert ds.painting(f"{JACKSON}.jpg").metadata["style"] == "Group_of_Seven"

    # importing again updates in place
    import_apolo(release["apolo"], release["maps"], release["images"], out, artemis_csv=release["artemis"])
    again = StimulusDataset.open(out)
    assert len(again.paintings) == 3 and len(again.pairs()) == 4


def test_import_split_and_pandas_layout(release, tmp_path):
    report = import_apolo(release["apolo"], release["maps"], release["images"], tmp_path / "val",
                          artemis_csv=release["artemis"], split="val")  # fmt: skip
    assert report.pairs == 1 and report.skipped_split == 5  # the 'painting: 5' row is a bad row
    assert [p.file_name for p in StimulusDataset.open(tmp_path / "val").paintings] == [f"{GOGH}.jpg"]

    # pandas' default column layout ({"painting": {"0": ...}, ...}) reads the same rows
    good = [r for r in release["rows"] if isinstance(r.get("painting"), str)]
    columns = {
        key: {str(i): r.get(key) for i, r in enumerate(good)} for key in ("painting", "artemis_id", "split", "emotion")
    }
    layout = tmp_path / "columns.json"
    layout.write_text(json.dumps(columns))
    rows, problems = read_apolo_rows(layout)
    assert problems == [] and [r.painting for r in rows] == [r["painting"].removesuffix(".jpg") for r in good]
    assert rows[1].artemis_ids == [1] and rows[5].emotion == "sadness"


def test_import_needs_the_csv_when_rows_have_no_emotion(release, tmp_path):
    with pytest.raises(DatasetError, match="--artemis"):
        import_apolo(release["apolo"], release["maps"], release["images"], tmp_path / "x")


def test_import_apolo_cli(release, tmp_path, capsys):
    code = main([
        "import-apolo", "--apolo", str(release["apolo"]), "--maps", str(release["maps"]),
        "--artemis", str(release["artemis"]), "--images", str(release["images"]),
        "--out", str(tmp_path / "cli"), "--split", "test",
    ])  # fmt: skip
    captured = capsys.readouterr()
    out = captured.out
    # the release holds two unusable rows: an error line each problem, exit 2, the rest is imported
    assert code == 2
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 3
    assert any("row 7: no 'painting' name" in e for e in errors)
    assert any(f"{JACKSON}: artemis_id [5] belong to another painting" in e for e in errors)
    assert any(f"{JACKSON}: emotion unknown" in e for e in errors)
    assert "imported 3 pairs" in out
    assert f"1 paintings whose image was not found (skipped): {CEZANNE}" in out
    assert len(StimulusDataset.open(tmp_path / "cli").pairs()) == 3


def test_export_apolo_and_reimport(release, tmp_path):
    imported = tmp_path / "imported"
    import_apolo(release["apolo"], release["maps"], release["images"], imported, artemis_csv=release["artemis"])
    ds = StimulusDataset.open(imported)
    out = tmp_path / "export"
    assert main(["export", str(imported), "--format", "apolo", "--out", str(out)]) == 0
    rows = json.loads((out / "apolo.json").read_text())
    assert [(r["painting"], r["emotion"]) for r in rows] == [
        (MONET, "awe"), (MONET, "contentment"), (GOGH, "awe"), (JACKSON, "sadness")
    ]
    monet = rows[1]
    assert monet == {"painting": MONET, "emotion": "contentment", "split": "test", "artemis_id": [2, 0],
                     "utterances": ["peaceful pond", "calm water", "soft colours, quiet"]}  # fmt: skip
    for r in rows:
        saved = np.load(out / "apolo_pixel_map" / f"{r['painting']}_{r['emotion']}.npy")
        assert saved.dtype == np.uint8 and set(np.unique(saved)) <= {0, 1}
        assert np.array_equal(saved.astype(bool), ds.stimulus(r["painting"], r["emotion"]).mask)
    assert not np.load(out / "apolo_pixel_map" / f"{GOGH}_awe.npy").any()

    # the exported layout imports back to the same pairs (artemis_id point into the original CSV)
    back = tmp_path / "back"
    import_apolo(out / "apolo.json", out / "apolo_pixel_map", imported / "images", back,
                 artemis_csv=release["artemis"])  # fmt: skip
    _assert_same_pairs(ds, StimulusDataset.open(back))


def test_parse_wikiart_name():
    assert parse_wikiart_name(MONET) == {"artist": "Claude Monet", "title": "Water Lilies", "year": "1919"}
    assert parse_wikiart_name(JACKSON) == {"artist": "A.y. Jackson", "title": "Winter"}
    assert parse_wikiart_name("untitled-2005") == {"title": "Untitled", "year": "2005"}
    assert parse_wikiart_name("Impressionism/edgar-degas_dancers") == {"artist": "Edgar Degas", "title": "Dancers"}


def _assert_same_pairs(a: StimulusDataset, b: StimulusDataset) -> None:
    pa = {(p.file_name, s.emotion): s for p, s in a.pairs()}
    pb = {(p.file_name, s.emotion): s for p, s in b.pairs()}
    assert pa.keys() == pb.keys()
    for key, s in pa.items():
        assert np.array_equal(s.mask, pb[key].mask), key
        assert s.explanations == pb[key].explanations, key
        assert s.no_stimulus == pb[key].no_stimulus
