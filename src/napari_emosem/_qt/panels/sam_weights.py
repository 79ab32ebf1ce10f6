"""Row: the SAM weights a fresh SAM-backed base needs — here already, a file you chose, or Download."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QPushButton, QWidget

from ...weights import SAM_WEIGHTS, cached_path
from ..controller import AnnotatorController
from ..jobs import Job
from ..jobs.weights import DownloadWeightsJob


class SamWeightsRow(QWidget):
    """Shown under Fine-tune's "From" when it names a fresh vit_b/vit_l/vit_h: that preset starts
    from SAM's image encoder, whose weights (hundreds of MB) must be on this machine."""

    def __init__(self, controller: AnnotatorController):
        super().__init__()
        self.controller = controller
        self.preset: str | None = None
        #: a .pth file the annotator chose (Browse), by preset
        self.files: dict[str, str] = {}
        self._job: DownloadWeightsJob | None = None
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel()
        self.label.setWordWrap(True)  # the dock stays as narrow as it was
        row.addWidget(self.label, 1)
        self.download_button = QPushButton("Download")
        self.download_button.setToolTip("Download the official file (hash-verified) into the weights cache")
        self.download_button.clicked.connect(self.download)
        self.browse_button = QPushButton("Browse…")
        self.browse_button.setToolTip("Use a copy of the file you already have")
        self.browse_button.clicked.connect(lambda: self.browse())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(controller.cancel)
        for button in (self.download_button, self.browse_button, self.cancel_button):
            row.addWidget(button)
        controller.jobs.events.started.connect(lambda job: self.refresh())
        controller.jobs.events.finished.connect(self._on_finished)
        self.hide()

    def show_for(self, base: str) -> None:
        """What ``base`` (the "From" choice) needs, if anything."""
        self.preset = base if base in SAM_WEIGHTS else None
        self.refresh()

    def sam_checkpoint(self) -> str | None:
        """The file to build the preset from: the chosen one (None: the cache's)."""
        return self.files.get(self.preset) if self.preset else None

    def missing(self) -> str | None:
        """What Fine-tune still needs, as one line (None: nothing)."""
        if self.preset is None or self.sam_checkpoint() or cached_path(self.preset):
            return None
        entry = SAM_WEIGHTS[self.preset]
        return (
            f"fresh {self.preset} starts from SAM's {self.preset} weights ({entry.file_name}, "
            f"{entry.size / 1e6:.0f} MB), which are not on this machine: Download them, or Browse for the file"
        )

    def refresh(self) -> None:
        downloading = self._job is not None and self._job.running
        need = self.missing()
        chosen = self.sam_checkpoint()
        self.setVisible(need is not None or downloading or chosen is not None)
        entry = SAM_WEIGHTS.get(self.preset) if self.preset else None
        if downloading:
            self.label.setText(f"downloading SAM's {self.preset} weights…")
        elif chosen is not None:
            self.label.setText(f"SAM weights: {Path(chosen).name}")
        elif need is not None:
            self.label.setText(f"needs SAM weights ({entry.size / 1e6:.0f}\u00a0MB)")  # MB stays with its number
        self.label.setToolTip(need or chosen or (entry.file_name if entry else ""))
        busy = self.controller.busy
        self.download_button.setVisible(need is not None and not downloading)
        self.download_button.setEnabled(not busy)
        self.browse_button.setVisible(not downloading and self.preset is not None)
        self.browse_button.setEnabled(not busy)
        self.cancel_button.setVisible(downloading)

    def download(self) -> Job | None:
        """Fetch the preset's weights in a worker (progress in the dock and napari's activity)."""
        if self.preset is None or self.controller.busy:
            return None
        self._job = DownloadWeightsJob(self.preset)
        self._job.events.downloaded.connect(self._downloaded)
        return self.controller.run(self._job)

    def browse(self, path: str | Path | None = None) -> None:
        """Use the .pth file at ``path`` (None: ask for it) for this preset."""
        if self.preset is None:
            return
        if path is None:
            path, _ = QFileDialog.getOpenFileName(
                self, f"SAM {self.preset} weights", "", "PyTorch checkpoint (*.pth);;All files (*)"
            )
        if not path:
            return
        if not Path(path).is_file():
            self.controller.error(f"{path}: no such file; choose SAM's {SAM_WEIGHTS[self.preset].file_name}")
            return
        self.files[self.preset] = str(path)
        self.refresh()

    def _downloaded(self, path: str) -> None:
        self.controller.status(f"SAM {self.preset} weights downloaded to {path}")

    def _on_finished(self, job: Job) -> None:
        if job is self._job and job.cancelled:
            self.controller.status("download cancelled; nothing was kept")
        self.refresh()
