"""What the annotator asked for while a job ran: it waits its turn, and runs when the job ends."""

from __future__ import annotations

from collections.abc import Callable

from .base import Job

#: what waits runs in this order, one per job that ends (a load first: a proposal waits for it)
ORDER = ("load", "propose", "refine")


class WaitingActions:
    """At most one waiting action of each kind; ``run_next(job)`` when a job ends."""

    def __init__(self) -> None:
        self._waiting: dict[str, tuple[Callable[[Job], None], bool]] = {}

    def wait(self, kind: str, action: Callable[[Job], None], *, busy: bool = False) -> None:
        """``action(ended_job)`` runs when a job ends; ``busy``: the annotator counts as busy meanwhile."""
        self._waiting[kind] = (action, busy)

    @property
    def busy(self) -> bool:
        return any(busy for _, busy in self._waiting.values())

    def clear(self) -> None:
        self._waiting.clear()

    def run_next(self, ended: Job) -> None:
        for kind in ORDER:
            if kind in self._waiting:
                action, _ = self._waiting.pop(kind)
                action(ended)
                return
