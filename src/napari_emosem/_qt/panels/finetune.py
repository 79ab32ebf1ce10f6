"""Panel: fine-tune the model on the dataset folders, and what the run changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari.utils.notifications import show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QLabel,
    QListWidget,
    QPushButton,
    QSpinBox,
)

from ...checkpoint import read_checkpoint
from ...errors import EmoSEMError
from ..checkpoints import metrics_html, metrics_line
from ..controller import AnnotatorController
from ..jobs import FineTuneJob, Trained
from ..models import FINETUNE_BASES, FINETUNE_EPOCHS, MODEL_PRESETS, preset_label
from .sam_weights import SamWeightsRow


class FineTunePanel(QGroupBox):
    """Train on the dataset folder (and others added here) in a worker; the new checkpoint goes
    to the user data folder and becomes the model. Extra
    :class:`~napari_emosem.training.TrainConfig` fields can be set in :attr:`train_options`."""

    def __init__(self, controller: AnnotatorController, dataset_folder):
        """``dataset_folder(ask=...)``: the folder Export writes to (the first one trained on)."""
        super().__init__("Fine-tune")
        self.controller = controller
        self._dataset_folder = dataset_folder
        #: further TrainConfig fields (batch_size, seed, patience, validate_explanations, ...)
        self.train_options: dict[str, Any] = {}
        #: the last run that finished (a :class:`~napari_emosem._qt.jobs.Trained`)
        self.last_finetune: Trained | None = None
        #: what the last run trained on ("training on N reviewed pairs from P paintings; ...")
        self.training_data = ""
        self.setToolTip(
            "Train the model on the dataset above (and any others listed here); the new checkpoint "
            "goes to your user data folder and becomes the model"
        )
        self._build()
        controller.events.model.connect(self.fill_bases)
        controller.events.busy.connect(self._enable)
        self.fill_bases()
        self._enable()

    def _build(self) -> None:
        grid = QGridLayout(self)
        self.extra_datasets = QListWidget()
        self.extra_datasets.setToolTip("Other dataset folders to train on as well")
        self.extra_datasets.hide()  # shown once there is one, as tall as its entries
        add_dataset = QPushButton("Add dataset…")
        add_dataset.setToolTip("Besides the dataset above, also train on another dataset folder")
        add_dataset.clicked.connect(self._browse_extra_dataset)
        self.remove_dataset_button = QPushButton("Remove")
        self.remove_dataset_button.clicked.connect(self._remove_extra_dataset)
        self.remove_dataset_button.hide()
        self.base_combo = QComboBox()
        # as wide as the dock, not as its longest entry
        self.base_combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.base_combo.setMinimumContentsLength(12)
        self.base_combo.setToolTip(
            "What training starts from: the current model (a checkpoint keeps improving), or a fresh "
            "preset (vit_b: SAM's ViT-B encoder, for real paintings, quick on a GPU; tiny: random weights, "
            "for tests and toy data)"
        )
        self.base_combo.currentIndexChanged.connect(lambda _: self.weights.show_for(self.base))
        self.weights = SamWeightsRow(self.controller)
        self.include_unreviewed = QCheckBox("include unreviewed drafts")
        self.include_unreviewed.setToolTip(
            "Also learn from model proposals nobody accepted or edited (off: only pairs a person reviewed)"
        )
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 500)
        self.epochs_spin.setValue(FINETUNE_EPOCHS)
        self.epochs_spin.setToolTip(
            "At most this many passes over the data (stops early when validation stops improving)"
        )
        self.finetune_button = QPushButton("Fine-tune")
        self.finetune_button.setToolTip("Train on the exported annotations in the background")
        self.finetune_button.clicked.connect(lambda: self.fine_tune())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the current step (finished epochs are kept)")
        self.cancel_button.clicked.connect(self.controller.cancel)
        self.result_label = QLabel()
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.result_label.hide()
        grid.addWidget(self.extra_datasets, 0, 1, 1, 2)
        grid.addWidget(self.remove_dataset_button, 0, 3)
        grid.addWidget(QLabel("Also on"), 1, 0)
        grid.addWidget(add_dataset, 1, 1)
        grid.addWidget(self.include_unreviewed, 1, 2, 1, 2)
        grid.addWidget(QLabel("From"), 2, 0)
        grid.addWidget(self.base_combo, 2, 1, 1, 3)
        grid.addWidget(self.weights, 3, 1, 1, 3)
        grid.addWidget(QLabel("Epochs"), 4, 0)
        grid.addWidget(self.epochs_spin, 4, 1)
        grid.addWidget(self.finetune_button, 4, 2)
        grid.addWidget(self.cancel_button, 4, 3)
        grid.addWidget(self.result_label, 5, 0, 1, 4)
        grid.setColumnStretch(1, 1)

    # Datasets -----------------------------------------------------------------------------------

    def _browse_extra_dataset(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Also train on this dataset folder")
        if folder:
            self.add_training_dataset(folder)

    def add_training_dataset(self, folder: str | Path) -> None:
        """Also train on ``folder`` (besides the dataset the annotator exports to)."""
        folder = str(Path(folder).expanduser())
        if folder not in self.extra_training_datasets():
            self.extra_datasets.addItem(folder)
        self._fit_extra_datasets()

    def _remove_extra_dataset(self) -> None:
        for item in self.extra_datasets.selectedItems() or [self.extra_datasets.item(self.extra_datasets.count() - 1)]:
            if item is not None:
                self.extra_datasets.takeItem(self.extra_datasets.row(item))
        self._fit_extra_datasets()

    def _fit_extra_datasets(self) -> None:
        # the dock is tall already: the list takes the room of its entries (at most 3, then scrolls)
        count = self.extra_datasets.count()
        height = self.extra_datasets.sizeHintForRow(0) * min(count, 3) if count else 0
        self.extra_datasets.setFixedHeight(height + 2 * self.extra_datasets.frameWidth())
        self.extra_datasets.setVisible(count > 0)
        self.remove_dataset_button.setVisible(count > 0)

    def extra_training_datasets(self) -> list[str]:
        return [self.extra_datasets.item(i).text() for i in range(self.extra_datasets.count())]

    def training_datasets(self) -> list[str]:
        """The dataset folders Fine-tune trains on: the export folder, then the added ones."""
        main = self._dataset_folder()
        folders = [str(Path(main).expanduser())] if main else []
        return folders + [f for f in self.extra_training_datasets() if f not in folders]

    # Base ---------------------------------------------------------------------------------------

    def fill_bases(self, *_) -> None:
        """Offer the current model as the base when it is trainable, then the fresh presets."""
        spec = self.controller.model.spec
        self.base_combo.clear()
        if spec != "starter":
            try:
                what = preset_label(spec) if spec in MODEL_PRESETS else f"checkpoint v{read_checkpoint(spec).version}"
            except EmoSEMError:
                what = Path(spec).name  # not readable: training will say why
            self.base_combo.addItem(f"current model ({what})", spec)
            self.base_combo.setItemData(0, spec, Qt.ToolTipRole)
        for preset in FINETUNE_BASES:
            if preset != spec:
                self.base_combo.addItem(f"fresh {preset_label(preset)}", preset)
        self.base_combo.setCurrentIndex(0)
        self.weights.show_for(self.base)

    @property
    def base(self) -> str:
        """What the next Fine-tune starts from: a checkpoint folder or a preset."""
        return str(self.base_combo.currentData() or FINETUNE_BASES[0])

    # Running ------------------------------------------------------------------------------------

    def fine_tune(self, datasets=None, *, base: str | None = None, epochs: int | None = None):
        """Train on ``datasets`` (default :meth:`training_datasets`) in a background worker.

        Starts from ``base`` (default: the "From" choice) for at most ``epochs`` (default: the
        Epochs box). Unexported edits are offered for export first, since training reads the
        datasets on disk. Returns the job, or None if nothing started.
        """
        controller = self.controller
        controller.binder.flush()
        if controller.busy:
            controller.status("busy: wait for the running task or cancel it")
            return None
        if not self._export_first():
            return None
        folders = [str(f) for f in (datasets if datasets is not None else self.training_datasets())]
        if not folders:
            controller.error(
                "choose the dataset folder to train on (Dataset, above): export some annotations into it first"
            )
            return None
        base = str(base or self.base)
        self.weights.show_for(base)
        missing = self.weights.missing()
        if missing:
            controller.error(missing)
            return None
        job = FineTuneJob(
            folders,
            base,
            controller.model.device,
            epochs=int(epochs or self.epochs_spin.value()),
            options=self.train_options,
            include_unreviewed=self.include_unreviewed.isChecked(),
            sam_checkpoint=self.weights.sam_checkpoint(),
        )
        job.events.trained.connect(self._trained)
        job.events.cancelled.connect(self._cancelled)
        job.events.training_data.connect(self._show_training_data)
        self.result_label.hide()
        self.training_data = ""
        return controller.run(job)

    def _export_first(self) -> bool:
        """Offer to export unexported work; False when the annotator cancels (or the export fails)."""
        dirty = self.controller.unexported()
        if not dirty:
            return True
        names = ", ".join(s.file_name for s in dirty)
        choice = self.controller.ask(
            "Unexported annotations",
            f"{names} ha{'s' if len(dirty) == 1 else 've'} annotations that are not exported yet; "
            "training reads the dataset on disk.\nExport them first?",
            ["Export first", "Train without them", "Cancel"],
            "Export first",
        )
        if choice == "Export first":
            return self.controller.dataset.export_unexported(self._dataset_folder(ask=True) or None)
        return choice != "Cancel"

    def _trained(self, result: Trained) -> None:
        """A run ended: show what it changed, and use its checkpoint from now on."""
        info = result.checkpoint
        self.last_finetune = result
        self._show_metrics(info, result.before, result.after, title=f"v{info.version}: {result.message}")
        self.controller.events.checkpoints.emit()
        self.controller.model.set_model(str(info.path))  # remembered: the default model from now on
        self.controller.status(f"fine-tuned in {result.seconds:.0f} s; now using checkpoint {info.label}")
        show_info(f"EmoSEM fine-tuned, checkpoint v{info.version}: {metrics_line(result.before, result.after)}")

    def _cancelled(self, run_dir: str, epochs_done: int) -> None:
        """Keep what a cancelled run finished: its best epoch is listed, the model stays as it was."""
        info = None
        if run_dir and epochs_done:
            try:
                info = read_checkpoint(run_dir)
            except EmoSEMError:
                info = None
        if info is None:
            self.result_label.hide()
            self.controller.status("fine-tuning cancelled before an epoch ended; nothing was changed")
            return
        metrics = info.metadata.get("metrics") or {}
        self._show_metrics(
            info,
            metrics.get("validation_before") or {},
            metrics.get("validation") or {},
            title=f"v{info.version} (cancelled after epoch {epochs_done}; not in use)",
        )
        self.controller.events.checkpoints.emit()
        self.fill_bases()
        self.controller.status(
            f"fine-tuning cancelled after epoch {epochs_done}; its best checkpoint {info.label} "
            "is listed under Model (choose it to use it)"
        )

    def _show_training_data(self, line: str) -> None:
        self.training_data = line
        self.result_label.setText(line)
        self.result_label.show()

    def _show_metrics(self, info, before: dict, after: dict, *, title: str) -> None:
        data = f"<br>{self.training_data}" if self.training_data else ""
        self.result_label.setText(metrics_html(before, after, title=title) + data)
        self.result_label.setToolTip(f"{info.label}\n{info.path}\n{metrics_line(before, after)}")
        self.result_label.show()

    def _enable(self, *_) -> None:
        busy = self.controller.busy
        self.finetune_button.setEnabled(not busy)
        self.base_combo.setEnabled(not busy)
        job = self.controller.jobs.current
        self.cancel_button.setEnabled(busy and isinstance(job, FineTuneJob))
