"""Banner: unexported work of this painting was autosaved; restore it or discard it."""

from __future__ import annotations

from qtpy.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton

from ...annotation import AutosaveInfo
from ..controller import AnnotatorController


class AutosaveBanner(QFrame):
    """Shown when the current painting has an autosave whose work is not on screen."""

    def __init__(self, controller: AnnotatorController):
        super().__init__()
        self.setFrameShape(QFrame.StyledPanel)
        row = QHBoxLayout(self)
        row.setContentsMargins(4, 2, 4, 2)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.restore_button = QPushButton("Restore")
        self.restore_button.clicked.connect(controller.autosaves.restore)
        self.discard_button = QPushButton("Discard")
        self.discard_button.clicked.connect(controller.autosaves.discard)
        row.addWidget(self.label, 1)
        row.addWidget(self.restore_button)
        row.addWidget(self.discard_button)
        self.hide()
        controller.events.autosave_offer.connect(self.offer)
        controller.paintings.events.painting.connect(lambda _: self.hide())

    def offer(self, info: AutosaveInfo | None) -> None:
        if info is None:
            self.hide()
            return
        when = info.saved_at.replace("T", " ")[:16]
        what = ", ".join(info.emotions) if info.emotions else "no emotions"
        self.label.setText(f"Unexported work on this painting was autosaved ({when} UTC: {what}).")
        self.show()
