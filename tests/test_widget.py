"""The EmoSEM annotator widget, driven end to end in a real napari viewer (run under xvfb-run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QApplication

from napari_emosem._layers import CLICKS_LAYER, METADATA_KEY
from napari_emosem._qt.settings import Settings
from napari_emosem._widget import EmoSEMAnnotator
from napari_emosem.annotation import AnnotationSession, Status
from napari_emosem.data import Stimulus, StimulusDataset
from napari_emosem.emotions import EMOTIONS
from napari_emosem.image_io import load_image
from napari_emosem.paintings import FOLDER as PAINTINGS

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("own_user_folders")]

BOY = PAINTINGS / "boy-in-a-red-vest-1888.jpg"
PAINTER = PAINTINGS / "a-painter-at-work-1875.jpg"


@pytest.fixture
def annotator(make_napari_viewer):
    """A viewer with the widget docked, running model work synchronously (deterministic)."""

    def make(*, synchronous=True, show=False, **kwargs):
        viewer = make_napari_viewer(show=show)
        settings = Settings(backend=False, precision="fp32")
        widget = EmoSEMAnnotator(viewer, settings=settings, synchronous=synchronous, **kwargs)
        viewer.window.add_dock_widget(widget, name="EmoSEM annotator", area="right")
        return viewer, widget

    return make


def add_painting(viewer, path=BOY):
    return viewer.add_image(
        load_image(path), name=path.stem, rgb=True, metadata={METADATA_KEY: {"source_path": str(path)}}
    )


def answer_dialog(choice: str) -> dict:
    """Click ``choice`` in the next modal dialog, as the annotator would; returns what it asked."""
    asked = {}

    def click():
        box = QApplication.activeModalWidget()
        if box is None:
            QTimer.singleShot(20, click)
            return
        asked["text"] = box.text()
        for button in box.buttons():
            if button.text() == choice:
                button.click()
                return
        raise AssertionError(f"no button {choice!r} in {[b.text() for b in box.buttons()]}")

    QTimer.singleShot(20, click)
    return asked


def outside(mask: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(~mask)
    return int(rows[len(rows) // 2]), int(cols[len(cols) // 2])


def test_end_to_end_with_the_tiny_model(annotator, qtbot, tmp_path):
    """Propose with EmoSEM (tiny), paint, type, export, reopen with the reader: same masks, same text."""
    viewer, widget = annotator()
    add_painting(viewer)
    assert widget.session is not None and widget.session.shape == (600, 470)
    widget.set_model("tiny")
    widget.set_device("cpu")
    widget.propose(["fear", "contentment"])
    assert widget.last_error is None, widget.last_error
    session = widget.session
    assert session.emotions() == ("contentment", "fear")
    fear_layer = widget.stimulus_layer("fear")
    assert fear_layer.name == "fear stimulus"
    assert np.array_equal(fear_layer.data > 0, session["fear"].mask)
    assert session["fear"].source == "model:tiny" and "EmoSEM 'tiny'" in session["fear"].model
    assert "EmoSEM 'tiny'" in widget.status_label.text()

    # the annotator paints with napari's brush where the model put nothing
    r, c = outside(session["fear"].mask)
    fear_layer.paint((r, c), 1)
    qtbot.waitUntil(lambda: session["fear"].edited, timeout=5_000)
    assert session["fear"].mask[r, c]
    assert session["fear"].source == "model:tiny"
    # ... and types an explanation in the text box
    widget.set_explanation("The boy's dark, shadowed eyes feel uneasy.", "fear")
    assert session["fear"].explanation == "The boy's dark, shadowed eyes feel uneasy."
    assert fear_layer.metadata[METADATA_KEY]["explanation"] == session["fear"].explanation

    root = tmp_path / "dataset"
    result = widget.export(root)
    assert result is not None and set(result.written) == {"fear", "contentment"}
    assert not session.dirty

    masks = {e: session[e].mask.copy() for e in session.emotions()}
    viewer.layers.clear()  # close the painting (its session goes with it) ...
    viewer.open(str(root), plugin="napari-emosem")  # ... and reopen it from the dataset
    reopened = widget.session
    assert reopened is not None and reopened is not session
    assert not widget.restore_banner.isVisibleTo(widget)  # everything was exported: nothing to restore
    assert np.array_equal(reopened["fear"].mask, masks["fear"])
    assert reopened["fear"].explanation == "The boy's dark, shadowed eyes feel uneasy."
    assert reopened["fear"].edited and reopened["fear"].source == "model:tiny"
    assert np.array_equal(reopened["contentment"].mask, masks["contentment"])
    widget.select_emotion("fear")
    assert widget.explanation_edit.toPlainText() == "The boy's dark, shadowed eyes feel uneasy."
    assert not reopened.dirty


def test_refine_with_clicks_uses_the_cached_painting(annotator, qtbot):
    viewer, widget = annotator()
    add_painting(viewer)
    widget.set_model("starter")
    widget.propose(["sadness"])
    predictor = widget.controller.cache.loaded
    calls = []
    original = predictor.set_image
    predictor.set_image = lambda image: (calls.append(1), original(image))
    widget.select_emotion("sadness")
    mask = widget.session["sadness"].mask
    r, c = outside(mask)
    widget.add_click(r, c, inside=True)
    qtbot.waitUntil(lambda: widget.session["sadness"].mask[r, c], timeout=10_000)
    item = widget.session["sadness"]
    assert item.mask_edited and item.clicks.tolist() == [[r, c]]
    assert np.array_equal(widget.stimulus_layer("sadness").data > 0, item.mask)
    assert calls == []  # decoder work only: the painting was not prepared again
    # an "outside" click removes what is under it
    widget.add_click(r, c, inside=False)
    qtbot.waitUntil(lambda: not widget.session["sadness"].mask[r, c], timeout=10_000)
    points = viewer.layers[CLICKS_LAYER]
    assert len(points.data) == 2 and points.features["inside"].tolist() == [True, False]
    # clicks belong to their emotion
    widget.propose(["awe"])
    widget.select_emotion("awe")
    assert len(points.data) == 0
    widget.select_emotion("sadness")
    assert len(points.data) == 2


def test_reproposing_asks_and_keeps_edits(annotator, qtbot):
    viewer, widget = annotator()
    add_painting(viewer)
    widget.set_model("starter")
    widget.propose(["fear", "awe"])
    session = widget.session
    fear = widget.stimulus_layer("fear")
    r, c = outside(session["fear"].mask)
    fear.paint((r, c), 1)
    qtbot.waitUntil(lambda: session["fear"].edited, timeout=5_000)
    edited_mask = session["fear"].mask.copy()
    awe_before = session["awe"]

    answer_dialog("Keep mine")
    widget.propose(["fear", "awe"])
    assert np.array_equal(session["fear"].mask, edited_mask) and session["fear"].edited
    assert session["awe"] is not awe_before  # the untouched one was re-proposed
    assert "kept your work on fear" in widget.status_label.text()

    answer_dialog("Cancel")
    assert widget.propose(["fear"]) is None
    answer_dialog("Replace")
    widget.propose(["fear"])
    assert not session["fear"].edited


def test_reproposing_never_replaces_what_a_person_reviewed(annotator, qtbot, tmp_path):
    """Accepted, edited, drawn, "no stimulus" (also on a draft that was empty): a new Propose keeps
    them all unless the annotator says Replace; only unreviewed drafts are re-proposed."""
    root = tmp_path / "dataset"
    rgb = load_image(BOY)
    empty = np.zeros(rgb.shape[:2], bool)
    # the model once proposed nothing for disgust, and a person confirmed it: no stimulus
    confirmed = Stimulus("disgust", empty, [], no_stimulus=True, source="model:starter", reviewed=True)
    StimulusDataset.open(root, create=True).write_painting(BOY, BOY.name, [confirmed])
    viewer, widget = annotator()
    widget.set_model("starter")
    widget.open_dataset(root, BOY.name)
    session = widget.session
    assert session["disgust"].status == Status.NO_STIMULUS and not session["disgust"].edited
    widget.propose(["fear", "awe", "sadness", "anger", "contentment"])
    widget.select_emotion("fear")
    qtbot.mouseClick(widget.accept_button, Qt.LeftButton)
    widget.set_explanation("my own words", "awe")
    widget.select_emotion("sadness")
    qtbot.mouseClick(widget.no_stimulus_button, Qt.LeftButton)
    r, c = outside(session["anger"].mask)
    widget.stimulus_layer("anger").paint((r, c), 1)
    qtbot.waitUntil(lambda: session["anger"].edited, timeout=5_000)
    kept = {e: (session[e].status, session[e].mask.copy(), session[e].explanation) for e in session.emotions()}
    draft = session["contentment"]

    asked = answer_dialog("Keep mine")
    widget.propose(EMOTIONS)
    assert "decided: awe, anger, disgust, fear, sadness.\n" in asked["text"]  # every reviewed one, no other
    for emotion in ("fear", "awe", "sadness", "anger", "disgust"):
        status, mask, text = kept[emotion]
        item = session[emotion]
        assert (item.status, item.explanation) == (status, text) and np.array_equal(item.mask, mask), emotion
        assert np.array_equal(widget.stimulus_layer(emotion).data > 0, mask), emotion
    assert session["contentment"] is not draft  # the unreviewed draft was re-proposed
    assert "kept your work on" in widget.status_label.text()


def test_export_saves_strokes_napari_has_not_reported_yet(annotator, tmp_path):
    viewer, widget = annotator()
    add_painting(viewer)
    widget.set_model("starter")
    widget.propose(["fear"])
    session = widget.session
    r, c = outside(session["fear"].mask)
    widget.stimulus_layer("fear").paint((r, c), 1)  # no event-loop turn since: not in the session yet
    assert not session["fear"].mask[r, c]
    widget.export(tmp_path / "dataset")
    record = StimulusDataset.open(tmp_path / "dataset").stimulus(BOY.name, "fear")
    assert record.mask[r, c] and record.edited


def test_decisions_export_and_dataset_folder_is_remembered(annotator, qtbot, tmp_path):
    viewer, widget = annotator()
    add_painting(viewer)
    widget.set_model("starter")
    widget.propose(["fear", "awe", "sadness", "anger"])
    widget.select_emotion("fear")
    qtbot.mouseClick(widget.accept_button, Qt.LeftButton)
    widget.select_emotion("awe")
    qtbot.mouseClick(widget.reject_button, Qt.LeftButton)
    widget.select_emotion("sadness")
    qtbot.mouseClick(widget.no_stimulus_button, Qt.LeftButton)
    session = widget.session
    assert session["fear"].status == Status.ACCEPTED
    assert session["awe"].status == Status.REJECTED and widget.stimulus_layer("awe").opacity < 0.3
    assert session["sadness"].status == Status.NO_STIMULUS and not widget.stimulus_layer("sadness").data.any()
    assert widget.table.item(1, 1).text() == "rejected"

    root = tmp_path / "stimuli"
    widget.export(root)
    assert widget.settings.dataset_folder == str(root)
    records = {s.emotion: s for s in StimulusDataset.open(root).stimuli(BOY.name)}
    assert set(records) == {"fear", "sadness", "anger"}  # rejected: not exported
    assert records["sadness"].no_stimulus

    widget.select_emotion("anger")
    qtbot.mouseClick(widget.accept_button, Qt.LeftButton)
    widget.export()  # the remembered folder, updated in place
    ds = StimulusDataset.open(root)
    assert len(ds.paintings) == 1

    add_painting(viewer, PAINTER)  # another painting: its own session, appended on export
    widget.set_painting(viewer.layers[PAINTER.stem])
    assert widget.session is not session and widget.session.emotions() == ()
    widget.propose(["contentment"])
    widget.export()
    assert [p.file_name for p in StimulusDataset.open(root).paintings] == [BOY.name, PAINTER.name]


def test_text_box_follows_the_selected_layer(annotator):
    viewer, widget = annotator()
    add_painting(viewer)
    widget.set_model("starter")
    widget.propose(["fear", "awe"])
    viewer.layers.selection.active = widget.stimulus_layer("awe")
    assert widget.selected_emotion == "awe"
    assert widget.explanation_edit.toPlainText() == widget.session["awe"].explanation
    widget.explanation_edit.setPlainText("vast and bright")
    assert widget.session["awe"].explanation == "vast and bright" and widget.session["awe"].text_edited
    assert widget.session["fear"].explanation != "vast and bright"
    viewer.layers.selection.active = widget.stimulus_layer("fear")
    assert widget.explanation_edit.toPlainText() == widget.session["fear"].explanation


def test_autosave_is_offered_back_after_a_crash(annotator, tmp_path):
    viewer, widget = annotator()
    add_painting(viewer)
    widget.set_model("starter")
    widget.propose(["fear"])
    widget.set_explanation("unexported words", "fear")
    widget.autosave_now(force=True)
    assert AnnotationSession.autosave_info(widget.session.digest) is not None

    # "crash": a new viewer and widget open the same painting
    viewer2, widget2 = annotator()
    add_painting(viewer2)
    assert widget2.restore_banner.isVisibleTo(widget2)
    widget2.restore_button.click()
    assert widget2.session["fear"].explanation == "unexported words" and widget2.session.dirty
    assert np.array_equal(widget2.stimulus_layer("fear").data > 0, widget.session["fear"].mask)
    assert not widget2.restore_banner.isVisibleTo(widget2)
    widget2.discard_autosave()
    assert AnnotationSession.autosave_info(widget2.session.digest) is None


def test_closing_with_unexported_edits_asks_first(annotator, qtbot, tmp_path):
    viewer, widget = annotator(show=True)
    add_painting(viewer)
    widget.set_model("starter")
    widget.propose(["fear"])
    window = widget.window()
    assert window is not widget and window.isVisible()
    qtbot.waitUntil(lambda: widget.close_guarded, timeout=5_000)

    answer_dialog("Cancel")
    window.close()
    assert window.isVisible()  # the close was refused

    answer_dialog("Close (keep autosave)")
    assert widget.confirm_close() is True
    assert AnnotationSession.autosave_info(widget.session.digest) is not None

    widget.dataset_edit.setText(str(tmp_path / "out"))
    answer_dialog("Export and close")
    assert widget.confirm_close() is True
    assert not widget.unexported() and (tmp_path / "out" / "annotations.json").exists()


def test_no_painting_is_a_message_not_a_crash(annotator):
    viewer, widget = annotator()
    assert widget.propose(["fear"]) is None
    assert "open a painting" in widget.status_label.text()
    viewer.add_image(np.zeros((4, 4, 4, 4)), name="stack")
    assert "not a 2-D" in (widget.last_error or "")


def test_docked_from_the_plugin_menu(make_napari_viewer, plugin_settings, npe2pm):
    from npe2 import PluginManifest

    npe2pm.register(PluginManifest.from_file(Path(__file__).resolve().parents[1] / "napari.yaml"))
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-emosem", "EmoSEM annotator")
    assert isinstance(widget, EmoSEMAnnotator) and widget.settings.persistent
    assert widget.model_spec == "starter"  # no fine-tuned checkpoint yet
    widget.set_device("cpu")
    assert widget.settings.device == "cpu"


def test_fill_erase_and_replacing_layer_data_are_edits(annotator, qtbot):
    viewer, widget = annotator()
    add_painting(viewer)
    widget.set_model("starter")
    widget.propose(["sadness", "awe"])
    session = widget.session
    layer = widget.stimulus_layer("sadness")
    r, c = np.argwhere(session["sadness"].mask)[0]
    layer.paint((r, c), 0)  # the eraser is the brush with label 0
    qtbot.waitUntil(lambda: not session["sadness"].mask[r, c], timeout=5_000)
    assert session["sadness"].mask_edited and not session["awe"].edited

    awe = widget.stimulus_layer("awe")
    r, c = outside(session["awe"].mask)
    awe.fill((r, c), 1)  # the bucket fills the connected background region
    qtbot.waitUntil(lambda: session["awe"].mask[r, c], timeout=5_000)
    assert session["awe"].edited and session["awe"].mask.sum() > 1000

    layer.data = np.zeros_like(layer.data)  # a plugin or script replacing the whole array
    qtbot.waitUntil(lambda: not session["sadness"].mask.any(), timeout=5_000)
    assert layer.metadata[METADATA_KEY]["mask_edited"]


def test_deleting_a_stimulus_layer_discards_that_emotion(annotator, qtbot):
    viewer, widget = annotator()
    add_painting(viewer)
    widget.set_model("starter")
    widget.propose(["fear", "awe"])
    viewer.layers.remove(widget.stimulus_layer("awe"))
    qtbot.waitUntil(lambda: "awe" not in widget.session, timeout=5_000)
    assert widget.session.emotions() == ("fear",)
    assert widget.table.item(1, 1).text() == ""


def test_open_a_painting_from_the_dataset(annotator, tmp_path):
    viewer, widget = annotator()
    root = tmp_path / "dataset"
    for path, emotion in ((BOY, "fear"), (PAINTER, "awe")):
        layer = add_painting(viewer, path)
        widget.set_painting(layer)
        widget.set_model("starter")
        widget.propose([emotion])
        widget.set_explanation(f"{emotion} in {path.stem}", emotion)
        widget.export(root)
    viewer.layers.clear()

    image = widget.open_from_dataset(BOY.name)
    assert image.name == BOY.stem and widget.session["fear"].explanation == f"fear in {BOY.stem}"
    assert widget.session.emotions() == ("fear",) and not widget.session.dirty
    assert widget.open_from_dataset(PAINTER.name).name == PAINTER.stem
    # a campaign's paintings share its Image layer (the navigator opened the dataset as one)
    assert [layer.name for layer in viewer.layers if layer.name.endswith(("1888", "1875"))] == [PAINTER.stem]
    assert widget.open_from_dataset(BOY.name) is image  # one layer, not opened twice
    assert widget.session["fear"].explanation == f"fear in {BOY.stem}"
    assert widget.open_from_dataset("nope.jpg") is None and "no painting 'nope.jpg'" in widget.last_error


def test_the_precision_setting_reaches_load_predictor_and_the_status_line(make_napari_viewer):
    from napari_emosem._qt.jobs import LoadJob
    from napari_emosem.loading import load_predictor

    calls = []

    def loader(spec, **options):
        calls.append((spec, options))
        return load_predictor(spec, **options)

    viewer = make_napari_viewer()
    settings = Settings(backend=False, precision="bf16")
    widget = EmoSEMAnnotator(viewer, settings=settings, synchronous=True, predictor_loader=loader)
    viewer.window.add_dock_widget(widget)
    assert widget.painting_model.precision_combo.currentText() == "bf16"
    widget.set_model("tiny")
    widget.set_device("cpu")
    widget.controller.run(LoadJob(widget.controller, widget.controller.cache, None))
    assert calls == [("tiny", {"device": "cpu", "precision": "bf16"})]
    assert "(bf16" in widget.status_label.text()  # what the plan resolved to
    widget.painting_model.precision_combo.setCurrentText("fp32")
    assert settings.precision == "fp32"
    add_painting(viewer)
    widget.propose(["awe"])
    assert calls[-1] == ("tiny", {"device": "cpu", "precision": "fp32"})  # the cache keys on precision
    assert widget.controller.cache.loaded.plan.label == "fp32"
    widget.propose(["fear"])
    assert len(calls) == 2  # same (spec, device, precision): loaded once
