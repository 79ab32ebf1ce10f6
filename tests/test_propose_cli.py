"""`emosem propose`: a dataset COCO tools read, overlays, clear one-line errors, nothing half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from napari_emosem import EMOTIONS
from napari_emosem.cli import main as emosem
from napari_emosem.data import StimulusDataset


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if "error:" in line]


def _overlay_shows(overlay: np.ndarray, image: np.ndarray, index: int, mask: np.ndarray) -> float:
    """IoU between the stimulus panel ``index`` of a contact sheet highlights and ``mask``.

    The sheet (overlay.render_overlay, default layout: 4 columns of 360 px panels in 376 × 454 px
    cells under a 24 px title) shows the painting at 35 % brightness outside the stimulus and at
    75 % (plus the emotion's tint) inside it; so the panel's brightness over the painting's tells
    which pixels it highlights.
    """
    h, w = image.shape[:2]
    scale = 360 / max(h, w)
    ph, pw = max(1, round(h * scale)), max(1, round(w * scale))
    small = np.asarray(Image.fromarray(image).resize((pw, ph), Image.BILINEAR, reducing_gap=3.0), np.float32)
    x0 = (index % 4) * 376 + 8 + (360 - pw) // 2
    y0 = 24 + (index // 4) * 454 + 8
    panel = overlay[y0 : y0 + ph, x0 : x0 + pw].astype(np.float32)
    visible = small.sum(-1) > 60  # too dark to tell 35 % from 75 %
    highlighted = (panel.sum(-1) / np.maximum(small.sum(-1), 1)) > 0.55
    expected = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((pw, ph), Image.NEAREST)) > 127
    union = ((highlighted | expected) & visible).sum()
    return float(((highlighted & expected) & visible).sum() / max(union, 1))


def test_propose_all_emotions_offline_with_the_default_starter(tmp_path, paintings, capsys):
    out = tmp_path / "out"
    assert emosem(["propose", str(paintings[0]), str(paintings[1]), "--out", str(out)]) == 0
    ds = StimulusDataset.open(out)
    assert sorted(p.file_name for p in ds.paintings) == sorted(p.name for p in paintings[:2])
    for painting in ds.paintings:
        stimuli = ds.stimuli(painting)
        assert [s.emotion for s in stimuli] == list(EMOTIONS)
        for s in stimuli:
            assert s.mask.shape == (painting.height, painting.width) and s.mask.any()
            assert s.explanation and s.source == "model:starter" and not s.edited
            assert 0 <= s.score <= 1
        # the contact sheet shows this painting with each emotion's stored stimulus, in order
        overlay = np.asarray(Image.open(out / "overlays" / f"{Path(painting.file_name).stem}.png").convert("RGB"))
        image = ds.image(painting)
        for index, s in enumerate(stimuli):
            assert _overlay_shows(overlay, image, index, s.mask) > 0.8, s.emotion
        # and not another emotion's: panels differ where the masks do
        fear, sadness = EMOTIONS.index("fear"), EMOTIONS.index("sadness")
        if (stimuli[fear].mask != stimuli[sadness].mask).mean() > 0.2:
            assert _overlay_shows(overlay, image, fear, stimuli[sadness].mask) < 0.8
    # the original bytes are kept
    assert (out / "images" / paintings[0].name).read_bytes() == paintings[0].read_bytes()
    printed = capsys.readouterr().out
    assert "sadness" in printed and paintings[0].name in printed


def test_coco_tools_read_the_output(tmp_path, paintings):
    from pycocotools.coco import COCO

    out = tmp_path / "out"
    assert emosem(
        ["propose", str(paintings[2]), "--emotions", "fear,awe", "--out", str(out),
         "--model", "tiny", "--device", "cpu"]
    ) == 0
    coco = COCO(str(out / "annotations.json"))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    anns = coco.loadAnns(coco.getAnnIds())
    assert sorted(names[a["category_id"]] for a in anns) == ["awe", "fear"]
    ds = StimulusDataset.open(out)
    for ann in anns:
        mask = coco.annToMask(ann).astype(bool)
        stim = ds.stimulus(ann["image_id"], names[ann["category_id"]])
        assert np.array_equal(mask, stim.mask)
        assert ann["source"] == "model:tiny" and "explanation" in ann


def test_running_again_updates_the_painting_in_place(tmp_path, paintings):
    out = tmp_path / "out"
    assert emosem(["propose", str(paintings[0]), "--emotions", "fear", "--out", str(out)]) == 0
    first = json.loads((out / "annotations.json").read_text())
    assert emosem(["propose", str(paintings[0]), "--emotions", "fear,sadness", "--out", str(out)]) == 0
    second = json.loads((out / "annotations.json").read_text())
    assert len(second["images"]) == 1 and second["images"][0]["id"] == first["images"][0]["id"]
    assert len(second["annotations"]) == 2
    # proposing one emotion touches only that emotion's record
    assert emosem(["propose", str(paintings[0]), "--emotions", "awe", "--out", str(out)]) == 0
    third = json.loads((out / "annotations.json").read_text())
    assert len(third["annotations"]) == 3
    kept = {b["id"] for b in second["annotations"]}
    assert [a for a in third["annotations"] if a["id"] in kept] == second["annotations"]


def test_proposing_again_never_replaces_what_a_person_reviewed(tmp_path, paintings, capsys):
    out = tmp_path / "out"
    painting = str(paintings[0])
    assert emosem(["propose", painting, "--emotions", "fear,awe,sadness", "--out", str(out)]) == 0
    # what the issue reproduced: a record marked written by a person, and one marked no stimulus
    doc = json.loads((out / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in doc["categories"]}
    mine = {}
    for a in doc["annotations"]:
        if names[a["category_id"]] == "fear":
            a.update(source="human", edited=True, explanation="the knife", explanations=["the knife"])
            a.pop("reviewed")  # as an older file would have it: derived
        if names[a["category_id"]] == "awe":
            size = a["segmentation"]["size"]
            a.update(no_stimulus=True, segmentation={"size": size, "counts": [size[0] * size[1]]}, reviewed=True)
        mine[names[a["category_id"]]] = a
    (out / "annotations.json").write_text(json.dumps(doc))
    capsys.readouterr()

    assert emosem(["propose", painting, "--out", str(out)]) == 0  # all eight emotions
    err = capsys.readouterr().err
    assert "kept 2 reviewed records (use --overwrite-reviewed to replace them)" in err
    ds = StimulusDataset.open(out)
    assert ds.stimulus(paintings[0].name, "fear").explanations == ["the knife"]
    assert ds.stimulus(paintings[0].name, "awe").no_stimulus
    assert len(ds.stimuli(paintings[0].name)) == 8
    assert ds.stimulus(paintings[0].name, "sadness").source == "model:starter"

    assert emosem(["propose", painting, "--emotions", "fear", "--out", str(out), "--overwrite-reviewed"]) == 0
    assert "replaced 1 reviewed records" in capsys.readouterr().err
    ds = StimulusDataset.open(out)
    assert ds.stimulus(paintings[0].name, "fear").source == "model:starter"
    assert ds.stimulus(paintings[0].name, "awe").no_stimulus  # not proposed: untouched


def test_the_library_keeps_reviewed_records_too(tmp_path, paintings):
    from napari_emosem.data import Stimulus
    from napari_emosem.loading import load_predictor
    from napari_emosem.propose import propose_paintings

    out = tmp_path / "out"
    ds = StimulusDataset.open(out, create=True)
    ds.write_painting(paintings[1], stimuli=[Stimulus("sadness", explanations=["her tired eyes"], annotator="maria")])
    predictor = load_predictor("starter", device="cpu")
    report = propose_paintings([paintings[1]], predictor, ["sadness", "fear"], out, overlays=False)
    assert report.kept_reviewed == [(paintings[1].name, "sadness")] and report.replaced_reviewed == []
    ds = StimulusDataset.open(out)
    assert ds.stimulus(paintings[1].name, "sadness").explanations == ["her tired eyes"]
    assert ds.stimulus(paintings[1].name, "fear").source == "model:starter"


def _write(path: Path, array: np.ndarray, mode=None, **save) -> Path:
    Image.fromarray(array, mode=mode).save(path, **save)
    return path


def test_unusual_but_valid_images_work(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (120, 90, 3), dtype=np.uint8)
    files = [
        _write(tmp_path / "grey.png", rgb[..., 0]),
        _write(tmp_path / "rgba.png", np.dstack([rgb, np.full((120, 90), 128, np.uint8)])),
        tmp_path / "palette.png",
        tmp_path / "deep.png",
    ]
    Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE).save(files[2])
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(files[3])  # 16-bit grayscale
    assert Image.open(files[3]).mode.startswith("I;16") or Image.open(files[3]).mode == "I"
    out = tmp_path / "out"
    assert emosem(
        ["propose", *map(str, files), "--emotions", "awe", "--out", str(out), "--model", "tiny", "--device", "cpu"]
    ) == 0
    ds = StimulusDataset.open(out)
    assert len(ds.paintings) == 4
    for p in ds.paintings:
        assert ds.image(p).shape == (120, 90, 3)
        assert ds.stimuli(p)[0].mask.shape == (120, 90)


def test_bad_inputs_get_one_clear_line_each_and_good_ones_still_land(tmp_path, paintings, capsys):
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("this is not a picture")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(paintings[0].read_bytes()[:5000])  # a JPEG cut short
    tiny = _write(tmp_path / "tiny.png", np.zeros((10, 10, 3), np.uint8))
    missing = tmp_path / "missing.png"
    out = tmp_path / "out"
    code = emosem(
        ["propose", str(not_image), str(corrupt), str(tiny), str(missing), str(paintings[1]), "--out", str(out)]
    )
    assert code == 2
    errors = _errors(capsys)
    assert len(errors) == 4
    assert str(not_image) in errors[0] and "not an image" in errors[0]
    assert str(corrupt) in errors[1] and "corrupt or truncated" in errors[1]
    assert str(tiny) in errors[2] and "10 × 10 px is too small" in errors[2]
    assert str(missing) in errors[3] and "no such file" in errors[3]
    ds = StimulusDataset.open(out)  # the good painting landed, the bad ones left nothing
    assert [p.file_name for p in ds.paintings] == [paintings[1].name]
    assert sorted(x.name for x in (out / "images").iterdir()) == [paintings[1].name]
    assert sorted(x.name for x in (out / "overlays").iterdir()) == [paintings[1].stem + ".png"]


def test_unknown_emotion_fails_before_any_work(tmp_path, paintings, capsys):
    out = tmp_path / "out"
    assert emosem(["propose", str(paintings[0]), "--emotions", "fear,joy,awe,rage", "--out", str(out)]) == 2
    errors = _errors(capsys)
    assert len(errors) == 1 and "'joy', 'rage'" in errors[0] and "choose from amusement" in errors[0]
    assert not (out / "annotations.json").exists()


def test_unwritable_output_folder_is_one_clear_line(tmp_path, paintings, capsys):
    if os.geteuid() == 0:
        # root writes anywhere; a file where the folder should be is refused for everyone
        target = tmp_path / "taken"
        target.write_text("x")
        out = target / "out"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        out = locked / "out"
    assert emosem(["propose", str(paintings[0]), "--out", str(out)]) == 2
    errors = _errors(capsys)
    assert len(errors) == 1 and str(out) in errors[0] and "cannot write there" in errors[0]


def test_very_large_painting_masks_come_back_at_full_resolution(tmp_path):
    big = np.zeros((9000, 12000, 3), np.uint8)
    big[:, :6000] = (200, 40, 30)
    big[4000:, 6000:] = (30, 60, 200)
    path = tmp_path / "big.jpg"
    Image.fromarray(big).save(path, quality=70)
    del big
    out = tmp_path / "out"
    assert emosem(["propose", str(path), "--emotions", "sadness", "--out", str(out), "--no-overlay"]) == 0
    ds = StimulusDataset.open(out)
    stimulus = ds.stimuli(ds.paintings[0])[0]
    assert stimulus.mask_shape == (9000, 12000)


def test_beyond_the_pixel_limit_is_refused_clearly(tmp_path, capsys, monkeypatch):
    import napari_emosem.image_io as image_io

    monkeypatch.setattr(image_io, "MAX_PIXELS", 1_000_000)
    path = _write(tmp_path / "huge.png", np.zeros((1200, 1000, 3), np.uint8))
    assert emosem(["propose", str(path), "--out", str(tmp_path / "out")]) == 2
    (line,) = _errors(capsys)
    assert str(path) in line and "1000 × 1200 px" in line and "downscaled copy" in line


def test_torchrun_style_processes_share_a_folder_of_paintings(tmp_path, paintings):
    folder = tmp_path / "in"
    folder.mkdir()
    for p in paintings:
        (folder / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "out"
    procs = [
        subprocess.Popen(
            [
                sys.executable, "-m", "napari_emosem", "propose", str(folder),
                "--emotions", "fear", "--out", str(out), "--no-overlay",
            ],
            env={**os.environ, "RANK": str(rank), "WORLD_SIZE": "2"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    by_rank = [sorted(line for line in stdout.splitlines() if line.endswith(".jpg")) for stdout, _ in outputs]
    names = sorted(p.name for p in paintings)
    assert by_rank == [names[0::2], names[1::2]]  # each process took every other painting
    assert sorted(p.file_name for p in StimulusDataset.open(out).paintings) == names
