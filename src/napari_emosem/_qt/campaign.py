"""The campaign open in the annotator: a dataset folder worked through painting by painting.

:class:`CampaignNavigation` (the controller's ``campaign``) opens a dataset as a campaign, knows
every painting's status (:mod:`napari_emosem.campaign`: derived from the records, never stored
twice) and which one is current, and moves between them (which paintings the navigator lists,
in which order, is :mod:`.campaign_listing`'s). Leaving a painting saves it into the dataset, through the
dataset already open, so a save costs one painting; when saving fails the annotator stays on the
painting, its work on screen and in the autosave. The next painting is shown in the same Image
layer, its stimulus layers carried over, with the drafts prefetched for it (:mod:`.prefetch`).
A save changes one painting, so one painting's status is derived again, not the campaign's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from napari.layers import Image
from psygnal import Signal, SignalGroup

from .._layers import image_metadata, painting_info
from ..annotation import AnnotationSession
from ..annotation.dataset import annotator_records
from ..campaign import (
    CampaignProgress,
    PaintingProgress,
    campaign_progress,
    painting_status,
    read_settings,
    skip_painting,
    unskip_painting,
)
from ..campaign.status import SKIPPED
from ..data import Stimulus, StimulusDataset
from ..data.records import effective_record
from ..errors import EmoSEMError
from ..predictor import Proposal
from .campaign_listing import CampaignListing
from .jobs.repropose import ReproposeJob

if TYPE_CHECKING:
    from .controller import AnnotatorController


@dataclass
class Campaign:
    """An open campaign: its dataset, every painting's progress, in dataset order."""

    dataset: StimulusDataset
    progress: CampaignProgress
    #: file name -> index in ``progress.paintings``
    index: dict[str, int] = field(default_factory=dict)
    #: every record of a painting, newer than the dataset object holds (written by a re-propose in
    #: its own worker)
    fresher: dict[str, tuple[Stimulus, ...]] = field(default_factory=dict)

    @classmethod
    def open(cls, root: str | Path) -> Campaign:
        dataset = StimulusDataset.open(Path(root).expanduser())
        progress = campaign_progress(dataset, read_settings(dataset.root))
        index = {p.painting.file_name: i for i, p in enumerate(progress.paintings)}
        return cls(dataset, progress, index)

    @property
    def root(self) -> Path:
        return self.dataset.root

    @property
    def emotions(self) -> tuple[str, ...]:
        return self.progress.emotions

    @property
    def paintings(self) -> list[PaintingProgress]:
        return self.progress.paintings

    def all_records(self, file_name: str) -> list[Stimulus]:
        """Every record of the painting (each annotator's, the draft, the adjudicated one)."""
        fresher = self.fresher.get(file_name)
        return list(fresher) if fresher is not None else self.dataset.records(file_name)

    def records(self, file_name: str) -> list[Stimulus]:
        """The painting's effective records (one per emotion: what its status is derived from)."""
        by_emotion: dict[str, list[Stimulus]] = {}
        for record in self.all_records(file_name):
            by_emotion.setdefault(record.emotion, []).append(record)
        return [effective_record(records) for records in by_emotion.values()]

    def refresh(self, file_name: str, records: Sequence[Stimulus] | None = None) -> int:
        """Derive one painting's status again (after a save, a skip, a re-propose; ``records``:
        every record of the painting, when newer than the dataset object's); its index."""
        i = self.index[file_name]
        if records is not None:
            self.fresher[file_name] = tuple(records)
        painting = self.dataset.painting(file_name) or self.paintings[i].painting
        self.paintings[i] = painting_status(painting, self.records(file_name), self.emotions)
        return i

    def saved(self, file_name: str) -> int:
        """The painting was written through ``dataset``: its records there are the newest."""
        self.fresher.pop(file_name, None)
        return self.refresh(file_name)


class CampaignEvents(SignalGroup):
    #: a campaign was opened (the :class:`Campaign`), or closed (None)
    opened = Signal(object)
    #: the paintings the navigator lists changed (another filter or search)
    filtered = Signal()
    #: the status of the painting at this index changed
    painting = Signal(int)
    #: the index of the current painting (None: none)
    current = Signal(object)
    #: the progress line changed
    summary = Signal(str)


