"""A campaign of generated paintings driven through the annotator as a user would: the navigator,
Next/Previous, statuses, saving on leaving, prefetch, skipping, re-proposing, active time
(run under xvfb-run)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QApplication, QInputDialog

from napari_emosem._qt.settings import Settings
from napari_emosem._widget import EmoSEMAnnotator
from napari_emosem.annotation import Status
from napari_emosem.campaign import CampaignSettings, PaintingStatus, add_paintings, campaign_progress, write_settings
from napari_emosem.data import Stimulus, StimulusDataset
from napari_emosem.image_io import image_digest
from napari_emosem.toy import toy_painting

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("own_user_folders")]

EMOTIONS = ("awe", "fear", "sadness")


def make_campaign(root, n: int = 5, *, emotions=EMOTIONS, sizes=None):
    """``n`` generated paintings added to a campaign (not started) of ``emotions``."""
    folder = root.parent / f"{root.name}-paintings"
    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        size = sizes[i] if sizes else (96, 128)
        path = folder / f"painting-{i}.png"
        Image.fromarray(toy_painting(i, size=size).image).save(path)
        paths.append(path)
    dataset = StimulusDataset.open(root, create=True)
    write_settings(root, CampaignSettings(emotions=tuple(emotions)))
    assert len(add_paintings(dataset, paths).added) == n
    return root


class Clock:
    """Monotonic seconds the test moves on by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def annotator(make_napari_viewer):
    def make(*, synchronous=True, model="tiny", show=False, **kwargs):
        viewer = make_napari_viewer(show=show)
        settings = Settings(backend=False, precision="fp32")
        settings.annotator = "ana"
        widget = EmoSEMAnnotator(viewer, settings=settings, synchronous=synchronous, **kwargs)
        viewer.window.add_dock_widget(widget, name="EmoSEM annotator", area="right")
        widget.set_model(model)
        widget.set_device("cpu")
        return viewer, widget

    return make


def statuses(root) -> dict[str, PaintingStatus]:
    progress = campaign_progress(StimulusDataset.open(root))
    return {p.painting.file_name: p.status for p in progress.paintings}


def list_rows(widget) -> list[str]:
    model = widget.navigator.model
    return [model.data(model.index(r)) for r in range(model.rowCount())]


def count_encodes(widget) -> list[str]:
    """Wrap the loaded predictor's set_image: the list gets the digest of each painting encoded."""
    predictor = widget.controller.cache.loaded
    calls: list[str] = []
    original = predictor.set_image
    predictor.set_image = lambda image: (calls.append(image_digest(image)), original(image))[1]
    return calls


def test_opens_at_the_first_painting_not_done_and_lists_the_campaign(annotator, tmp_path):
    root = make_campaign(tmp_path / "campaign", 4)
    dataset = StimulusDataset.open(root)
    done = [Stimulus(e, no_stimulus=True, source="human", annotator="bo") for e in EMOTIONS]
    dataset.write_painting(dataset.image_path("painting-0.png"), "painting-0.png", done)
    viewer, widget = annotator()
    layer = widget.open_dataset(root)
    assert layer is not None and widget.session.file_name == "painting-1.png"
    assert [lay.name for lay in viewer.layers if lay.name.startswith("painting")] == ["painting-1"]
    nav = widget.navigator
    assert nav.isVisibleTo(widget) and "4 paintings" in nav.title()
    assert list_rows(widget) == [
        "painting-0.png  ·  done", "painting-1.png  ·  not started",
        "painting-2.png  ·  not started", "painting-3.png  ·  not started",
    ]  # fmt: skip
    assert nav.summary_label.text() == "1 of 4 paintings done · 3 of 12 pairs reviewed"
    assert nav.progress.value() == 1 and nav.progress.maximum() == 4
    assert nav.list_view.currentIndex().row() == 1  # the current painting is the selected row
    # filter by status, search by name
    nav.filter_combo.setCurrentText("done")
    assert list_rows(widget) == ["painting-0.png  ·  done"]
    nav.filter_combo.setCurrentText("all")
    nav.search_edit.setText("ing-3")
    assert list_rows(widget) == ["painting-3.png  ·  not started"]
    nav.search_edit.setText("")
    assert len(list_rows(widget)) == 4


