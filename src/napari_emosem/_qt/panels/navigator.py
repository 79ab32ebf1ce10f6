"""Panel: the campaign's paintings, where the annotator is, and how far the team has come.

A list of the paintings with their status (a model over the campaign, not a widget per painting:
5,000 rows cost nothing until shown), filtered by status and searched by name; Previous / Next
(passing over done and skipped ones when asked); Skip with a typed reason, and Un-skip; the
progress bar and line (paintings done, pairs reviewed, median time per painting, time left); what
is being made ready next; and Re-propose the rest with the model in use.
"""

from __future__ import annotations

from qtpy.QtCore import QAbstractListModel, QModelIndex, QSignalBlocker, Qt
from qtpy.QtGui import QColor, QFont, QIcon, QPixmap
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListView,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from ...campaign import PaintingStatus
from ...campaign.queue import QueueOrder
from ..campaign import CampaignNavigation, describe_status
from ..campaign_listing import STATUS_FILTERS
from ..controller import AnnotatorController
from ..jobs.repropose import ReproposeJob

#: one colour per status, for the list's dots
STATUS_COLORS = {
    PaintingStatus.NOT_STARTED: "#8a8a8a",
    PaintingStatus.PROPOSED: "#4aa3ff",
    PaintingStatus.IN_PROGRESS: "#ffb000",
    PaintingStatus.DONE: "#39d353",
    PaintingStatus.SKIPPED: "#b05cff",
}
#: rows shown without scrolling
VISIBLE_ROWS = 7


class PaintingList(QAbstractListModel):
    """The navigator's paintings (``navigation.listing.visible``) as rows: label, status dot, tooltip."""

    def __init__(self, navigation: CampaignNavigation):
        super().__init__()
        self.navigation = navigation
        self._icons = {status: _dot(color) for status, color in STATUS_COLORS.items()}
        self._bold = QFont()
        self._bold.setBold(True)

    def rowCount(self, parent: QModelIndex | None = None) -> int:  # noqa: N802 - Qt's name
        return 0 if (parent is not None and parent.isValid()) else len(self.navigation.listing.visible)

    def data(self, index: QModelIndex, role: int = Qt.DisplayRole):
        campaign = self.navigation.campaign
        if campaign is None or not index.isValid() or index.row() >= len(self.navigation.listing.visible):
            return None
        i = self.navigation.listing.visible[index.row()]
        progress = campaign.paintings[i]
        if role == Qt.DisplayRole:
            return f"{progress.label}  ·  {progress.status.value}"
        if role == Qt.DecorationRole:
            return self._icons[progress.status]
        if role == Qt.ToolTipRole:
            return f"{progress.painting.file_name}\n{describe_status(progress, campaign.emotions)}"
        if role == Qt.FontRole and i == self.navigation.current:
            return self._bold
        if role == Qt.UserRole:
            return progress.painting.file_name
        return None

    def reset(self) -> None:
        self.beginResetModel()
        self.endResetModel()

    def row_of(self, index: int | None) -> int | None:
        """The row of the painting at campaign index ``index`` (None: not listed)."""
        if index is None:
            return None
        from bisect import bisect_left

        visible, place = self.navigation.listing.visible, self.navigation.listing.place  # sorted by place
        row = bisect_left(visible, place(index), key=place)
        return row if row < len(visible) and visible[row] == index else None

    def changed(self, index: int | None) -> None:
        row = self.row_of(index)
        if row is not None:
            cell = self.index(row)
            self.dataChanged.emit(cell, cell)


