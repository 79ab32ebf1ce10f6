"""Keyboard first: the annotator's napari key bindings, pressed on the canvas (run under xvfb-run)."""

from __future__ import annotations

import pytest
from qtpy.QtCore import Qt

from napari_emosem._qt.keys import ACTIONS, register_key_bindings
from napari_emosem._qt.settings import Settings
from napari_emosem._widget import EmoSEMAnnotator
from napari_emosem.annotation import Status
from napari_emosem.campaign import PaintingStatus, campaign_progress
from napari_emosem.data import StimulusDataset
from test_widget_campaign import make_campaign

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("own_user_folders")]


@pytest.fixture
def keyboard(make_napari_viewer, qtbot):
    """A viewer with the annotator, and ``press(key, shift=False)`` on its canvas."""
    viewer = make_napari_viewer(show=True)
    settings = Settings(backend=False, precision="fp32")
    settings.annotator = "ana"  # on screen, a campaign would ask for the name first
    widget = EmoSEMAnnotator(viewer, settings=settings, synchronous=True)
    viewer.window.add_dock_widget(widget, name="EmoSEM annotator", area="right")
    widget.set_model("tiny")
    widget.set_device("cpu")
    canvas = viewer.window._qt_viewer.canvas.native  # where napari takes its key bindings

    def press(key, *, shift: bool = False) -> None:
        qtbot.keyClick(canvas, key, Qt.ShiftModifier if shift else Qt.NoModifier)

    return viewer, widget, press


def test_a_whole_painting_by_keys(keyboard, tmp_path):
    root = make_campaign(tmp_path / "campaign", 3, emotions=("awe", "fear", "sadness"))
    viewer, widget, press = keyboard
    widget.open_dataset(root)
    press(Qt.Key_G)  # propose
    session = widget.session
    assert set(session.emotions()) >= {"awe", "fear", "sadness"} and widget.selected_emotion == "awe"
    press(Qt.Key_K)  # accept awe
    assert session["awe"].status == Status.ACCEPTED
    press(Qt.Key_W)  # next emotion: fear
    assert widget.selected_emotion == "fear"
    press(Qt.Key_R)  # reject it ...
    assert session["fear"].status == Status.REJECTED
    press(Qt.Key_N)  # ... no: no stimulus
    assert session["fear"].status == Status.NO_STIMULUS
    press(Qt.Key_W)
    press(Qt.Key_Q)
    press(Qt.Key_W)  # previous, next: sadness
    assert widget.selected_emotion == "sadness"
    press(Qt.Key_H)  # only sadness's layer shown
    visible = {e: widget.stimulus_layer(e).visible for e in ("awe", "fear", "sadness")}
    assert visible == {"awe": False, "fear": False, "sadness": True}
    press(Qt.Key_H)
    assert all(widget.stimulus_layer(e).visible for e in ("awe", "fear", "sadness"))
    press(Qt.Key_I)  # refine with clicks on: the clicks layer takes the canvas clicks
    assert widget.click_button.isChecked() and viewer.layers.selection.active.name == "EmoSEM clicks"
    press(Qt.Key_I)
    assert not widget.click_button.isChecked()
    press(Qt.Key_K)  # accept sadness: every pair reviewed
    press(Qt.Key_Right, shift=True)  # next painting: this one is saved
    assert widget.session.file_name == "painting-1.png"
    progress = campaign_progress(StimulusDataset.open(root))
    assert progress.paintings[0].status is PaintingStatus.DONE
    assert progress.paintings[0].reviewed == ("awe", "fear", "sadness")
    widget.navigator.skip_done_check.setChecked(False)
    press(Qt.Key_Left, shift=True)
    assert widget.session.file_name == "painting-0.png" and widget.session["awe"].status == Status.ACCEPTED


def test_the_keys_are_napari_shortcuts_the_user_can_change(keyboard, tmp_path, qtbot):
    from napari._qt.widgets.qt_keyboard_settings import ShortcutEditor
    from napari.utils.action_manager import action_manager

    root = make_campaign(tmp_path / "campaign", 1, emotions=("awe",))
    viewer, widget, press = keyboard
    # napari's Preferences > Shortcuts lists them with their keys
    editor = ShortcutEditor()
    qtbot.addWidget(editor)
    table = editor._table
    rows = {table.item(r, 0).text(): table.item(r, 2).text() for r in range(table.rowCount()) if table.item(r, 0)}
    for action in ACTIONS:
        assert action.description in rows
    assert rows["EmoSEM: accept the selected emotion (again: undo)"] == "K"
    # changed there (as the editor does it), the new key works and the old one no longer does
    name = "napari-emosem:accept"
    try:
        action_manager.unbind_shortcut(name)
        action_manager.bind_shortcut(name, "Shift-K")
        widget.open_dataset(root)
        press(Qt.Key_G)
        press(Qt.Key_K)
        assert widget.session["awe"].status == Status.PROPOSED
        press(Qt.Key_K, shift=True)
        assert widget.session["awe"].status == Status.ACCEPTED
    finally:
        action_manager.unbind_shortcut(name)
        action_manager.bind_shortcut(name, "K")


def test_keys_the_user_set_win_over_the_defaults(monkeypatch):
    from napari.settings import get_settings
    from napari.utils.action_manager import action_manager

    name = "napari-emosem:propose"
    saved = action_manager.unbind_shortcut(name)
    try:
        # napari binds the user's keys at start-up, before any plugin is loaded
        monkeypatch.setitem(get_settings().shortcuts.shortcuts, name, ["Ctrl-Shift-G"])
        action_manager.bind_shortcut(name, "Ctrl-Shift-G")
        register_key_bindings()
        assert [str(s) for s in action_manager._shortcuts[name]] == ["Ctrl-Shift-G"]
    finally:
        action_manager.unbind_shortcut(name)
        for shortcut in saved or ["G"]:
            action_manager.bind_shortcut(name, shortcut)