def test_next_saves_the_painting_and_statuses_follow(annotator, qtbot, tmp_path):
    root = make_campaign(tmp_path / "campaign", 4)
    viewer, widget = annotator()
    widget.open_dataset(root)
    image_layer = widget.campaign.layer
    # the annotator proposes, accepts one, marks one "no stimulus", and moves on with Next
    qtbot.mouseClick(widget.propose_button, Qt.LeftButton)
    assert set(widget.session.emotions()) >= set(EMOTIONS)
    widget.select_emotion("awe")
    qtbot.mouseClick(widget.accept_button, Qt.LeftButton)
    widget.select_emotion("fear")
    qtbot.mouseClick(widget.no_stimulus_button, Qt.LeftButton)
    qtbot.mouseClick(widget.navigator.next_button, Qt.LeftButton)
    assert widget.session.file_name == "painting-1.png"
    assert widget.campaign.layer is image_layer and image_layer.name == "painting-1"  # one layer, reused
    assert statuses(root)["painting-0.png"] is PaintingStatus.IN_PROGRESS  # saved on leaving
    saved = {s.emotion: s for s in StimulusDataset.open(root).stimuli("painting-0.png")}
    assert saved["awe"].reviewed and saved["awe"].annotator == "ana" and saved["fear"].no_stimulus
    assert not saved["sadness"].reviewed  # the draft is saved too, as a draft
    assert list_rows(widget)[0] == "painting-0.png  ·  in progress"
    # Previous comes back to it with its work; finishing it makes it done
    qtbot.mouseClick(widget.navigator.previous_button, Qt.LeftButton)
    session = widget.session
    assert session.file_name == "painting-0.png" and session["fear"].status == Status.NO_STIMULUS
    assert not session.dirty
    widget.select_emotion("sadness")
    widget.reject()
    widget.mark_no_stimulus("sadness")
    widget.next_painting()
    assert statuses(root)["painting-0.png"] is PaintingStatus.DONE
    assert widget.navigator.summary_label.text().startswith("1 of 4 paintings done · 3 of 12 pairs reviewed")
    # skip done: Previous passes over the done painting
    assert widget.session.file_name == "painting-1.png"
    assert not widget.previous_painting() and widget.session.file_name == "painting-1.png"
    widget.navigator.skip_done_check.setChecked(False)
    assert widget.previous_painting() and widget.session.file_name == "painting-0.png"


def test_a_failed_save_keeps_the_annotator_on_the_painting(annotator, tmp_path):
    root = make_campaign(tmp_path / "campaign", 2)
    viewer, widget = annotator()
    widget.open_dataset(root)
    widget.propose()
    widget.accept("awe")
    good = (root / "annotations.json").read_bytes()
    (root / "annotations.json").write_text("{")  # someone broke the file meanwhile
    assert not widget.next_painting()
    (root / "annotations.json").write_bytes(good)
    assert widget.session.file_name == "painting-0.png" and widget.session.dirty
    assert "was not saved" in widget.last_error and "Your work stays here" in widget.last_error
    assert widget.next_painting() and statuses(root)["painting-0.png"] is PaintingStatus.IN_PROGRESS


def test_next_shows_the_prefetched_painting_without_encoding_it_again(annotator, qtbot, tmp_path):
    root = make_campaign(tmp_path / "campaign", 3)
    viewer, widget = annotator()
    widget.open_dataset(root)
    widget.propose()  # loads the model and encodes the first painting
    assert widget.controller.prefetch.ready("painting-1.png")  # made ready after the propose
    encodes = count_encodes(widget)
    widget.next_painting()
    session = widget.session
    assert session.file_name == "painting-1.png" and session.digest not in encodes  # not encoded again
    assert widget.controller.prefetch.ready("painting-2.png")  # ... and the one after is made ready
    assert set(session.emotions()) == set(EMOTIONS)  # its drafts are there
    for emotion in EMOTIONS:
        item = session[emotion]
        assert item.status == Status.PROPOSED and not item.reviewed and item.source == "model:tiny"
        assert item.explanation  # the drafted explanation too
        assert np.array_equal(widget.stimulus_layer(emotion).data > 0, item.mask)
    assert session.dirty  # new drafts: saved with the painting on leaving
    # refining on it uses the embedding the prefetch made
    widget.select_emotion("fear")
    widget.add_click(10, 10)
    qtbot.waitUntil(lambda: not widget.busy and widget.session["fear"].mask_edited, timeout=10_000)
    assert encodes.count(session.digest) == 1  # given back to the predictor after painting-2's prefetch
    widget.next_painting()
    saved = StimulusDataset.open(root).stimuli("painting-1.png")
    assert {s.emotion for s in saved} == set(EMOTIONS)
    assert {s.emotion for s in saved if not s.reviewed} == {"awe", "sadness"}