class NavigatorPanel(QGroupBox):
    """The campaign: its paintings, moving between them, skipping, progress; hidden until one is open."""

    def __init__(self, controller: AnnotatorController):
        super().__init__("Campaign")
        self.controller = controller
        self.navigation = controller.campaign
        self.repropose_job: ReproposeJob | None = None
        self.sort_job = None
        #: how the last sort by the queue ended, in one line
        self.sort_line = ""
        self._current: int | None = None
        box = QVBoxLayout(self)
        self.summary_label = QLabel("")
        self.summary_label.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setTextVisible(False)  # the line above says it
        self.progress.setFixedHeight(8)
        box.addWidget(self.summary_label)
        box.addWidget(self.progress)
        box.addLayout(self._make_filters())
        self.model = PaintingList(self.navigation)
        self.list_view = self._make_list()
        box.addWidget(self.list_view)
        box.addLayout(self._make_moves())
        box.addLayout(self._make_repropose())

        events = self.navigation.events
        events.opened.connect(self._on_opened)
        events.filtered.connect(self._on_filtered)
        events.painting.connect(self._on_painting)
        events.current.connect(self._on_current)
        events.summary.connect(self._show_summary)
        controller.prefetch.events.status.connect(lambda line: self.prefetch_label.setText(line))
        controller.events.busy.connect(self._enable)
        controller.events.model.connect(self._show_model)
        controller.events.checkpoints.connect(self._offer_repropose)
        self._show_model(controller.model.spec)
        self.hide()

    def _make_filters(self) -> QVBoxLayout:
        row = QHBoxLayout()
        self.filter_combo = QComboBox()
        self.filter_combo.addItems(list(STATUS_FILTERS))
        self.filter_combo.setToolTip("List only the paintings of this status")
        self.filter_combo.currentTextChanged.connect(lambda text: self.navigation.listing.set_filter(status=text))
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("search: file name, artist, title")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.textChanged.connect(lambda text: self.navigation.listing.set_filter(search=text))
        self.skip_done_check = QCheckBox("skip done")
        self.skip_done_check.setChecked(self.navigation.listing.skip_done)
        self.skip_done_check.setToolTip("Previous and Next pass over done and skipped paintings")
        self.skip_done_check.setFocusPolicy(Qt.NoFocus)
        self.skip_done_check.toggled.connect(lambda on: setattr(self.navigation.listing, "skip_done", on))
        self.order_combo = QComboBox()
        self.order_combo.addItem("dataset order", None)
        for order in QueueOrder:
            self.order_combo.addItem(f"queue: {order.value}", order.value)
        self.order_combo.setToolTip(
            "Sort the list by what to annotate next (emosem queue): uncertainty, the paintings the model is least "
            "sure of first; diversity, the least like those done; random. The model in use looks at every painting "
            "not done, in the background"
        )
        self.order_combo.currentIndexChanged.connect(lambda _: self.sort(self.order_combo.currentData()))
        for combo, letters in ((self.filter_combo, 6), (self.order_combo, 8)):
            # their longest items must not widen the whole dock: they show in full when opened
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(letters)
        row.addWidget(self.filter_combo, 1)
        row.addWidget(self.order_combo, 1)
        row.addWidget(self.skip_done_check)
        rows = QVBoxLayout()  # the search on a line of its own: wide enough to read what is typed
        rows.addLayout(row)
        rows.addWidget(self.search_edit)
        return rows

    def sort(self, order: str | None):
        """List the paintings in dataset order (None) or by the queue's ``order`` (ranked in a
        background job, its progress in the line under the list, the outcome in the status line);
        returns the job, if one started."""
        if self.sort_job is not None and self.sort_job.running:
            self.controller.jobs.cancel(self.sort_job)
        self.sort_job = None
        if order is None:
            self.navigation.listing.sort_by_queue(None)
            return None
        self.sort_job = self.navigation.listing.start_sort_by_queue(
            order,
            progress=lambda done, total, line: self.prefetch_label.setText(f"sorting: {line}"),
            ended=self._sorted,
        )
        return self.sort_job

    def _sorted(self, line: str) -> None:
        self.sort_line = line
        self.prefetch_label.setText("")
        self.controller.status(line)

    def _make_list(self) -> QListView:
        view = QListView()
        view.setModel(self.model)
        view.setUniformItemSizes(True)  # 5,000 rows: no per-row size computation
        view.setSelectionMode(QAbstractItemView.SingleSelection)
        view.setEditTriggers(QAbstractItemView.NoEditTriggers)
        view.setFixedHeight(VISIBLE_ROWS * (view.fontMetrics().height() + 6) + 2 * view.frameWidth())
        view.setToolTip("Double-click (or Enter) to open a painting; the current one is in bold")
        view.activated.connect(self._on_activated)
        return view

    def _make_moves(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.previous_button = QPushButton("◀ Previous")
        self.previous_button.setToolTip("Save this painting and open the previous one in the list (Shift+←)")
        self.previous_button.clicked.connect(self.navigation.previous)
        self.next_button = QPushButton("Next ▶")
        self.next_button.setToolTip("Save this painting and open the next one in the list (Shift+→)")
        self.next_button.clicked.connect(self.navigation.next)
        self.skip_button = QPushButton("Skip…")
        self.skip_button.setToolTip("Skip this painting, with a reason (not a painting, duplicate, …)")
        self.skip_button.clicked.connect(lambda: self.skip())
        for widget in (self.previous_button, self.next_button, self.skip_button):
            # a click leaves the keyboard where it was (the canvas takes napari's key bindings)
            widget.setFocusPolicy(Qt.NoFocus)
            row.addWidget(widget)
        return row

    def _make_repropose(self) -> QVBoxLayout:
        rows = QVBoxLayout()
        line = QHBoxLayout()
        #: what the background work is doing: the next painting made ready, or re-proposing
        self.prefetch_label = QLabel("")
        self.prefetch_label.setStyleSheet("color: #9a9a9a;")
        self.prefetch_label.setWordWrap(True)
        self.repropose_button = QPushButton("Re-propose the rest")
        self.repropose_button.clicked.connect(lambda: self.repropose())
        line.addWidget(self.prefetch_label, 1)
        line.addWidget(self.repropose_button)
        running = QHBoxLayout()
        self.repropose_progress = QProgressBar()
        self.repropose_progress.setFormat("re-proposing: %v/%m")
        self.repropose_progress.hide()
        self.repropose_cancel = QPushButton("Cancel")
        self.repropose_cancel.clicked.connect(self.cancel_repropose)
        self.repropose_cancel.hide()
        running.addWidget(self.repropose_progress, 1)
        running.addWidget(self.repropose_cancel)
        rows.addLayout(line)
        rows.addLayout(running)
        return rows

    # The annotator's input ----------------------------------------------------------------------

    def _on_activated(self, index: QModelIndex) -> None:
        name = self.model.data(index, Qt.UserRole)
        if name:
            self.navigation.go(name)

    def skip(self, reason: str | None = None) -> bool:
        """Skip the current painting (Un-skip when it is skipped); ``reason`` None: ask for one."""
        campaign, current = self.navigation.campaign, self.navigation.current
        if campaign is None or current is None:
            return False
        if campaign.paintings[current].status is PaintingStatus.SKIPPED:
            return self.navigation.unskip()
        if reason is None:
            reason, ok = QInputDialog.getText(
                self, "Skip this painting", "Why is it skipped? (e.g. not a painting, duplicate, unreadable)"
            )
            if not ok:
                return False
        return self.navigation.skip(reason)

    def repropose(self) -> ReproposeJob | None:
        """Propose again, with the model in use, for every painting that is not done."""
        self.repropose_job = job = self.navigation.repropose_rest()
        if job is None:
            return None
        job.events.progress.connect(self._show_repropose_progress)
        job.events.ended.connect(self._repropose_ended)
        self.repropose_progress.setRange(0, 0)
        self.repropose_progress.show()
        self.repropose_cancel.show()
        self.repropose_button.setEnabled(False)
        return job

    def cancel_repropose(self) -> None:
        if self.repropose_job is not None:
            self.controller.jobs.cancel(self.repropose_job)

    # What the campaign says ---------------------------------------------------------------------

    def _on_opened(self, campaign) -> None:
        self.setVisible(campaign is not None)
        if campaign is not None:
            self.setTitle(f"Campaign: {campaign.root.name} ({len(campaign.paintings):,} paintings)")
            self.setToolTip(str(campaign.root))
        self._current = None
        with QSignalBlocker(self.order_combo):  # a campaign opens in dataset order
            self.order_combo.setCurrentIndex(0)
        self._enable()

    def _on_filtered(self) -> None:
        self.model.reset()
        self._on_current(self.navigation.current)

    def _on_painting(self, index: int) -> None:
        self.model.changed(index)
        if index == self.navigation.current:
            self._show_skip()

    def _on_current(self, index: int | None) -> None:
        previous, self._current = self._current, index
        self.model.changed(previous)
        self.model.changed(index)
        row = self.model.row_of(index)
        with QSignalBlocker(self.list_view.selectionModel()):
            if row is None:
                self.list_view.clearSelection()
            else:
                cell = self.model.index(row)
                self.list_view.setCurrentIndex(cell)
                self.list_view.scrollTo(cell)
        self._show_skip()
        self._enable()

    def _show_summary(self, line: str) -> None:
        self.summary_label.setText(line)
        campaign = self.navigation.campaign
        if campaign is not None:
            self.progress.setRange(0, max(1, len(campaign.paintings)))
            self.progress.setValue(campaign.progress.count(PaintingStatus.DONE))

    def _show_skip(self) -> None:
        campaign, current = self.navigation.campaign, self.navigation.current
        status = campaign.paintings[current].status if (campaign is not None and current is not None) else None
        skipped = status is PaintingStatus.SKIPPED
        self.skip_button.setText("Un-skip" if skipped else "Skip…")

    def _show_model(self, spec: str) -> None:
        name = str(spec).rstrip("/").rsplit("/", 1)[-1]
        self.repropose_button.setToolTip(
            f"Propose again with {name} for every painting that is not done (drafts only: what a person "
            "reviewed stays), in the background"
        )

    def _offer_repropose(self) -> None:
        if self.navigation.campaign is not None and self.repropose_job is None:
            self.prefetch_label.setText("new checkpoint: Re-propose the rest gives the paintings not done its drafts")

    def _show_repropose_progress(self, done: int, total: int, line: str) -> None:
        self.repropose_progress.setRange(0, max(1, total))
        self.repropose_progress.setValue(done)
        self.prefetch_label.setText(line)

    def _repropose_ended(self, line: str) -> None:
        self.repropose_job = None
        self.repropose_progress.hide()
        self.repropose_cancel.hide()
        self.controller.status(line)
        self._enable()

    def _enable(self, *_) -> None:
        has = self.navigation.current is not None
        for button in (self.previous_button, self.next_button, self.skip_button):
            button.setEnabled(has)
        self.repropose_button.setEnabled(self.navigation.campaign is not None and self.repropose_job is None)


def _dot(color: str) -> QIcon:
    pixmap = QPixmap(10, 10)
    pixmap.fill(QColor(color))
    return QIcon(pixmap)
