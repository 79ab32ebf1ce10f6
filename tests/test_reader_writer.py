"""The napari reader and writer: a stimulus dataset <-> an Image layer plus "<emotion> stimulus" layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_emosem._layers import (
    METADATA_KEY,
    annotation_from_layer,
    emotion_of_layer,
    layer_metadata,
    layer_name,
    session_from_layers,
)
from napari_emosem._reader import get_reader, read_dataset
from napari_emosem._writer import dataset_folder_for, write_dataset
from napari_emosem.annotation import HUMAN, AnnotationSession, EmotionAnnotation, Status
from napari_emosem.campaign import CampaignSettings, skip_painting, write_settings
from napari_emosem.data import Stimulus, StimulusDataset
from napari_emosem.errors import DatasetError, EmoSEMError
from napari_emosem.image_io import load_image
from napari_emosem.paintings import FOLDER as PAINTINGS
from napari_emosem.predictor import Proposal

pytestmark = pytest.mark.usefixtures("own_user_folders")

BOY = PAINTINGS / "boy-in-a-red-vest-1888.jpg"
MADAME = PAINTINGS / "madame-cezanne-in-blue-1890.jpg"


def box(shape, r0, r1, c0, c1):
    mask = np.zeros(shape, bool)
    mask[r0:r1, c0:c1] = True
    return mask


@pytest.fixture
def dataset(tmp_path):
    """Two real paintings; the boy annotated last."""
    root = tmp_path / "dataset"
    ds = StimulusDataset.open(root, create=True)
    shape = load_image(MADAME).shape[:2]
    ds.write_painting(
        MADAME,
        MADAME.name,
        [
            Stimulus(
                "sadness",
                box(shape, 100, 300, 50, 250),
                ["the blue dress is heavy"],
                modified="2024-01-01T00:00:00+00:00",
            )
        ],
    )
    shape = load_image(BOY).shape[:2]
    ds.write_painting(
        BOY,
        BOY.name,
        [
            Stimulus(
                "contentment",
                box(shape, 50, 200, 100, 300),
                ["a calm, resting pose"],
                source="model:starter",
                score=0.7,
                modified="2025-06-01T00:00:00+00:00",
            ),
            Stimulus(
                "excitement",
                box(shape, 300, 450, 150, 350),
                ["the red vest glows", "so red"],
                edited=True,
                source="model:starter",
                annotator="ann",
            ),
            Stimulus("fear", np.zeros(shape, bool), [], no_stimulus=True),
            Stimulus("something else", None, ["reminds me of school"]),
        ],
        metadata={"artist": "paul-cezanne", "title": "boy in a red vest"},
    )
    return root


def test_layer_conversions(tmp_path):
    assert layer_name("Fear") == "fear stimulus"
    assert emotion_of_layer("fear stimulus") == "fear"
    assert emotion_of_layer("awe stimulus [1]") == "awe"
    assert emotion_of_layer("Labels") is None
    assert emotion_of_layer("Labels", {"emosem": {"emotion": "sadness"}}) == "sadness"

    s = AnnotationSession(np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8), autosave_dir=False)
    s.apply_proposals([Proposal("fear", box(s.shape, 5, 30, 10, 40), 0.5, "draft fear")], source="model:test")
    s.set_explanation("fear", "mine")
    meta = layer_metadata(s["fear"], painting=s.digest)
    data = s["fear"].mask.astype(np.uint8)
    item = annotation_from_layer("whatever", data, meta, s.shape)
    assert isinstance(item, EmotionAnnotation)
    assert item.emotion == "fear" and item.explanation == "mine" and item.text_edited
    assert item.source == "model:test" and np.array_equal(item.mask, s["fear"].mask)
    # a layer painted in napari without this plugin: a person's annotation
    plain = annotation_from_layer("anger stimulus", data * 3, {}, s.shape)
    assert plain.source == HUMAN and plain.status == Status.ACCEPTED
    with pytest.raises(EmoSEMError, match="painting's size"):
        annotation_from_layer("fear stimulus", np.zeros((3, 3)), meta, s.shape)
    # painted after the metadata was written (saved without the annotator): an edit
    painted = data.copy()
    painted[0, 0] = 1
    assert not s["fear"].mask[0, 0]
    assert annotation_from_layer("fear stimulus", painted, meta, s.shape).mask_edited
    s.mark_no_stimulus("sadness")
    no_meta = layer_metadata(s["sadness"], painting=s.digest)
    assert annotation_from_layer("x", np.zeros(s.shape), no_meta, s.shape).status == Status.NO_STIMULUS
    assert annotation_from_layer("x", painted, no_meta, s.shape).status == Status.ACCEPTED
    rebuilt = session_from_layers(
        s.image, [("fear stimulus", data, meta), ("points", data, {}), ("x", data, {})], autosave_dir=False
    )
    assert rebuilt.emotions() == ("fear",) and not rebuilt.dirty


def test_get_reader_claims_datasets_only(dataset, tmp_path):
    assert get_reader(str(BOY)) is None
    assert get_reader(str(tmp_path)) is None  # a folder without annotations.json
    assert callable(get_reader(str(dataset)))
    assert callable(get_reader(str(dataset / "annotations.json")))
    assert callable(get_reader([str(dataset)]))
    assert get_reader([str(dataset), str(dataset)]) is None


def test_read_dataset_gives_the_first_painting_not_done_with_its_layers(dataset):
    # the campaign asks for sadness only: Madame in Blue has it (done), the boy does not
    write_settings(dataset, CampaignSettings(emotions=("sadness",)))
    layers = get_reader(str(dataset / "annotations.json"))(str(dataset / "annotations.json"))
    (image, image_meta, kind), *labels = layers
    assert kind == "image" and image_meta["name"] == "boy-in-a-red-vest-1888" and image_meta["rgb"]
    assert np.array_equal(image, load_image(BOY))
    emosem = image_meta["metadata"][METADATA_KEY]
    assert emosem["file_name"] == BOY.name and Path(emosem["dataset"]) == dataset
    assert emosem["metadata"]["artist"] == "paul-cezanne"
    assert [r["emotion"] for r in emosem["passthrough"]] == ["something else"]

    by_name = {meta["name"]: (data, meta) for data, meta, kind in labels if kind == "labels"}
    assert set(by_name) == {"contentment stimulus", "excitement stimulus", "fear stimulus"}
    data, meta = by_name["excitement stimulus"]
    state = meta["metadata"][METADATA_KEY]
    assert data.dtype == np.uint8 and data.shape == image.shape[:2]
    assert np.array_equal(data > 0, box(data.shape, 300, 450, 150, 350))
    assert state["explanation"] == "the red vest glows" and state["more_explanations"] == ["so red"]
    assert state["source"] == "model:starter" and state["mask_edited"] and state["status"] == Status.ACCEPTED.value
    contentment = by_name["contentment stimulus"][1]["metadata"][METADATA_KEY]
    assert contentment["status"] == Status.PROPOSED.value and contentment["score"] == pytest.approx(0.7)
    fear_data, fear_meta = by_name["fear stimulus"]
    assert not fear_data.any() and fear_meta["metadata"][METADATA_KEY]["status"] == Status.NO_STIMULUS.value


def test_read_dataset_without_a_painting_to_do_gives_the_latest(dataset):
    write_settings(dataset, CampaignSettings(emotions=("fear", "sadness")))
    ds = StimulusDataset.open(dataset)
    fear = Stimulus("fear", no_stimulus=True, modified="2099-01-01T00:00:00+00:00")  # the latest record
    ds.write_painting(MADAME, MADAME.name, [*ds.stimuli(MADAME.name), fear])
    assert read_dataset(dataset)[0][1]["name"] == "boy-in-a-red-vest-1888"  # in progress: still to do
    skip_painting(ds, BOY.name, "blurred")
    # nothing left to do (one done, one skipped): the painting annotated last
    assert read_dataset(dataset)[0][1]["name"] == "madame-cezanne-in-blue-1890"


def test_read_a_chosen_painting_and_clear_errors(dataset, tmp_path):
    layers = read_dataset(dataset, MADAME.name)
    assert layers[0][1]["name"] == "madame-cezanne-in-blue-1890"
    assert [m["name"] for _, m, k in layers if k == "labels"] == ["sadness stimulus"]
    with pytest.raises(DatasetError, match="no painting 'nope.jpg'"):
        read_dataset(dataset, "nope.jpg")
    empty = tmp_path / "empty"
    ds = StimulusDataset.open(empty, create=True)
    ds.write_painting(MADAME, MADAME.name, [])
    ds.remove_painting(MADAME.name)
    with pytest.raises(DatasetError, match="holds no paintings"):
        read_dataset(empty)


def test_writer_round_trip(dataset, tmp_path):
    layers = read_dataset(dataset, BOY.name)
    # the annotator paints more of the excitement stimulus, as napari's brush would
    changed = []
    for data, meta, kind in layers:
        if meta.get("name") == "excitement stimulus":
            data = data.copy()
            data[0:10, 0:10] = 1
        changed.append((data, meta, kind))
    changed.append((np.zeros((0, 2)), {"name": "EmoSEM clicks"}, "points"))  # ignored
    out = tmp_path / "copy"
    written = write_dataset(str(out / "annotations.json"), changed)
    assert written == [str(out / "annotations.json")]
    ds = StimulusDataset.open(out)
    (p,) = ds.paintings
    assert p.file_name == BOY.name and p.metadata["artist"] == "paul-cezanne"
    assert (out / "images" / BOY.name).read_bytes() == BOY.read_bytes()  # copied as is
    records = {s.emotion: s for s in ds.stimuli(p)}
    assert set(records) == {"contentment", "excitement", "fear", "something else"}
    assert records["excitement"].mask[0:10, 0:10].all()
    assert records["excitement"].explanations == ["the red vest glows", "so red"]
    assert records["fear"].no_stimulus
    assert records["something else"].explanations == ["reminds me of school"]
    assert records["contentment"].source == "model:starter" and not records["contentment"].edited


def test_writer_paths_and_errors(tmp_path):
    assert dataset_folder_for(tmp_path / "d" / "annotations.json") == tmp_path / "d"
    assert dataset_folder_for(tmp_path / "stimuli.json") == tmp_path / "stimuli"
    rgb = load_image(BOY)
    mask = box(rgb.shape[:2], 0, 50, 0, 50).astype(np.uint8)
    written = write_dataset(
        str(tmp_path / "stimuli.json"),
        [(rgb, {"name": "boy", "metadata": {}}, "image"), (mask, {"name": "anger stimulus", "metadata": {}}, "labels")],
    )
    assert written == [str(tmp_path / "stimuli" / "annotations.json")]
    record = StimulusDataset.open(tmp_path / "stimuli").stimulus("boy.png", "anger")
    assert record.source == "human" and np.array_equal(record.mask, mask > 0)
    with pytest.raises(EmoSEMError, match="exactly one painting"):
        write_dataset(str(tmp_path / "x.json"), [(rgb, {"name": "a"}, "image"), (rgb, {"name": "b"}, "image")])
    with pytest.raises(EmoSEMError, match="painting's size"):
        write_dataset(
            str(tmp_path / "x.json"),
            [(rgb, {"name": "a"}, "image"), (np.zeros((5, 5), np.uint8), {"name": "fear stimulus"}, "labels")],
        )


@pytest.mark.gui
def test_napari_opens_and_saves_through_the_plugin(make_napari_viewer, dataset, tmp_path):
    write_settings(dataset, CampaignSettings(emotions=("sadness",)))  # Madame in Blue is done: the boy is next
    viewer = make_napari_viewer()
    viewer.open(str(dataset), plugin="napari-emosem")
    names = [layer.name for layer in viewer.layers]
    assert names == ["boy-in-a-red-vest-1888", "contentment stimulus", "excitement stimulus", "fear stimulus"]
    fear = viewer.layers["fear stimulus"]
    fear.paint((20, 20), 1)  # napari's brush, public API
    out = tmp_path / "saved" / "annotations.json"
    viewer.layers.save(str(out), plugin="napari-emosem")
    record = StimulusDataset.open(out.parent).stimulus(BOY.name, "fear")
    assert record.mask[20, 20] and not record.no_stimulus  # painted: no longer "no stimulus"

    viewer.layers.clear()
    viewer.open(str(out), plugin="napari-emosem")
    assert viewer.layers["fear stimulus"].data[20, 20] == 1
    meta = viewer.layers["excitement stimulus"].metadata[METADATA_KEY]
    assert meta["explanation"] == "the red vest glows"