class CampaignNavigation:
    """The open campaign, the navigator's list and the current painting; see the module docstring."""

    def __init__(self, controller: AnnotatorController):
        self.controller = controller
        self.events = CampaignEvents()
        self.campaign: Campaign | None = None
        #: the index of the painting shown (in ``campaign.paintings``), and its Image layer
        self.current: int | None = None
        self.layer = None
        #: which paintings the navigator lists, in which order; where Next and Previous go
        self.listing = CampaignListing(self)
        #: what the last save wrote
        self.last_export = None

    # The campaign -------------------------------------------------------------------------------

    def open(self, root: str | Path, painting: str | None = None):
        """Open the dataset at ``root`` as the campaign, at ``painting`` (default: the first that
        is neither done nor skipped). Returns the painting's Image layer (None: nothing to show)."""
        controller = self.controller
        if not self.leave():
            return None
        try:
            campaign = self._open(root)
        except EmoSEMError as exc:
            controller.error(str(exc))
            return None
        if not campaign.paintings:
            controller.error(f"{campaign.root} holds no paintings yet; add some: `emosem add {campaign.root} FOLDER`")
            return None
        if painting is not None and painting not in campaign.index:
            found = campaign.dataset.painting(painting)
            if found is None:
                controller.error(f"{campaign.root}: no painting {painting!r}")
                return None
            painting = found.file_name
        if painting is None:
            first = campaign.progress.first_open() or campaign.paintings[0]
            painting = first.painting.file_name
        return self.layer if self.go(painting, save=False) else None

    def _open(self, root: str | Path) -> Campaign:
        campaign = Campaign.open(root)
        self.campaign, self.current, self.listing.queue_places = campaign, None, None
        self.controller.dataset.set(campaign.root)
        self.listing.refilter()
        self.events.opened.emit(campaign)
        self.events.current.emit(None)
        self._summary()
        return campaign

    def follow(self, layer, session: AnnotationSession) -> None:
        """The annotator chose a painting opened from a dataset (the reader's, Open…): the
        navigator shows that dataset's campaign, at it."""
        info = painting_info(layer.metadata)
        if not info.dataset or not info.file_name:
            return
        campaign = self.campaign
        if campaign is None or Path(info.dataset).resolve() != campaign.root.resolve():
            try:
                campaign = self._open(info.dataset)
            except EmoSEMError as exc:
                self.controller.error(str(exc))
                return
        index = campaign.index.get(info.file_name)
        if index is not None:
            self.layer = layer
            self._set_current(index)

    def owns(self, session: AnnotationSession | None) -> bool:
        """Is ``session`` the campaign's current painting (saved on leaving)?"""
        return session is not None and self.session is session

    @property
    def session(self) -> AnnotationSession | None:
        """The annotation of the campaign's current painting, while its layer is in the viewer."""
        layer = self.layer
        if self.campaign is None or self.current is None or layer is None or layer not in self.controller.viewer.layers:
            return None
        for candidate, session in self.controller.paintings.sessions():
            if candidate is layer:
                return session
        return None

    @property
    def current_name(self) -> str | None:
        if self.campaign is None or self.current is None:
            return None
        return self.campaign.paintings[self.current].painting.file_name

    # The navigator's list: its own job (campaign_listing); kept here for tests and benchmarks ------

    @property
    def visible(self) -> list[int]:
        return self.listing.visible

    @property
    def queue_places(self) -> dict[int, int] | None:
        return self.listing.queue_places

    @property
    def skip_done(self) -> bool:
        return self.listing.skip_done

    def peek(self, step: int = 1) -> int | None:
        return self.listing.peek(step)

    def set_filter(self, status: str | None = None, search: str | None = None) -> None:
        self.listing.set_filter(status, search)

    # Moving -------------------------------------------------------------------------------------

    def next(self) -> bool:
        return self._step(1)

    def previous(self) -> bool:
        return self._step(-1)

    def _step(self, step: int) -> bool:
        target = self.listing.peek(step)
        if target is None:
            where = "after" if step > 0 else "before"
            passed = " (done and skipped ones passed over)" if self.listing.skip_done else ""
            self.controller.status(f"no painting {where} this one in the list{passed}")
            return False
        return self.go(self.campaign.paintings[target].painting.file_name)

    def go(self, file_name: str, *, save: bool = True) -> bool:
        """Show the campaign's painting ``file_name``: the current one is saved first (``save``)."""
        controller, campaign = self.controller, self.campaign
        if campaign is None or file_name not in campaign.index:
            controller.error(f"no painting {file_name!r} in the campaign")
            return False
        if controller.painting_locked:
            controller.status("busy: wait for the running task or cancel it before moving on")
            return False
        if save and not self.leave():
            return False
        index = campaign.index[file_name]
        try:
            session = self._session_for(index)
        except EmoSEMError as exc:
            controller.error(f"{file_name}: {exc}")
            return False
        self._show(index, session)
        return True

    def leave(self) -> bool:
        """Save the current painting before the annotator moves on; False (and why) if that failed."""
        return self.session is None or self.save()

    def save(self, *, force: bool = False) -> bool:
        """Write the current painting into the campaign's dataset when it holds anything new
        (edits, or active time), or ``force``; False (and why, in the status line) if that failed."""
        session = self.session
        if session is None:
            return False
        self.controller.binder.flush()
        return self._save(session, force=force)

    def layer_removed(self, layer, session: AnnotationSession | None) -> None:
        """An Image layer left the viewer (deleted, or napari closing): the campaign's painting in
        it is left, so it is saved (its autosave stays if that fails)."""
        if layer is not self.layer or self.campaign is None:
            return
        if session is not None:
            self._save(session)
        self.layer = None
        self._set_current(None)

    def _save(self, session: AnnotationSession, *, force: bool = False) -> bool:
        campaign = self.campaign
        if not (force or session.dirty or session.unsaved_seconds >= 1.0):
            return True
        try:
            self.last_export = session.export(campaign.dataset)
        except EmoSEMError as exc:
            self.controller.error(
                f"{session.file_name} was not saved: {exc}. Your work stays here (and in the autosave)"
            )
            return False
        self._changed(campaign.saved(session.file_name))
        self.controller.dataset.exported(self.last_export)
        kept = self.last_export.kept_reviewed
        if kept:
            self.controller.status(
                f"{session.file_name}: the draft of {', '.join(kept)} was not saved: another annotator "
                "reviewed the pair meanwhile (a draft never replaces a person's record); accept or edit it "
                "to save it as yours"
            )
        return True

    def _session_for(self, index: int) -> AnnotationSession:
        campaign, controller = self.campaign, self.controller
        progress = campaign.paintings[index]
        painting, name = progress.painting, progress.painting.file_name
        prefetched = controller.prefetch.take(name)
        image = prefetched.image if prefetched is not None else campaign.dataset.image(painting)
        annotator = controller.annotator_name()  # whose records the session holds
        session = AnnotationSession.from_stimuli(
            image,
            annotator_records(campaign.all_records(name), annotator),
            file_name=name,
            source_path=campaign.dataset.image_path(painting),
            annotator=annotator,
            metadata=dict(painting.metadata),
            exported_to=campaign.root,
            autosave_interval=controller.settings.autosave_seconds,
        )
        if prefetched is not None:
            controller.prefetch.apply(session, prefetched)
        return session

    def _show(self, index: int, session: AnnotationSession) -> None:
        controller, campaign = self.controller, self.campaign
        controller.adjudication.hide()  # the last painting's annotators
        painting = campaign.paintings[index].painting
        metadata = image_metadata(
            dataset=str(campaign.root),
            file_name=painting.file_name,
            source_path=str(session.source_path),
            metadata=dict(painting.metadata),
            passthrough=list(session.passthrough),
            painting=session.digest,
        )
        layer = self.layer if (self.layer is not None and self.layer in controller.viewer.layers) else None
        self.current = index
        if layer is None:
            # the session first, so that the annotator takes it when napari adds the layer
            layer = Image(session.image, name=painting.name, rgb=True, metadata=metadata)
            self.layer = layer
            controller.paintings.put(layer, session)
            controller.viewer.add_layer(layer)
            controller.set_painting(layer)
        else:
            reshaped = tuple(layer.data.shape) != tuple(session.image.shape)
            layer.metadata = metadata
            layer.name = painting.name
            layer.data = session.image
            if reshaped:
                controller.viewer.reset_view()
            controller.show_painting(layer, session)
        self._set_current(index)
        controller.select_emotion(self._first_to_review(session))
        controller.prefetch.schedule()

    def _first_to_review(self, session: AnnotationSession) -> str:
        emotions = self.campaign.emotions
        for emotion in emotions:
            item = session.get(emotion)
            if item is None or not item.reviewed:
                return emotion
        return emotions[0]

    def _set_current(self, index: int | None) -> None:
        self.current = index
        self.events.current.emit(index)

    # Skipping -----------------------------------------------------------------------------------

    def skip(self, reason: str) -> bool:
        """Skip the current painting with the annotator's ``reason`` (its work is saved first),
        and go on to the next one."""
        session, campaign, controller = self.session, self.campaign, self.controller
        if session is None:
            controller.error("open a campaign painting first")
            return False
        if not self.save():
            return False
        try:
            annotator = controller.annotator_name()
            painting = skip_painting(campaign.dataset, session.file_name, reason, annotator=annotator)
        except EmoSEMError as exc:
            controller.error(str(exc))
            return False
        session.metadata[SKIPPED] = painting.metadata.get(SKIPPED)  # a later save keeps the skip
        self._changed(campaign.refresh(session.file_name))
        controller.status(f"skipped {session.file_name}: {' '.join(str(reason).split())}")
        if self.listing.peek(1) is not None:
            self.next()
        return True

    def unskip(self) -> bool:
        """Take the current painting back into the campaign."""
        session, campaign, controller = self.session, self.campaign, self.controller
        if session is None:
            controller.error("open a campaign painting first")
            return False
        try:
            unskip_painting(campaign.dataset, session.file_name)
        except EmoSEMError as exc:
            controller.error(str(exc))
            return False
        session.metadata.pop(SKIPPED, None)
        self._changed(campaign.refresh(session.file_name))
        controller.status(f"{session.file_name} is back in the campaign")
        return True

    # Re-proposing --------------------------------------------------------------------------------

    def repropose_rest(self) -> ReproposeJob | None:
        """Propose again with the model in use for every painting that is not done, in the
        background (the current painting is saved first, so its reviewed pairs are kept)."""
        controller, campaign = self.controller, self.campaign
        if campaign is None:
            controller.error("open a campaign first")
            return None
        if controller.busy:
            controller.status("busy: wait for the running task or cancel it")
            return None
        if not self.leave():
            return None
        job = ReproposeJob(controller, controller.cache, campaign.root, campaign.emotions, on_painting=self._reproposed)
        # it writes drafts for the paintings ahead: nothing to prefetch meanwhile
        prefetch = controller.prefetch
        prefetch.clear()
        prefetch.enabled = False

        def ended(line: str) -> None:
            prefetch.enabled = True
            prefetch.schedule()

        job.events.ended.connect(ended)
        controller.run(job)
        return job

    def _reproposed(self, job: ReproposeJob, step) -> None:
        if not step.error:
            self.drafts_written(step.file_name, step.records, model=job.model)

    # Drafts written elsewhere -------------------------------------------------------------------

    def drafts_written(self, file_name: str, records: Sequence[Stimulus], *, model: str) -> None:
        """A re-propose wrote new drafts for ``file_name``: its status, and the current painting's
        unreviewed drafts on screen (what a person reviewed stays as it is)."""
        campaign = self.campaign
        if campaign is None or file_name not in campaign.index:
            return
        self._changed(campaign.refresh(file_name, records))
        session = self.session
        if session is None or session.file_name != file_name:
            return
        by_source: dict[str, list[Proposal]] = {}
        for record in records:
            if record.reviewed or record.emotion not in campaign.emotions or record.mask is None:
                continue
            text = record.explanations[0] if record.explanations else ""
            proposal = Proposal(record.emotion, record.mask, float(record.score or 0.0), text)
            by_source.setdefault(record.source, []).append(proposal)
        for source, proposals in by_source.items():
            session.apply_proposals(proposals, source=source, model=model)

    # Progress -----------------------------------------------------------------------------------

    def written(self, file_name: str) -> None:
        """Records of ``file_name`` were written into the campaign's dataset by another part of
        the annotator (an adjudication): its status is derived again."""
        self._changed(self.campaign.saved(file_name))

    def _changed(self, index: int) -> None:
        self.events.painting.emit(index)
        self._summary()

    def _summary(self) -> None:
        self.events.summary.emit(self.campaign.progress.summary_line() if self.campaign is not None else "")


def describe_status(progress: PaintingProgress, emotions: Sequence[str]) -> str:
    """One line for a tooltip: status, reviewed pairs, time, the skip reason."""
    parts = [progress.status.value, f"{len(progress.reviewed)} of {len(emotions)} reviewed"]
    if progress.no_stimulus:
        parts.append(f"no stimulus: {', '.join(progress.no_stimulus)}")
    if progress.seconds:
        from ..campaign.status import format_duration

        parts.append(format_duration(progress.seconds))
    if progress.skip_reason:
        parts.append(f"skipped: {progress.skip_reason}")
    return " · ".join(parts)