def test_prefetched_drafts_never_replace_a_record(annotator, tmp_path):
    root = make_campaign(tmp_path / "campaign", 2)
    dataset = StimulusDataset.open(root)
    mask = np.zeros((96, 128), bool)
    mask[5:20, 5:40] = True
    mine = Stimulus("fear", mask, ["my words"], source="human", annotator="ana")  # the annotator of this widget
    dataset.write_painting(dataset.image_path("painting-1.png"), "painting-1.png", [mine])
    viewer, widget = annotator()
    widget.open_dataset(root)
    widget.propose()
    widget.next_painting()
    session = widget.session
    assert np.array_equal(session["fear"].mask, mask) and session["fear"].explanation == "my words"
    assert session["fear"].reviewed and {"awe", "sadness"} <= set(session.emotions())


def test_skip_with_a_reason_and_unskip(annotator, qtbot, tmp_path):
    root = make_campaign(tmp_path / "campaign", 3)
    viewer, widget = annotator()
    widget.open_dataset(root)
    widget.propose(["awe"])
    widget.accept("awe")

    def type_reason():
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, QInputDialog):
            QTimer.singleShot(20, type_reason)
            return
        dialog.setTextValue("a photograph, not a painting")
        dialog.accept()

    QTimer.singleShot(20, type_reason)
    qtbot.mouseClick(widget.navigator.skip_button, Qt.LeftButton)
    assert widget.session.file_name == "painting-1.png"  # skipping moves on
    dataset = StimulusDataset.open(root)
    painting = dataset.painting("painting-0.png")
    assert painting.metadata["skipped"]["reason"] == "a photograph, not a painting"
    assert painting.metadata["skipped"]["annotator"] == "ana"
    assert {s.emotion: s.reviewed for s in dataset.stimuli(painting)} == {"awe": True}  # its work was saved
    assert list_rows(widget)[0] == "painting-0.png  ·  skipped"
    assert "skipped: a photograph" in widget.navigator.model.data(widget.navigator.model.index(0), Qt.ToolTipRole)
    # back to it (done and skipped ones are passed over unless asked), and un-skip
    widget.navigator.skip_done_check.setChecked(False)
    widget.previous_painting()
    assert widget.navigator.skip_button.text() == "Un-skip"
    qtbot.mouseClick(widget.navigator.skip_button, Qt.LeftButton)
    assert statuses(root)["painting-0.png"] is PaintingStatus.IN_PROGRESS
    widget.accept("awe")  # a later save must not bring the skip back
    widget.mark_no_stimulus("fear")
    widget.next_painting()
    assert "skipped" not in StimulusDataset.open(root).painting("painting-0.png").metadata
    assert not widget.skip_painting("   ")  # a reason is required
    assert "say why" in widget.last_error


def test_active_time_is_recorded_per_pair_and_per_painting(annotator, tmp_path):
    root = make_campaign(tmp_path / "campaign", 2)
    clock = Clock()
    viewer, widget = annotator(clock=clock)
    widget.open_dataset(root)
    widget.select_emotion("awe")
    clock.now += 10
    widget.mark_no_stimulus("awe")  # 10 s on awe
    clock.now += 5
    widget.select_emotion("fear")  # 5 s more on awe, then fear is selected
    clock.now += 600
    widget.mark_no_stimulus("fear")  # 10 minutes away: not counted
    clock.now += 20
    widget.mark_no_stimulus("sadness")  # the 20 s go to fear, still selected
    widget.next_painting()
    dataset = StimulusDataset.open(root)
    seconds = {s.emotion: s.annotation_seconds for s in dataset.stimuli("painting-0.png")}
    assert seconds == {"awe": 15.0, "fear": 20.0, "sadness": 0.0}
    assert dataset.painting("painting-0.png").metadata["annotation_seconds"] == 35.0
    # a second visit adds to what is stored
    widget.previous_painting() if widget.campaign.skip_done is False else None
    widget.navigator.skip_done_check.setChecked(False)
    widget.previous_painting()
    widget.select_emotion("awe")
    clock.now += 4
    widget.mark_no_stimulus("awe")  # undo
    widget.mark_no_stimulus("awe")  # and again
    widget.next_painting()
    dataset = StimulusDataset.open(root)
    assert dataset.stimulus("painting-0.png", "awe").annotation_seconds == 19.0
    assert dataset.painting("painting-0.png").metadata["annotation_seconds"] == pytest.approx(39.0)
    progress = campaign_progress(dataset)
    assert progress.paintings[0].seconds == pytest.approx(39.0) and progress.median_seconds == pytest.approx(39.0)


