"""Panel: the eight emotions with their status, ticks for Propose, and the job's progress."""

from __future__ import annotations

from qtpy.QtCore import QSignalBlocker, Qt
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..._layers import EMOTION_COLORS
from ...emotions import EMOTIONS
from ..controller import AnnotatorController

COL_EMOTION, COL_STATUS, COL_SCORE, COL_BY = range(4)


class EmotionTablePanel(QWidget):
    """One row per emotion (ticked: included in the next Propose; selected: the one being edited),
    the Propose and Cancel buttons, and the running job's progress bar."""

    def __init__(self, controller: AnnotatorController):
        super().__init__()
        self.controller = controller
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.table = self._make_table()
        layout.addWidget(self.table)
        layout.addLayout(self._make_buttons())
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.hide()
        layout.addWidget(self.progress)

        events = controller.events
        controller.paintings.events.painting.connect(self.refresh)
        controller.paintings.events.items.connect(self.refresh_rows)
        controller.paintings.events.exported.connect(self.refresh)
        events.selection.connect(self._show_selection)
        events.ticked.connect(self._show_ticks)
        events.busy.connect(self._enable)
        jobs = controller.jobs.events
        # the annotator's jobs: a background one shows its progress in its own panel
        jobs.started.connect(lambda job: job.background or self.progress.show())
        jobs.progress.connect(self._show_progress)
        jobs.finished.connect(lambda job: job.background or self.progress.hide())
        self._enable()

    def _make_table(self) -> QTableWidget:
        table = QTableWidget(len(EMOTIONS), 4)
        table.setHorizontalHeaderLabels(["Emotion", "Status", "Score", "By"])
        table.verticalHeader().hide()
        table.setSelectionBehavior(QAbstractItemView.SelectRows)
        table.setSelectionMode(QAbstractItemView.SingleSelection)
        table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        header = table.horizontalHeader()
        header.setSectionResizeMode(COL_EMOTION, QHeaderView.Stretch)
        for col in (COL_STATUS, COL_SCORE, COL_BY):
            header.setSectionResizeMode(col, QHeaderView.ResizeToContents)
        for row, emotion in enumerate(EMOTIONS):
            item = QTableWidgetItem(emotion)
            item.setFlags(Qt.ItemIsEnabled | Qt.ItemIsSelectable | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if emotion in self.controller.ticked else Qt.Unchecked)
            pixmap = QPixmap(12, 12)
            pixmap.fill(QColor(EMOTION_COLORS[emotion]))
            item.setIcon(QIcon(pixmap))
            item.setToolTip("Tick to include this emotion in Propose; select the row to edit it")
            table.setItem(row, COL_EMOTION, item)
            for col in (COL_STATUS, COL_SCORE, COL_BY):
                table.setItem(row, col, QTableWidgetItem(""))
        table.setMinimumHeight(table.verticalHeader().length() + header.height() + 6)
        table.itemSelectionChanged.connect(self._on_row_selected)
        table.itemChanged.connect(self._on_ticked)
        return table

    def _make_buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        all_button = QPushButton("All")
        all_button.clicked.connect(lambda: self.controller.set_emotions(EMOTIONS))
        none_button = QPushButton("None")
        none_button.clicked.connect(lambda: self.controller.set_emotions(()))
        self.propose_button = QPushButton("Propose")
        self.propose_button.setToolTip("Propose a mask and an explanation draft for each ticked emotion")
        self.propose_button.clicked.connect(lambda: self.controller.propose())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.controller.cancel)
        for button in (all_button, none_button):
            row.addWidget(button)
        row.addStretch(1)
        row.addWidget(self.propose_button)
        row.addWidget(self.cancel_button)
        return row

    # The annotator's input ----------------------------------------------------------------------

    def _on_row_selected(self) -> None:
        rows = {index.row() for index in self.table.selectedIndexes()}
        if rows:
            self.controller.select_emotion(EMOTIONS[min(rows)])

    def _on_ticked(self, item: QTableWidgetItem) -> None:
        if item.column() == COL_EMOTION:
            rows = range(len(EMOTIONS))
            ticked = [EMOTIONS[r] for r in rows if self.table.item(r, COL_EMOTION).checkState() == Qt.Checked]
            self.controller.set_emotions(ticked)

    # What the controller says -------------------------------------------------------------------

    def refresh(self, *_) -> None:
        self.refresh_rows(EMOTIONS)
        self._enable()

    def refresh_rows(self, emotions) -> None:
        session = self.controller.session
        with QSignalBlocker(self.table):
            for emotion in emotions:
                item = session.get(emotion) if session is not None else None
                status = score = by = tip = ""
                if item is not None:
                    status = item.status.value
                    score = f"{item.score:.2f}" if item.score is not None else ""
                    # short: the model's id ("starter", "tiny", a checkpoint id); the tooltip says more
                    who = item.source.removeprefix("model:") if item.from_model else "you"
                    who = who if len(who) <= 18 else who[:17] + "…"
                    by = who + (" ✎" if item.edited else "")
                    tip = (item.model or item.source) + (" — edited by you" if item.edited else "")
                row = EMOTIONS.index(emotion)
                for col, text in ((COL_STATUS, status), (COL_SCORE, score), (COL_BY, by)):
                    cell = self.table.item(row, col)
                    cell.setText(text)
                    cell.setToolTip(tip)

    def _show_selection(self, emotion: str | None) -> None:
        with QSignalBlocker(self.table):
            if emotion is None:
                self.table.clearSelection()
            else:
                self.table.selectRow(EMOTIONS.index(emotion))

    def _show_ticks(self, ticked: tuple[str, ...]) -> None:
        with QSignalBlocker(self.table):
            for row, emotion in enumerate(EMOTIONS):
                self.table.item(row, COL_EMOTION).setCheckState(Qt.Checked if emotion in ticked else Qt.Unchecked)

    def _show_progress(self, value: int, maximum: int, text_format: str) -> None:
        if self.progress.maximum() != maximum:
            self.progress.setRange(0, maximum)
        self.progress.setValue(value)
        self.progress.setFormat(text_format)

    def _enable(self, *_) -> None:
        busy = self.controller.busy
        self.propose_button.setEnabled(self.controller.session is not None and not busy)
        self.cancel_button.setEnabled(busy)
