"""Campaigns: paintings added without proposing, statuses derived from the records, `emosem add`
and `emosem status`, active time."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from napari_emosem.campaign import (
    ActivityClock,
    CampaignSettings,
    PaintingStatus,
    add_paintings,
    campaign_progress,
    skip_painting,
    unskip_painting,
    write_settings,
)
from napari_emosem.cli import main
from napari_emosem.data import Stimulus, StimulusDataset
from napari_emosem.emotions import EMOTIONS


def _images(folder, n, size=(40, 56), prefix="painting"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(prefix))
    paths = []
    for i in range(n):
        path = folder / f"{prefix}-{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _mask(shape=(40, 56)):
    mask = np.zeros(shape, bool)
    mask[5:20, 10:30] = True
    return mask


def draft(emotion):
    return Stimulus(emotion, _mask(), [f"a {emotion} draft"], source="model:m1", score=0.5)


def reviewed(emotion, annotator="ana", seconds=None, **kw):
    return Stimulus(emotion, _mask(), [f"{emotion} because"], source="model:m1", reviewed=True,
                    annotator=annotator, annotation_seconds=seconds or 0.0, **kw)


@pytest.fixture
def campaign(tmp_path):
    ds = StimulusDataset.open(tmp_path / "ds", create=True)
    report = add_paintings(ds, _images(tmp_path / "in", 5))
    assert len(report.added) == 5 and not report.failed
    write_settings(ds.root, CampaignSettings(("awe", "fear")))
    return StimulusDataset.open(ds.root)


def _status(ds):
    return {p.painting.file_name: p.status for p in campaign_progress(ds).paintings}


def test_every_status_is_derived_from_the_records(campaign):
    ds = campaign
    names = [p.file_name for p in ds.paintings]
    assert set(_status(ds).values()) == {PaintingStatus.NOT_STARTED}
    ds.write_painting(ds.image_path(names[1]), names[1], [draft("awe"), draft("fear")])
    ds.write_painting(ds.image_path(names[2]), names[2], [reviewed("awe"), draft("fear")])
    ds.write_painting(
        ds.image_path(names[3]), names[3], [reviewed("awe"), Stimulus("fear", no_stimulus=True, annotator="bo")]
    )
    # a reviewed record of an emotion outside the campaign does not make a painting done
    ds.write_painting(ds.image_path(names[4]), names[4], [reviewed("awe"), reviewed("sadness")])
    assert list(_status(ds).values()) == [
        PaintingStatus.NOT_STARTED, PaintingStatus.PROPOSED, PaintingStatus.IN_PROGRESS,
        PaintingStatus.DONE, PaintingStatus.IN_PROGRESS,
    ]  # fmt: skip
    skip_painting(ds, names[0], "  a photograph,\n not a painting ", annotator="ana")
    progress = campaign_progress(ds)
    assert progress.paintings[0].status is PaintingStatus.SKIPPED
    assert progress.paintings[0].skip_reason == "a photograph, not a painting"
    # skipping and taking back never touch records
    assert [s.emotion for s in ds.stimuli(names[3])] == ["awe", "fear"]
    skip_painting(ds, names[3], "duplicate")
    assert [s.emotion for s in ds.stimuli(names[3])] == ["awe", "fear"]
    unskip_painting(ds, names[3])
    assert _status(ds)[names[3]] is PaintingStatus.DONE
    assert progress.first_open().painting.file_name == names[1]


def test_status_figures_count_pairs_of_the_campaigns_emotions(campaign, tmp_path, capsys):
    ds = campaign
    names = [p.file_name for p in ds.paintings]
    ds.write_painting(ds.image_path(names[0]), names[0], [reviewed("awe", "ana", 30.0), reviewed("fear", "bo", 45.5)],
                      metadata={"annotation_seconds": 100.0})
    ds.write_painting(
        ds.image_path(names[1]),
        names[1],
        [reviewed("awe", "ana", 20.0), Stimulus("fear", no_stimulus=True, annotator="ana", annotation_seconds=10)],
    )
    ds.write_painting(ds.image_path(names[2]), names[2], [draft("awe"), draft("fear"), reviewed("anger")])
    skip_painting(ds, names[4], "blurred scan")
    assert main(["status", str(ds.root), "--json", str(tmp_path / "status.json")]) == 0
    doc = json.loads((tmp_path / "status.json").read_text())
    assert doc["paintings"] == {"total": 5, "not_started": 1, "proposed": 1, "in_progress": 0, "done": 2, "skipped": 1}
    assert doc["pairs"] == {"total": 10, "reviewed": 4, "unreviewed_drafts": 2, "no_stimulus": 1}
    # anger is not a campaign emotion: not counted for anyone
    assert doc["annotators"] == {"ana": {"pairs": 3, "seconds": 60.0}, "bo": {"pairs": 1, "seconds": 45.5}}
    # painting 0: its own clock (100 s) beats the sum of its pairs; painting 1: 30 s from its pairs
    assert doc["seconds_per_painting"] == {"median": 65.0}
    assert doc["eta_seconds"] == 65 * 2  # not started + proposed; done and skipped are not left
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("2 of 5 paintings done · 4 of 10 pairs reviewed · median 65 s")


def test_add_keeps_what_is_there_and_reports_bad_files(campaign, tmp_path, capsys):
    ds = campaign
    first = ds.paintings[0].file_name
    ds.write_painting(ds.image_path(first), first, [reviewed("awe")])
    _images(tmp_path / "more", 3, size=(36, 40), prefix="sketch")
    (tmp_path / "more" / "broken.jpg").write_bytes(b"not an image")
    again = tmp_path / "in" / first  # already in the campaign
    impostor = _images(tmp_path / "other", 1, size=(36, 40), prefix="impostor")[0].rename(
        tmp_path / "other" / ds.paintings[1].file_name
    )
    code = main(
        ["add", str(ds.root), str(tmp_path / "more"), str(again), str(impostor), "--emotions", "fear,awe,sadness"]
    )
    assert code == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.strip()]
    assert len(errors) == 2 and all(e.startswith("emosem add: error:") for e in errors)
    assert "broken.jpg" in captured.err and "already holds a different image" in captured.err
    assert "added 3 painting(s)" in captured.out and "1 already there" in captured.out and "2 failed" in captured.out
    ds = StimulusDataset.open(ds.root)
    assert len(ds) == 8
    assert [s.emotion for s in ds.stimuli(first)] == ["awe"]  # untouched
    assert campaign_progress(ds).emotions == ("awe", "fear", "sadness")


def test_activity_clock_leaves_idle_gaps_out():
    now = [0.0]
    clock = ActivityClock(idle_after=60, clock=lambda: now[0])

    def at(t, pair=None):
        now[0] = t
        clock.activity(pair)

    at(0, "awe")
    at(10)          # 10 s on awe
    at(25, "fear")  # 15 s more on awe, then fear is selected
    at(30)          # 5 s on fear
    at(500)         # away for almost 8 minutes: not counted
    at(520, "awe")  # 20 s on fear
    clock.pause()
    at(900)         # the painting was left: nothing counts
    at(905)         # 5 s on awe
    assert clock.pair_seconds("awe") == 30 and clock.pair_seconds("fear") == 25
    assert clock.painting_seconds == 55


def test_campaign_file_errors_are_one_clear_line(campaign, capsys):
    (campaign.root / "campaign.json").write_text('{"emotions": ["awe", "fearr"]}')
    assert main(["status", str(campaign.root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "campaign.json" in err[0] and "fearr" in err[0]
    (campaign.root / "campaign.json").unlink()  # without it: all eight emotions
    assert campaign_progress(StimulusDataset.open(campaign.root)).emotions == EMOTIONS


def test_queue_orders():
    from napari_emosem.campaign.queue import Candidate, QueueOrder, rank, uncertainty
    from napari_emosem.data import Painting
    from napari_emosem.predictor import Proposal

    sure = Proposal("awe", np.ones((4, 4), bool), score=1.0, probability=np.ones((4, 4), np.float32))
    blurry = Proposal("awe", np.ones((4, 4), bool), score=1.0, probability=np.full((4, 4), 0.5, np.float32))
    doubtful = Proposal("fear", np.ones((4, 4), bool), score=0.2)
    assert uncertainty([sure]) == pytest.approx(0.0, abs=1e-5)
    assert uncertainty([blurry]) == pytest.approx(0.5)  # 1 bit of entropy everywhere, IoU head sure
    assert uncertainty([sure, doubtful]) == pytest.approx((0.0 + 0.8) / 2, abs=1e-5)

    def candidate(i, u, features):
        return Candidate(Painting(i, f"p{i}.png", 4, 4), u, np.asarray(features, float))

    # three near-identical paintings and two outliers in different directions
    candidates = [candidate(1, 0.1, [1, 0, 0]), candidate(2, 0.9, [1, 0.01, 0]), candidate(3, 0.5, [1, 0, 0.01]),
                  candidate(4, 0.2, [0, 1, 0]), candidate(5, 0.3, [0, 0, 1])]  # fmt: skip
    by_uncertainty = [e.painting.id for e in rank(candidates, QueueOrder.UNCERTAINTY)]
    assert by_uncertainty == [2, 3, 5, 4, 1]
    # diversity, with painting 1's kind already annotated: the two outliers first
    diverse = rank(candidates, "diversity", annotated=np.array([[1.0, 0, 0]]), top=3)
    assert {e.painting.id for e in diverse[:2]} == {4, 5} and diverse[0].novelty == pytest.approx(1.0)
    assert [e.rank for e in diverse] == [1, 2, 3]
    # nothing annotated: the most typical first, then the farthest from it
    fresh = rank(candidates, "diversity")
    assert fresh[0].painting.id in (1, 2, 3) and {e.painting.id for e in fresh[1:3]} == {4, 5}
    shuffled = [e.painting.id for e in rank(candidates, "random", seed=3)]
    assert sorted(shuffled) == [1, 2, 3, 4, 5]
    assert shuffled == [e.painting.id for e in rank(candidates, "random", seed=3)]
