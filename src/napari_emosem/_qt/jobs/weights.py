"""Download SAM's weights for a preset, with progress and Cancel (:func:`napari_emosem.weights.fetch`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from psygnal import Signal, SignalGroup

from ...errors import EmoSEMError
from ...weights import SAM_WEIGHTS, SamWeights, fetch
from .base import Failed, Job

#: how often the worker reports the download's progress
REPORT_EVERY_S = 0.25


class DownloadCancelled(Exception):
    """Raised inside the download when the annotator cancelled it (pooch then removes its file)."""


class _Progress:
    """A progress bar for pooch's downloader (``total``, ``update``, ``reset``, ``close``), read by
    the worker; ``update`` stops the download once Cancel was pressed."""

    def __init__(self, cancelled: threading.Event):
        self.cancelled = cancelled
        self.total = 0
        self.n = 0

    def update(self, n: int) -> None:
        if self.cancelled.is_set():
            raise DownloadCancelled()
        self.n += n

    def reset(self) -> None:
        self.n = 0

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class DownloadStep:
    message: str
    done: int
    total: int


class WeightsEvents(SignalGroup):
    #: the weights are in the cache now, at this path
    downloaded = Signal(str)


class DownloadWeightsJob(Job):
    """Fetch a SAM checkpoint into the weights cache, hash-verified (nothing is kept otherwise)."""

    steps = None  # the job drives the bars: bytes, as they arrive
    holds_painting = False

    def __init__(self, preset: str, entry: SamWeights | None = None):
        super().__init__()
        self.entry = entry or SAM_WEIGHTS[preset]
        self.name = f"download SAM {preset} weights"
        self.events = WeightsEvents()
        self._cancelled = threading.Event()

    def work(self) -> Iterator[DownloadStep]:
        progress, outcome = _Progress(self._cancelled), {}
        fetching = threading.Thread(target=self._fetch, args=(progress, outcome), daemon=True)
        fetching.start()
        name = self.entry.file_name
        while fetching.is_alive():  # pooch blocks: the worker reports while it downloads
            yield DownloadStep(f"downloading {name}", progress.n, progress.total or self.entry.size)
            fetching.join(REPORT_EVERY_S)
        if "error" in outcome:
            return Failed(outcome["error"])
        if "crash" in outcome:
            raise outcome["crash"]
        return outcome.get("path")

    def _fetch(self, progress: _Progress, outcome: dict) -> None:
        try:
            outcome["path"] = fetch(self.entry.name, progress=progress, weights=self.entry)
        except DownloadCancelled:
            outcome["path"] = None
        except EmoSEMError as exc:
            outcome["error"] = str(exc)
        except Exception as exc:  # a bug: the worker re-raises it, with its traceback
            outcome["crash"] = exc

    def on_step(self, step: DownloadStep) -> None:
        mb, total_mb = step.done // 1_000_000, max(step.total // 1_000_000, 1)
        self.report(mb, total_mb, f"EmoSEM: {step.message} ({mb}/{total_mb} MB)", dock_format=f"{self.name}: %p%")

    def on_cancel(self) -> None:
        self._cancelled.set()

    def on_done(self, path: Path | None) -> None:
        if path is not None and not self.cancelled:
            self.events.downloaded.emit(str(path))
