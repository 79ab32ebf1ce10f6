"""Proposing again for a campaign's open paintings (`emosem propose --out DS --pending`, the
widget's *Re-propose the rest*) and for one painting (the widget's prefetch): pairs a person
reviewed are never touched, older drafts are replaced, done and skipped paintings are left alone."""

from __future__ import annotations

import numpy as np
import pytest

from napari_emosem.campaign import CampaignSettings, add_paintings, skip_painting, write_settings
from napari_emosem.cli import main as emosem
from napari_emosem.data import Stimulus, StimulusDataset
from napari_emosem.propose import pending_paintings, propose_painting, propose_pending

EMOTIONS = ("awe", "fear", "sadness")


def _mask(painting, seed: int) -> np.ndarray:
    mask = np.zeros(painting.shape, bool)
    mask[seed * 10 : seed * 10 + 40, 20:90] = True
    return mask


def _old_draft(painting, emotion: str) -> Stimulus:
    return Stimulus(emotion, _mask(painting, 1), ["an old model's draft"], source="model:old", score=0.2)


def _mine(painting, emotion: str) -> Stimulus:
    return Stimulus(emotion, _mask(painting, 2), ["a person drew this"], source="human", annotator="ana")


@pytest.fixture
def campaign(tmp_path, paintings):
    """Four Cézannes: done, in progress (awe reviewed), proposed by an old model, skipped; plus a
    fifth not started."""
    ds = StimulusDataset.open(tmp_path / "campaign", create=True)
    add_paintings(ds, paintings)
    write_settings(ds.root, CampaignSettings(EMOTIONS))
    ds = StimulusDataset.open(ds.root)
    done, progress, proposed, skipped = ds.paintings[:4]
    ds.write_painting(None, done.file_name, [_mine(done, e) for e in EMOTIONS])
    ds.write_painting(None, progress.file_name, [_mine(progress, "awe"), _old_draft(progress, "fear")])
    ds.write_painting(None, proposed.file_name, [_old_draft(proposed, e) for e in EMOTIONS], records="merge")
    skip_painting(ds, skipped, "not a painting", annotator="ana")
    from PIL import Image

    Image.fromarray(np.full((96, 128, 3), 128, np.uint8)).save(tmp_path / "blank.png")
    add_paintings(ds, [tmp_path / "blank.png"])
    return StimulusDataset.open(ds.root)


def _state(ds, painting) -> dict:
    return {(s.emotion, s.slot): (s.source, s.explanations, s.modified, s.area) for s in ds.records(painting)}


def test_pending_lists_open_paintings_with_the_emotions_nobody_reviewed(campaign):
    names = [p.file_name for p in campaign.paintings]
    assert pending_paintings(campaign) == [
        (names[1], ("fear", "sadness")),  # in progress: awe is reviewed
        (names[2], EMOTIONS),  # proposed by the old model: every draft goes
        ("blank.png", EMOTIONS),  # not started
    ]


def test_emosem_propose_pending_replaces_drafts_and_never_touches_reviewed_pairs(campaign, capsys):
    names = [p.file_name for p in campaign.paintings]
    before = {name: _state(campaign, name) for name in names}
    assert emosem(["propose", "--out", str(campaign.root), "--pending", "--model", "starter", "--no-overlay"]) == 0
    err = capsys.readouterr().err
    assert "wrote 3 open painting(s)" in err and "kept" not in err
    after = StimulusDataset.open(campaign.root)
    assert _state(after, names[0]) == before[names[0]]  # done
    assert _state(after, names[3]) == before[names[3]]  # skipped
    progress = {s.emotion: s for s in after.records(names[1])}
    assert progress["awe"].explanations == ["a person drew this"] and len(after.records(names[1], "awe")) == 1
    assert {e: progress[e].source for e in ("fear", "sadness")} == {"fear": "model:starter", "sadness": "model:starter"}
    for name in (names[2], "blank.png"):
        assert {(s.emotion, s.source, s.reviewed) for s in after.records(name)} == {
            (e, "model:starter", False) for e in EMOTIONS
        }
    assert emosem(["propose", "--out", str(campaign.root), "--pending", str(campaign.root)]) == 2
    assert "give IMAGES or --pending, not both" in capsys.readouterr().err


def test_re_propose_the_rest_reports_progress_and_stops_when_asked(campaign):
    from napari_emosem.loading import load_predictor

    predictor = load_predictor("starter", device="cpu")
    names = [p.file_name for p in campaign.paintings]
    steps = propose_pending(campaign, predictor)
    first = next(steps)
    assert (first.index, first.total, first.file_name, first.emotions) == (1, 3, names[1], ("fear", "sadness"))
    assert [p.emotion for p in first.proposals] == ["fear", "sadness"] and first.error is None
    steps.close()  # cancel: the painting written stays, the others are not touched
    ds = StimulusDataset.open(campaign.root)
    assert ds.stimulus(names[1], "fear").source == "model:starter"
    assert {s.source for s in ds.records(names[2])} == {"model:old"}
    assert ds.records("blank.png") == []


def test_an_annotator_reviewing_while_re_propose_runs_keeps_their_record(campaign):
    from napari_emosem.loading import load_predictor

    names = [p.file_name for p in campaign.paintings]
    todo = pending_paintings(campaign)  # the work list is made before the annotator saves
    other = StimulusDataset.open(campaign.root)
    painting = other.painting(names[2])
    other.write_painting(None, names[2], [_mine(painting, "fear")], records="merge")
    report_steps = list(propose_pending(campaign, load_predictor("starter", device="cpu"), paintings=todo))
    assert [s.error for s in report_steps] == [None, None, None]
    ds = StimulusDataset.open(campaign.root)
    assert [s.explanations for s in ds.records(names[2], "fear")] == [["a person drew this"]]
    assert ds.stimulus(names[2], "awe").source == "model:starter"


def test_prefetch_proposes_one_painting_into_the_dataset(campaign):
    from napari_emosem.loading import load_predictor

    names = [p.file_name for p in campaign.paintings]
    predictor = load_predictor("starter", device="cpu")
    proposals, report = propose_painting(campaign, names[1], predictor, image=campaign.image(names[1]))
    assert [p.emotion for p in proposals] == ["fear", "sadness"] and report.written == [names[1]]
    assert StimulusDataset.open(campaign.root).stimulus(names[1], "sadness").source == "model:starter"
    proposals, report = propose_painting(campaign, names[0], predictor)
    assert proposals == [] and report.written == []  # done: nothing to propose
