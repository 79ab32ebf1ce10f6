"""No waiting between paintings: the campaign's next painting is made ready in the background.

While the annotator works on a painting, :class:`Prefetcher` runs a
:class:`~napari_emosem._qt.jobs.prefetch.PrefetchJob` for the one Next will show (the navigator's
order): it reads the image, encodes it with the model in use, proposes the campaign's emotions the
painting has no record of, and drafts their explanations. It is a background job: whatever the
annotator asks for goes first (the prefetch pauses between two steps). The results stay in memory
(:data:`KEEP` paintings) and become the painting's unreviewed drafts when it opens (saved with it
like any proposal); they never replace a record, reviewed or not.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from psygnal import Signal, SignalGroup
from qtpy.QtCore import QTimer

from ..annotation import AnnotationSession
from ..annotation.dataset import annotator_records
from .jobs.prefetch import Prefetched, PrefetchJob

if TYPE_CHECKING:
    from .controller import AnnotatorController

#: prefetched paintings kept in memory (pixels and masks: a few MB each for APOLO-sized images)
KEEP = 3


class PrefetchEvents(SignalGroup):
    #: what the prefetch is doing, in one line for the navigator ("" when nothing)
    status = Signal(str)


class Prefetcher:
    """Which painting to make ready next, and the ones that are."""

    def __init__(self, controller: AnnotatorController):
        self.controller = controller
        self.events = PrefetchEvents()
        self.enabled = True
        self.job: PrefetchJob | None = None
        self._ready: OrderedDict[str, Prefetched] = OrderedDict()
        #: (file name, model spec) that failed: not tried again with that model
        self._failed: set[tuple[str, str]] = set()
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._start)
        controller.events.model.connect(lambda spec: self.clear())
        controller.events.device.connect(lambda device: self.clear())

    def ready(self, file_name: str) -> bool:
        return file_name in self._ready

    def schedule(self) -> None:
        """Prefetch the next painting as soon as nothing else runs (now, when synchronous)."""
        if self.controller.synchronous:
            self._start()
        else:
            self._timer.start()

    def _start(self) -> None:
        controller, navigation = self.controller, self.controller.campaign
        campaign = navigation.campaign
        if not self.enabled or campaign is None or not controller.jobs.idle or controller.waiting.busy:
            return  # the controller schedules again when the running job ends
        target = navigation.listing.peek(1)
        if target is None:
            return
        painting = campaign.paintings[target].painting
        name, spec = painting.file_name, controller.model.spec
        if name in self._ready or (name, spec) in self._failed or name == navigation.current_name:
            return
        # the annotator's own records and the drafts: a pair only others reviewed gets a draft too
        mine = annotator_records(campaign.all_records(name), controller.settings.annotator.strip() or None)
        have = {record.emotion for record in mine}
        emotions = [e for e in campaign.emotions if e not in have]
        self.job = PrefetchJob(
            controller,
            controller.cache,
            name,
            campaign.dataset.image_path(painting),
            emotions,
            on_ready=self._store,
            on_failed=lambda message: self._fail(name, spec, message),
        )
        self.events.status.emit(f"getting {name} ready…")
        controller.run(self.job)

    def _store(self, result: Prefetched) -> None:
        self.job = None
        navigation = self.controller.campaign
        session = navigation.session
        if session is not None and session.file_name == result.file_name and session.digest == result.digest:
            # the annotator got there first: the drafts go straight onto the painting
            self.apply(session, result)
            session.autosave(force=True)
            self.events.status.emit("")
            return
        self._ready[result.file_name] = result
        while len(self._ready) > KEEP:
            self._ready.popitem(last=False)
        drafts = f" with {len(result.proposals)} drafts" if result.proposals else ""
        self.events.status.emit(f"next: {result.file_name} ready{drafts}")

    def _fail(self, name: str, spec: str, message: str) -> None:
        self.job = None
        self._failed.add((name, spec))
        self.events.status.emit(f"could not get {name} ready: {message}")

    def take(self, file_name: str) -> Prefetched | None:
        """The prefetched painting ``file_name`` (it leaves the memory), or None."""
        return self._ready.pop(file_name, None)

    def apply(self, session: AnnotationSession, prefetched: Prefetched) -> list[str]:
        """Put the prefetched drafts on ``session``'s painting, for the emotions it has no
        annotation of; returns those emotions."""
        if prefetched.digest != session.digest or prefetched.spec != self.controller.model.spec:
            return []
        fresh = [p for p in prefetched.proposals if p.emotion not in session]
        return session.apply_proposals(fresh, source=prefetched.source, model=prefetched.model)

    def clear(self) -> None:
        """Forget what is ready (the model changed: its drafts would be another model's)."""
        self._ready.clear()
        self._failed.clear()
        if self.job is not None and self.job.running:
            self.controller.jobs.cancel(self.job)
        self.job = None
        self.events.status.emit("")
