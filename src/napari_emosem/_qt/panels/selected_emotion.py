"""Panel: the selected emotion's explanation, the decisions on it, and refine-with-clicks."""

from __future__ import annotations

from qtpy.QtCore import QSignalBlocker, Qt
from qtpy.QtWidgets import (
    QButtonGroup,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
)

from ...annotation import Status
from ..controller import AnnotatorController


class SelectedEmotionPanel(QGroupBox):
    """What the annotator does with one emotion: read and edit its explanation, Accept, Reject,
    No stimulus, ask for a new draft, and click inside/outside to re-draw its mask."""

    def __init__(self, controller: AnnotatorController):
        super().__init__("Selected emotion")
        self.controller = controller
        box = QVBoxLayout(self)
        self.label = QLabel("Select an emotion in the table or its layer")
        self.label.setWordWrap(True)
        box.addWidget(self.label)
        self.explanation_edit = QPlainTextEdit()
        self.explanation_edit.setPlaceholderText("Why does this region evoke the emotion?")
        self.explanation_edit.setFixedHeight(72)
        self.explanation_edit.textChanged.connect(self._on_typed)
        box.addWidget(self.explanation_edit)
        box.addLayout(self._make_decisions())
        box.addLayout(self._make_clicks())

        events = controller.events
        events.selection.connect(self.refresh)
        events.busy.connect(self._enable)
        events.clicking.connect(self._show_clicking)
        controller.binder.clicks.events.inside.connect(self.set_click_kind)
        controller.paintings.events.painting.connect(self.refresh)
        controller.paintings.events.items.connect(self._on_items)
        self.refresh()

    def _make_decisions(self) -> QHBoxLayout:
        row = QHBoxLayout()
        decide = self.controller.decide
        self.accept_button = QPushButton("Accept")
        self.accept_button.clicked.connect(lambda: decide(Status.ACCEPTED))
        self.reject_button = QPushButton("Reject")
        self.reject_button.clicked.connect(lambda: decide(Status.REJECTED))
        self.no_stimulus_button = QPushButton("No stimulus")
        self.no_stimulus_button.setToolTip("This emotion has no stimulus in this painting (clears the mask)")
        self.no_stimulus_button.clicked.connect(lambda: decide(Status.NO_STIMULUS))
        self.draft_button = QPushButton("Draft text")
        self.draft_button.setToolTip("Ask the model for a new explanation of the current mask")
        self.draft_button.clicked.connect(lambda: self.controller.draft_explanation())
        for button in (self.accept_button, self.reject_button, self.no_stimulus_button, self.draft_button):
            button.setFocusPolicy(Qt.NoFocus)  # the canvas keeps the keyboard (napari's key bindings)
            row.addWidget(button)
        return row

    def _make_clicks(self) -> QGridLayout:
        grid = QGridLayout()
        self.click_button = QPushButton("Refine with clicks")
        self.click_button.setCheckable(True)
        self.click_button.setToolTip("Click on the painting: the model re-draws this emotion's mask around your clicks")
        self.click_button.toggled.connect(self._on_click_mode)
        self.inside_radio = QRadioButton("inside")
        self.outside_radio = QRadioButton("outside")
        self.inside_radio.setChecked(True)
        self._click_kind = QButtonGroup(self)
        self._click_kind.addButton(self.inside_radio)
        self._click_kind.addButton(self.outside_radio)
        self.inside_radio.toggled.connect(self.controller.binder.clicks.set_inside)
        clear = QPushButton("Clear clicks")
        clear.clicked.connect(self.controller.clicks.clear)
        grid.addWidget(self.click_button, 0, 0)
        grid.addWidget(self.inside_radio, 0, 1)
        grid.addWidget(self.outside_radio, 0, 2)
        grid.addWidget(clear, 0, 3)
        return grid

    # The annotator's input ----------------------------------------------------------------------

    def _on_typed(self) -> None:
        self.controller.set_explanation(self.explanation_edit.toPlainText())

    def _on_click_mode(self, on: bool) -> None:
        if on:
            self.controller.clicks.start()
        else:
            self.controller.clicks.stop()

    def set_click_kind(self, inside: bool) -> None:
        """New clicks mark the stimulus (True) or what is outside it (False)."""
        (self.inside_radio if inside else self.outside_radio).setChecked(True)

    # What the controller says -------------------------------------------------------------------

    def _on_items(self, emotions: tuple[str, ...]) -> None:
        if self.controller.selected_emotion in emotions:
            self.refresh()

    def refresh(self, *_) -> None:
        """Show the selected emotion's explanation and provenance."""
        session, emotion = self.controller.session, self.controller.selected_emotion
        item = session.get(emotion) if (session is not None and emotion) else None
        text = item.explanation if item else ""
        if self.explanation_edit.toPlainText() != text:  # never while typing: the cursor would jump
            with QSignalBlocker(self.explanation_edit):
                self.explanation_edit.setPlainText(text)
        if emotion is None:
            self.label.setText("Select an emotion in the table or its layer")
        elif item is None:
            self.label.setText(f"<b>{emotion}</b>: not annotated — propose it, or paint on a new layer")
        else:
            who = f"proposed by {item.model or item.source}" if item.from_model else "drawn by you"
            edited = " · edited by you" if item.edited else ""
            score = f" · score {item.score:.2f}" if item.score is not None else ""
            self.label.setText(f"<b>{emotion}</b> ({item.status.value}) — {who}{edited}{score}")
        self._enable()

    def _show_clicking(self, on: bool) -> None:
        with QSignalBlocker(self.click_button):
            self.click_button.setChecked(on)

    def _enable(self, *_) -> None:
        self.setEnabled(self.controller.session is not None and self.controller.selected_emotion is not None)
        self.draft_button.setEnabled(not self.controller.busy)