def test_repropose_the_rest_never_touches_reviewed_pairs(annotator, qtbot, tmp_path):
    root = make_campaign(tmp_path / "campaign", 3)
    dataset = StimulusDataset.open(root)
    old = np.zeros((96, 128), bool)
    old[0:10, 0:10] = True
    drafts = [Stimulus(e, old, ["an old draft"], source="model:old", reviewed=False) for e in EMOTIONS]
    mine = Stimulus("fear", old, ["mine"], source="model:old", edited=True, reviewed=True, annotator="bo")
    dataset.write_painting(dataset.image_path("painting-1.png"), "painting-1.png", [*drafts[:1], mine, drafts[2]])
    done = [Stimulus(e, no_stimulus=True, source="human", annotator="bo") for e in EMOTIONS]
    dataset.write_painting(dataset.image_path("painting-2.png"), "painting-2.png", done)
    before = {s.emotion: s.modified for s in dataset.stimuli("painting-2.png")}
    viewer, widget = annotator(synchronous=False)
    widget.open_dataset(root)
    qtbot.waitUntil(lambda: not widget.busy and widget.controller.jobs.idle, timeout=60_000)
    widget.accept("awe") if "awe" in widget.session else widget.mark_no_stimulus("awe")
    job = widget.repropose_rest()
    assert job is not None and job.background and not widget.busy  # the annotator goes on meanwhile
    qtbot.waitUntil(lambda: not job.running and widget.navigator.repropose_job is None, timeout=120_000)
    assert "re-proposed 2 paintings" in widget.status_label.text()
    dataset = StimulusDataset.open(root)
    one = {s.emotion: s for s in dataset.stimuli("painting-1.png")}
    assert one["fear"].explanations == ["mine"] and one["fear"].reviewed  # reviewed: untouched
    assert one["awe"].source == "model:tiny" and one["sadness"].source == "model:tiny"  # drafts: new
    assert {s.emotion: s.modified for s in dataset.stimuli("painting-2.png")} == before  # done: untouched
    zero = {s.emotion: s for s in dataset.stimuli("painting-0.png")}
    assert zero["awe"].reviewed  # the open painting was saved first; its reviewed pair stayed
    assert widget.session["awe"].reviewed
    assert {"fear", "sadness"} <= set(widget.session.emotions())  # its new drafts are on screen
    assert list_rows(widget)[1] == "painting-1.png  ·  in progress"


def test_repropose_the_rest_can_be_cancelled(annotator, qtbot, tmp_path):
    root = make_campaign(tmp_path / "campaign", 6)
    viewer, widget = annotator(synchronous=False)
    widget.open_dataset(root)
    qtbot.waitUntil(lambda: widget.controller.jobs.idle, timeout=60_000)
    job = widget.repropose_rest()
    nav = widget.navigator
    assert nav.repropose_cancel.isVisibleTo(nav) and not nav.repropose_button.isEnabled()
    qtbot.waitUntil(lambda: job.done_count >= 1, timeout=60_000)
    qtbot.mouseClick(nav.repropose_cancel, Qt.LeftButton)
    qtbot.waitUntil(lambda: not job.running, timeout=60_000)
    assert job.cancelled and "re-proposing cancelled after" in widget.status_label.text()
    assert nav.repropose_button.isEnabled() and not nav.repropose_cancel.isVisibleTo(nav)
    proposed = [name for name, status in statuses(root).items() if status is PaintingStatus.PROPOSED]
    assert 1 <= len(proposed) < 6 and "painting-5.png" not in proposed  # it stopped on the way


