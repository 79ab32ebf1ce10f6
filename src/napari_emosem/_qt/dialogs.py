"""Small Qt dialogs and the close guard (public Qt APIs only)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QMessageBox, QWidget


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


class CloseGuard(QObject):
    """Event filter on the main window: asks ``confirm()`` before the window closes.

    ``confirm`` returns True to let the window close. Only a visible window asks (a hidden
    window is being torn down by code, e.g. in tests, where nobody could answer).
    """

    def __init__(self, window: QWidget, confirm: Callable[[], bool]):
        super().__init__(window)
        self._confirm = confirm
        self._window = window
        window.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt's name
        if obj is self._window and event.type() == QEvent.Close and self._window.isVisible():
            if not self._confirm():
                event.ignore()
                return True
        return False

    def remove(self) -> None:
        self._window.removeEventFilter(self)
