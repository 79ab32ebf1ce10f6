"""What the annotator can do, without any widget: the controller the panels and key bindings call.

It holds the annotator's state besides the annotations themselves (those are the sessions'): the
current painting (:class:`~napari_emosem._qt.paintings.Paintings`), the selected emotion, the
emotions ticked for the next Propose, the model (:class:`~napari_emosem._qt.model_choice.ModelChoice`),
the dataset folder, the autosaves (:class:`~napari_emosem._qt.autosaving.Autosaving`), and whether
a background job runs (:class:`~napari_emosem._qt.jobs.JobRunner`). Every action is a public method;
what changes is announced on :attr:`AnnotatorController.events`, which the panels observe. Errors
a user can cause become one line on ``events.error``, never an exception.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Sequence

from psygnal import Signal, SignalGroup
from qtpy.QtCore import QTimer

from ..annotation import AnnotationSession, Status
from ..emotions import EMOTIONS
from ..errors import EmoSEMError
from ..predictor_cache import PredictorCache
from .adjudication import Adjudication
from .autosaving import Autosaving
from .binder import LayerBinder
from .campaign import CampaignNavigation
from .clicking import ClickRefinement
from .dataset_folder import DatasetFolder
from .jobs import ExplainJob, Job, JobRunner, LoadJob, ProposeJob, RefineJob
from .jobs.queue import WaitingActions
from .model_choice import ModelChoice
from .paintings import Paintings, describe
from .prefetch import Prefetcher
from .settings import Settings
from .timing import ActiveTime

#: ``ask(title, text, choices, default) -> choice``: a question to the annotator
Ask = Callable[[str, str, Sequence[str], str], str]


class ControllerEvents(SignalGroup):
    selection = Signal(object)  # the selected emotion, or None
    ticked = Signal(tuple)  # the emotions the next Propose is for
    busy = Signal(bool)  # a job started or ended (see AnnotatorController.busy)
    model = Signal(str)  # the model spec in use
    device = Signal(str)
    precision = Signal(str)
    dataset_folder = Signal(str)
    #: the fine-tuned checkpoints on disk changed (a run ended)
    checkpoints = Signal()
    #: the current painting's autosave, to offer back (None: nothing to offer)
    autosave_offer = Signal(object)
    clicking = Signal(bool)  # refine-with-clicks mode on or off
    #: only the selected emotion's layer is shown (True), or every emotion's (False)
    others_hidden = Signal(bool)
    status = Signal(str)
    error = Signal(str, bool)  # message, and whether napari should notify too


class AnnotatorController:
    """The annotator's state and actions for one napari viewer.

    Parameters
    ----------
    viewer
        The napari viewer.
    settings
        The plugin settings (model, device, dataset folder, annotator, autosave interval).
    synchronous
        Run model work on the GUI thread (deterministic tests).
    predictor_loader
        ``loader(spec, device=..., precision=...) -> Predictor`` (default :func:`napari_emosem.loading.load_predictor`).
    ask
        Asks the annotator a question (default: the default answer, as in a script).
    ask_name
        Asks the annotator's name, once, when none is set: the name, "" (they gave none: unnamed),
        or None when nobody could be asked (the default, as in a script: asked again next time).
    clock
        Monotonic seconds for the active-time clocks (tests pass their own).
    """

    def __init__(
        self,
        viewer,
        settings: Settings,
        *,
        synchronous: bool,
        predictor_loader=None,
        ask: Ask | None = None,
        ask_name: Callable[[], str | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.viewer = viewer
        self.settings = settings
        self.synchronous = synchronous
        self.ask: Ask = ask or (lambda title, text, choices, default: default)
        self.ask_name: Callable[[], str | None] = ask_name or (lambda: None)
        self._name_asked = False
        self.events = ControllerEvents()
        self.cache = PredictorCache(predictor_loader)
        self.jobs = JobRunner(synchronous=synchronous)
        self.binder = LayerBinder(viewer, synchronous=synchronous, spares_for=lambda: self.ticked)
        self.paintings = Paintings(viewer, self.binder, settings)
        self.selected_emotion: str | None = None
        self.ticked: tuple[str, ...] = EMOTIONS
        self.model = ModelChoice(self)
        self.last_error: str | None = None
        self.dataset = DatasetFolder(self)
        self.waiting = WaitingActions()
        self.clicks = ClickRefinement(self)
        self.campaign = CampaignNavigation(self)
        self.adjudication = Adjudication(self)
        self.prefetch = Prefetcher(self)
        self.time = ActiveTime(self, clock)
        #: only the selected emotion's layer is shown
        self.others_hidden = False
        self.autosaves = Autosaving(self)
        self._connect()

    def _connect(self) -> None:
        binder = self.binder
        binder.events.images_changed.connect(self._on_images_changed)
        binder.events.image_removed.connect(self._on_image_removed)
        binder.events.image_activated.connect(self._on_image_activated)
        binder.events.emotion_activated.connect(self._on_emotion_activated)
        binder.events.emotion_layer_removed.connect(self._on_emotion_layer_removed)
        binder.events.error.connect(self.error)
        self.jobs.events.status.connect(self.status)
        self.jobs.events.failed.connect(self.error)
        self.jobs.events.started.connect(self._on_job_started)
        self.jobs.events.finished.connect(self._on_job_finished)
        self.autosaves.timer.start()
        QTimer.singleShot(0, self.model.preload)

    # State --------------------------------------------------------------------------------------

    def annotator_name(self) -> str | None:
        """The annotator's name (settings ``annotation.annotator``): asked once when none is set,
        before their first record, and remembered in the settings; None: they gave none
        (unnamed, as ``docs/annotators.md`` defines)."""
        name = (self.settings.annotator or "").strip()
        if not name and not self._name_asked:
            answer = self.ask_name()
            self._name_asked = answer is not None  # None: nobody could be asked (not on screen)
            name = " ".join(str(answer or "").split())
            if name:
                self.settings.annotator = name
        return name or None

    @property
    def session(self) -> AnnotationSession | None:
        """The annotation of the current painting."""
        return self.paintings.session

    @property
    def busy(self) -> bool:
        """True while a job runs or starts (or a proposal waits for the model to load)."""
        return self.jobs.busy or self.waiting.busy

    @property
    def painting_locked(self) -> bool:
        """A job working on the current painting keeps it current (training reads the datasets on
        disk: annotating another painting meanwhile is fine)."""
        job = self.jobs.current
        return self.busy and (job is None or job.holds_painting)

    def status(self, text: str) -> None:
        self.events.status.emit(text)

    def error(self, text: str, notify: bool = True) -> None:
        self.last_error = text
        self.events.error.emit(text, notify)

    def require_session(self) -> AnnotationSession | None:
        """The current session with every brush stroke in it; an error line when there is none."""
        self.binder.flush()
        if self.session is None:
            self.error("open a painting (an Image layer) first")
        return self.session

    # Paintings ----------------------------------------------------------------------------------

    def set_painting(self, layer) -> AnnotationSession | None:
        """Annotate the painting in Image ``layer`` (None: no painting)."""
        if layer is self.paintings.image_layer and (layer is None or self.session is not None):
            return self.session
        self.binder.flush()
        self.selected_emotion = None
        try:
            session = self.paintings.switch(layer)
        except EmoSEMError as exc:
            self.error(f"{layer.name}: {exc}")
            return None
        self._painting_shown(layer, session)
        if session is not None:
            # a painting of a dataset: the navigator shows that campaign, at this painting
            self.campaign.follow(layer, session)
        return session

    def show_painting(self, layer, session: AnnotationSession) -> None:
        """Show another painting, ``session``'s, in Image ``layer`` (a campaign's next one)."""
        self.binder.flush()
        self.selected_emotion = None
        self.paintings.put(layer, session)
        self._painting_shown(layer, session)

    def _painting_shown(self, layer, session: AnnotationSession | None) -> None:
        self.events.selection.emit(None)
        if session is not None:
            # a painting opened from a dataset proposes that folder, unless one is chosen already
            if session.exported_to is not None and not self.dataset.path.strip():
                self.dataset.set(session.exported_to)
            self.autosaves.offer()
            self.status(f"{layer.name}: {describe(session)}")

    def _on_images_changed(self) -> None:
        current = self.paintings.image_layer
        if current is None or current not in self.viewer.layers:
            layers = self.paintings.image_layers()
            self.set_painting(layers[-1] if layers else None)
        self.paintings.events.paintings.emit()

    def _on_image_removed(self, layer) -> None:
        session = next((s for candidate, s in self.paintings.sessions() if candidate is layer), None)
        self.campaign.layer_removed(layer, session)  # leaving a campaign's painting saves it
        self.paintings.drop(layer)

    def _on_image_activated(self, layer) -> None:
        if not self.painting_locked:
            self.set_painting(layer)

    def _on_emotion_layer_removed(self, emotion: str) -> None:
        # deleting a stimulus layer discards that emotion, unless the whole painting is being
        # closed (its image goes too): decided once the removals are over
        image, session = self.paintings.image_layer, self.session
        if session is not None:
            QTimer.singleShot(0, functools.partial(self._forget_if_open, image, session, emotion))

    def _forget_if_open(self, image_layer, session: AnnotationSession, emotion: str) -> None:
        still_open = self.paintings.is_open(image_layer, session)
        if still_open and (self.binder.layer(emotion) is None or session is not self.session):
            session.remove(emotion)

    def unexported(self) -> list[AnnotationSession]:
        """Sessions with edits that are not in a dataset yet."""
        return self.paintings.unexported()

    # Emotions, decisions, text ------------------------------------------------------------------

    def set_emotions(self, emotions: Iterable[str]) -> None:
        """Tick exactly ``emotions`` for the next Propose."""
        wanted = set(emotions)
        self.ticked = tuple(e for e in EMOTIONS if e in wanted)
        self.events.ticked.emit(self.ticked)

    def select_emotion(self, emotion: str, *, activate_layer: bool = True) -> None:
        """Make ``emotion`` the one the text box, decisions and clicks apply to."""
        if emotion not in EMOTIONS:
            raise EmoSEMError(f"unknown emotion {emotion!r}")
        self.selected_emotion = emotion
        if self.others_hidden:
            self.binder.set_solo(emotion)
        if activate_layer and not self.clicks.active:  # clicking goes on, for this emotion
            self.binder.activate(emotion)
        self.events.selection.emit(emotion)

    def step_emotion(self, step: int) -> None:
        """Select the next (``step`` 1) or previous (-1) emotion: the campaign's, else all eight."""
        emotions = self.campaign.campaign.emotions if self.campaign.campaign is not None else EMOTIONS
        if self.selected_emotion in emotions:
            index = (emotions.index(self.selected_emotion) + step) % len(emotions)
        else:
            index = 0 if step > 0 else len(emotions) - 1
        self.select_emotion(emotions[index])

    def toggle_others(self) -> None:
        """Show only the selected emotion's layer, or every emotion's again."""
        self.others_hidden = not self.others_hidden
        self.binder.set_solo(self.selected_emotion if self.others_hidden else None)
        self.events.others_hidden.emit(self.others_hidden)
        self.status("only the selected emotion is shown" if self.others_hidden else "every emotion is shown")

    def toggle_clicking(self) -> None:
        """Refine with clicks on, or off."""
        if self.clicks.active:
            self.clicks.stop()
        else:
            self.clicks.start()

    def _on_emotion_activated(self, emotion: str) -> None:
        if emotion != self.selected_emotion:
            self.select_emotion(emotion, activate_layer=False)

    def set_explanation(self, text: str, emotion: str | None = None) -> None:
        """The annotator's explanation of ``emotion`` (default: the selected one)."""
        emotion = emotion or self.selected_emotion
        if self.session is not None and emotion is not None:
            self.session.set_explanation(emotion, text)

    def decide(self, status: Status, emotion: str | None = None) -> None:
        """Accept, reject or mark "no stimulus" (pressing the current decision again undoes it)."""
        session = self.require_session()
        emotion = emotion or self.selected_emotion
        if session is None or emotion is None:
            return
        status = Status(status)
        if emotion not in session and status != Status.NO_STIMULUS:
            self.error(f"{emotion} is not annotated yet: propose it or paint it first")
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
        self.status(f"{emotion}: {session[emotion].status.value}")

    # Model (which one: self.model) ---------------------------------------------------------------

    def propose(self, emotions=None, *, replace_protected: bool | None = None, explain: bool = True):
        """Propose masks and explanation drafts for ``emotions`` (default: the ticked ones).

        What a person reviewed is kept unless ``replace_protected``; None asks. Returns the job
        (already finished when synchronous), or None if nothing was started.
        """
        session = self.require_session()
        if session is None:
            return None
        current = self.jobs.current
        if self.busy and not isinstance(current, LoadJob):
            self.status("busy: wait for the running task or cancel it")
            return None
        emotions = list(emotions) if emotions is not None else list(self.ticked)
        if not emotions:
            self.error("tick at least one emotion to propose")
            return None
        protected = session.protected(emotions)
        if protected and replace_protected is None:
            choice = self.ask(
                "Replace your work?",
                f"You edited or decided: {', '.join(protected)}.\nReplace them with new proposals?",
                ["Keep mine", "Replace", "Cancel"],
                "Keep mine",
            )
            if choice == "Cancel":
                return None
            replace_protected = choice == "Replace"
        if self.busy:  # the model is still loading: propose as soon as it is ready
            replace = bool(replace_protected)

            def propose_when_loaded(ended: Job) -> None:
                if not ended.cancelled:
                    self.propose(emotions, replace_protected=replace, explain=explain)

            self.waiting.wait("propose", propose_when_loaded, busy=True)
            self.status("the model is loading; proposing as soon as it is ready…")
            return None
        replace = bool(replace_protected)
        return self.run(ProposeJob(self, self.cache, session, emotions, replace_protected=replace, explain=explain))

    def refine(self, emotion: str | None = None):
        """Re-decode ``emotion``'s mask (default: the selected one) with its clicks."""
        session = self.require_session()
        emotion = emotion or self.selected_emotion
        if session is None or emotion is None:
            return None
        if self.busy:
            self.waiting.wait("refine", lambda ended: self.clicks.refine_soon())
            return None
        points, labels = self.clicks.clicks(emotion)
        if len(points) == 0:
            self.status("add a click on the painting first (green: inside, red: outside)")
            return None
        return self.run(RefineJob(self, self.cache, session, emotion, points, labels))

    def draft_explanation(self, emotion: str | None = None):
        """Ask the model for an explanation of ``emotion``'s current mask."""
        session = self.require_session()
        emotion = emotion or self.selected_emotion
        if session is None or emotion is None or self.busy:
            return None
        item = session.get(emotion)
        if item is None or not item.mask.any():
            self.error(f"the {emotion} mask is empty: draw the stimulus first, then draft its explanation")
            return None
        return self.run(ExplainJob(self, self.cache, session, emotion))

    def cancel(self) -> None:
        """Stop the running job at its next step (masks already shown are kept)."""
        if self.jobs.cancel():
            self.status("cancelling…")

    def run(self, job: Job) -> Job:
        """Start ``job`` (the caller checked that nothing else runs)."""
        return self.jobs.start(job)

    def _on_job_started(self, job: Job) -> None:
        if job.background:
            return
        self.binder.hold_spares = job.fills_layers
        self.events.busy.emit(True)

    def _on_job_finished(self, job: Job) -> None:
        if not job.background:
            self.binder.hold_spares = False
            self.binder.schedule_spares()
            self.waiting.run_next(job)
            self.events.busy.emit(self.busy)
        self.prefetch.schedule()  # the next painting gets ready once nothing else runs

    # Closing ------------------------------------------------------------------------------------

    def shutdown(self, timeout_ms: int = 60_000) -> None:
        """Stop timers and background work (unexported work is autosaved)."""
        self.autosaves.timer.stop()
        self.clicks.stop_timer()
        self.waiting.clear()
        try:
            self.autosaves.save_all(force=True)
        except Exception as exc:  # never block closing
            self.last_error = f"autosave failed: {exc}"
        problem = self.jobs.shutdown(timeout_ms)
        if problem:
            self.last_error = problem
        self.binder.close()
