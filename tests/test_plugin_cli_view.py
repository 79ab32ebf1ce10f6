"""``emosem view``: napari with the annotator docked and the given paintings or datasets loaded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_emosem.cli import main
from napari_emosem.data import Stimulus, StimulusDataset
from napari_emosem.errors import EmoSEMError
from napari_emosem.image_io import load_image
from napari_emosem.paintings import FOLDER as PAINTINGS

pytestmark = pytest.mark.usefixtures("own_user_folders")

BOY = PAINTINGS / "boy-in-a-red-vest-1888.jpg"
PAINTER = PAINTINGS / "a-painter-at-work-1875.jpg"


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "dataset"
    mask = np.zeros(load_image(BOY).shape[:2], bool)
    mask[10:100, 20:200] = True
    StimulusDataset.open(root, create=True).write_painting(BOY, BOY.name, [Stimulus("awe", mask, ["so red"])])
    return root


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["view", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "DATASET_OR_IMAGE" in text and "--model" in text and "xvfb-run" in text


def test_without_a_display_it_says_so(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    result = subprocess.run(
        [sys.executable, "-m", "napari_emosem", "view", str(BOY)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2
    assert "no display available" in result.stderr and "xvfb-run" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_paths_are_reported(make_napari_viewer, tmp_path):
    from napari_emosem.cli.view import open_viewer
    from napari_emosem.errors import EmoSEMError

    with pytest.raises(EmoSEMError, match="no such file or folder"):
        open_viewer([str(tmp_path / "nope.jpg")], viewer=make_napari_viewer())


@pytest.mark.gui
def test_opens_datasets_and_images_with_the_annotator(make_napari_viewer, plugin_settings, npe2pm, dataset, tmp_path):
    from npe2 import PluginManifest

    from napari_emosem.cli.view import open_viewer

    npe2pm.register(PluginManifest.from_file(Path(__file__).resolve().parents[1] / "napari.yaml"))
    viewer, widget = open_viewer(
        [str(dataset), str(PAINTER)],
        model="starter",
        device="cpu",
        dataset=str(tmp_path / "out"),
        viewer=make_napari_viewer(),
    )
    names = [layer.name for layer in viewer.layers]
    assert names == ["boy-in-a-red-vest-1888", "awe stimulus", PAINTER.stem]
    assert widget.model_spec == "starter" and widget.device_combo.currentText() == "cpu"
    assert widget.dataset_edit.text() == str(tmp_path / "out")
    boy = viewer.layers["boy-in-a-red-vest-1888"]
    widget.set_painting(boy)
    assert widget.session["awe"].explanation == "so red"
    widget.set_painting(viewer.layers[PAINTER.stem])
    assert widget.session.file_name == PAINTER.name  # exported as the original file


@pytest.mark.gui
def test_the_command_opens_a_real_window(dataset, tmp_path):
    """The real `napari.Viewer` path, in its own process (under the same Xvfb display)."""
    if not os.environ.get("DISPLAY"):
        pytest.skip("needs a display (run under xvfb-run)")
    code = (
        "import sys\n"
        "from napari.qt import get_qapp\n"
        "from qtpy.QtCore import QTimer\n"
        "from qtpy.QtWidgets import QApplication\n"
        "from napari_emosem.cli.view import open_viewer\n"
        "def answer():\n"  # the name is asked once, before the campaign's first painting: give none
        "    dialog = QApplication.activeModalWidget()\n"
        "    if dialog is None:\n"
        "        QTimer.singleShot(100, answer)\n"
        "    else:\n"
        "        print('asked:', dialog.windowTitle())\n"
        "        dialog.reject()\n"
        "get_qapp()\n"
        "QTimer.singleShot(100, answer)\n"
        "viewer, widget = open_viewer([sys.argv[1]], model='starter')\n"
        "print([layer.name for layer in viewer.layers], type(widget).__name__, widget.session is not None)\n"
        "viewer.close()\n"
    )
    env = dict(os.environ, NAPARI_CONFIG=str(tmp_path / "napari-settings.yaml"))
    result = subprocess.run(
        [sys.executable, "-c", code, str(dataset)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "asked: Your name" in result.stdout
    assert "['boy-in-a-red-vest-1888', 'awe stimulus'] EmoSEMAnnotator True" in result.stdout


@pytest.mark.gui
def test_annotator_opens_a_campaign_as_that_annotator(make_napari_viewer, plugin_settings, npe2pm, dataset):
    from npe2 import PluginManifest

    from napari_emosem.cli.view import open_viewer

    npe2pm.register(PluginManifest.from_file(Path(__file__).resolve().parents[1] / "napari.yaml"))
    viewer, widget = open_viewer([str(dataset)], annotator=" bo ", viewer=make_napari_viewer())
    assert widget.settings.annotator == "bo" and widget.session.annotator == "bo"
    assert "awe" not in widget.session  # the unnamed annotator's record is not bo's to edit
    with pytest.raises(EmoSEMError, match="--annotator: the name is empty"):
        open_viewer([str(dataset)], annotator=" ", viewer=make_napari_viewer())
