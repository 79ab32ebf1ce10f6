"""What to annotate next: each predictor's image features, the campaign queue (which paintings,
scored on which emotions, in which order) and `emosem queue`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_emosem.campaign import CampaignSettings, PaintingStatus, skip_painting, write_settings
from napari_emosem.campaign.annotate_next import queue_paintings
from napari_emosem.campaign.queue import colour_features, uncertainty
from napari_emosem.cli import main
from napari_emosem.data import Stimulus, StimulusDataset
from napari_emosem.loading import load_predictor
from napari_emosem.predictor import Predictor, Proposal
from napari_emosem.toy import toy_paintings

EMOTIONS = ("awe", "fear", "sadness")


def cosine(a, b) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def tiny():
    return load_predictor("tiny", device="cpu")


@pytest.fixture(scope="module")
def toys():
    return toy_paintings(8, seed=31)


@pytest.fixture
def campaign(tmp_path, toys):
    """Eight paintings: 0–1 done, 2 skipped, 3 in progress (awe reviewed), 4 proposed, 5–7 new."""
    ds = StimulusDataset.open(tmp_path / "ds", create=True)
    write_settings(ds.root, CampaignSettings(EMOTIONS))
    for i, toy in enumerate(toys):
        mask = np.zeros(toy.image.shape[:2], bool)
        mask[10:40, 10:40] = True
        if i < 2:
            records = [Stimulus(e, mask, [f"{e} here"], reviewed=True, annotator="ana") for e in EMOTIONS]
        elif i == 3:
            records = [Stimulus("awe", mask, ["awe here"], reviewed=True, annotator="ana")]
        elif i == 4:
            records = [Stimulus("fear", mask, ["a draft"], source="model:tiny", score=0.3)]
        else:
            records = []
        ds.write_painting(toy.image, f"toy-{i}.png", records)
    skip_painting(ds, "toy-2.png", "a photograph", annotator="ana")
    return StimulusDataset.open(ds.root)


# ----------------------------------------------------------------------------- image features
class _Plain(Predictor):
    """The least a predictor implements: what the base class gives it for image_features."""

    def set_image(self, image):
        self._image = image

    def propose(self, emotions, *, explain=True, with_probability=False):
        return [Proposal(e, np.zeros(self._image.shape[:2], bool), 0.5) for e in emotions]

    def refine(self, emotion, points, labels, *, explain=False):
        raise NotImplementedError

    def explain(self, emotion, mask):
        return ""


def test_every_predictor_describes_the_painting_it_was_given(tiny, toys):
    from napari_emosem.starter.predictor import StarterPredictor
    from napari_emosem.starter.regions import downscale

    plain, starter = _Plain(), StarterPredictor()
    with pytest.raises(RuntimeError, match="set_image"):
        plain.image_features()
    for toy in toys[:3]:
        plain.set_image(toy.image)
        assert np.array_equal(plain.image_features(), colour_features(toy.image))
        # the starter rebuilds the same descriptor from its Lab working copy
        starter.set_image(toy.image)
        working_copy = downscale(toy.image, starter.config.working_side)
        assert cosine(starter.image_features(), colour_features(working_copy)) > 0.999
    a, b = toys[0].image, toys[1].image
    vectors = {}
    for name, image in (("a", a), ("b", b), ("a again", a.copy())):
        tiny.set_image(image)
        vectors[name] = tiny.image_features()
    assert np.linalg.norm(vectors["a"]) == pytest.approx(1.0)
    assert np.allclose(vectors["a"], vectors["a again"]) and not np.allclose(vectors["a"], vectors["b"])


def test_the_emosem_features_pool_the_painting_not_the_padding(tiny):
    import torch

    wide = np.full((60, 200, 3), 200, np.uint8)  # a third of SAM's square frame; the rest is padding
    wide[:, :100] = (40, 60, 160)
    tiny.set_image(wide)
    x, geometry = tiny.model.image_encoder.preprocess(wide)
    with torch.no_grad():
        embedding = tiny.model.encode(x[None])[0]
    side = embedding.shape[-1]
    rows = int(np.ceil(geometry.input_size[0] / geometry.img_size * side))
    assert rows < side  # there is padding to leave out
    inside = embedding[:, :rows].mean(dim=(1, 2)).numpy()
    everything = embedding.mean(dim=(1, 2)).numpy()
    assert cosine(tiny.image_features(), inside) == pytest.approx(1.0, abs=1e-6)
    assert cosine(tiny.image_features(), everything) < 0.999


# ----------------------------------------------------------------------------- the queue
def test_the_queue_holds_the_open_paintings_scored_on_the_emotions_they_still_need(campaign, tiny):
    report = queue_paintings(campaign, tiny)
    queued = [e.painting.file_name for e in report.entries]
    assert sorted(queued) == ["toy-3.png", "toy-4.png", "toy-5.png", "toy-6.png", "toy-7.png"]
    assert (report.candidates, report.done, report.skipped, report.failed) == (5, 2, 1, [])
    expected = {}
    for name in queued:
        still = ["fear", "sadness"] if name == "toy-3.png" else list(EMOTIONS)  # awe is reviewed there
        tiny.set_image(campaign.image(name))
        expected[name] = uncertainty(tiny.propose(still, explain=False, with_probability=True))
    assert [e.uncertainty for e in report.entries] == pytest.approx([expected[n] for n in queued])
    assert queued == sorted(expected, key=lambda n: -expected[n])  # most uncertain first
    assert [e.rank for e in report.entries] == [1, 2, 3, 4, 5]
    top = queue_paintings(campaign, tiny, top=2)
    assert [e.painting.file_name for e in top.entries] == queued[:2]


def test_diversity_starts_far_from_the_done_paintings(campaign, tiny):
    report = queue_paintings(campaign, tiny, order="diversity")
    done = []
    for name in ("toy-0.png", "toy-1.png"):
        tiny.set_image(campaign.image(name))
        done.append(tiny.image_features())
    distance = {}
    for entry in report.entries:
        tiny.set_image(campaign.image(entry.painting))
        distance[entry.painting.file_name] = min(1 - cosine(tiny.image_features(), d) for d in done)
    first = report.entries[0]
    assert first.painting.file_name == max(distance, key=distance.get)
    assert first.novelty == pytest.approx(distance[first.painting.file_name], abs=1e-6)
    assert all(e.novelty is not None for e in report.entries)
    # a random order is a seeded shuffle of the same paintings
    shuffled = [e.painting.file_name for e in queue_paintings(campaign, tiny, order="random", seed=4).entries]
    assert sorted(shuffled) == sorted(distance)
    assert shuffled == [e.painting.file_name for e in queue_paintings(campaign, tiny, order="random", seed=4).entries]


def test_a_painting_that_cannot_be_read_is_reported_and_the_rest_are_ranked(campaign, tiny):
    campaign.image_path("toy-5.png").unlink()
    campaign.image_path("toy-0.png").write_bytes(b"not a png")  # a done one: diversity reads it
    seen = []
    report = queue_paintings(campaign, tiny, order="diversity", on_painting=lambda *a: seen.append(a))
    assert [name for name, _ in report.failed] == ["toy-5.png", "toy-0.png"]
    assert all("\n" not in why for _, why in report.failed)
    assert sorted(e.painting.file_name for e in report.entries) == ["toy-3.png", "toy-4.png", "toy-6.png", "toy-7.png"]
    assert [(done, total) for done, total, _, _ in seen] == [(k, 7) for k in range(1, 8)]
    assert [p.file_name for _, _, p, error in seen if error] == ["toy-5.png", "toy-0.png"]


# ----------------------------------------------------------------------------- emosem queue
def test_emosem_queue_prints_the_ranking_and_writes_json(campaign, tiny, tmp_path, capsys):
    out = tmp_path / "reports" / "queue.json"
    argv = ["queue", str(campaign.root), "--model", "tiny", "--top", "3", "--json", str(out), "--device", "cpu"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines[0] == "the first 3 of 5 paintings to annotate, by uncertainty (2 done, 1 skipped)"
    doc = json.loads(out.read_text())
    assert doc["order"] == "uncertainty" and doc["emotions"] == list(EMOTIONS) and doc["model"] == "tiny"
    assert doc["paintings"] == {"candidates": 5, "done": 2, "skipped": 1, "failed": 0}
    assert [row["rank"] for row in doc["queue"]] == [1, 2, 3]
    library = queue_paintings(campaign, tiny, top=3)
    assert [row["painting"] for row in doc["queue"]] == [e.painting.file_name for e in library.entries]
    for line, row in zip(lines[1:], doc["queue"], strict=True):
        assert line.split()[:2] == [str(row["rank"]), row["painting"]] and f"{row['uncertainty']:.3f}" in line
    progress = [line for line in captured.err.splitlines() if line.startswith("[")]
    assert progress == [f"[{k}/5] toy-{i}.png" for k, i in enumerate((3, 4, 5, 6, 7), start=1)]


def test_emosem_queue_refusals_are_one_line(campaign, tmp_path, capsys):
    for argv, words in (
        (["--model", "tiny", "--top", "0"], "--top 0: give at least 1"),
        (["--model", "no-such-model"], "no-such-model"),
        (["--model", "tiny", "--json", str(tmp_path / "file" / "q.json")], "cannot write there"),
    ):
        if "--json" in argv:
            (tmp_path / "file").write_text("a file where a folder should be")
        assert main(["queue", str(campaign.root), *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("emosem queue: error:") and words in err[0], err
    # cut short (a copy that stopped half-way): the dataset opens, the painting cannot be read
    path = campaign.image_path("toy-6.png")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert main(["queue", str(campaign.root), "--model", "tiny", "--order", "random", "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors == [
        line for line in captured.err.splitlines() if line.startswith("emosem queue: error: ") and "toy-6.png" in line
    ]
    assert len(captured.out.strip().splitlines()) == 1 + 4  # the header and the four readable ones


def test_the_statuses_the_queue_relies_on(campaign):
    from napari_emosem.campaign import campaign_progress

    statuses = [p.status for p in campaign_progress(campaign).paintings]
    assert statuses[:5] == [PaintingStatus.DONE, PaintingStatus.DONE, PaintingStatus.SKIPPED,
                            PaintingStatus.IN_PROGRESS, PaintingStatus.PROPOSED]  # fmt: skip
