"""Fine-tune a model on dataset folders: :func:`napari_emosem.finetune.fine_tune` in a worker."""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psygnal import Signal, SignalGroup

from ...checkpoint import CheckpointInfo, is_checkpoint, read_checkpoint, resolve_checkpoint_dir
from ...errors import EmoSEMError
from .base import Failed, Job, limit_torch_threads, prepare_worker_thread


@dataclass(frozen=True)
class TrainStep:
    """Progress of a fine-tuning run: one per preparation, training or validation step."""

    message: str
    #: "start" (``run_dir`` known), "message", "prepare", "validate", "train", "epoch"
    stage: str
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
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
    epochs are already saved. The run folder comes first (a "start" step), so that a cancelled
    run's best epoch can be listed. ``options`` are further
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
            from ...finetune import default_run_dir, fine_tune  # imports torch: only ever in the worker
            from ...training import TrainConfig

            limit_torch_threads()
            if self.include_unreviewed and "include_unreviewed" not in inspect.signature(fine_tune).parameters:
                return Failed("this version cannot train on unreviewed drafts: untick 'include unreviewed drafts'")
            config = TrainConfig(epochs=self.epochs, **self.options)
            run_dir = default_run_dir(_run_name(self.base))
            what = f"fine-tuning {Path(self.base).name} for {config.epochs} epochs"
            yield TrainStep(what, "start", run_dir=str(run_dir))
            result = None
            events = fine_tune(
                self.datasets, self.base, run_dir=run_dir, config=config, device=self.device, **self._core_options()
            )
            for event in events:
                if event.stage == "done":
                    result = event.metrics["result"]
                    continue
                yield TrainStep(
                    describe_event(event), event.stage, event.epoch, event.epochs, event.step, event.steps,
                    dict(event.metrics),
                )
        except EmoSEMError as exc:
            return Failed(str(exc))
        if result is None or result.checkpoint is None:
            return Failed(f"fine-tuning ended without a checkpoint (no epoch finished); see {run_dir}")
        pairs = (result.checkpoint.metadata.get("training") or {}).get("pairs")
        runs = result.epochs_run
        return Trained(
            message=f"fine-tuned on {pairs} pairs in {runs} epoch{'s' if runs != 1 else ''}"
            + (" (stopped early: validation stopped improving)" if result.stopped_early else ""),
            checkpoint=result.checkpoint,
            before=dict(result.before),
            after=dict(result.after),
            epochs_run=runs,
            stopped_early=result.stopped_early,
            seconds=time.perf_counter() - start,
            run_dir=str(run_dir),
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
        if step.stage == "message" and step.message.startswith("training"):
            self.events.training_data.emit(step.message)
        if step.stage == "start":
            self.run_dir = step.run_dir
        elif step.stage == "train":
            total = step.epochs * step.steps
            done = (step.epoch - 1) * step.steps + step.step
            what = f"epoch {step.epoch}/{step.epochs}"
            self.report(done, total, f"EmoSEM: fine-tune, {what}", dock_format=f"{what}: %p%")
        elif step.stage == "epoch":
            self.epochs_done = step.epoch
        elif step.stage in ("prepare", "validate") and self.bar is not None:
            doing = "preparing paintings" if step.stage == "prepare" else "validating"
            self.report(self.bar.n, self.bar.total, f"EmoSEM: fine-tune, {doing}")

    def on_done(self, result: Trained) -> None:
        self.events.trained.emit(result)

    def on_cancelled(self) -> None:
        self.events.cancelled.emit(self.run_dir, self.epochs_done)


def _run_name(base: str) -> str:
    """A run is named after its base: the preset, or the checkpoint's id."""
    return read_checkpoint(base).id if is_checkpoint(resolve_checkpoint_dir(base)) else base


def describe_event(event) -> str:
    """One progress line for a training event (the status line under the dock)."""
    if event.stage == "train":
        loss = event.losses.get("loss")
        return f"epoch {event.epoch}/{event.epochs}, step {event.step}/{event.steps}" + (
            f", loss {loss:.3f}" if loss is not None else ""
        )
    if event.stage == "validate":
        when = "before training" if event.epoch == 0 else f"epoch {event.epoch}/{event.epochs}"
        return f"validating ({when}): painting {event.step}/{event.steps}"
    if event.stage == "prepare":
        return f"{event.message or 'preparing paintings'} {event.step}/{event.steps}"
    if event.stage == "epoch":
        miou = event.metrics.get("miou")
        done = f"epoch {event.epoch}/{event.epochs} done"
        return done + (f": validation mIoU {miou:.3f}" if miou is not None else "")
    return event.message
