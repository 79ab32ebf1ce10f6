"""Fine-tune a model on dataset folders: :func:`napari_emosem.finetune.fine_tune` in a worker."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from psygnal import Signal, SignalGroup

from ...checkpoint import CheckpointInfo
from ...errors import EmoSEMError
from .base import Failed, Job, limit_torch_threads, prepare_worker_thread


@dataclass(frozen=True)
class TrainStep:
    """Progress of a fine-tuning run: one per training event of the core."""

    #: the event in words (:func:`napari_emosem.reporting.progress_line`)
    message: str
    #: the core's stage: "data" (``message`` says what is trained on, ``run_dir`` where),
    #: "message", "prepare", "validate", "metrics", "train", "epoch"
    stage: str
    epoch: int = 0
    epochs: int = 0
    #: progress over the whole run: preparation, training, validation drafts and their metrics
    done: int = 0
    total: int = 0
    #: validation metrics (on "epoch" steps)
    metrics: dict = field(default_factory=dict)
    run_dir: str = ""


@dataclass(frozen=True)
class Trained:
    """What a finished fine-tuning run returns."""

    message: str
    #: the best checkpoint
    checkpoint: CheckpointInfo
    #: validation metrics before training and of the best epoch ({} without validation paintings)
    before: dict
    after: dict
    epochs_run: int
    stopped_early: bool
    seconds: float
    run_dir: str


class FineTuneEvents(SignalGroup):
    #: what the run trains on, as the core says it ("training on N reviewed pairs from P paintings; ...")
    training_data = Signal(str)
    #: a run ended with a checkpoint (a :class:`Trained`)
    trained = Signal(object)
    #: a cancelled run: its folder and the number of epochs it finished (0: nothing to keep)
    cancelled = Signal(str, int)


class FineTuneJob(Job):
    """Train ``base`` (a preset or a checkpoint folder) on ``datasets`` into the user's checkpoints.

    One :class:`TrainStep` per training event, so Cancel stops after the current step; finished
    epochs are already saved. The run folder comes first (the core's "data" event), so that a
    cancelled run's best epoch can be listed. ``options`` are further
    :class:`~napari_emosem.training.TrainConfig` fields.
    """

    name = "fine-tune"
    steps = None  # the job drives the bars: it learns the run's length as it goes
    holds_painting = False  # training reads the datasets on disk

    def __init__(
        self,
        datasets: Sequence[str],
        base: str,
        device: str,
        *,
        epochs: int,
        options: dict[str, Any],
        include_unreviewed: bool = False,
        sam_checkpoint: str | None = None,
    ):
        super().__init__()
        self.events = FineTuneEvents()
        self.datasets, self.base, self.device = [str(d) for d in datasets], str(base), device
        self.epochs, self.options = int(epochs), dict(options)
        #: learn from unreviewed model drafts too (default: only what a person reviewed)
        self.include_unreviewed = include_unreviewed
        #: a SAM .pth the annotator chose for a fresh SAM-backed preset (None: the cache's)
        self.sam_checkpoint = sam_checkpoint
        self.run_dir = ""
        self.epochs_done = 0

    def work(self) -> Iterator[TrainStep]:
        start = time.perf_counter()
        try:
            prepare_worker_thread()
            from ...finetune import fine_tune  # imports torch: only ever in the worker
            from ...reporting import plural, progress_line
            from ...training import TrainConfig

            limit_torch_threads()
            config = TrainConfig(epochs=self.epochs, **self.options)
            result = None
            events = fine_tune(self.datasets, self.base, config=config, device=self.device, **self._core_options())
            for event in events:
                if event.stage == "done":
                    result = event.metrics["result"]
                    continue
                yield TrainStep(
                    progress_line(event), event.stage, event.epoch, event.epochs, event.done, event.total,
                    dict(event.metrics), event.run_dir,
                )
        except EmoSEMError as exc:
            return Failed(str(exc))
        if result is None or result.checkpoint is None:
            return Failed(f"fine-tuning ended without a checkpoint (no epoch finished); see {self.run_dir}")
        pairs = (result.checkpoint.metadata.get("training") or {}).get("pairs") or 0
        return Trained(
            message=f"fine-tuned on {plural(pairs, 'pair')} in {plural(result.epochs_run, 'epoch')}"
            + (" (stopped early: validation stopped improving)" if result.stopped_early else ""),
            checkpoint=result.checkpoint,
            before=dict(result.before),
            after=dict(result.after),
            epochs_run=result.epochs_run,
            stopped_early=result.stopped_early,
            seconds=time.perf_counter() - start,
            run_dir=self.run_dir,
        )

    def _core_options(self) -> dict[str, Any]:
        """``fine_tune`` keyword arguments; the reviewed-only default is the core's own."""
        options: dict[str, Any] = {}
        if self.include_unreviewed:
            options["include_unreviewed"] = True
        if self.sam_checkpoint:
            options["sam_checkpoint"] = self.sam_checkpoint
        return options

    def on_step(self, step: TrainStep) -> None:
        if step.stage == "data":
            self.run_dir = step.run_dir
            self.events.training_data.emit(step.message)
        elif step.stage == "epoch":
            self.epochs_done = step.epoch
        if step.total:
            self.report(step.done, step.total, f"EmoSEM: fine-tune, {step.message}", dock_format=f"{step.message}: %p%")

    def on_done(self, result: Trained) -> None:
        self.events.trained.emit(result)

    def on_cancelled(self) -> None:
        self.events.cancelled.emit(self.run_dir, self.epochs_done)
