"""Panel: which painting to annotate, with which model, on which device."""

from __future__ import annotations

from qtpy.QtCore import QSignalBlocker, Qt
from qtpy.QtWidgets import QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QPushButton, QSizePolicy, QWidget

from ...checkpoint import read_checkpoint
from ...config import about_model
from ...devices import DEVICES
from ...errors import EmoSEMError
from ...precision import PRECISIONS
from ..checkpoints import choice_label
from ..controller import AnnotatorController
from ..models import MODEL_PRESETS, preset_label, same_checkpoint, user_checkpoints


class PaintingModelPanel(QWidget):
    """The Painting, Model and Device rows at the top of the dock."""

    def __init__(self, controller: AnnotatorController):
        super().__init__()
        self.controller = controller
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        self.painting_combo = QComboBox()
        self.painting_combo.setToolTip("The Image layer to annotate")
        self.painting_combo.currentIndexChanged.connect(self._on_painting_picked)
        form.addRow("Painting", self.painting_combo)

        model_row = QHBoxLayout()
        self.model_combo = QComboBox()
        self.model_combo.setEditable(True)
        self.model_combo.setToolTip(
            "starter: cold-start drafts (no learned weights); vit_b / vit_l / vit_h: EmoSEM on SAM's encoder; "
            "tiny: random weights, for tests and toy data; or a fine-tuned checkpoint folder"
        )
        self.model_combo.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        # as wide as the dock, not as its longest entry (checkpoint and preset labels are long)
        self.model_combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setMinimumContentsLength(12)
        self.fill_models()
        self.model_combo.currentIndexChanged.connect(self._on_model_picked)
        self.model_combo.lineEdit().editingFinished.connect(self._on_model_picked)
        browse = QPushButton("Browse…")
        browse.setToolTip("Choose a checkpoint folder")
        browse.clicked.connect(self.browse_checkpoint)
        model_row.addWidget(self.model_combo)
        model_row.addWidget(browse)
        form.addRow("Model", model_row)

        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.device_combo.setCurrentText(controller.model.device)
        self.device_combo.currentTextChanged.connect(controller.model.set_device)
        form.addRow("Device", self.device_combo)

        self.precision_combo = QComboBox()
        self.precision_combo.addItems(PRECISIONS)
        self.precision_combo.setCurrentText(controller.model.precision)
        self.precision_combo.setToolTip(
            "auto: each reduced form below only where this machine measured it faster (once, about a second); "
            "fp32: float32 everywhere, the reference; bf16: the image encoder and mask decoder in bfloat16 and the "
            "language model's linear layers in int8 (CPU only: a GPU runs as always). The status line says what "
            "the model loaded with."
        )
        self.precision_combo.currentTextChanged.connect(controller.model.set_precision)
        form.addRow("Precision", self.precision_combo)

        events = controller.events
        controller.paintings.events.paintings.connect(self.fill_paintings)
        controller.paintings.events.painting.connect(self.fill_paintings)
        events.model.connect(self._show_model)
        events.device.connect(self._show_device)
        events.precision.connect(self._show_precision)
        events.checkpoints.connect(self.fill_models)
        events.busy.connect(self._enable)
        self.fill_paintings()

    # Painting -----------------------------------------------------------------------------------

    def fill_paintings(self, *_) -> None:
        """List the viewer's Image layers; the current painting selected."""
        current = self.controller.paintings.image_layer
        with QSignalBlocker(self.painting_combo):
            self.painting_combo.clear()
            for layer in self.controller.paintings.image_layers():
                self.painting_combo.addItem(layer.name, id(layer))
            if current is not None:
                self.painting_combo.setCurrentIndex(self.painting_combo.findData(id(current)))
        self._enable()

    def _on_painting_picked(self, index: int) -> None:
        wanted = self.painting_combo.itemData(index)
        for layer in self.controller.paintings.image_layers():
            if id(layer) == wanted:
                self.controller.set_painting(layer)
                return

    # Model --------------------------------------------------------------------------------------

    def fill_models(self) -> None:
        """List the user's checkpoints (newest first) and the presets; the model in use selected."""
        with QSignalBlocker(self.model_combo):
            self.model_combo.clear()
            for info in user_checkpoints():
                self.model_combo.addItem(choice_label(info), str(info.path))
                self.model_combo.setItemData(self.model_combo.count() - 1, f"{info.label}\n{info.path}", Qt.ToolTipRole)
            for preset in MODEL_PRESETS:
                self.model_combo.addItem(preset_label(preset), preset)
                self.model_combo.setItemData(self.model_combo.count() - 1, about_model(preset), Qt.ToolTipRole)
            self._select(self.controller.model.spec)

    @property
    def model_spec(self) -> str:
        """The model the combo box names: a listed entry, or what the annotator typed."""
        data = self.model_combo.currentData()
        text = self.model_combo.currentText().strip()
        if data is not None and self.model_combo.itemText(self.model_combo.currentIndex()) == text:
            return str(data)
        return text or "starter"

    def _on_model_picked(self, *_) -> None:
        self.controller.model.set_model(self.model_spec)

    def _select(self, spec: str) -> None:
        index = self.model_combo.findData(spec)
        if index < 0 and spec not in MODEL_PRESETS:
            for i in range(self.model_combo.count()):
                if same_checkpoint(spec, str(self.model_combo.itemData(i))):
                    index = i
                    break
        if index < 0:
            self.model_combo.addItem(spec, spec)
            index = self.model_combo.count() - 1
        self.model_combo.setCurrentIndex(index)
        self.model_combo.lineEdit().setCursorPosition(0)  # a long entry shows its start

    def _show_model(self, spec: str) -> None:
        if self.model_spec != spec:
            with QSignalBlocker(self.model_combo):
                self._select(spec)
        self.model_combo.lineEdit().setCursorPosition(0)
        self.controller.status(f"model: {self.model_combo.currentText()}")

    def browse_checkpoint(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose an EmoSEM checkpoint folder")
        if not folder:
            return
        try:
            info = read_checkpoint(folder)
        except EmoSEMError as exc:
            self.controller.error(str(exc))
            return
        with QSignalBlocker(self.model_combo):
            self.model_combo.addItem(f"checkpoint {info.label}", str(info.path))
            self.model_combo.setCurrentIndex(self.model_combo.count() - 1)
        self._on_model_picked()

    # Device, enabled state ----------------------------------------------------------------------

    def _show_device(self, device: str) -> None:
        with QSignalBlocker(self.device_combo):
            self.device_combo.setCurrentText(device)

    def _show_precision(self, precision: str) -> None:
        with QSignalBlocker(self.precision_combo):
            self.precision_combo.setCurrentText(precision)

    def _enable(self, *_) -> None:
        busy = self.controller.busy
        self.painting_combo.setEnabled(not self.controller.painting_locked)
        self.model_combo.setEnabled(not busy)
        self.device_combo.setEnabled(not busy)
        self.precision_combo.setEnabled(not busy)
