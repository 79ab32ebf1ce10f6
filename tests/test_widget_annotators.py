"""Several annotators in the annotator widget: each works in their own records of a campaign
(nobody's record is re-attributed), the name is asked once, and a reviewer adjudicates between
annotators (run under xvfb-run)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_emosem._qt.settings import Settings
from napari_emosem._widget import EmoSEMAnnotator
from napari_emosem.data import Stimulus, StimulusDataset
from test_widget_campaign import make_campaign

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("own_user_folders")]

EMOTIONS = ("awe", "fear", "sadness")


@pytest.fixture
def annotator(make_napari_viewer):
    def make(name: str | None, **kwargs):
        viewer = make_napari_viewer()
        settings = Settings(backend=False, precision="fp32")
        settings.annotator = name or ""
        widget = EmoSEMAnnotator(viewer, settings=settings, synchronous=True, **kwargs)
        viewer.window.add_dock_widget(widget, name="EmoSEM annotator", area="right")
        widget.set_model("tiny")
        widget.set_device("cpu")
        return viewer, widget

    return make


def box(shape, r0, r1, c0, c1) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[r0:r1, c0:c1] = True
    return mask


def draw(widget, emotion: str, mask: np.ndarray, text: str) -> None:
    widget.session.set_mask(emotion, mask)
    widget.set_explanation(text, emotion)
    widget.accept(emotion)


def test_two_annotators_save_the_same_pair_as_two_records_and_nobody_is_reattributed(annotator, tmp_path):
    root = make_campaign(tmp_path / "campaign", 2)
    _, ana = annotator("ana")
    assert ana.open_dataset(root) is not None and ana.session.file_name == "painting-0.png"
    shape = ana.session.shape
    draw(ana, "fear", box(shape, 5, 30, 5, 30), "the dark corner")
    assert ana.next_painting()
    ana.shutdown()

    _, bo = annotator("bo")
    assert bo.open_dataset(root, "painting-0.png") is not None
    assert "fear" not in bo.session  # ana's record is not bo's to edit (and there is no draft)
    draw(bo, "fear", box(shape, 40, 80, 40, 80), "the figure")
    draw(bo, "awe", box(shape, 0, 10, 0, 10), "the sky")
    assert bo.next_painting()

    dataset = StimulusDataset.open(root)
    pair = dataset.pair("painting-0.png", "fear")
    assert pair.annotators == ["ana", "bo"] and pair.draft is None and pair.adjudicated is None
    by_name = {r.annotator: r for r in pair.reviewed}
    assert np.array_equal(by_name["ana"].mask, box(shape, 5, 30, 5, 30))
    assert by_name["ana"].explanations == ["the dark corner"]
    assert np.array_equal(by_name["bo"].mask, box(shape, 40, 80, 40, 80))
    assert [r.annotator for r in dataset.records("painting-0.png", "awe")] == ["bo"]

    # bo saves again after un-deciding awe: only bo's own record goes, ana's fear stays
    assert bo.previous_painting() and bo.session.file_name == "painting-0.png"
    assert np.array_equal(bo.session["fear"].mask, box(shape, 40, 80, 40, 80))  # bo's, not ana's
    bo.reject("awe")
    assert bo.next_painting()
    dataset = StimulusDataset.open(root)
    assert dataset.pair("painting-0.png", "awe") is None
    assert dataset.pair("painting-0.png", "fear").annotators == ["ana", "bo"]


def test_the_name_is_asked_once_before_the_first_record_and_remembered(annotator, tmp_path):
    root = make_campaign(tmp_path / "campaign", 2)
    asked = []
    _, widget = annotator(None)
    widget.controller.ask_name = lambda: asked.append(1) or "  chen  "
    assert widget.open_dataset(root) is not None
    assert asked == [1] and widget.settings.annotator == "chen" and widget.session.annotator == "chen"
    draw(widget, "sadness", box(widget.session.shape, 5, 20, 5, 20), "alone")
    assert widget.next_painting() and widget.previous_painting()
    assert asked == [1]  # remembered
    assert StimulusDataset.open(root).pair("painting-0.png", "sadness").annotators == ["chen"]


def test_nobody_answering_leaves_the_annotator_unnamed_and_asks_no_more(annotator, tmp_path):
    root = make_campaign(tmp_path / "campaign", 2)
    asked = []
    _, widget = annotator(None)
    widget.controller.ask_name = lambda: asked.append(1) or ""  # they gave no name
    assert widget.open_dataset(root) is not None and widget.session.annotator is None
    draw(widget, "awe", box(widget.session.shape, 5, 20, 5, 20), "light")
    assert widget.next_painting() and widget.previous_painting()
    assert asked == [1] and widget.settings.annotator == ""
    record = StimulusDataset.open(root).stimulus("painting-0.png", "awe")
    assert record.annotator is None and record.reviewed


def test_a_reviewer_compares_three_annotators_and_adjudicates(annotator, tmp_path):
    from napari_emosem.annotators import consensus_map, majority_mask

    root = make_campaign(tmp_path / "campaign", 2)
    dataset = StimulusDataset.open(root)
    shape = (96, 128)
    masks = {"ana": box(shape, 10, 50, 10, 50), "bo": box(shape, 20, 60, 20, 60), "chen": box(shape, 30, 90, 30, 100)}
    for name, mask in masks.items():
        record = Stimulus("fear", mask, [f"{name}'s words"], annotator=name)
        dataset.write_painting(None, "painting-0.png", [record], records="merge", writer=name)
    viewer, widget = annotator("rev")
    assert widget.open_dataset(root, "painting-0.png") is not None
    assert "fear" not in widget.session  # the reviewer's own session holds none of theirs
    widget.select_emotion("fear")
    panel = widget.annotators
    assert panel.isVisibleTo(widget) and panel.agreement_label.text().startswith("ana, bo, chen: mask IoU ")
    assert [panel.choice_combo.itemText(i) for i in range(3)] == ["pick ana", "pick bo", "pick chen"]

    layers = panel.compare()
    assert [layer.name for layer in layers] == [
        "fear · consensus", "fear · ana", "fear · bo", "fear · chen", "fear · adjudicated",
    ]  # fmt: skip
    assert all(layer in viewer.layers for layer in layers)
    expected = consensus_map(list(masks.values()), shape)
    assert np.allclose(layers[0].data, expected)
    for layer, mask in zip(layers[1:4], masks.values(), strict=True):
        assert layer.contour == 2 and np.array_equal(layer.data > 0, mask)
    assert np.array_equal(layers[4].data > 0, majority_mask(expected))  # where an edit starts
    assert "fear" not in widget.session  # none of these layers is taken for the reviewer's own

    def stored():
        pair = StimulusDataset.open(root).pair("painting-0.png", "fear")
        assert pair.annotators == ["ana", "bo", "chen"]  # the annotators' records stay
        record = pair.adjudicated
        assert record.adjudicated and record.annotator == "rev" and pair.effective is record
        return pair, record

    panel.choice_combo.setCurrentIndex(1)  # pick bo
    panel.adjudicate()
    pair, record = stored()
    assert np.array_equal(record.mask, masks["bo"]) and record.explanations == ["bo's words"]
    assert np.array_equal(pair.target(), masks["bo"].astype(np.float32))

    widget.controller.adjudication.adjudicate("majority")
    pair, record = stored()
    assert np.array_equal(pair.target() > 0, majority_mask(expected))
    assert record.explanations == ["ana's words", "bo's words", "chen's words"]

    widget.controller.adjudication.adjudicate("union")
    pair, _ = stored()
    assert np.array_equal(pair.target() > 0, expected > 0)

    edited = box(shape, 0, 8, 0, 8)
    widget.controller.adjudication.adjudicated_layer.data = edited.astype(np.uint8)  # the reviewer paints
    widget.controller.adjudication.adjudicate("edit")
    pair, _ = stored()
    assert np.array_equal(pair.target(), edited.astype(np.float32))
    assert len(StimulusDataset.open(root).records("painting-0.png", "fear")) == 4

    # leaving the painting takes its annotators' layers away; the reviewer's save keeps the adjudication
    assert widget.next_painting()
    assert not any(" · " in layer.name for layer in viewer.layers)
    assert StimulusDataset.open(root).pair("painting-0.png", "fear").adjudicated is not None
