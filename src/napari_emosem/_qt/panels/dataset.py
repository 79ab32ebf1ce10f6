"""Panel: the dataset folder; open one of its paintings, export the current one into it."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import QSignalBlocker
from qtpy.QtWidgets import QFileDialog, QGroupBox, QHBoxLayout, QInputDialog, QLineEdit, QPushButton

from ...annotation import ExportResult
from ..controller import AnnotatorController


class DatasetPanel(QGroupBox):
    """Export writes the painting into the folder (again: update in place); Open… opens one of the
    folder's paintings with its annotations."""

    def __init__(self, controller: AnnotatorController):
        super().__init__("Dataset")
        self.controller = controller
        row = QHBoxLayout(self)
        self.dataset_edit = QLineEdit(controller.dataset.path)
        self.dataset_edit.setPlaceholderText("dataset folder (created if needed)")
        self.dataset_edit.textChanged.connect(controller.dataset.set)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.browse)
        self.open_button = QPushButton("Open…")
        self.open_button.setToolTip("Open one of the dataset's paintings with its annotations")
        self.open_button.clicked.connect(lambda: self.open_painting())
        self.export_button = QPushButton("Export")
        self.export_button.setToolTip("Write this painting and its annotations into the dataset (again: update)")
        self.export_button.clicked.connect(lambda: self.export())
        row.addWidget(self.dataset_edit, 1)
        row.addWidget(browse)
        row.addWidget(self.open_button)
        row.addWidget(self.export_button)
        controller.events.dataset_folder.connect(self._show_folder)
        controller.paintings.events.painting.connect(self._enable)
        self._enable()

    def folder(self, *, ask: bool = False) -> str:
        """The dataset folder; ``ask``: ask the annotator for one when none is set ("" if they don't)."""
        folder = self.controller.dataset.folder()
        if not folder and ask:
            folder = QFileDialog.getExistingDirectory(self, "Choose (or create) a dataset folder")
        return folder

    def browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose (or create) a dataset folder", self.dataset_edit.text())
        if folder:
            self.controller.dataset.set(folder)
            self.controller.settings.dataset_folder = folder

    def export(self, folder: str | Path | None = None) -> ExportResult | None:
        """Export the current painting into ``folder`` (default: the dataset folder, else ask)."""
        folder = str(folder or self.folder(ask=self.controller.session is not None))
        return self.controller.dataset.export(folder or None)

    def open_painting(self, painting: str | None = None, folder: str | Path | None = None):
        """Open ``painting`` of the dataset (None: let the annotator choose one). Returns its Image layer."""
        folder = folder or self.folder()
        if painting is None:
            counts = self.controller.dataset.paintings(folder)
            if not counts:
                return None
            names = list(counts)
            labels = [f"{n}  ({counts[n]} annotation{'s' if counts[n] != 1 else ''})" for n in names]
            choice, ok = QInputDialog.getItem(self, "Open from the dataset", "Painting:", labels, 0, False)
            if not ok:
                return None
            painting = names[labels.index(choice)]
        return self.controller.dataset.open(folder, painting)

    def _show_folder(self, folder: str) -> None:
        if self.dataset_edit.text() != folder:
            with QSignalBlocker(self.dataset_edit):
                self.dataset_edit.setText(folder)

    def _enable(self, *_) -> None:
        self.export_button.setEnabled(self.controller.session is not None)
