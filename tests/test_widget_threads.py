"""The annotator's thread workers: propose, cancel and errors off the GUI thread (xvfb-run)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from napari_emosem._layers import METADATA_KEY, SPARE_NAME
from napari_emosem._qt.jobs import Done, Job, JobRunner, Step
from napari_emosem._qt.settings import Settings
from napari_emosem._widget import EmoSEMAnnotator
from napari_emosem.emotions import EMOTIONS
from napari_emosem.image_io import load_image
from napari_emosem.paintings import FOLDER as PAINTINGS
from napari_emosem.starter import StarterPredictor

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("own_user_folders")]

BOY = PAINTINGS / "boy-in-a-red-vest-1888.jpg"
PAINTER = PAINTINGS / "a-painter-at-work-1875.jpg"


@pytest.fixture
def annotator(make_napari_viewer):
    def make(*, synchronous=False):
        viewer = make_napari_viewer()
        widget = EmoSEMAnnotator(viewer, settings=Settings(backend=False, precision="fp32"), synchronous=synchronous)
        viewer.window.add_dock_widget(widget, name="EmoSEM annotator", area="right")
        return viewer, widget

    return make


def add_painting(viewer, path=BOY):
    return viewer.add_image(
        load_image(path), name=path.stem, rgb=True, metadata={METADATA_KEY: {"source_path": str(path)}}
    )


class ThreadNotingStarter(StarterPredictor):
    """The real cold-start model, noting which thread each call runs on."""

    threads: list[str] = []

    def set_image(self, image):
        self.threads.append(threading.current_thread().name)
        return super().set_image(image)

    def propose(self, *args, **kwargs):
        self.threads.append(threading.current_thread().name)
        return super().propose(*args, **kwargs)


def test_threaded_propose_runs_in_a_worker(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    noted = ThreadNotingStarter()
    widget = EmoSEMAnnotator(
        viewer,
        settings=Settings(backend=False, precision="fp32"),
        synchronous=False,
        predictor_loader=lambda spec, **options: noted,
    )
    viewer.window.add_dock_widget(widget)
    add_painting(viewer)
    widget.propose()  # all eight, ticked by default
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    assert widget.last_error is None, widget.last_error
    assert noted.threads and threading.main_thread().name not in noted.threads
    session = widget.session
    assert session.emotions() == EMOTIONS
    assert all(session[e].explanation for e in session.emotions())
    assert all(widget.stimulus_layer(e) is not None for e in session.emotions())
    assert "cold-start" in widget.status_label.text()
    assert widget.table.item(0, 3).text().startswith("starter")


def test_cancel_stops_between_explanations(annotator, qtbot):
    viewer, widget = annotator(synchronous=False)
    add_painting(viewer)
    widget.set_model("starter")
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)  # the model preloads when chosen
    cancelled = []

    def cancel_after_masks(value):
        if value >= 3 and not cancelled:  # load, encode, masks: then stop
            cancelled.append(value)
            widget.cancel()

    widget.progress.valueChanged.connect(cancel_after_masks)
    widget.propose()
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    session = widget.session
    assert cancelled and "cancelled" in widget.status_label.text()
    assert len(session.emotions()) == 8  # the masks arrived before the cancel and are kept
    drafted = [e for e in session.emotions() if session[e].explanation]
    assert len(drafted) < 8


@pytest.mark.parametrize("synchronous", [True, False])
def test_a_bad_checkpoint_is_one_clear_message(annotator, qtbot, tmp_path, synchronous):
    viewer, widget = annotator(synchronous=synchronous)
    add_painting(viewer)
    (tmp_path / "not-a-checkpoint").mkdir()
    widget.set_model(str(tmp_path / "not-a-checkpoint"))
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    widget.propose(["fear"])
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert "is not an EmoSEM checkpoint" in widget.status_label.text()
    assert widget.session.emotions() == ()
    widget.set_model(str(tmp_path / "missing"))
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    widget.propose(["fear"])
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert "neither a preset" in widget.status_label.text()


def test_a_fine_tuned_checkpoint_is_the_default_and_embeddings_are_reused(make_napari_viewer, tmp_path):
    """With a checkpoint in the user's folder it is the default model; a painting seen before is
    proposed from the embedding cache (no second encoding), in a fresh widget."""
    from napari_emosem.build import build_emosem
    from napari_emosem.checkpoint import save_checkpoint
    from napari_emosem.config import get_preset
    from napari_emosem.paths import checkpoints_dir

    model, identity = build_emosem(get_preset("tiny"))
    info = save_checkpoint(model, identity, checkpoints_dir() / "mine", training={"pairs": 12})

    def open_and_propose():
        viewer = make_napari_viewer()
        widget = EmoSEMAnnotator(viewer, settings=Settings(backend=False, precision="fp32"), synchronous=True)
        viewer.window.add_dock_widget(widget)
        add_painting(viewer)
        assert widget.model_spec == str(info.path)
        assert "fine-tuned on 12 pairs" in widget.model_combo.currentText()
        widget.propose(["awe"], explain=False)
        assert widget.last_error is None, widget.last_error
        return widget

    first = open_and_propose()
    assert first.session["awe"].source == f"model:{info.id}"
    assert "checkpoint" in first.status_label.text()
    assert not first.controller.cache.loaded.from_cache  # encoded once ...
    second = open_and_propose()
    assert second.controller.cache.loaded.from_cache  # ... and read back from the disk cache


def test_proposed_masks_fill_spare_layers_made_ahead(annotator, qtbot):
    """napari takes hundreds of ms to make a Labels layer: the annotator makes hidden spares when a
    painting is chosen, and a proposal turns them into its stimulus layers."""
    viewer, widget = annotator()
    widget.set_model("starter")
    widget.set_emotions(["fear", "awe", "sadness"])
    first = add_painting(viewer)
    def spare_layers():
        return [layer for layer in viewer.layers if layer.name.startswith(SPARE_NAME)]

    qtbot.waitUntil(lambda: len(spare_layers()) == 3 and not widget.busy, timeout=60_000)
    spares = spare_layers()
    assert len(spares) == 3 and not any(layer.visible for layer in spares)
    assert viewer.layers.selection.active is first  # making them left the annotator's layer selected
    assert widget.session.emotions() == ()  # spares are no annotation

    # another painting opened on top: the spares (below it) serve it too
    second = add_painting(viewer, PAINTER)
    widget.set_painting(second)
    viewer.layers.remove(spares[0])  # deleting a spare is harmless
    widget.propose()
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    assert widget.last_error is None, widget.last_error
    session = widget.session
    assert session.emotions() == ("awe", "fear", "sadness")
    layers = [widget.stimulus_layer(e) for e in session.emotions()]
    assert sum(any(layer is spare for spare in spares[1:]) for layer in layers) == 2  # one was made anew
    for emotion, layer in zip(session.emotions(), layers, strict=True):
        assert layer.name == f"{emotion} stimulus" and layer.visible and layer.selected_label == 1
        assert np.array_equal(layer.data > 0, session[emotion].mask)
        assert layer.metadata[METADATA_KEY]["painting"] == session.digest
        assert viewer.layers.index(layer) > viewer.layers.index(second)  # drawn over the painting
    assert not any(layer.name.startswith(SPARE_NAME) for layer in viewer.layers)


class Ticking(Job):
    """A job of ``n`` steps of ``seconds`` each, noting when each step ran (worker thread)."""

    def __init__(self, name: str, n: int, seconds: float, ticks: list, *, background: bool = False):
        super().__init__()
        self.name, self.n, self.seconds, self.ticks, self.background = name, n, seconds, ticks, background
        self.steps = None if background else n

    def work(self):
        for i in range(self.n):
            time.sleep(self.seconds)
            self.ticks.append((self.name, time.perf_counter()))
            yield Step(f"{self.name} {i}")
        return Done(self.name, "", "", 0.0)


def test_the_annotators_job_pauses_a_background_one(qtbot):
    """A background job (prefetch, re-propose) stops between two steps while the annotator's own
    job runs, goes on after it, and never makes the annotator busy."""
    runner = JobRunner()
    ticks: list = []
    finished: list = []
    runner.events.finished.connect(lambda job: finished.append(job.name))
    background = runner.start(Ticking("background", 40, 0.02, ticks, background=True))
    qtbot.waitUntil(lambda: len(ticks) >= 3, timeout=10_000)
    assert not runner.busy and not runner.idle
    mine = Ticking("mine", 5, 0.03, ticks)
    runner.start(mine)
    assert runner.busy  # waiting for the background job to pause counts as busy
    qtbot.waitUntil(lambda: "mine" in finished, timeout=10_000)
    qtbot.waitUntil(lambda: "background" in finished, timeout=20_000)
    names = [name for name, _ in ticks]
    first, last = names.index("mine"), len(names) - 1 - names[::-1].index("mine")
    assert names[first : last + 1] == ["mine"] * 5  # nothing of the background job meanwhile
    assert names.count("background") == 40 and names[-1] == "background"  # it went on to the end
    assert not background.cancelled and runner.idle


def test_cancelling_a_paused_background_job(qtbot):
    runner = JobRunner()
    ticks: list = []
    background = runner.start(Ticking("background", 100, 0.02, ticks, background=True))
    qtbot.waitUntil(lambda: len(ticks) >= 2, timeout=10_000)
    mine = runner.start(Ticking("mine", 20, 0.02, ticks))
    qtbot.waitUntil(lambda: any(name == "mine" for name, _ in ticks), timeout=10_000)
    assert runner.cancel(background)  # paused: it wakes to stop
    qtbot.waitUntil(lambda: not background.running and not mine.running, timeout=20_000)
    assert background.cancelled and not mine.cancelled
    assert sum(name == "background" for name, _ in ticks) < 100 and runner.idle
