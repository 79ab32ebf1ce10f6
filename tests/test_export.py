"""emosem export: ArtEmis-style CSV, PNG masks, and the refusal of paintings sharing a name.

(The APOLO layout is exported and re-imported in test_apolo_artemis.py.)
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from napari_emosem.cli import main
from napari_emosem.data import Stimulus, StimulusDataset
from napari_emosem.data.apolo import import_apolo
from napari_emosem.data.artemis import read_artemis_csv
from napari_emosem.data.export import export_dataset
from napari_emosem.errors import DatasetError
from napari_emosem.image_io import load_image
from napari_emosem.paintings import painting_paths

PAINTINGS = painting_paths()


def rect(shape, top, left, h, w) -> np.ndarray:
    m = np.zeros(shape, np.int64)
    m[top : top + h, left : left + w] = 1
    return m


def test_export_artemis_csv_and_round_trip_of_a_new_dataset(tmp_path):
    ds = StimulusDataset.open(tmp_path / "ds", create=True)
    shape = load_image(PAINTINGS[0]).shape[:2]
    ds.write_painting(
        PAINTINGS[0],
        stimuli=[
            Stimulus("fear", rect(shape, 5, 5, 30, 40) > 0, ["dark, so dark", "line\nbreak"]),
            Stimulus("awe", no_stimulus=True, explanations=["nothing here"]),
            Stimulus("something else", explanations=["odd"]),
            Stimulus("sadness", explanations=["text only"]),
        ],
        metadata={"style": "Realism"},
    )
    out = tmp_path / "out"
    assert main(["export", str(ds.root), "--format", "artemis", "--out", str(out)]) == 0
    with open(out / "artemis.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    name = PAINTINGS[0].stem
    assert [(r["emotion"], r["utterance"]) for r in rows] == [
        ("awe", "nothing here"), ("fear", "dark, so dark"), ("fear", "line break"),
        ("sadness", "text only"), ("something else", "odd"),
    ]  # fmt: skip
    assert {r["painting"] for r in rows} == {name} and {r["art_style"] for r in rows} == {"Realism"}
    assert {r["repetition"] for r in rows} == {"5"}
    index = read_artemis_csv(out / "artemis.csv")
    assert index.by_pair[(name, "fear")] == [1, 2]

    # APOLO + ArtEmis export of a dataset made here imports back (joined by painting and emotion)
    export_dataset(ds, "apolo", out)
    back = tmp_path / "back"
    report = import_apolo(out / "apolo.json", out / "apolo_pixel_map", ds.root / "images", back,
                          artemis_csv=out / "artemis.csv")  # fmt: skip
    assert report.pairs == 2  # fear and awe (no stimulus); text-only records have no map
    again = StimulusDataset.open(back)
    fear = again.stimulus(PAINTINGS[0].name, "fear")
    assert np.array_equal(fear.mask, ds.stimulus(PAINTINGS[0].name, "fear").mask)
    assert fear.explanations == ["dark, so dark", "line break"]
    assert again.stimulus(PAINTINGS[0].name, "awe").no_stimulus
    assert again.painting(PAINTINGS[0].name).metadata["style"] == "Realism"


def test_export_png(tmp_path):
    ds = StimulusDataset.open(tmp_path / "ds", create=True)
    rgb = np.zeros((36, 40, 3), np.uint8)
    m = rect((36, 40), 3, 4, 5, 6) > 0
    ds.write_painting(rgb, "p.png", [Stimulus("fear", m), Stimulus("awe", no_stimulus=True),
                                     Stimulus("sadness", explanations=["t"])])  # fmt: skip
    report = export_dataset(ds, "png", tmp_path / "png")
    assert report.files == 2
    fear = np.asarray(Image.open(tmp_path / "png" / "p_fear.png"))
    assert fear.dtype == np.uint8 and fear.shape == (36, 40)
    assert set(np.unique(fear)) == {0, 255} and np.array_equal(fear == 255, m)
    assert not np.asarray(Image.open(tmp_path / "png" / "p_awe.png")).any()
    assert not (tmp_path / "png" / "p_sadness.png").exists()


def test_exports_refuse_paintings_sharing_a_name(tmp_path):
    ds = StimulusDataset.open(tmp_path / "ds", create=True)
    ds.write_painting(np.zeros((32, 32, 3), np.uint8), "a.png", [])
    ds.write_painting(PAINTINGS[0], "a.jpg", [])
    for fmt in ("apolo", "artemis", "png"):
        with pytest.raises(DatasetError, match="share one"):
            export_dataset(ds, fmt, tmp_path / fmt)
