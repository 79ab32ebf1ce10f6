"""Small Qt dialogs and the close guard (public Qt APIs only)."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QInputDialog, QMessageBox, QWidget


def ask(parent: QWidget | None, title: str, text: str, choices: Sequence[str], *, default: str | None = None) -> str:
    """A modal question with one button per choice; returns the chosen text (the last if closed)."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Question)
    box.setWindowTitle(title)
    box.setText(text)
    buttons = {}
    for i, choice in enumerate(choices):
        role = QMessageBox.RejectRole if i == len(choices) - 1 else QMessageBox.AcceptRole
        buttons[box.addButton(choice, role)] = choice
    if default is not None:
        for button, choice in buttons.items():
            if choice == default:
                box.setDefaultButton(button)
    box.exec_()
    return buttons.get(box.clickedButton(), choices[-1])


def ask_name(parent: QWidget) -> str | None:
    """The annotator's name, asked once (the settings remember it); "" when they give none; None
    when ``parent``'s window is not on screen (a script or a test: nobody was asked). The window,
    not the widget: ``emosem view`` opens a campaign before the dock widget is first shown."""
    if not parent.window().isVisible():
        return None
    text, ok = QInputDialog.getText(
        parent,
        "Your name",
        "Your name as an annotator (kept with each record you review, so that several annotators'\n"
        "records stay apart; change it in Preferences › napari-emosem):",
    )
    return " ".join(text.split()) if ok else ""


class CloseGuard(QObject):
    """Event filter on the main window: asks ``confirm()`` before the window closes.

    ``confirm`` (a bound method of ``owner``) returns True to let the window close; ``on_close``
    then runs before the window goes (to stop background work). The guard
    belongs to ``owner`` (Qt deletes it, and so uninstalls the filter, with the owner) and holds
    the window and the method weakly, so it keeps neither the viewer nor the widget alive. Only a
    visible window asks (a hidden one is being torn down by code, where nobody could answer).
    """

    def __init__(
        self,
        window: QWidget,
        confirm: Callable[[], bool],
        owner: QObject,
        on_close: Callable[[], None] | None = None,
    ):
        super().__init__(owner)
        self._confirm = weakref.WeakMethod(confirm)
        self._on_close = weakref.WeakMethod(on_close) if on_close is not None else None
        self._window = weakref.ref(window)
        window.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt's name
        window = self._window()
        if window is None or obj is not window or event.type() != QEvent.Close:
            return False
        if window.isVisible():
            confirm = self._confirm()
            if confirm is not None and not confirm():
                event.ignore()
                return True
        on_close = self._on_close() if self._on_close is not None else None
        if on_close is not None:
            on_close()  # the window closes: let the owner stop its work first
        return False
