"""The "EmoSEM annotator" dock widget: propose, refine, explain, decide, export, fine-tune.

A thin view over :class:`napari_emosem.annotation.AnnotationSession` (one per painting): the
session holds the annotation and its provenance; this widget shows it as napari layers and
controls, runs the model in thread workers (torch is imported only there), and writes edits made
with napari's own tools back into the session.

Layers: the painting is an Image layer; each emotion's mask is a Labels layer named
"<emotion> stimulus" (label 1 = stimulus) whose ``metadata["emosem"]`` mirrors the session, so
napari's File > Save with the EmoSEM writer keeps explanations and provenance too; clicks for
refinement live in a Points layer "EmoSEM clicks" (green = inside, red = outside). Hidden
"EmoSEM spare" Labels layers are made ahead when a painting is chosen, so that proposed masks
appear without napari's slow layer creation (see ``_qt/spares.py``).

Fine-tune trains on the dataset folders in a worker too; its checkpoints go to the user data
folder. The model chosen last is remembered (the plugin's ``model`` setting) and opens next time;
a finished Fine-tune chooses its new checkpoint.
"""

from __future__ import annotations

import functools
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .annotation import (
    EMOTION_COLORS,
    METADATA_KEY,
    AnnotationSession,
    Status,
    annotation_from_layer,
    emotion_of_layer,
    layer_metadata,
)
from .emotions import EMOTIONS
from .errors import EmoSEMError
from .image_io import to_rgb_uint8

MODEL_PRESETS = ("starter", "tiny", "vit_b", "vit_l", "vit_h")
#: presets Fine-tune can start from (starter has no trainable weights); tiny first: it trains on a CPU
FINETUNE_BASES = ("tiny", "vit_b")
#: the Fine-tune epochs box's initial value (``TrainConfig``'s default; early stopping ends sooner)
FINETUNE_EPOCHS = 20
DEVICES = ("auto", "cpu", "cuda", "mps")
#: how often the autosave timer looks for unsaved edits (each session saves at most every
#: ``autosave_seconds``)
AUTOSAVE_TICK_MS = 5000
#: clicks are collected for this long before a refinement starts (several quick clicks, one decode)
REFINE_DELAY_MS = 150
#: pause between showing two proposed masks: a real timer, so that napari repaints and the event
#: loop takes input in between (a 0 ms timer is a posted event, run in the same pass as the next)
MASK_SPACING_MS = 15
#: pause between two spare layers (each takes napari a few hundred ms on software OpenGL): the
#: viewer repaints and takes input in between
SPARE_DELAY_MS = 50

_COL_EMOTION, _COL_STATUS, _COL_SCORE, _COL_BY = range(4)


