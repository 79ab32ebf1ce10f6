"""Which of the open campaign's paintings the navigator lists, in which order, and where Next goes.

:class:`CampaignListing` (the navigation's ``listing``) filters the campaign by status and by a
search text, orders it as the dataset does or as a queue ranked it (``queue_paintings``, in a
background job), and finds the neighbour Next and Previous move to. It holds no painting and
saves nothing: moving is :class:`~napari_emosem._qt.campaign.CampaignNavigation`'s job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..campaign import PaintingStatus
from ..errors import EmoSEMError

if TYPE_CHECKING:
    from .campaign import CampaignNavigation

#: the navigator's status filters: name shown -> the statuses it lists (None: all)
STATUS_FILTERS: dict[str, frozenset[PaintingStatus] | None] = {
    "all": None,
    "to do": frozenset({PaintingStatus.NOT_STARTED, PaintingStatus.PROPOSED, PaintingStatus.IN_PROGRESS}),
    **{status.value: frozenset({status}) for status in PaintingStatus},
}
#: what Next and Previous pass over when "skip done" is on
FINISHED = frozenset({PaintingStatus.DONE, PaintingStatus.SKIPPED})


class CampaignListing:
    """The navigator's list of the campaign's paintings; see the module docstring."""

    def __init__(self, navigation: CampaignNavigation):
        self.navigation = navigation
        #: indices of the paintings the navigator lists, in :meth:`place` order
        self.visible: list[int] = []
        #: campaign index -> place in the queue when the list is sorted by it (None: dataset order);
        #: the paintings the queue leaves out (done, skipped) come after it, in dataset order
        self.queue_places: dict[int, int] | None = None
        self.status_filter = "all"
        self.search = ""
        #: Next and Previous pass over done and skipped paintings
        self.skip_done = True

    def set_filter(self, status: str | None = None, search: str | None = None) -> None:
        """List the paintings of ``status`` (a :data:`STATUS_FILTERS` name) whose name, file name,
        artist or title contains ``search`` (case-insensitively)."""
        if status is not None:
            if status not in STATUS_FILTERS:
                raise EmoSEMError(f"unknown status filter {status!r}; choose one of {', '.join(STATUS_FILTERS)}")
            self.status_filter = status
        if search is not None:
            self.search = search
        self.refilter()

    def refilter(self) -> None:
        """List again, by the same filter and order (another campaign, another order)."""
        campaign = self.navigation.campaign
        wanted = STATUS_FILTERS[self.status_filter]
        text = self.search.strip().lower()
        visible = []
        for i, p in enumerate(campaign.paintings if campaign is not None else ()):
            if wanted is not None and p.status not in wanted:
                continue
            if text and text not in p.painting.file_name.lower() and text not in p.label.lower():
                continue
            visible.append(i)
        self.visible = sorted(visible, key=self.place)
        self.navigation.events.filtered.emit()

    def place(self, index: int) -> int:
        """Where the painting at campaign ``index`` comes in the navigator's order."""
        if self.queue_places is None:
            return index
        return self.queue_places.get(index, len(self.queue_places) + index)

    def sort_by_queue(self, report=None) -> None:
        """List the paintings in the queue's order (a ``QueueReport`` of this campaign), or in
        dataset order again (None); Next and Previous follow the list."""
        campaign = self.navigation.campaign
        if report is None or campaign is None:
            self.queue_places = None
        else:
            names = [entry.painting.file_name for entry in report.entries]
            self.queue_places = {campaign.index[n]: place for place, n in enumerate(names) if n in campaign.index}
        self.refilter()
        self.navigation.controller.prefetch.schedule()  # the next painting may be another one now

    def start_sort_by_queue(self, order: str = "uncertainty", *, progress=None, ended=None):
        """Rank the campaign with the model in use (``queue_paintings``, in a background job with
        progress) and list it in that order once ranked; returns the job (None: not started).
        ``progress(done, total, line)`` and ``ended(line)`` follow it."""
        controller, campaign = self.navigation.controller, self.navigation.campaign
        if campaign is None:
            controller.error("open a campaign first")
            return None
        from .jobs.sort_queue import SortQueueJob

        job = SortQueueJob(controller, controller.cache, campaign.root, order, on_sorted=self.sort_by_queue)
        if progress is not None:
            job.events.progress.connect(progress)
        if ended is not None:
            job.events.ended.connect(ended)
        controller.run(job)
        return job

    def peek(self, step: int = 1) -> int | None:
        """The index Next (``step`` 1) or Previous (-1) would go to: the neighbour in the
        navigator's list (done and skipped ones passed over with :attr:`skip_done`), or None."""
        campaign, current = self.navigation.campaign, self.navigation.current
        if campaign is None or not self.visible:
            return None
        here = None if current is None else self.place(current)
        if step > 0:
            ahead = (i for i in self.visible if here is None or self.place(i) > here)
        else:
            ahead = (i for i in reversed(self.visible) if here is None or self.place(i) < here)
        return next((i for i in ahead if not (self.skip_done and campaign.paintings[i].status in FINISHED)), None)