def test_closing_the_window_saves_the_campaigns_painting_without_asking(annotator, qtbot, tmp_path):
    root = make_campaign(tmp_path / "campaign", 2)
    viewer, widget = annotator(show=True)
    widget.open_dataset(root)
    widget.mark_no_stimulus("awe")
    qtbot.waitUntil(lambda: widget.close_guarded, timeout=5_000)
    asked = []

    def refuse():  # were the annotator asked anything, they would say Cancel
        box = QApplication.activeModalWidget()
        if box is not None:
            asked.append(box.text())
            box.reject()

    QTimer.singleShot(200, refuse)
    assert widget.confirm_close() is True  # what closing the window asks: leaving saves the painting
    qtbot.wait(300)
    assert asked == []
    record = StimulusDataset.open(root).stimulus("painting-0.png", "awe")
    assert record is not None and record.no_stimulus and record.reviewed


def test_removing_the_campaigns_layer_saves_its_painting(annotator, tmp_path):
    """napari closing a viewer removes its layers before the window's close event: the painting
    shown is saved as it leaves, then the next painting opens in a new layer."""
    root = make_campaign(tmp_path / "campaign", 2)
    viewer, widget = annotator()
    layer = widget.open_dataset(root)
    widget.mark_no_stimulus("fear")
    viewer.layers.remove(layer)
    assert StimulusDataset.open(root).stimulus("painting-0.png", "fear").no_stimulus
    assert widget.campaign.current is None and widget.session is None
    assert widget.go_to_painting("painting-1.png") and widget.campaign.layer in viewer.layers


def test_the_navigator_sorts_by_the_queue_and_next_follows_it(annotator, tmp_path):
    from napari_emosem.campaign.annotate_next import queue_paintings
    from napari_emosem.loading import load_predictor

    root = make_campaign(tmp_path / "campaign", 5)
    dataset = StimulusDataset.open(root)
    done = [Stimulus(e, no_stimulus=True, source="human", annotator="bo") for e in EMOTIONS]
    dataset.write_painting(None, "painting-2.png", done)
    expected = queue_paintings(dataset, load_predictor("tiny", device="cpu", precision="fp32"), order="random")
    ranked = [entry.painting.file_name for entry in expected.entries]
    assert len(ranked) == 4 and ranked != sorted(ranked)  # a real reordering to follow

    viewer, widget = annotator()
    widget.open_dataset(root, "painting-0.png")
    nav = widget.navigator
    nav.order_combo.setCurrentText("queue: random")  # ranks in a job (synchronous here), then sorts
    assert [row.split("  ·  ")[0] for row in list_rows(widget)] == [*ranked, "painting-2.png"]
    assert nav.sort_line == "sorted by the queue (random): 4 paintings"
    # Next and Previous follow the list (done ones passed over)
    widget.go_to_painting(ranked[0])
    for name in ranked[1:]:
        assert widget.next_painting() and widget.session.file_name == name
    assert not widget.next_painting()
    assert widget.previous_painting() and widget.session.file_name == ranked[-2]
    current = nav.list_view.currentIndex().row()
    assert current == len(ranked) - 2  # the current painting's row, in the sorted list
    nav.order_combo.setCurrentText("dataset order")
    assert [row.split("  ·  ")[0] for row in list_rows(widget)] == [f"painting-{i}.png" for i in range(5)]


def test_sorting_by_the_queue_runs_in_the_background_and_can_be_cancelled(annotator, qtbot, tmp_path):
    root = make_campaign(tmp_path / "campaign", 4)
    viewer, widget = annotator(synchronous=False)
    widget.open_dataset(root, "painting-0.png")
    nav = widget.navigator
    progress = []
    nav.order_combo.setCurrentText("queue: uncertainty")
    nav.sort_job.events.progress.connect(lambda done, total, line: progress.append((done, total)))
    qtbot.waitUntil(lambda: nav.sort_line.startswith("sorted by the queue (uncertainty)"), timeout=60_000)
    assert progress and progress[-1] == (4, 4)
    assert sorted(row.split("  ·  ")[0] for row in list_rows(widget)) == [f"painting-{i}.png" for i in range(4)]
    assert widget.controller.campaign.queue_places is not None
    # again, cancelled at once: the list keeps its order, and the annotator can work meanwhile
    before = list_rows(widget)
    nav.order_combo.setCurrentText("queue: random")
    widget.controller.jobs.cancel(nav.sort_job)
    qtbot.waitUntil(lambda: not nav.sort_job.running, timeout=60_000)
    assert list_rows(widget) == before
    widget.shutdown()