class EmoSEMAnnotator(QWidget):
    """Dock widget: EmoSEM proposals, refinement and export for the paintings in a viewer.

    Parameters
    ----------
    napari_viewer
        The viewer (napari passes it).
    settings
        A :class:`napari_emosem._qt.settings.Settings` (default: napari's plugin settings).
    synchronous
        Run model work on the GUI thread (deterministic tests); default from
        ``EMOSEM_SYNC_WORKERS``.
    predictor_loader
        ``loader(spec, device=...) -> Predictor`` (default :func:`napari_emosem.loading.load_predictor`).
    """

    def __init__(
        self,
        napari_viewer,
        *,
        settings=None,
        synchronous: bool | None = None,
        predictor_loader=None,
    ):
        super().__init__()
        from ._qt.jobs import sync_workers_default
        from ._qt.settings import Settings
        from ._qt.tasks import PredictorHolder

        self.viewer = napari_viewer
        self.settings = settings if settings is not None else Settings()
        self.settings.apply_cache_folder()
        self.synchronous = sync_workers_default() if synchronous is None else bool(synchronous)
        self._holder = PredictorHolder(predictor_loader)
        #: image layer -> its session (keyed by id: layers are not hashable by value)
        self._sessions: dict[int, tuple[Any, AnnotationSession]] = {}
        self._image_layer = None
        #: emotion -> (Labels layer, connected callbacks) for the current painting
        self._bound: dict[str, tuple[Any, list[tuple[Any, Any]]]] = {}
        self._clicks_layer = None
        self._selected: str | None = None
        self._job = None
        self._job_context: dict[str, Any] = {}
        self._starting = False
        self._refine_pending = False
        self._preload_pending = False
        self._queued_propose = None
        self._updating = False  # True while this widget writes layers/controls itself
        self._painted: set[str] = set()  # emotions painted since the session last read them
        self._close_guard = None
        self.last_export = None
        self.last_error: str | None = None
        #: the last fine-tuning run that finished (:class:`napari_emosem._qt.tasks.Trained`)
        self.last_finetune = None
        #: further :class:`~napari_emosem.training.TrainConfig` fields for Fine-tune (batch_size,
        #: seed, patience, validate_explanations, ...); the Epochs box sets ``epochs``
        self.train_options: dict[str, Any] = {}
        from ._qt.spares import SparePool

        #: hidden Labels layers made ahead, so that proposals show without napari's layer creation
        self._spares = SparePool(napari_viewer)
        self._spare_timer = QTimer(self)
        self._spare_timer.setSingleShot(True)
        self._spare_timer.setInterval(SPARE_DELAY_MS)
        self._spare_timer.timeout.connect(self._top_up_spares)

        self._build_ui()
        self._connect_viewer()
        self._refresh_paintings()

        self._autosave_timer = QTimer(self)
        self._autosave_timer.setInterval(AUTOSAVE_TICK_MS)
        self._autosave_timer.timeout.connect(self.autosave_now)
        self._autosave_timer.start()
        self._refine_timer = QTimer(self)
        self._refine_timer.setSingleShot(True)
        self._refine_timer.setInterval(REFINE_DELAY_MS)
        self._refine_timer.timeout.connect(self._refine_from_clicks)
        QTimer.singleShot(0, self.preload)
        QTimer.singleShot(0, self._guard_close)  # napari docks the widget right after creating it

    def preload(self) -> None:
        """Load the chosen model in a worker now (when the annotator opens or the model changes).

        Threaded mode only: tests that run synchronously load on first use.
        """
        if self.synchronous:
            return
        if self._starting or (self._job is not None and self._job.running):
            self._preload_pending = True
            return
        from ._qt.tasks import load_task

        self._start(
            "load model",
            load_task,
            self._holder,
            self.model_spec,
            self.device_combo.currentText(),
            steps=1,
            context=dict(kind="load"),
        )

    # UI ---------------------------------------------------------------------------------------

    def _build_ui(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)

        form = QFormLayout()
        self.painting_combo = QComboBox()
        self.painting_combo.setToolTip("The Image layer to annotate")
        self.painting_combo.currentIndexChanged.connect(self._on_painting_combo)
        form.addRow("Painting", self.painting_combo)

        model_row = QHBoxLayout()
        self.model_combo = QComboBox()
        self.model_combo.setEditable(True)
        self.model_combo.setToolTip(
            "starter: cold-start drafts (no learned weights); tiny / vit_b / vit_l / vit_h: EmoSEM presets; "
            "or a fine-tuned checkpoint folder"
        )
        self.model_combo.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self._fill_models()
        self.model_combo.currentIndexChanged.connect(self._on_model_changed)
        self.model_combo.lineEdit().editingFinished.connect(self._on_model_changed)
        browse_model = QPushButton("Browse…")
        browse_model.setToolTip("Choose a checkpoint folder")
        browse_model.clicked.connect(self._browse_checkpoint)
        model_row.addWidget(self.model_combo)
        model_row.addWidget(browse_model)
        form.addRow("Model", model_row)

        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        device = self.settings.device if self.settings.device in DEVICES else "auto"
        self.device_combo.setCurrentText(device)
        self.device_combo.currentTextChanged.connect(self._on_device_changed)
        form.addRow("Device", self.device_combo)
        layout.addLayout(form)

        self.restore_banner = QFrame()
        self.restore_banner.setFrameShape(QFrame.StyledPanel)
        banner = QHBoxLayout(self.restore_banner)
        banner.setContentsMargins(4, 2, 4, 2)
        self.restore_label = QLabel()
        self.restore_label.setWordWrap(True)
        self.restore_button = QPushButton("Restore")
        self.restore_button.clicked.connect(self.restore_autosave)
        self.discard_button = QPushButton("Discard")
        self.discard_button.clicked.connect(self.discard_autosave)
        banner.addWidget(self.restore_label, 1)
        banner.addWidget(self.restore_button)
        banner.addWidget(self.discard_button)
        self.restore_banner.hide()
        layout.addWidget(self.restore_banner)

        self.table = QTableWidget(len(EMOTIONS), 4)
        self.table.setHorizontalHeaderLabels(["Emotion", "Status", "Score", "By"])
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(_COL_EMOTION, QHeaderView.Stretch)
        for col in (_COL_STATUS, _COL_SCORE, _COL_BY):
            header.setSectionResizeMode(col, QHeaderView.ResizeToContents)
        for row, emotion in enumerate(EMOTIONS):
            item = QTableWidgetItem(emotion)
            item.setFlags(Qt.ItemIsEnabled | Qt.ItemIsSelectable | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked)
            pixmap = QPixmap(12, 12)
            pixmap.fill(QColor(EMOTION_COLORS[emotion]))
            item.setIcon(QIcon(pixmap))
            item.setToolTip("Tick to include this emotion in Propose; select the row to edit it")
            self.table.setItem(row, _COL_EMOTION, item)
            for col in (_COL_STATUS, _COL_SCORE, _COL_BY):
                self.table.setItem(row, col, QTableWidgetItem(""))
        self.table.setMinimumHeight(self.table.verticalHeader().length() + header.height() + 6)
        self.table.itemSelectionChanged.connect(self._on_table_selection)
        layout.addWidget(self.table)

        run_row = QHBoxLayout()
        all_button = QPushButton("All")
        all_button.clicked.connect(lambda: self.set_emotions(EMOTIONS))
        none_button = QPushButton("None")
        none_button.clicked.connect(lambda: self.set_emotions(()))
        self.propose_button = QPushButton("Propose")
        self.propose_button.setToolTip("Propose a mask and an explanation draft for each ticked emotion")
        self.propose_button.clicked.connect(lambda: self.propose())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        run_row.addWidget(all_button)
        run_row.addWidget(none_button)
        run_row.addStretch(1)
        run_row.addWidget(self.propose_button)
        run_row.addWidget(self.cancel_button)
        layout.addLayout(run_row)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.hide()
        layout.addWidget(self.progress)

        self.emotion_box = QGroupBox("Selected emotion")
        box = QVBoxLayout(self.emotion_box)
        self.selected_label = QLabel("Select an emotion in the table or its layer")
        self.selected_label.setWordWrap(True)
        box.addWidget(self.selected_label)
        self.explanation_edit = QPlainTextEdit()
        self.explanation_edit.setPlaceholderText("Why does this region evoke the emotion?")
        self.explanation_edit.setFixedHeight(72)
        self.explanation_edit.textChanged.connect(self._on_text_changed)
        box.addWidget(self.explanation_edit)
        decide = QHBoxLayout()
        self.accept_button = QPushButton("Accept")
        self.accept_button.clicked.connect(lambda: self.decide(Status.ACCEPTED))
        self.reject_button = QPushButton("Reject")
        self.reject_button.clicked.connect(lambda: self.decide(Status.REJECTED))
        self.no_stimulus_button = QPushButton("No stimulus")
        self.no_stimulus_button.setToolTip("This emotion has no stimulus in this painting (clears the mask)")
        self.no_stimulus_button.clicked.connect(lambda: self.decide(Status.NO_STIMULUS))
        self.draft_button = QPushButton("Draft text")
        self.draft_button.setToolTip("Ask the model for a new explanation of the current mask")
        self.draft_button.clicked.connect(lambda: self.draft_explanation())
        for button in (self.accept_button, self.reject_button, self.no_stimulus_button, self.draft_button):
            decide.addWidget(button)
        box.addLayout(decide)
        clicks = QGridLayout()
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
        self.inside_radio.toggled.connect(self._on_click_kind)
        clear = QPushButton("Clear clicks")
        clear.clicked.connect(self.clear_clicks)
        clicks.addWidget(self.click_button, 0, 0)
        clicks.addWidget(self.inside_radio, 0, 1)
        clicks.addWidget(self.outside_radio, 0, 2)
        clicks.addWidget(clear, 0, 3)
        box.addLayout(clicks)
        layout.addWidget(self.emotion_box)

        export_box = QGroupBox("Dataset")
        export_layout = QHBoxLayout(export_box)
        self.dataset_edit = QLineEdit(self.settings.dataset_folder)
        self.dataset_edit.setPlaceholderText("dataset folder (created if needed)")
        browse_dataset = QPushButton("Browse…")
        browse_dataset.clicked.connect(self._browse_dataset)
        self.export_button = QPushButton("Export")
        self.export_button.setToolTip("Write this painting and its annotations into the dataset (again: update)")
        self.export_button.clicked.connect(lambda: self.export())
        self.open_button = QPushButton("Open…")
        self.open_button.setToolTip("Open one of the dataset's paintings with its annotations")
        self.open_button.clicked.connect(lambda: self.open_from_dataset())
        export_layout.addWidget(self.dataset_edit, 1)
        export_layout.addWidget(browse_dataset)
        export_layout.addWidget(self.open_button)
        export_layout.addWidget(self.export_button)
        layout.addWidget(export_box)
        layout.addWidget(self._build_finetune_box())

        self.status_label = QLabel("Open a painting to begin.")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.status_label)
        layout.addStretch(1)
        self._update_controls()

    def _build_finetune_box(self) -> QGroupBox:
        box = QGroupBox("Fine-tune")
        box.setToolTip(
            "Train the model on the dataset above (and any others listed here); the new checkpoint "
            "goes to your user data folder and becomes the model"
        )
        grid = QGridLayout(box)
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
        self.base_combo.setToolTip(
            "What training starts from: the current model (a checkpoint keeps improving), or a fresh "
            "preset (tiny trains in minutes on a CPU; vit_b needs SAM's ViT-B weights and a GPU to be quick)"
        )
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 500)
        self.epochs_spin.setValue(FINETUNE_EPOCHS)
        self.epochs_spin.setToolTip("At most this many passes over the data (stops early when validation stops improving)")
        self.finetune_button = QPushButton("Fine-tune")
        self.finetune_button.setToolTip("Train on the exported annotations in the background")
        self.finetune_button.clicked.connect(lambda: self.fine_tune())
        self.finetune_cancel_button = QPushButton("Cancel")
        self.finetune_cancel_button.setToolTip("Stop after the current step (finished epochs are kept)")
        self.finetune_cancel_button.clicked.connect(self.cancel)
        self.finetune_label = QLabel()
        self.finetune_label.setWordWrap(True)
        self.finetune_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.finetune_label.hide()
        grid.addWidget(self.extra_datasets, 0, 1, 1, 3)
        grid.addWidget(QLabel("Also on"), 1, 0)
        grid.addWidget(add_dataset, 1, 1)
        grid.addWidget(self.remove_dataset_button, 1, 2, 1, 2)
        grid.addWidget(QLabel("From"), 2, 0)
        grid.addWidget(self.base_combo, 2, 1, 1, 3)
        grid.addWidget(QLabel("Epochs"), 3, 0)
        grid.addWidget(self.epochs_spin, 3, 1)
        grid.addWidget(self.finetune_button, 3, 2)
        grid.addWidget(self.finetune_cancel_button, 3, 3)
        grid.addWidget(self.finetune_label, 4, 0, 1, 4)
        grid.setColumnStretch(1, 1)
        self._fill_bases()
        return box

    def _fill_models(self, select: str | None = None) -> None:
        """List the presets and the user's checkpoints (newest first) and select a model.

        ``select`` (e.g. the model in use, when the list is refreshed after training) wins;
        otherwise the remembered choice, else the newest fine-tuned checkpoint, else starter.
        """
        from ._qt.checkpoints import choice_label
        from .checkpoint import list_checkpoints

        self._updating = True
        try:
            self.model_combo.clear()
            try:
                checkpoints = list_checkpoints()
            except (OSError, EmoSEMError):
                checkpoints = []
            for info in checkpoints:
                self.model_combo.addItem(choice_label(info), str(info.path))
                self.model_combo.setItemData(self.model_combo.count() - 1, f"{info.label}\n{info.path}", Qt.ToolTipRole)
            for preset in MODEL_PRESETS:
                self.model_combo.addItem(preset, preset)
            wanted = (select or self.settings.model or "").strip()
            if wanted and wanted not in MODEL_PRESETS and not Path(wanted).expanduser().exists():
                wanted = ""  # a remembered checkpoint that was deleted since: fall back
            if wanted:
                self._select_model(wanted)
            elif checkpoints:
                self.model_combo.setCurrentIndex(0)  # the newest fine-tuned checkpoint
            else:
                self.model_combo.setCurrentIndex(self.model_combo.findData("starter"))
        finally:
            self._updating = False
        self.model_combo.lineEdit().setCursorPosition(0)  # a long entry shows its start

    def _select_model(self, spec: str) -> None:
        index = self.model_combo.findData(spec)
        if index < 0 and spec not in MODEL_PRESETS:
            # the same folder written another way (relative, "~", a run folder for its best/)
            from .checkpoint import resolve_checkpoint_dir

            target = resolve_checkpoint_dir(spec).resolve()
            for i in range(self.model_combo.count()):
                data = self.model_combo.itemData(i)
                if data not in MODEL_PRESETS and Path(str(data)).expanduser().resolve() == target:
                    index = i
                    break
        if index < 0:
            self.model_combo.addItem(spec, spec)
            index = self.model_combo.count() - 1
        self.model_combo.setCurrentIndex(index)

    def _fill_bases(self) -> None:
        """Offer the current model as the base when it is trainable, then the fresh presets."""
        spec = self.model_spec
        self.base_combo.clear()
        if spec != "starter":
            from .checkpoint import read_checkpoint

            try:
                what = f"checkpoint v{read_checkpoint(spec).version}" if spec not in MODEL_PRESETS else spec
            except EmoSEMError:
                what = Path(spec).name  # not readable: training will say why
            self.base_combo.addItem(f"current model ({what})", spec)
            self.base_combo.setItemData(0, self.model_combo.currentText(), Qt.ToolTipRole)
        for preset in FINETUNE_BASES:
            if preset != spec:
                self.base_combo.addItem(f"fresh {preset}", preset)
        self.base_combo.setCurrentIndex(0)

    # Viewer events ----------------------------------------------------------------------------

    def _connect_viewer(self) -> None:
        layers = self.viewer.layers
        layers.events.inserted.connect(self._on_layer_inserted)
        layers.events.removed.connect(self._on_layer_removed)
        layers.selection.events.active.connect(self._on_active_layer)

    def _image_layers(self) -> list:
        from napari.layers import Image

        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def _refresh_paintings(self) -> None:
        current = self._image_layer
        self._updating = True
        try:
            self.painting_combo.clear()
            for layer in self._image_layers():
                self.painting_combo.addItem(layer.name, id(layer))
            if current is not None and self.painting_combo.findData(id(current)) >= 0:
                self.painting_combo.setCurrentIndex(self.painting_combo.findData(id(current)))
        finally:
            self._updating = False
        if current is None or self.painting_combo.findData(id(current)) < 0:
            layers = self._image_layers()
            self.set_painting(layers[-1] if layers else None)

    def _on_layer_inserted(self, event) -> None:
        from napari.layers import Image, Labels

        layer = event.value
        if isinstance(layer, Image):
            layer.events.name.connect(self._on_image_renamed)
            if self._image_layer is None:
                self._refresh_paintings()
            else:
                self._updating = True
                try:
                    self.painting_combo.addItem(layer.name, id(layer))
                finally:
                    self._updating = False
        elif isinstance(layer, Labels) and self.session is not None:
            self._adopt(layer)

    def _on_layer_removed(self, event) -> None:
        layer = event.value
        if self._spares.forget(layer):
            return
        if layer is self._clicks_layer:
            self._clicks_layer = None
            self.click_button.setChecked(False)
            return
        for emotion, (bound, _) in list(self._bound.items()):
            if bound is layer:
                self._unbind(emotion)
                if self.session is not None and not self._updating:
                    # deleting a stimulus layer discards that emotion, unless the whole painting
                    # is being closed (its image goes too): decided once the removals are over
                    QTimer.singleShot(
                        0, functools.partial(self._forget_if_open, self._image_layer, self.session, emotion)
                    )
        if id(layer) in self._sessions:
            _, session = self._sessions.pop(id(layer))
            session.autosave(force=True)  # unexported work stays restorable
            if layer is self._image_layer:
                self._image_layer = None
                for emotion in list(self._bound):
                    self._unbind(emotion)
        self._refresh_paintings()

    def _forget_if_open(self, image_layer, session: AnnotationSession, emotion: str) -> None:
        if image_layer in self.viewer.layers and self._sessions.get(id(image_layer), (None, None))[1] is session:
            if emotion not in self._bound or session is not self.session:
                session.remove(emotion)
                if session is self.session:
                    self._refresh_row(emotion)
                    self._show_text()

    def _on_image_renamed(self, event=None) -> None:
        self._refresh_paintings()

    def _on_active_layer(self, event=None) -> None:
        if self._updating:
            return
        from napari.layers import Image

        layer = self.viewer.layers.selection.active
        if layer is None or layer is self._clicks_layer:
            return
        for emotion, (bound, _) in self._bound.items():
            if bound is layer:
                if emotion != self._selected:
                    self.select_emotion(emotion, activate_layer=False)
                return
        if isinstance(layer, Image) and layer is not self._image_layer and not self._painting_locked:
            self.set_painting(layer)

    # Painting and session ---------------------------------------------------------------------

    @property
    def session(self) -> AnnotationSession | None:
        """The annotation of the current painting."""
        if self._image_layer is None:
            return None
        entry = self._sessions.get(id(self._image_layer))
        return entry[1] if entry else None

    @property
    def painting_layer(self):
        return self._image_layer

    def _on_painting_combo(self, index: int) -> None:
        if self._updating or index < 0:
            return
        wanted = self.painting_combo.itemData(index)
        for layer in self._image_layers():
            if id(layer) == wanted:
                self.set_painting(layer)
                return

    def set_painting(self, layer) -> AnnotationSession | None:
        """Annotate the painting in Image ``layer`` (None: no painting)."""
        if layer is self._image_layer and (layer is None or self.session is not None):
            return self.session
        self._flush_paint()
        self._guard_close()  # edits may follow: closing should ask about them
        for emotion in list(self._bound):
            self._unbind(emotion)
        self._set_clicks_for(None)
        self._image_layer = layer
        self._selected = None
        self.restore_banner.hide()
        if layer is not None and self._clicks_layer is not None:
            # clicks are in this painting's pixels
            self._clicks_layer.scale = tuple(layer.scale[-2:])
            self._clicks_layer.translate = tuple(layer.translate[-2:])
        if layer is not None:
            self._updating = True
            try:
                self.painting_combo.setCurrentIndex(self.painting_combo.findData(id(layer)))
            finally:
                self._updating = False
            if id(layer) not in self._sessions:
                try:
                    self._sessions[id(layer)] = (layer, self._new_session(layer))
                except EmoSEMError as exc:
                    self._image_layer = None
                    self._error(f"{layer.name}: {exc}")
                    self._refresh_table()
                    return None
            session = self.session
            for other in list(self.viewer.layers):
                self._adopt(other, initial=True)
            self._offer_restore(session)
            self._status(f"{layer.name}: {session.describe()}")
            self._spare_timer.start()
        self._refresh_table()
        self._update_controls()
        return self.session

    def _new_session(self, layer) -> AnnotationSession:
        data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
        rgb = to_rgb_uint8(np.asarray(data), layer.name)
        meta = (layer.metadata or {}).get(METADATA_KEY) or {}
        source_path = meta.get("source_path") or getattr(getattr(layer, "source", None), "path", None)
        file_name = meta.get("file_name")
        if not file_name:
            file_name = Path(source_path).name if source_path else f"{_safe_name(layer.name)}.png"
        session = AnnotationSession(
            rgb,
            file_name=file_name,
            source_path=source_path,
            annotator=(self.settings.annotator or None),
            metadata=meta.get("metadata") or None,
            autosave_interval=self.settings.autosave_seconds,
        )
        session.passthrough = [dict(record) for record in meta.get("passthrough") or []]
        if meta.get("dataset"):
            session.exported_to = Path(meta["dataset"])
            if not self.dataset_edit.text().strip():
                self.dataset_edit.setText(str(meta["dataset"]))
        return session

    def _adopt(self, layer, *, initial: bool = False) -> None:
        """Bind a Labels layer of the current painting ("<emotion> stimulus") to its emotion."""
        from napari.layers import Labels

        from ._qt.layers import painting_of

        session = self.session
        if session is None or not isinstance(layer, Labels) or layer.ndim != 2:
            return
        if any(bound is layer for bound, _ in self._bound.values()):
            return
        emotion = emotion_of_layer(layer.name, layer.metadata)
        if emotion is None or emotion in self._bound:
            return
        owner = painting_of(layer)
        if owner is not None and owner != session.digest:
            return  # another painting's layer
        if tuple(layer.data.shape) != session.shape:
            return
        if owner == session.digest and emotion in session:
            pass  # this session's own layer, coming back (e.g. after switching paintings)
        elif owner == session.digest or (METADATA_KEY in (layer.metadata or {})):
            item = annotation_from_layer(layer.name, layer.data, layer.metadata, session.shape)
            session.items[emotion] = item  # loaded as it was saved: not a change
        else:
            session.set_mask(emotion, np.asarray(layer.data))  # a layer the annotator made
        self._bind(emotion, layer)
        self._sync_layer_metadata(emotion)
        if not initial:
            self._refresh_row(emotion)

    def _bind(self, emotion: str, layer) -> None:
        if emotion in self._bound:
            if self._bound[emotion][0] is layer:
                return
            self._unbind(emotion)
        callbacks = [
            (layer.events.paint, functools.partial(self._on_paint, emotion)),
            (layer.events.data, functools.partial(self._on_paint, emotion)),
        ]
        for emitter, callback in callbacks:
            emitter.connect(callback)
        self._bound[emotion] = (layer, callbacks)

    def _unbind(self, emotion: str) -> None:
        layer, callbacks = self._bound.pop(emotion, (None, []))
        for emitter, callback in callbacks:
            try:
                emitter.disconnect(callback)
            except (TypeError, ValueError, RuntimeError):
                pass

    def stimulus_layer(self, emotion: str):
        """The Labels layer of ``emotion`` for the current painting (None if there is none)."""
        entry = self._bound.get(emotion)
        return entry[0] if entry else None

    def _show(self, emotion: str, *, activate: bool = False, reveal: bool = True):
        """Make the layer of ``emotion`` show the session's mask (creating the layer if needed).

        ``reveal=False``: a spare layer it fills stays hidden and is returned, for the caller to
        show on the next event-loop turn (see :meth:`_show_next_mask`); otherwise None.
        """
        from ._qt.layers import OPACITY, REJECTED_OPACITY, mask_to_labels, stimulus_layer_kwargs

        session = self.session
        item = session.get(emotion) if session else None
        if item is None:
            return None
        layer = self.stimulus_layer(emotion)
        hidden = None
        self._updating = True
        try:
            if layer is None:
                from ._qt.spares import dress

                kwargs = stimulus_layer_kwargs(item, painting=session.digest, image_layer=self._image_layer)
                layer = self._spares.take()
                if layer is not None:  # a few times quicker than napari making a new layer
                    dress(
                        layer,
                        mask_to_labels(item.mask),
                        kwargs,
                        layers=self.viewer.layers,
                        above=self._image_layer,
                        reveal=reveal,
                    )
                    hidden = None if reveal else layer
                else:
                    layer = self.viewer.add_labels(mask_to_labels(item.mask), **kwargs)
                    layer.selected_label = 1  # paint draws the stimulus, erase (0) removes it
                self._bind(emotion, layer)
            else:
                # only real changes: each one repaints the canvas (slow with software OpenGL)
                if not np.array_equal(np.asarray(layer.data) > 0, item.mask):
                    layer.data = mask_to_labels(item.mask)
                # rejected proposals are shown faint; otherwise the annotator's own opacity stays
                rejected = item.status == Status.REJECTED
                if rejected and not np.isclose(layer.opacity, REJECTED_OPACITY):
                    layer.opacity = REJECTED_OPACITY
                elif not rejected and np.isclose(layer.opacity, REJECTED_OPACITY):
                    layer.opacity = OPACITY
            layer.metadata = {**(layer.metadata or {}), **layer_metadata(item, painting=session.digest)}
            if activate:
                self.viewer.layers.selection.active = layer
        finally:
            self._updating = False
        self._refresh_row(emotion)
        return hidden

    def _spares_wanted(self) -> int:
        """Spare layers the next Propose could use: ticked emotions of this painting with no layer."""
        if self.session is None:
            return 0
        return sum(1 for e in self.checked_emotions() if e not in self._bound)

    def _top_up_spares(self) -> None:
        """Make one spare layer if the next Propose would need it, then come back for the next.

        Never while the model proposes or refines (its masks are about to use them): the timer
        is started again when that job ends.
        """
        if self.busy and self._job_context.get("kind") in ("propose", "refine", "explain"):
            return
        if self._spares_wanted() <= len(self._spares):
            return
        image = self._image_layer
        self._updating = True
        try:
            self._spares.make_one(
                scale=image.scale[-2:] if image is not None else None,
                translate=image.translate[-2:] if image is not None else None,
            )
        finally:
            self._updating = False
        if self._spares_wanted() > len(self._spares):
            self._spare_timer.start()

    def _sync_layer_metadata(self, emotion: str) -> None:
        layer, session = self.stimulus_layer(emotion), self.session
        if layer is None or session is None or emotion not in session:
            return
        layer.metadata = {**(layer.metadata or {}), **layer_metadata(session[emotion], painting=session.digest)}

    def _on_paint(self, emotion: str, event=None) -> None:
        # napari emits ``paint`` before it writes the new values into the array, so the mask is
        # read a moment later (coalescing a burst of strokes), or at once by _flush_paint.
        if self._updating or self.session is None:
            return
        if not self._painted:
            QTimer.singleShot(0, self._flush_paint)
        self._painted.add(emotion)

    def _flush_paint(self) -> None:
        """Store the masks the annotator painted since the last flush into the session."""
        painted, self._painted = self._painted, set()
        session = self.session
        if session is None:
            return
        for emotion in sorted(painted):
            layer = self.stimulus_layer(emotion)
            if layer is None:
                continue
            try:
                session.set_mask(emotion, np.asarray(layer.data))
            except EmoSEMError as exc:
                self._error(str(exc))
                continue
            self._sync_layer_metadata(emotion)
            self._refresh_row(emotion)
        if painted and self._selected in painted:
            self._show_text()

    # Autosave and restore ---------------------------------------------------------------------

    def _offer_restore(self, session: AnnotationSession) -> None:
        try:
            info = AnnotationSession.autosave_info(session.digest)
        except EmoSEMError as exc:
            self._error(str(exc))
            return
        if info is None or session.dirty:
            self.restore_banner.hide()
            return
        when = info.saved_at.replace("T", " ")[:16]
        what = ", ".join(info.emotions) if info.emotions else "no emotions"
        self.restore_label.setText(f"Unexported work on this painting was autosaved ({when} UTC: {what}).")
        self.restore_banner.show()

    def restore_autosave(self) -> AnnotationSession | None:
        """Replace the current painting's annotation by its autosave."""
        layer = self._image_layer
        if layer is None:
            return None
        old = self.session
        try:
            restored = AnnotationSession.restore(
                old.image,
                annotator=old.annotator,
                autosave_interval=old.autosave_interval,
            )
        except EmoSEMError as exc:
            self._error(str(exc))
            return None
        self.restore_banner.hide()
        if restored is None:
            self._status("there is no autosave for this painting any more")
            return None
        if not restored.passthrough:
            restored.passthrough = old.passthrough
        if restored.exported_to is None:
            restored.exported_to = old.exported_to
        self._sessions[id(layer)] = (layer, restored)
        for emotion in list(self._bound):
            if emotion not in restored:
                stale, _ = self._bound[emotion]
                self._unbind(emotion)
                self._updating = True
                try:
                    self.viewer.layers.remove(stale)
                finally:
                    self._updating = False
        for emotion in restored.emotions():
            self._show(emotion)
        self._refresh_table()
        self._status(f"restored the autosave: {restored.describe()}")
        return restored

    def discard_autosave(self) -> None:
        """Delete the current painting's autosave (keeps what is on screen)."""
        session = self.session
        if session is not None:
            session.discard_autosave()
        self.restore_banner.hide()
        self._status("autosave discarded")

    def autosave_now(self, *, force: bool = False) -> None:
        """Autosave every painting with unexported edits (the timer calls this)."""
        self._flush_paint()
        for _, session in list(self._sessions.values()):
            try:
                session.autosave(force=force)
            except (OSError, EmoSEMError) as exc:
                self._error(f"autosave failed: {exc}")

    # Emotions, decisions, text ----------------------------------------------------------------

    def set_emotions(self, emotions) -> None:
        """Tick exactly ``emotions`` for the next Propose."""
        wanted = set(emotions)
        for row, emotion in enumerate(EMOTIONS):
            self.table.item(row, _COL_EMOTION).setCheckState(Qt.Checked if emotion in wanted else Qt.Unchecked)

    def checked_emotions(self) -> list[str]:
        return [e for row, e in enumerate(EMOTIONS) if self.table.item(row, _COL_EMOTION).checkState() == Qt.Checked]

    @property
    def selected_emotion(self) -> str | None:
        return self._selected

    def _on_table_selection(self) -> None:
        if self._updating:
            return
        rows = {index.row() for index in self.table.selectedIndexes()}
        if rows:
            self.select_emotion(EMOTIONS[min(rows)])

    def select_emotion(self, emotion: str, *, activate_layer: bool = True) -> None:
        """Make ``emotion`` the one the text box, decisions and clicks apply to."""
        if emotion not in EMOTIONS:
            raise EmoSEMError(f"unknown emotion {emotion!r}")
        previous = self._selected
        self._selected = emotion
        self._updating = True
        try:
            self.table.selectRow(EMOTIONS.index(emotion))
        finally:
            self._updating = False
        if activate_layer and self.stimulus_layer(emotion) is not None:
            self._updating = True
            try:
                self.viewer.layers.selection.active = self.stimulus_layer(emotion)
            finally:
                self._updating = False
        if previous != emotion:
            self._set_clicks_for(emotion)
        self._show_text()
        self._update_controls()

    def _show_text(self) -> None:
        session, emotion = self.session, self._selected
        item = session.get(emotion) if (session and emotion) else None
        self._updating = True
        try:
            self.explanation_edit.setPlainText(item.explanation if item else "")
        finally:
            self._updating = False
        if emotion is None:
            self.selected_label.setText("Select an emotion in the table or its layer")
            return
        if item is None:
            self.selected_label.setText(f"<b>{emotion}</b>: not annotated — propose it, or paint on a new layer")
            return
        who = f"proposed by {item.model or item.source}" if item.from_model else "drawn by you"
        edited = " · edited by you" if item.edited else ""
        score = f" · score {item.score:.2f}" if item.score is not None else ""
        self.selected_label.setText(f"<b>{emotion}</b> ({item.status.value}) — {who}{edited}{score}")

    def _on_text_changed(self) -> None:
        if self._updating or self.session is None or self._selected is None:
            return
        emotion = self._selected
        self.session.set_explanation(emotion, self.explanation_edit.toPlainText())
        if self.stimulus_layer(emotion) is None:
            # text first, mask later: give the annotator a layer to paint on
            self._show(emotion)
        self._sync_layer_metadata(emotion)
        self._refresh_row(emotion)

    def set_explanation(self, text: str, emotion: str | None = None) -> None:
        """Type ``text`` as ``emotion``'s explanation (as the annotator would in the text box)."""
        if emotion is not None:
            self.select_emotion(emotion)
        self.explanation_edit.setPlainText(text)

    def decide(self, status: Status, emotion: str | None = None) -> None:
        """Accept, reject or mark "no stimulus" (pressing the current decision again undoes it)."""
        self._flush_paint()
        session = self._require_session()
        emotion = emotion or self._selected
        if session is None or emotion is None:
            return
        status = Status(status)
        if emotion not in session and status != Status.NO_STIMULUS:
            self._error(f"{emotion} is not annotated yet: propose it or paint it first")
            return
        item = session.get(emotion)
        if item is not None and item.status == status:
            session.reopen(emotion)
        elif status == Status.ACCEPTED:
            session.accept(emotion)
        elif status == Status.REJECTED:
            session.reject(emotion)
        else:
            session.mark_no_stimulus(emotion)
        self._show(emotion)
        self._show_text()
        self._status(f"{emotion}: {session[emotion].status.value}")

    def accept(self, emotion: str | None = None) -> None:
        self.decide(Status.ACCEPTED, emotion)

    def reject(self, emotion: str | None = None) -> None:
        self.decide(Status.REJECTED, emotion)

    def mark_no_stimulus(self, emotion: str | None = None) -> None:
        self.decide(Status.NO_STIMULUS, emotion)

    # Model ------------------------------------------------------------------------------------

    @property
    def model_spec(self) -> str:
        data = self.model_combo.currentData()
        text = self.model_combo.currentText().strip()
        if data is not None and self.model_combo.itemText(self.model_combo.currentIndex()) == text:
            return str(data)
        return text or "starter"

    def set_model(self, spec: str) -> None:
        """Use ``spec`` (a preset or a checkpoint folder) for the next proposals."""
        self._select_model(str(spec))
        self._on_model_changed()

    def set_device(self, device: str) -> None:
        self.device_combo.setCurrentText(device)

    def _on_model_changed(self, *_: Any) -> None:
        if self._updating:
            return
        spec = self.model_spec
        self.settings.model = spec  # an explicit choice (even "starter") wins over the newest checkpoint
        self.model_combo.lineEdit().setCursorPosition(0)
        self._fill_bases()
        self._status(f"model: {self.model_combo.currentText()}")
        self.preload()

    def _on_device_changed(self, device: str) -> None:
        self.settings.device = device
        if not self._updating:
            self.preload()

    def _browse_checkpoint(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose an EmoSEM checkpoint folder")
        if not folder:
            return
        from .checkpoint import read_checkpoint

        try:
            info = read_checkpoint(folder)
        except EmoSEMError as exc:
            self._error(str(exc))
            return
        self._updating = True
        try:
            self.model_combo.addItem(f"checkpoint {info.label}", str(info.path))
            self.model_combo.setCurrentIndex(self.model_combo.count() - 1)
        finally:
            self._updating = False
        self._on_model_changed()

    # Jobs -------------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while a task runs or starts (or a proposal waits for the model to load)."""
        return (
            self._starting
            or (self._job is not None and self._job.running)
            or self._queued_propose is not None
        )

    @property
    def _painting_locked(self) -> bool:
        # a task working on the current painting keeps it; training reads the datasets on disk,
        # so annotating another painting meanwhile is fine
        return self.busy and self._job_context.get("kind") != "finetune"

    def _require_session(self) -> AnnotationSession | None:
        if self.session is None:
            self._error("open a painting (an Image layer) first")
        return self.session

    def _start(self, name: str, task, *args, steps: int | None, context: dict[str, Any]):
        """Run ``task`` as this widget's job; ``steps=None``: the step handler drives the bars."""
        from ._qt.jobs import start_job

        self._guard_close()  # a worker must be stopped before the window goes

        self._job_context = dict(context, started=time.perf_counter(), name=name)
        self.progress.setRange(0, max(steps or 0, 0))
        self.progress.setValue(0)
        self.progress.setFormat(f"{name}: %v/%m")
        self.progress.show()
        self._job = None
        # napari may run queued events while it sets up the worker and its progress bar (a
        # preload timer, say): they must see this widget busy, not start a task of their own
        self._starting = True
        try:
            job = start_job(
                f"EmoSEM: {name}",
                task,
                *args,
                on_yield=self._on_step,
                on_return=self._on_done,
                on_error=self._on_job_error,
                on_finish=self._on_finish,
                steps=steps,
                synchronous=self.synchronous,
            )
        finally:
            self._starting = False
        if job.running:
            self._job = job
        self._update_controls()
        return job

    def propose(self, emotions=None, *, replace_protected: bool | None = None, explain: bool = True):
        """Propose masks and explanation drafts for ``emotions`` (default: the ticked ones).

        Emotions the annotator edited or decided are kept unless ``replace_protected``; None asks.
        Returns the job (already finished when synchronous), or None if nothing was started.
        """
        self._flush_paint()
        session = self._require_session()
        if session is None:
            return None
        if self.busy and self._job_context.get("kind") != "load":
            self._status("busy: wait for the running task or cancel it")
            return None
        emotions = list(emotions) if emotions is not None else self.checked_emotions()
        if not emotions:
            self._error("tick at least one emotion to propose")
            return None
        protected = session.protected(emotions)
        if protected and replace_protected is None:
            from ._qt.dialogs import ask

            choice = ask(
                self,
                "Replace your work?",
                f"You edited or decided: {', '.join(protected)}.\nReplace them with new proposals?",
                ["Keep mine", "Replace", "Cancel"],
                default="Keep mine",
            )
            if choice == "Cancel":
                return None
            replace_protected = choice == "Replace"
        if self.busy:  # the model is still loading: propose as soon as it is ready
            self._queued_propose = (emotions, bool(replace_protected), explain)
            self._status("the model is loading; proposing as soon as it is ready…")
            return None
        from ._qt.tasks import propose_task

        # threaded: the worker waits for the masks to be on screen before drafting (see _on_step)
        masks_shown = None if self.synchronous else threading.Event()
        return self._start(
            "propose",
            functools.partial(propose_task, explain=explain, masks_shown=masks_shown),
            self._holder,
            self.model_spec,
            self.device_combo.currentText(),
            session.image,
            session.digest,
            emotions,
            steps=3 + (len(emotions) if explain else 0),
            context=dict(
                kind="propose", session=session, replace=bool(replace_protected), applied=[], masks_shown=masks_shown
            ),
        )

    def refine(self, emotion: str | None = None):
        """Re-decode ``emotion``'s mask (default: the selected one) with its clicks."""
        self._flush_paint()
        session = self._require_session()
        emotion = emotion or self._selected
        if session is None or emotion is None:
            return None
        if self.busy:
            self._refine_pending = True
            return None
        item = session.get(emotion)
        points, labels = self._current_clicks()
        if item is not None and self._clicks_layer is None:
            points, labels = item.clicks, item.click_labels
        if len(points) == 0:
            self._status("add a click on the painting first (green: inside, red: outside)")
            return None
        from ._qt.tasks import refine_task

        return self._start(
            "refine",
            refine_task,
            self._holder,
            self.model_spec,
            self.device_combo.currentText(),
            session.image,
            session.digest,
            emotion,
            np.asarray(points, np.float64),
            np.asarray(labels, np.int64),
            steps=1,
            context=dict(kind="refine", session=session, emotion=emotion, points=points, labels=labels),
        )

    def draft_explanation(self, emotion: str | None = None):
        """Ask the model for an explanation of ``emotion``'s current mask."""
        self._flush_paint()
        session = self._require_session()
        emotion = emotion or self._selected
        if session is None or emotion is None or self.busy:
            return None
        item = session.get(emotion)
        if item is None or not item.mask.any():
            self._error(f"the {emotion} mask is empty: draw the stimulus first, then draft its explanation")
            return None
        from ._qt.tasks import explain_task

        return self._start(
            "draft text",
            explain_task,
            self._holder,
            self.model_spec,
            self.device_combo.currentText(),
            session.image,
            session.digest,
            emotion,
            item.mask.copy(),
            steps=1,
            context=dict(kind="explain", session=session, emotion=emotion),
        )

    def cancel(self) -> None:
        """Stop the running task at its next step (masks already shown are kept)."""
        if self._job is not None and self._job.running:
            self._job.cancel()
            if self._job_context.get("masks_shown") is not None:
                self._job_context["masks_shown"].set()  # let a waiting worker reach its next step
            self._status("cancelling…")

    def _on_step(self, step) -> None:
        ctx = self._job_context
        if ctx.get("kind") == "finetune":
            self._on_train_step(step)
            return
        self.progress.setValue(min(self.progress.value() + 1, self.progress.maximum()))
        self._status(step.message)
        if step.kind == "loaded":
            ctx["source"], ctx["model"] = step.source, step.model
        session = ctx.get("session")
        if session is None or session is not self.session:
            return
        if step.kind == "masks":
            applied = session.apply_proposals(
                step.proposals,
                source=ctx["source"],
                model=ctx.get("model"),
                replace_protected=ctx.get("replace", False),
            )
            ctx["applied"] = applied
            self._refresh_table()
            if self.synchronous:
                for emotion in applied:
                    self._show(emotion)
                self._masks_on_screen(ctx)
            else:
                # each mask costs napari tens of ms (a few hundred when it must make the layer)
                # and a repaint: one per event-loop turn keeps the viewer taking input
                ctx["to_show"] = list(applied)
                QTimer.singleShot(MASK_SPACING_MS, functools.partial(self._show_next_mask, ctx))
        elif step.kind == "explanation" and step.emotion in ctx.get("applied", ()):
            item = session.get(step.emotion)
            if item is not None and not item.text_edited:
                session.set_explanation(step.emotion, step.text, from_model=True)
                self._sync_layer_metadata(step.emotion)
                self._refresh_row(step.emotion)
                if step.emotion == self._selected:
                    self._show_text()

    def _show_next_mask(self, ctx: dict[str, Any]) -> None:
        if ctx is not self._job_context or ctx.get("session") is not self.session:
            if ctx.get("masks_shown") is not None:
                ctx["masks_shown"].set()
            return
        pending = ctx.get("to_show") or []
        hidden = self._show(pending.pop(0), reveal=False) if pending else None
        if hidden is not None:  # a filled spare: shown on the next turn (napari's work, then a repaint)
            QTimer.singleShot(MASK_SPACING_MS, functools.partial(self._reveal, hidden, ctx))
        elif pending:
            QTimer.singleShot(MASK_SPACING_MS, functools.partial(self._show_next_mask, ctx))
        else:
            self._masks_on_screen(ctx)

    def _reveal(self, layer, ctx: dict[str, Any]) -> None:
        if layer in self.viewer.layers:  # even if the annotator moved on: it is that emotion's layer
            self._updating = True
            try:
                layer.visible = True
            finally:
                self._updating = False
        QTimer.singleShot(MASK_SPACING_MS, functools.partial(self._show_next_mask, ctx))

    def _masks_on_screen(self, ctx: dict[str, Any]) -> None:
        applied = ctx.get("applied") or []
        if applied and (self._selected is None or self._selected not in applied):
            self.select_emotion(applied[0])
        else:
            self._show_text()
        if ctx.get("masks_shown") is not None:
            ctx["masks_shown"].set()

    def _on_done(self, result) -> None:
        from ._qt.tasks import Done, Failed, Trained

        ctx = self._job_context
        if isinstance(result, Failed):
            self._error(result.message)
            return
        if not isinstance(result, (Done, Trained)):
            return
        session = ctx.get("session")
        kind = ctx.get("kind")
        if kind == "load":
            self._status(f"{result.message} (loaded in {result.seconds:.1f} s)")
            return
        if kind == "finetune":
            self._finetuned(result)
            return
        if session is None or session is not self.session:
            return
        if kind == "propose":
            session.autosave(force=True)
            kept = [p.emotion for p in result.proposals if p.emotion not in ctx.get("applied", ())]
            note = f"; kept your work on {', '.join(kept)}" if kept else ""
            self._status(f"{result.model}: {result.message} in {result.seconds:.1f} s{note}")
            self._show_text()
        elif kind == "refine":
            emotion = ctx["emotion"]
            session.apply_refinement(
                result.proposals[0],
                source=result.source,
                model=result.model,
                points=ctx.get("points"),
                labels=ctx.get("labels"),
            )
            self._show(emotion)
            self._show_text()
            self._status(f"{result.model}: {result.message} ({result.seconds * 1000:.0f} ms)")
        elif kind == "explain":
            emotion = ctx["emotion"]
            session.set_explanation(emotion, result.texts[emotion], from_model=True, model=result.model)
            self._sync_layer_metadata(emotion)
            self._refresh_row(emotion)
            if emotion == self._selected:
                self._show_text()
            self._status(f"{result.model}: {result.message}")

    def _on_job_error(self, exc: BaseException) -> None:
        # A bug, not a user error (those come back as Failed): keep the traceback in the log
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.last_error = detail
        self._error(f"{self._job_context.get('name', 'task')} failed: {type(exc).__name__}: {exc}", notify=False)

    def _on_finish(self, job) -> None:
        ctx = self._job_context
        self.progress.hide()
        if job.cancelled and ctx.get("kind") == "finetune":
            self._finetune_cancelled(ctx)
        elif job.cancelled:
            applied = ctx.get("applied", ())
            self._status(
                f"cancelled; {'kept the masks of ' + ', '.join(applied) if applied else 'nothing was changed'}"
            )
        self._job = None
        self._update_controls()
        self._spare_timer.start()
        if self._preload_pending:
            self._preload_pending = False
            self.preload()  # a queued proposal waits for this load too
        elif self._queued_propose is not None:
            emotions, replace, explain = self._queued_propose
            self._queued_propose = None
            if not job.cancelled:
                self.propose(emotions, replace_protected=replace, explain=explain)
        elif self._refine_pending:
            self._refine_pending = False
            self._refine_timer.start()

    # Clicks -----------------------------------------------------------------------------------

    def _ensure_clicks_layer(self):
        if self._clicks_layer is None:
            from ._qt.layers import CLICKS_LAYER

            kwargs: dict[str, Any] = {
                "name": CLICKS_LAYER,
                "features": {"inside": np.zeros(0, bool)},
                "size": max(6, int(0.012 * max(self.session.shape))) if self.session else 10,
                "border_color": "white",
                "border_width": 0.15,
            }
            if self._image_layer is not None:
                kwargs["scale"] = tuple(self._image_layer.scale[-2:])
                kwargs["translate"] = tuple(self._image_layer.translate[-2:])
            self._updating = True
            try:
                self._clicks_layer = self.viewer.add_points(np.zeros((0, 2)), **kwargs)
            finally:
                self._updating = False
            self._clicks_layer.events.data.connect(self._on_clicks_changed)
            self._on_click_kind()
        return self._clicks_layer

    def _on_click_mode(self, on: bool) -> None:
        if on:
            if self.session is None or self._selected is None:
                self._error("select an emotion first: clicks refine the selected emotion's mask")
                self.click_button.setChecked(False)
                return
            layer = self._ensure_clicks_layer()
            self._set_clicks_for(self._selected)
            self._updating = True
            try:
                self.viewer.layers.selection.active = layer
                layer.mode = "add"
            finally:
                self._updating = False
            self._status(f"click on the {self._selected} stimulus (green: inside) or around it (red: outside)")
        elif self._clicks_layer is not None:
            self._clicks_layer.mode = "pan_zoom"
            if self._selected and self.stimulus_layer(self._selected) is not None:
                self.viewer.layers.selection.active = self.stimulus_layer(self._selected)

    def _on_click_kind(self, *_: Any) -> None:
        from ._qt.layers import INSIDE_COLOR, OUTSIDE_COLOR

        layer = self._clicks_layer
        if layer is None:
            return
        inside = self.inside_radio.isChecked()
        layer.feature_defaults = {"inside": inside}
        layer.current_face_color = INSIDE_COLOR if inside else OUTSIDE_COLOR

    def set_click_kind(self, inside: bool) -> None:
        """New clicks mark the stimulus (True) or what is outside it (False)."""
        (self.inside_radio if inside else self.outside_radio).setChecked(True)

    def add_click(self, row: float, col: float, *, inside: bool = True) -> None:
        """Add a click at painting pixel (row, col), as a click on the canvas would."""
        self.set_click_kind(inside)
        layer = self._ensure_clicks_layer()
        # data coordinates of the clicks layer are the painting's pixels (same scale/translate)
        layer.add(np.array([[row, col]], float))

    def _current_clicks(self) -> tuple[np.ndarray, np.ndarray]:
        layer = self._clicks_layer
        if layer is None or len(layer.data) == 0:
            return np.zeros((0, 2)), np.zeros((0,), np.int64)
        inside = np.asarray(layer.features["inside"], bool) if "inside" in layer.features else np.ones(len(layer.data), bool)
        return np.asarray(layer.data, np.float64)[:, -2:], inside.astype(np.int64)

    def _set_clicks_for(self, emotion: str | None) -> None:
        """Show ``emotion``'s clicks in the clicks layer (without refining)."""
        from ._qt.layers import click_colors

        layer = self._clicks_layer
        if layer is None:
            return
        item = self.session.get(emotion) if (self.session and emotion) else None
        points = item.clicks if item is not None else np.zeros((0, 2))
        labels = item.click_labels if item is not None else np.zeros((0,), np.int64)
        self._updating = True
        try:
            layer.data = np.asarray(points, float).reshape(-1, 2)
            layer.features = {"inside": np.asarray(labels, bool)}
            if len(points):
                layer.face_color = click_colors(labels)
        finally:
            self._updating = False
        self._on_click_kind()

    def _on_clicks_changed(self, event=None) -> None:
        if self._updating or self.session is None or self._selected is None:
            return
        action = str(getattr(event, "action", "added"))
        if action.endswith("ing"):  # "adding", "removing", "changing": wait for the change itself
            return
        points, labels = self._current_clicks()
        if self._selected in self.session:
            self.session.set_clicks(self._selected, points, labels)
        if len(points):
            self._refine_timer.start()

    def _refine_from_clicks(self) -> None:
        if self._selected is not None and self.session is not None:
            self.refine(self._selected)

    def clear_clicks(self) -> None:
        """Remove the selected emotion's clicks (the mask stays as it is)."""
        if self.session is not None and self._selected in (self.session.items if self.session else {}):
            self.session.set_clicks(self._selected, np.zeros((0, 2)), np.zeros((0,), np.int64))
        self._set_clicks_for(self._selected)

    # Export -----------------------------------------------------------------------------------

    def _browse_dataset(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose (or create) a dataset folder", self.dataset_edit.text())
        if folder:
            self.dataset_edit.setText(folder)
            self.settings.dataset_folder = folder

    def export(self, folder: str | Path | None = None):
        """Write the current painting and its annotations into the dataset folder.

        The folder is remembered (plugin settings); exporting again updates the painting in place,
        another painting is appended. Returns the :class:`~napari_emosem.annotation.ExportResult`.
        """
        self._flush_paint()
        session = self._require_session()
        if session is None:
            return None
        folder = str(folder or self.dataset_edit.text().strip() or self.settings.dataset_folder or "")
        if not folder:
            folder = QFileDialog.getExistingDirectory(self, "Choose (or create) a dataset folder")
            if not folder:
                return None
        try:
            result = session.export(folder)
        except EmoSEMError as exc:
            self._error(str(exc))
            return None
        self.dataset_edit.setText(folder)
        self.settings.dataset_folder = folder
        self.last_export = result
        self.restore_banner.hide()
        skipped = "; ".join(f"{e}: {why}" for e, why in result.skipped.items())
        self._status(
            f"exported {result.file_name} to {folder} ({len(result.written)} emotion"
            f"{'s' if len(result.written) != 1 else ''}{'; not written — ' + skipped if skipped else ''})"
        )
        self._refresh_table()
        return result

    def open_from_dataset(self, painting: str | None = None, folder: str | Path | None = None):
        """Open ``painting`` (file name; None: ask) of the dataset folder with its annotations.

        A painting already open is selected rather than opened twice. Returns its Image layer.
        """
        from ._reader import read_dataset
        from .data import StimulusDataset

        folder = str(folder or self.dataset_edit.text().strip() or self.settings.dataset_folder or "")
        if not folder:
            self._error("choose the dataset folder first")
            return None
        try:
            dataset = StimulusDataset.open(Path(folder).expanduser())
        except EmoSEMError as exc:
            self._error(str(exc))
            return None
        names = [p.file_name for p in dataset.paintings]
        if not names:
            self._error(f"{folder} holds no paintings yet")
            return None
        if painting is None:
            from qtpy.QtWidgets import QInputDialog

            counts = {p.file_name: len(dataset.stimuli(p)) for p in dataset.paintings}
            labels = [f"{n}  ({counts[n]} annotation{'s' if counts[n] != 1 else ''})" for n in names]
            choice, ok = QInputDialog.getItem(self, "Open from the dataset", "Painting:", labels, 0, False)
            if not ok:
                return None
            painting = names[labels.index(choice)]
        for layer in self._image_layers():
            meta = (layer.metadata or {}).get(METADATA_KEY) or {}
            if meta.get("file_name") == painting and Path(meta.get("dataset", "")) == dataset.root:
                self.set_painting(layer)
                return layer
        try:
            layers = read_dataset(dataset.root, painting)
        except EmoSEMError as exc:
            self._error(str(exc))
            return None
        image_layer = None
        for data, kwargs, kind in layers:
            added = getattr(self.viewer, f"add_{kind}")(data, **kwargs)
            if kind == "image":
                image_layer = added
        self.dataset_edit.setText(str(dataset.root))
        self.set_painting(image_layer)
        return image_layer

    # Fine-tune --------------------------------------------------------------------------------

    def _browse_extra_dataset(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Also train on this dataset folder")
        if folder:
            self.add_training_dataset(folder)

    def add_training_dataset(self, folder: str | Path) -> None:
        """Also train on ``folder`` (besides the dataset this annotator exports to)."""
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
        rows = min(count, 3)
        height = self.extra_datasets.sizeHintForRow(0) * rows if count else 0
        self.extra_datasets.setFixedHeight(height + 2 * self.extra_datasets.frameWidth())
        self.extra_datasets.setVisible(count > 0)
        self.remove_dataset_button.setVisible(count > 0)

    def extra_training_datasets(self) -> list[str]:
        return [self.extra_datasets.item(i).text() for i in range(self.extra_datasets.count())]

    def training_datasets(self) -> list[str]:
        """The dataset folders Fine-tune trains on: the export folder, then the added ones."""
        main = self.dataset_edit.text().strip() or self.settings.dataset_folder or ""
        folders = [str(Path(main).expanduser())] if main else []
        return folders + [f for f in self.extra_training_datasets() if f not in folders]

    @property
    def finetune_base(self) -> str:
        """What the next Fine-tune starts from: a checkpoint folder or a preset."""
        return str(self.base_combo.currentData() or FINETUNE_BASES[0])

    def fine_tune(self, datasets=None, *, base: str | None = None, epochs: int | None = None):
        """Train on ``datasets`` (default :meth:`training_datasets`) in a background worker.

        Starts from ``base`` (default: the "From" choice: the current model when it is trainable,
        else tiny) for at most ``epochs`` (default: the Epochs box). Unexported edits are offered
        for export first, since training reads the datasets on disk. When it ends, the validation
        metrics before and after are shown, and the new checkpoint becomes the model (and the
        default model of the next session). Extra :class:`~napari_emosem.training.TrainConfig`
        fields can be set in :attr:`train_options`. Returns the job, or None if nothing started.
        """
        self._flush_paint()
        if self.busy:
            self._status("busy: wait for the running task or cancel it")
            return None
        dirty = self.unexported()
        if dirty:
            from ._qt.dialogs import ask

            names = ", ".join(s.file_name for s in dirty)
            choice = ask(
                self,
                "Unexported annotations",
                f"{names} ha{'s' if len(dirty) == 1 else 've'} annotations that are not exported yet; "
                "training reads the dataset on disk.\nExport them first?",
                ["Export first", "Train without them", "Cancel"],
                default="Export first",
            )
            if choice == "Cancel" or (choice == "Export first" and not self._export_unexported()):
                return None
        folders = [str(f) for f in (datasets if datasets is not None else self.training_datasets())]
        if not folders:
            self._error("choose the dataset folder to train on (Dataset, above): export some annotations into it first")
            return None
        base = str(base or self.finetune_base)
        epochs = int(epochs or self.epochs_spin.value())
        from ._qt.tasks import finetune_task

        self.finetune_label.hide()
        return self._start(
            "fine-tune",
            functools.partial(finetune_task, epochs=epochs, options=dict(self.train_options)),
            folders,
            base,
            self.device_combo.currentText(),
            steps=None,
            context=dict(kind="finetune", base=base, datasets=folders, epochs_done=0),
        )

    def _on_train_step(self, step) -> None:
        ctx = self._job_context
        if step.stage == "start":
            ctx["run_dir"] = step.run_dir
        elif step.stage == "train":
            total = step.epochs * step.steps
            done = (step.epoch - 1) * step.steps + step.step
            if self.progress.maximum() != total:
                self.progress.setRange(0, total)
            self.progress.setValue(done)
            self.progress.setFormat(f"epoch {step.epoch}/{step.epochs}: %p%")
            if self._job is not None:
                self._job.report(done, total, f"EmoSEM: fine-tune, epoch {step.epoch}/{step.epochs}")
        elif step.stage == "epoch":
            ctx["epochs_done"] = step.epoch
        elif step.stage in ("prepare", "validate") and self._job is not None and self._job.bar is not None:
            doing = "preparing paintings" if step.stage == "prepare" else "validating"
            self._job.report(self._job.bar.n, self._job.bar.total, f"EmoSEM: fine-tune, {doing}")
        self._status(step.message)

    def _finetuned(self, result) -> None:
        """A run ended: show what it changed, and use its checkpoint from now on."""
        from napari.utils.notifications import show_info

        from ._qt.checkpoints import metrics_line

        info = result.checkpoint
        self.last_finetune = result
        self._show_metrics(info, result.before, result.after, title=f"v{info.version}: {result.message}")
        self._fill_models(select=self.model_spec)
        self.set_model(str(info.path))  # remembered: the default model from now on (issue 6)
        self._status(f"fine-tuned in {result.seconds:.0f} s; now using checkpoint {info.label}")
        show_info(f"EmoSEM fine-tuned, checkpoint v{info.version}: {metrics_line(result.before, result.after)}")

    def _show_metrics(self, info, before: dict, after: dict, *, title: str) -> None:
        from ._qt.checkpoints import metrics_html, metrics_line

        self.finetune_label.setText(metrics_html(before, after, title=title))
        self.finetune_label.setToolTip(f"{info.label}\n{info.path}\n{metrics_line(before, after)}")
        self.finetune_label.show()

    def _finetune_cancelled(self, ctx: dict[str, Any]) -> None:
        """Keep what a cancelled run finished: its best epoch is listed, the model stays as it was."""
        from .checkpoint import read_checkpoint

        run_dir = ctx.get("run_dir")
        info = None
        if run_dir and ctx.get("epochs_done"):
            try:
                info = read_checkpoint(run_dir)
            except EmoSEMError:
                info = None
        if info is None:
            self._status("fine-tuning cancelled before an epoch ended; nothing was changed")
            return
        metrics = info.metadata.get("metrics") or {}
        self._show_metrics(
            info,
            metrics.get("validation_before") or {},
            metrics.get("validation") or {},
            title=f"v{info.version} (cancelled after epoch {ctx['epochs_done']}; not in use)",
        )
        self._fill_models(select=self.model_spec)
        self._fill_bases()
        self._status(
            f"fine-tuning cancelled after epoch {ctx['epochs_done']}; its best checkpoint {info.label} "
            "is listed under Model (choose it to use it)"
        )

    # Closing ----------------------------------------------------------------------------------

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        self._guard_close()

    def _guard_close(self) -> None:
        """Watch the main window's close (once this widget is docked in it).

        Called when shown, on the first event-loop turn, and before anything that makes work to
        protect (a task, a painting), since a script may close the viewer before either of the
        first two happens.
        """
        window = self.window()
        if self._close_guard is None and window is not None and window is not self:
            from ._qt.dialogs import CloseGuard

            self._close_guard = CloseGuard(window, self.confirm_close, self, on_close=self.shutdown)

    @property
    def close_guarded(self) -> bool:
        """True once closing the main window asks about unexported edits first."""
        return self._close_guard is not None

    def shutdown(self, timeout_ms: int = 60_000) -> None:
        """Stop timers and background work before the window closes (unexported work is autosaved).

        A model that is loading or encoding cannot be interrupted mid-step, so this waits for the
        worker to reach its next step (at most ``timeout_ms``): a worker still running while Qt
        tears the window down would crash the process.
        """
        self._autosave_timer.stop()
        self._refine_timer.stop()
        self._queued_propose = None
        self._preload_pending = False
        try:
            self.autosave_now(force=True)
        except Exception as exc:  # never block closing
            self.last_error = f"autosave failed: {exc}"
        job = self._job
        if job is not None and job.running:
            job.cancel()
            if self._job_context.get("masks_shown") is not None:
                self._job_context["masks_shown"].set()
        if job is not None and job.worker is not None:
            from napari.qt.threading import WorkerBase

            try:
                WorkerBase.await_workers(timeout_ms)
            except RuntimeError as exc:  # timed out: closing must go on
                self.last_error = f"a background task did not stop in time: {exc}"
            # its queued signals will not be delivered any more: let go of this widget
            for signal in (job.worker.yielded, job.worker.returned, job.worker.errored, job.worker.finished):
                try:
                    signal.disconnect()
                except (TypeError, RuntimeError):
                    pass
            job.worker = None

    def unexported(self) -> list[AnnotationSession]:
        """Sessions with edits that are not in a dataset yet."""
        self._flush_paint()
        return [s for _, s in self._sessions.values() if s.dirty]

    def confirm_close(self) -> bool:
        """Ask before the window closes with unexported edits; True lets it close."""
        dirty = self.unexported()
        if not dirty:
            return True
        from ._qt.dialogs import ask

        names = ", ".join(s.file_name for s in dirty)
        choice = ask(
            self,
            "Unexported annotations",
            f"{names} ha{'s' if len(dirty) == 1 else 've'} annotations that are not exported.\n"
            "Export them before closing? (Otherwise they stay in the autosave, and are offered "
            "again when you reopen the painting.)",
            ["Export and close", "Close (keep autosave)", "Cancel"],
            default="Export and close",
        )
        if choice == "Cancel":
            return False
        if choice == "Export and close":
            return self._export_unexported()
        self.autosave_now(force=True)
        return True

    def _export_unexported(self) -> bool:
        """Export every painting with unexported edits into the dataset folder; False if one failed."""
        current = self._image_layer
        for layer, session in list(self._sessions.values()):
            if session.dirty:
                self.set_painting(layer)
                if self.export() is None:
                    self.set_painting(current)
                    return False
        self.set_painting(current)
        return True

    # Display ----------------------------------------------------------------------------------

    def _refresh_table(self) -> None:
        for emotion in EMOTIONS:
            self._refresh_row(emotion)
        self._show_text()

    def _refresh_row(self, emotion: str) -> None:
        row = EMOTIONS.index(emotion)
        session = self.session
        item = session.get(emotion) if session else None
        status = score = by = ""
        tip = ""
        if item is not None:
            status = item.status.value
            score = f"{item.score:.2f}" if item.score is not None else ""
            # short: the model's id ("starter", "tiny", a checkpoint id); the tooltip says more
            who = item.source.removeprefix("model:") if item.from_model else "you"
            who = who if len(who) <= 18 else who[:17] + "…"
            by = who + (" ✎" if item.edited else "")
            tip = (item.model or item.source) + (" — edited by you" if item.edited else "")
        for col, text in ((_COL_STATUS, status), (_COL_SCORE, score), (_COL_BY, by)):
            cell = self.table.item(row, col)
            cell.setText(text)
            cell.setToolTip(tip)

    def _update_controls(self) -> None:
        busy = self.busy
        has_session = self.session is not None
        self.propose_button.setEnabled(has_session and not busy)
        self.cancel_button.setEnabled(busy)
        self.painting_combo.setEnabled(not self._painting_locked)
        self.model_combo.setEnabled(not busy)
        self.device_combo.setEnabled(not busy)
        self.export_button.setEnabled(has_session)
        self.emotion_box.setEnabled(has_session and self._selected is not None)
        self.draft_button.setEnabled(not busy)
        self.finetune_button.setEnabled(not busy)
        self.base_combo.setEnabled(not busy)
        self.finetune_cancel_button.setEnabled(busy and self._job_context.get("kind") == "finetune")

    def _status(self, text: str) -> None:
        self.status_label.setStyleSheet("")
        self.status_label.setText(text)

    def _error(self, text: str, *, notify: bool = True) -> None:
        self.last_error = text
        self.status_label.setStyleSheet("color: #ff6b6b;")
        self.status_label.setText(text)
        if notify:
            from napari.utils.notifications import show_error

            show_error(f"EmoSEM: {text}")


def _safe_name(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.strip())
    return keep.strip("-.") or "painting"


__all__ = ["EmoSEMAnnotator"]
