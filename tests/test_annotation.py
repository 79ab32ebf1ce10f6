"""AnnotationSession: the UI-free model behind the annotator widget."""

from __future__ import annotations

import numpy as np
import pytest

from napari_emosem.annotation import HUMAN, AnnotationSession, Status
from napari_emosem.data import Stimulus, StimulusDataset
from napari_emosem.errors import EmoSEMError
from napari_emosem.image_io import load_image
from napari_emosem.paintings import FOLDER as PAINTINGS
from napari_emosem.predictor import Proposal

pytestmark = pytest.mark.usefixtures("own_user_folders")

BOY = PAINTINGS / "boy-in-a-red-vest-1888.jpg"


class Clock:
    """A clock the test moves by hand (the autosave interval is in seconds)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def painting(h=60, w=80, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def box(shape, r0, r1, c0, c1):
    mask = np.zeros(shape, bool)
    mask[r0:r1, c0:c1] = True
    return mask


def session_with(tmp_path, image=None, **kwargs):
    kwargs.setdefault("autosave_dir", tmp_path / "autosave")
    return AnnotationSession(painting() if image is None else image, **kwargs)


def propose(session, *emotions, source="model:test", model="test model", replace=False, text="draft"):
    proposals = [
        Proposal(e, box(session.shape, 5 + i, 30 + i, 10, 40), 0.5 + 0.05 * i, f"{text} {e}")
        for i, e in enumerate(emotions)
    ]
    return session.apply_proposals(proposals, source=source, model=model, replace_protected=replace)


def test_proposals_fill_only_their_own_emotion(tmp_path):
    s = session_with(tmp_path)
    assert not s.dirty and s.emotions() == ()
    assert propose(s, "fear", "awe") == ["fear", "awe"]
    assert s.emotions() == ("awe", "fear")  # ArtEmis order
    fear = s["fear"]
    assert fear.source == "model:test" and fear.model == "test model"
    assert fear.status == Status.PROPOSED and not fear.edited
    assert fear.explanation == "draft fear" and fear.score == pytest.approx(0.5)
    assert fear.mask.dtype == bool and fear.mask.shape == s.shape
    assert s.dirty


def test_reproposing_keeps_the_annotators_work_unless_told(tmp_path):
    s = session_with(tmp_path)
    propose(s, "fear", "awe", "sadness")
    edited = s["fear"].mask.copy()
    edited[40:50, 60:70] = True
    s.set_mask("fear", edited)
    s.accept("awe")
    assert s.protected(["fear", "awe", "sadness", "anger"]) == ["fear", "awe"]

    applied = propose(s, "fear", "awe", "sadness", text="second")
    assert applied == ["sadness"]
    assert np.array_equal(s["fear"].mask, edited) and s["fear"].edited
    assert s["awe"].status == Status.ACCEPTED and s["awe"].explanation == "draft awe"
    assert s["sadness"].explanation == "second sadness"

    applied = propose(s, "fear", text="third", replace=True)
    assert applied == ["fear"]
    assert not s["fear"].edited and s["fear"].explanation == "third fear"
    assert s["awe"].status == Status.ACCEPTED  # never touched by a proposal for another emotion


def test_no_stimulus_on_an_empty_draft_is_kept_by_a_new_proposal(tmp_path):
    """The model proposed nothing for fear, the annotator said "no stimulus": nothing of the draft
    was edited, so only that decision protects it from the next proposal."""
    s = session_with(tmp_path)
    s.apply_proposals([Proposal("fear", np.zeros(s.shape, bool), 0.1, "")], source="model:test")
    s.mark_no_stimulus("fear")
    assert not s["fear"].edited and s["fear"].from_model and s["fear"].reviewed
    assert s.protected(["fear"]) == ["fear"]
    assert propose(s, "fear", text="second") == []
    assert s["fear"].status == Status.NO_STIMULUS and not s["fear"].mask.any()


def test_painting_a_proposal_marks_it_edited_and_keeps_its_source(tmp_path):
    s = session_with(tmp_path)
    propose(s, "fear")
    mask = s["fear"].mask.copy()
    s.set_mask("fear", mask)  # same pixels: no change
    assert not s["fear"].edited
    mask[0:3, 0:3] = True
    s.set_mask("fear", mask.astype(np.uint8) * 7)  # label values > 0 are the stimulus
    assert s["fear"].mask_edited and s["fear"].edited
    assert s["fear"].source == "model:test"
    assert s["fear"].mask[0, 0]


def test_a_mask_drawn_from_scratch_is_human_and_accepted(tmp_path):
    s = session_with(tmp_path)
    s.set_mask("anger", box(s.shape, 0, 10, 0, 10))
    anger = s["anger"]
    assert anger.source == HUMAN and not anger.edited
    assert anger.status == Status.ACCEPTED and anger.reviewed


def test_text_edits_are_tracked_against_the_models_draft(tmp_path):
    s = session_with(tmp_path)
    propose(s, "awe")
    s.set_explanation("awe", "The vast pale sky makes me feel small.")
    assert s["awe"].text_edited and s["awe"].edited
    s.set_explanation("awe", "draft awe")  # typed back to the draft
    assert not s["awe"].text_edited
    s.set_explanation("awe", "A new draft from the model", from_model=True)
    assert not s["awe"].text_edited and s["awe"].draft == "A new draft from the model"


def test_decisions(tmp_path):
    s = session_with(tmp_path)
    propose(s, "fear", "awe", "disgust")
    s.reject("awe")
    s.mark_no_stimulus("disgust")
    assert s["awe"].status == Status.REJECTED
    assert s["disgust"].status == Status.NO_STIMULUS and not s["disgust"].mask.any()
    assert s["disgust"].mask_edited  # the model said something was there; a person said no
    s.reopen("awe")
    assert s["awe"].status == Status.PROPOSED
    s.mark_no_stimulus("anger")  # no proposal needed to say "nothing here"
    assert s["anger"].status == Status.NO_STIMULUS
    with pytest.raises(KeyError):
        s.accept("sadness")


def test_masks_must_have_the_paintings_size(tmp_path):
    s = session_with(tmp_path)
    with pytest.raises(EmoSEMError, match="painting's size"):
        s.set_mask("fear", np.zeros((10, 10), bool))
    with pytest.raises(EmoSEMError, match="painting's size"):
        s.apply_proposals([Proposal("fear", np.zeros((5, 5), bool), 0.1)], source="model:x")


def test_refinement_counts_as_an_edit_and_keeps_the_clicks(tmp_path):
    s = session_with(tmp_path)
    propose(s, "fear")
    s.set_explanation("fear", "my own words")
    refined = Proposal("fear", box(s.shape, 0, 20, 0, 20), 0.9, "")
    s.apply_refinement(refined, source="model:test", model="m", points=[[5, 5], [50, 70]], labels=[1, 0])
    fear = s["fear"]
    assert fear.mask_edited and fear.source == "model:test" and fear.score == pytest.approx(0.9)
    assert fear.explanation == "my own words"  # the annotator's text survives a refinement
    assert fear.clicks.tolist() == [[5, 5], [50, 70]] and fear.click_labels.tolist() == [1, 0]


def test_autosave_respects_the_interval_and_saves_significant_actions_at_once(tmp_path):
    clock = Clock()
    s = session_with(tmp_path, autosave_interval=30, clock=clock)
    path = s.autosave_path
    propose(s, "fear")  # significant: saved at once
    assert path.exists()
    first = path.read_bytes()
    s.set_explanation("fear", "typing…")  # minor: waits for the interval
    assert s.autosave() is None and path.read_bytes() == first
    clock.now += 31
    assert s.autosave() == path and path.read_bytes() != first
    assert s.autosave() is None  # nothing new to save


def test_restore_gives_back_the_work(tmp_path):
    image = painting(seed=3)
    odd = {"emotion": "something else", "explanations": ["odd"]}
    s = session_with(tmp_path, image, file_name="p.png", annotator="ann", metadata={"artist": "x"}, passthrough=[odd])
    propose(s, "fear", "awe")
    mask = s["fear"].mask.copy()
    mask[50:55, 70:75] = True
    s.set_clicks("fear", [[1, 2]], [1])  # view state: saved with the next change, never "unexported"
    s.set_mask("fear", mask)
    s.set_explanation("awe", "sky")
    s.mark_no_stimulus("sadness")
    s.autosave(force=True)

    info = AnnotationSession.autosave_info(image, autosave_dir=tmp_path / "autosave")
    assert info is not None and set(info.emotions) == {"fear", "awe", "sadness"}
    restored = AnnotationSession.restore(image, autosave_dir=tmp_path / "autosave")
    assert restored is not None and restored.dirty
    assert restored.file_name == "p.png" and restored.annotator == "ann" and restored.metadata == {"artist": "x"}
    assert np.array_equal(restored["fear"].mask, mask) and restored["fear"].mask_edited
    assert restored["awe"].explanation == "sky" and restored["awe"].text_edited
    assert restored["sadness"].status == Status.NO_STIMULUS
    assert restored["fear"].clicks.tolist() == [[1, 2]]
    assert restored.passthrough == (odd,)
    # another painting has no autosave
    assert AnnotationSession.restore(painting(seed=4), autosave_dir=tmp_path / "autosave") is None


def test_a_damaged_autosave_is_a_clear_error(tmp_path):
    image = painting()
    s = session_with(tmp_path, image)
    propose(s, "fear")
    s.autosave_path.write_bytes(b"not a zip")
    with pytest.raises(EmoSEMError, match="autosave cannot be read"):
        AnnotationSession.restore(image, autosave_dir=tmp_path / "autosave")


def test_export_round_trip_update_and_append(tmp_path):
    root = tmp_path / "dataset"
    s = session_with(tmp_path, painting(seed=1), file_name="one.png", annotator="ann")
    propose(s, "fear", "awe", "sadness", "disgust")
    s.accept("fear")
    s.set_explanation("awe", "the sky")
    s.reject("sadness")
    s.mark_no_stimulus("disgust")
    s.set_explanation("anger", "text before any mask")  # text-only: kept
    result = s.export(root)
    assert not s.dirty and not s.autosave_path.exists()
    assert result.written == ("awe", "anger", "disgust", "fear")
    assert result.skipped == {"sadness": "rejected"}

    ds = StimulusDataset.open(root)
    (p,) = ds.paintings
    records = {r.emotion: r for r in ds.stimuli(p)}
    assert set(records) == {"fear", "awe", "anger", "disgust"}
    assert np.array_equal(records["fear"].mask, s["fear"].mask)
    assert records["fear"].source == "model:test" and not records["fear"].edited
    assert records["fear"].annotator == "ann"  # reviewed (accepted)
    assert records["fear"].score == pytest.approx(0.5)
    assert records["awe"].explanations == ["the sky"] and records["awe"].edited
    assert records["awe"].annotator == "ann"  # edited: reviewed
    assert records["disgust"].no_stimulus and records["disgust"].area == 0
    assert records["anger"].mask is None and records["anger"].explanations == ["text before any mask"]
    assert records["anger"].source == HUMAN

    # exporting again updates in place
    s.set_explanation("fear", "changed")
    s.export(root)
    ds = StimulusDataset.open(root)
    assert len(ds.paintings) == 1
    assert ds.stimulus("one.png", "fear").explanations == ["changed"]

    # another painting appends
    other = session_with(tmp_path, painting(seed=2), file_name="two.png")
    propose(other, "contentment")
    other.export(root)
    ds = StimulusDataset.open(root)
    assert [p.file_name for p in ds.paintings] == ["one.png", "two.png"]
    unreviewed = ds.stimulus("two.png", "contentment")
    assert unreviewed.annotator is None and not unreviewed.edited  # an unreviewed draft


def test_session_from_dataset_records_is_clean_and_keeps_other_records(tmp_path):
    root = tmp_path / "dataset"
    image = painting(seed=5)
    ds = StimulusDataset.open(root, create=True)
    ds.write_painting(
        image,
        "p.png",
        [
            Stimulus("fear", box(image.shape[:2], 0, 10, 0, 10), ["dark"], source="model:x", score=0.3),
            Stimulus("awe", box(image.shape[:2], 10, 20, 0, 10), ["vast", "huge"]),
            Stimulus("sadness", np.zeros(image.shape[:2], bool), [], no_stimulus=True),
            Stimulus("something else", None, ["it reminds me of home"]),
        ],
    )
    ds = StimulusDataset.open(root)
    s = AnnotationSession.from_stimuli(ds.image("p.png"), ds.stimuli("p.png"), file_name="p.png", autosave_dir=False)
    assert not s.dirty
    assert s["fear"].status == Status.PROPOSED and s["fear"].from_model
    assert s["awe"].status == Status.ACCEPTED and s["awe"].more_explanations == ["huge"]
    assert s["sadness"].status == Status.NO_STIMULUS
    assert [r["emotion"] for r in s.passthrough] == ["something else"]
    s.set_explanation("awe", "vast and bright")
    s.export(root)
    records = {r.emotion: r for r in StimulusDataset.open(root).stimuli("p.png")}
    assert records["awe"].explanations == ["vast and bright", "huge"]
    assert records["something else"].explanations == ["it reminds me of home"]
    assert records["sadness"].no_stimulus


def test_the_source_file_is_exported_as_is(tmp_path):
    rgb = load_image(BOY)
    s = session_with(tmp_path, rgb, source_path=BOY)
    assert s.file_name == BOY.name
    propose(s, "fear")
    result = s.export(tmp_path / "ds")
    stored = tmp_path / "ds" / "images" / result.painting.file_name
    assert stored.read_bytes() == BOY.read_bytes()


def test_starter_proposals_round_trip_through_a_dataset(tmp_path):
    """The real cold-start model on a real painting, through the session into a dataset."""
    from napari_emosem.starter import StarterPredictor

    rgb = load_image(BOY)
    predictor = StarterPredictor()
    predictor.set_image(rgb)
    proposals = predictor.propose(["fear", "contentment", "sadness"])
    s = session_with(tmp_path, rgb, source_path=BOY)
    s.apply_proposals(proposals, source=predictor.source, model=predictor.description)
    assert all(s[e].mask.any() and s[e].explanation for e in ("fear", "contentment", "sadness"))
    s.export(tmp_path / "ds")
    ds = StimulusDataset.open(tmp_path / "ds")
    for record in ds.stimuli(ds.paintings[0]):
        assert record.source == "model:starter"
        assert np.array_equal(record.mask, s[record.emotion].mask)
        assert record.explanation == s[record.emotion].explanation


def test_active_time_adds_to_what_earlier_visits_stored_and_other_fields_stay(tmp_path):
    root = tmp_path / "dataset"
    dataset = StimulusDataset.open(root, create=True)
    image = painting()
    mask = box(image.shape[:2], 5, 20, 5, 20)
    earlier = Stimulus("fear", mask, ["dark"], annotation_seconds=12.0, extra={"artemis_id": 7})
    dataset.write_painting(image, "p.png", [earlier], metadata={"annotation_seconds": 40.0, "artist": "x"})
    stored = dataset.painting("p.png")
    session = AnnotationSession.from_stimuli(
        dataset.image(stored), dataset.stimuli(stored), file_name="p.png", metadata=dict(stored.metadata),
        autosave_dir=False,
    )  # fmt: skip
    assert session["fear"].seconds == 12.0 and session["fear"].extra == {"artemis_id": 7}
    session.accept("fear")
    session.set_active_time(30.0, {"fear": 8.0, "awe": 3.0})  # awe: looked at, not annotated
    assert session.unsaved_seconds == 30.0
    session.export(dataset)  # the dataset already open: nothing read again
    record = dataset.stimulus("p.png", "fear")
    assert record.annotation_seconds == 20.0 and record.extra == {"artemis_id": 7}
    assert dataset.painting("p.png").metadata == {"annotation_seconds": 70.0, "artist": "x"}
    assert session.unsaved_seconds == 0.0
    session.set_active_time(45.0, {"fear": 20.0})  # the same visit, later: not counted twice
    session.export(dataset)
    assert StimulusDataset.open(root).stimulus("p.png", "fear").annotation_seconds == 32.0
    assert StimulusDataset.open(root).painting("p.png").metadata["annotation_seconds"] == 85.0
    # the autosave keeps the stored time and the other fields too
    state = session["fear"].to_state()
    assert state["seconds"] == 12.0 and state["extra"] == {"artemis_id": 7}
