"""The "EmoSEM annotator" dock widget: panels around one controller.

:class:`EmoSEMAnnotator` only composes: the panels (campaign navigator, painting and model,
autosave banner, emotion table, selected emotion, dataset, fine-tune) show the state of an
:class:`~napari_emosem._qt.controller.AnnotatorController` and call its actions; the status line
shows what it reports; the close guard asks about unexported work before the window goes. Its
public methods are what a user, a script or ``emosem view`` can do (see ``docs/architecture.md``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from napari.utils.notifications import show_error
from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtWidgets import QFrame, QLabel, QScrollArea, QVBoxLayout, QWidget

from ..annotation import AnnotationSession, ExportResult, Status
from .controller import AnnotatorController
from .dialogs import CloseGuard, ask, ask_name
from .jobs import sync_workers_default
from .keys import register_key_bindings
from .panels import (
    AnnotatorsPanel,
    AutosaveBanner,
    DatasetPanel,
    EmotionTablePanel,
    FineTunePanel,
    NavigatorPanel,
    PaintingModelPanel,
    SelectedEmotionPanel,
)
from .settings import Settings


class EmoSEMAnnotator(QWidget):
    """Dock widget: EmoSEM proposals, refinement, export and fine-tuning for a viewer's paintings.

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
        ``loader(spec, device=..., precision=...) -> Predictor`` (default :func:`napari_emosem.loading.load_predictor`).
    clock
        Monotonic seconds for the active-time clocks (tests pass their own).
    """

    def __init__(
        self,
        napari_viewer,
        *,
        settings=None,
        synchronous: bool | None = None,
        predictor_loader=None,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__()
        self.viewer = napari_viewer
        self.settings = settings if settings is not None else Settings()
        self.settings.apply_cache_folder()
        self.synchronous = sync_workers_default() if synchronous is None else bool(synchronous)
        self.controller = AnnotatorController(
            napari_viewer,
            self.settings,
            synchronous=self.synchronous,
            predictor_loader=predictor_loader,
            ask=lambda title, text, choices, default: ask(self, title, text, choices, default=default),
            ask_name=lambda: ask_name(self),
            clock=clock,
        )
        register_key_bindings()
        self._close_guard = None
        self._build()
        self.controller.events.status.connect(self._status)
        self.controller.events.error.connect(self._error)
        self.controller.paintings.events.painting.connect(self._guard_close)  # edits may follow
        self.controller.jobs.events.started.connect(self._guard_close)  # a worker must stop first
        QTimer.singleShot(0, self._guard_close)  # napari docks the widget right after creating it

    def _build(self) -> None:
        controller = self.controller
        self.navigator = NavigatorPanel(controller)
        self.painting_model = PaintingModelPanel(controller)
        self.banner = AutosaveBanner(controller)
        self.emotion_table = EmotionTablePanel(controller)
        self.annotators = AnnotatorsPanel(controller)
        self.selected = SelectedEmotionPanel(controller)
        self.dataset = DatasetPanel(controller)
        self.finetune = FineTunePanel(controller, self.dataset.folder)
        self.status_label = QLabel("Open a painting to begin.")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        content = QWidget()
        layout = QVBoxLayout(content)
        layout.setContentsMargins(6, 6, 6, 6)
        parts = (
            self.navigator, self.painting_model, self.banner, self.emotion_table, self.annotators, self.selected,
            self.dataset,
        )  # fmt: skip
        for part in (*parts, self.finetune):
            layout.addWidget(part)
        layout.addWidget(self.status_label)
        layout.addStretch(1)
        # taller than a laptop screen with a campaign open: the panels scroll, the window fits
        scroll = _PanelScroll(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        # the controls a user (or a test) reaches for, by the names they have always had
        self.painting_combo, self.model_combo = self.painting_model.painting_combo, self.painting_model.model_combo
        self.device_combo = self.painting_model.device_combo
        self.restore_banner, self.restore_button = self.banner, self.banner.restore_button
        self.table, self.progress = self.emotion_table.table, self.emotion_table.progress
        self.propose_button, self.cancel_button = self.emotion_table.propose_button, self.emotion_table.cancel_button
        self.emotion_box, self.explanation_edit = self.selected, self.selected.explanation_edit
        self.accept_button, self.reject_button = self.selected.accept_button, self.selected.reject_button
        self.no_stimulus_button, self.click_button = self.selected.no_stimulus_button, self.selected.click_button
        self.dataset_edit, self.export_button = self.dataset.dataset_edit, self.dataset.export_button
        self.epochs_spin, self.finetune_button = self.finetune.epochs_spin, self.finetune.finetune_button
        self.finetune_cancel_button, self.finetune_label = self.finetune.cancel_button, self.finetune.result_label

    # State --------------------------------------------------------------------------------------

    @property
    def session(self) -> AnnotationSession | None:
        """The annotation of the current painting."""
        return self.controller.session

    @property
    def selected_emotion(self) -> str | None:
        return self.controller.selected_emotion

    @property
    def busy(self) -> bool:
        """True while a job runs or starts (or a proposal waits for the model to load)."""
        return self.controller.busy

    @property
    def jobs(self):
        """The :class:`~napari_emosem._qt.jobs.JobRunner`: ``jobs.events`` report every step."""
        return self.controller.jobs

    @property
    def model_spec(self) -> str:
        return self.controller.model.spec

    @property
    def finetune_base(self) -> str:
        return self.finetune.base

    @property
    def train_options(self) -> dict:
        return self.finetune.train_options

    @train_options.setter
    def train_options(self, options: dict) -> None:
        self.finetune.train_options = dict(options)

    @property
    def last_error(self) -> str | None:
        return self.controller.last_error

    @property
    def last_export(self) -> ExportResult | None:
        return self.controller.dataset.last_export

    @property
    def last_finetune(self):
        return self.finetune.last_finetune

    def stimulus_layer(self, emotion: str):
        """The Labels layer of ``emotion`` for the current painting (None if there is none)."""
        return self.controller.binder.layer(emotion)

    def checked_emotions(self) -> list[str]:
        return list(self.controller.ticked)

    # What the annotator does --------------------------------------------------------------------

    def set_painting(self, layer) -> AnnotationSession | None:
        """Annotate the painting in Image ``layer``."""
        return self.controller.set_painting(layer)

    def set_model(self, spec: str) -> None:
        """Use ``spec`` (a preset or a checkpoint folder) for the next proposals."""
        self.controller.model.set_model(spec)

    def set_device(self, device: str) -> None:
        self.controller.model.set_device(device)

    def preload(self) -> None:
        self.controller.model.preload()

    def set_emotions(self, emotions) -> None:
        """Tick exactly ``emotions`` for the next Propose."""
        self.controller.set_emotions(emotions)

    def select_emotion(self, emotion: str, *, activate_layer: bool = True) -> None:
        self.controller.select_emotion(emotion, activate_layer=activate_layer)

    def set_explanation(self, text: str, emotion: str | None = None) -> None:
        """Type ``text`` as ``emotion``'s explanation (as the annotator would in the text box)."""
        if emotion is not None:
            self.select_emotion(emotion)
        self.explanation_edit.setPlainText(text)

    def propose(self, emotions=None, *, replace_protected: bool | None = None, explain: bool = True):
        """Propose masks and explanation drafts (default: the ticked emotions); see the controller."""
        return self.controller.propose(emotions, replace_protected=replace_protected, explain=explain)

    def refine(self, emotion: str | None = None):
        return self.controller.refine(emotion)

    def draft_explanation(self, emotion: str | None = None):
        return self.controller.draft_explanation(emotion)

    def decide(self, status: Status, emotion: str | None = None) -> None:
        self.controller.decide(status, emotion)

    def accept(self, emotion: str | None = None) -> None:
        self.controller.decide(Status.ACCEPTED, emotion)

    def reject(self, emotion: str | None = None) -> None:
        self.controller.decide(Status.REJECTED, emotion)

    def mark_no_stimulus(self, emotion: str | None = None) -> None:
        self.controller.decide(Status.NO_STIMULUS, emotion)

    def add_click(self, row: float, col: float, *, inside: bool = True) -> None:
        """Add a click at painting pixel (row, col), as a click on the canvas would."""
        self.controller.clicks.add(row, col, inside=inside)

    def clear_clicks(self) -> None:
        self.controller.clicks.clear()

    def cancel(self) -> None:
        self.controller.cancel()

    def export(self, folder: str | Path | None = None) -> ExportResult | None:
        """Write the current painting into the dataset folder (default: the Dataset box, else ask)."""
        return self.dataset.export(folder)

    def open_from_dataset(self, painting: str | None = None, folder: str | Path | None = None):
        """Open ``painting`` (None: ask which) of the dataset folder with its annotations."""
        return self.dataset.open_painting(painting, folder)

    def open_dataset(self, folder: str | Path, painting: str | None = None):
        """Open the dataset ``folder`` as a campaign, at ``painting`` (None: the first that is
        neither done nor skipped); returns the painting's Image layer (None: nothing opened)."""
        return self.controller.campaign.open(folder, painting)

    # The campaign -------------------------------------------------------------------------------

    @property
    def campaign(self):
        """The :class:`~napari_emosem._qt.campaign.CampaignNavigation`: the open campaign, the
        navigator's list, the current painting."""
        return self.controller.campaign

    def next_painting(self) -> bool:
        """Save this painting and open the next one in the navigator's list (Next)."""
        return self.controller.campaign.next()

    def previous_painting(self) -> bool:
        return self.controller.campaign.previous()

    def go_to_painting(self, file_name: str) -> bool:
        """Save this painting and open the campaign's ``file_name``."""
        return self.controller.campaign.go(file_name)

    def skip_painting(self, reason: str | None = None) -> bool:
        """Skip the current painting with ``reason`` (None: ask), or un-skip a skipped one."""
        return self.navigator.skip(reason)

    def repropose_rest(self):
        """Re-propose every painting that is not done with the model in use, in the background."""
        return self.navigator.repropose()

    def set_dataset_folder(self, folder: str | Path) -> None:
        """Export into (and train on) ``folder`` from now on."""
        self.controller.dataset.set(folder)

    def restore_autosave(self) -> AnnotationSession | None:
        return self.controller.autosaves.restore()

    def discard_autosave(self) -> None:
        self.controller.autosaves.discard()

    def autosave_now(self, *, force: bool = False) -> None:
        self.controller.autosaves.save_all(force=force)

    def unexported(self) -> list[AnnotationSession]:
        return self.controller.unexported()

    def add_training_dataset(self, folder: str | Path) -> None:
        self.finetune.add_training_dataset(folder)

    def training_datasets(self) -> list[str]:
        return self.finetune.training_datasets()

    def fine_tune(self, datasets=None, *, base: str | None = None, epochs: int | None = None):
        """Train on the datasets in a background worker; see :class:`~napari_emosem._qt.panels.FineTunePanel`."""
        return self.finetune.fine_tune(datasets, base=base, epochs=epochs)

    # Status line --------------------------------------------------------------------------------

    def _status(self, text: str) -> None:
        self.status_label.setStyleSheet("")
        self.status_label.setText(text)

    def _error(self, text: str, notify: bool = True) -> None:
        self.status_label.setStyleSheet("color: #ff6b6b;")
        self.status_label.setText(text)
        if notify:
            show_error(f"EmoSEM: {text}")

    # Closing ------------------------------------------------------------------------------------

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        self._guard_close()

    def _guard_close(self, *_) -> None:
        """Watch the main window's close (once this widget is docked in it). Called when shown, on
        the first event-loop turn, and when work to protect begins (a painting, a job), since a
        script may close the viewer before either of the first two happens."""
        window = self.window()
        if self._close_guard is None and window is not None and window is not self:
            self._close_guard = CloseGuard(window, self.confirm_close, self, on_close=self.shutdown)

    @property
    def close_guarded(self) -> bool:
        """True once closing the main window asks about unexported edits first."""
        return self._close_guard is not None

    def confirm_close(self) -> bool:
        """Ask before the window closes with unexported edits; True lets it close. The campaign's
        painting is saved first, as leaving it does."""
        self.controller.campaign.leave()
        dirty = self.unexported()
        if not dirty:
            return True
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
            return self.controller.dataset.export_unexported(self.dataset.folder(ask=True) or None)
        self.autosave_now(force=True)
        return True

    def shutdown(self, timeout_ms: int = 60_000) -> None:
        """Stop timers and background work before the window closes (unexported work is autosaved).

        A model that is loading or encoding cannot be interrupted mid-step, so this waits for the
        worker to reach its next step (at most ``timeout_ms``).
        """
        self.controller.shutdown(timeout_ms)


class _PanelScroll(QScrollArea):
    """The panels scroll vertically, never sideways, so the dock is as wide as the widest panel
    shown; panels shown later (a campaign's navigator, the annotators) widen it then."""

    def __init__(self, content: QWidget):
        super().__init__()
        self.setWidget(content)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        content.installEventFilter(self)
        self._fit_width()

    def eventFilter(self, watched, event) -> bool:
        if watched is self.widget() and event.type() == QEvent.LayoutRequest:
            self._fit_width()
        return super().eventFilter(watched, event)

    def _fit_width(self) -> None:
        width = self.widget().minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width()
        if width != self.minimumWidth():
            self.setMinimumWidth(width)
